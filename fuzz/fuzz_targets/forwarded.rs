//! Forward-auth forwarding headers and set_forwarding.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::forwarded(data);
});
