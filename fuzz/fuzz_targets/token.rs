//! Bearer token extraction: Authorization (against a plain model), query and cookie sources.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::token(data);
});
