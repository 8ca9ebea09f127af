//! Every failure that becomes a response is mapped here, in one place: status, headers and a
//! short body that names what failed (the route) and never internals.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};

use crate::body::Body;
use crate::router::PathError;

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
    /// The request body exceeds the route's `max_body`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The upstream could not be reached (refused, DNS, TLS handshake, connect timeout).
    #[error("upstream connect failed")]
    UpstreamConnect(#[source] hyper_util::client::legacy::Error),
    /// The upstream did not send response headers within the route's timeout.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The upstream connection failed after connecting (reset, protocol error).
    #[error("upstream failed")]
    Upstream(#[source] hyper_util::client::legacy::Error),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadPath(_) | GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamConnect(_) | GatewayError::Upstream(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::BadPath(_) => "bad_path",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::NoRoute => "no_route",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::UpstreamConnect(_) => "upstream_connect",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::Upstream(_) => "upstream_error",
        }
    }

    /// The response for this error on `route` (a route name, when one matched).
    pub fn into_response(self, route: Option<&str>) -> Response<Body> {
        let status = self.status();
        let body = match (&self, route) {
            (GatewayError::BadPath(e), _) => format!("bad request: {e}\n"),
            (GatewayError::BadRequest(e), _) => format!("bad request: {e}\n"),
            (GatewayError::NoRoute, _) => "not found: no route for this host and path\n".to_string(),
            (GatewayError::PayloadTooLarge, Some(r)) => format!("request body too large for route {r}\n"),
            (GatewayError::UpstreamConnect(_), Some(r)) => {
                format!("bad gateway: upstream of route {r} is unavailable\n")
            }
            (GatewayError::Upstream(_), Some(r)) => format!("bad gateway: upstream of route {r} failed\n"),
            (GatewayError::UpstreamTimeout, Some(r)) => {
                format!("gateway timeout: upstream of route {r} did not answer in time\n")
            }
            (e, None) => format!("{e}\n"),
        };
        plain(status, body)
    }
}

/// A short plain-text response.
pub fn plain(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::text(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}
