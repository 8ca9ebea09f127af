//! Any token: validates only with a signature jsonwebtoken verifies and the right claims.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        props::jwt_raw(s);
    }
});
