//! JWKS documents: keys pinned to their type, never HMAC, never encryption keys.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::jwks(data);
});
