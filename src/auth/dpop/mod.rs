//! DPoP proofs (RFC 9449 §4.3, §7.1): the checks of one `DPoP` header for one request and one
//! access token, the RFC 7638 thumbprint of the proof's key that the token's `cnf.jkt` must
//! name. Here the header and the claims; the embedded key and the signature in `key.rs`, the
//! `htu` comparison in `htu.rs`, server nonces (§8) in `nonce.rs`, the memory of proofs already
//! used in `replay.rs`.
//!
//! Only the request path that presents the `DPoP` scheme comes here: a `Bearer` request never
//! parses, hashes or allocates anything of this module.

use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderMap, HeaderName};
use http::Method;
use serde::Deserialize;
use serde_json::Value;

use super::claims::{numeric_date, Round};
use super::jwt::Present;
use crate::config::dpop::Dpop;

mod htu;
mod key;
mod nonce;
mod replay;

use htu::htu_matches;
pub use htu::normalize_uri;
pub use key::thumbprint;
use key::{public_key, verify, Jwk};
pub use nonce::NonceKey;
pub use replay::{Full, ReplayCache};

pub static DPOP: HeaderName = HeaderName::from_static("dpop");
pub static DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// A proof longer than this is refused unread (an RSA-4096 key and every claim fit in 2 KB).
const MAX_PROOF: usize = 8192;
/// Longest `jti` accepted.
const MAX_JTI: usize = 256;

/// Why a proof was not accepted; each has a metrics label and a fixed description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofError {
    /// The `DPoP` scheme without a `DPoP` header.
    Missing,
    /// Two `DPoP` headers, or one holding a list.
    Multiple,
    Malformed(&'static str),
    /// `typ` is not `dpop+jwt`.
    WrongType,
    /// `alg` is not an asymmetric algorithm this route accepts (`none` and HMAC never are).
    UnsupportedAlg,
    /// `crit`, `jku`, `x5u`, `x5c` or `kid`: the key must be the embedded `jwk` alone.
    ForbiddenHeader,
    /// `jwk` missing, not a key for `alg`, or not a valid key.
    BadKey,
    /// `jwk` holds private members (or is a symmetric key).
    PrivateKey,
    BadSignature,
    /// `htm` is not the request's method.
    Method,
    /// `htu` is not the request's URI.
    Uri,
    /// `iat` older than the route's `dpop_max_age`.
    Stale,
    /// `iat` further in the future than the route's `dpop_leeway`.
    Future,
    /// `ath` missing or not the token's hash.
    TokenHash,
    /// The same `jti` from the same key was seen within the window.
    Replayed,
    /// This proof key holds its whole share of the replay memory: it sends more fresh proofs
    /// within the window than any one client should.
    TooMany,
    /// The proof's key is not the one the token is bound to.
    KeyMismatch,
    /// The route wants a server nonce and the proof has none, or an old one: the answer is
    /// `use_dpop_nonce` with a fresh one.
    Nonce,
}

impl ProofError {
    pub fn label(&self) -> &'static str {
        match self {
            ProofError::Missing => "dpop_missing",
            ProofError::Multiple => "dpop_multiple",
            ProofError::Malformed(_) => "dpop_malformed",
            ProofError::WrongType => "dpop_typ",
            ProofError::UnsupportedAlg => "dpop_alg",
            ProofError::ForbiddenHeader => "dpop_forbidden_header",
            ProofError::BadKey => "dpop_jwk",
            ProofError::PrivateKey => "dpop_private_key",
            ProofError::BadSignature => "dpop_signature",
            ProofError::Method => "dpop_htm",
            ProofError::Uri => "dpop_htu",
            ProofError::Stale => "dpop_stale",
            ProofError::Future => "dpop_future",
            ProofError::TokenHash => "dpop_ath",
            ProofError::Replayed => "dpop_replay",
            ProofError::TooMany => "dpop_too_many",
            ProofError::KeyMismatch => "dpop_key_mismatch",
            ProofError::Nonce => "dpop_nonce",
        }
    }

    pub fn description(&self) -> String {
        match self {
            ProofError::Missing => "the DPoP scheme needs a DPoP proof header".into(),
            ProofError::Multiple => "exactly one DPoP proof is accepted".into(),
            ProofError::Malformed(why) => format!("malformed DPoP proof: {why}"),
            ProofError::WrongType => "DPoP proof typ must be dpop+jwt".into(),
            ProofError::UnsupportedAlg => "DPoP proof algorithm not accepted here".into(),
            ProofError::ForbiddenHeader => "DPoP proof headers crit, jku, x5u, x5c and kid are not accepted".into(),
            ProofError::BadKey => "DPoP proof jwk is not a valid public key for its algorithm".into(),
            ProofError::PrivateKey => "DPoP proof jwk must be a public key".into(),
            ProofError::BadSignature => "invalid DPoP proof signature".into(),
            ProofError::Method => "DPoP proof htm does not match the request method".into(),
            ProofError::Uri => "DPoP proof htu does not match the request URI".into(),
            ProofError::Stale => "DPoP proof iat is too old".into(),
            ProofError::Future => "DPoP proof iat is in the future".into(),
            ProofError::TokenHash => "DPoP proof ath does not match the access token".into(),
            ProofError::Replayed => "DPoP proof already used".into(),
            ProofError::TooMany => "too many DPoP proofs from this key within the proof window".into(),
            ProofError::KeyMismatch => "DPoP proof key does not match the access token's binding".into(),
            ProofError::Nonce => "a fresh DPoP nonce is required".into(),
        }
    }
}

/// The request a proof is for, as the client addressed it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub headers: &'a HeaderMap,
    pub method: &'a Method,
    /// The path as sent (not normalised by the gateway).
    pub path: &'a str,
    pub origin: Origin<'a>,
    /// The client certificate the request came with (RFC 8705 §3), for certificate-bound tokens.
    pub cert: crate::client_cert::Presented<'a>,
}

/// Scheme and authority of the request's URI.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The connection is TLS.
    pub tls: bool,
    /// The peer is a trusted proxy: its `X-Forwarded-Proto` names the scheme.
    pub trusted_proxy: bool,
    /// The validated authority (`host[:port]`, normal form) the request was routed by.
    pub authority: &'a str,
}

/// A proof that passed every check but the replay check and the binding.
#[derive(Debug)]
pub struct Checked {
    /// RFC 7638 thumbprint of the proof's key, base64url.
    pub jkt: String,
    /// What the replay memory is keyed by: a digest of the key's thumbprint and the `jti`.
    pub replay_key: [u8; 16],
}

#[derive(Deserialize)]
struct Header {
    typ: Option<String>,
    alg: String,
    jwk: Option<Jwk>,
    #[serde(default)]
    crit: Present,
    #[serde(default)]
    jku: Present,
    #[serde(default)]
    x5u: Present,
    #[serde(default)]
    x5c: Present,
    #[serde(default)]
    kid: Present,
}

/// Checks the request's proof for `token` under `settings` at `now` (Unix seconds): everything
/// but the replay memory and the token's binding, which the caller checks with the result.
pub fn check_proof(settings: &Dpop, req: &Request<'_>, token: &str, now: u64) -> Result<Checked, ProofError> {
    let proof = single_proof(req.headers)?;
    let (message, signature) = proof.rsplit_once('.').ok_or(ProofError::Malformed("not a JWS"))?;
    let (header, payload) = message.split_once('.').ok_or(ProofError::Malformed("not a JWS"))?;
    if header.is_empty() || payload.is_empty() || signature.is_empty() || payload.contains('.') {
        return Err(ProofError::Malformed("not a JWS"));
    }
    let header = parse_header(header)?;
    let alg = crate::config::parse_asymmetric_algorithm(&header.alg).map_err(|_| ProofError::UnsupportedAlg)?;
    if !settings.algorithms.contains(&alg) {
        return Err(ProofError::UnsupportedAlg);
    }
    let key = public_key(header.jwk.ok_or(ProofError::BadKey)?, alg)?;
    let claims: Value = serde_json::from_slice(&b64(payload)?).map_err(|_| ProofError::Malformed("payload"))?;
    check_claims(settings, req, token, &claims, now)?;
    if !verify(alg, &key, message.as_bytes(), signature) {
        return Err(ProofError::BadSignature);
    }
    let jkt = sha256_b64(key.canonical.as_bytes());
    let jti = claims.get("jti").and_then(Value::as_str).unwrap_or("");
    Ok(Checked { replay_key: replay_key(&jkt, jti), jkt })
}

/// The one `DPoP` header: a second one, or a list in one, is refused.
fn single_proof(headers: &HeaderMap) -> Result<&str, ProofError> {
    let mut values = headers.get_all(&DPOP).iter();
    let value = values.next().ok_or(ProofError::Missing)?;
    if values.next().is_some() {
        return Err(ProofError::Multiple);
    }
    let bytes = value.as_bytes();
    if bytes.contains(&b',') {
        return Err(ProofError::Multiple);
    }
    if bytes.len() > MAX_PROOF {
        return Err(ProofError::Malformed("too large"));
    }
    let s = std::str::from_utf8(bytes).map_err(|_| ProofError::Malformed("not ASCII"))?.trim_matches(' ');
    if s.is_empty() {
        return Err(ProofError::Missing);
    }
    Ok(s)
}

fn parse_header(part: &str) -> Result<Header, ProofError> {
    let bytes = b64(part)?;
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ProofError::Malformed("header is not a JSON object"));
    }
    let header: Header = serde_json::from_slice(&bytes).map_err(|_| ProofError::Malformed("header"))?;
    let typ = header.typ.as_deref().unwrap_or("");
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    if !typ.eq_ignore_ascii_case("dpop+jwt") {
        return Err(ProofError::WrongType);
    }
    if header.crit.0 || header.jku.0 || header.x5u.0 || header.x5c.0 || header.kid.0 {
        return Err(ProofError::ForbiddenHeader);
    }
    Ok(header)
}

/// `htm`, `htu`, `iat`, `jti`, `ath` and `nonce`.
fn check_claims(settings: &Dpop, req: &Request<'_>, token: &str, claims: &Value, now: u64) -> Result<(), ProofError> {
    if !claims.is_object() {
        return Err(ProofError::Malformed("payload is not a JSON object"));
    }
    let text = |name: &'static str| match claims.get(name) {
        None => Err(ProofError::Malformed(name)),
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(_) => Err(ProofError::Malformed(name)),
    };
    let jti = text("jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI {
        return Err(ProofError::Malformed("jti"));
    }
    if text("htm")? != req.method.as_str() {
        return Err(ProofError::Method);
    }
    if !htu_matches(text("htu")?, req) {
        return Err(ProofError::Uri);
    }
    // Through the claims verifier's NumericDate rule: a fraction counts toward the future.
    let iat = numeric_date(claims, "iat", Round::Up).map_err(|_| ProofError::Malformed("iat"))?;
    let iat = iat.ok_or(ProofError::Malformed("iat"))?;
    if iat > now.saturating_add(settings.leeway) {
        return Err(ProofError::Future);
    }
    if iat.saturating_add(settings.max_age) < now {
        return Err(ProofError::Stale);
    }
    match claims.get("ath") {
        Some(Value::String(ath)) if *ath == sha256_b64(token.as_bytes()) => {}
        _ => return Err(ProofError::TokenHash),
    }
    if let Some(nonces) = &settings.nonce {
        match claims.get("nonce") {
            Some(Value::String(n)) if nonces.accepts(n, now) => {}
            Some(Value::String(_)) | None => return Err(ProofError::Nonce),
            Some(_) => return Err(ProofError::Malformed("nonce")),
        }
    }
    Ok(())
}

fn b64(part: &str) -> Result<Vec<u8>, ProofError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| ProofError::Malformed("invalid base64url"))
}

/// base64url(SHA-256(data)): `ath` and RFC 7638 thumbprints.
pub fn sha256_b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, data))
}

fn replay_key(jkt: &str, jti: &str) -> [u8; 16] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(jkt.as_bytes());
    ctx.update(b"\0");
    ctx.update(jti.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&ctx.finish().as_ref()[..16]);
    out
}
