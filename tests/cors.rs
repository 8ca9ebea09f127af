//! CORS (`cors = { ... }` on a `[[route]]`) through the real binary, the real OpenID Provider
//! (`tests/idp`, tokens from its token endpoint) and raw HTTP/1.1 requests, one header rule at
//! a time. The same in real Chromium is in `tests/cors_browser.rs`.
//!
//! Before this change `cors` was an unknown key; the same routes without it answer a preflight
//! 401 (the browser then refuses the call) and no answer carries `Access-Control-Allow-Origin`,
//! so each test here fails on the old code.

mod common;
#[path = "support/idp.rs"]
mod idp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::issuer_toml;
use common::wait_ready;
use common::{check, dead_port, raw, Gateway, RawResponse, TempDir, BASE};
use hyper::body::Incoming;
use hyper::{Request, Response};
use idp::{Idp, IdpOptions, API_RESOURCE};

const APP: &str = "http://app.test:8080";

/// An upstream that counts its requests and answers with CORS headers of its own (too wide:
/// any origin, credentials, a secret header exposed), which a route with `cors` must replace.
struct Upstream {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

fn upstream() -> Upstream {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let addr = rt.block_on(common::upstream(Arc::new(move |req: Request<Incoming>| {
        seen.fetch_add(1, Ordering::SeqCst);
        let body = format!("{{\"method\":\"{}\",\"uri\":\"{}\"}}", req.method(), req.uri());
        Box::pin(async move {
            Response::builder()
                .header("content-type", "application/json")
                .header("access-control-allow-origin", "*")
                .header("access-control-allow-credentials", "true")
                .header("access-control-expose-headers", "x-secret")
                .header("access-control-allow-methods", "GET, PUT, DELETE, PATCH")
                .header("access-control-max-age", "86400")
                .header("vary", "Accept-Encoding")
                .header("x-total-count", "3")
                .body(common::full(body))
                .unwrap()
        })
    })));
    Upstream { addr, calls, _rt: rt }
}

fn config(idp: &Idp, up: SocketAddr) -> String {
    let dead = dead_port();
    let issuer_block = issuer_toml("idp", &idp.issuer, API_RESOURCE);
    format!(
        r#"{BASE}
{issuer_block}
[[route]]
name = "api"
path = "/api/"
auth = "bearer"
upstream = "http://{up}"
cors = {{ allowed_origins = ["{APP}", "https://*.example.com"], allowed_methods = ["GET", "POST", "DELETE"], allowed_headers = ["Authorization", "Content-Type"], exposed_headers = ["X-Total-Count"], max_age = "10m" }}

[[route]]
name = "api-write"
path = "/api/write/"
auth = "bearer"
rules = {{ scopes = ["api:write"] }}
upstream = "http://{up}"
cors = {{ allowed_origins = ["{APP}"] }}

[[route]]
name = "down"
path = "/down/"
auth = "none"
upstream = "http://{dead}"
cors = {{ allowed_origins = ["{APP}"] }}

[[route]]
name = "public"
path = "/public/"
auth = "none"
upstream = "http://{up}"
cors = {{ allowed_origins = ["{APP}"] }}

[[route]]
name = "no-cors"
path = "/no-cors/"
auth = "none"
upstream = "http://{up}"

[[route]]
name = "creds"
path = "/creds/"
auth = "none"
upstream = "http://{up}"
cors = {{ allowed_origins = ["{APP}"], allow_credentials = true, allowed_headers = ["*"] }}

[[route]]
name = "any"
path = "/any/"
auth = "none"
upstream = "http://{up}"
cors = {{ allowed_origins = ["*"], allowed_headers = ["*"] }}

[[route]]
name = "articles-read"
path = "/articles/"
methods = ["GET"]
auth = "none"
upstream = "http://{up}"
cors = {{ allowed_origins = ["{APP}", "http://reader.test"] }}

[[route]]
name = "articles-write"
path = "/articles/"
methods = ["POST", "PUT"]
auth = "bearer"
upstream = "http://{up}"
cors = {{ allowed_origins = ["{APP}"], allowed_headers = ["Authorization", "Content-Type"] }}
"#,
    )
}

struct Bed {
    idp: Idp,
    gw: Gateway,
    up: Upstream,
}

fn bed() -> Bed {
    let idp = Idp::start(IdpOptions::default());
    let up = upstream();
    let gw = Gateway::start(&config(&idp, up.addr));
    wait_ready(&gw);
    Bed { idp, gw, up }
}

fn token(idp: &Idp, scope: &str) -> String {
    idp.access_token("m2m", "m2m-secret", Some(scope), Some(API_RESOURCE))
}

/// `METHOD path` with `headers`, `Connection: close`.
fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes())
}

fn preflight(addr: SocketAddr, path: &str, origin: &str, method: &str, headers: Option<&str>) -> RawResponse {
    let mut h = vec![("Origin", origin), ("Access-Control-Request-Method", method)];
    if let Some(asked) = headers {
        h.push(("Access-Control-Request-Headers", asked));
    }
    call(addr, "OPTIONS", path, &h)
}

/// Every value of `name`, joined with ", ".
fn all(r: &RawResponse, name: &str) -> String {
    r.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn cors_headers(r: &RawResponse) -> Vec<&(String, String)> {
    r.headers.iter().filter(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-")).collect()
}

fn vary_has(r: &RawResponse, token: &str) -> bool {
    all(r, "vary").split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// An answer readable by `origin`: the origin itself (never `*`), WWW-Authenticate exposed,
/// `Vary: Origin`.
fn assert_readable_by(r: &RawResponse, origin: &str) {
    assert_eq!(r.header("access-control-allow-origin"), Some(origin), "{r:?}");
    let exposed = all(r, "access-control-expose-headers").to_ascii_lowercase();
    assert!(exposed.split(", ").any(|h| h == "www-authenticate"), "{r:?}");
    assert!(vary_has(r, "Origin"), "{r:?}");
}

#[test]
fn preflight_from_an_allowed_origin_is_answered_before_authentication() {
    let b = bed();
    for origin in [APP, "https://shop.example.com", "https://a.b.example.com"] {
        let r = preflight(b.gw.addr, "/api/orders", origin, "POST", Some("authorization, content-type"));
        assert_eq!(r.status, 204, "{origin}: the old code answered 401 here: {r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some(origin), "{r:?}");
        assert_eq!(r.header("access-control-allow-methods"), Some("GET, HEAD, POST, DELETE"), "{r:?}");
        assert_eq!(r.header("access-control-allow-headers"), Some("authorization, content-type, dpop"), "{r:?}");
        // The route accepts DPoP (a bearer route does by default): its proof header too.
        assert_eq!(r.header("access-control-max-age"), Some("600"), "{r:?}");
        assert_eq!(r.header("access-control-allow-credentials"), None, "{r:?}");
        assert_eq!(r.header("www-authenticate"), None, "no challenge on a preflight: {r:?}");
        for v in ["Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"] {
            assert!(vary_has(&r, v), "Vary lacks {v}: {r:?}");
        }
        assert!(r.body.is_empty(), "{r:?}");
    }
    assert_eq!(b.up.calls.load(Ordering::SeqCst), 0, "tollgate answers preflights itself");
    // Logged and counted as the route's own answer.
    b.gw.wait_log("\"method\":\"OPTIONS\"");
}

#[test]
fn preflight_from_any_other_origin_gets_no_cors_headers_and_is_authenticated() {
    let b = bed();
    for origin in [
        "http://evil.test",
        "http://app.test:8081",
        "https://app.test:8080",
        "HTTP://APP.TEST:8080",
        "https://example.com",
        "https://shop.example.com.evil.test",
        "https://shop.example.com:8443",
        "null",
    ] {
        let r = preflight(b.gw.addr, "/api/orders", origin, "POST", Some("authorization"));
        assert_eq!(r.status, 401, "{origin}: an ordinary OPTIONS for the bearer route: {r:?}");
        assert!(cors_headers(&r).is_empty(), "{origin}: {r:?}");
        assert!(vary_has(&r, "Origin"), "a cache must not give this answer to an allowed origin: {r:?}");
    }
    // From an allowed origin, OPTIONS without Access-Control-Request-Method is no preflight:
    // authenticated like any request, and readable by the app.
    let r = call(b.gw.addr, "OPTIONS", "/api/orders", &[("Origin", APP)]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_readable_by(&r, APP);
    assert_eq!(b.up.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn every_answer_to_an_allowed_origin_carries_the_cors_headers() {
    let b = bed();
    let from_app = |path: &str, auth: Option<&str>| {
        let mut h = vec![("Origin", APP)];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        call(b.gw.addr, "GET", path, &h)
    };
    // tollgate's own 401 (no token, a bad token): readable, WWW-Authenticate exposed.
    let r = from_app("/api/orders", None);
    assert_eq!(r.status, 401, "{r:?}");
    assert_readable_by(&r, APP);
    assert!(all(&r, "access-control-expose-headers").contains("x-total-count"), "{r:?}");
    let r = from_app("/api/orders", Some("Bearer not.a.jwt"));
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("www-authenticate").unwrap_or("").contains("invalid_token"), "{r:?}");
    assert_readable_by(&r, APP);
    // 403 from a rule.
    let reader = format!("Bearer {}", token(&b.idp, "api:read"));
    let r = from_app("/api/write/x", Some(&reader));
    assert_eq!(r.status, 403, "{r:?}");
    assert_readable_by(&r, APP);
    // The upstream's answer.
    let r = from_app("/api/orders", Some(&reader));
    assert_eq!(r.status, 200, "{r:?}");
    assert_readable_by(&r, APP);
    assert_eq!(r.header("x-total-count"), Some("3"));
    // 502 from an upstream that is down.
    let r = from_app("/down/x", None);
    assert_eq!(r.status, 502, "{r:?}");
    assert_readable_by(&r, APP);
    // 405 where the path's routes serve other methods: the first route's policy with cors.
    let r = call(b.gw.addr, "PATCH", "/articles/1", &[("Origin", APP)]);
    assert_eq!(r.status, 405, "{r:?}");
    assert_readable_by(&r, APP);
    // Without a route there is no policy: a 404 carries none.
    let r = call(b.gw.addr, "GET", "/nowhere", &[("Origin", APP)]);
    assert_eq!(r.status, 404, "{r:?}");
    assert!(cors_headers(&r).is_empty(), "{r:?}");
    // Other origins: nothing, whatever the status.
    let r = call(b.gw.addr, "GET", "/api/orders", &[("Origin", "http://evil.test")]);
    assert_eq!(r.status, 401);
    assert!(cors_headers(&r).is_empty(), "{r:?}");
}

#[test]
fn the_upstreams_cors_headers_are_replaced_by_the_routes() {
    let b = bed();
    let r = call(b.gw.addr, "GET", "/public/x", &[("Origin", APP)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(all(&r, "access-control-allow-origin"), APP, "not the upstream's `*`: {r:?}");
    assert_eq!(r.header("access-control-allow-credentials"), None, "the upstream's `true` is dropped: {r:?}");
    assert_eq!(all(&r, "access-control-expose-headers"), "www-authenticate", "not x-secret: {r:?}");
    assert_eq!(r.header("access-control-allow-methods"), None, "{r:?}");
    assert_eq!(r.header("access-control-max-age"), None, "{r:?}");
    assert!(vary_has(&r, "Accept-Encoding") && vary_has(&r, "Origin"), "the upstream's Vary is kept: {r:?}");
    // Another origin gets none of them, the upstream's `*` included; no Origin at all neither.
    for h in [&[("Origin", "http://evil.test")][..], &[]] {
        let r = call(b.gw.addr, "GET", "/public/x", h);
        assert_eq!(r.status, 200);
        assert!(cors_headers(&r).is_empty(), "{r:?}");
        assert!(vary_has(&r, "Origin"), "{r:?}");
    }
    // A route without cors passes the upstream's headers through, as before.
    let r = call(b.gw.addr, "GET", "/no-cors/x", &[("Origin", "http://evil.test")]);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r:?}");
    assert_eq!(r.header("access-control-expose-headers"), Some("x-secret"), "{r:?}");
    assert!(!vary_has(&r, "Origin"), "{r:?}");
}

#[test]
fn credentials_and_any_origin() {
    let b = bed();
    // allow_credentials: the origin itself and `true`, on the preflight and the answer.
    let p = preflight(b.gw.addr, "/creds/x", APP, "PUT", Some("x-csrf-token, authorization"));
    assert_eq!(p.status, 204, "{p:?}");
    assert_eq!(p.header("access-control-allow-origin"), Some(APP), "{p:?}");
    assert_eq!(p.header("access-control-allow-credentials"), Some("true"), "{p:?}");
    assert_eq!(p.header("access-control-allow-headers"), Some("x-csrf-token, authorization"), "echoed: {p:?}");
    assert_eq!(p.header("access-control-allow-methods"), Some("GET, HEAD, POST, PUT, PATCH, DELETE"), "{p:?}");
    let r = call(b.gw.addr, "GET", "/creds/x", &[("Origin", APP)]);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP), "{r:?}");
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"), "{r:?}");
    // `*` without credentials: `*` itself, for every origin.
    for origin in ["http://anyone.test", "null"] {
        let r = call(b.gw.addr, "GET", "/any/x", &[("Origin", origin)]);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"), "{r:?}");
        assert_eq!(r.header("access-control-allow-credentials"), None, "{r:?}");
        let p = preflight(b.gw.addr, "/any/x", origin, "DELETE", Some("x-a"));
        assert_eq!(p.status, 204, "{p:?}");
        assert_eq!(p.header("access-control-allow-origin"), Some("*"), "{p:?}");
        assert_eq!(p.header("access-control-allow-headers"), Some("x-a"), "{p:?}");
    }
}

/// A preflight asks about a method: the route that will serve that method answers it, with its
/// own policy.
#[test]
fn the_preflight_is_answered_by_the_route_of_the_method_it_asks_about() {
    let b = bed();
    let p = preflight(b.gw.addr, "/articles/1", APP, "POST", Some("authorization"));
    assert_eq!(p.status, 204, "{p:?}");
    assert_eq!(p.header("access-control-allow-methods"), Some("POST, PUT"), "the write route's: {p:?}");
    assert_eq!(p.header("access-control-allow-headers"), Some("authorization, content-type, dpop"), "{p:?}");
    let p = preflight(b.gw.addr, "/articles/1", APP, "GET", Some("x-a"));
    assert_eq!(p.status, 204, "{p:?}");
    assert_eq!(p.header("access-control-allow-methods"), Some("GET, HEAD"), "the read route's: {p:?}");
    assert_eq!(p.header("access-control-allow-headers"), None, "{p:?}");
    // reader.test may read, not write: its POST preflight is an ordinary OPTIONS (405 here,
    // which a browser takes as a failed preflight).
    let p = preflight(b.gw.addr, "/articles/1", "http://reader.test", "POST", None);
    assert_eq!(p.status, 405, "{p:?}");
    assert_eq!(p.header("access-control-allow-methods"), None, "{p:?}");
    assert_eq!(preflight(b.gw.addr, "/articles/1", "http://reader.test", "GET", None).status, 204);
    // A method no route serves: no preflight answer either.
    assert_eq!(preflight(b.gw.addr, "/articles/1", APP, "DELETE", None).status, 405);
    assert_eq!(b.up.calls.load(Ordering::SeqCst), 0);
}

#[test]
fn cors_errors_name_the_field() {
    let dir = TempDir::new("cors");
    let file = dir.path("t.toml");
    let route = |name: &str, cors: &str| {
        format!("\n[[route]]\nname = \"{name}\"\npath = \"/{name}\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\ncors = {{ {cors} }}\n")
    };
    let config = [
        BASE.to_string(),
        route("a", r#"allowed_origins = ["*"], allow_credentials = true"#),
        route("b", r#"allowed_origins = ["https://app.example.com/", "app.example.com", "ftp://x.test", "https://*.1.2.3.4"]"#),
        route("c", r#"allowed_origins = ["https://ok.test"], max_age = "10 minutes", allowed_methods = ["GET", "FETCH"]"#),
        route("d", r#"allowed_origins = ["https://ok.test"], allow_credentials = true, exposed_headers = ["*"], allowed_headers = ["bad header"]"#),
        route("e", r#"allowed_headers = ["Authorization"]"#),
        route("f", r#"allowed_origins = ["https://ok.test"], max_age = "1500ms""#),
        // Fine: these are accepted.
        route("g", r#"allowed_origins = ["https://OK.test:443", "http://*.ok.test:8080"], max_age = "0""#),
    ]
    .concat();
    std::fs::write(&file, config).unwrap();
    let (code, out) = check(&file, &[]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "route[0].cors.allowed_origins: \"*\" cannot be used with allow_credentials = true",
        "route[1].cors.allowed_origins[0]: invalid origin \"https://app.example.com/\": an origin has no path",
        "route[1].cors.allowed_origins[1]: invalid origin \"app.example.com\": no scheme",
        "route[1].cors.allowed_origins[2]: invalid origin \"ftp://x.test\": the scheme must be http or https",
        "route[1].cors.allowed_origins[3]: invalid origin",
        "route[2].cors.max_age: invalid duration \"10 minutes\"",
        "route[2].cors.allowed_methods[1]: unknown method \"FETCH\"",
        "route[3].cors.exposed_headers: \"*\" means every header only without credentials",
        "route[3].cors.allowed_headers[0]: \"bad header\" is not a header name",
        "route[4].cors.allowed_origins: required",
        "route[5].cors.max_age: \"1500ms\": browsers take whole seconds",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("route[6]"), "{out}");
    // An unknown key inside cors is named too.
    std::fs::write(
        &file,
        format!("{BASE}{}", route("x", r#"allowed_origins = ["https://ok.test"], allow_origin = "x""#)),
    )
    .unwrap();
    let (code, out) = check(&file, &[]);
    assert_eq!(code, 1);
    assert!(out.contains("route[0].cors") && out.contains("allow_origin"), "{out}");
}
