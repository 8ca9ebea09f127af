//! Several login clients behind one gateway (`[[login]]`), against the real OpenID Provider
//! (`tests/idp`, one or two of them) and the real binary; scripted browsers
//! (`tests/support/login.rs`, cookies kept per host and `Path` as browsers keep them) and, for
//! the last test, real headless Chromium.
//!
//! Covered: two apps on two hosts and two apps on two paths of one host, each signing in with its
//! own client; a session cookie of one app refused by the other, also when both share one
//! `cookie_secret`; sign-out of one app leaving the other signed in; two logins on two issuers;
//! forward-auth answering for the login of the route; the apps never seeing a gateway cookie.
//!
//! Most of this is a new feature (one gateway could not have two logins before): the tests that
//! guard a property the implementation could get wrong say so in their comments.

#[path = "support/browser.rs"]
mod browser;
mod common;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/login.rs"]
mod login;

use std::net::SocketAddr;
use std::sync::Arc;

use common::wait_ready;
use common::{dead_port, echo, Echo, Gateway, BASE};
use hyper::body::Incoming;
use hyper::{Request, Response};
use idp::{Idp, IdpOptions, API_RESOURCE};
use login::{query_param, Browser};
use serde_json::{json, Value};

const SECRET: &str = "0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &str = "fedcba9876543210fedcba9876543210";
const HTML: (&str, &str) = ("Accept", "text/html,application/xhtml+xml");
const JSON: (&str, &str) = ("Accept", "application/json");

// ---- harness ------------------------------------------------------------------------------------

/// One app behind the gateway: its login and its route.
struct App {
    /// The login's (and route's) name.
    name: &'static str,
    /// `web` (built into the test IdP) or another client registered with IDP_EXTRA_CLIENTS.
    client: &'static str,
    /// `public_url`: `http://HOST:PORT` plus an optional path.
    public: String,
    /// The route: host (none: any) and path prefix.
    host: Option<&'static str>,
    path: &'static str,
    /// Which provider of the bed.
    idp: usize,
    cookie_secret: &'static str,
    /// More `[[login]]` lines.
    extra: &'static str,
}

impl App {
    fn url(&self, path: &str) -> String {
        let origin = self.public.split('/').take(3).collect::<Vec<_>>().join("/");
        format!("{origin}{path}")
    }

    fn callback(&self) -> String {
        format!("{}/oauth2/callback", self.public)
    }

    fn home(&self) -> String {
        format!("{}/", self.public)
    }
}

struct Bed {
    idps: Vec<Idp>,
    apps: Vec<App>,
    _gw: Gateway,
    _echo: Echo,
}

/// The client metadata oidc-provider takes in IDP_EXTRA_CLIENTS for a second web client.
fn web_client(id: &str, redirects: &[String], logouts: &[String]) -> Value {
    json!({
        "client_id": id, "client_secret": format!("{id}-secret"),
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "redirect_uris": redirects, "post_logout_redirect_uris": logouts,
        "scope": "openid offline_access profile email",
    })
}

impl Bed {
    /// Starts `idps` providers (each knowing the callbacks of the apps it serves), an echo
    /// upstream and the gateway on `port` with one `[[login]]` and one route per app.
    fn start(port: u16, idps: usize, apps: Vec<App>) -> Bed {
        let idps: Vec<Idp> = (0..idps)
            .map(|i| {
                let mine: Vec<&App> = apps.iter().filter(|a| a.idp == i).collect();
                let of = |client: &str, f: fn(&App) -> String| -> Vec<String> {
                    mine.iter().filter(|a| a.client == client).map(|a| f(a)).collect()
                };
                let mut extra = Vec::new();
                for a in mine.iter().filter(|a| a.client != "web") {
                    extra.push(web_client(a.client, &of(a.client, App::callback), &of(a.client, App::home)));
                }
                let consent: Vec<&str> = std::iter::once("web").chain(mine.iter().map(|a| a.client)).collect();
                Idp::start(
                    IdpOptions::default()
                        .with_env("IDP_WEB_REDIRECT_URIS", of("web", App::callback).join(","))
                        .with_env("IDP_WEB_POST_LOGOUT_URIS", of("web", App::home).join(","))
                        .with_env("IDP_EXTRA_CLIENTS", Value::Array(extra).to_string())
                        .with_env("IDP_AUTO_CONSENT", consent.join(",")),
                )
            })
            .collect();
        let echo = echo();
        let gw = Gateway::start(&config(port, &idps, &apps, echo.addr));
        wait_ready(&gw);
        Bed { idps, apps, _gw: gw, _echo: echo }
    }

    fn app(&self, name: &str) -> &App {
        self.apps.iter().find(|a| a.name == name).unwrap()
    }

    fn idp_of(&self, app: &str) -> &Idp {
        &self.idps[self.app(app).idp]
    }

    /// Signs `user` in to `app` from `path` with `browser` (which may hold the provider's
    /// session already: then no form is shown). Returns the browser with the app's session.
    fn sign_in(&self, browser: Browser, app: &str, path: &str, user: &str) -> (Browser, login::Pending) {
        let a = self.app(app);
        let pending = login::start_with(browser, &a.url(""), &a.public, path, user);
        let authorize = &pending.authorize_url;
        assert!(authorize.starts_with(&self.idp_of(app).issuer), "{app}: sent to another issuer: {authorize}");
        assert_eq!(query_param(authorize, "client_id").as_deref(), Some(a.client), "{app}: {authorize}");
        assert_eq!(query_param(authorize, "redirect_uri"), Some(a.callback()), "{app}: {authorize}");
        let done = pending.clone().finish();
        assert_eq!(done.location, path, "{app}: back to the page asked for");
        (done.browser, pending)
    }
}

fn config(port: u16, idps: &[Idp], apps: &[App], echo: SocketAddr) -> String {
    let mut out = BASE.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1);
    for (i, idp) in idps.iter().enumerate() {
        out.push_str(&format!(
            "\n[[issuer]]\nname = \"idp{i}\"\nurl = \"{}\"\naudiences = [\"{API_RESOURCE}\"]\n",
            idp.issuer
        ));
    }
    for a in apps {
        out.push_str(&format!(
            r#"
[[login]]
name = "{name}"
issuer = "idp{idp}"
client_id = "{client}"
client_secret = "{client}-secret"
public_url = "{public}"
cookie_secret = "{secret}"
scopes = ["openid", "email", "profile", "offline_access"]
{extra}
"#,
            name = a.name,
            idp = a.idp,
            client = a.client,
            public = a.public,
            secret = a.cookie_secret,
            extra = a.extra,
        ));
    }
    for a in apps {
        let host = a.host.map(|h| format!("host = \"{h}\"\n")).unwrap_or_default();
        out.push_str(&format!(
            "\n[[route]]\nname = \"{name}\"\n{host}path = \"{path}\"\nauth = \"login\"\nlogin = \"{name}\"\nupstream = \"http://{echo}\"\n",
            name = a.name,
            path = a.path,
        ));
    }
    out
}

/// Two apps on one host by path: `wiki` (client `web`) on `/wiki`, `blog` (client `blog`) on
/// `/blog`, one provider.
fn two_paths(secrets: [&'static str; 2], extra: [&'static str; 2]) -> Bed {
    let port = dead_port().port();
    let origin = format!("http://127.0.0.1:{port}");
    Bed::start(
        port,
        1,
        vec![
            App {
                name: "wiki",
                client: "web",
                public: format!("{origin}/wiki"),
                host: None,
                path: "/wiki/",
                idp: 0,
                cookie_secret: secrets[0],
                extra: extra[0],
            },
            App {
                name: "blog",
                client: "blog",
                public: format!("{origin}/blog"),
                host: None,
                path: "/blog/",
                idp: 0,
                cookie_secret: secrets[1],
                extra: extra[1],
            },
        ],
    )
}

/// What the echo upstream saw, or the status when the request did not get there.
fn fetch(browser: &mut Browser, url: &str, accept: (&str, &str)) -> (u16, Value) {
    let r = browser.request("GET", url, &[accept], None);
    let body = if r.status == 200 { serde_json::from_slice(&r.bytes).unwrap_or(Value::Null) } else { Value::Null };
    (r.status, body)
}

fn header<'a>(seen: &'a Value, name: &str) -> Option<&'a str> {
    seen["headers"][name][0].as_str()
}

/// The browser's cookies on `host` named `name` exactly.
fn cookie(browser: &Browser, host: &str, name: &str) -> Option<login::Cookie> {
    browser.cookies_named(host, name).into_iter().find(|c| c.name == name)
}

// ---- two apps on two paths of one host ------------------------------------------------------

/// Each app signs in with its own client and gets its own cookie, on its own path; the second
/// sign-in rides the provider's session (no form) but is still its own authorization request
/// with its own client. Neither app ever sees a gateway cookie, its own or the other's.
#[test]
fn two_apps_on_two_paths_sign_in_with_their_own_clients() {
    let bed = two_paths([SECRET, OTHER_SECRET], ["", ""]);
    let wiki = bed.app("wiki");
    let (browser, _) = bed.sign_in(Browser::default(), "wiki", "/wiki/page?x=1", "alice");
    let c = cookie(&browser, "127.0.0.1", "tollgate_wiki").expect("the wiki's session cookie");
    assert_eq!(c.path, "/wiki", "the wiki's cookie is scoped to its path");
    assert!(cookie(&browser, "127.0.0.1", "tollgate_blog").is_none());
    let (mut browser, _) = bed.sign_in(browser, "blog", "/blog/post", "alice");
    assert_eq!(cookie(&browser, "127.0.0.1", "tollgate_blog").unwrap().path, "/blog");
    assert_eq!(bed.idps[0].count("token"), 2, "one code exchange per app: {}", bed.idps[0].counters());

    for (app, path) in [("wiki", "/wiki/page?x=1"), ("blog", "/blog/post")] {
        let (status, seen) = fetch(&mut browser, &bed.app(app).url(path), HTML);
        assert_eq!(status, 200, "{app}");
        assert_eq!(header(&seen, "x-forwarded-user"), Some("alice"), "{app}: {seen}");
        assert_eq!(seen["uri"], path);
        // The browser sends each app only its own cookie (by Path); the gateway strips it.
        assert!(header(&seen, "cookie").is_none_or(|c| !c.contains("tollgate")), "{app}: {seen}");
    }
    // A request on the wiki's path carrying both cookies (a browser holding one on `/`, or a
    // script): the upstream sees neither. Fails if only the route's own login's cookies were
    // removed before forwarding.
    let both = browser
        .jar
        .iter()
        .filter(|(_, c)| c.name.starts_with("tollgate_"))
        .map(|(_, c)| format!("{}={}", c.name, c.value))
        .collect::<Vec<_>>()
        .join("; ");
    let r = login::http("GET", &wiki.url("/wiki/x"), &[HTML, ("Cookie", &format!("{both}; app=1"))], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen: Value = serde_json::from_slice(&r.bytes).unwrap();
    assert_eq!(header(&seen, "cookie"), Some("app=1"), "{seen}");
    // The endpoints are under each app's path: the root has none.
    let r = login::http("GET", &wiki.url("/oauth2/start"), &[HTML], None);
    assert_eq!(r.status, 404, "no login owns /oauth2/ here: {}", r.text());
}

/// A session cookie of one app presented to the other, under the other's cookie name: refused,
/// and refused also when both logins have the same `cookie_secret` (the login's name is bound
/// into its keys). With keys derived from the secret alone this test fails: the blog accepts
/// the wiki's cookie and signs the wiki's user in.
#[test]
fn one_apps_session_cookie_is_refused_by_the_other_even_with_one_secret() {
    for secrets in [[SECRET, SECRET], [SECRET, OTHER_SECRET]] {
        let bed = two_paths(secrets, ["", ""]);
        let blog = bed.app("blog");
        let (browser, _) = bed.sign_in(Browser::default(), "wiki", "/wiki/", "alice");
        let value = cookie(&browser, "127.0.0.1", "tollgate_wiki").unwrap().value;
        let forged = format!("tollgate_blog={value}");
        let api = login::http("GET", &blog.url("/blog/x"), &[JSON, ("Cookie", &forged)], None);
        assert_eq!(api.status, 401, "secrets {secrets:?}: the blog took the wiki's session: {}", api.text());
        let page = login::http("GET", &blog.url("/blog/x"), &[HTML, ("Cookie", &forged)], None);
        assert_eq!(page.status, 302, "a browser is sent to sign in to the blog");
        let to = page.header("location").unwrap();
        assert_eq!(query_param(to, "client_id").as_deref(), Some("blog"), "{to}");
        // The wiki's cookie under its own name does nothing for the blog either.
        let own = format!("tollgate_wiki={value}");
        assert_eq!(login::http("GET", &blog.url("/blog/x"), &[JSON, ("Cookie", &own)], None).status, 401);
        // Nor for the blog's userinfo endpoint.
        let info = login::http("GET", &blog.url("/blog/oauth2/userinfo"), &[JSON, ("Cookie", &forged)], None);
        assert_eq!(info.status, 401, "{}", info.text());
        let info = login::http("GET", &blog.url("/wiki/oauth2/userinfo"), &[JSON, ("Cookie", &own)], None);
        assert_eq!(info.status, 200, "the wiki's own endpoint knows it: {}", info.text());
    }
}

/// Signing out of one app ends its session only: the other stays signed in. The sign-out
/// clears the cookie on the path it was set on (a `Path=/` deletion would leave the browser's
/// `/wiki` cookie in place and the wiki still signed in), and goes on to the provider with the
/// app's own client.
#[test]
fn signing_out_of_one_app_leaves_the_other_signed_in() {
    let bed = two_paths([SECRET, SECRET], ["", ""]);
    let (browser, _) = bed.sign_in(Browser::default(), "wiki", "/wiki/", "alice");
    let (mut browser, _) = bed.sign_in(browser, "blog", "/blog/", "alice");
    let wiki = bed.app("wiki");
    let out = browser.request("GET", &wiki.url("/wiki/oauth2/sign_out"), &[HTML], None);
    assert_eq!(out.status, 302, "{}", out.text());
    let to = out.header("location").unwrap();
    assert!(to.starts_with(&format!("{}/end_session?", bed.idps[0].issuer)), "{to}");
    assert_eq!(query_param(to, "client_id").as_deref(), Some("web"), "{to}");
    assert_eq!(query_param(to, "post_logout_redirect_uri"), Some(wiki.home()), "{to}");
    assert!(
        out.headers_named("set-cookie").all(|c| c.contains("Path=/wiki;")),
        "{:?}",
        out.headers_named("set-cookie").collect::<Vec<_>>()
    );
    assert!(cookie(&browser, "127.0.0.1", "tollgate_wiki").is_none(), "the wiki's cookie is gone");
    assert!(cookie(&browser, "127.0.0.1", "tollgate_blog").is_some(), "the blog's is not touched");
    assert_eq!(fetch(&mut browser, &wiki.url("/wiki/"), JSON).0, 401, "signed out of the wiki");
    let (status, seen) = fetch(&mut browser, &wiki.url("/blog/"), JSON);
    assert_eq!((status, header(&seen, "x-forwarded-user")), (200, Some("alice")), "still signed in to the blog");
}

/// forward-auth (`/oauth2/auth`) answers for the login of the route the original URL names:
/// the wiki's cookie passes for the wiki's pages and not for the blog's, the sign-in hint
/// points at the right app's start endpoint, and `auth_request_access_token` is per login.
#[test]
fn forward_auth_answers_for_the_login_of_the_route() {
    let bed = two_paths([SECRET, SECRET], ["", "auth_request_access_token = true"]);
    // Two people (two browsers, a provider session each), so answers can be told apart.
    let (mut browser, _) = bed.sign_in(Browser::default(), "wiki", "/wiki/", "alice");
    let (bob, _) = bed.sign_in(Browser::default(), "blog", "/blog/", "bob");
    browser.jar.extend(bob.jar.into_iter().filter(|(_, c)| c.name.starts_with("tollgate_")));
    let wiki = bed.app("wiki");
    let jar = |name: &str| format!("{name}={}", cookie(&browser, "127.0.0.1", name).unwrap().value);
    let ask = |url: &str, cookie: &str| {
        login::http("GET", &wiki.url("/oauth2/auth"), &[JSON, ("X-Original-URL", url), ("Cookie", cookie)], None)
    };
    let wiki_page = wiki.url("/wiki/a?b=1");
    let blog_page = wiki.url("/blog/a");

    let ok = ask(&wiki_page, &jar("tollgate_wiki"));
    assert_eq!(ok.status, 202, "{}", ok.text());
    assert_eq!(ok.header("x-auth-request-user"), Some("alice"));
    assert_eq!(ok.header("x-auth-request-access-token"), None, "the wiki does not pass tokens");
    let ok = ask(&blog_page, &jar("tollgate_blog"));
    assert_eq!(ok.status, 202, "{}", ok.text());
    assert_eq!(ok.header("x-auth-request-user"), Some("bob"));
    assert!(ok.header("x-auth-request-access-token").is_some(), "the blog does");

    // The other app's cookie, under its own name or renamed to this app's: 401, with the
    // sign-in URL of the route's own login.
    let renamed = jar("tollgate_blog").replace("tollgate_blog", "tollgate_wiki");
    for (url, cookie, start) in [
        (&wiki_page, jar("tollgate_blog"), "/wiki/oauth2/start?rd="),
        (&wiki_page, renamed, "/wiki/oauth2/start?rd="),
        (&blog_page, jar("tollgate_wiki"), "/blog/oauth2/start?rd="),
    ] {
        let no = ask(url, &cookie);
        assert_eq!(no.status, 401, "{url} with {}: {}", &cookie[..20], no.text());
        let hint = no.header("x-auth-request-redirect").unwrap_or_default();
        assert!(hint.starts_with(start), "{url}: {hint}");
        assert_eq!(login::decode(hint.split("rd=").nth(1).unwrap()), *url);
    }
}

// ---- two apps on two hosts ----------------------------------------------------------------

/// Two hosts (`127.0.0.1` and `localhost`, both loopback) on one port, a login each at the
/// root of its host: `/oauth2/*` goes to the login of the request's host.
#[test]
fn two_apps_on_two_hosts_sign_in_with_their_own_clients() {
    let port = dead_port().port();
    let app = |name, client, host: &'static str| App {
        name,
        client,
        public: format!("http://{host}:{port}"),
        host: Some(host),
        path: "/",
        idp: 0,
        cookie_secret: SECRET,
        extra: "",
    };
    let bed = Bed::start(port, 1, vec![app("one", "web", "127.0.0.1"), app("two", "blog", "localhost")]);
    let (mut browser, _) = bed.sign_in(Browser::default(), "one", "/a", "alice");
    // Another person at the other app (a provider session of their own).
    let (bob, _) = bed.sign_in(Browser::default(), "two", "/b", "bob");
    browser.jar.extend(bob.jar.into_iter().filter(|(h, _)| h == "localhost"));
    let (one, two) = (bed.app("one"), bed.app("two"));
    assert_eq!(cookie(&browser, "127.0.0.1", "tollgate_one").unwrap().path, "/");
    assert!(cookie(&browser, "localhost", "tollgate_two").is_some());
    assert!(cookie(&browser, "localhost", "tollgate_one").is_none(), "cookies are per host");
    let (status, seen) = fetch(&mut browser, &one.url("/a"), JSON);
    assert_eq!((status, header(&seen, "x-forwarded-user")), (200, Some("alice")));
    let (status, seen) = fetch(&mut browser, &two.url("/b"), JSON);
    assert_eq!((status, header(&seen, "x-forwarded-user")), (200, Some("bob")));

    // Host one's cookie carried to host two under two's name: refused (same secret).
    let value = cookie(&browser, "127.0.0.1", "tollgate_one").unwrap().value;
    let forged = format!("tollgate_two={value}");
    assert_eq!(login::http("GET", &two.url("/b"), &[JSON, ("Cookie", &forged)], None).status, 401);
    let info = login::http("GET", &two.url("/oauth2/userinfo"), &[JSON, ("Cookie", &forged)], None);
    assert_eq!(info.status, 401, "{}", info.text());
    let mine = format!("tollgate_one={value}");
    let info = login::http("GET", &one.url("/oauth2/userinfo"), &[JSON, ("Cookie", &mine)], None);
    assert_eq!(info.status, 200, "{}", info.text());
    assert_eq!(serde_json::from_slice::<Value>(&info.bytes).unwrap()["user"], "alice");
    // Each host's start endpoint uses its own client.
    for (a, client) in [(one, "web"), (two, "blog")] {
        let r = login::http("GET", &a.url("/oauth2/start?rd=/x"), &[HTML], None);
        assert_eq!(r.status, 302);
        assert_eq!(query_param(r.header("location").unwrap(), "client_id").as_deref(), Some(client));
    }
}

// ---- two issuers ------------------------------------------------------------------------------

/// Two logins on two providers (each its own `web` client): each app is sent to its own
/// provider, its ID token checked against that provider's keys; a session of one is no
/// session of the other.
#[test]
fn two_logins_on_two_issuers() {
    let port = dead_port().port();
    let origin = format!("http://127.0.0.1:{port}");
    let app = |name, path: &'static str, idp| App {
        name,
        client: "web",
        public: format!("{origin}{}", path.trim_end_matches('/')),
        host: None,
        path,
        idp,
        cookie_secret: SECRET,
        extra: "",
    };
    let bed = Bed::start(port, 2, vec![app("hr", "/hr/", 0), app("ops", "/ops/", 1)]);
    assert_ne!(bed.idps[0].issuer, bed.idps[1].issuer);
    let (mut hr, _) = bed.sign_in(Browser::default(), "hr", "/hr/", "alice");
    // A fresh browser: the second provider has no session, its own form signs bob in.
    let (mut ops, _) = bed.sign_in(Browser::default(), "ops", "/ops/", "bob");
    assert_eq!((bed.idps[0].count("token"), bed.idps[1].count("token")), (1, 1));
    let (status, seen) = fetch(&mut hr, &bed.app("hr").url("/hr/"), JSON);
    assert_eq!((status, header(&seen, "x-forwarded-user")), (200, Some("alice")));
    let (status, seen) = fetch(&mut ops, &bed.app("ops").url("/ops/"), JSON);
    assert_eq!((status, header(&seen, "x-forwarded-user")), (200, Some("bob")));
    let value = cookie(&hr, "127.0.0.1", "tollgate_hr").unwrap().value;
    let forged = format!("tollgate_ops={value}");
    let r = login::http("GET", &bed.app("ops").url("/ops/"), &[JSON, ("Cookie", &forged)], None);
    assert_eq!(r.status, 401);
}

// ---- real Chromium: two apps on two paths -------------------------------------------------

/// An upstream page showing what it received, for the driver to read (`#uri`, `#headers`).
fn page_upstream(rt: &tokio::runtime::Runtime) -> SocketAddr {
    rt.block_on(common::upstream(Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), Value::String(String::from_utf8_lossy(v.as_bytes()).into())))
                .collect();
            let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            let html = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>upstream</title>\
                 <link rel=\"icon\" href=\"data:,\"></head><body><pre id=\"uri\">{}</pre>\
                 <pre id=\"headers\">{}</pre></body></html>\n",
                esc(&req.uri().to_string()),
                esc(&Value::Object(headers).to_string())
            );
            Response::builder().header("content-type", "text/html; charset=utf-8").body(common::full(html)).unwrap()
        })
    })))
}

/// In Chromium: sign in to the wiki (the provider's form), then the blog (its own client, no
/// form: the provider's session), each with its own cookie on its own path; sign out of the
/// wiki (confirmed at the provider) and the blog still loads signed in.
#[test]
fn a_browser_keeps_two_apps_on_one_host_apart() {
    browser::check_prerequisites();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let upstream = page_upstream(&rt);
    let port = dead_port().port();
    let origin = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(
        IdpOptions::default()
            .with_env("IDP_WEB_REDIRECT_URIS", format!("{origin}/wiki/oauth2/callback"))
            .with_env("IDP_WEB_POST_LOGOUT_URIS", format!("{origin}/wiki/"))
            .with_env(
                "IDP_EXTRA_CLIENTS",
                json!([web_client("blog", &[format!("{origin}/blog/oauth2/callback")], &[format!("{origin}/blog/")])])
                    .to_string(),
            )
            .with_env("IDP_AUTO_CONSENT", "web,blog"),
    );
    let apps = ["wiki", "blog"].map(|name| App {
        name,
        client: if name == "wiki" { "web" } else { "blog" },
        public: format!("{origin}/{name}"),
        host: None,
        path: if name == "wiki" { "/wiki/" } else { "/blog/" },
        idp: 0,
        cookie_secret: SECRET,
        extra: "",
    });
    let gw = Gateway::start(&config(port, std::slice::from_ref(&idp), &apps, upstream));
    wait_ready(&gw);
    let seen = browser::run(&json!({
        "scenario": "two_apps",
        "idp": idp.issuer,
        "user": "alice",
        "url": format!("{origin}/wiki/page?x=1"),
        "other_url": format!("{origin}/blog/post"),
        "sign_out_url": format!("{origin}/wiki/oauth2/sign_out"),
        "cookie_names": ["tollgate_wiki", "tollgate_blog"],
    }));
    let view = |v: &Value, key: &str| v["upstream"]["headers"][key].as_str().unwrap_or("").to_string();
    assert_eq!(view(&seen["login"], "x-forwarded-user"), "alice", "{seen}");
    let other = &seen["other"];
    assert_eq!(other["kind"], "upstream", "the blog signed in without a form: {other}");
    assert_eq!(view(other, "x-forwarded-user"), "alice");
    let cookies = seen["cookies"].as_array().unwrap();
    let path_of = |name: &str| cookies.iter().find(|c| c["name"] == name).map(|c| c["path"].clone());
    assert_eq!(path_of("tollgate_wiki"), Some(json!("/wiki")), "{cookies:?}");
    assert_eq!(path_of("tollgate_blog"), Some(json!("/blog")), "{cookies:?}");
    for v in [&seen["login"], other] {
        assert!(!view(v, "cookie").contains("tollgate"), "an app saw a gateway cookie: {v}");
    }
    assert_eq!(seen["after_sign_out"]["cookies"]["tollgate_wiki"], Value::Null, "{seen}");
    assert!(!seen["after_sign_out"]["cookies"]["tollgate_blog"].is_null(), "{seen}");
    let still = &seen["blog_after"];
    assert_eq!(still["kind"], "upstream", "signing out of the wiki signed the blog out: {still}");
    assert_eq!(view(still, "x-forwarded-user"), "alice");
    assert_eq!(seen["wiki_after"]["kind"], "login_form", "{}", seen["wiki_after"]);
}
