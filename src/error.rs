//! Every failure that becomes a response is mapped here, in one place: status, headers and a
//! short body that names what failed (the route) and never internals. A gRPC caller gets the
//! same answer in gRPC's form: HTTP 200, `grpc-status` and the body's text as `grpc-message`
//! (trailers-only), with the same `WWW-Authenticate`, `Allow` and `Retry-After` headers.

use http::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::auth::dpop::{ProofError, DPOP_NONCE};
use crate::auth::{AuthError, Invalid};
use crate::body::Body;
use crate::config::dpop::{Dpop, DpopMode};
use crate::config::Route;
use crate::path::PathError;
use crate::upstream::grpc::{self, Code};

/// Why the gateway answered instead of the upstream.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request path is ambiguous or malformed.
    #[error("bad path: {0}")]
    BadPath(#[from] PathError),
    /// The request lacks something every request needs (such as a host).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// No route matches the host and path.
    #[error("no route")]
    NoRoute,
    /// The routes of the host and path serve other methods only; `Allow` names them.
    #[error("method not allowed")]
    MethodNotAllowed(HeaderValue),
    /// The request body exceeds the route's `max_body`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The upstream could not be reached (refused, DNS, TLS handshake, connect timeout).
    #[error("upstream connect failed")]
    UpstreamConnect(#[source] crate::upstream::proxy::ConnectError),
    /// The upstream did not send response headers within the route's timeout.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The gRPC caller's deadline (`grpc-timeout`, shorter than the route's timeout) passed
    /// before the upstream sent response headers.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// Every connection this worker may open to the upstream (`max_connections_per_host`)
    /// stayed busy for the pool wait timeout.
    #[error("upstream busy")]
    UpstreamBusy,
    /// The upstream connection failed after connecting (reset, protocol error).
    #[error("upstream failed")]
    Upstream(#[source] hyper::Error),
    /// The caller is not authenticated or not allowed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// No client-credentials token could be had for the upstream.
    #[error("no upstream token")]
    UpstreamToken(#[source] crate::upstream::credentials::CredentialError),
    /// A ready response: a redirect to sign in, or a page for a browser.
    #[error("answered by the gateway ({})", .0.status())]
    Respond(Box<Response<Body>>),
}

impl From<crate::upstream::proxy::ProxyError> for GatewayError {
    fn from(e: crate::upstream::proxy::ProxyError) -> GatewayError {
        use crate::upstream::proxy::ProxyError;
        match e {
            ProxyError::Connect(e) => GatewayError::UpstreamConnect(e),
            ProxyError::Timeout => GatewayError::UpstreamTimeout,
            ProxyError::Busy => GatewayError::UpstreamBusy,
            ProxyError::BodyTooLarge => GatewayError::PayloadTooLarge,
            ProxyError::Failed(e) => GatewayError::Upstream(e),
        }
    }
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadPath(_) | GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamConnect(_) | GatewayError::Upstream(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout | GatewayError::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Auth(AuthError::MissingToken | AuthError::InvalidToken(_)) => StatusCode::UNAUTHORIZED,
            GatewayError::Auth(AuthError::InvalidRequest(_)) => StatusCode::BAD_REQUEST,
            GatewayError::Auth(AuthError::InsufficientScope { .. } | AuthError::Forbidden(_)) => StatusCode::FORBIDDEN,
            GatewayError::Auth(AuthError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Respond(r) => r.status(),
            // The provider would not exchange this caller's token: the caller is not allowed.
            GatewayError::UpstreamToken(crate::upstream::credentials::CredentialError::Refused { .. }) => {
                StatusCode::FORBIDDEN
            }
            GatewayError::UpstreamToken(_) | GatewayError::UpstreamBusy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::BadPath(_) => "bad_path",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::NoRoute => "no_route",
            GatewayError::MethodNotAllowed(_) => "method_not_allowed",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::UpstreamConnect(_) => "upstream_connect",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::DeadlineExceeded => "deadline_exceeded",
            GatewayError::UpstreamBusy => "upstream_busy",
            GatewayError::Upstream(_) => "upstream_error",
            GatewayError::Auth(_) => "auth",
            GatewayError::Respond(_) => "respond",
            GatewayError::UpstreamToken(_) => "upstream_token",
        }
    }

    /// The gRPC status for this error, after gRPC's own mapping of HTTP statuses where one
    /// fits (404 → UNIMPLEMENTED, 429/502/503/504 → UNAVAILABLE).
    pub fn grpc_code(&self) -> Code {
        match self {
            GatewayError::BadPath(_) | GatewayError::BadRequest(_) => Code::InvalidArgument,
            GatewayError::NoRoute | GatewayError::MethodNotAllowed(_) => Code::Unimplemented,
            GatewayError::PayloadTooLarge => Code::ResourceExhausted,
            GatewayError::DeadlineExceeded => Code::DeadlineExceeded,
            // A refused token exchange is the 403 of the HTTP form: the caller may not pass.
            GatewayError::UpstreamToken(crate::upstream::credentials::CredentialError::Refused { .. }) => {
                Code::PermissionDenied
            }
            GatewayError::UpstreamConnect(_)
            | GatewayError::UpstreamTimeout
            | GatewayError::UpstreamBusy
            | GatewayError::Upstream(_)
            | GatewayError::UpstreamToken(_)
            | GatewayError::Auth(AuthError::Unavailable(_)) => Code::Unavailable,
            GatewayError::Auth(AuthError::MissingToken | AuthError::InvalidToken(_) | AuthError::InvalidRequest(_)) => {
                Code::Unauthenticated
            }
            GatewayError::Auth(AuthError::InsufficientScope { .. } | AuthError::Forbidden(_)) => Code::PermissionDenied,
            GatewayError::Respond(_) => Code::Internal,
        }
    }

    /// The response for this error on `route` (when one matched).
    pub fn into_response(self, route: Option<&Route>) -> Response<Body> {
        self.respond(route, false)
    }

    /// As [`GatewayError::into_response`]; in gRPC's form when `grpc` (the request's
    /// `content-type` is `application/grpc*`). A ready response (a sign-in redirect, a page
    /// for a browser) is sent as it is.
    pub fn respond(self, route: Option<&Route>, grpc: bool) -> Response<Body> {
        let status = self.status();
        let code = grpc.then(|| self.grpc_code());
        let this = match self {
            GatewayError::Auth(e) => return auth_response(status, e, route, code),
            GatewayError::Respond(r) => return *r,
            other => other,
        };
        let route = route.map(|r| r.name.as_str());
        let body = match (&this, route) {
            (GatewayError::BadPath(e), _) => format!("bad request: {e}\n"),
            (GatewayError::BadRequest(e), _) => format!("bad request: {e}\n"),
            (GatewayError::NoRoute, _) => "not found: no route for this host and path\n".to_string(),
            (GatewayError::MethodNotAllowed(allow), _) => {
                format!("method not allowed: this path serves {}\n", allow.to_str().unwrap_or("other methods"))
            }
            (GatewayError::PayloadTooLarge, Some(r)) => format!("request body too large for route {r}\n"),
            (GatewayError::UpstreamConnect(_), Some(r)) => {
                format!("bad gateway: upstream of route {r} is unavailable\n")
            }
            (GatewayError::Upstream(_), Some(r)) => format!("bad gateway: upstream of route {r} failed\n"),
            (
                GatewayError::UpstreamToken(crate::upstream::credentials::CredentialError::Refused { client, source }),
                r,
            ) => {
                format!(
                    "forbidden: the identity provider refused to exchange the caller's token for the upstream of route {} \
                     (client {client}): {source}\n",
                    r.unwrap_or("-")
                )
            }
            (GatewayError::UpstreamToken(_), Some(r)) => {
                format!("service unavailable: no access token could be obtained for the upstream of route {r}\n")
            }
            (GatewayError::UpstreamTimeout, Some(r)) => {
                format!("gateway timeout: upstream of route {r} did not answer in time\n")
            }
            (GatewayError::DeadlineExceeded, Some(r)) => {
                format!("deadline exceeded: upstream of route {r} did not answer within grpc-timeout\n")
            }
            (GatewayError::UpstreamBusy, Some(r)) => format!(
                "service unavailable: every connection to the upstream of route {r} is busy \
                 (upstream.max_connections_per_host); try again shortly\n"
            ),
            (e, _) => format!("{e}\n"),
        };
        let mut resp = match code {
            Some(code) => grpc::trailers_only(code, body.trim_end()),
            None => plain(status, body),
        };
        match this {
            GatewayError::UpstreamBusy => {
                resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            GatewayError::MethodNotAllowed(allow) => {
                resp.headers_mut().insert(ALLOW, allow);
            }
            _ => {}
        }
        resp
    }
}

/// RFC 6750 §3 (and RFC 9449 §7.1 where the route accepts DPoP): the challenges in
/// `WWW-Authenticate` and a small JSON body. The token is never echoed; descriptions come from
/// a fixed set. With `grpc`, the same challenges on a trailers-only gRPC answer whose message is
/// the description.
fn auth_response(status: StatusCode, e: AuthError, route: Option<&Route>, grpc: Option<Code>) -> Response<Body> {
    let bearer = route.and_then(|r| r.auth.bearer());
    let realm = bearer.map_or("tollgate", |b| b.realm.as_str());
    let (code, description, scope) = match &e {
        AuthError::MissingToken => (None, "an access token is required".to_string(), None),
        AuthError::InvalidRequest(why) => (Some("invalid_request"), why.to_string(), None),
        AuthError::InvalidToken(Invalid::Dpop(ProofError::Nonce)) => {
            (Some("use_dpop_nonce"), ProofError::Nonce.description(), None)
        }
        AuthError::InvalidToken(why @ Invalid::Dpop(_)) => (Some("invalid_dpop_proof"), why.description(), None),
        AuthError::InvalidToken(why) => (Some("invalid_token"), why.description(), None),
        AuthError::InsufficientScope { scope } => {
            (Some("insufficient_scope"), "the access token lacks a required scope".to_string(), Some(scope.as_str()))
        }
        AuthError::Forbidden(why) => (None, why.to_string(), None),
        AuthError::Unavailable(why) => (None, why.to_string(), None),
    };
    let body_code = match &e {
        AuthError::MissingToken => "unauthorized",
        AuthError::Forbidden(_) => "access_denied",
        AuthError::Unavailable(_) => "temporarily_unavailable",
        _ => code.unwrap_or("unauthorized"),
    };
    let mut resp = match grpc {
        Some(code) => grpc::trailers_only(code, &description),
        None => {
            let body = serde_json::json!({ "error": body_code, "error_description": description }).to_string();
            let mut resp = Response::new(Body::text(body));
            *resp.status_mut() = status;
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
    };
    let headers = resp.headers_mut();
    if !matches!(e, AuthError::Forbidden(_) | AuthError::Unavailable(_)) {
        let error = code.map(|code| Challenge { code, description: &description, scope });
        challenges(headers, realm, bearer.map(|b| &b.dpop), &e, error);
    }
    if matches!(e, AuthError::Unavailable(_)) {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}

/// The error a challenge carries.
struct Challenge<'a> {
    code: &'static str,
    description: &'a str,
    scope: Option<&'a str>,
}

/// `Bearer` (unless the route requires DPoP) and `DPoP` (unless the route disables it), the
/// error in the challenge of the scheme it concerns: proofs, the nonce and `dpop = "required"`
/// in `DPoP`'s, everything else in `Bearer`'s while bearer tokens are accepted.
fn challenges(headers: &mut HeaderMap, realm: &str, dpop: Option<&Dpop>, e: &AuthError, error: Option<Challenge<'_>>) {
    let dpop = dpop.filter(|d| d.mode != DpopMode::Disabled);
    let bearer_accepted = dpop.is_none_or(|d| d.mode != DpopMode::Required);
    let dpop_error =
        matches!(e, AuthError::InvalidToken(Invalid::Dpop(_) | Invalid::DpopUnbound | Invalid::DpopRequired))
            || !bearer_accepted;
    let with_error = |mut challenge: String, error: &Option<Challenge<'_>>| {
        if let Some(err) = error {
            challenge.push_str(&format!(", error=\"{}\", error_description=\"{}\"", err.code, err.description));
            if let Some(scope) = err.scope {
                challenge.push_str(&format!(", scope=\"{scope}\""));
            }
        }
        challenge
    };
    let none = None;
    if bearer_accepted {
        let challenge = with_error(format!("Bearer realm=\"{realm}\""), if dpop_error { &none } else { &error });
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            headers.append(WWW_AUTHENTICATE, v);
        }
    }
    let Some(dpop) = dpop else { return };
    let challenge =
        with_error(format!("DPoP realm=\"{realm}\", algs=\"{}\"", dpop.algs), if dpop_error { &error } else { &none });
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        headers.append(WWW_AUTHENTICATE, v);
    }
    if let Some(nonces) = &dpop.nonce {
        // Every DPoP challenge of a nonce route carries one, so a client's first try can use it.
        if let Ok(v) = HeaderValue::from_str(&nonces.current(crate::util::unix_now())) {
            headers.insert(DPOP_NONCE.clone(), v);
        }
    }
}

/// A short plain-text response.
pub fn plain(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::text(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthError;

    fn grpc(e: GatewayError) -> Response<Body> {
        e.respond(Some(&Route::for_tests("orders", "/")), true)
    }

    #[test]
    fn grpc_refusals_are_trailers_only_with_the_http_headers_kept() {
        let r = grpc(GatewayError::Auth(AuthError::MissingToken));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "application/grpc");
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(r.headers()["grpc-message"], "an access token is required");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tollgate\"");
        assert!(http_body::Body::is_end_stream(r.body()));

        let r = grpc(GatewayError::UpstreamBusy);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(r.headers()["grpc-message"].to_str().unwrap().contains("route orders is busy"));

        let r = grpc(GatewayError::MethodNotAllowed(HeaderValue::from_static("GET")));
        assert_eq!(r.headers()["grpc-status"], "12");
        assert_eq!(r.headers()["allow"], "GET");
    }

    #[test]
    fn grpc_codes_follow_the_http_status_they_stand_for() {
        let cases = [
            (GatewayError::NoRoute, "12"),
            (GatewayError::PayloadTooLarge, "8"),
            (GatewayError::UpstreamTimeout, "14"),
            (GatewayError::DeadlineExceeded, "4"),
            (GatewayError::BadRequest("x"), "3"),
            (GatewayError::Auth(AuthError::InsufficientScope { scope: "a".into() }), "7"),
            (GatewayError::Auth(AuthError::Unavailable("keys")), "14"),
            (
                GatewayError::UpstreamToken(crate::upstream::credentials::CredentialError::Refused {
                    client: "orders".into(),
                    source: crate::upstream::exchange::ExchangeError::Refused {
                        error: "invalid_target".into(),
                        description: None,
                    },
                }),
                "7",
            ),
        ];
        for (e, code) in cases {
            let kind = e.kind();
            assert_eq!(grpc(e).headers()["grpc-status"], code, "{kind}");
        }
    }

    #[test]
    fn http_callers_get_the_http_form() {
        let r = GatewayError::NoRoute.respond(None, false);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers().get("grpc-status").is_none());
    }
}
