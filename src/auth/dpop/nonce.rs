//! Server nonces (RFC 9449 §8), without state: any replica with the same secret makes and
//! accepts the same ones.

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Nonces without state: the HMAC of the time slot. A nonce is handed out for one rotation and
/// accepted for two (the current slot and the one before). Replicas configured with the same
/// `[dpop] nonce_secret` make and accept the same nonces.
pub struct NonceKey {
    key: hmac::Key,
    rotation: u64,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NonceKey([redacted], every {}s)", self.rotation)
    }
}

impl NonceKey {
    /// `secret` from `[dpop] nonce_secret`, else one random key for the life of the process
    /// (kept across reloads).
    pub fn new(secret: Option<&str>, rotation: u64) -> NonceKey {
        static PROCESS_KEY: OnceLock<[u8; 32]> = OnceLock::new();
        let bytes: &[u8] = match secret {
            Some(s) => s.as_bytes(),
            None => PROCESS_KEY.get_or_init(|| {
                let mut k = [0u8; 32];
                // Start-up only; a failing system RNG leaves the fixed key unusable by design:
                // every nonce is then still an HMAC, but of a key all zero, so warn loudly.
                if aws_lc_rs::rand::fill(&mut k).is_err() {
                    tracing::error!("no system randomness for the DPoP nonce key");
                }
                k
            }),
        };
        NonceKey { key: hmac::Key::new(hmac::HMAC_SHA256, bytes), rotation: rotation.max(1) }
    }

    fn for_slot(&self, slot: u64) -> String {
        let tag = hmac::sign(&self.key, &[b"tollgate dpop nonce\0".as_slice(), &slot.to_be_bytes()].concat());
        URL_SAFE_NO_PAD.encode(&tag.as_ref()[..18])
    }

    /// The nonce to hand out at `now`.
    pub fn current(&self, now: u64) -> String {
        self.for_slot(now / self.rotation)
    }

    pub fn accepts(&self, nonce: &str, now: u64) -> bool {
        let slot = now / self.rotation;
        nonce.len() == 24 && (nonce == self.for_slot(slot) || (slot > 0 && nonce == self.for_slot(slot - 1)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn nonces_rotate_and_the_previous_one_is_accepted() {
        let key = NonceKey::new(Some("0123456789abcdef0123456789abcdef"), 60);
        let now = 6_000_000;
        let nonce = key.current(now);
        assert_eq!(nonce.len(), 24);
        assert!(key.accepts(&nonce, now));
        assert!(key.accepts(&nonce, now + 60), "the previous slot's nonce");
        assert!(!key.accepts(&nonce, now + 120), "two rotations later");
        assert!(!key.accepts(&nonce, now - 60), "nonces are not accepted before their slot");
        let other = NonceKey::new(Some("another secret, 32 characters lon"), 60);
        assert!(!other.accepts(&nonce, now), "another secret, another nonce");
        assert_eq!(NonceKey::new(Some("0123456789abcdef0123456789abcdef"), 60).current(now), nonce, "replicas agree");
    }
}
