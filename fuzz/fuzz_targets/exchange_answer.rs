//! Token exchange answers: tokens, refusals and outages as RFC 8693 and the module say.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::exchange_answer(data);
});
