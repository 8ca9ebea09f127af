//! Client certificate headers (XFCC, PEM): accepted only for the certificate they name.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::client_cert_header(data);
});
