//! The client tollgate uses to talk to identity providers: discovery, JWKS, introspection and
//! token endpoints. Bounded in time and in response size; never follows redirects.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Largest IdP response read (a JWKS or discovery document is a few KiB).
const MAX_RESPONSE: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request could not be sent or the connection failed.
    #[error("request to {uri} failed: {source}")]
    Send {
        uri: Uri,
        #[source]
        source: Box<hyper_util::client::legacy::Error>,
    },
    /// No complete answer within the time limit.
    #[error("request to {uri} timed out after {after:?}")]
    Timeout { uri: Uri, after: Duration },
    /// The body could not be read, or was larger than allowed.
    #[error("reading the answer from {uri}: {reason}")]
    Body { uri: Uri, reason: String },
}

/// A complete, size-bounded response.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Client authentication for form posts to the token or introspection endpoint.
pub enum FormAuth<'a> {
    None,
    /// RFC 6749 §2.3.1: form-urlencoded id and secret in HTTP Basic.
    Basic {
        id: &'a str,
        secret: &'a str,
    },
}

#[derive(Clone, Debug)]
pub struct IdpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    /// `[telemetry]`: a client span per call.
    telemetry: Option<crate::telemetry::Telemetry>,
}

impl IdpClient {
    pub fn new(tls: rustls::ClientConfig, timeout: Duration) -> IdpClient {
        let https = crate::tls::https_connector(tls, timeout);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        IdpClient { client, timeout, telemetry: None }
    }

    pub fn with_telemetry(mut self, telemetry: Option<crate::telemetry::Telemetry>) -> IdpClient {
        self.telemetry = telemetry;
        self
    }

    /// GET `uri` with `Accept: application/json` and any extra headers.
    pub async fn get(&self, uri: &Uri, extra: &[(http::HeaderName, HeaderValue)]) -> Result<Fetched, HttpError> {
        let mut req = Request::builder().method(Method::GET).uri(uri.clone()).header(ACCEPT, "application/json");
        for (k, v) in extra {
            req = req.header(k, v);
        }
        // Metadata lives at a well-known path; every other GET fetches a key set.
        let call = if uri.path().contains("/.well-known/") { "discovery" } else { "jwks" };
        self.send(req.body(Full::new(Bytes::new())).map_err(|e| body_err(uri, e))?, call).await
    }

    /// POST an `application/x-www-form-urlencoded` body.
    pub async fn post_form(&self, uri: &Uri, form: &[(&str, &str)], auth: FormAuth<'_>) -> Result<Fetched, HttpError> {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(ACCEPT, "application/json")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let FormAuth::Basic { id, secret } = auth {
            let pair = format!("{}:{}", form_encode(id), form_encode(secret));
            let value = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair));
            req = req.header(AUTHORIZATION, value);
        }
        let body = encode_form(form);
        // A grant goes to the token endpoint; a form without one asks about a token (RFC 7662).
        let call = if form.iter().any(|(k, _)| *k == "grant_type") { "token" } else { "introspection" };
        self.send(req.body(Full::new(Bytes::from(body))).map_err(|e| body_err(uri, e))?, call).await
    }

    async fn send(&self, req: Request<Full<Bytes>>, call: &'static str) -> Result<Fetched, HttpError> {
        let Some(t) = &self.telemetry else {
            return self.send_untraced(req).await;
        };
        let span = t.idp_call(&req, call);
        let fetched = self.send_untraced(req).await;
        span.finish(fetched.as_ref().map(|f| f.status).map_err(HttpError::kind));
        fetched
    }

    async fn send_untraced(&self, req: Request<Full<Bytes>>) -> Result<Fetched, HttpError> {
        let uri = req.uri().clone();
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|source| HttpError::Send { uri: uri.clone(), source: Box::new(source) })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| HttpError::Body { uri: uri.clone(), reason: e.to_string() })?
                .to_bytes();
            Ok(Fetched { status: parts.status, headers: parts.headers, body })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| HttpError::Timeout { uri: uri.clone(), after: self.timeout })?
    }
}

impl HttpError {
    /// A short name for the failure (span attributes, never the URI).
    pub fn kind(&self) -> &'static str {
        match self {
            HttpError::Send { .. } => "send",
            HttpError::Timeout { .. } => "timeout",
            HttpError::Body { .. } => "body",
        }
    }
}

fn body_err(uri: &Uri, e: http::Error) -> HttpError {
    HttpError::Body { uri: uri.clone(), reason: e.to_string() }
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub fn encode_form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&form_encode(k));
        out.push('=');
        out.push_str(&form_encode(v));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_encoding() {
        assert_eq!(super::encode_form(&[("a b", "c&d=e"), ("x", "ü")]), "a+b=c%26d%3De&x=%C3%BC");
    }
}
