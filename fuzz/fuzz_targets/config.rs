//! The config loader (TOML, ${VAR}, validation): errors are errors, never panics.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        props::config(s);
    }
});
