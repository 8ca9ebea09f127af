//! Sealed session cookies, chunked and tampered: untampered opens, changed never opens to anything else.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::cookie_sealed(data);
});
