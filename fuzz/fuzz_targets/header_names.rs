//! Header-name folding: no spelling of a protected header reaches the upstream.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::header_names(data);
});
