//! Path normalisation: a fixed point without dot, empty or encoded-slash segments.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        props::path(s);
    }
});
