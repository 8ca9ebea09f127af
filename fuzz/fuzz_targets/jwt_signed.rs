//! Signed tokens, then changed: the changed token never validates.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::jwt_signed(data);
});
