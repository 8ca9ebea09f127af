//! OpenID Connect discovery (and RFC 8414 metadata): the issuer's endpoints, checked before use.

use http::Uri;
use serde::Deserialize;

use super::http::{HttpError, IdpClient};
use crate::config::{endpoint_url, Issuer};

/// The metadata tollgate uses, every endpoint already checked (https or loopback).
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub issuer: String,
    pub jwks_uri: Option<Uri>,
    pub authorization_endpoint: Option<Uri>,
    pub token_endpoint: Option<Uri>,
    pub userinfo_endpoint: Option<Uri>,
    pub introspection_endpoint: Option<Uri>,
    pub end_session_endpoint: Option<Uri>,
    /// RFC 9207: the provider adds `iss` to authorization responses.
    pub authorization_response_iss_parameter_supported: bool,
}

#[derive(Debug, Deserialize)]
struct RawMetadata {
    issuer: String,
    jwks_uri: Option<String>,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    introspection_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The document could not be fetched.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The provider answered with an error status.
    #[error("{url} answered {status}")]
    Status { url: String, status: http::StatusCode },
    /// The document is not the JSON we expect.
    #[error("{url}: invalid discovery document at {path}: {reason}")]
    Invalid { url: String, path: String, reason: String },
    /// The document names another issuer (mix-up or misconfiguration).
    #[error("{url} describes issuer {found:?}, not the configured {expected:?}")]
    IssuerMismatch { url: String, expected: String, found: String },
    /// An endpoint is not https (nor loopback).
    #[error("{field}: {reason}")]
    Endpoint { field: &'static str, reason: String },
}

/// The discovery URL for an issuer identifier (OIDC Discovery §4).
pub fn discovery_url(issuer: &str) -> Result<Uri, DiscoveryError> {
    let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    url.parse().map_err(|e: http::uri::InvalidUri| DiscoveryError::Invalid {
        url,
        path: String::new(),
        reason: e.to_string(),
    })
}

pub async fn discover(client: &IdpClient, issuer: &Issuer) -> Result<Metadata, DiscoveryError> {
    let uri = discovery_url(&issuer.url)?;
    let url = uri.to_string();
    let fetched = client.get(&uri, &[]).await?;
    if !fetched.status.is_success() {
        return Err(DiscoveryError::Status { url, status: fetched.status });
    }
    parse_metadata(&fetched.body, &url, &issuer.url, issuer.insecure_http)
}

/// A discovery document fetched from `url`, checked: it names `expected_issuer`, and every
/// endpoint is https (or loopback, or anything with `insecure_http`). Pure, for the fuzz targets.
pub fn parse_metadata(
    body: &[u8],
    url: &str,
    expected_issuer: &str,
    insecure_http: bool,
) -> Result<Metadata, DiscoveryError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let raw: RawMetadata = serde_path_to_error::deserialize(de).map_err(|e| DiscoveryError::Invalid {
        url: url.to_string(),
        path: e.path().to_string(),
        reason: e.inner().to_string(),
    })?;
    if raw.issuer != expected_issuer {
        return Err(DiscoveryError::IssuerMismatch {
            url: url.to_string(),
            expected: expected_issuer.to_string(),
            found: raw.issuer,
        });
    }
    let check = |field: &'static str, v: Option<String>| -> Result<Option<Uri>, DiscoveryError> {
        v.map(|s| endpoint_url(&s, insecure_http).map_err(|reason| DiscoveryError::Endpoint { field, reason }))
            .transpose()
    };
    Ok(Metadata {
        jwks_uri: check("jwks_uri", raw.jwks_uri)?,
        authorization_endpoint: check("authorization_endpoint", raw.authorization_endpoint)?,
        token_endpoint: check("token_endpoint", raw.token_endpoint)?,
        userinfo_endpoint: check("userinfo_endpoint", raw.userinfo_endpoint)?,
        introspection_endpoint: check("introspection_endpoint", raw.introspection_endpoint)?,
        end_session_endpoint: check("end_session_endpoint", raw.end_session_endpoint)?,
        authorization_response_iss_parameter_supported: raw.authorization_response_iss_parameter_supported,
        issuer: raw.issuer,
    })
}
