//! The token endpoint (RFC 6749 §3.2): code exchange, refresh and client credentials, with
//! `client_secret_basic`, `client_secret_post` or `private_key_jwt` (RFC 7523) authentication.

use http::Uri;
use serde::Deserialize;

use super::http::{FormAuth, HttpError, IdpClient};
use crate::config::ClientAuth;

/// A successful token response (RFC 6749 §5.1).
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: String,
    pub expires_in: Option<u64>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
}

/// Tokens stay out of logs and panics.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// An error response (RFC 6749 §5.2), e.g. `invalid_grant` for a spent code or refresh token.
    #[error("token endpoint refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { status: http::StatusCode, error: String, description: Option<String> },
    /// A success status without a usable body.
    #[error("invalid token response: {0}")]
    Invalid(String),
    /// The client assertion could not be signed.
    #[error("signing the client assertion: {0}")]
    Assertion(String),
}

impl TokenError {
    /// True for `invalid_grant`: the code or refresh token is spent, expired or revoked.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, TokenError::Refused { error, .. } if error == "invalid_grant")
    }
}

/// Client identity for the token endpoint.
pub struct Client<'a> {
    pub id: &'a str,
    pub auth: &'a ClientAuth,
}

/// POSTs `params` with client authentication and parses the answer.
pub async fn request(
    http: &IdpClient,
    endpoint: &Uri,
    client: &Client<'_>,
    params: &[(&str, &str)],
) -> Result<TokenResponse, TokenError> {
    let mut form: Vec<(&str, &str)> = params.to_vec();
    let assertion;
    let auth = match client.auth {
        ClientAuth::ClientSecretBasic(secret) => FormAuth::Basic { id: client.id, secret: secret.expose() },
        ClientAuth::ClientSecretPost(secret) => {
            form.push(("client_id", client.id));
            form.push(("client_secret", secret.expose()));
            FormAuth::None
        }
        ClientAuth::PrivateKeyJwt(key) => {
            assertion = client_assertion(client.id, endpoint, key)?;
            form.push(("client_id", client.id));
            form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
            form.push(("client_assertion", &assertion));
            FormAuth::None
        }
    };
    let fetched = http.post_form(endpoint, &form, auth).await?;
    if !fetched.status.is_success() {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
            error_description: Option<String>,
        }
        let body: Option<ErrorBody> = serde_json::from_slice(&fetched.body).ok();
        return Err(match body {
            Some(b) => TokenError::Refused { status: fetched.status, error: b.error, description: b.error_description },
            None => TokenError::Refused {
                status: fetched.status,
                error: format!("HTTP {}", fetched.status),
                description: None,
            },
        });
    }
    let resp: TokenResponse = serde_json::from_slice(&fetched.body).map_err(|e| TokenError::Invalid(e.to_string()))?;
    if resp.access_token.is_empty() {
        return Err(TokenError::Invalid("empty access_token".into()));
    }
    if !resp.token_type.is_empty() && !resp.token_type.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Invalid(format!("token_type {:?} is not Bearer", resp.token_type)));
    }
    Ok(resp)
}

/// RFC 7523 §2.2: a short-lived JWT signed with the client's key, audience the token endpoint.
fn client_assertion(client_id: &str, endpoint: &Uri, key: &crate::config::PrivateKey) -> Result<String, TokenError> {
    let now = crate::auth::unix_now();
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| TokenError::Assertion("no randomness".into()))?;
    let jti = crate::util::hex(&jti);
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": endpoint.to_string(),
        "jti": jti, "iat": now, "exp": now + 60,
    });
    jsonwebtoken::encode(&jsonwebtoken::Header::new(key.alg), &claims, &key.key)
        .map_err(|e| TokenError::Assertion(e.to_string()))
}
