//! `tollgate dev` as a newcomer runs it: the printed URL serves a login page, signing in shows
//! the demo page with the user's identity headers, the second demo app signs in with its own
//! client and session (sign-out of one leaves the other), and the printed `curl` line returns
//! JSON.

#[path = "support/browser.rs"]
mod browser;
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{get, raw, RawResponse};

struct Dev {
    child: Child,
    url: String,
    /// The second demo app.
    second: String,
    admin: SocketAddr,
    curl: String,
    config: String,
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tollgate dev` on a free loopback port and reads its banner.
fn start_dev() -> Dev {
    let mut child = Command::new(common::bin())
        .args(["dev", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut url, mut second, mut curl, mut config, mut admin) = (None, None, None, None, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("tollgate dev printed no curl line");
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Open") {
            url = rest.split_whitespace().next().map(str::to_string);
        } else if let Some(rest) = t.strip_prefix("Second app") {
            second = rest.split_whitespace().next().map(str::to_string);
        } else if let Some(rest) = t.strip_prefix("Admin") {
            admin = rest.split_whitespace().next().map(addr_of);
        } else if let Some(rest) = t.strip_prefix("Config") {
            config = Some(rest.trim().to_string());
        } else if t.starts_with("curl ") {
            curl = Some(t.to_string());
        }
    }
    Dev {
        child,
        url: url.expect("no Open line"),
        second: second.expect("no Second app line"),
        admin: admin.expect("no Admin line"),
        curl: curl.unwrap(),
        config: config.expect("no Config line"),
    }
}

fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").trim_end_matches('/').split('/').next().unwrap().parse().unwrap()
}

/// Waits (bounded) until the gateway has the issuer's metadata and keys (`/readyz`).
fn wait_ready(dev: &Dev) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(dev.admin, "/readyz", &[]);
        if r.status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "gateway never became ready: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn printed_curl_line_returns_json_from_the_api() {
    let dev = start_dev();
    wait_ready(&dev);
    assert!(std::path::Path::new(&dev.config).exists(), "config not written at {}", dev.config);
    // A development run holds few connections: capped, so that on a low open-file limit a burst
    // cannot take the descriptors the issuer and demo app (in the same process) need.
    let config = tollgate::config::Config::load(std::path::Path::new(&dev.config)).unwrap();
    assert_eq!((config.server.max_connections, config.admin.max_connections), (256, 64));
    let out = Command::new("bash").arg("-c").arg(&dev.curl).output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(json["path"], "/api/hello");
    assert_eq!(json["identity_headers"]["x-forwarded-user"], "dev-cli");
    // and without the token, the API refuses
    assert_eq!(get(addr_of(&dev.url), "/api/hello", &[]).status, 401);
}

/// Cookies per origin, enough to follow one login.
#[derive(Default)]
struct Jar(Vec<(String, String, String)>);

impl Jar {
    fn take(&mut self, host: &str, r: &RawResponse) {
        for (k, v) in &r.headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                self.0.retain(|(h, n, _)| !(h == host && n == name));
                if !v.contains("Max-Age=0") {
                    self.0.push((host.into(), name.into(), value.into()));
                }
            }
        }
    }
    fn header(&self, host: &str) -> String {
        self.0.iter().filter(|(h, _, _)| h == host).map(|(_, n, v)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
    }
}

fn request(addr: SocketAddr, method: &str, target: &str, jar: &Jar, body: Option<&str>) -> RawResponse {
    let host = addr.to_string();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: text/html\r\n");
    let cookies = jar.header(&host);
    if !cookies.is_empty() {
        req.push_str(&format!("Cookie: {cookies}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    raw(addr, req.as_bytes())
}

fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    (host.parse().unwrap(), format!("/{path}"))
}

/// Follows redirects (bounded) from `target` on the gateway or the issuer, keeping cookies;
/// returns the last response and the path it answered.
fn follow(mut addr: SocketAddr, target: &str, jar: &mut Jar) -> (RawResponse, String) {
    let mut target = target.to_string();
    for _ in 0..8 {
        let r = request(addr, "GET", &target, jar, None);
        jar.take(&addr.to_string(), &r);
        let Some(location) = r.header("location").filter(|_| r.status == 302) else { return (r, target) };
        if location.starts_with("http://") {
            (addr, target) = split_url(location);
        } else {
            target = location.to_string();
        }
    }
    panic!("more than 8 redirects from {target}");
}

#[test]
fn signing_in_through_the_dev_issuer_shows_the_demo_page() {
    let dev = start_dev();
    wait_ready(&dev);
    let gw = addr_of(&dev.url);
    assert_eq!(dev.url, format!("http://{gw}/wiki/"));
    assert_eq!(dev.second, format!("http://{gw}/blog/"));
    let mut jar = Jar::default();
    // 1. the protected page sends a browser to the issuer's sign-in form, with the wiki client
    let r = request(gw, "GET", "/wiki/reports?year=2026", &jar, None);
    assert_eq!(r.status, 302, "{r:?}");
    jar.take(&gw.to_string(), &r);
    let (idp, authorize) = split_url(r.header("location").unwrap());
    assert!(authorize.contains("client_id=tollgate-dev-wiki"), "{authorize}");
    let form = request(idp, "GET", &authorize, &jar, None);
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"username\""), "no sign-in form: {}", form.body);
    // 2. submit the form with the hidden fields it carries
    let mut fields: Vec<String> = form
        .body
        .split("<input type=\"hidden\" ")
        .skip(1)
        .map(|s| {
            let name = s.split("name=\"").nth(1).unwrap().split('"').next().unwrap();
            let value = s.split("value=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
            format!("{name}={}", tollgate::oidc::http::form_encode(&value))
        })
        .collect();
    fields.push("username=ada".into());
    let r = request(idp, "POST", "/authorize", &jar, Some(&fields.join("&")));
    assert_eq!(r.status, 302, "{r:?}");
    jar.take(&idp.to_string(), &r);
    // 3. back at the wiki's callback, then to the page first asked for
    let (_, callback) = split_url(r.header("location").unwrap());
    assert!(callback.starts_with("/wiki/oauth2/callback?"), "{callback}");
    let r = request(gw, "GET", &callback, &jar, None);
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.header("location"), Some("/wiki/reports?year=2026"));
    assert!(
        r.header("set-cookie").is_some_and(|c| c.starts_with("tollgate_wiki=") && c.contains("Path=/wiki;")),
        "{r:?}"
    );
    jar.take(&gw.to_string(), &r);
    let page = request(gw, "GET", "/wiki/reports?year=2026", &jar, None);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.body.contains("Signed in to <strong id=\"app\">wiki</strong> as <strong>ada</strong>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("x-forwarded-email") && page.body.contains("ada@example.com"), "{}", page.body);
    // 4. the blog signs in with its own client (silently: the issuer remembers ada)
    let (blog, at) = follow(gw, "/blog/", &mut jar);
    assert_eq!((blog.status, at.as_str()), (200, "/blog/"), "{blog:?}");
    assert!(
        blog.body.contains("Signed in to <strong id=\"app\">blog</strong> as <strong>ada</strong>"),
        "{}",
        blog.body
    );
    assert!(jar.header(&gw.to_string()).contains("tollgate_blog="), "{:?}", jar.0);
    // 5. signing out of the wiki leaves the blog signed in
    let out = request(gw, "GET", "/wiki/oauth2/sign_out", &jar, None);
    assert_eq!(out.status, 302, "{out:?}");
    jar.take(&gw.to_string(), &out);
    assert!(!jar.header(&gw.to_string()).contains("tollgate_wiki="), "{:?}", jar.0);
    assert_eq!(request(gw, "GET", "/wiki/", &jar, None).status, 302, "the wiki session ended");
    assert_eq!(request(gw, "GET", "/blog/", &jar, None).status, 200, "the blog session goes on");
    // the index and the public page need nothing
    assert!(get(gw, "/", &[]).body.contains("/blog/"));
    assert_eq!(get(gw, "/public/", &[]).status, 200);
}

#[test]
fn dev_refuses_non_loopback_addresses() {
    let out = Command::new(common::bin()).args(["dev", "--listen", "0.0.0.0:18081"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The dev quick start in real headless Chromium: the printed URL leads to the development
/// issuer's sign-in form; signing in lands on the demo page showing the user's headers.
#[test]
fn a_browser_signs_in_through_the_dev_issuer_form() {
    browser::check_prerequisites();
    let dev = start_dev();
    wait_ready(&dev);
    let seen = browser::run(&serde_json::json!({
        "scenario": "dev", "url": dev.url, "second_url": dev.second, "user": "grace"
    }));
    let form = seen["form_url"].as_str().unwrap();
    assert!(form.contains("/authorize?") && form.contains("code_challenge_method=S256"), "{seen}");
    assert_eq!(seen["final_url"], dev.url.as_str(), "{seen}");
    assert!(seen["welcome"].as_str().unwrap().contains("grace"), "{seen}");
    let headers = seen["headers"].as_str().unwrap();
    assert!(headers.contains("x-forwarded-email") && headers.contains("grace@example.com"), "{headers}");
    // The second app: its own sign-in (silent at the issuer), its own cookie on its own path.
    assert_eq!(seen["second_final_url"], dev.second.as_str(), "{seen}");
    assert!(seen["second_welcome"].as_str().unwrap().contains("blog"), "{seen}");
    let cookies = seen["cookies"].as_array().unwrap();
    let path_of = |name: &str| cookies.iter().find(|c| c["name"] == name).map(|c| c["path"].clone());
    assert_eq!(path_of("tollgate_wiki"), Some(serde_json::json!("/wiki")), "{seen}");
    assert_eq!(path_of("tollgate_blog"), Some(serde_json::json!("/blog")), "{seen}");
}
