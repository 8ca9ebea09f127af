//! CORS for browser apps on another origin (a route's `cors`, validated in `config/cors.rs`).
//!
//! Three hooks in the pipeline:
//! - [`preflight`], before authentication: `OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method` from an allowed origin is answered here, 204 without
//!   credentials (a browser never sends them on a preflight). The route is the one that will
//!   serve the method asked about, so each method's route has its own policy. From any other
//!   origin it is an ordinary `OPTIONS` request for the route's authentication.
//! - [`strip_upstream`], on upstream answers: a route with `cors` speaks for CORS alone, so the
//!   upstream's `Access-Control-*` headers are dropped (and never widen the policy).
//! - [`respond`], on every answer of such a route, the gateway's own 401, 403 and 5xx included:
//!   `Vary: Origin`, and for an allowed origin `Access-Control-Allow-Origin` (the origin itself,
//!   `*` only for `allowed_origins = ["*"]`), `-Allow-Credentials` and `-Expose-Headers` (with
//!   `WWW-Authenticate`, so that an app can read why it was refused).

use http::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{Method, Response, StatusCode};

use crate::body::Body;
use crate::config::{AllowHeaders, Origins, Route};
use crate::router::{Found, Router};

/// A preflight's answer depends on the origin and on what it asks for.
const PREFLIGHT_VARY: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The answer to a preflight from an allowed origin, with the route of the method it asks
/// about; `None` for anything else (then the request goes on as it is).
pub fn preflight<'r, R: std::borrow::Borrow<Route>>(
    router: &'r Router<R>,
    host: &str,
    path: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Option<(&'r R, Response<Body>)> {
    let asked = preflight_method(method, headers)?;
    let Found::Route(route) = router.find(host, &asked, path) else { return None };
    let resp = preflight_answer(route.borrow(), headers)?;
    Some((route, resp))
}

/// The method a preflight asks about (`Access-Control-Request-Method`) when `method` and
/// `headers` make one (`OPTIONS` with `Origin`); `None` for any other request.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(ORIGIN) {
        return None;
    }
    Method::from_bytes(headers.get(ACCESS_CONTROL_REQUEST_METHOD)?.as_bytes()).ok()
}

/// The 204 for a preflight (see [`preflight_method`]) on `route`, the route of the method it
/// asks about, when the route's policy admits the origin; `None` otherwise. Forward-auth uses
/// it for the preflight a proxy asks about.
pub fn preflight_answer(route: &Route, headers: &HeaderMap) -> Option<Response<Body>> {
    let origin = headers.get(ORIGIN)?;
    let cors = route.cors.as_ref().filter(|c| c.origins.allows(origin.as_bytes()))?;
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_METHODS, cors.allow_methods.clone());
    match &cors.allow_headers {
        AllowHeaders::None => {}
        AllowHeaders::List(v) => {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        AllowHeaders::Echo => {
            if let Some(asked) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
                h.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            }
        }
    }
    if let Some(age) = &cors.max_age {
        h.insert(ACCESS_CONTROL_MAX_AGE, age.clone());
    }
    h.insert(VARY, HeaderValue::from_static(PREFLIGHT_VARY));
    Some(resp)
}

/// Drops the upstream's CORS headers on a route with `cors`: the route's policy replaces them.
pub fn strip_upstream(route: &Route, headers: &mut HeaderMap) {
    if route.cors.is_none() {
        return;
    }
    for name in [
        ACCESS_CONTROL_ALLOW_ORIGIN,
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        ACCESS_CONTROL_EXPOSE_HEADERS,
        ACCESS_CONTROL_ALLOW_METHODS,
        ACCESS_CONTROL_ALLOW_HEADERS,
        ACCESS_CONTROL_MAX_AGE,
    ] {
        headers.remove(name);
    }
}

/// The CORS headers of any answer on `route` to a request with `origin` (its `Origin` header).
pub fn respond(route: &Route, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    let Some(cors) = &route.cors else { return };
    // Also without an allowed origin: a cache must not serve this answer to one.
    if !varies_by_origin(headers) {
        headers.append(VARY, HeaderValue::from_static("Origin"));
    }
    let Some(origin) = origin.filter(|o| cors.origins.allows(o.as_bytes())) else { return };
    let allow = match cors.origins {
        Origins::Any => HeaderValue::from_static("*"),
        Origins::List(_) => origin.clone(),
    };
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    if cors.allow_credentials {
        headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, cors.expose_headers.clone());
}

/// `Vary` already names `Origin` (or is `*`).
fn varies_by_origin(headers: &HeaderMap) -> bool {
    headers.get_all(VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .map(|t| t.trim_ascii())
            .any(|t| t == b"*" || t.eq_ignore_ascii_case(b"origin"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_is_added_once() {
        let mut h = HeaderMap::new();
        assert!(!varies_by_origin(&h));
        h.append(VARY, HeaderValue::from_static("Accept-Encoding"));
        assert!(!varies_by_origin(&h));
        h.append(VARY, HeaderValue::from_static("accept, ORIGIN"));
        assert!(varies_by_origin(&h));
        let mut star = HeaderMap::new();
        star.insert(VARY, HeaderValue::from_static("*"));
        assert!(varies_by_origin(&star));
        assert!(varies_by_origin(&HeaderMap::from_iter([(VARY, HeaderValue::from_static(PREFLIGHT_VARY))])));
    }
}
