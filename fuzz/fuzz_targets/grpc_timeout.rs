//! grpc-timeout: a deadline exactly when 1 to 8 digits and a unit, equal to their product.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::grpc_timeout(data);
});
