//! JWS compact tokens: strict parsing, signature verification with a pinned key, and claim
//! checks done here rather than left to jsonwebtoken's defaults (which accept an array `iss`,
//! a missing `aud`/`iss`, a future `nbf` and any `crit`, and read tokens of any size).

use aws_lc_rs::digest::Digest;
use jsonwebtoken::Algorithm;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::claims;
use super::jwks::{with_decoded, VerifyKey};
use super::Invalid;
use crate::config::Issuer;

/// A parsed, not yet verified token.
#[derive(Debug)]
pub struct Token<'a> {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub claims: Value,
    /// `header.payload`, the signed bytes.
    message: &'a str,
    signature: &'a str,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    #[serde(default)]
    crit: Present,
    #[serde(default)]
    jku: Present,
    #[serde(default)]
    x5u: Present,
    #[serde(default)]
    jwk: Present,
}

/// A header member that counts as present whatever its value, `null` included (an
/// `Option` would read `"crit": null` as absent).
#[derive(Default)]
pub(super) struct Present(pub(super) bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Present, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// True when `token` has the shape of a JWS (three dot-separated parts).
pub fn looks_like_jws(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

pub fn parse(token: &str) -> Result<Token<'_>, Invalid> {
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(if token.split('.').count() == 5 {
            Invalid::Encrypted
        } else {
            Invalid::Malformed("not a JWS compact token")
        });
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(Invalid::Malformed("empty token part"));
    }
    let header: RawHeader = with_decoded(h, |header| {
        if header.trim_ascii_start().first() != Some(&b'{') {
            // serde's derived structs also read JSON arrays (fields by position); a JOSE header
            // must be an object (RFC 7515 §4).
            return Err(Invalid::Malformed("header is not a JSON object"));
        }
        serde_json::from_slice(header).map_err(|_| Invalid::Malformed("header is not the expected JSON"))
    })
    .ok_or(Invalid::Malformed("invalid base64url"))??;
    if header.crit.0 {
        // We implement no JWS extensions, so any critical one must be refused (RFC 7515 §4.1.11).
        return Err(Invalid::Crit);
    }
    if header.jku.0 || header.x5u.0 || header.jwk.0 {
        // Keys named or embedded by the token are never fetched nor trusted.
        return Err(Invalid::ForbiddenHeader);
    }
    let alg = crate::config::parse_asymmetric_algorithm(&header.alg).map_err(|_| Invalid::UnsupportedAlg)?;
    let claims: Value = with_decoded(p, |p| serde_json::from_slice::<Value>(p))
        .ok_or(Invalid::Malformed("invalid base64url"))?
        .map_err(|_| Invalid::Malformed("payload is not JSON"))?;
    if !claims.is_object() {
        return Err(Invalid::Malformed("payload is not a JSON object"));
    }
    let message = &token[..h.len() + 1 + p.len()];
    Ok(Token { alg, kid: header.kid, typ: header.typ, claims, message, signature: s })
}

impl Token<'_> {
    /// The unverified `iss`, used only to choose whose keys verify the token.
    pub fn issuer(&self) -> Result<&str, Invalid> {
        match self.claims.get("iss") {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(Invalid::Malformed("iss must be a string")),
            None => Err(Invalid::MissingClaim("iss")),
        }
    }

    pub fn verify_signature(&self, key: &VerifyKey) -> Result<(), Invalid> {
        self.verify_signature_prehashed(key, None)
    }

    /// [`Token::verify_signature`], with the SHA-256 of the signed part when the caller has it
    /// (`signed`: the length of the token prefix it covers, and the digest). A digest of any
    /// other prefix than this token's `header.payload` is not used.
    pub fn verify_signature_prehashed(&self, key: &VerifyKey, signed: Option<&(usize, Digest)>) -> Result<(), Invalid> {
        if !key.algorithms.contains(&self.alg) {
            return Err(Invalid::AlgorithmMismatch);
        }
        let digest = signed.filter(|(len, _)| *len == self.message.len()).map(|(_, d)| d);
        if key.verify_prehashed(self.alg, self.message.as_bytes(), digest, self.signature) {
            Ok(())
        } else {
            Err(Invalid::BadSignature)
        }
    }

    /// Checks `typ` (the issuer's `token_type`), then `iss`, `aud` and the time claims through
    /// the one claims verifier. Returns `exp`.
    pub fn check_claims(&self, issuer: &Issuer, now: u64) -> Result<u64, Invalid> {
        if let Some(want) = &issuer.token_type {
            let typ = self.typ.as_deref().unwrap_or("");
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if !typ.eq_ignore_ascii_case(want) {
                return Err(Invalid::WrongType);
            }
        }
        let expect = claims::Expect::access_token(&issuer.url, &issuer.audiences, issuer.leeway.as_secs());
        let times = claims::verify(&self.claims, &expect, now)?;
        times.exp.ok_or(Invalid::MissingClaim("exp"))
    }
}
