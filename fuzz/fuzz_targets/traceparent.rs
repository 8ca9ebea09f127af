//! W3C traceparent and tracestate: taken exactly when valid, re-formatted as sent.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::traceparent(data);
});
