//! A scripted, browser-less login through tollgate and the test IdP (`tests/idp`, oidc-provider's
//! development login form, which accepts any user name).
//!
//! ```ignore
//! #[path = "support/login.rs"]
//! mod login;
//! let done = login::login("http://127.0.0.1:8080", "/app?x=1", "alice");
//! assert_eq!(done.location, "/app?x=1");
//! let cookie = done.cookie_header();           // "tollgate=v1.…" for a `Cookie:` header
//! ```
//!
//! What it does, like a browser would: `GET` the protected path with `Accept: text/html`, follow
//! the redirect to the provider, submit the provider's login form (and a consent form, should one
//! appear), follow the redirects back to `/oauth2/callback`, and stop at the gateway's answer
//! there. Cookies are kept like a browser keeps them: per host (not per port, as browsers do),
//! honouring `Path`, `Max-Age` and `Expires`. Redirects are bounded. `start` + `Pending::finish`
//! split the flow just before the callback, for tests that tamper with it.
//!
//! Only std is used; requests are plain HTTP/1.1 with `Connection: close`.
#![allow(dead_code)]

#[path = "http.rs"]
pub mod http;

use std::time::{SystemTime, UNIX_EPOCH};

/// Redirects and form posts followed before giving up.
const MAX_STEPS: usize = 16;

/// The outcome of a completed login.
#[derive(Debug, Clone)]
pub struct Login {
    /// The gateway's session cookie(s) set by the callback, as `(name, value)` (several when
    /// the session is chunked).
    pub cookies: Vec<(String, String)>,
    /// The callback response's `Location` (where the browser goes next: the original target).
    pub location: String,
    /// The callback response's raw `Set-Cookie` lines.
    pub set_cookie: Vec<String>,
    /// The callback URL (with `code`, `state`, `iss`) and the `Cookie` header sent with it.
    pub callback_url: String,
    pub callback_cookie: String,
    /// The browser after the login (its cookie jar holds the session and the IdP's cookies).
    pub browser: Browser,
}

impl Login {
    /// The session cookie(s) as one `Cookie` header value.
    pub fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
    }
}

/// A login stopped just before the browser goes back to the gateway's callback.
#[derive(Debug, Clone)]
pub struct Pending {
    /// `PUBLIC_URL/oauth2/callback?code=…&state=…&iss=…`
    pub callback_url: String,
    /// Where the first request was redirected: the provider's authorization request.
    pub authorize_url: String,
    pub browser: Browser,
}

impl Pending {
    /// Goes to the callback with the browser's cookies and returns the session.
    pub fn finish(mut self) -> Login {
        let callback_cookie = self.browser.cookie_header(&self.callback_url).unwrap_or_default();
        let resp = self.browser.request("GET", &self.callback_url, &[("Accept", "text/html")], None);
        assert_eq!(
            resp.status,
            302,
            "the callback {} did not redirect: {} {}",
            self.callback_url,
            resp.status,
            resp.text()
        );
        let location = resp.header("location").unwrap_or_else(|| panic!("callback 302 without Location")).to_string();
        let set_cookie: Vec<String> = resp.headers_named("set-cookie").map(str::to_string).collect();
        let cookies = set_cookie
            .iter()
            .filter_map(|line| parse_set_cookie(line))
            .filter(|c| !c.value.is_empty() && !c.expired())
            .map(|c| (c.name, c.value))
            .collect::<Vec<_>>();
        assert!(!cookies.is_empty(), "the callback set no session cookie: {set_cookie:?}");
        Login { cookies, location, set_cookie, callback_url: self.callback_url, callback_cookie, browser: self.browser }
    }
}

/// Logs `user` in through the gateway at `gateway` (its public URL, `http://127.0.0.1:PORT`),
/// starting from the protected `path`.
pub fn login(gateway: &str, path: &str, user: &str) -> Login {
    start(gateway, path, user).finish()
}

/// Everything up to (not including) the callback request.
pub fn start(gateway: &str, path: &str, user: &str) -> Pending {
    start_at(gateway, gateway, path, user)
}

/// Like [`start`], but the first request goes to `entry` (a replica's own address) while the
/// provider sends the browser back to `public` (the public URL all replicas share).
pub fn start_at(entry: &str, public: &str, path: &str, user: &str) -> Pending {
    start_with(Browser::default(), entry, public, path, user)
}

/// Like [`start_at`], with a browser that may already hold the provider's session cookies (a
/// second login then needs no form: single sign-on).
pub fn start_with(mut browser: Browser, entry: &str, public: &str, path: &str, user: &str) -> Pending {
    let gateway = public.trim_end_matches('/');
    let first = format!("{}{path}", entry.trim_end_matches('/'));
    let resp = browser.request("GET", &first, &[("Accept", "text/html")], None);
    assert_eq!(
        resp.status,
        302,
        "GET {first} as a browser: expected a redirect to sign in, got {} {}",
        resp.status,
        resp.text()
    );
    let authorize_url = resolve(&first, resp.header("location").expect("302 without Location"));
    let callback_prefix = format!("{gateway}/oauth2/callback");
    let mut url = authorize_url.clone();
    let mut method = "GET";
    let mut body: Option<String> = None;
    for _ in 0..MAX_STEPS {
        if url.starts_with(&callback_prefix) {
            return Pending { callback_url: url, authorize_url, browser };
        }
        let headers: Vec<(&str, &str)> = match body {
            Some(_) => vec![("Accept", "text/html"), ("Content-Type", "application/x-www-form-urlencoded")],
            None => vec![("Accept", "text/html")],
        };
        let resp = browser.request(method, &url, &headers, body.as_deref().map(str::as_bytes));
        match resp.status {
            301 | 302 | 303 | 307 | 308 => {
                let next = resolve(&url, resp.header("location").expect("redirect without Location"));
                url = next;
                method = "GET";
                body = None;
            }
            200 => {
                let html = resp.text();
                let (action, fields) = form(&html)
                    .unwrap_or_else(|| panic!("{url}: a page without a form where a login form was expected:\n{html}"));
                let mut pairs: Vec<(String, String)> = fields;
                if html.contains("name=\"login\"") {
                    pairs.push(("login".into(), user.into()));
                    pairs.push(("password".into(), "x".into()));
                }
                body = Some(
                    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&"),
                );
                url = resolve(&url, &action);
                method = "POST";
            }
            other => panic!("{method} {url}: unexpected {other} during login: {}", resp.text()),
        }
    }
    panic!("no callback to {callback_prefix} after {MAX_STEPS} steps (last URL {url})");
}

/// The first `<form>`: its action and hidden fields.
pub fn form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let form = &html[start..];
    let end = form.find("</form>").unwrap_or(form.len());
    let form = &form[..end];
    let tag_end = form.find('>')?;
    let action = attr(&form[..tag_end], "action")?;
    let mut fields = Vec::new();
    let mut rest = &form[tag_end..];
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..];
        let close = tag.find('>').unwrap_or(tag.len());
        let tag = &tag[..close];
        if attr(tag, "type").as_deref() == Some("hidden") {
            if let Some(name) = attr(tag, "name") {
                fields.push((name, attr(tag, "value").unwrap_or_default()));
            }
        }
        rest = &rest[i + close..];
    }
    Some((unescape(&action), fields.into_iter().map(|(k, v)| (unescape(&k), unescape(&v))).collect()))
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let pat = format!(" {name}=\"");
    let i = tag.find(&pat)? + pat.len();
    let end = tag[i..].find('"')?;
    Some(tag[i..i + end].to_string())
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Resolves a `Location` against the URL it came from (absolute, or origin-relative).
pub fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let (origin, _) = split_url(base);
    assert!(location.starts_with('/') && !location.starts_with("//"), "unsupported Location {location:?} from {base}");
    format!("http://{origin}{location}")
}

/// `http://authority/path?query` → (authority, path?query).
use http::split_url;

/// `application/x-www-form-urlencoded` / query encoding of one value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The value of query parameter `name` in `url`, percent-decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| decode(v))
    })
}

pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()).is_some() => {
                out.push(s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()).unwrap_or(b'%'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- cookies ---------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub path: String,
    /// Unix seconds; `None` for a session cookie.
    pub expires: Option<i64>,
    pub max_age: Option<i64>,
}

impl Cookie {
    fn expired(&self) -> bool {
        self.max_age.is_some_and(|a| a <= 0) || self.expires.is_some_and(|e| e <= now())
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Parses one `Set-Cookie` value (name, value, Path, Max-Age, Expires; the rest is ignored).
pub fn parse_set_cookie(line: &str) -> Option<Cookie> {
    let mut parts = line.split(';');
    let (name, value) = parts.next()?.trim().split_once('=')?;
    let mut c =
        Cookie { name: name.trim().into(), value: value.trim().into(), path: "/".into(), expires: None, max_age: None };
    for a in parts {
        let (k, v) = a.trim().split_once('=').unwrap_or((a.trim(), ""));
        match k.to_ascii_lowercase().as_str() {
            "path" if v.starts_with('/') => c.path = v.into(),
            "max-age" => c.max_age = v.parse().ok(),
            "expires" => c.expires = http_date(v),
            _ => {}
        }
    }
    Some(c)
}

/// `Thu, 01 Jan 1970 00:00:00 GMT` → Unix seconds.
fn http_date(s: &str) -> Option<i64> {
    let f: Vec<&str> = s.split([' ', ',', '-']).filter(|x| !x.is_empty()).collect();
    let (day, mon, year, time) =
        (f.get(1)?.parse::<i64>().ok()?, *f.get(2)?, f.get(3)?.parse::<i64>().ok()?, f.get(4)?);
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m.eq_ignore_ascii_case(mon))? as i64
        + 1;
    let hms: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    if hms.len() != 3 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2])
}

/// A cookie-keeping HTTP/1.1 client.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    /// (host without port, cookie)
    pub jar: Vec<(String, Cookie)>,
}

impl Browser {
    /// The `Cookie` header the browser would send to `url`.
    pub fn cookie_header(&self, url: &str) -> Option<String> {
        let (authority, target) = split_url(url);
        let host = host_of(authority);
        let path = target.split(['?', '#']).next().unwrap_or("/");
        let pairs: Vec<String> = self
            .jar
            .iter()
            .filter(|(h, c)| h == host && path_matches(path, &c.path))
            .map(|(_, c)| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// The cookies the browser holds for `host` (no port) named `name` or starting with it.
    pub fn cookies_named(&self, host: &str, prefix: &str) -> Vec<Cookie> {
        self.jar.iter().filter(|(h, c)| h == host && c.name.starts_with(prefix)).map(|(_, c)| c.clone()).collect()
    }

    /// Stores the response's `Set-Cookie`s for the URL it answered.
    pub fn store(&mut self, url: &str, resp: &Response) {
        let (authority, target) = split_url(url);
        let host = host_of(authority).to_string();
        let req_path = target.split(['?', '#']).next().unwrap_or("/");
        for line in resp.headers_named("set-cookie") {
            let Some(mut c) = parse_set_cookie(line) else { continue };
            if !line.to_ascii_lowercase().contains("path=") {
                // Default path (RFC 6265 §5.1.4): the request path up to its last '/'.
                c.path = match req_path.rfind('/') {
                    Some(0) | None => "/".into(),
                    Some(i) => req_path[..i].into(),
                };
            }
            self.jar.retain(|(h, old)| !(h == &host && old.name == c.name && old.path == c.path));
            if !c.expired() {
                self.jar.push((host.clone(), c));
            }
        }
    }

    /// One request with this browser's cookies; stores the cookies of the answer.
    pub fn request(&mut self, method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
        let mut all: Vec<(&str, String)> = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Some(c) = self.cookie_header(url) {
            all.push(("Cookie", c));
        }
        let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = http(method, url, &refs, body);
        self.store(url, &resp);
        resp
    }
}

fn host_of(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority.ends_with(']') => &authority[..i],
        _ => authority,
    }
}

fn path_matches(path: &str, cookie_path: &str) -> bool {
    path == cookie_path
        || (path.starts_with(cookie_path) && (cookie_path.ends_with('/') || path[cookie_path.len()..].starts_with('/')))
}

// ---- HTTP (the suite's one client, support/http.rs) -------------------------------------------

pub use http::Response;

/// One request on a new connection (`Connection: close`), read to EOF.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
    http::request(method, url, headers, body)
}

#[cfg(test)]
mod helper_tests {
    use super::*;

    #[test]
    fn cookies_follow_browser_rules() {
        let c = parse_set_cookie("a=1; path=/x; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly").unwrap();
        assert!(c.expired());
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:10 GMT"), Some(10));
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert!(path_matches("/x/y", "/x") && path_matches("/x", "/x") && !path_matches("/xy", "/x"));
        assert_eq!(decode("a%2Fb+c%zz"), "a/b c%zz");
        assert_eq!(query_param("http://h/p?a=1&rd=%2Fx%3Fy", "rd").as_deref(), Some("/x?y"));
    }
}
