//! X-Request-Id: plain ids kept, anything else replaced by a fresh plain id.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::request_id(data);
});
