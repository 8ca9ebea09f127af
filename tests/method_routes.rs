//! Method-aware routes (`methods = [...]` on a `[[route]]`) through the real binary, the real
//! OpenID Provider (`tests/idp`, tokens from its token endpoint) and raw HTTP/1.1 requests:
//! public reads and authenticated writes on one path, 405 with `Allow` where only other methods
//! are served (never a fall-through to a shorter, public prefix), HEAD served by the GET route,
//! forward-auth judging the original method from `X-Forwarded-Method` / `X-Original-Method`,
//! also behind real nginx `auth_request`, and the configuration errors.
//!
//! Before this change `methods` was an unknown key (the file was refused) and two routes could
//! not share a host and path; the forward-auth test shows the old code judging a POST by the
//! path alone.

mod common;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/services.rs"]
mod services;

use std::net::SocketAddr;

use common::issuer_toml;
use common::wait_ready;
use common::{check, echo, raw, Echo, Gateway, RawResponse, TempDir, BASE};
use idp::{Idp, IdpOptions, API_RESOURCE};

/// The README's example: anyone reads `/articles/`, writers need a token with `api:write`; the
/// catch-all `/` is public, which a write to `/articles/` must never reach.
fn articles(idp: &Idp, up: SocketAddr) -> String {
    let issuer_block = issuer_toml("idp", &idp.issuer, API_RESOURCE);
    format!(
        r#"{BASE}
{issuer_block}
[[route]]
name = "articles-read"
path = "/articles/"
methods = ["GET"]
auth = "none"
upstream = "http://{up}"

[[route]]
name = "articles-write"
path = "/articles/"
methods = ["post", "PUT", "DELETE"]
auth = "bearer"
rules = {{ scopes = ["api:write"] }}
upstream = "http://{up}"

[[route]]
name = "everything-else"
path = "/"
auth = "none"
upstream = "http://{up}"

[[route]]
name = "split"
path = "/split/"
methods = ["GET"]
auth = "none"
upstream = "http://{up}"

[[route]]
name = "split-rest"
path = "/split/"
auth = "bearer"
upstream = "http://{up}"
"#,
    )
}

struct Bed {
    idp: Idp,
    gw: Gateway,
    _up: Echo,
}

fn bed() -> Bed {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = Gateway::start(&articles(&idp, up.addr));
    wait_ready(&gw);
    Bed { idp, gw, _up: up }
}

fn token(idp: &Idp, scope: &str) -> String {
    idp.access_token("m2m", "m2m-secret", Some(scope), Some(API_RESOURCE))
}

/// `METHOD path` with `headers`, an empty body and `Connection: close`.
fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n");
    if !matches!(method, "GET" | "HEAD") {
        req.push_str("Content-Length: 0\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes())
}

/// The method the echo upstream received.
fn upstream_method(r: &RawResponse) -> String {
    assert_eq!(r.status, 200, "expected the upstream's answer: {r:?}");
    r.json()["method"].as_str().unwrap().to_string()
}

#[test]
fn public_reads_and_authenticated_writes_on_one_path() {
    let b = bed();
    let addr = b.gw.addr;
    // Reads: no token needed; HEAD goes with GET.
    assert_eq!(upstream_method(&call(addr, "GET", "/articles/7", &[])), "GET");
    let head = call(addr, "HEAD", "/articles/7", &[]);
    assert_eq!(head.status, 200, "{head:?}");
    // Writes: a token with api:write; without one the write route's challenge, not the
    // public catch-all's upstream.
    for method in ["POST", "PUT", "DELETE"] {
        let r = call(addr, method, "/articles/7", &[]);
        assert_eq!(r.status, 401, "{method} without a token: {r:?}");
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{r:?}");
    }
    let reader = format!("Bearer {}", token(&b.idp, "api:read"));
    let r = call(addr, "POST", "/articles/7", &[("Authorization", &reader)]);
    assert_eq!(r.status, 403, "api:read may not write: {r:?}");
    assert!(r.header("www-authenticate").unwrap_or("").contains("insufficient_scope"), "{r:?}");
    let writer = format!("Bearer {}", token(&b.idp, "api:write"));
    for method in ["POST", "PUT", "DELETE"] {
        let r = call(addr, method, "/articles/7", &[("Authorization", &writer)]);
        assert_eq!(upstream_method(&r), method);
        assert_eq!(r.json()["headers"]["x-forwarded-user"][0], "m2m", "{r:?}");
    }
    // A route without `methods` on the same path takes every method the others do not list.
    assert_eq!(upstream_method(&call(addr, "GET", "/split/x", &[])), "GET");
    assert_eq!(call(addr, "POST", "/split/x", &[]).status, 401);
    assert_eq!(call(addr, "BREW", "/split/x", &[]).status, 401, "an extension method too");
    // The access log and metrics name the route that served each method.
    let logs = b.gw.logs();
    assert!(logs.contains("\"route\":\"articles-write\""), "{logs}");
    assert!(logs.contains("\"route\":\"articles-read\""), "{logs}");
}

#[test]
fn only_other_methods_is_405_with_allow_never_the_catch_all() {
    let b = bed();
    let addr = b.gw.addr;
    let writer = format!("Bearer {}", token(&b.idp, "api:write"));
    for method in ["PATCH", "OPTIONS", "BREW"] {
        let r = call(addr, method, "/articles/7", &[("Authorization", &writer)]);
        assert_eq!(r.status, 405, "{method} on /articles/ must not reach the public catch-all: {r:?}");
        assert_eq!(r.header("allow"), Some("GET, HEAD, POST, PUT, DELETE"), "{r:?}");
        assert!(r.body.contains("GET, HEAD, POST, PUT, DELETE"), "{r:?}");
    }
    // Methods are case-sensitive (RFC 9110 §9.1): `get` is not GET.
    assert_eq!(call(addr, "get", "/articles/7", &[]).status, 405);
    // Other paths still fall to the catch-all, for every method.
    assert_eq!(upstream_method(&call(addr, "PATCH", "/elsewhere", &[])), "PATCH");
}

/// `/oauth2/auth` for a proxy: the original method picks the route, as when tollgate proxies.
#[test]
fn forward_auth_judges_the_original_method() {
    let b = bed();
    let ask = |headers: &[(&str, &str)]| {
        let mut all = vec![("X-Forwarded-Host", "app.test"), ("X-Forwarded-Uri", "/articles/7")];
        all.extend_from_slice(headers);
        call(b.gw.addr, "GET", "/oauth2/auth", &all)
    };
    // Traefik: X-Forwarded-Method.
    assert_eq!(ask(&[("X-Forwarded-Method", "GET")]).status, 202);
    let post = ask(&[("X-Forwarded-Method", "POST")]);
    assert_eq!(post.status, 401, "a POST must be judged by the write route, not the public read: {post:?}");
    let writer = format!("Bearer {}", token(&b.idp, "api:write"));
    let ok = ask(&[("X-Forwarded-Method", "POST"), ("Authorization", &writer)]);
    assert_eq!(ok.status, 202, "{ok:?}");
    assert_eq!(ok.header("x-auth-request-user"), Some("m2m"));
    // ingress-nginx and nginx snippets: X-Original-Method.
    assert_eq!(ask(&[("X-Original-Method", "DELETE")]).status, 401);
    assert_eq!(ask(&[("X-Original-Method", "GET")]).status, 202);
    // Only other methods: 403 (nginx takes only 2xx, 401 and 403).
    assert_eq!(ask(&[("X-Forwarded-Method", "PATCH")]).status, 403);
    // Both, disagreeing (a client's copy next to the proxy's), or repeated: refused.
    assert_eq!(ask(&[("X-Forwarded-Method", "GET"), ("X-Original-Method", "POST")]).status, 403);
    assert_eq!(ask(&[("X-Forwarded-Method", "GET"), ("X-Forwarded-Method", "GET")]).status, 403);
    // No method said where the routes differ by method: refused rather than guessed (nginx's
    // own subrequest is always a GET).
    let unknown = ask(&[]);
    assert_eq!(unknown.status, 403, "{unknown:?}");
    assert!(unknown.body.contains("X-Forwarded-Method"), "{unknown:?}");
    // ... but where the method changes nothing, not needed.
    let plain =
        call(b.gw.addr, "GET", "/oauth2/auth", &[("X-Forwarded-Host", "app.test"), ("X-Forwarded-Uri", "/other")]);
    assert_eq!(plain.status, 202, "{plain:?}");
    // ?route=NAME with a route that lists methods: the method must be one of them.
    let named = |m: &str| call(b.gw.addr, "GET", "/oauth2/auth?route=articles-read", &[("X-Forwarded-Method", m)]);
    assert_eq!(named("GET").status, 202);
    assert_eq!(named("HEAD").status, 202);
    assert_eq!(named("POST").status, 403);
}

/// Real nginx `auth_request`: its subrequest is a GET whatever the client sent, so the method
/// reaches tollgate only in the header the location sets (as ingress-nginx's template does).
#[test]
fn nginx_auth_request_passes_the_method_in_x_original_method() {
    let b = bed();
    let up = echo();
    let nginx = services::Nginx::start(&format!(
        r#"
    server {{
        listen {{{{LISTEN}}}};
        location = /_auth {{
            internal;
            proxy_pass http://{gw}/oauth2/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
        location / {{
            auth_request /_auth;
            proxy_pass http://{up};
        }}
    }}
"#,
        gw = b.gw.addr,
        up = up.addr,
    ));
    let via = |method: &str, auth: Option<&str>| {
        let mut h = vec![];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        call(nginx.addr(), method, "/articles/7", &h)
    };
    assert_eq!(upstream_method(&via("GET", None)), "GET");
    assert_eq!(via("POST", None).status, 401, "nginx: {}", nginx.output());
    let writer = format!("Bearer {}", token(&b.idp, "api:write"));
    assert_eq!(upstream_method(&via("POST", Some(&writer))), "POST");
}

#[test]
fn method_errors_name_the_field() {
    let dir = TempDir::new("methods");
    let file = dir.path("t.toml");
    let route = |extra: &str| format!("\n[[route]]\nupstream = \"http://127.0.0.1:9\"\nauth = \"none\"\n{extra}\n");
    let config = [
        BASE.to_string(),
        route("name = \"a\"\npath = \"/a\"\nmethods = [\"GET\", \"FETCH\"]"),
        route("name = \"b\"\npath = \"/b\"\nmethods = []"),
        route("name = \"c\"\npath = \"/c\"\nmethods = [\"GET\", \"get\"]"),
        route("name = \"d1\"\npath = \"/d\"\nmethods = [\"GET\", \"POST\"]"),
        route("name = \"d2\"\npath = \"/d\"\nmethods = [\"post\"]"),
        route("name = \"e1\"\npath = \"/e\""),
        route("name = \"e2\"\npath = \"/e\""),
        // Fine: the same methods on another host, and HEAD split from GET.
        route("name = \"f1\"\npath = \"/d\"\nhost = \"f.test\"\nmethods = [\"GET\"]"),
        route("name = \"g1\"\npath = \"/g\"\nmethods = [\"GET\"]"),
        route("name = \"g2\"\npath = \"/g\"\nmethods = [\"HEAD\"]"),
    ]
    .concat();
    std::fs::write(&file, config).unwrap();
    let (code, out) = check(&file, &[]);
    assert_eq!(code, 1, "{out}");
    for want in [
        "route[0].methods[1]: unknown method \"FETCH\"",
        "route[1].methods: an empty list matches nothing",
        "route[2].methods[1]: GET is listed twice",
        "route[4].methods: route[3] with host None and path \"/d\" already serves POST",
        "route[6].path: route[5] already has host None and path \"/e\"",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(out.lines().filter(|l| l.contains("route[")).count(), 5, "only these five:\n{out}");
}
