//! DPoP proofs: accepted only when signed by the embedded public key for this request.
#![no_main]

use tollgate_fuzz::props;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    props::dpop_proof(data);
});
