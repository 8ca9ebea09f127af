//! RESP replies from a server: read as a reference reader reads them, in bounded memory.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::redis_reply(data);
});
