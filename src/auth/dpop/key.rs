//! The key a DPoP proof embeds (its `jwk` header): public members only, of the family and
//! curve its `alg` names, its RFC 7638 thumbprint input, and its signature check with the key
//! parsed once per thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use aws_lc_rs::signature::{self as sig, ParsedPublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use super::{sha256_b64, ProofError};
use crate::auth::jwks::{verification, Verification};
use crate::auth::jwt::Present;

/// The members of a JWK that matter; any private member present is a refusal.
#[derive(Deserialize)]
pub(super) struct Jwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(default)]
    d: Present,
    #[serde(default)]
    p: Present,
    #[serde(default)]
    q: Present,
    #[serde(default)]
    dp: Present,
    #[serde(default)]
    dq: Present,
    #[serde(default)]
    qi: Present,
    #[serde(default)]
    oth: Present,
    #[serde(default)]
    k: Present,
}

/// A public key ready to verify, with its RFC 7638 thumbprint input.
pub(super) struct PublicKey {
    /// Members in lexicographic order, as RFC 7638 §3 hashes them.
    pub(super) canonical: String,
    kind: KeyKind,
}

enum KeyKind {
    /// Uncompressed point or raw Ed25519 key.
    Raw(Vec<u8>, &'static dyn sig::VerificationAlgorithm),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        params: &'static sig::RsaParameters,
    },
}

/// The embedded key, for `alg`: public members only, of the family and curve `alg` names.
pub(super) fn public_key(jwk: Jwk, alg: Algorithm) -> Result<PublicKey, ProofError> {
    let private = [&jwk.d, &jwk.p, &jwk.q, &jwk.dp, &jwk.dq, &jwk.qi, &jwk.oth, &jwk.k].iter().any(|m| m.0);
    if private || jwk.kty == "oct" {
        return Err(ProofError::PrivateKey);
    }
    let member = |m: &Option<String>| -> Result<(String, Vec<u8>), ProofError> {
        let s = m.as_deref().ok_or(ProofError::BadKey)?;
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| ProofError::BadKey)?;
        Ok((s.to_string(), bytes))
    };
    let crv = jwk.crv.as_deref();
    match (verification(alg).ok_or(ProofError::BadKey)?, alg, jwk.kty.as_str()) {
        (Verification::Raw(params), Algorithm::ES256 | Algorithm::ES384, "EC") => {
            let (want_crv, len) = if alg == Algorithm::ES256 { ("P-256", 32) } else { ("P-384", 48) };
            let ((xs, x), (ys, y)) = (member(&jwk.x)?, member(&jwk.y)?);
            if crv != Some(want_crv) || x.len() != len || y.len() != len {
                return Err(ProofError::BadKey);
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let canonical = format!(r#"{{"crv":"{want_crv}","kty":"EC","x":"{xs}","y":"{ys}"}}"#);
            Ok(PublicKey { canonical, kind: KeyKind::Raw(point, params) })
        }
        (Verification::Raw(params), Algorithm::EdDSA, "OKP") => {
            let (xs, x) = member(&jwk.x)?;
            if crv != Some("Ed25519") || x.len() != 32 {
                return Err(ProofError::BadKey);
            }
            let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{xs}"}}"#);
            Ok(PublicKey { canonical, kind: KeyKind::Raw(x, params) })
        }
        (Verification::Rsa(params), _, "RSA") => {
            let ((ns, n), (es, e)) = (member(&jwk.n)?, member(&jwk.e)?);
            let canonical = format!(r#"{{"e":"{es}","kty":"RSA","n":"{ns}"}}"#);
            Ok(PublicKey { canonical, kind: KeyKind::Rsa { n, e, params } })
        }
        _ => Err(ProofError::BadKey),
    }
}

pub(super) fn verify(alg: Algorithm, key: &PublicKey, message: &[u8], signature: &str) -> bool {
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else { return false };
    match prepared(alg, key) {
        Some(parsed) => parsed.verify_sig(message, &signature).is_ok(),
        None => false,
    }
}

/// Keys parsed for verification, per thread: a client sends the same key with every proof,
/// and parsing it (for RSA, the Montgomery set-up) is a tenth of a signature check.
const PREPARED_KEYS: usize = 256;

/// RFC 7638 input of a key → the key parsed for each algorithm it was used with.
type PreparedKeys = HashMap<String, Vec<(Algorithm, Rc<ParsedPublicKey>)>>;

thread_local! {
    static PREPARED: RefCell<PreparedKeys> = RefCell::new(HashMap::new());
}

/// `key` parsed for `alg`, from this thread's keys or parsed now (and kept; the set is emptied
/// when full, so a flood of new keys costs what it would without it). `None`: not a valid key.
fn prepared(alg: Algorithm, key: &PublicKey) -> Option<Rc<ParsedPublicKey>> {
    PREPARED.with(|cell| {
        let mut keys = cell.borrow_mut();
        if let Some(found) = keys.get(&key.canonical).and_then(|v| v.iter().find(|(a, _)| *a == alg)) {
            return Some(found.1.clone());
        }
        let parsed = Rc::new(match &key.kind {
            KeyKind::Raw(bytes, params) => ParsedPublicKey::new(*params, bytes).ok()?,
            KeyKind::Rsa { n, e, params } => {
                sig::RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.to_parsed_public_key(params).ok()?
            }
        });
        if keys.len() >= PREPARED_KEYS {
            keys.clear();
        }
        keys.entry(key.canonical.clone()).or_default().push((alg, parsed.clone()));
        Some(parsed)
    })
}

/// RFC 7638 thumbprint of a public JWK given as JSON (for tests and tools; the request path
/// computes it from the parsed proof).
pub fn thumbprint(jwk: &Value, alg: Algorithm) -> Option<String> {
    let jwk: Jwk = serde_json::from_value(jwk.clone()).ok()?;
    public_key(jwk, alg).ok().map(|k| sha256_b64(k.canonical.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7638 §3.1: the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_thumbprint() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(thumbprint(&jwk, Algorithm::RS256).as_deref(), Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"));
        // The same key for another family, or with a private member, has no thumbprint here.
        assert_eq!(thumbprint(&jwk, Algorithm::ES256), None);
        let mut private = jwk.clone();
        private["d"] = json!("AQAB");
        assert_eq!(thumbprint(&private, Algorithm::RS256), None);
    }
}
