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
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The one route of a config with one issuer and a route `auth`, with `route`'s other keys.
    fn route_with_auth(auth: &str, route: &str) -> Route {
        let toml = format!(
            "[[issuer]]\nurl = \"https://a.example\"\naudiences = [\"api\"]\n\n\
             [[route]]\nauth = \"{auth}\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n{route}\n"
        );
        let mut c = Config::from_str(&toml, std::path::Path::new("t.toml"), &|_| None).unwrap();
        c.routes.remove(0)
    }

    /// A bearer route with `route`'s other keys.
    fn route(route: &str) -> Route {
        route_with_auth("bearer", route)
    }

    const APP: &str = "https://app.example.com";

    fn preflight_for(route: &Route, asked_headers: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ORIGIN, HeaderValue::from_static(APP));
        h.insert(ACCESS_CONTROL_REQUEST_METHOD, HeaderValue::from_static("POST"));
        if let Some(a) = asked_headers {
            h.insert(ACCESS_CONTROL_REQUEST_HEADERS, HeaderValue::from_static(a));
        }
        let mut resp = preflight_answer(route, &h).expect("an allowed preflight");
        respond(route, h.get(ORIGIN), resp.headers_mut());
        resp.headers().clone()
    }

    fn answer_for(route: &Route) -> HeaderMap {
        let mut h = HeaderMap::new();
        respond(route, Some(&HeaderValue::from_static(APP)), &mut h);
        h
    }

    fn get<'h>(h: &'h HeaderMap, name: http::header::HeaderName) -> Option<&'h str> {
        h.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn a_dpop_route_allows_the_proof_and_exposes_the_nonce() {
        let cors = "cors = { allowed_origins = [\"https://app.example.com\"], allowed_headers = [\"Authorization\"] }";
        // DPoP is accepted by default on a bearer route.
        let r = route(cors);
        let pre = preflight_for(&r, Some("authorization, dpop"));
        assert_eq!(get(&pre, ACCESS_CONTROL_ALLOW_HEADERS), Some("authorization, dpop"));
        let h = answer_for(&r);
        assert_eq!(get(&h, ACCESS_CONTROL_EXPOSE_HEADERS), Some("www-authenticate, dpop-nonce"));
        assert_eq!(get(&h, ACCESS_CONTROL_ALLOW_ORIGIN), Some(APP));
        // Required: the same.
        let r = route(&format!("dpop = \"required\"\n{cors}"));
        assert_eq!(get(&preflight_for(&r, None), ACCESS_CONTROL_ALLOW_HEADERS), Some("authorization, dpop"));
        // Nothing listed: DPoP alone (Authorization is the user's to list).
        let r = route("cors = { allowed_origins = [\"https://app.example.com\"] }");
        assert_eq!(get(&preflight_for(&r, None), ACCESS_CONTROL_ALLOW_HEADERS), Some("dpop"));
        // Listed already, in any case: once.
        let r = route(
            "cors = { allowed_origins = [\"https://app.example.com\"], allowed_headers = [\"DPoP\", \"Authorization\"], \
             exposed_headers = [\"X-Total-Count\", \"DPoP-Nonce\"] }",
        );
        assert_eq!(get(&preflight_for(&r, None), ACCESS_CONTROL_ALLOW_HEADERS), Some("dpop, authorization"));
        assert_eq!(
            get(&answer_for(&r), ACCESS_CONTROL_EXPOSE_HEADERS),
            Some("www-authenticate, x-total-count, dpop-nonce")
        );
        // "*": whatever the preflight asks, DPoP among it; exposed beside the user's.
        let r = route(
            "cors = { allowed_origins = [\"https://app.example.com\"], allowed_headers = [\"*\"], exposed_headers = [\"X-Total-Count\"] }",
        );
        assert_eq!(
            get(&preflight_for(&r, Some("dpop, authorization")), ACCESS_CONTROL_ALLOW_HEADERS),
            Some("dpop, authorization")
        );
        assert_eq!(
            get(&answer_for(&r), ACCESS_CONTROL_EXPOSE_HEADERS),
            Some("www-authenticate, dpop-nonce, x-total-count")
        );
    }

    #[test]
    fn a_route_without_dpop_lists_only_what_it_is_told() {
        let cors = "cors = { allowed_origins = [\"https://app.example.com\"], allowed_headers = [\"Authorization\"] }";
        let r = route(&format!("dpop = \"disabled\"\n{cors}"));
        assert_eq!(get(&preflight_for(&r, None), ACCESS_CONTROL_ALLOW_HEADERS), Some("authorization"));
        assert_eq!(get(&answer_for(&r), ACCESS_CONTROL_EXPOSE_HEADERS), Some("www-authenticate"));
        let r = route(&format!("dpop = \"disabled\"\ncors = {{ allowed_origins = [\"{APP}\"] }}"));
        assert_eq!(get(&preflight_for(&r, None), ACCESS_CONTROL_ALLOW_HEADERS), None);
        // A route with no bearer tokens has no DPoP either.
        let r = route_with_auth("none", &format!("cors = {{ allowed_origins = [\"{APP}\"] }}"));
        assert_eq!(get(&preflight_for(&r, None), ACCESS_CONTROL_ALLOW_HEADERS), None);
        assert_eq!(get(&answer_for(&r), ACCESS_CONTROL_EXPOSE_HEADERS), Some("www-authenticate"));
    }

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
