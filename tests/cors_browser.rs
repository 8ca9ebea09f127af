//! CORS in real headless Chromium (Debian's `/usr/bin/chromium`, driven by npm `playwright-core`
//! from `tests/browser/driver.mjs`) against the real binary and the real OpenID Provider
//! (`tests/idp`): a page on one origin calls the gateway on another with `fetch`.
//!
//! - bearer: the page at `http://127.0.0.1:A` calls `http://localhost:G` (another site) with
//!   `Authorization: Bearer` (a token from the provider's token endpoint): Chromium sends a
//!   preflight, the gateway answers it, and the page reads the answer, an exposed header and,
//!   without a token, the 401 and its `WWW-Authenticate`. The preflight is cached for the
//!   policy's `max_age`. The same page on `http://localhost:A` (not allowed) has its fetch
//!   rejected by the browser.
//! - credentials: sign in on a login route at `http://127.0.0.1:G`, then the page at
//!   `http://127.0.0.1:A` posts JSON with `credentials: "include"`. The two are different
//!   origins but the same site (a site is the scheme and registrable domain, or the IP
//!   address; ports do not count), so the `SameSite=Lax` session cookie goes with the request;
//!   between two sites it would not, whatever CORS says.
//!
//! - behind nginx: the same bearer calls through nginx `auth_request` to tollgate's
//!   `/oauth2/auth` with the README's "CORS behind a proxy" snippet, nginx copying the CORS
//!   headers of forward-auth's answers (the preflight's 204 among them) to the browser.
//!
//! Request interception stays off in these runs: with it Playwright answers every preflight
//! itself. Needs node, Chromium and `npm ci` in tests/browser and tests/idp (`bash tests/run.sh`).

#[path = "support/browser.rs"]
mod browser;
mod common;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/services.rs"]
mod services;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use common::issuer_toml;
use common::wait_ready;
use common::{dead_port, Gateway, BASE};
use hyper::body::Incoming;
use hyper::{Request, Response};
use idp::{Idp, IdpOptions, API_RESOURCE};
use serde_json::{json, Value};

/// One browser test at a time: each starts Chromium, the provider and a gateway.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The app: a page for navigations (the origin the calls come from, and the landing page after
/// sign-in, with the `#headers` the driver waits for) and JSON for API calls, naming the user
/// the gateway said it was and an `X-Total-Count` the policy exposes.
fn app(rt: &tokio::runtime::Runtime) -> SocketAddr {
    rt.block_on(common::upstream(Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let user = header("x-forwarded-user");
            if header("accept").contains("text/html") {
                let html = format!(
                    "<!doctype html><html><head><meta charset=\"utf-8\"><link rel=\"icon\" href=\"data:,\"></head>\
                     <body><pre id=\"uri\">{}</pre><pre id=\"headers\">{{\"x-forwarded-user\":\"{user}\"}}</pre></body></html>",
                    req.uri()
                );
                return Response::builder().header("content-type", "text/html").body(common::full(html)).unwrap();
            }
            let body = json!({ "method": req.method().as_str(), "user": user, "cookie": header("cookie") });
            Response::builder()
                .header("content-type", "application/json")
                .header("x-total-count", "42")
                .header("x-not-exposed", "1")
                .body(common::full(body.to_string()))
                .unwrap()
        })
    })))
}

/// How many preflights (OPTIONS answered 204) the gateway logged for `route`.
fn preflights(gw: &Gateway, route: &str) -> usize {
    gw.logs()
        .lines()
        .filter(|l| l.contains("\"method\":\"OPTIONS\"") && l.contains(&format!("\"route\":\"{route}\"")))
        .filter(|l| l.contains("\"status\":204"))
        .count()
}

fn calls(page: &Value) -> &Vec<Value> {
    page["calls"].as_array().unwrap()
}

/// A gateway (`base` config) with the route `api` on `/api/`: bearer tokens of `idp`, upstream
/// `app`, and a cors policy admitting `page` with `Authorization` allowed and `X-Total-Count`
/// exposed, plus `more` (further keys of the policy, each after a comma).
fn bearer_api(base: &str, idp: &Idp, app: SocketAddr, page: &str, more: &str) -> Gateway {
    let issuer_block = issuer_toml("idp", &idp.issuer, API_RESOURCE);
    Gateway::start(&format!(
        r#"{base}
{issuer_block}
[[route]]
name = "api"
path = "/api/"
auth = "bearer"
upstream = "http://{app}"
cors = {{ allowed_origins = ["{page}"], allowed_headers = ["Authorization"], exposed_headers = ["X-Total-Count"]{more} }}
"#,
    ))
}

#[test]
fn a_page_on_another_site_calls_a_bearer_api() {
    let _one = serial();
    browser::check_prerequisites();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = app(&rt);
    let idp = Idp::start(IdpOptions::default());
    let page = format!("http://127.0.0.1:{}", app.port());
    let gw = bearer_api(BASE, &idp, app, &page, ", max_age = \"10m\"");
    wait_ready(&gw);
    let token = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    let api = format!("http://localhost:{}/api/orders", gw.addr.port());
    let with_token = json!({ "method": "GET", "headers": { "Authorization": format!("Bearer {token}") } });
    let seen = browser::run(&json!({
        "scenario": "cors",
        "intercept": false,
        "pages": [
            { "url": format!("{page}/"), "calls": [
                { "name": "bearer", "url": api, "init": with_token },
                { "name": "again", "url": api, "init": with_token },
                { "name": "no token", "url": format!("http://localhost:{}/api/none", gw.addr.port()) },
            ]},
            { "url": format!("http://localhost:{}/", app.port()), "calls": [
                { "name": "other origin", "url": api, "init": with_token },
            ]},
        ],
    }));
    let pages = seen["pages"].as_array().unwrap();
    let allowed = calls(&pages[0]);
    let first = &allowed[0];
    assert_eq!(first["ok"], true, "the browser refused the call: {first}");
    assert_eq!(first["status"], 200, "{first}");
    let body: Value = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["user"], "m2m", "{body}");
    assert_eq!(first["headers"]["x-total-count"], "42", "exposed: {first}");
    assert!(first["headers"].get("x-not-exposed").is_none(), "not exposed, not readable: {first}");
    assert_eq!(allowed[1]["status"], 200, "{}", allowed[1]);
    // Chromium asked first, and kept the answer for max_age: one preflight for two calls.
    assert_eq!(preflights(&gw, "api"), 1, "logs:\n{}", gw.logs());
    // Refused, and the page can read why.
    let refused = &allowed[2];
    assert_eq!(refused["ok"], true, "{refused}");
    assert_eq!(refused["status"], 401, "{refused}");
    assert!(refused["headers"]["www-authenticate"].as_str().unwrap_or("").starts_with("Bearer"), "{refused}");
    // Another origin: the gateway sends no CORS headers, so the browser rejects the fetch.
    let other = &calls(&pages[1])[0];
    assert_eq!(other["ok"], false, "{other}");
    assert!(other["error"].as_str().unwrap().contains("TypeError"), "{other}");
    assert!(
        gw.logs().lines().any(|l| l.contains("\"method\":\"OPTIONS\"") && l.contains("\"status\":401")),
        "the other origin's preflight went to authentication: {}",
        gw.logs()
    );
}

#[test]
fn a_page_on_the_same_site_calls_a_login_route_with_the_session_cookie() {
    let _one = serial();
    browser::check_prerequisites();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = app(&rt);
    let port = dead_port().port();
    let public = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(
        IdpOptions::default()
            .with_env("IDP_WEB_REDIRECT_URIS", format!("{public}/oauth2/callback"))
            .with_env("IDP_WEB_POST_LOGOUT_URIS", format!("{public}/")),
    );
    let page = format!("http://127.0.0.1:{}", app.port());
    let base = BASE.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1);
    let issuer_block = issuer_toml("idp", &idp.issuer, API_RESOURCE);
    let gw = Gateway::start(&format!(
        r#"{base}
{issuer_block}
[login]
issuer = "idp"
client_id = "web"
client_secret = "web-secret"
public_url = "{public}"
cookie_secret = "0123456789abcdef0123456789abcdef"
scopes = ["openid", "email", "profile"]

[[route]]
name = "app"
path = "/"
auth = "login"
upstream = "http://{app}"
cors = {{ allowed_origins = ["{page}"], allow_credentials = true, allowed_headers = ["Content-Type"] }}
"#,
    ));
    wait_ready(&gw);
    let post = |credentials: &str| json!({ "method": "POST", "credentials": credentials, "headers": { "Content-Type": "application/json" }, "body": "{}" });
    let data = format!("{public}/data");
    let seen = browser::run(&json!({
        "scenario": "cors",
        "intercept": false,
        "login": { "idp": idp.issuer, "url": format!("{public}/home"), "user": "alice" },
        "pages": [
            { "url": format!("{page}/"), "calls": [
                { "name": "with cookie", "url": data, "init": post("include") },
                { "name": "without", "url": data, "init": post("omit") },
            ]},
            { "url": format!("http://localhost:{}/", app.port()), "calls": [
                { "name": "other origin", "url": data, "init": post("include") },
            ]},
        ],
    }));
    let pages = seen["pages"].as_array().unwrap();
    let allowed = calls(&pages[0]);
    let with = &allowed[0];
    assert_eq!(with["ok"], true, "the browser refused the credentialed call: {with}");
    assert_eq!(with["status"], 200, "{with}");
    let body: Value = serde_json::from_str(with["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["method"], "POST");
    assert!(!body["user"].as_str().unwrap_or("").is_empty(), "the session reached the gateway: {body}");
    assert!(!body["cookie"].as_str().unwrap_or("").contains("tollgate"), "the app never sees the session: {body}");
    // The preflight (no cookie on it) was answered by the gateway, not sent to sign in.
    assert!(preflights(&gw, "app") >= 1, "logs:\n{}", gw.logs());
    let without = &allowed[1];
    assert_eq!(without["ok"], true, "{without}");
    assert_eq!(without["status"], 401, "no cookie, no session: {without}");
    let other = &calls(&pages[1])[0];
    assert_eq!(other["ok"], false, "{other}");
}

/// Behind nginx `auth_request` (the README's snippet): Chromium's preflight for a call with
/// `Authorization` is asked about at forward-auth, allowed there with the route's policy, and
/// nginx hands the headers on; the call then passes with its token and the page reads the
/// answer and an exposed header, or without a token the 401 and its `WWW-Authenticate`.
/// Before, forward-auth refused the preflight 401 with no CORS headers and every call failed.
#[test]
fn a_page_on_another_site_calls_a_bearer_api_behind_nginx_auth_request() {
    let _one = serial();
    browser::check_prerequisites();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = app(&rt);
    let idp = Idp::start(IdpOptions::default());
    let page = format!("http://127.0.0.1:{}", app.port());
    let base = BASE.replacen("workers = 2\n", "workers = 2\nforward_auth_preflight = true\n", 1);
    let gw = bearer_api(&base, &idp, app, &page, "");
    wait_ready(&gw);
    let nginx = services::Nginx::start(&format!(
        "server {{\n    listen {{{{LISTEN}}}};\n{}\n}}\n",
        services::readme_cors_snippet(gw.addr, app)
    ));
    let token = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    let api = format!("http://localhost:{}/api/orders", nginx.addr().port());
    let with_token = json!({ "method": "GET", "headers": { "Authorization": format!("Bearer {token}") } });
    let seen = browser::run(&json!({
        "scenario": "cors",
        "intercept": false,
        "pages": [
            { "url": format!("{page}/"), "calls": [
                { "name": "bearer", "url": api, "init": with_token },
                { "name": "no token", "url": format!("http://localhost:{}/api/none", nginx.addr().port()) },
            ]},
            { "url": format!("http://localhost:{}/", app.port()), "calls": [
                { "name": "other origin", "url": api, "init": with_token },
            ]},
        ],
    }));
    let pages = seen["pages"].as_array().unwrap();
    let allowed = calls(&pages[0]);
    let first = &allowed[0];
    assert_eq!(first["ok"], true, "the browser refused the call: {first}\nnginx: {}", nginx.output());
    assert_eq!(first["status"], 200, "{first}");
    assert_eq!(first["headers"]["x-total-count"], "42", "exposed: {first}");
    assert!(first["headers"].get("x-not-exposed").is_none(), "not exposed, not readable: {first}");
    // The preflight was asked about at forward-auth (nginx's subrequest is a GET), allowed 204.
    assert!(
        gw.logs().lines().any(|l| l.contains("\"method\":\"GET\"") && l.contains("\"status\":204")),
        "{}",
        gw.logs()
    );
    let refused = &allowed[1];
    assert_eq!(refused["ok"], true, "{refused}");
    assert_eq!(refused["status"], 401, "{refused}");
    assert!(refused["headers"]["www-authenticate"].as_str().unwrap_or("").starts_with("Bearer"), "{refused}");
    let other = &calls(&pages[1])[0];
    assert_eq!(other["ok"], false, "{other}");
    assert!(other["error"].as_str().unwrap().contains("TypeError"), "{other}");
}
