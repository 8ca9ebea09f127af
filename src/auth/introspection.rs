//! RFC 7662 token introspection for tokens that are not JWTs.

use std::time::Duration;

use http::Uri;
use serde_json::Value;

use super::claims;
use super::issuer::IssuerId;
use super::principal::Principal;
use crate::config::Issuer;
use crate::oidc::client_auth::{Client, ClientAuthError};
use crate::oidc::http::IdpClient;

/// What the issuer said about a token.
#[derive(Debug, Clone)]
pub enum Answer {
    Active(std::sync::Arc<Principal>),
    Inactive,
}

#[derive(Debug, thiserror::Error)]
pub enum IntrospectionError {
    /// The request could not be made (connection, timeout, client assertion).
    #[error(transparent)]
    Request(#[from] ClientAuthError),
    /// The endpoint refused our client authentication or failed.
    #[error("introspection endpoint answered {0}")]
    Status(http::StatusCode),
    /// The answer is not an RFC 7662 response.
    #[error("invalid introspection response: {0}")]
    Invalid(&'static str),
}

/// Asks `endpoint` about `token`. An active answer for another issuer or audience counts as
/// inactive: it is not a token for us.
pub async fn introspect(
    client: &IdpClient,
    endpoint: &Uri,
    issuer_id: IssuerId,
    issuer: &Issuer,
    token: &str,
    now: u64,
) -> Result<Answer, IntrospectionError> {
    let Some(cfg) = &issuer.introspection else { return Err(IntrospectionError::Invalid("not configured")) };
    let form = [("token", token), ("token_type_hint", "access_token")];
    let fetched = Client { id: &cfg.client_id, auth: &cfg.auth }.post_form(client, endpoint, &form).await?;
    if !fetched.status.is_success() {
        return Err(IntrospectionError::Status(fetched.status));
    }
    let doc: Value = serde_json::from_slice(&fetched.body).map_err(|_| IntrospectionError::Invalid("not JSON"))?;
    Ok(interpret(doc, issuer_id, issuer, now))
}

fn interpret(doc: Value, issuer_id: IssuerId, issuer: &Issuer, now: u64) -> Answer {
    if doc.get("active") != Some(&Value::Bool(true)) {
        return Answer::Inactive;
    }
    let leeway = issuer.leeway.as_secs();
    let Ok(times) = claims::verify(&doc, &claims::Expect::introspection(&issuer.url, &issuer.audiences, leeway), now)
    else {
        // Another issuer's or audience's token, expired, or malformed claims: not one for us.
        return Answer::Inactive;
    };
    let max = issuer.introspection.as_ref().map_or(Duration::from_secs(60), |c| c.cache_max).as_secs();
    let exp = times.exp.unwrap_or(now + max);
    // Trusted (and so cached) until the token's `exp`, but never longer than `cache_max`, so a
    // revocation at the issuer is noticed within that bound.
    let trusted_until = exp.min(now.saturating_add(max));
    match Principal::from_claims(issuer_id, doc, trusted_until) {
        Some(p) => Answer::Active(std::sync::Arc::new(p)),
        None => Answer::Inactive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issuer() -> Issuer {
        let text = "[[issuer]]\nurl = \"http://127.0.0.1:1\"\naudiences = [\"api\"]\n[issuer.introspection]\nclient_id = \"c\"\nclient_secret = \"s\"\n[[route]]\nauth = \"none\"\nupstream = \"http://127.0.0.1:2\"\n";
        crate::config::Config::from_str(text, std::path::Path::new("t.toml"), &|_| None).unwrap().issuers.remove(0)
    }

    #[test]
    fn interprets_answers() {
        let iss = issuer();
        let active = |doc: Value| matches!(interpret(doc, 0, &iss, 100), Answer::Active(_));
        assert!(active(json!({"active": true, "sub": "u", "exp": 200, "scope": "a b"})));
        assert!(active(json!({"active": true, "client_id": "svc", "aud": ["api", "x"]})));
        assert!(!active(json!({"active": false, "sub": "u"})));
        assert!(!active(json!({"active": "true", "sub": "u"})));
        assert!(!active(json!({"active": true, "sub": "u", "exp": 50})));
        assert!(!active(json!({"active": true, "sub": "u", "aud": "other"})));
        assert!(!active(json!({"active": true, "sub": "u", "iss": "https://evil"})));
        assert!(!active(json!({"active": true})));
        let until = |doc: Value| match interpret(doc, 0, &iss, 100) {
            Answer::Active(p) => p.expires_at,
            Answer::Inactive => panic!("inactive"),
        };
        assert_eq!(until(json!({"active": true, "sub": "u", "exp": 200})), 200);
        assert_eq!(until(json!({"active": true, "sub": "u", "exp": 100_000})), 400, "capped at cache_max (5m)");
        // A fractional `exp` is a NumericDate like any other (it was read as absent: cache_max).
        assert_eq!(until(json!({"active": true, "sub": "u", "exp": 200.5})), 200);
        assert!(!active(json!({"active": true, "sub": "u", "exp": 10.5})));
        assert!(!active(json!({"active": true, "sub": "u", "exp": "200"})), "a string exp is malformed");
    }
}
