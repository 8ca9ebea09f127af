//! The login suite, run once per kind of login: `tests/login.rs` runs it for the single
//! `[login]` table (the login named `default`, endpoints on `/oauth2/`), `tests/login_named.rs`
//! for a `[[login]]` with a name and a `public_url` with a path (endpoints on `/wiki/oauth2/`,
//! its routes under `/wiki/`). The including crate declares the support modules (`common`,
//! `idp`, `login`, `services`) and `const APP: suite::App`; every endpoint, cookie name, route
//! path, provider redirect URI and nginx location here comes from that `APP`.
//!
//! Browser login through the real binary, the real OpenID Provider (`tests/idp`), and real
//! redis-server and nginx, without a browser: a scripted client (`tests/support/login.rs`) does
//! what a browser does (redirects, cookies per host, the provider's login form).
//!
//! Covered: the authorization-code + PKCE flow end to end; forged, replayed and refused callbacks;
//! the public open-redirect corpora as `rd`; browser vs API callers; `/oauth2/userinfo`;
//! sign-out with every cookie chunk cleared and the provider's end-session; nginx `auth_request`
//! forward-auth; the Redis store shared by two replicas, with sign-out and back-channel logout;
//! sealed cookies shared by replicas and key rotation; single-flight refresh; login_or_bearer.
//!
//! Needs node with `cd tests/idp && npm ci`, redis-server and nginx (`bash tests/run.sh`
//! installs everything). Each test starts its own provider, gateways and services.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::issuer_toml;
use crate::common::wait_ready;
use crate::common::{self, dead_port, echo, wait_until, Echo, Gateway, RawResponse, BASE};
use crate::idp::{self, jwt_parts, key_file, Idp, IdpOptions, API_RESOURCE};
use crate::login::{self, encode, query_param};
use crate::services;
use crate::APP as A;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub(crate) const SECRET: &str = "0123456789abcdef0123456789abcdef";
const NEW_SECRET: &str = "fedcba9876543210fedcba9876543210-new";
const HTML: (&str, &str) = ("Accept", "text/html,application/xhtml+xml");
const JSON: (&str, &str) = ("Accept", "application/json");
/// Forward-auth is the gateway's, not a login's: one endpoint for every login, on no prefix
/// (README, "Forward authentication"). It answers for the login of the route it resolves.
const FORWARD_AUTH: &str = "/oauth2/auth";

// ---- the app under test -------------------------------------------------------------------------

/// The login the suite runs against, and the names it is known by. The names are spelled out
/// (not derived from `name`) so the suite checks the documented naming rules of
/// `config/login.rs`, not a copy of their code.
pub struct App {
    /// `None`: the single `[login]` table (the login named `default`); else the `name` of a
    /// `[[login]]` table, which its routes give as `login = "NAME"`.
    pub name: Option<&'static str>,
    /// The path of `public_url`: empty, or like `/wiki`. The login's endpoints are under
    /// `{prefix}/oauth2/`, its routes under `{prefix}/`, its cookies have `Path={prefix}`.
    pub prefix: &'static str,
    /// The session cookie's name (chunks are `NAME_N`, sign-in cookies `NAME_flow_HEX`).
    pub cookie: &'static str,
    /// Where the login's keys start in Redis (`tollgate:` or `tollgate:login:NAME:`).
    pub redis_keys: &'static str,
    /// More configuration after the app's own: other logins and their routes, which must not
    /// change anything this login does.
    pub siblings: &'static str,
}

impl App {
    /// The login's table header (and name).
    fn table(&self) -> String {
        match self.name {
            None => "[login]".into(),
            Some(name) => format!("[[login]]\nname = \"{name}\""),
        }
    }

    /// A route's `login = ` line.
    fn route_login(&self) -> String {
        self.name.map(|n| format!("login = \"{n}\"\n")).unwrap_or_default()
    }

    /// The request path of endpoint `rest` (`start?rd=/`, `callback`, ...).
    fn ep(&self, rest: &str) -> String {
        format!("{}/oauth2/{rest}", self.prefix)
    }

    /// The request path of the app's own `path` (which starts with `/`).
    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// Where the login sends a browser when `rd` is missing or refused, and its cookies' `Path`.
    fn home(&self) -> &'static str {
        if self.prefix.is_empty() {
            "/"
        } else {
            self.prefix
        }
    }

    /// The name of the session cookie's chunk `i`.
    fn chunk(&self, i: usize) -> String {
        format!("{}_{i}", self.cookie)
    }

    /// The start of every sign-in (flow) cookie's name.
    fn flow(&self) -> String {
        format!("{}_flow_", self.cookie)
    }

    /// The cookie prefix browsers protect over TLS: `__Host-` needs `Path=/`.
    fn secure_prefix(&self) -> &'static str {
        if self.prefix.is_empty() {
            "__Host-"
        } else {
            "__Secure-"
        }
    }

    /// The Redis key pattern of this login's sessions.
    fn session_keys(&self) -> String {
        format!("{}session:*", self.redis_keys)
    }
}

/// Whether one `Set-Cookie` line has attribute `want` (`path=/wiki`, `httponly`), compared
/// whole, case-insensitively (`Path=/` must not pass for `Path=/wiki`).
fn has_attr(line: &str, want: &str) -> bool {
    line.split(';').skip(1).any(|a| a.trim().eq_ignore_ascii_case(want))
}

fn path_attr() -> String {
    format!("path={}", A.home())
}

/// Every line sets its cookie on the login's path: one set on another path would sit next to
/// the login's own in the browser, a second session the gateway cannot replace or clear.
fn assert_on_login_path<'a>(lines: impl IntoIterator<Item = &'a str>) {
    for line in lines {
        assert!(has_attr(line, &path_attr()), "{} missing in {line}", path_attr());
    }
}

/// Whether `line` deletes cookie `name` on the login's path.
fn clears(line: &str, name: &str) -> bool {
    line.starts_with(&format!("{name}=;")) && line.contains("Max-Age=0") && has_attr(line, &path_attr())
}

// ---- harness ------------------------------------------------------------------------------------

/// The login section's store and secret lines for the cookie store.
pub(crate) fn cookie_store(secret: &str) -> String {
    format!("session_store = \"cookie\"\ncookie_secret = \"{secret}\"\n")
}

fn redis_store(url: &str) -> String {
    format!("session_store = \"redis\"\nredis_url = \"{url}\"\ncookie_secret = \"{SECRET}\"\n")
}

/// The provider's settings for the `web` client of the app on a gateway at `origin`
/// (`http://127.0.0.1:PORT`): the login's callback and its post-logout URI (`public_url/`).
fn web_client_env(origin: &str) -> IdpOptions {
    IdpOptions::default()
        .with_env("IDP_WEB_REDIRECT_URIS", format!("{origin}{}", A.ep("callback")))
        .with_env("IDP_WEB_POST_LOGOUT_URIS", format!("{origin}{}", A.at("/")))
}

/// One provider, one echo upstream and the first gateway, whose port is fixed before the
/// provider starts (the provider must know the callback URL).
pub(crate) struct World {
    idp: Idp,
    echo: Echo,
    pub(crate) gw: Gateway,
    port: u16,
    /// `http://127.0.0.1:PORT`, the gateway's origin.
    origin: String,
    /// The login's `public_url`: the origin and the app's prefix.
    public: String,
    extra_login: String,
}

impl World {
    fn start(store: &str, extra_login: &str, idp_env: &[(&str, &str)]) -> World {
        World::start_edited(store, extra_login, idp_env, |c| c)
    }

    /// Like [`World::start`], the gateway's configuration passed through `edit` first.
    pub(crate) fn start_edited(
        store: &str,
        extra_login: &str,
        idp_env: &[(&str, &str)],
        edit: fn(String) -> String,
    ) -> World {
        let port = dead_port().port();
        let origin = format!("http://127.0.0.1:{port}");
        let public = format!("{origin}{}", A.prefix);
        let mut opts = web_client_env(&origin);
        for (k, v) in idp_env {
            opts = opts.with_env(*k, *v);
        }
        let idp = Idp::start(opts);
        let echo = echo();
        let extra_login = extra_login.to_string();
        let gw = start_gateway(&edit(config(port, &public, &idp.issuer, echo.addr, &format!("{store}{extra_login}"))));
        World { idp, echo, gw, port, origin, public, extra_login }
    }

    /// Another gateway process with the same public URL (a replica behind a load balancer) on
    /// its own port, with `store` lines.
    fn replica(&self, store: &str) -> Gateway {
        let port = dead_port().port();
        start_gateway(&config(
            port,
            &self.public,
            &self.idp.issuer,
            self.echo.addr,
            &format!("{store}{}", self.extra_login),
        ))
    }

    fn authorization_endpoint(&self) -> String {
        self.idp.discovery()["authorization_endpoint"].as_str().unwrap().to_string()
    }

    /// A scripted sign-in as `user` from request path `path` (prefix included), up to the
    /// callback.
    fn begin(&self, path: &str, user: &str) -> login::Pending {
        login::start_at(&self.origin, &self.public, path, user)
    }

    /// A whole scripted sign-in as `user` from request path `path`.
    pub(crate) fn login(&self, path: &str, user: &str) -> login::Login {
        self.begin(path, user).finish()
    }

    /// The request path of a URL on the gateway's origin.
    fn path_of<'a>(&self, url: &'a str) -> &'a str {
        url.strip_prefix(&self.origin).unwrap_or_else(|| panic!("{url} is not on {}", self.origin))
    }
}

fn config(port: u16, public: &str, issuer: &str, echo: SocketAddr, login_lines: &str) -> String {
    let refresh = if login_lines.contains("refresh_before") { "" } else { "refresh_before = \"60s\"\n" };
    let base = BASE.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1);
    let issuer_block = issuer_toml("idp", issuer, API_RESOURCE);
    let (table, login) = (A.table(), A.route_login());
    let origin = public.strip_suffix(A.prefix).unwrap_or(public);
    let route = |path: &str| A.at(path);
    format!(
        r#"{base}
{issuer_block}
{table}
client_id = "web"
client_secret = "web-secret"
public_url = "{public}"
scopes = ["openid", "email", "profile", "offline_access"]
{refresh}{login_lines}

[[route]]
auth = "login"
{login}name = "app"
path = "{app}"
upstream = "http://{echo}"
pass_access_token = true

[[route]]
auth = "login_or_bearer"
{login}name = "api"
path = "{api}"
upstream = "http://{echo}"

[[route]]
auth = "login"
{login}name = "with-token"
path = "{with_token}"
upstream = "http://{echo}"
pass_authorization_header = true

[[route]]
auth = "none"
name = "public"
path = "{public_route}"
upstream = "http://{echo}"
{siblings}"#,
        app = route("/"),
        api = route("/api/"),
        with_token = route("/with-token/"),
        public_route = route("/public/"),
        siblings = A.siblings.replace("{echo}", &echo.to_string()).replace("{origin}", origin),
    )
}

fn start_gateway(config: &str) -> Gateway {
    let gw = Gateway::start(config);
    wait_ready(&gw);
    gw
}

/// The echo upstream's view of a request that went through.
fn echoed(resp: &RawResponse) -> Value {
    assert_eq!(resp.status, 200, "expected the upstream's answer: {} {}", resp.status, resp.body);
    resp.json()
}

fn upstream_header(echo: &Value, name: &str) -> Option<String> {
    echo["headers"][name].as_array().map(|v| v.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
}

fn set_cookies(resp: &RawResponse) -> Vec<&str> {
    resp.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect()
}

/// Set-Cookie lines that store a non-empty value in the login's session cookie or a chunk.
fn session_set_cookies<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    lines
        .into_iter()
        .filter(|l| {
            let (name, rest) = l.split_once('=').unwrap_or(("", ""));
            let is_session = name == A.cookie
                || name
                    .strip_prefix(A.cookie)
                    .and_then(|r| r.strip_prefix('_'))
                    .is_some_and(|i| i.parse::<u32>().is_ok());
            is_session && !rest.starts_with(';') && !l.contains("Max-Age=0")
        })
        .collect()
}

fn assert_html_4xx(resp: &RawResponse, what: &str) {
    assert!((400..500).contains(&resp.status), "{what}: expected a 4xx page, got {} {}", resp.status, resp.body);
    let ct = resp.header("content-type").unwrap_or("");
    assert!(ct.starts_with("text/html"), "{what}: expected an HTML page, got content-type {ct:?}");
    assert!(resp.body.contains("<h1>"), "{what}: the page explains nothing: {}", resp.body);
    assert!(session_set_cookies(set_cookies(resp)).is_empty(), "{what}: a session was set: {:?}", resp.headers);
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn random_hex() -> String {
    let mut b = [0u8; 12];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `GET path` at `addr` (the gateway or nginx) with `Host: 127.0.0.1:PORT`, the host of the
/// public URL: with several logins, `/oauth2/*` belongs to a login only on its own host.
fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    common::http::request("GET", &format!("http://{addr}{path}"), headers, None)
}

/// GET `url` (on the gateway or nginx) with the scripted login's session cookie(s).
fn get_with(addr: SocketAddr, path: &str, cookie: &str, accept: (&str, &str)) -> RawResponse {
    get(addr, path, &[("Cookie", cookie), accept])
}

fn flip_char(s: &str, at: usize) -> String {
    let mut b = s.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

// ---- 1. the whole flow -------------------------------------------------------------------------

#[test]
fn login_lands_on_the_original_target_and_the_upstream_sees_the_user_not_the_session() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    let target = A.at("/dashboard/reports?tab=2&q=a%20b");
    let target = target.as_str();
    let done = w.login(target, "alice");
    assert_eq!(done.location, target, "back where the user started, path and query");

    // The session cookie: HttpOnly, SameSite=Lax, Path= the login's path, not Secure over http.
    let lines = session_set_cookies(done.set_cookie.iter().map(String::as_str));
    assert!(!lines.is_empty(), "{:?}", done.set_cookie);
    for line in &lines {
        for want in ["httponly", "samesite=lax", &path_attr()] {
            assert!(has_attr(line, want), "{want} missing in {line}");
        }
        assert!(!has_attr(line, "secure"), "Secure over plain http: {line}");
    }
    // The flow cookie is spent at the callback.
    assert!(
        done.set_cookie.iter().any(|l| l.starts_with(&A.flow()) && l.contains("Max-Age=0")),
        "the flow cookie is not cleared: {:?}",
        done.set_cookie
    );

    // The browser goes on to the target with everything it holds (the IdP's cookies too, same
    // host) plus an application cookie; a forged identity header is replaced.
    let url = format!("{}{}", w.origin, done.location);
    let jar = done.browser.cookie_header(&url).unwrap();
    assert!(jar.contains(&format!("{}=", A.cookie)), "{jar}");
    let cookie = format!("{jar}; theme=dark");
    let resp = get(w.gw.addr, target, &[("Cookie", &cookie), HTML, ("X-Forwarded-User", "mallory")]);
    let seen = echoed(&resp);
    assert_eq!(seen["uri"], target);
    assert_eq!(upstream_header(&seen, "x-forwarded-user").as_deref(), Some("alice"));
    assert_eq!(upstream_header(&seen, "x-forwarded-email").as_deref(), Some("alice@example.com"));
    assert_eq!(upstream_header(&seen, "x-forwarded-preferred-username").as_deref(), Some("alice"));
    let token = upstream_header(&seen, "x-forwarded-access-token").expect("pass_access_token");
    assert!(token.len() >= 20, "{token}");
    let upstream_cookie = upstream_header(&seen, "cookie").unwrap_or_default();
    assert!(!upstream_cookie.contains(A.cookie), "the upstream saw the session cookie: {upstream_cookie}");
    assert!(upstream_cookie.contains("theme=dark"), "the application's own cookie was dropped: {upstream_cookie}");

    // The access token is the user's: the provider's userinfo endpoint accepts it.
    let info = provider_userinfo(&w.idp, &token);
    assert_eq!(info.status, 200, "{}", info.text());
    assert_eq!(info.json()["sub"], "alice");
}

fn provider_userinfo(idp: &Idp, token: &str) -> idp::HttpResponse {
    let endpoint = idp.discovery()["userinfo_endpoint"].as_str().unwrap().to_string();
    idp::http_request("GET", &endpoint, &[("Authorization", &format!("Bearer {token}"))], None)
}

// ---- 2. forged, replayed and refused callbacks ---------------------------------------------

#[test]
fn forged_replayed_and_refused_callbacks_get_a_clear_4xx_page() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    let after = A.at("/after");
    let pending = w.begin(&after, "bob");
    let cb = pending.callback_url.clone();
    assert!(cb.starts_with(&format!("{}{}", w.origin, A.ep("callback?"))), "{cb}");
    let path = w.path_of(&cb).to_string();
    let state = query_param(&cb, "state").expect("state");
    let code = query_param(&cb, "code").expect("code");
    let iss = query_param(&cb, "iss").unwrap_or_default();
    let cookie = pending.browser.cookie_header(&cb).expect("the flow cookie");
    let flow_name = cookie
        .split("; ")
        .filter_map(|c| c.split_once('='))
        .find(|(n, _)| n.starts_with(&A.flow()))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .expect("a flow cookie");

    // Wrong state, with the genuine flow cookie.
    let forged = A.ep(&format!("callback?code={}&state={}&iss={}", encode(&code), "forged-state", encode(&iss)));
    assert_html_4xx(&get(w.gw.addr, &forged, &[("Cookie", &cookie), HTML]), "wrong state");
    // No flow cookie at all (no PKCE verifier).
    assert_html_4xx(&get(w.gw.addr, &path, &[HTML]), "no flow cookie");
    // A tampered flow cookie.
    let tampered = format!("{}={}", flow_name.0, flip_char(&flow_name.1, flow_name.1.len() / 2));
    assert_html_4xx(&get(w.gw.addr, &path, &[("Cookie", &tampered), HTML]), "tampered flow cookie");
    // Another login's flow cookie under this state's name: its state differs.
    let other = get(w.gw.addr, &A.ep("start?rd=/"), &[HTML]);
    let other_value = set_cookies(&other)
        .into_iter()
        .find_map(|l| l.strip_prefix(&A.flow()))
        .and_then(|l| l.split_once('=').map(|(_, v)| v.split(';').next().unwrap().to_string()))
        .expect("a flow cookie from /oauth2/start");
    let swapped = format!("{}={other_value}", flow_name.0);
    assert_html_4xx(&get(w.gw.addr, &path, &[("Cookie", &swapped), HTML]), "another flow's cookie");
    // No code or state.
    assert_html_4xx(&get(w.gw.addr, &A.ep("callback"), &[("Cookie", &cookie), HTML]), "empty callback");
    // The issuer named in the response (RFC 9207) must be ours.
    let wrong_iss =
        A.ep(&format!("callback?code={}&state={}&iss={}", encode(&code), encode(&state), encode("http://127.0.0.1:1")));
    assert_html_4xx(&get(w.gw.addr, &wrong_iss, &[("Cookie", &cookie), HTML]), "wrong iss");

    // None of that spent the code: the genuine callback still signs in.
    let tokens_before = w.idp.count("token");
    let done = pending.finish();
    assert_eq!(done.location, after);
    assert_eq!(w.idp.count("token"), tokens_before + 1, "one code exchange");

    // The same callback again, flow cookie and all: the provider refuses the spent code.
    let replay = get(w.gw.addr, &path, &[("Cookie", &done.callback_cookie), HTML]);
    assert_html_4xx(&replay, "replayed code");
    assert!(replay.body.contains("already used"), "{}", replay.body);
    assert_eq!(w.idp.count("token"), tokens_before + 2, "the replay reached the provider (invalid_grant)");

    // The provider's own refusal, with hostile text: shown, escaped.
    let denied = A.ep(&format!(
        "callback?error=access_denied&error_description={}&state={}",
        encode("<script>alert(1)</script> & \"quotes\""),
        encode(&state)
    ));
    let resp = get(w.gw.addr, &denied, &[("Cookie", &cookie), HTML]);
    assert_html_4xx(&resp, "error=access_denied");
    assert!(resp.body.contains("access_denied"), "{}", resp.body);
    assert!(resp.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", resp.body);
    assert!(!resp.body.contains("<script"), "unescaped provider text: {}", resp.body);
    assert!(!resp.body.contains("\"quotes\""), "{}", resp.body);
}

/// A refused callback leaves a warning naming the reason (the browser's page says less, and an
/// operator chasing a failed sign-in has only the log): a forged state, and a code the provider
/// refuses (replayed). Both were silent before.
#[test]
fn refused_callbacks_are_logged_with_their_reason() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    let refused = |reason: &str| {
        let needle = |l: &String| l.contains("sign-in callback refused") && l.contains(reason);
        wait_until(&format!("a warning naming {reason:?}"), Duration::from_secs(5), || {
            w.gw.logs.lock().unwrap().iter().any(needle).then_some(())
        });
        let line = w.gw.logs.lock().unwrap().iter().find(|l| needle(l)).cloned().unwrap();
        assert!(line.contains("\"level\":\"WARN\""), "{line}");
    };
    let pending = w.begin(&A.at("/after"), "rita");
    let cb = pending.callback_url.clone();
    let path = w.path_of(&cb).to_string();
    let cookie = pending.browser.cookie_header(&cb).expect("the flow cookie");
    let code = query_param(&cb, "code").expect("code");
    let iss = query_param(&cb, "iss").unwrap_or_default();

    let forged = A.ep(&format!("callback?code={}&state=forged-state&iss={}", encode(&code), encode(&iss)));
    assert_html_4xx(&get(w.gw.addr, &forged, &[("Cookie", &cookie), HTML]), "wrong state");
    refused("no flow cookie of this browser holds the state");

    let done = pending.finish();
    let replay = get(w.gw.addr, &path, &[("Cookie", &done.callback_cookie), HTML]);
    assert_html_4xx(&replay, "replayed code");
    refused("the provider refused the code (invalid_grant");
}

// ---- 3. open redirects ----------------------------------------------------------------------

/// A `Location` the browser resolves to the gateway's own origin, under the app's path (another
/// app on the same host is another site).
fn on_site(location: &str, origin: &str) -> bool {
    let visible = location.bytes().all(|b| (0x21..0x7f).contains(&b));
    let path = match location.strip_prefix(origin) {
        Some(rest) => rest,
        None => location,
    };
    let under = path.strip_prefix(A.prefix).is_some_and(|r| r.is_empty() || r.starts_with('/'));
    visible && path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') && under
}

#[test]
fn every_open_redirect_payload_stays_on_site() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    let authorize = w.authorization_endpoint();
    let mut lines: Vec<String> = Vec::new();
    for corpus in [
        include_str!("../data/open-redirects-oauth2-proxy.txt"),
        include_str!("../data/open-redirects-mod-auth-openidc.txt"),
    ] {
        lines.extend(corpus.lines().map(str::to_string));
    }
    // Same host, another port: another origin.
    let other = dead_port().port();
    lines.push(format!("http://127.0.0.1:{other}/"));
    lines.push(format!("https://127.0.0.1:{}/", w.port));
    lines.push(format!("http://127.0.0.1:{}@evil.example/", w.port));
    assert!(lines.len() > 1300, "the corpora are there");

    let mut failures = Vec::new();
    for line in &lines {
        let q = encode(line);
        let out = get(w.gw.addr, &A.ep(&format!("sign_out?rd={q}")), &[HTML]);
        match (out.status, out.header("location")) {
            (302, Some(loc)) if on_site(loc, &w.origin) => {}
            (status, loc) => failures.push(format!("sign_out rd={line:?} -> {status} {loc:?}")),
        }
        let start = get(w.gw.addr, &A.ep(&format!("start?rd={q}")), &[HTML]);
        match (start.status, start.header("location")) {
            (302, Some(loc)) if loc.starts_with(&authorize) => {}
            (status, loc) => failures.push(format!("start rd={line:?} -> {status} {loc:?} {}", start.body)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} payloads misbehaved:\n{}",
        failures.len(),
        lines.len(),
        failures[..failures.len().min(30)].join("\n")
    );

    // Legitimate targets are kept.
    let absolute = format!("{}/x?y=1", w.public);
    for good in [A.at("/"), A.at("/a/b?c=d&e=%20f#frag"), absolute] {
        let out = get(w.gw.addr, &A.ep(&format!("sign_out?rd={}", encode(&good))), &[HTML]);
        assert_eq!(out.header("location"), Some(good.as_str()), "{good}");
    }

    // After a real login the `rd` given to /oauth2/start decides where the callback sends the
    // browser: the same validation applies.
    let other_origin = format!("http://127.0.0.1:{other}/");
    for (rd, want) in [
        (A.at("/deep/link?x=1"), A.at("/deep/link?x=1")),
        ("//evil.example/".into(), A.home().into()),
        (A.at("/\u{3031}google.com"), A.at("/%E3%80%B1google.com")),
        (other_origin, A.home().into()),
    ] {
        let done = w.login(&A.ep(&format!("start?rd={}", encode(&rd))), "rita");
        assert_eq!(done.location, want, "rd={rd:?}");
    }
}

// ---- 4. browsers and API callers --------------------------------------------------------------

#[test]
fn browsers_are_sent_to_sign_in_and_api_callers_get_401() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    let authorize = w.authorization_endpoint();
    let page = A.at("/page");

    let resp = get(w.gw.addr, &A.at("/page?x=1"), &[HTML]);
    assert_eq!(resp.status, 302, "{}", resp.body);
    let loc = resp.header("location").unwrap();
    assert!(loc.starts_with(&format!("{authorize}?")), "{loc}");
    let p = |name: &str| query_param(loc, name).unwrap_or_else(|| panic!("no {name} in {loc}"));
    assert_eq!(p("response_type"), "code");
    assert_eq!(p("client_id"), "web");
    assert_eq!(p("code_challenge_method"), "S256");
    let challenge = p("code_challenge");
    assert!(
        challenge.len() == 43 && challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "S256 challenge is base64url of 32 bytes: {challenge}"
    );
    assert!(p("state").len() >= 32, "state");
    assert!(p("nonce").len() >= 32, "nonce");
    assert_ne!(p("state"), p("nonce"));
    assert_eq!(p("redirect_uri"), format!("{}{}", w.origin, A.ep("callback")));
    assert!(p("scope").split(' ').any(|s| s == "openid"), "{}", p("scope"));
    let flow = set_cookies(&resp).into_iter().find(|l| l.starts_with(&A.flow())).expect("flow cookie");
    assert!(has_attr(flow, "httponly") && has_attr(flow, "samesite=lax") && has_attr(flow, &path_attr()), "{flow}");
    // Two starts are two independent flows.
    let again = get(w.gw.addr, &A.at("/page?x=1"), &[HTML]);
    assert_ne!(query_param(again.header("location").unwrap(), "state"), Some(p("state")));

    for (what, headers) in [
        ("XMLHttpRequest", vec![HTML, ("X-Requested-With", "XMLHttpRequest")]),
        ("Accept: application/json", vec![JSON]),
        ("no Accept", vec![]),
    ] {
        let resp = get(w.gw.addr, &page, &headers);
        assert_eq!(resp.status, 401, "{what}: {}", resp.body);
        let challenge = resp.header("www-authenticate").unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
        assert!(resp.header("location").is_none(), "{what}");
    }

    // Broken sessions are no session: a redirect for a browser, 401 for a script, never 5xx.
    let done = w.login(&A.at("/"), "carol");
    let (name, value) = done.cookies[0].clone();
    assert_eq!(name, A.cookie);
    let good = format!("{name}={value}");
    assert_eq!(get_with(w.gw.addr, &page, &good, HTML).status, 200, "control: the genuine session");
    let flow_value = flow.split(';').next().unwrap().split_once('=').unwrap().1;
    for (what, cookie) in [
        ("tampered", format!("{name}={}", flip_char(&value, value.len() / 2))),
        ("truncated", format!("{name}={}", &value[..value.len() - 4])),
        ("garbage", format!("{name}=not-a-session")),
        ("unversioned", format!("{name}={}", value.trim_start_matches("v1."))),
        ("a flow cookie as a session", format!("{name}={flow_value}")),
        ("a chunk without chunk 0", format!("{name}_1={value}")),
    ] {
        let browser = get_with(w.gw.addr, &page, &cookie, HTML);
        assert_eq!(browser.status, 302, "{what}: {}", browser.body);
        assert!(browser.header("location").unwrap().starts_with(&authorize), "{what}");
        let api = get_with(w.gw.addr, &page, &cookie, JSON);
        assert_eq!(api.status, 401, "{what}: {}", api.body);
        assert_eq!(get_with(w.gw.addr, &A.ep("userinfo"), &cookie, JSON).status, 401, "{what}");
    }

    // Behind TLS (an https public URL) every cookie is Secure and `__Host-` prefixed
    // (`__Secure-` on a path: `__Host-` needs `Path=/`).
    let tls_port = dead_port().port();
    let tls = start_gateway(&config(
        tls_port,
        &format!("https://127.0.0.1:{tls_port}{}", A.prefix),
        &w.idp.issuer,
        w.echo.addr,
        &cookie_store(SECRET),
    ));
    let resp = get(tls.addr, &page, &[HTML]);
    assert_eq!(resp.status, 302, "{}", resp.body);
    let secure_flow = format!("{}{}", A.secure_prefix(), A.flow());
    let flow = set_cookies(&resp)
        .into_iter()
        .find(|l| l.starts_with(&secure_flow))
        .unwrap_or_else(|| panic!("no {secure_flow} cookie: {:?}", resp.headers));
    for want in ["secure", "httponly", "samesite=lax", &path_attr()] {
        assert!(has_attr(flow, want), "{want} missing in {flow}");
    }
    assert!(!flow.to_ascii_lowercase().contains("domain"), "prefixed cookies have no Domain: {flow}");
    assert_eq!(
        query_param(resp.header("location").unwrap(), "redirect_uri"),
        Some(format!("https://127.0.0.1:{tls_port}{}", A.ep("callback")))
    );
    drop(tls);

    // login_or_bearer: a session or a bearer token; public routes need neither.
    let items = A.at("/api/items");
    let api = get_with(w.gw.addr, &items, &good, JSON);
    assert_eq!(upstream_header(&echoed(&api), "x-forwarded-user").as_deref(), Some("carol"));
    let jwt = w.idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    let bearer = get(w.gw.addr, &items, &[("Authorization", &format!("Bearer {jwt}")), JSON]);
    assert_eq!(upstream_header(&echoed(&bearer), "x-forwarded-user").as_deref(), Some("m2m"));
    assert_eq!(get(w.gw.addr, &items, &[JSON]).status, 401);
    assert_eq!(get(w.gw.addr, &items, &[HTML]).status, 302);
    let public = get(w.gw.addr, &A.at("/public/logo.png"), &[HTML]);
    assert!(upstream_header(&echoed(&public), "x-forwarded-user").is_none());
}

// ---- 5. userinfo and sign-out ----------------------------------------------------------------

#[test]
fn userinfo_and_sign_out_clear_every_chunk_and_end_the_provider_session() {
    // A long display name makes the ID token (and so the sealed session) span several cookies.
    let accounts = json!({ "bigbob": { "name": "B".repeat(3000) } }).to_string();
    let w = World::start(&cookie_store(SECRET), "", &[("IDP_ACCOUNTS", &accounts)]);
    let end_session = w.idp.discovery()["end_session_endpoint"].as_str().unwrap().to_string();

    let userinfo = A.ep("userinfo");
    assert_eq!(get(w.gw.addr, &userinfo, &[JSON]).status, 401);
    let anon = get(w.gw.addr, &userinfo, &[JSON]);
    assert_eq!(anon.json()["error"], "unauthorized");

    let done = w.login(&A.at("/"), "bigbob");
    let names: Vec<&str> = done.cookies.iter().map(|(n, _)| n.as_str()).collect();
    let chunk = format!("{}_", A.cookie);
    assert!(names.len() >= 2 && names.iter().all(|n| n.starts_with(&chunk)), "chunked session: {names:?}");
    assert_on_login_path(session_set_cookies(done.set_cookie.iter().map(String::as_str)));
    let cookie = done.cookie_header();

    let info = get_with(w.gw.addr, &userinfo, &cookie, JSON);
    assert_eq!(info.status, 200, "{}", info.body);
    assert!(info.header("content-type").unwrap().starts_with("application/json"));
    let v = info.json();
    assert_eq!(v["user"], "bigbob");
    assert_eq!(v["email"], "bigbob@example.com");
    assert_eq!(v["preferred_username"], "bigbob");
    assert_eq!(get_with(w.gw.addr, &A.at("/x"), &cookie, JSON).status, 200, "the chunked session works");

    let out = get_with(w.gw.addr, &A.ep("sign_out?rd=/bye"), &cookie, HTML);
    assert_eq!(out.status, 302, "{}", out.body);
    let cleared: Vec<&str> = set_cookies(&out);
    for name in &names {
        assert!(cleared.iter().any(|l| clears(l, name)), "{name} not cleared: {cleared:?}");
    }
    assert!(session_set_cookies(cleared.iter().copied()).is_empty(), "sign-out set a session: {cleared:?}");
    let loc = out.header("location").unwrap();
    assert!(loc.starts_with(&format!("{end_session}?")), "{loc}");
    let hint = query_param(loc, "id_token_hint").expect("id_token_hint");
    let (header, claims) = jwt_parts(&hint);
    assert_eq!(header["kid"], "test-rsa-1");
    assert_eq!(claims["sub"], "bigbob");
    assert_eq!(claims["aud"], "web");
    assert_eq!(query_param(loc, "post_logout_redirect_uri").as_deref(), Some(&*format!("{}/", w.public)));
    // The provider accepts it (valid hint, registered post-logout URI): its confirmation page.
    let confirm = login::http("GET", loc, &[("Accept", "text/html")], None);
    assert_eq!(confirm.status, 200, "{}", confirm.text());
    assert!(confirm.text().contains("xsrf"), "{}", confirm.text());

    // A small session is one cookie; sign-out clears exactly it. Without a session, sign-out
    // goes straight to rd.
    let small = w.login(&A.at("/"), "al");
    assert_eq!(small.cookies.len(), 1);
    let out = get_with(w.gw.addr, &A.ep("sign_out"), &small.cookie_header(), HTML);
    assert!(set_cookies(&out).iter().any(|l| clears(l, A.cookie)), "{:?}", out.headers);
    let bye = A.at("/bye");
    let bare = get(w.gw.addr, &A.ep(&format!("sign_out?rd={bye}")), &[HTML]);
    assert_eq!((bare.status, bare.header("location")), (302, Some(bye.as_str())));
}

// ---- 5b. sign-out from other sites, cookies a few clients can pile up ---------------------------

/// A sign-out GET carrying `cookie` and, when given, `Sec-Fetch-Site`.
fn sign_out_from(w: &World, site: Option<&str>, cookie: &str) -> RawResponse {
    let mut headers = vec![("Cookie", cookie), HTML];
    if let Some(site) = site {
        headers.push(("Sec-Fetch-Site", site));
    }
    get(w.gw.addr, &A.ep(&format!("sign_out?rd={}", A.at("/bye"))), &headers)
}

fn signed_in(w: &World, cookie: &str) -> bool {
    get_with(w.gw.addr, &A.at("/x"), cookie, JSON).status == 200
}

fn sign_out_post(w: &World, cookie: &str, body: &str) -> login::Response {
    login::http(
        "POST",
        &format!("{}{}", w.origin, A.ep("sign_out")),
        &[
            ("Cookie", cookie),
            HTML,
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        Some(body.as_bytes()),
    )
}

#[test]
fn sign_out_needs_a_same_origin_or_typed_navigation_or_the_confirmed_form() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    let end_session = w.idp.discovery()["end_session_endpoint"].as_str().unwrap().to_string();
    let cookie = w.login(&A.at("/"), "sam").cookie_header();

    // A sibling subdomain or another site: a page that asks, nothing ended.
    let mut form = None;
    for site in ["same-site", "cross-site", "SAME-SITE", "something-new"] {
        let page = sign_out_from(&w, Some(site), &cookie);
        assert_eq!(page.status, 403, "{site}: {}", page.body);
        assert!(set_cookies(&page).is_empty(), "{site}: cookies changed: {:?}", page.headers);
        assert_eq!(page.header("x-frame-options"), Some("DENY"), "the button must not be framed");
        assert!(page.header("content-security-policy").unwrap().contains("frame-ancestors 'none'"));
        let (action, fields) = login::form(&page.body).unwrap_or_else(|| panic!("{site}: no form: {}", page.body));
        assert_eq!(action, A.ep("sign_out"));
        assert!(page.body.contains("method=\"post\""), "{}", page.body);
        form = Some(fields);
        assert!(signed_in(&w, &cookie), "{site} signed the user out");
    }
    let fields = form.unwrap();
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    let bye = A.at("/bye");
    assert_eq!(field("rd"), bye);

    // The form's POST without its token, with a forged one, or with another session's: refused.
    let other = w.login(&A.at("/"), "otto").cookie_header();
    let other_token = {
        let page = sign_out_from(&w, Some("same-site"), &other);
        let (_, f) = login::form(&page.body).unwrap();
        f.into_iter().find(|(k, _)| k == "token").unwrap().1
    };
    for body in [
        format!("rd={}", encode(&bye)),
        format!("token={}&rd={}", encode(&flip_char(&field("token"), 20)), encode(&bye)),
        format!("token={}&rd={}", encode(&other_token), encode(&bye)),
    ] {
        let resp = sign_out_post(&w, &cookie, &body);
        assert_eq!(resp.status, 403, "{body}: {}", resp.text());
        assert!(signed_in(&w, &cookie), "{body} signed the user out");
    }
    // With it: signed out, on to the provider's end-session.
    let body = format!("token={}&rd={}", encode(&field("token")), encode(&field("rd")));
    let out = sign_out_post(&w, &cookie, &body);
    assert_eq!(out.status, 303, "{}", out.text());
    assert!(out.header("location").unwrap().starts_with(&end_session), "{:?}", out.header("location"));
    assert!(out.headers_named("set-cookie").any(|l| clears(l, A.cookie)), "{:?}", out.headers);

    // Typed (none) and same-origin navigations sign out at once; so does a client that sends
    // no Sec-Fetch-Site at all (older browsers, scripts), as before.
    for site in [Some("none"), Some("same-origin"), None] {
        let cookie = w.login(&A.at("/"), "sam").cookie_header();
        let out = sign_out_from(&w, site, &cookie);
        assert_eq!(out.status, 302, "{site:?}: {}", out.body);
        assert!(set_cookies(&out).iter().any(|l| clears(l, A.cookie)), "{site:?}: {:?}", out.headers);
    }
    // Without a session there is nothing to protect: straight to rd.
    let bare = sign_out_from(&w, Some("cross-site"), "a=1");
    assert_eq!((bare.status, bare.header("location")), (302, Some(bye.as_str())));
}

#[test]
fn repeated_sign_in_starts_keep_a_few_flow_cookies() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    let host = "127.0.0.1";
    // Six starts with the longest rd kept (2 KB): every flow cookie is ~3 KB.
    let long = A.at(&format!("/{}", "a".repeat(2040)));
    let start = A.ep(&format!("start?rd={}", encode(&long)));
    let mut browser = login::Browser::default();
    for i in 0..6 {
        let url = format!("{}{start}", w.origin);
        let resp = browser.request("GET", &url, &[HTML], None);
        assert_eq!(resp.status, 302, "start {i}: {}", resp.text());
        assert!(resp.headers_named("set-cookie").count() <= 3, "start {i}: {:?}", resp.headers);
        let flows = browser.cookies_named(host, &A.flow());
        assert_eq!(flows.len(), (i + 1).min(3), "start {i}: {:?}", flows.iter().map(|c| &c.name).collect::<Vec<_>>());
    }
    // The browser can still talk to the gateway (six such cookies were over 16 KiB: 431).
    let jar = browser.cookie_header(&format!("{}/", w.public)).unwrap();
    assert!(jar.len() < 12 * 1024, "{}", jar.len());
    let resp = get(w.gw.addr, &A.ep("userinfo"), &[("Cookie", &jar), JSON]);
    assert_eq!(resp.status, 401, "{}", resp.body);
    // And the newest flows are the ones kept: a sign-in started now finishes, back at rd.
    let done = login::start_with(browser, &w.origin, &w.public, &start, "fay").finish();
    assert_eq!(done.location, long);
}

#[test]
fn rd_is_bounded_as_it_is_stored() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    // rd is bounded as it is stored: 700 "é" are 1,400 bytes, 4,200 once percent-encoded, and a
    // flow cookie with them would be past the ~4 KB browsers keep. Such an rd becomes the
    // login's home ("/", or its path).
    let wide = A.at(&format!("/{}", "\u{e9}".repeat(700)));
    let start = A.ep(&format!("start?rd={}", encode(&wide)));
    let resp = get(w.gw.addr, &start, &[HTML]);
    let flow = set_cookies(&resp).into_iter().find(|l| l.starts_with(&A.flow())).unwrap();
    assert!(flow.len() < 4000, "a {}-byte flow cookie", flow.len());
    let done = w.login(&start, "fay");
    assert_eq!(done.location, A.home());
    // The login's home is the app's: the browser lands on it signed in.
    let landing = get_with(w.gw.addr, &done.location, &done.cookie_header(), JSON);
    assert_eq!(upstream_header(&echoed(&landing), "x-forwarded-user").as_deref(), Some("fay"));
}

#[test]
fn a_thousand_lookalike_cookies_get_a_handful_of_deletions() {
    let port = dead_port().port();
    let origin = format!("http://127.0.0.1:{port}");
    let public = format!("{origin}{}", A.prefix);
    let idp = Idp::start(web_client_env(&origin));
    let echo = echo();
    // Room for a 1,000-cookie header.
    let config = config(port, &public, &idp.issuer, echo.addr, &cookie_store(SECRET)).replacen(
        "workers = 2",
        "workers = 2\nmax_header_bytes = \"64KiB\"",
        1,
    );
    let gw = start_gateway(&config);
    let chunks: Vec<String> = (0..1000).map(|i| format!("{}=x", A.chunk(i))).collect();
    let flows: Vec<String> = (0..1000).map(|i| format!("{}{i:012x}=x", A.flow())).collect();

    // Sign-out clears the session's cookies: those that can exist (the cookie and 16 chunks).
    let out = get(gw.addr, &A.ep("sign_out"), &[("Cookie", &chunks.join("; ")), HTML]);
    assert_eq!(out.status, 302, "{}", out.body);
    let cleared = set_cookies(&out);
    assert!(cleared.len() <= 17, "{} deletions", cleared.len());
    assert!(
        cleared.iter().any(|l| clears(l, &A.chunk(15)))
            && !cleared.iter().any(|l| l.starts_with(&format!("{}=", A.chunk(16)))),
        "{cleared:?}"
    );
    // A sign-in start trims flow cookies, a bounded number at a time.
    let start = get(gw.addr, &A.ep("start?rd=/"), &[("Cookie", &flows.join("; ")), HTML]);
    assert_eq!(start.status, 302, "{}", start.body);
    let lines = set_cookies(&start);
    assert!((2..=17).contains(&lines.len()), "{} Set-Cookie lines", lines.len());
}

// ---- 6. nginx auth_request -----------------------------------------------------------------------

#[test]
fn nginx_auth_request_forward_auth() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    let app = echo();
    let nginx = services::Nginx::start(&format!(
        r#"
    server {{
        listen {{{{LISTEN}}}};
        location = {auth} {{
            internal;
            proxy_pass http://127.0.0.1:{gw};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
        }}
        location @login {{
            return 302 {origin}{start}?rd=$request_uri;
        }}
        location / {{
            auth_request {auth};
            auth_request_set $user $upstream_http_x_auth_request_user;
            auth_request_set $email $upstream_http_x_auth_request_email;
            proxy_set_header X-User $user;
            proxy_set_header X-Email $email;
            proxy_pass http://{app};
            error_page 401 = @login;
        }}
    }}
"#,
        auth = FORWARD_AUTH,
        gw = w.port,
        origin = w.origin,
        start = A.ep("start"),
        app = app.addr,
    ));
    let app_page = A.at("/app/page");

    // No session: nginx sends the browser to tollgate's sign-in with the original path.
    let resp = get(nginx.addr(), &app_page, &[HTML]);
    assert_eq!(resp.status, 302, "{}\nnginx: {}", resp.body, nginx.output());
    let loc = resp.header("location").unwrap().to_string();
    assert_eq!(loc, format!("{}{}?rd={app_page}", w.origin, A.ep("start")));
    let api = get(nginx.addr(), &app_page, &[JSON]);
    assert_eq!(api.status, 302, "nginx's error_page handles every 401");

    // Follow it: the scripted login starts at that very URL and comes back to the path.
    let done = w.login(w.path_of(&loc), "nina");
    assert_eq!(done.location, app_page);
    let ok = get_with(nginx.addr(), &app_page, &done.cookie_header(), HTML);
    let seen = echoed(&ok);
    assert_eq!(upstream_header(&seen, "x-user").as_deref(), Some("nina"), "{seen}");
    assert_eq!(upstream_header(&seen, "x-email").as_deref(), Some("nina@example.com"));

    // A tampered session is none. A bearer token counts where the route takes one
    // (login_or_bearer), not on a login route.
    let (name, value) = &done.cookies[0];
    let bad = format!("{name}={}", flip_char(value, value.len() / 2));
    assert_eq!(get_with(nginx.addr(), &app_page, &bad, HTML).status, 302);
    let jwt = w.idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    let bearer = get(nginx.addr(), &A.at("/api/items"), &[("Authorization", &format!("Bearer {jwt}")), JSON]);
    assert_eq!(upstream_header(&echoed(&bearer), "x-user").as_deref(), Some("m2m"));
    let bearer = get(nginx.addr(), &app_page, &[("Authorization", &format!("Bearer {jwt}")), JSON]);
    assert_eq!(bearer.status, 302, "a login route takes no bearer token");

    // /oauth2/auth itself, as Traefik would call it.
    let auth = FORWARD_AUTH;
    let x = A.at("/x");
    let direct = get(w.gw.addr, auth, &[("Cookie", &done.cookie_header()), ("X-Forwarded-Uri", &x), JSON]);
    assert_eq!(direct.status, 202);
    assert_eq!(direct.header("x-auth-request-user"), Some("nina"));
    let denied = get(w.gw.addr, auth, &[JSON, ("X-Original-URL", &app_page)]);
    assert_eq!(denied.status, 401);
    let sign_in = A.ep(&format!("start?rd={}", encode(&app_page)));
    assert_eq!(denied.header("x-auth-request-redirect"), Some(sign_in.as_str()));
    // Traefik forwardAuth passes the answer to the browser: a browser is sent to sign in.
    let traefik = get(w.gw.addr, auth, &[HTML, ("X-Forwarded-Uri", &app_page)]);
    assert_eq!(traefik.status, 302);
    assert!(traefik.header("location").unwrap().starts_with(&w.authorization_endpoint()));
}

// ---- 7. Redis store ----------------------------------------------------------------------------

fn logout_token(issuer: &str, claims: Value) -> String {
    let pem = std::fs::read(key_file("rsa1.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    header.typ = Some("logout+jwt".into());
    let mut all = json!({
        "iss": issuer, "aud": "web", "iat": now(), "exp": now() + 120, "jti": random_hex(),
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    });
    for (k, v) in claims.as_object().unwrap() {
        if v.is_null() {
            all.as_object_mut().unwrap().remove(k);
        } else {
            all[k] = v.clone();
        }
    }
    jsonwebtoken::encode(&header, &all, &key).unwrap()
}

fn post_logout(gw: &Gateway, token: &str) -> login::Response {
    let body = format!("logout_token={}", encode(token));
    login::http(
        "POST",
        &gw.url(&A.ep("backchannel_logout")),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(body.as_bytes()),
    )
}

/// The user of the session `cookie` on a login route of `gw`, `None` when it is no session.
pub(crate) fn works(gw: &Gateway, cookie: &str) -> Option<String> {
    let resp = get_with(gw.addr, &A.at("/whoami"), cookie, JSON);
    match resp.status {
        200 => upstream_header(&resp.json(), "x-forwarded-user"),
        401 => None,
        other => panic!("unexpected {other}: {}", resp.body),
    }
}

#[test]
fn redis_sessions_are_shared_by_replicas_and_revocable() {
    let redis = services::Redis::start();
    let store = redis_store(&redis.url());
    let w = World::start(&store, "", &[]);
    let b = w.replica(&store);

    let r = A.at("/r");
    let done = w.login(&r, "dave");
    assert_eq!(done.cookies.len(), 1);
    let (name, id) = &done.cookies[0];
    assert_eq!(name, A.cookie);
    assert!(
        id.len() == 43
            && !id.starts_with("v1.")
            && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "the cookie is an opaque id, not a sealed session: {id}"
    );
    let keys = redis.keys(&A.session_keys());
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(!keys[0].contains(id.as_str()), "the key is not the cookie value");
    let cookie = done.cookie_header();
    // Several requests each: every worker of both gateways has opened (and cached) the session
    // before it is removed.
    for _ in 0..4 {
        assert_eq!(works(&w.gw, &cookie).as_deref(), Some("dave"));
        assert_eq!(works(&b, &cookie).as_deref(), Some("dave"), "the replica reads the same Redis");
    }

    // Sign out at the replica: gone everywhere.
    let out = get_with(b.addr, &A.ep("sign_out"), &cookie, HTML);
    assert_eq!(out.status, 302);
    assert!(set_cookies(&out).iter().any(|l| clears(l, A.cookie)), "{:?}", out.headers);
    assert!(redis.keys(&A.session_keys()).is_empty(), "{:?}", redis.keys("*"));
    assert_eq!(works(&w.gw, &cookie), None);
    assert_eq!(works(&b, &cookie), None);
    assert_eq!(get_with(w.gw.addr, &r, &cookie, HTML).status, 302);
    // A guessed id is no session either.
    assert_eq!(works(&w.gw, &format!("{}={}", A.cookie, flip_char(id, 5))), None);

    // Back-channel logout: dave's sessions end on every replica; erin's stays.
    let dave = w.login(&A.at("/"), "dave").cookie_header();
    let dave2 = w.login(&A.at("/"), "dave").cookie_header();
    let erin = w.login(&A.at("/"), "erin").cookie_header();
    for _ in 0..4 {
        for c in [&dave, &dave2] {
            assert_eq!(works(&w.gw, c).as_deref(), Some("dave"));
            assert_eq!(works(&b, c).as_deref(), Some("dave"));
        }
    }
    let token = logout_token(&w.idp.issuer, json!({ "sub": "dave" }));
    let resp = post_logout(&w.gw, &token);
    assert_eq!(resp.status, 200, "{}", resp.text());
    for c in [&dave, &dave2] {
        assert_eq!(works(&w.gw, c), None, "dave's session survived back-channel logout");
        assert_eq!(works(&b, c), None, "dave's session survived on the replica");
    }
    assert_eq!(works(&b, &erin).as_deref(), Some("erin"));

    // Refused logout tokens (erin's session must survive each).
    let replay = post_logout(&w.gw, &token);
    assert_eq!(replay.status, 400, "replayed jti: {}", replay.text());
    let refused = [
        ("nonce", json!({ "sub": "erin", "nonce": "n" })),
        ("no events", json!({ "sub": "erin", "events": null })),
        ("wrong event", json!({ "sub": "erin", "events": { "urn:other": {} } })),
        ("wrong audience", json!({ "sub": "erin", "aud": "someone-else" })),
        ("expired", json!({ "sub": "erin", "iat": now() - 600, "exp": now() - 300 })),
        ("no sub or sid", json!({})),
        ("another issuer", json!({ "sub": "erin", "iss": "http://127.0.0.1:1" })),
    ];
    for (what, claims) in refused {
        let resp = post_logout(&w.gw, &logout_token(&w.idp.issuer, claims));
        assert_eq!(resp.status, 400, "{what}: {}", resp.text());
    }
    let mut forged = logout_token(&w.idp.issuer, json!({ "sub": "erin" }));
    forged.push('A');
    assert_eq!(post_logout(&w.gw, &forged).status, 400, "bad signature");
    assert_eq!(post_logout(&w.gw, "").status, 400);
    let get_resp = login::http("GET", &w.gw.url(&A.ep("backchannel_logout")), &[], None);
    assert_eq!(get_resp.status, 400, "GET is refused");
    assert_eq!(works(&w.gw, &erin).as_deref(), Some("erin"));
    assert_eq!(works(&b, &erin).as_deref(), Some("erin"));
}

// ---- 8. cookie store: replicas and key rotation ------------------------------------------------

#[test]
fn sealed_cookies_work_across_replicas_and_survive_key_rotation() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    let done = w.login(&A.at("/"), "frank");
    let cookie = done.cookie_header();
    assert!(done.cookies[0].1.starts_with("v1."), "a sealed session");

    let same = w.replica(&cookie_store(SECRET));
    assert_eq!(works(&same, &cookie).as_deref(), Some("frank"), "a replica with the same secret");
    let rotated = w.replica(&cookie_store(&format!("{NEW_SECRET},{SECRET}")));
    assert_eq!(works(&rotated, &cookie).as_deref(), Some("frank"), "the old key still opens after rotation");
    let other = w.replica(&cookie_store(NEW_SECRET));
    assert_eq!(works(&other, &cookie), None, "a gateway without the old key");
    assert_eq!(get_with(other.addr, &A.at("/"), &cookie, HTML).status, 302, "is simply not signed in");

    // A session sealed by the rotated gateway (new first key) opens there and on a gateway
    // with only the new key, not on one with only the old key.
    let fresh = {
        // Sign in again through the rotated replica. The provider sends the browser to the
        // public URL; the load balancer would pick any replica: here, the rotated one.
        let pending = login::start_at(&format!("http://{}", rotated.addr), &w.public, &A.at("/"), "frank");
        let path = w.path_of(&pending.callback_url).to_string();
        let cookie = pending.browser.cookie_header(&pending.callback_url).unwrap();
        let resp = get_with(rotated.addr, &path, &cookie, HTML);
        assert_eq!(resp.status, 302, "{}", resp.body);
        let lines = session_set_cookies(set_cookies(&resp));
        lines.iter().map(|l| l.split(';').next().unwrap().to_string()).collect::<Vec<_>>().join("; ")
    };
    assert_eq!(works(&rotated, &fresh).as_deref(), Some("frank"));
    assert_eq!(works(&other, &fresh).as_deref(), Some("frank"), "sealed with the new first key");
    assert_eq!(works(&w.gw, &fresh), None, "a gateway with only the old key cannot open it");

    // The cookie store cannot revoke: back-channel logout says so instead of pretending.
    let token = logout_token(&w.idp.issuer, json!({ "sub": "frank" }));
    assert_eq!(post_logout(&w.gw, &token).status, 501);
}

// ---- 9. refresh -------------------------------------------------------------------------------

/// A 4 s access token enters its refresh window (its second half) 2 s after it was issued;
/// the condition is the clock itself, so wait for it to pass.
fn wait_for_refresh_window() {
    let until = Instant::now() + Duration::from_millis(2200);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn concurrent_requests_share_one_refresh() {
    // 4 s access tokens: tollgate refreshes in their second half (refresh_before is capped at
    // half the lifetime, so short tokens are not refreshed on every request).
    let w = World::start(&cookie_store(SECRET), "refresh_before = \"600s\"\n", &[("IDP_AT_TTL", "4")]);
    let done = w.login(&A.at("/"), "gina");
    let cookie = done.cookie_header();
    let tokens = w.idp.count("token");
    wait_for_refresh_window();

    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let addr = w.gw.addr;
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            let cookie = cookie.clone();
            std::thread::spawn(move || {
                barrier.wait();
                get_with(addr, &A.at("/"), &cookie, JSON)
            })
        })
        .collect();
    let answers: Vec<RawResponse> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut seen_tokens = Vec::new();
    for resp in &answers {
        let v = echoed(resp);
        assert_eq!(upstream_header(&v, "x-forwarded-user").as_deref(), Some("gina"));
        seen_tokens.push(upstream_header(&v, "x-forwarded-access-token").unwrap());
        assert!(
            !session_set_cookies(set_cookies(resp)).is_empty(),
            "the refreshed session is stored: {:?}",
            resp.headers
        );
        assert_on_login_path(session_set_cookies(set_cookies(resp)));
    }
    assert_eq!(w.idp.count("token"), tokens + 1, "one refresh for {n} concurrent requests");
    seen_tokens.dedup();
    assert_eq!(seen_tokens.len(), 1, "every request got the same refreshed token");

    // The refreshed cookie works, and the refreshed access token is a live one.
    let fresh = session_set_cookies(set_cookies(&answers[0]))
        .iter()
        .map(|l| l.split(';').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("; ");
    assert_eq!(works(&w.gw, &fresh).as_deref(), Some("gina"));
    let info = provider_userinfo(&w.idp, &seen_tokens[0]);
    assert_eq!(info.status, 200, "the refreshed access token is accepted by the provider: {}", info.text());
    assert_eq!(info.json()["sub"], "gina");
}

// ---- 10. provider-initiated logout -------------------------------------------------------------

#[test]
fn the_providers_own_back_channel_logout_ends_every_session_of_its_session() {
    let redis = services::Redis::start();
    // The port is fixed first: the provider must know the back-channel URI at start.
    let port = dead_port().port();
    let origin = format!("http://127.0.0.1:{port}");
    let public = format!("{origin}{}", A.prefix);
    let idp = Idp::start(
        web_client_env(&origin).with_env("IDP_WEB_BACKCHANNEL_URI", format!("{origin}{}", A.ep("backchannel_logout"))),
    );
    let app = echo();
    let gw = start_gateway(&config(port, &public, &idp.issuer, app.addr, &redis_store(&redis.url())));

    // Two gateway sessions from one provider session (the second login is single sign-on),
    // and one from another browser.
    let home = A.at("/");
    let first = login::start_at(&origin, &public, &home, "hank").finish();
    let sso = A.ep(&format!("start?rd={home}"));
    let second = login::start_with(first.browser.clone(), &origin, &public, &sso, "hank").finish();
    let other = login::start_at(&origin, &public, &home, "hank").finish();
    let (a, b, c) = (first.cookie_header(), second.cookie_header(), other.cookie_header());
    assert_ne!(a, b);
    for cookie in [&a, &b, &c] {
        assert_eq!(works(&gw, cookie).as_deref(), Some("hank"));
    }
    // Log out at the provider itself (not through the gateway): its end-session page, then
    // the confirmation form. The provider calls the gateway's back-channel endpoint.
    let mut browser = second.browser.clone();
    let end_session = idp.discovery()["end_session_endpoint"].as_str().unwrap().to_string();
    let page = browser.request("GET", &end_session, &[("Accept", "text/html")], None);
    assert_eq!(page.status, 200, "{}", page.text());
    let (action, mut fields) = login::form(&page.text()).expect("the logout confirmation form");
    fields.push(("logout".into(), "yes".into()));
    let body = fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
    let action = login::resolve(&end_session, &action);
    let done = browser.request(
        "POST",
        &action,
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "text/html")],
        Some(body.as_bytes()),
    );
    assert!(matches!(done.status, 302 | 303), "{} {}", done.status, done.text());

    // The provider may notify the gateway after answering the browser: poll, bounded.
    wait_until("the provider's logout token to end the session", Duration::from_secs(10), || {
        works(&gw, &a).is_none().then_some(())
    });
    assert!(gw.logs().contains("back-channel logout"), "{}", gw.logs());
    assert_eq!(works(&gw, &b), None, "the SSO session of the same provider session survived");
    assert_eq!(works(&gw, &c).as_deref(), Some("hank"), "another browser's session is another provider session");
}

// ---- 11. refresh with replicas sharing Redis ----------------------------------------------------

#[test]
fn replicas_sharing_redis_refresh_a_session_once() {
    let redis = services::Redis::start();
    let store = format!("{}refresh_before = \"600s\"\n", redis_store(&redis.url()));
    let w = World::start(&store, "", &[("IDP_AT_TTL", "4")]);
    let b = w.replica(&store);
    let done = w.login(&A.at("/"), "ivy");
    let cookie = done.cookie_header();
    let tokens = w.idp.count("token");
    wait_for_refresh_window();

    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let cookie = cookie.clone();
            let addr = if i % 2 == 0 { w.gw.addr } else { b.addr };
            std::thread::spawn(move || {
                barrier.wait();
                get_with(addr, &A.at("/"), &cookie, JSON)
            })
        })
        .collect();
    let answers: Vec<RawResponse> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut seen = Vec::new();
    for resp in &answers {
        let v = echoed(resp);
        assert_eq!(upstream_header(&v, "x-forwarded-user").as_deref(), Some("ivy"));
        seen.push(upstream_header(&v, "x-forwarded-access-token").unwrap());
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 1, "both replicas use one refreshed token");
    assert_eq!(w.idp.count("token"), tokens + 1, "one refresh for the session, whichever replica asked");
    // And the session lives on at both.
    assert_eq!(works(&w.gw, &cookie).as_deref(), Some("ivy"));
    assert_eq!(works(&b, &cookie).as_deref(), Some("ivy"));
}

// ---- 12. the gateway's cookies, and only those, are kept from the upstream ----------------------

#[test]
fn only_the_gateways_own_cookies_are_kept_from_the_upstream() {
    // A short cookie name that applications commonly extend (Django's `sessionid`).
    let w = World::start(&cookie_store(SECRET), "cookie_name = \"session\"\n", &[]);
    let done = w.login(&A.at("/"), "jo");
    assert_eq!(done.cookies[0].0, "session");
    let cookie = format!(
        "{}; sessionid=django; session_pref=dark; sessions=2; session_7=stale-chunk; session_flow_0123456789ab=old-flow",
        done.cookie_header()
    );
    let seen = echoed(&get_with(w.gw.addr, &A.at("/"), &cookie, HTML));
    assert_eq!(upstream_header(&seen, "x-forwarded-user").as_deref(), Some("jo"));
    let upstream_cookie = upstream_header(&seen, "cookie").unwrap_or_default();
    let names: Vec<&str> = upstream_cookie.split("; ").filter_map(|c| c.split_once('=').map(|(n, _)| n)).collect();
    assert_eq!(names, ["sessionid", "session_pref", "sessions"], "{upstream_cookie}");
}

// ---- 13. session lifetime ---------------------------------------------------------------------

#[test]
fn a_session_ends_at_its_lifetime_even_if_the_browser_keeps_the_cookie() {
    let w = World::start(&cookie_store(SECRET), "session_lifetime = \"3s\"\n", &[]);
    let done = w.login(&A.at("/"), "kim");
    let line = session_set_cookies(done.set_cookie.iter().map(String::as_str))[0].to_string();
    let max_age: u64 = line
        .split(';')
        .find_map(|a| a.trim().strip_prefix("Max-Age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Max-Age: {line}"));
    assert!((1..=3).contains(&max_age), "the cookie lives as long as the session: {line}");
    assert_on_login_path([line.as_str()]);
    let cookie = done.cookie_header();
    assert_eq!(works(&w.gw, &cookie).as_deref(), Some("kim"));
    // A browser that ignores Max-Age still loses the session: the gateway checks the time.
    let started = Instant::now();
    wait_until("the session to expire", Duration::from_secs(10), || works(&w.gw, &cookie).is_none().then_some(()));
    assert!(started.elapsed() >= Duration::from_millis(500), "ended too early");
    assert_eq!(get_with(w.gw.addr, &A.at("/"), &cookie, HTML).status, 302);
}

// ---- 12. Authorization on session routes -------------------------------------------------------

/// A signed-in browser's own `Authorization` header was never checked, so it never reaches the
/// upstream (a forged bearer token next to a valid session must not look verified). A route may
/// instead ask for the session's access token as `Authorization: Bearer`.
#[test]
fn only_verified_or_session_authorization_reaches_the_upstream() {
    let w = World::start(&cookie_store(SECRET), "", &[]);
    let done = w.login(&A.at("/"), "kim");
    let cookie = done.cookie_header();
    let forged = ("Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.");
    let r = get(w.gw.addr, &A.at("/"), &[("Cookie", &cookie), JSON, forged]);
    let v = echoed(&r);
    assert_eq!(upstream_header(&v, "x-forwarded-user").as_deref(), Some("kim"));
    assert_eq!(upstream_header(&v, "authorization"), None, "an unchecked Authorization was forwarded: {v}");
    let session_token = upstream_header(&v, "x-forwarded-access-token").unwrap();

    let r = get(w.gw.addr, &A.at("/with-token/x"), &[("Cookie", &cookie), JSON, forged]);
    let v = echoed(&r);
    assert_eq!(upstream_header(&v, "authorization"), Some(format!("Bearer {session_token}")), "{v}");
}
