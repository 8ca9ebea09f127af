//! One authority per request: target, Host and version combined.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::of_request(data);
});
