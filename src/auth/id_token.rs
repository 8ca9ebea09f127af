//! ID token validation (OIDC Core §3.1.3.7): signature with the issuer's keys, `iss`, `aud`
//! containing our client id, `azp`, `exp`, `iat` and `nonce`. Also used for back-channel logout
//! tokens, which share the JWT rules but carry an `events` claim instead of a nonce.

use serde_json::Value;

use super::{jwt, AuthError, Authenticator, Invalid};

/// What the caller expects of the token.
pub struct Expect<'a> {
    pub issuer: usize,
    pub client_id: &'a str,
    /// The nonce sent in the authorization request; `None` for refresh responses (OIDC Core
    /// §12.2: a refreshed ID token need not carry one) and for logout tokens, which must not.
    pub nonce: Option<&'a str>,
    /// Logout tokens may name a provider session (`sid`) instead of a subject.
    pub logout: bool,
}

/// Verifies `token` and returns its claims.
pub async fn validate(auth: &Authenticator, token: &str, expect: &Expect<'_>, now: u64) -> Result<Value, AuthError> {
    let invalid = AuthError::InvalidToken;
    let parsed = jwt::parse(token).map_err(invalid)?;
    let issuer = &auth.issuer(expect.issuer).config;
    if parsed.issuer().map_err(invalid)? != issuer.url {
        return Err(invalid(Invalid::UnknownIssuer));
    }
    let key = auth.verification_key(expect.issuer, &parsed).await?;
    parsed.verify_signature(&key).map_err(invalid)?;
    check(&parsed.claims, issuer, expect, now).map_err(invalid)?;
    Ok(parsed.claims)
}

fn check(claims: &Value, issuer: &crate::config::Issuer, expect: &Expect<'_>, now: u64) -> Result<(), Invalid> {
    let leeway = issuer.leeway.as_secs();
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        None => return Err(Invalid::MissingClaim("aud")),
        Some(_) => return Err(Invalid::Malformed("aud must be a string or an array")),
    };
    if !auds.contains(&expect.client_id) {
        return Err(Invalid::WrongAudience);
    }
    let azp = claims.get("azp").and_then(Value::as_str);
    if (auds.len() > 1 && azp.is_none()) || azp.is_some_and(|a| a != expect.client_id) {
        return Err(Invalid::WrongAudience);
    }
    let time = |name: &'static str| {
        claims.get(name).map(|v| v.as_u64().ok_or(Invalid::Malformed("a time claim is not a whole number")))
    };
    let exp = time("exp").ok_or(Invalid::MissingClaim("exp"))??;
    if now >= exp.saturating_add(leeway) {
        return Err(Invalid::Expired);
    }
    let iat = time("iat").ok_or(Invalid::MissingClaim("iat"))??;
    if iat > now.saturating_add(leeway) {
        return Err(Invalid::IssuedInFuture);
    }
    if !expect.logout && claims.get("sub").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(Invalid::MissingClaim("sub"));
    }
    match (expect.nonce, claims.get("nonce")) {
        (Some(want), Some(Value::String(got))) if constant_time_eq(want.as_bytes(), got.as_bytes()) => Ok(()),
        (Some(_), _) => Err(Invalid::Malformed("nonce does not match")),
        (None, _) => Ok(()),
    }
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
