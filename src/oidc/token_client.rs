//! The token endpoint (RFC 6749 §3.2): code exchange, refresh and client credentials, with
//! the client authenticated as `client_auth` says.

use http::Uri;
use serde::Deserialize;

use super::client_auth::ClientAuthError;
use super::http::{HttpError, IdpClient};

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

pub use super::client_auth::Client;

/// POSTs `params` with client authentication and parses the answer.
pub async fn request(
    http: &IdpClient,
    endpoint: &Uri,
    client: &Client<'_>,
    params: &[(&str, &str)],
) -> Result<TokenResponse, TokenError> {
    let fetched = client.post_form(http, endpoint, params).await.map_err(|e| match e {
        ClientAuthError::Http(e) => TokenError::Http(e),
        ClientAuthError::Assertion(e) => TokenError::Assertion(e),
    })?;
    parse_response(fetched.status, &fetched.body)
}

/// The token endpoint's answer: a usable Bearer token for a success status, the provider's
/// error (RFC 6749 §5.2) otherwise. Pure, for the fuzz targets.
pub fn parse_response(status: http::StatusCode, body: &[u8]) -> Result<TokenResponse, TokenError> {
    if !status.is_success() {
        #[derive(Deserialize)]
        struct ErrorBody {
            error: String,
            error_description: Option<String>,
        }
        let body: Option<ErrorBody> = super::answer_object(body).ok();
        return Err(match body {
            Some(b) => TokenError::Refused {
                status,
                error: super::printable(&b.error),
                description: b.error_description.map(|d| super::printable(&d)),
            },
            None => TokenError::Refused { status, error: format!("HTTP {status}"), description: None },
        });
    }
    let resp: TokenResponse = super::answer_object(body).map_err(TokenError::Invalid)?;
    if resp.access_token.is_empty() {
        return Err(TokenError::Invalid("empty access_token".into()));
    }
    if !resp.token_type.is_empty() && !resp.token_type.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Invalid(format!("token_type {:?} is not Bearer", resp.token_type)));
    }
    Ok(resp)
}
