//! DPoP proofs (RFC 9449 §4.3, §7.1): the checks of one `DPoP` header for one request and one
//! access token, the RFC 7638 thumbprint of the proof's key that the token's `cnf.jkt` must
//! name. Server nonces (§8) are in `nonce.rs`, the memory of proofs already used in `replay.rs`.
//!
//! Only the request path that presents the `DPoP` scheme comes here: a `Bearer` request never
//! parses, hashes or allocates anything of this module.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use aws_lc_rs::signature::ParsedPublicKey;
use aws_lc_rs::{digest, signature as sig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderMap, HeaderName};
use http::Method;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use super::claims::{numeric_date, Round};
use super::jwt::Present;
use crate::config::dpop::Dpop;

mod nonce;
mod replay;

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

/// The members of a JWK that matter; any private member present is a refusal.
#[derive(Deserialize)]
struct Jwk {
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
struct PublicKey {
    /// Members in lexicographic order, as RFC 7638 §3 hashes them.
    canonical: String,
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

/// The embedded key, for `alg`: public members only, of the family and curve `alg` names.
fn public_key(jwk: Jwk, alg: Algorithm) -> Result<PublicKey, ProofError> {
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
    match (alg, jwk.kty.as_str()) {
        (Algorithm::ES256 | Algorithm::ES384, "EC") => {
            let (want_crv, len, params): (_, _, &'static dyn sig::VerificationAlgorithm) = match alg {
                Algorithm::ES256 => ("P-256", 32, &sig::ECDSA_P256_SHA256_FIXED),
                _ => ("P-384", 48, &sig::ECDSA_P384_SHA384_FIXED),
            };
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
        (Algorithm::EdDSA, "OKP") => {
            let (xs, x) = member(&jwk.x)?;
            if crv != Some("Ed25519") || x.len() != 32 {
                return Err(ProofError::BadKey);
            }
            let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{xs}"}}"#);
            Ok(PublicKey { canonical, kind: KeyKind::Raw(x, &sig::ED25519) })
        }
        (
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
            "RSA",
        ) => {
            let ((ns, n), (es, e)) = (member(&jwk.n)?, member(&jwk.e)?);
            let params: &'static sig::RsaParameters = match alg {
                Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
                Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
                _ => &sig::RSA_PSS_2048_8192_SHA512,
            };
            let canonical = format!(r#"{{"e":"{es}","kty":"RSA","n":"{ns}"}}"#);
            Ok(PublicKey { canonical, kind: KeyKind::Rsa { n, e, params } })
        }
        _ => Err(ProofError::BadKey),
    }
}

fn verify(alg: Algorithm, key: &PublicKey, message: &[u8], signature: &str) -> bool {
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

fn htu_matches(htu: &str, req: &Request<'_>) -> bool {
    let Some(scheme) = request_scheme(req) else { return false };
    let expected = format!("{scheme}://{}{}", req.origin.authority, req.path);
    match (normalize_uri(htu), normalize_uri(&expected)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The scheme the client used: the connection's, or a trusted proxy's single
/// `X-Forwarded-Proto` (anything else from it is a mismatch, never a guess).
fn request_scheme(req: &Request<'_>) -> Option<&'static str> {
    static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
    let own = if req.origin.tls { "https" } else { "http" };
    if !req.origin.trusted_proxy {
        return Some(own);
    }
    let mut values = req.headers.get_all(&X_FORWARDED_PROTO).iter();
    match (values.next(), values.next()) {
        (None, _) => Some(own),
        (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"https") => Some("https"),
        (Some(v), None) if v.as_bytes().eq_ignore_ascii_case(b"http") => Some("http"),
        _ => None,
    }
}

/// An `http(s)` URI without query and fragment, in RFC 3986 §6.2.2 / §6.2.3 normal form:
/// scheme and host in lower case, the scheme's default port dropped, an empty path as `/`,
/// percent-encodings in upper case and those of unreserved characters decoded. Nothing else:
/// `%2F` stays distinct from `/`, and dot segments are left as they are. `None` when it is not
/// such a URI (user information is refused too).
pub fn normalize_uri(uri: &str) -> Option<String> {
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    let uri = &uri[..end];
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    if authority.is_empty() || authority.contains('@') || authority.contains('%') {
        return None;
    }
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], &authority[i + 1..]),
        _ => (authority, ""),
    };
    // An empty port is the default one (RFC 3986 §6.2.3).
    let port = match port {
        "" => None,
        p if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        _ => return None,
    };
    if host.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(uri.len());
    out.push_str(&scheme);
    out.push_str("://");
    out.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    if let Some(port) = port.filter(|&p| p != default_port) {
        out.push(':');
        out.push_str(&port.to_string());
    }
    normalize_path(path, &mut out)?;
    Some(out)
}

fn normalize_path(path: &str, out: &mut String) -> Option<()> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                out.push(v as char);
            } else {
                out.push('%');
                out.push(hex[0].to_ascii_uppercase() as char);
                out.push(hex[1].to_ascii_uppercase() as char);
            }
            i += 3;
        } else if b.is_ascii() && !b.is_ascii_control() && b != b' ' {
            out.push(b as char);
            i += 1;
        } else {
            return None;
        }
    }
    Some(())
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

    #[test]
    fn htu_normal_form() {
        let n = |s: &str| normalize_uri(s);
        assert_eq!(n("HTTPS://Api.Example.COM:443/a?x=1#f").as_deref(), Some("https://api.example.com/a"));
        assert_eq!(n("http://h:80").as_deref(), Some("http://h/"));
        assert_eq!(n("http://h:8080/a").as_deref(), Some("http://h:8080/a"));
        assert_eq!(n("http://h:/a").as_deref(), Some("http://h/a"));
        assert_eq!(n("https://h:80/a").as_deref(), Some("https://h:80/a"), "80 is not https's default");
        assert_eq!(n("http://h/a%2fb").as_deref(), Some("http://h/a%2Fb"), "hex case only");
        assert_eq!(n("http://h/%7Euser%41").as_deref(), Some("http://h/~userA"), "unreserved decoded");
        assert_eq!(n("http://[::1]:8080/x").as_deref(), Some("http://[::1]:8080/x"));
        assert_eq!(n("http://[::1]/x").as_deref(), Some("http://[::1]/x"));
        assert_ne!(n("http://h/a%2Fb"), n("http://h/a/b"), "an encoded slash is another path");
        assert_ne!(n("http://h/a"), n("https://h/a"));
        assert_ne!(n("http://h/a"), n("http://h/a/"));
        for bad in ["ftp://h/a", "http:///a", "http://u@h/a", "http://h/a%2", "http://h/a%zz", "//h/a", "http://h:x/a"]
        {
            assert_eq!(n(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_scheme_is_a_trusted_proxys_single_forwarded_proto() {
        let scheme = |tls: bool, trusted: bool, protos: &[&str]| {
            let mut headers = HeaderMap::new();
            for p in protos {
                headers.append("x-forwarded-proto", http::HeaderValue::from_str(p).unwrap());
            }
            let origin = Origin { tls, trusted_proxy: trusted, authority: "h" };
            let cert = crate::client_cert::Presented::NONE;
            request_scheme(&Request { headers: &headers, method: &Method::GET, path: "/", origin, cert })
        };
        assert_eq!(scheme(false, false, &["https"]), Some("http"), "an untrusted peer's header is ignored");
        assert_eq!(scheme(true, false, &[]), Some("https"));
        assert_eq!(scheme(false, true, &["HTTPS"]), Some("https"));
        assert_eq!(scheme(true, true, &["http"]), Some("http"));
        assert_eq!(scheme(true, true, &[]), Some("https"), "no header: the connection's");
        assert_eq!(scheme(false, true, &["https", "http"]), None, "two values: no scheme, so no match");
        assert_eq!(scheme(false, true, &["https, http"]), None);
        assert_eq!(scheme(false, true, &["ftp"]), None);
    }
}
