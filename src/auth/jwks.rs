//! Key sets: a JWKS parsed into verification keys, each pinned to the algorithms it may verify.
//! Readers get a lock-free snapshot; refreshes swap in a whole new set.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::signature::{self as sig, ParsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, ETAG};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use serde_json::Value;

/// A public key and the algorithms it verifies.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
    /// The key parsed once per allowed algorithm, so a verification does not rebuild it from
    /// `n`/`e` or the point (for RSA that rebuild, with its Montgomery set-up, was about a tenth
    /// of a signature check). Empty for an algorithm aws-lc-rs would not parse the key for;
    /// [`VerifyKey::verify`] then goes through jsonwebtoken, which refuses it the same way.
    prepared: Vec<(Algorithm, ParsedPublicKey)>,
}

impl VerifyKey {
    pub fn new(kid: Option<String>, algorithms: Vec<Algorithm>, key: DecodingKey) -> VerifyKey {
        let prepared = algorithms.iter().filter_map(|&alg| Some((alg, prepare(&key, alg)?))).collect();
        VerifyKey { kid, algorithms, key, prepared }
    }

    /// True when `signature` (base64url, as in the token) is `alg`'s signature of `message` by
    /// this key. `alg` must be one of the key's algorithms; false otherwise.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &str) -> bool {
        self.verify_prehashed(alg, message, None, signature)
    }

    /// [`VerifyKey::verify`], given `digest`, the caller's SHA-256 of exactly `message` (hashed
    /// with the token's cache key, in one pass): for `alg`s that sign a SHA-256 digest with a
    /// prepared key, the signature is checked against it and `message` is not hashed again.
    /// Any other case (no digest, another hash, no prepared key) hashes `message` as `verify`.
    pub fn verify_prehashed(&self, alg: Algorithm, message: &[u8], digest: Option<&Digest>, signature: &str) -> bool {
        if !self.algorithms.contains(&alg) {
            return false;
        }
        match self.prepared.iter().find(|(a, _)| *a == alg) {
            Some((_, parsed)) => with_decoded(signature, |signature| match digest {
                Some(d) if signs_sha256(alg) && d.algorithm() == &digest::SHA256 => {
                    parsed.verify_digest_sig(d, signature).is_ok()
                }
                _ => parsed.verify_sig(message, signature).is_ok(),
            })
            .unwrap_or(false),
            None => jsonwebtoken::crypto::verify(signature, message, &self.key, alg).unwrap_or(false),
        }
    }
}

/// The algorithms whose signature is over the message's SHA-256 digest, and which aws-lc-rs
/// verifies from a digest.
fn signs_sha256(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256)
}

/// Decoded token parts up to this size (an 8192-bit RSA signature, most headers and payloads)
/// stay on the stack.
const STACK_DECODED: usize = 1024;

/// `f` applied to the base64url-decoded `part` (on the stack when small); `None` when `part` is
/// not base64url. Exactly what `URL_SAFE_NO_PAD.decode` accepts, without the allocation.
pub(crate) fn with_decoded<T>(part: &str, f: impl FnOnce(&[u8]) -> T) -> Option<T> {
    let mut buf = [0u8; STACK_DECODED];
    if part.len() / 4 * 3 + 3 <= STACK_DECODED {
        let n = URL_SAFE_NO_PAD.decode_slice(part, &mut buf).ok()?;
        Some(f(&buf[..n]))
    } else {
        URL_SAFE_NO_PAD.decode(part).ok().map(|v| f(&v))
    }
}

/// The aws-lc-rs check for a JOSE `alg`: the parameters jsonwebtoken verifies with (RSA: 2048
/// to 8192-bit moduli; ECDSA: fixed-size signatures). Issuers' keys and DPoP proofs' keys alike.
pub(crate) enum Verification {
    Rsa(&'static sig::RsaParameters),
    /// An uncompressed EC point or a raw Ed25519 key.
    Raw(&'static dyn sig::VerificationAlgorithm),
}

pub(crate) fn verification(alg: Algorithm) -> Option<Verification> {
    Some(match alg {
        Algorithm::RS256 => Verification::Rsa(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Verification::Rsa(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Verification::Rsa(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Verification::Rsa(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Verification::Rsa(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Verification::Rsa(&sig::RSA_PSS_2048_8192_SHA512),
        Algorithm::ES256 => Verification::Raw(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Verification::Raw(&sig::ECDSA_P384_SHA384_FIXED),
        Algorithm::EdDSA => Verification::Raw(&sig::ED25519),
        _ => return None,
    })
}

/// `key` parsed for `alg` (see [`verification`]).
fn prepare(key: &DecodingKey, alg: Algorithm) -> Option<ParsedPublicKey> {
    match (verification(alg)?, key.kind()) {
        (Verification::Rsa(rsa), DecodingKeyKind::RsaModulusExponent { n, e }) => {
            sig::RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.to_parsed_public_key(rsa).ok()
        }
        (Verification::Raw(params), DecodingKeyKind::SecretOrDer(bytes)) => ParsedPublicKey::new(params, bytes).ok(),
        _ => None,
    }
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("algorithms", &self.algorithms).finish()
    }
}

/// The keys of one issuer.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>>,
    without_kid: Vec<Arc<VerifyKey>>,
    /// For `If-None-Match` on the next fetch.
    pub etag: Option<HeaderValue>,
    /// False until a key set has been fetched once.
    pub loaded: bool,
}

/// The answer to "which key verifies this token?".
pub enum Lookup {
    Found(Arc<VerifyKey>),
    /// No key has this `kid` (perhaps a rotation we have not seen yet).
    UnknownKid,
    /// The key exists but is pinned to other algorithms (algorithm confusion).
    AlgorithmMismatch,
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The document is not a JSON Web Key Set.
    #[error("invalid JWKS: {0}")]
    Invalid(String),
}

impl KeySet {
    /// Parses a JWKS. Keys for encryption, symmetric keys, unknown key types and keys whose
    /// `alg` does not fit their type are skipped (and logged); the set may end up empty.
    pub fn parse(body: &[u8], default_algorithms: &[Algorithm]) -> Result<KeySet, JwksError> {
        let doc: Value = serde_json::from_slice(body).map_err(|e| JwksError::Invalid(e.to_string()))?;
        let keys =
            doc.get("keys").and_then(Value::as_array).ok_or_else(|| JwksError::Invalid("no \"keys\" array".into()))?;
        let mut set = KeySet { loaded: true, ..KeySet::default() };
        for raw in keys {
            match verify_key(raw, default_algorithms) {
                Ok(Some(key)) => {
                    let key = Arc::new(key);
                    match &key.kid {
                        Some(kid) => {
                            set.by_kid.insert(kid.clone(), key);
                        }
                        None => set.without_kid.push(key),
                    }
                }
                Ok(None) => {}
                Err(reason) => tracing::warn!(kid = ?raw.get("kid"), reason, "skipping a key in the JWKS"),
            }
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the set holds a key with this `kid`.
    pub fn by_kid_contains(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The key for a token's `kid` and `alg`. Without a `kid`, the only key that fits `alg`.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        let candidate = match kid {
            Some(kid) => self.by_kid.get(kid),
            None => {
                let mut fitting =
                    self.by_kid.values().chain(self.without_kid.iter()).filter(|k| k.algorithms.contains(&alg));
                match (fitting.next(), fitting.next()) {
                    (Some(only), None) => return Lookup::Found(only.clone()),
                    // Several keys fit: a token without `kid` is ambiguous; refuse rather than try each.
                    _ => return Lookup::UnknownKid,
                }
            }
        };
        match candidate {
            None => Lookup::UnknownKid,
            Some(k) if k.algorithms.contains(&alg) => Lookup::Found(k.clone()),
            Some(_) => Lookup::AlgorithmMismatch,
        }
    }
}

/// `Ok(None)`: a key that is not for us (encryption). `Err`: a key we cannot use.
fn verify_key(raw: &Value, default_algorithms: &[Algorithm]) -> Result<Option<VerifyKey>, &'static str> {
    if raw.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = raw.get("key_ops").and_then(Value::as_array) {
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|_| "unsupported or malformed key")?;
    let fits: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return Err("unsupported elliptic curve"),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
        AlgorithmParameters::OctetKeyPair(_) => return Err("unsupported OKP curve"),
        AlgorithmParameters::OctetKey(_) => return Err("symmetric keys are never taken from a key set"),
    };
    let algorithms = match raw.get("alg").and_then(Value::as_str) {
        // A key's own `alg` pins it to exactly that algorithm.
        Some(alg) => match crate::config::parse_asymmetric_algorithm(alg) {
            Ok(a) if fits.contains(&a) => vec![a],
            _ => return Err("the key's alg does not fit its type"),
        },
        None => fits.iter().copied().filter(|a| default_algorithms.contains(a)).collect(),
    };
    if algorithms.is_empty() {
        return Err("no allowed algorithm fits this key");
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "invalid key material")?;
    Ok(Some(VerifyKey::new(jwk.common.key_id.clone(), algorithms, key)))
}

/// How long a fetched key set may be used: `Cache-Control: max-age` clamped to the issuer's
/// bounds; `no-cache`/`no-store` mean the lower bound; absent means one hour, clamped.
pub fn ttl(headers: &HeaderMap, min: Duration, max: Duration) -> Duration {
    let mut ttl = Duration::from_secs(3600);
    for value in headers.get_all(CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()) {
        for directive in value.split(',').map(str::trim) {
            if let Some(secs) = directive.strip_prefix("max-age=").and_then(|s| s.trim_matches('"').parse::<u64>().ok())
            {
                ttl = Duration::from_secs(secs);
            } else if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store") {
                ttl = Duration::ZERO;
            }
        }
    }
    ttl.clamp(min, max)
}

pub fn etag(headers: &HeaderMap) -> Option<HeaderValue> {
    headers.get(ETAG).cloned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rsa_n() -> String {
        let doc: Value = serde_json::from_str(include_str!("../../tests/idp/keys/rsa1.json")).unwrap();
        doc["keys"][0]["n"].as_str().unwrap().to_string()
    }

    fn rsa(extra: Value) -> Value {
        let mut k = serde_json::json!({"kty": "RSA", "n": rsa_n(), "e": "AQAB"});
        k.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        k
    }

    #[test]
    fn keys_are_pinned_and_filtered() {
        let doc = serde_json::json!({"keys": [
            rsa(serde_json::json!({"kid": "pinned", "alg": "RS256"})),
            rsa(serde_json::json!({"kid": "free"})),
            rsa(serde_json::json!({"kid": "enc", "use": "enc"})),
            rsa(serde_json::json!({"kid": "mismatch", "alg": "ES256"})),
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "XYZ", "kid": "weird"},
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes(), &[Algorithm::RS256, Algorithm::ES256]).unwrap();
        assert_eq!(set.len(), 2);
        assert!(matches!(set.find(Some("pinned"), Algorithm::RS256), Lookup::Found(_)));
        assert!(matches!(set.find(Some("pinned"), Algorithm::PS256), Lookup::AlgorithmMismatch));
        assert!(
            matches!(set.find(Some("free"), Algorithm::RS512), Lookup::AlgorithmMismatch),
            "not in the issuer's list"
        );
        assert!(matches!(set.find(Some("enc"), Algorithm::RS256), Lookup::UnknownKid));
        assert!(matches!(set.find(Some("hmac"), Algorithm::HS256), Lookup::UnknownKid));
        assert!(matches!(set.find(None, Algorithm::RS256), Lookup::UnknownKid), "two keys fit: ambiguous");
        assert!(KeySet::parse(b"[]", &[]).is_err());
        assert!(KeySet::parse(b"{\"keys\": 1}", &[]).is_err());
    }

    /// The prepared keys verify exactly what jsonwebtoken verifies, and are in use.
    #[test]
    fn prepared_keys_agree_with_jsonwebtoken() {
        use jsonwebtoken::EncodingKey;
        let ec: Value = serde_json::from_str(include_str!("../../tests/idp/keys/ec1.json")).unwrap();
        let ec = ec["keys"][0].clone();
        let ec_public = serde_json::json!({"kty": "EC", "crv": ec["crv"], "x": ec["x"], "y": ec["y"], "kid": "ec"});
        let doc = serde_json::json!({"keys": [rsa(serde_json::json!({"kid": "rsa"})), ec_public]});
        let all = [Algorithm::RS256, Algorithm::RS512, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];
        let set = KeySet::parse(doc.to_string().as_bytes(), &all).unwrap();
        let rsa_key = EncodingKey::from_rsa_pem(include_bytes!("../../tests/idp/keys/rsa1.pem")).unwrap();
        let ec_key = EncodingKey::from_ec_pem(include_bytes!("../../tests/idp/keys/ec1.pem")).unwrap();
        for (kid, alg, signer) in [
            ("rsa", Algorithm::RS256, &rsa_key),
            ("rsa", Algorithm::RS512, &rsa_key),
            ("rsa", Algorithm::PS256, &rsa_key),
            ("ec", Algorithm::ES256, &ec_key),
        ] {
            let Lookup::Found(key) = set.find(Some(kid), alg) else { panic!("{kid} {alg:?}") };
            assert!(key.prepared.iter().any(|(a, _)| *a == alg), "{alg:?} is not prepared");
            let message = b"header.payload";
            let signature = jsonwebtoken::crypto::sign(message, signer, alg).unwrap();
            assert!(key.verify(alg, message, &signature), "{alg:?}");
            // From the caller's digest: the same answers, and a digest of anything else fails.
            let sha256 = |m: &[u8]| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, m);
            assert!(key.verify_prehashed(alg, message, Some(&sha256(message)), &signature), "{alg:?} prehashed");
            if signs_sha256(alg) {
                let other = sha256(b"header.payloaD");
                assert!(!key.verify_prehashed(alg, message, Some(&other), &signature), "{alg:?} other digest");
            }
            let sha384 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA384, message);
            assert!(key.verify_prehashed(alg, message, Some(&sha384), &signature), "{alg:?} SHA-384 ignored");
            assert!(!key.verify(alg, b"header.payloaD", &signature), "{alg:?} other message");
            let mut wrong = signature.clone().into_bytes();
            wrong[5] = if wrong[5] == b'A' { b'B' } else { b'A' };
            assert!(!key.verify(alg, message, std::str::from_utf8(&wrong).unwrap()), "{alg:?} altered");
            assert!(!key.verify(alg, message, &format!("{signature}=")), "{alg:?} not base64url");
            assert!(!key.verify(Algorithm::HS256, message, &signature), "not one of the key's algorithms");
            for other in all.into_iter().filter(|&a| a != alg) {
                assert!(!key.verify(other, message, &signature), "{alg:?} signature as {other:?}");
            }
        }
        assert!(matches!(set.find(Some("ec"), Algorithm::ES384), Lookup::AlgorithmMismatch), "P-256 key");
    }

    #[test]
    fn cache_control_is_clamped() {
        let min = Duration::from_secs(60);
        let max = Duration::from_secs(3600);
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(ttl(&h("public, max-age=600"), min, max), Duration::from_secs(600));
        assert_eq!(ttl(&h("max-age=5"), min, max), min);
        assert_eq!(ttl(&h("max-age=999999"), min, max), max);
        assert_eq!(ttl(&h("no-store"), min, max), min);
        assert_eq!(ttl(&HeaderMap::new(), min, max), Duration::from_secs(3600));
    }
}
