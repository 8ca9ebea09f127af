//! Redis URLs: what is accepted re-reads from its plain form; passwords never in Debug.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        props::redis_url(s);
    }
});
