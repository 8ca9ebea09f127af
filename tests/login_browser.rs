//! Browser login in a real headless Chromium (Debian's `/usr/bin/chromium`, driven by npm
//! `playwright-core` from `tests/browser/driver.mjs`) against the real OpenID Provider
//! (oidc-provider, `tests/idp`) and the real `tollgate` binary: the round trip back to the page
//! that was asked for, cookie attributes over http and https, tampered cookies, sign-out at the
//! gateway and the provider, refresh without the user, two gateways sharing one cookie key, and
//! a provider outage at refresh time.
//!
//! Needs node, Chromium and `npm ci` in tests/browser and tests/idp: `bash tests/run.sh` installs
//! them. When they are missing the tests fail with that instruction; they never skip.

#[path = "support/browser.rs"]
mod browser;
mod common;
#[path = "support/idp.rs"]
mod idp;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use common::issuer_toml;
use common::wait_ready;
use common::{Gateway, TempDir, BASE};
use hyper::body::Incoming;
use hyper::{Request, Response};
use idp::{Idp, IdpOptions};
use serde_json::{json, Value};

const USER: &str = "alice";
const COOKIE_SECRET: &str = "0123456789abcdef0123456789abcdef";
const PAGE: &str = "/reports?year=2026&q=a%20b";

/// One browser test at a time: each starts Chromium, the provider and gateways on a 2-core
/// machine, and the login timings reported are only meaningful without contention.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the upstream received: the request URI and its headers (lower-case name → value).
type Seen = Arc<Mutex<Vec<(String, serde_json::Map<String, Value>)>>>;

/// An upstream that answers every request with an HTML page showing what it received:
/// `<pre id="uri">` and `<pre id="headers">` (JSON), which the driver reads.
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn page_upstream(rt: &tokio::runtime::Runtime, seen: Seen) -> SocketAddr {
    rt.block_on(common::upstream(Arc::new(move |req: Request<Incoming>| {
        let seen = seen.clone();
        Box::pin(async move {
            let mut headers = serde_json::Map::new();
            for name in req.headers().keys() {
                let values: Vec<String> = req
                    .headers()
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                headers.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
            }
            let uri = req.uri().to_string();
            let json = Value::Object(headers.clone()).to_string();
            // When the upstream saw the request (milliseconds since the epoch), for checks that
            // depend on a token's remaining lifetime; not shown to the page.
            let mut recorded = headers;
            recorded.insert("x-test-seen-at-ms".into(), Value::from(now_ms()));
            seen.lock().unwrap().push((uri.clone(), recorded));
            let html = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>upstream</title>\
                 <link rel=\"icon\" href=\"data:,\"></head><body><h1>upstream</h1>\
                 <pre id=\"uri\">{}</pre><pre id=\"headers\">{}</pre></body></html>\n",
                html_escape(&uri),
                html_escape(&json)
            );
            Response::builder()
                .header("content-type", "text/html; charset=utf-8")
                .header("cache-control", "no-store")
                .body(common::full(html))
                .unwrap()
        })
    })))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[derive(Default)]
struct Opts {
    /// The gateways serve https on `localhost` (a self-signed certificate made here).
    tls: bool,
    /// The provider's access-token lifetime (IDP_AT_TTL).
    at_ttl: Option<u64>,
    /// Gateways to start; all share COOKIE_SECRET unless listed in `other_secret`.
    gateways: usize,
    /// Indexes of gateways that get a different cookie secret.
    other_secret: Vec<usize>,
    /// `pass_access_token = true` on the route (X-Forwarded-Access-Token upstream).
    pass_access_token: bool,
    /// `[login] scopes` as a TOML array; `None` = the brief's
    /// `["openid", "email", "profile", "offline_access"]`.
    scopes: Option<&'static str>,
}

/// The provider, the page upstream and the gateways of one test.
struct Bed {
    idp: Idp,
    gateways: Vec<Gateway>,
    /// `public_url` of each gateway, e.g. `http://127.0.0.1:PORT`.
    public: Vec<String>,
    seen: Seen,
    _tls_dir: Option<TempDir>,
    // Last: the upstream's runtime outlives the gateways that call it.
    _rt: tokio::runtime::Runtime,
}

impl Bed {
    fn start(opts: Opts) -> Bed {
        // Fail first, with how to install, when the browser side is missing.
        browser::check_prerequisites();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let seen: Seen = Arc::default();
        let upstream = page_upstream(&rt, seen.clone());

        // Ports first: the provider must know the redirect URIs before the gateways exist.
        let gateways = opts.gateways.max(1);
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < gateways {
            let p = common::dead_port().port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let origin = if opts.tls { "https://localhost" } else { "http://127.0.0.1" };
        let public: Vec<String> = ports.iter().map(|p| format!("{origin}:{p}")).collect();
        let redirects = public.iter().map(|u| format!("{u}/oauth2/callback")).collect::<Vec<_>>().join(",");
        let logouts = public.iter().map(|u| format!("{u}/")).collect::<Vec<_>>().join(",");
        let idp = Idp::start(
            IdpOptions { at_ttl: opts.at_ttl, ..Default::default() }
                .with_env("IDP_WEB_REDIRECT_URIS", redirects)
                .with_env("IDP_WEB_POST_LOGOUT_URIS", logouts)
                .with_env("IDP_LOG_REQUESTS", "1"),
        );

        let tls_dir = opts.tls.then(|| {
            let dir = TempDir::new("browser-tls");
            let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
            std::fs::write(dir.path("cert.pem"), ck.cert.pem()).unwrap();
            std::fs::write(dir.path("key.pem"), ck.signing_key.serialize_pem()).unwrap();
            dir
        });

        let mut started = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let mut server = format!("listen = \"127.0.0.1:{port}\"");
            if let Some(dir) = &tls_dir {
                server.push_str(&format!(
                    "\ntls = {{ cert_file = \"{}\", key_file = \"{}\" }}",
                    dir.path("cert.pem").display(),
                    dir.path("key.pem").display()
                ));
            }
            let secret =
                if opts.other_secret.contains(&i) { "fedcba9876543210fedcba9876543210" } else { COOKIE_SECRET };
            let issuer_block = issuer_toml("idp", &idp.issuer, "https://api.tollgate.test");
            let config = format!(
                r#"{base}
{issuer_block}
[login]
client_id = "web"
client_secret = "web-secret"
public_url = "{public}"
cookie_secret = "{secret}"
scopes = {scopes}
refresh_before = "60s"

[[route]]
auth = "login"
path = "/"
upstream = "http://{upstream}"
pass_access_token = {pass}
"#,
                base = BASE.replacen("listen = \"127.0.0.1:0\"", &server, 1),
                public = public[i],
                pass = opts.pass_access_token,
                scopes = opts.scopes.unwrap_or(r#"["openid", "email", "profile", "offline_access"]"#),
            );
            let gw = Gateway::start(&config);
            wait_ready(&gw);
            started.push(gw);
        }
        Bed { idp, gateways: started, public, seen, _tls_dir: tls_dir, _rt: rt }
    }

    fn url(&self, gateway: usize, path: &str) -> String {
        format!("{}{path}", self.public[gateway])
    }

    /// The session cookie's name at gateway 0 (`__Host-` prefixed over https).
    fn cookie_name(&self) -> &'static str {
        if self.public[0].starts_with("https://") {
            "__Host-tollgate"
        } else {
            "tollgate"
        }
    }

    /// Runs a driver scenario with the common parameters filled in.
    fn browse(&self, scenario: &str, extra: Value) -> Value {
        match self.try_browse(scenario, extra) {
            Ok(v) => v,
            Err(e) => panic!("browser scenario {scenario} failed: {e}"),
        }
    }

    fn try_browse(&self, scenario: &str, extra: Value) -> Result<Value, String> {
        let mut input = json!({
            "scenario": scenario,
            "idp": self.idp.issuer,
            "url": self.url(0, PAGE),
            "user": USER,
            "cookie_name": self.cookie_name(),
            "ignore_https_errors": self.public[0].starts_with("https://"),
        });
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            input[k] = v;
        }
        let result = browser::try_run(&input)?;
        report_timing(scenario, &result);
        Ok(result)
    }

    fn logs(&self) -> String {
        self.gateways.iter().map(Gateway::logs).collect::<Vec<_>>().join("\n")
    }
}

/// Bounded poll of the admin `/readyz` (issuer discovered, keys loaded).

fn report_timing(scenario: &str, r: &Value) {
    let l = &r["login"];
    eprintln!(
        "TIMING {scenario}: chromium {} launch {} ms; login {} ms (to the provider's form {} ms, submit to page {} ms)",
        r["browser_version"], r["launch_ms"], l["ms_total"], l["ms_to_form"], l["ms_after_submit"]
    );
    if let Some(blocked) = r["blocked"].as_array().filter(|b| !b.is_empty()) {
        eprintln!("non-loopback requests blocked in {scenario}: {blocked:?}");
    }
}

fn header<'a>(view: &'a Value, name: &str) -> &'a str {
    view["headers"][name].as_str().unwrap_or("")
}

/// The upstream's page after a login: the same URL (query included), and the user's identity.
fn assert_landed_as_user(view: &Value, url: &str) {
    assert_eq!(view["url"], url, "the browser must land on the page it asked for: {view}");
    assert_eq!(view["uri"], PAGE, "the upstream must get the same path and query: {view}");
    assert_eq!(header(view, "x-forwarded-user"), USER, "{view}");
    assert_eq!(header(view, "x-forwarded-email"), format!("{USER}@example.com"), "{view}");
    assert_eq!(header(view, "x-forwarded-preferred-username"), USER, "{view}");
}

/// The session cookie (or its first chunk).
fn session_cookie<'a>(cookies: &'a Value, name: &str) -> &'a Value {
    cookies
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name || c["name"] == format!("{name}_0")))
        .unwrap_or_else(|| panic!("no session cookie {name} in {cookies}"))
}

/// No response in a navigation chain was an error (4xx/5xx).
fn assert_no_error_pages(chain: &Value) {
    for step in chain.as_array().unwrap() {
        let status = step["status"].as_u64().unwrap();
        assert!(status < 400, "an error page in the navigation chain: {chain}");
    }
}

fn starts_with(v: &Value, prefix: &str) -> bool {
    v.as_str().is_some_and(|s| s.starts_with(prefix))
}

// ---- 1. round trip back to the page, with its query, and identity headers -------------------

#[test]
fn login_returns_to_the_same_page_with_its_query_and_identity() {
    let _serial = serial();
    let bed = Bed::start(Opts { gateways: 1, ..Default::default() });
    let url = bed.url(0, PAGE);
    let r = bed.browse("login", json!({}));

    let login = &r["login"];
    assert_landed_as_user(&login["upstream"], &url);
    // (No `groups` scope is requested, so no X-Forwarded-Groups.)

    // The navigation: the gateway sent the browser to the provider (302), the provider showed
    // its form, and the callback sent it back to the page.
    let nav = r["navigations"].as_array().unwrap();
    assert_eq!(nav[0]["url"], url, "{nav:?}");
    assert_eq!(nav[0]["status"], 302, "the gateway redirects a browser without a session: {nav:?}");
    assert!(starts_with(&nav[1]["url"], &format!("{}/auth?", bed.idp.issuer)), "{nav:?}");
    let callback = nav.iter().find(|n| starts_with(&n["url"], &bed.url(0, "/oauth2/callback?"))).expect("callback");
    assert_eq!(callback["status"], 302, "{nav:?}");
    assert_no_error_pages(&r["navigations"]);

    // The app never sees the gateway's cookies.
    for (uri, headers) in bed.seen.lock().unwrap().iter() {
        let cookie = headers.get("cookie").and_then(Value::as_str).unwrap_or("");
        assert!(
            !cookie.split(';').any(|c| c.trim().starts_with("tollgate")),
            "the upstream got the gateway's cookie on {uri}: {cookie}"
        );
    }

    // Signed in, the page loads straight from the session: no provider round trip, one code
    // exchange in all (the access token is valid for 300 s, so no refresh).
    assert_eq!(r["again"]["kind"], "upstream", "{}", r["again"]);
    assert_eq!(r["again"]["final_url"], url);
    assert_eq!(header(&r["again"]["upstream"], "x-forwarded-user"), USER);
    assert_eq!(bed.idp.count("auth"), 2, "one authorization request (plus its resume): {}", bed.idp.counters());
    assert_eq!(bed.idp.count("token"), 1, "exactly one code exchange: {}", bed.idp.counters());

    // Over plain http: HttpOnly, SameSite=Lax, Path=/, not Secure, no prefix, host-only.
    let cookies = &r["cookies"]["cookies"];
    let session = session_cookie(cookies, "tollgate");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Lax", "{session}");
    assert_eq!(session["path"], "/", "{session}");
    assert_eq!(session["secure"], false, "{session}");
    assert_eq!(session["domain"], "127.0.0.1", "host-only: {session}");
    assert!(
        !cookies.as_array().unwrap().iter().any(|c| starts_with(&c["name"], "tollgate_flow_")),
        "the login-flow cookie is removed after the callback: {cookies}"
    );
    let document_cookie = r["cookies"]["document_cookie"].as_str().unwrap();
    assert!(!document_cookie.contains("tollgate"), "document.cookie shows the session: {document_cookie}");
}

// ---- 2. cookie attributes over https: __Host- prefix and Secure ------------------------------

#[test]
fn session_cookie_over_https_is_host_prefixed_secure_httponly_and_lax() {
    let _serial = serial();
    let bed = Bed::start(Opts { gateways: 1, tls: true, ..Default::default() });
    let url = bed.url(0, PAGE);
    assert!(url.starts_with("https://localhost:"));
    let r = bed.browse("login", json!({}));
    assert_landed_as_user(&r["login"]["upstream"], &url);
    assert_eq!(header(&r["login"]["upstream"], "x-forwarded-proto"), "https", "{}", r["login"]["upstream"]);

    let cookies = &r["cookies"]["cookies"];
    let session = session_cookie(cookies, "__Host-tollgate");
    assert!(starts_with(&session["name"], "__Host-"), "{session}");
    assert_eq!(session["secure"], true, "{session}");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Lax", "{session}");
    assert_eq!(session["path"], "/", "{session}");
    assert_eq!(session["domain"], "localhost", "__Host- cookies are host-only: {session}");
    let expires = session["expires"].as_f64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(expires > now + 3600.0, "a persistent cookie for the session lifetime: {session}");
    for c in cookies.as_array().unwrap().iter().filter(|c| c["domain"] == "localhost") {
        assert!(starts_with(&c["name"], "__Host-tollgate"), "every gateway cookie is prefixed: {c}");
    }
    let document_cookie = r["cookies"]["document_cookie"].as_str().unwrap();
    assert!(!document_cookie.contains("tollgate"), "document.cookie shows the session: {document_cookie}");
    assert_eq!(r["again"]["kind"], "upstream", "{}", r["again"]);
}

// ---- 3. a tampered session cookie starts a new login, not an error ---------------------------

#[test]
fn tampered_session_cookie_leads_to_login_not_an_error() {
    let _serial = serial();
    let bed = Bed::start(Opts { gateways: 1, ..Default::default() });
    let url = bed.url(0, PAGE);
    let r = bed.browse("tamper", json!({}));
    assert_landed_as_user(&r["login"]["upstream"], &url);
    assert_ne!(r["original_value"], r["tampered_value"]);

    // With the provider's session still there: the gateway redirects to the provider (302),
    // which signs the user in again without a form; the browser ends on the page with a new,
    // valid session cookie.
    let kept = &r["with_idp_session"];
    assert_eq!(kept["chain"][0]["url"], url, "{kept}");
    assert_eq!(kept["chain"][0]["status"], 302, "a tampered cookie is no session: {kept}");
    assert!(starts_with(&kept["chain"][1]["url"], &format!("{}/auth?", bed.idp.issuer)), "{kept}");
    assert_no_error_pages(&kept["chain"]);
    assert_eq!(kept["kind"], "upstream", "{kept}");
    assert_eq!(header(&kept["upstream"], "x-forwarded-user"), USER);
    assert_ne!(kept["cookie_after"], r["tampered_value"], "a fresh session replaces the tampered cookie");

    // Without it: the provider's login form, and signing in again works.
    let dropped = &r["without_idp_session"];
    assert_eq!(dropped["chain"][0]["status"], 302, "{dropped}");
    assert_no_error_pages(&dropped["chain"]);
    assert_eq!(dropped["kind"], "login_form", "{dropped}");
    assert_landed_as_user(&r["relogin"], &url);

    // The upstream never saw a request without an identity.
    for (uri, headers) in bed.seen.lock().unwrap().iter() {
        assert_eq!(headers.get("x-forwarded-user").and_then(Value::as_str), Some(USER), "{uri}");
    }
}

// ---- 4. sign-out ends both sessions --------------------------------------------------------

#[test]
fn sign_out_ends_the_session_at_the_gateway_and_at_the_provider() {
    let _serial = serial();
    let bed = Bed::start(Opts { gateways: 1, ..Default::default() });
    let url = bed.url(0, PAGE);
    let r = bed.browse("signout", json!({ "sign_out_url": bed.url(0, "/oauth2/sign_out") }));
    assert_landed_as_user(&r["login"]["upstream"], &url);
    assert!(!r["cookie_before"].is_null());

    let after = &r["after_sign_out"];
    let chain = after["chain"].as_array().unwrap();
    assert_eq!(chain[0]["url"], bed.url(0, "/oauth2/sign_out"), "{after}");
    assert_eq!(chain[0]["status"], 302, "{after}");
    assert!(
        starts_with(&chain[1]["url"], &format!("{}/end_session?", bed.idp.issuer)),
        "sign-out goes on to the provider's end_session endpoint: {after}"
    );
    assert_eq!(r["confirmed"], true, "the provider asked to confirm the logout: {after}");
    assert!(
        chain.iter().any(|n| n["url"] == bed.url(0, "/")),
        "the provider sent the browser back to post_logout_redirect_uri: {after}"
    );
    assert_no_error_pages(&after["chain"]);
    assert!(after["cookie"].is_null(), "the session cookie is gone: {after}");
    assert_eq!(after["login_form"], true, "after sign-out the provider asks for a login: {after}");

    // The protected page again: the provider's form, not a silent re-login.
    let revisit = &r["revisit"];
    assert_eq!(revisit["kind"], "login_form", "{revisit}");
    assert_eq!(revisit["chain"][0]["status"], 302, "{revisit}");
    assert!(bed.idp.count("end_session") >= 2, "GET end_session and its confirmation: {}", bed.idp.counters());
}

// ---- 5. refresh without the user ----------------------------------------------------------

/// Signs in, then reloads the page until the provider has answered refresh grants; asserts
/// every load reached the page as the user without going back to the provider's `/auth`.
fn refresh_without_the_user(scopes: Option<&'static str>) {
    // Access tokens live 4 s; the gateway refreshes each in its second half (refresh_before is
    // capped at half the lifetime), so reloads every 100 ms see a refresh about every 2 s.
    let bed = Bed::start(Opts { gateways: 1, at_ttl: Some(4), pass_access_token: true, scopes, ..Default::default() });
    let url = bed.url(0, PAGE);
    let input = json!({ "want_token_calls": 3, "min_loads": 3, "max_loads": 300, "max_ms": 40_000, "pace_ms": 100 });
    let r = bed.try_browse("refresh", input).unwrap_or_else(|e| {
        let logs = bed.logs();
        let refresh_lines: Vec<&str> = logs.lines().filter(|l| l.contains("refresh")).take(5).collect();
        panic!(
            "the browser did not stay signed in across refreshes (provider counters {}).\n\
             gateway log lines about refresh: {refresh_lines:#?}\n\
             driver: {e}",
            bed.idp.counters()
        )
    });
    assert_landed_as_user(&r["login"]["upstream"], &url);
    let loads = r["loads"].as_array().unwrap();
    eprintln!("refresh loads: {loads:?}");
    assert!(loads.len() >= 3, "{loads:?}");
    let auth_after_login = r["counters_after_login"]["auth"].as_u64().unwrap();
    for (i, load) in loads.iter().enumerate() {
        assert_eq!(load["kind"], "upstream", "load {i} did not reach the page: {load}\n{}", bed.logs());
        assert_eq!(load["user"], USER, "load {i}: {load}");
        assert_eq!(load["email"], format!("{USER}@example.com"), "load {i}: the refreshed session keeps the email");
        assert_eq!(load["final_url"], url, "load {i}: {load}");
        assert_eq!(load["auth_calls"], auth_after_login, "load {i} went back to the provider's /auth: {load}");
    }
    let token_calls = r["counters_end"]["token"].as_u64().unwrap();
    assert!(token_calls >= 3, "refresh grants happened (code exchange + 2 refreshes): {}", r["counters_end"]);

    // Each refresh gave the upstream a new access token, and the last one is live at the
    // provider (a reused rotated refresh token would have revoked the whole grant).
    let tokens: Vec<String> = bed
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(_, h)| h.get("x-forwarded-access-token").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let mut distinct = tokens.clone();
    distinct.dedup();
    assert!(
        distinct.len() >= 3,
        "the access token changed with the refreshes: {} distinct of {}",
        distinct.len(),
        tokens.len()
    );
    let last = tokens.last().unwrap();
    let last_seen_ms = bed
        .seen
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(_, h)| h.get("x-forwarded-access-token").and_then(Value::as_str) == Some(last.as_str()))
        .and_then(|(_, h)| h["x-test-seen-at-ms"].as_u64())
        .unwrap();
    // The gateway refreshes a token in the second half of its 4 s life, so a token the upstream
    // saw has at least about 2 s left then. Introspected within that, it must be active (a reused
    // rotated refresh token would have revoked the grant); later (the browser's shutdown on a
    // loaded machine can take that long) an inactive answer proves nothing either way.
    let answer = bed.idp.introspect("gateway", "gateway-secret", last);
    if now_ms().saturating_sub(last_seen_ms) < 1_500 {
        assert_eq!(answer["active"], true, "the latest access token is active: {answer}");
    } else {
        eprintln!("the latest access token was introspected too late to judge: {answer}");
    }
    assert!(!bed.logs().contains("refresh failed"), "{}", bed.logs());
}

/// With the configuration of the brief (`offline_access` among the scopes).
#[test]
fn session_refreshes_its_access_token_without_the_user() {
    let _serial = serial();
    refresh_without_the_user(None);
}

/// The same without `offline_access` in `[login] scopes`: isolates the refresh machinery
/// (rotation, cookie rewrite, single flight) from the scope sent with the refresh grant.
#[test]
fn session_refreshes_without_offline_access_in_the_scopes() {
    let _serial = serial();
    refresh_without_the_user(Some(r#"["openid", "email", "profile"]"#));
}

// ---- 6. two gateways, one cookie key ------------------------------------------------------

#[test]
fn a_session_from_one_gateway_is_accepted_by_another_with_the_same_cookie_secret() {
    let _serial = serial();
    // Gateways 0 and 1 share COOKIE_SECRET; gateway 2 has another key (the control).
    let bed = Bed::start(Opts { gateways: 3, other_secret: vec![2], ..Default::default() });
    let other = bed.url(1, PAGE);
    let foreign = bed.url(2, PAGE);
    let r = bed.browse("shared", json!({ "other_url": other, "foreign_url": foreign }));
    assert_landed_as_user(&r["login"]["upstream"], &bed.url(0, PAGE));

    // Same host, other port: the browser sends the cookie, the second gateway opens it.
    let o = &r["other"];
    assert_eq!(o["kind"], "upstream", "{o}");
    assert_eq!(o["final_url"], other);
    assert_eq!(header(&o["upstream"], "x-forwarded-user"), USER, "{o}");
    assert_eq!(header(&o["upstream"], "x-forwarded-email"), format!("{USER}@example.com"));
    assert_eq!(o["chain"].as_array().unwrap().len(), 1, "no redirect on the second gateway: {o}");
    assert_eq!(o["chain"][0]["status"], 200, "{o}");
    assert_eq!(r["counters_before"]["auth"], r["counters_after"]["auth"], "no provider round trip");

    // A gateway with another key cannot open it: it starts a login (here silent, the provider
    // session being alive) instead of accepting the cookie.
    let f = &r["foreign"];
    assert_eq!(f["chain"][0]["url"], foreign, "{f}");
    assert_eq!(f["chain"][0]["status"], 302, "a cookie sealed with another key is no session: {f}");
    assert!(starts_with(&f["chain"][1]["url"], &format!("{}/auth?", bed.idp.issuer)), "{f}");
    assert_no_error_pages(&f["chain"]);
}

// ---- 7. a provider outage at refresh time ---------------------------------------------------

/// The provider's token endpoint fails (503) when a refresh is due but the session's access
/// token is still valid for ~30 s: like bearer tokens checked with cached keys ("the issuer
/// being down never stops tokens that can be checked"), the session should go on until its
/// token actually expires, not end and send the user to a provider that cannot sign them in.
#[test]
fn provider_outage_at_refresh_time_keeps_a_still_valid_session() {
    let _serial = serial();
    // Tokens live 8 s; a refresh is due in their second half. The outage starts 5 s after
    // sign-in, with ~3 s of validity left.
    let bed = Bed::start(Opts { gateways: 1, at_ttl: Some(8), ..Default::default() });
    let url = bed.url(0, PAGE);
    let r = bed.browse("outage", json!({ "wait_ms": 5000 }));
    assert_landed_as_user(&r["login"]["upstream"], &url);
    let during = &r["during"];
    eprintln!("during the outage: {during}");
    assert!(bed.logs().contains("refresh failed"), "the refresh was attempted and failed: {}", bed.logs());
    assert_eq!(
        during["kind"], "upstream",
        "a transient refresh failure ended a session whose access token was still valid: {during}"
    );
    assert_eq!(header(&during["upstream"], "x-forwarded-user"), USER, "{during}");
    // Once the provider is back, the next load refreshes and the page still loads.
    assert_eq!(r["after"]["kind"], "upstream", "{}", r["after"]);
}
