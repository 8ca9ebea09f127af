//! Key sets: a JWKS parsed into verification keys, each pinned to the algorithms it may verify.
//! Readers get a lock-free snapshot; refreshes swap in a whole new set.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CACHE_CONTROL, ETAG};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// A public key and the algorithms it verifies.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    pub key: DecodingKey,
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
    Ok(Some(VerifyKey { kid: jwk.common.key_id.clone(), algorithms, key }))
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
