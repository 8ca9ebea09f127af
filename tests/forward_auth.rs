//! `/oauth2/auth` judges the proxy's original request by its route, through the real binary,
//! two real OpenID Providers (`tests/idp`) and real nginx `auth_request`: the route's `auth`,
//! issuers and rules hold exactly as when tollgate proxies; a request no route covers, a bad
//! path or contradicting forwarding headers are refused; `?route=NAME` names the route; a
//! bearer-only gateway (no `[login]`) answers too; and a route's CORS holds behind nginx (the
//! README's "CORS behind a proxy" snippet, run as written).
//!
//! Needs node with `cd tests/idp && npm ci` and nginx (`bash tests/run.sh` installs everything).

mod common;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/login.rs"]
mod login;
#[path = "support/services.rs"]
mod services;

use std::net::SocketAddr;

use common::issuer_toml;
use common::wait_ready;
use common::{dead_port, echo, get, Gateway, RawResponse, BASE};
use idp::{Idp, IdpOptions, API_RESOURCE};

const JSON: (&str, &str) = ("Accept", "application/json");
const HTML: (&str, &str) = ("Accept", "text/html,application/xhtml+xml");

/// Routes that differ in exactly what forward-auth used to skip: login vs bearer, the issuer,
/// scopes and groups; and a public one. No catch-all: `/elsewhere` belongs to no route.
fn routes(upstream: SocketAddr, login: bool) -> String {
    let login_routes = if login {
        format!(
            r#"
[[route]]
name = "app"
path = "/app/"
auth = "login"
upstream = "http://{upstream}"

[[route]]
name = "admin"
path = "/admin/"
auth = "login"
upstream = "http://{upstream}"
rules = {{ groups = ["admins"] }}
"#
        )
    } else {
        String::new()
    };
    format!(
        r#"{login_routes}
[[route]]
name = "writer"
path = "/write/"
auth = "bearer"
issuers = ["a"]
upstream = "http://{upstream}"
rules = {{ scopes = ["api:write"] }}

[[route]]
name = "a-only"
host = "a.test"
path = "/"
auth = "bearer"
issuers = ["a"]
upstream = "http://{upstream}"

[[route]]
name = "b-only"
host = "b.test"
path = "/"
auth = "bearer"
issuers = ["b"]
realm = "b-realm"
upstream = "http://{upstream}"

[[route]]
name = "public"
path = "/public/"
auth = "none"
upstream = "http://{upstream}"

[[route]]
name = "api"
path = "/api/"
auth = "bearer"
issuers = ["a"]
upstream = "http://{upstream}"
rules = {{ scopes = ["api:write"] }}
cors = {{ allowed_origins = ["https://app.example.com"], allowed_headers = ["Authorization", "Content-Type"], max_age = "10m" }}
"#
    )
}

fn issuers(a: &Idp, b: Option<&Idp>) -> String {
    let mut out = issuer_toml("a", &a.issuer, API_RESOURCE);
    if let Some(b) = b {
        out.push_str(&issuer_toml("b", &b.issuer, API_RESOURCE));
    }
    out
}

fn start_gateway(config: &str) -> Gateway {
    let gw = Gateway::start(config);
    wait_ready(&gw);
    gw
}

/// Provider A (sign-in and tokens), provider B (tokens only) and a gateway with `[login]` at A.
struct World {
    a: Idp,
    b: Idp,
    gw: Gateway,
    public: String,
    _app: common::Echo,
}

impl World {
    fn start() -> World {
        let port = dead_port().port();
        let public = format!("http://127.0.0.1:{port}");
        let a = Idp::start(
            IdpOptions::default()
                .with_env("IDP_WEB_REDIRECT_URIS", format!("{public}/oauth2/callback"))
                .with_env("IDP_WEB_POST_LOGOUT_URIS", format!("{public}/")),
        );
        let b = Idp::start(IdpOptions { jwks_file: Some(idp::key_file("rsa2.json")), ..IdpOptions::default() });
        let app = echo();
        let base = BASE.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1);
        let config = format!(
            r#"{base}
{issuers}
[login]
issuer = "a"
client_id = "web"
client_secret = "web-secret"
public_url = "{public}"
cookie_secret = "0123456789abcdef0123456789abcdef"
scopes = ["openid", "email", "profile", "groups"]
{routes}"#,
            issuers = issuers(&a, Some(&b)),
            routes = routes(app.addr, true),
        );
        let gw = start_gateway(&config);
        World { a, b, gw, public, _app: app }
    }
}

fn token(idp: &Idp, scope: &str) -> String {
    idp.access_token("m2m", "m2m-secret", Some(scope), Some(API_RESOURCE))
}

/// `/oauth2/auth` on `addr` with these headers.
fn ask(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> RawResponse {
    get(addr, &format!("/oauth2/auth{query}"), headers)
}

/// Asks about `GET uri` (Traefik's headers) with `credential` (`Cookie: …` or `Authorization: …`).
fn ask_traefik(addr: SocketAddr, host: &str, uri: &str, credential: (&str, &str)) -> RawResponse {
    ask(
        addr,
        "",
        &[("X-Forwarded-Host", host), ("X-Forwarded-Uri", uri), ("X-Forwarded-Proto", "http"), credential, JSON],
    )
}

/// A `(name, value)` header pair as the request helpers take it.
fn as_ref<'a>(c: &'a (&'static str, String)) -> (&'static str, &'a str) {
    (c.0, &c.1)
}

fn bearer(t: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {t}"))
}

/// The world with two signed-in users (bob: staff; adminann: staff and admins) and tokens of
/// both providers.
struct Callers {
    w: World,
    bob: (&'static str, String),
    admin: (&'static str, String),
    read: (&'static str, String),
    write: (&'static str, String),
    b_read: (&'static str, String),
}

impl Callers {
    fn start() -> Callers {
        let w = World::start();
        let bob = ("Cookie", login::login(&w.public, "/app/", "bob").cookie_header());
        let admin = ("Cookie", login::login(&w.public, "/app/", "adminann").cookie_header());
        let (read, write, b_read) =
            (bearer(&token(&w.a, "api:read")), bearer(&token(&w.a, "api:write")), bearer(&token(&w.b, "api:read")));
        Callers { w, bob, admin, read, write, b_read }
    }

    /// Traefik's question about `GET http://host/uri` with `cred`.
    fn ask(&self, host: &str, uri: &str, cred: &(&'static str, String)) -> RawResponse {
        ask_traefik(self.w.gw.addr, host, uri, as_ref(cred))
    }

    fn status(&self, host: &str, uri: &str, cred: &(&'static str, String)) -> u16 {
        self.ask(host, uri, cred).status
    }
}

#[test]
fn forward_auth_applies_the_routes_groups_scopes_and_kind_of_credential() {
    let c = Callers::start();
    // A login route with a group rule: the session decides, and its groups do.
    let ok = c.ask("gateway.test", "/app/page", &c.bob);
    assert_eq!(ok.status, 202, "{}", ok.body);
    assert_eq!(ok.header("x-auth-request-user"), Some("bob"));
    assert_eq!(ok.header("x-auth-request-email"), Some("bob@example.com"));
    assert_eq!(ok.header("x-auth-request-groups"), Some("staff"));
    let denied = c.ask("gateway.test", "/admin/users", &c.bob);
    assert_eq!(denied.status, 403, "bob is not in admins: {}", denied.body);
    assert!(denied.header("x-auth-request-user").is_none());
    let allowed = c.ask("gateway.test", "/admin/users", &c.admin);
    assert_eq!(allowed.status, 202, "{}", allowed.body);
    assert_eq!(allowed.header("x-auth-request-groups"), Some("staff,admins"));
    // The path is normalised as the pipeline does: a dot segment does not leave the admin rules
    // behind, and an ambiguous encoding is refused.
    assert_eq!(c.status("gateway.test", "/app/../admin/users", &c.bob), 403);
    assert_eq!(c.status("gateway.test", "/app/%2e%2e/admin/users", &c.bob), 403);
    assert_eq!(c.status("gateway.test", "/app//x/./y", &c.bob), 202);

    // A bearer route with a scope rule.
    let short = c.ask("gateway.test", "/write/x", &c.read);
    assert_eq!(short.status, 403, "api:read is not api:write: {}", short.body);
    let challenge = short.header("www-authenticate").unwrap();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("api:write"), "{challenge}");
    let ok = c.ask("gateway.test", "/write/x", &c.write);
    assert_eq!((ok.status, ok.header("x-auth-request-user")), (202, Some("m2m")), "{}", ok.body);

    // Each route takes its own kind of credential: no session on a bearer route, no bearer token
    // on a login route (with the sign-in hint for the original URL).
    assert_eq!(c.status("gateway.test", "/write/x", &c.bob), 401, "a session is no bearer token");
    let unauth = c.ask("gateway.test", "/app/page", &c.write);
    assert_eq!(unauth.status, 401, "{}", unauth.body);
    assert!(unauth.header("www-authenticate").unwrap().starts_with("Bearer"));
    assert_eq!(
        unauth.header("x-auth-request-redirect"),
        Some(&*format!("/oauth2/start?rd={}", login::encode("http://gateway.test/app/page")))
    );
    // A browser behind Traefik without a session is sent to sign in at A.
    let addr = c.w.gw.addr;
    let browser = ask(addr, "", &[("X-Forwarded-Host", "gateway.test"), ("X-Forwarded-Uri", "/admin/x"), HTML]);
    assert_eq!(browser.status, 302, "{}", browser.body);
    let authorize = c.w.a.discovery()["authorization_endpoint"].as_str().unwrap().to_string();
    assert!(browser.header("location").unwrap().starts_with(&authorize));

    // A public route: 202 without identity, with or without a credential.
    let public = ask_traefik(addr, "gateway.test", "/public/logo.png", ("Accept", "*/*"));
    assert_eq!((public.status, public.header("x-auth-request-user")), (202, None));
    let public = c.ask("gateway.test", "/public/logo.png", &c.bob);
    assert_eq!((public.status, public.header("x-auth-request-user")), (202, None));
}

#[test]
fn forward_auth_takes_a_routes_own_issuers_tokens_only() {
    let c = Callers::start();
    assert_eq!(c.status("a.test", "/x", &c.read), 202);
    let wrong = c.ask("a.test", "/x", &c.b_read);
    assert_eq!(wrong.status, 401, "issuer B's token on issuer A's route: {}", wrong.body);
    assert!(wrong.header("www-authenticate").unwrap().contains("invalid_token"), "{:?}", wrong.headers);
    assert_eq!(c.status("b.test", "/x", &c.b_read), 202);
    assert_eq!(c.status("B.Test.:8443", "/x", &c.b_read), 202, "host case, port and trailing dot");
    let wrong = c.ask("b.test", "/x", &c.read);
    assert_eq!(wrong.status, 401, "issuer A's token on issuer B's route: {}", wrong.body);
    assert!(wrong.header("www-authenticate").unwrap().starts_with("Bearer realm=\"b-realm\""), "the route's realm");
    assert_eq!(c.status("gateway.test", "/write/x", &c.b_read), 401, "the writer route is A's");
}

#[test]
fn forward_auth_refuses_what_no_route_covers_and_contradicting_headers() {
    let c = Callers::start();
    // No route covers it: refused whatever the credential, never 202.
    for cred in [&c.bob, &c.admin, &c.write, &c.b_read] {
        for (host, uri) in [("gateway.test", "/elsewhere"), ("gateway.test", "/"), ("c.test", "/app-like")] {
            let r = c.ask(host, uri, cred);
            assert_eq!(r.status, 403, "{host}{uri}: {}", r.body);
            assert_eq!(r.json()["error"], "access_denied");
        }
    }
    // Hosts that are not host names; requests that say nothing of the original.
    for host in ["a.test#.b.test", "evil@a.test", "a.test/x", "a.test, b.test", "a test"] {
        assert_eq!(c.status(host, "/x", &c.read), 403, "{host:?}");
    }
    let addr = c.w.gw.addr;
    assert_eq!(ask(addr, "", &[as_ref(&c.admin), JSON]).status, 403, "no original URI");
    // A client's own copy of a forwarding header that contradicts the proxy's.
    for extra in [
        ("X-Original-URL", "http://gateway.test/public/x"),
        ("X-Original-URI", "/public/x"),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Forwarded-Host", "a.test"),
    ] {
        let headers =
            [("X-Forwarded-Host", "gateway.test"), ("X-Forwarded-Uri", "/admin/users"), as_ref(&c.bob), JSON, extra];
        assert_eq!(ask(addr, "", &headers).status, 403, "{extra:?}");
    }
}

#[test]
fn forward_auth_route_names_the_route() {
    let c = Callers::start();
    let named = |name: &str, cred: &(&'static str, String)| {
        // Forwarded headers that would pick a public route: the name wins.
        ask(c.w.gw.addr, &format!("?route={name}"), &[as_ref(cred), ("X-Forwarded-Uri", "/public/x"), JSON])
    };
    assert_eq!(named("admin", &c.bob).status, 403);
    assert_eq!(named("admin", &c.admin).status, 202);
    assert_eq!(named("writer", &c.read).status, 403);
    assert_eq!(named("writer", &c.write).status, 202);
    assert_eq!(named("b-only", &c.read).status, 401);
    assert_eq!(named("b-only", &c.b_read).status, 202);
    assert_eq!(named("no-such-route", &c.admin).status, 403);
    assert_eq!(named("public", &("Accept", "*/*".to_string())).status, 202);
    // Without forwarded headers at all (a proxy that cannot send them).
    assert_eq!(ask(c.w.gw.addr, "?route=admin", &[as_ref(&c.admin), JSON]).status, 202);
    assert_eq!(ask(c.w.gw.addr, "?route=admin", &[as_ref(&c.bob), JSON]).status, 403);
}

#[test]
fn nginx_auth_request_enforces_the_routes_rules() {
    let w = World::start();
    let app = echo();
    // As the README's snippet: the absolute original URL in X-Original-URL, set by nginx.
    let nginx = services::Nginx::start(&format!(
        r#"
    server {{
        listen {{{{LISTEN}}}};
        location = /oauth2/auth {{
            internal;
            proxy_pass http://{gw};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
        }}
        location / {{
            auth_request /oauth2/auth;
            auth_request_set $user $upstream_http_x_auth_request_user;
            proxy_set_header X-User $user;
            proxy_pass http://{app};
        }}
        # A path no tollgate route covers, judged by a named route.
        location = /auth-admin {{
            internal;
            proxy_pass http://{gw}/oauth2/auth?route=admin;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }}
        location /reports/ {{
            auth_request /auth-admin;
            proxy_pass http://{app};
        }}
    }}
"#,
        gw = w.gw.addr,
        app = app.addr,
    ));
    let bob = login::login(&w.public, "/app/", "bob").cookie_header();
    let admin = login::login(&w.public, "/app/", "adminann").cookie_header();
    let through = |path: &str, headers: &[(&str, &str)]| get(nginx.addr(), path, headers);

    let ok = through("/app/page", &[("Cookie", &bob), JSON]);
    assert_eq!(ok.status, 200, "{}\nnginx: {}", ok.body, nginx.output());
    assert_eq!(ok.json()["headers"]["x-user"][0], "bob");
    assert_eq!(through("/admin/users", &[("Cookie", &bob), JSON]).status, 403, "nginx: {}", nginx.output());
    assert_eq!(through("/admin/users", &[("Cookie", &admin), JSON]).status, 200);
    assert_eq!(through("/elsewhere", &[("Cookie", &admin), JSON]).status, 403, "no route");
    assert_eq!(through("/app/page", &[JSON]).status, 401);
    let jwt_b = token(&w.b, "api:write");
    let jwt_a = token(&w.a, "api:write");
    assert_eq!(through("/write/x", &[("Authorization", &format!("Bearer {jwt_b}")), JSON]).status, 401);
    assert_eq!(through("/write/x", &[("Authorization", &format!("Bearer {jwt_a}")), JSON]).status, 200);
    assert_eq!(through("/reports/q3", &[("Cookie", &bob), JSON]).status, 403, "nginx: {}", nginx.output());
    assert_eq!(through("/reports/q3", &[("Cookie", &admin), JSON]).status, 200);
    // nginx passes the client's other headers on to tollgate: a forged path is a contradiction.
    let forged = through("/admin/users", &[("Cookie", &bob), ("X-Forwarded-Uri", "/app/page"), JSON]);
    assert_eq!(forged.status, 403);
    let forged = through("/admin/users", &[("Cookie", &bob), ("X-Forwarded-Host", "a.test"), JSON]);
    assert_eq!(forged.status, 403);
}

#[test]
fn a_bearer_only_gateway_answers_forward_auth() {
    let a = Idp::start(IdpOptions::default());
    let app = echo();
    let config = format!(
        "{BASE}\n{}\n{}",
        issuers(&a, None),
        routes(app.addr, false).replace("issuers = [\"b\"]", "issuers = [\"a\"]")
    );
    let gw = start_gateway(&config);
    let read = token(&a, "api:read");
    let write = token(&a, "api:write");
    let check = |uri: &str, auth: Option<&str>| {
        let value = auth.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("X-Original-URI", uri), JSON];
        if let Some(v) = &value {
            headers.push(("Authorization", v));
        }
        ask(gw.addr, "", &headers)
    };
    let ok = check("/write/x", Some(&write));
    assert_eq!((ok.status, ok.header("x-auth-request-user")), (202, Some("m2m")), "{}", ok.body);
    assert_eq!(check("/write/x", Some(&read)).status, 403);
    let none = check("/write/x", None);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer realm=\"tollgate\""));
    assert!(none.header("x-auth-request-redirect").is_none(), "no sign-in without [login]");
    assert_eq!(check("/public/x", None).status, 202);
    assert_eq!(check("/elsewhere", Some(&write)).status, 403);
    // The other /oauth2/ endpoints need [login]; they are routed like any path (here: none).
    assert_eq!(get(gw.addr, "/oauth2/start", &[HTML]).status, 404);
}

/// A bearer-only gateway (issuer `a` alone) for the CORS tests, answering preflights at
/// forward-auth when `preflights` (`server.forward_auth_preflight`).
fn cors_gateway_with(a: &Idp, app: SocketAddr, preflights: bool) -> Gateway {
    let routes = routes(app, false).replace("issuers = [\"b\"]", "issuers = [\"a\"]");
    let base = BASE.replacen("workers = 2\n", &format!("workers = 2\nforward_auth_preflight = {preflights}\n"), 1);
    start_gateway(&format!("{base}\n{}\n{routes}", issuers(a, None)))
}

fn cors_gateway(a: &Idp, app: SocketAddr) -> Gateway {
    cors_gateway_with(a, app, true)
}

/// Without `server.forward_auth_preflight` (the default), a request that says it is a
/// preflight is judged as any request: nginx's `auth_request` passes the client's headers on,
/// so a client's own `X-Original-Method: OPTIONS` on a GET passed for a preflight (204, no
/// credential) and the GET reached the app. Failed on the code before the setting (204).
#[test]
fn a_claimed_preflight_is_no_preflight_unless_configured() {
    let a = Idp::start(IdpOptions::default());
    let app = echo();
    let gw = cors_gateway_with(&a, app.addr, false);
    let forged = [
        ("X-Original-URI", "/api/items/1"),
        ("X-Original-Method", "OPTIONS"),
        ("Origin", "https://app.example.com"),
        ("Access-Control-Request-Method", "GET"),
    ];
    let r = ask(gw.addr, "", &forged);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("access-control-allow-methods").is_none(), "{:?}", r.headers);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"), "a refusal a page can read");
    let traefik = ask(gw.addr, "", &[forged[0], ("X-Forwarded-Method", "OPTIONS"), forged[2], forged[3]]);
    assert_eq!(traefik.status, 401, "{}", traefik.body);
}

/// `method path` through nginx with these headers.
fn through_nginx(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    common::raw(addr, req.as_bytes())
}

/// Vary's names, all of its headers together, lower case.
fn vary(r: &RawResponse) -> Vec<String> {
    r.headers_named("vary").flat_map(|v| v.split(',')).map(|t| t.trim().to_ascii_lowercase()).collect()
}

/// Before this, a preflight behind nginx `auth_request` was refused 401 (no credentials on a
/// preflight) and no forward-auth answer carried CORS headers, so the browser refused every
/// call: here is what a browser receives through the README's nginx snippet.
#[test]
fn nginx_auth_request_passes_the_routes_cors_to_the_browser() {
    let a = Idp::start(IdpOptions::default());
    let app = echo();
    let gw = cors_gateway(&a, app.addr);
    let nginx = services::Nginx::start(&format!(
        "server {{\n    listen {{{{LISTEN}}}};\n{}\n}}\n",
        services::readme_cors_snippet(gw.addr, app.addr)
    ));
    const APP_ORIGIN: &str = "https://app.example.com";
    let through = |method: &str, headers: &[(&str, &str)]| through_nginx(nginx.addr(), method, "/api/items", headers);

    // A preflight from the admitted origin: allowed without credentials, with the policy.
    let pre = through(
        "OPTIONS",
        &[
            ("Origin", APP_ORIGIN),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    );
    assert!((200..300).contains(&pre.status), "{} {}\nnginx: {}", pre.status, pre.body, nginx.output());
    assert_eq!(pre.header("access-control-allow-origin"), Some(APP_ORIGIN));
    assert!(pre.header("access-control-allow-methods").is_some_and(|m| m.contains("PUT")), "{:?}", pre.headers);
    assert_eq!(
        pre.header("access-control-allow-headers"),
        Some("authorization, content-type, dpop"),
        "DPoP: the route accepts it"
    );
    assert_eq!(pre.header("access-control-max-age"), Some("600"));
    assert!(vary(&pre).contains(&"origin".to_string()), "{:?}", pre.headers);
    assert_eq!(pre.json()["method"], "OPTIONS", "the app answers the allowed preflight");
    assert!(pre.json()["headers"].get("x-auth-request-user").is_none());

    // From another origin: refused as before, nothing a browser could use.
    let evil = through("OPTIONS", &[("Origin", "https://evil.example"), ("Access-Control-Request-Method", "PUT")]);
    assert_eq!(evil.status, 401, "{}", evil.body);
    assert!(evil.header("access-control-allow-origin").is_none(), "{:?}", evil.headers);
    assert!(evil.header("access-control-allow-methods").is_none());

    // The actual call: 401 without a token, 403 with too little scope, 200 with enough, each
    // readable by the app (origin, exposed WWW-Authenticate, Vary).
    let none = through("GET", &[("Origin", APP_ORIGIN)]);
    assert_eq!(none.status, 401);
    assert_eq!(none.header("access-control-allow-origin"), Some(APP_ORIGIN), "{:?}", none.headers);
    assert!(none.header("access-control-expose-headers").is_some_and(|h| h.contains("www-authenticate")));
    assert!(none.header("www-authenticate").is_some());
    assert!(vary(&none).contains(&"origin".to_string()));
    let read = format!("Bearer {}", token(&a, "api:read"));
    let refused = through("GET", &[("Origin", APP_ORIGIN), ("Authorization", &read)]);
    assert_eq!((refused.status, refused.header("access-control-allow-origin")), (403, Some(APP_ORIGIN)));
    let write = format!("Bearer {}", token(&a, "api:write"));
    let ok = through("GET", &[("Origin", APP_ORIGIN), ("Authorization", &write)]);
    assert_eq!((ok.status, ok.header("access-control-allow-origin")), (200, Some(APP_ORIGIN)), "{}", ok.body);
    assert!(ok.header("access-control-allow-methods").is_none(), "preflight headers only on preflights");
    // Another origin's call: no Allow-Origin, still Vary.
    let other = through("GET", &[("Origin", "https://evil.example"), ("Authorization", &write)]);
    assert_eq!((other.status, other.header("access-control-allow-origin")), (200, None));
    assert!(vary(&other).contains(&"origin".to_string()));

    // nginx sets the original method itself: a GET that claims to be a preflight is a GET.
    let forged = through(
        "GET",
        &[("Origin", APP_ORIGIN), ("Access-Control-Request-Method", "PUT"), ("X-Original-Method", "OPTIONS")],
    );
    assert_eq!(forged.status, 401, "{}", forged.body);
}

/// Forward-auth itself: the preflight is told by the original method, judged on the route of
/// the method it asks about (also with `?route=NAME`), and without the method it is no preflight.
#[test]
fn forward_auth_allows_a_preflight_only_when_told_it_is_one() {
    let a = Idp::start(IdpOptions::default());
    let app = echo();
    let gw = cors_gateway(&a, app.addr);
    let pre = [("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "DELETE")];
    let ask_with = |query: &str, extra: &[(&'static str, &'static str)]| {
        let mut h = vec![("X-Original-URI", "/api/items/1")];
        h.extend_from_slice(extra);
        ask(gw.addr, query, &h)
    };
    let told = ask_with("", &[&pre[..], &[("X-Original-Method", "OPTIONS")]].concat());
    assert_eq!(told.status, 204, "{}", told.body);
    assert_eq!(told.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert!(told.header("x-auth-request-user").is_none());
    let traefik = ask_with("", &[&pre[..], &[("X-Forwarded-Method", "OPTIONS")]].concat());
    assert_eq!(traefik.status, 204);
    let named = ask_with("?route=api", &[&pre[..], &[("X-Original-Method", "OPTIONS")]].concat());
    assert_eq!(named.status, 204);
    // The subrequest's own GET is not the original method: no preflight, an ordinary 401.
    let untold = ask_with("", &pre);
    assert_eq!(untold.status, 401);
    assert_eq!(untold.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert!(untold.header("access-control-allow-methods").is_none());
    // A route without cors: the preflight is an ordinary OPTIONS for it.
    let public = ask(gw.addr, "", &[("X-Original-URI", "/write/x"), ("X-Original-Method", "OPTIONS"), pre[0], pre[1]]);
    assert_eq!(public.status, 401);
    assert!(public.header("access-control-allow-origin").is_none() && public.header("vary").is_none());
}
