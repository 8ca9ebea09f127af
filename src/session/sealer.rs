//! Sealed values: AES-256-GCM with keys derived from the configured secrets (the first seals,
//! all open, so keys rotate without logging anyone out) and from the login's name (a value one
//! login sealed never opens at another, even when both were given the same secret), and a
//! version prefix so later releases can still open today's values.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::secret::Secret;

/// The sealed format's version, written in clear before the ciphertext.
const VERSION: &str = "v1.";
/// The login whose keys are derived as before there were several: its cookies, sealed by
/// earlier releases, still open.
pub use crate::config::DEFAULT_LOGIN;

/// Seals and opens values; `purpose` (authenticated, not stored) keeps a value sealed for one
/// use (a flow cookie) from being accepted as another (a session).
pub struct Sealer {
    keys: Vec<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys)", self.keys.len())
    }
}

impl Sealer {
    /// Keys for the login named `login`: HKDF over each secret, with the name in the expansion
    /// (the `default` login keeps the derivation of single-login releases).
    pub fn new(secrets: &[Secret], login: &str) -> Sealer {
        let salt = Salt::new(HKDF_SHA256, b"tollgate cookie keys v1");
        let named: [&[u8]; 3] = [b"aes-256-gcm", b" login ", login.as_bytes()];
        let info: &[&[u8]] = if login == DEFAULT_LOGIN { &named[..1] } else { &named };
        let keys = secrets
            .iter()
            .filter_map(|s| {
                let prk = salt.extract(s.expose().as_bytes());
                let okm = prk.expand(info, &AES_256_GCM).ok()?;
                Some(LessSafeKey::new(UnboundKey::from(okm)))
            })
            .collect();
        Sealer { keys }
    }

    pub fn seal(&self, purpose: &str, plaintext: &[u8]) -> Option<String> {
        let key = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut buf = plaintext.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(purpose.as_bytes()), &mut buf)
            .ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Some(format!("{VERSION}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// The plaintext, or `None` for anything not sealed by one of our keys for `purpose`.
    pub fn open(&self, purpose: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(VERSION)?).ok()?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        self.keys.iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut buf = ciphertext.to_vec();
            let plain = key.open_in_place(nonce, Aad::from(purpose.as_bytes()), &mut buf).ok()?;
            Some(plain.to_vec())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(keys: &[&str]) -> Sealer {
        named(keys, DEFAULT_LOGIN)
    }

    fn named(keys: &[&str], login: &str) -> Sealer {
        Sealer::new(&keys.iter().map(|k| Secret::new(*k)).collect::<Vec<_>>(), login)
    }

    #[test]
    fn seal_open_rotate_and_tamper() {
        let old = sealer(&["an-old-secret-that-is-32-bytes-long!!"]);
        let sealed = old.seal("session", b"hello").unwrap();
        assert!(sealed.starts_with("v1."));
        assert_eq!(old.open("session", &sealed).unwrap(), b"hello");
        assert!(old.open("flow", &sealed).is_none(), "purpose is authenticated");
        let rotated = sealer(&["a-new-secret-that-is-also-32-bytes-long", "an-old-secret-that-is-32-bytes-long!!"]);
        assert_eq!(rotated.open("session", &sealed).unwrap(), b"hello", "old keys still open");
        let resealed = rotated.seal("session", b"x").unwrap();
        assert!(old.open("session", &resealed).is_none(), "the first key seals");
        let mut bytes = sealed.into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert!(old.open("session", std::str::from_utf8(&bytes).unwrap()).is_none());
        for junk in ["", "v1.", "v1.!!!", "v2.AAAA", "AAAA"] {
            assert!(old.open("session", junk).is_none(), "{junk}");
        }
    }

    #[test]
    fn one_secret_two_logins_two_keys() {
        let secret = ["a-secret-shared-by-two-logins-32-bytes!"];
        let (default, wiki, blog) = (sealer(&secret), named(&secret, "wiki"), named(&secret, "blog"));
        for (from, to) in [(&default, &wiki), (&wiki, &default), (&wiki, &blog), (&blog, &wiki)] {
            let sealed = from.seal("session", b"ann").unwrap();
            assert_eq!(from.open("session", &sealed).unwrap(), b"ann");
            assert!(to.open("session", &sealed).is_none(), "another login's seal opened");
        }
    }

    /// A cookie sealed by a single-login release (the key derivation before login names) opens
    /// at the `default` login.
    #[test]
    fn the_default_login_opens_what_earlier_releases_sealed() {
        let secret = "an-old-secret-that-is-32-bytes-long!!";
        let prk = Salt::new(HKDF_SHA256, b"tollgate cookie keys v1").extract(secret.as_bytes());
        let key = LessSafeKey::new(UnboundKey::from(prk.expand(&[b"aes-256-gcm"], &AES_256_GCM).unwrap()));
        let nonce = [7u8; NONCE_LEN];
        let mut buf = b"hello".to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&b"session"[..]), &mut buf)
            .unwrap();
        let old = format!("{VERSION}{}", URL_SAFE_NO_PAD.encode([&nonce[..], &buf].concat()));
        assert_eq!(sealer(&[secret]).open("session", &old).unwrap(), b"hello");
        assert!(named(&[secret], "wiki").open("session", &old).is_none());
    }
}
