//! Token endpoint answers: a success is a Bearer token; tokens stay out of Debug.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::token_response(data);
});
