//! ID token validation (OIDC Core §3.1.3.7): signature with the issuer's keys, `iss`, `aud`
//! containing our client id, `azp`, `exp`, `iat` and `nonce`. Also used for back-channel logout
//! tokens, which share the JWT rules but carry an `events` claim instead of a nonce.

use serde_json::Value;

use super::issuer::IssuerState;
use super::{claims, jwt, AuthError, Authenticator, Invalid};

/// What the caller expects of the token.
pub struct Expect<'a> {
    /// The login's issuer: its keys verify the token, and `iss` must be its URL.
    pub issuer: &'a IssuerState,
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
    let issuer = &expect.issuer.config;
    if parsed.issuer().map_err(invalid)? != issuer.url {
        return Err(invalid(Invalid::UnknownIssuer));
    }
    let key = auth.verification_key(expect.issuer, &parsed).await?;
    parsed.verify_signature(&key).map_err(invalid)?;
    check(&parsed.claims, issuer, expect, now).map_err(invalid)?;
    Ok(parsed.claims)
}

fn check(claims: &Value, issuer: &crate::config::Issuer, expect: &Expect<'_>, now: u64) -> Result<(), Invalid> {
    let rule = claims::Expect::id_token(&issuer.url, expect.client_id, issuer.leeway.as_secs());
    claims::verify(claims, &rule, now)?;
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
