//! Cookie lines: chunk assembly against a model; nothing opens under a key that never sealed.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::cookie(data);
});
