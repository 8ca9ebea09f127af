//! Client authentication for every request tollgate makes to a provider as an OAuth client:
//! token (code exchange, refresh, client credentials), introspection, and later PAR and token
//! exchange. `client_secret_basic`, `client_secret_post` or `private_key_jwt` (RFC 7523).

use http::Uri;

use super::http::{Fetched, FormAuth, HttpError, IdpClient};
use crate::config::{ClientAuth, PrivateKey};

/// An OAuth client as the provider knows it.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub id: &'a str,
    pub auth: &'a ClientAuth,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The client assertion could not be signed.
    #[error("signing the client assertion: {0}")]
    Assertion(String),
}

impl Client<'_> {
    /// POSTs the form `params` to `endpoint`, authenticated as this client.
    pub async fn post_form(
        &self,
        http: &IdpClient,
        endpoint: &Uri,
        params: &[(&str, &str)],
    ) -> Result<Fetched, ClientAuthError> {
        let mut form: Vec<(&str, &str)> = Vec::with_capacity(params.len() + 3);
        form.extend_from_slice(params);
        let assertion;
        let auth = match self.auth {
            ClientAuth::ClientSecretBasic(secret) => FormAuth::Basic { id: self.id, secret: secret.expose() },
            ClientAuth::ClientSecretPost(secret) => {
                form.push(("client_id", self.id));
                form.push(("client_secret", secret.expose()));
                FormAuth::None
            }
            ClientAuth::PrivateKeyJwt(key) => {
                assertion = client_assertion(self.id, endpoint, key)?;
                form.push(("client_id", self.id));
                form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
                form.push(("client_assertion", &assertion));
                FormAuth::None
            }
        };
        Ok(http.post_form(endpoint, &form, auth).await?)
    }
}

/// RFC 7523 §2.2: a short-lived JWT signed with the client's key, audience the endpoint it is
/// sent to, and a fresh `jti` so it cannot be replayed.
fn client_assertion(client_id: &str, endpoint: &Uri, key: &PrivateKey) -> Result<String, ClientAuthError> {
    let now = crate::util::unix_now();
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti).map_err(|_| ClientAuthError::Assertion("no randomness".into()))?;
    let jti = crate::util::hex(&jti);
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": endpoint.to_string(),
        "jti": jti, "iat": now, "exp": now + 60,
    });
    jsonwebtoken::encode(&jsonwebtoken::Header::new(key.alg), &claims, &key.key)
        .map_err(|e| ClientAuthError::Assertion(e.to_string()))
}
