//! "The edge", host confusion: one authority per request, validated, used for routing,
//! `X-Forwarded-Host`, `preserve_host` and the access log. Every case is sent as raw bytes
//! (HTTP/1.x over a plain socket, HTTP/2 through the `h2` crate with prior knowledge), since a
//! client library would normalise or refuse them.
//!
//! The routes: `admin.example.com` needs a bearer token (none is ever sent, so reaching it is a
//! 401), `*.example.com` is public; both preserve the host. `/any/` has no host.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{echo, raw, wait_until, Echo, Gateway, RawResponse, BASE};
use serde_json::Value;

struct Fixture {
    gw: Gateway,
    _echo: Echo,
}

fn fixture(server_extra: &str) -> Fixture {
    let echo = echo();
    let up = echo.addr;
    let base = BASE.replace("workers = 2", &format!("workers = 2\n{server_extra}"));
    let config = format!(
        r#"{base}
[[issuer]]
name = "idp"
url = "http://127.0.0.1:9"
jwks_uri = "http://127.0.0.1:9/jwks"
audiences = ["api"]

[[route]]
name = "admin"
host = "admin.example.com"
auth = "bearer"
path = "/"
upstream = "http://{up}"
preserve_host = true

[[route]]
name = "public"
host = "*.example.com"
auth = "none"
path = "/"
upstream = "http://{up}"
preserve_host = true

[[route]]
name = "any"
auth = "none"
path = "/any/"
upstream = "http://{up}"
"#
    );
    Fixture { gw: Gateway::start(&config), _echo: echo }
}

/// `GET target` with the given head lines after the request line (CRLF added), then
/// `Connection: close`.
fn request(addr: SocketAddr, line: &str, head: &[&str]) -> RawResponse {
    let mut req = format!("{line}\r\n");
    for h in head {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    raw(addr, req.as_bytes())
}

/// The echo upstream's view: (Host, X-Forwarded-Host, URI).
fn seen(r: &RawResponse) -> (String, String, String) {
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    let one = |name: &str| {
        let values: Vec<&str> =
            j["headers"][name].as_array().map_or(vec![], |a| a.iter().filter_map(Value::as_str).collect());
        assert!(values.len() <= 1, "{name} sent {} times: {values:?}", values.len());
        values.first().map_or(String::new(), |v| v.to_string())
    };
    (one("host"), one("x-forwarded-host"), j["uri"].as_str().unwrap_or("").to_string())
}

fn triple(host: &str, xfh: &str, uri: &str) -> (String, String, String) {
    (host.into(), xfh.into(), uri.into())
}

/// `GET http://www.example.com/x` with `Host: admin.example.com` was routed by the target (the
/// public wildcard) while the upstream got `Host` and `X-Forwarded-Host: admin.example.com`.
#[test]
fn absolute_form_target_must_agree_with_host() {
    let fx = fixture("");
    let r = request(fx.gw.addr, "GET http://www.example.com/x HTTP/1.1", &["Host: admin.example.com"]);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("Host"), "{}", r.body);
    // The reverse: the target names the protected host, Host the public one.
    let r = request(fx.gw.addr, "GET http://admin.example.com/x HTTP/1.1", &["Host: www.example.com"]);
    assert_eq!(r.status, 400, "{r:?}");
    // Agreeing (case, trailing dot and the default port aside), the request is served.
    let r = request(fx.gw.addr, "GET http://WWW.example.com/x?q=1 HTTP/1.1", &["Host: www.example.com.:80"]);
    assert_eq!(seen(&r), triple("www.example.com", "www.example.com", "/x?q=1"));
    let r = request(fx.gw.addr, "GET http://admin.example.com/x HTTP/1.1", &["Host: admin.example.com"]);
    assert_eq!(r.status, 401, "the protected route judged it: {r:?}");
}

/// Wildcard routes took Host values that are not host names and forwarded them verbatim; URL
/// parsers upstream read `admin.example.com#.example.com` as `admin.example.com`.
#[test]
fn hosts_that_are_not_host_names_are_refused() {
    let fx = fixture("");
    let hosts = [
        "admin.example.com#.example.com",
        "admin.example.com?.example.com",
        "admin.example.com/.example.com",
        "admin.example.com\\.example.com",
        "admin.example.com@www.example.com",
        "x@admin.example.com",
        "admin.example.com .example.com",
        "admin.example.com%00.example.com",
        "admin.example.com%2f.example.com",
        "admin.example.com:80@www.example.com",
        "admin..example.com",
        "www.example.com:0x50",
        "www.example.com:",
        "www.example.com:99999",
        "127.1",
        "[::1%25lo]",
        "",
    ];
    for host in hosts {
        let r = request(fx.gw.addr, "GET /x HTTP/1.1", &[&format!("Host: {host}")]);
        assert_eq!(r.status, 400, "Host: {host:?} got {} {:?}", r.status, r.body);
    }
    // Raw bytes a header value may hold but a host may not: tab, obs-text.
    for host in [&b"admin.example.com\t.example.com"[..], b"adm\xc3\xadn.example.com"] {
        let mut req = b"GET /x HTTP/1.1\r\nHost: ".to_vec();
        req.extend_from_slice(host);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        let r = raw(fx.gw.addr, &req);
        assert_eq!(r.status, 400, "Host: {:?} got {}", String::from_utf8_lossy(host), r.status);
    }
}

/// Two `Host` headers: RFC 9112 §3.2 says 400; the first was used, the upstream got both.
#[test]
fn duplicate_host_headers_are_refused() {
    let fx = fixture("");
    let r = request(fx.gw.addr, "GET /x HTTP/1.1", &["Host: www.example.com", "Host: admin.example.com"]);
    assert_eq!(r.status, 400, "{r:?}");
    let r = request(fx.gw.addr, "GET /x HTTP/1.1", &["Host: www.example.com", "host: www.example.com"]);
    assert_eq!(r.status, 400, "even when equal: {r:?}");
}

/// A keep-alive connection's `Host` is checked once and remembered: every later request on it
/// is still judged by its own `Host` (another host, another spelling of the same, a second
/// `Host` beside the remembered one, a host of the same length).
#[test]
fn each_request_on_a_connection_is_judged_by_its_own_host() {
    let fx = fixture("");
    let mut pipelined = String::new();
    for (i, hosts) in [
        &["Host: www.example.com"][..],
        &["Host: admin.example.com"],
        &["Host: WWW.Example.COM."],
        &["Host: www.example.com"],
        &["Host: abc.example.com"],
        &["Host: www.example.com", "Host: admin.example.com"],
    ]
    .iter()
    .enumerate()
    {
        pipelined.push_str(&format!("GET /x{i} HTTP/1.1\r\n{}\r\n", hosts.join("\r\n")));
        pipelined.push_str(if i == 5 { "Connection: close\r\n\r\n" } else { "\r\n" });
    }
    let mut s = std::net::TcpStream::connect(fx.gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).expect("timeout");
    std::io::Write::write_all(&mut s, pipelined.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut buf);
    let mut answers = Vec::new();
    let mut rest = &buf[..];
    while !rest.is_empty() && answers.len() < 6 {
        let r = common::parse_response(rest);
        let head = rest.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
        let len: usize = r.header("content-length").expect("a length").parse().expect("a number");
        rest = &rest[head + len..];
        answers.push(r);
    }
    assert_eq!(answers.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 401, 200, 200, 200, 400]);
    assert_eq!(seen(&answers[0]), triple("www.example.com", "www.example.com", "/x0"));
    assert_eq!(seen(&answers[2]), triple("www.example.com", "www.example.com", "/x2"));
    assert_eq!(seen(&answers[3]), triple("www.example.com", "www.example.com", "/x3"));
    assert_eq!(seen(&answers[4]), triple("abc.example.com", "abc.example.com", "/x4"));
}

/// HTTP/1.1 needs Host (also in absolute form); HTTP/1.0 without Host is served only in
/// absolute form, which names the host.
#[test]
fn missing_host() {
    let fx = fixture("");
    assert_eq!(request(fx.gw.addr, "GET /any/x HTTP/1.1", &[]).status, 400);
    assert_eq!(request(fx.gw.addr, "GET http://www.example.com/x HTTP/1.1", &[]).status, 400);
    assert_eq!(request(fx.gw.addr, "GET /any/x HTTP/1.0", &[]).status, 400);
    let r = request(fx.gw.addr, "GET http://www.example.com/x HTTP/1.0", &[]);
    assert_eq!(seen(&r), triple("www.example.com", "www.example.com", "/x"));
}

/// The host goes upstream (preserve_host, X-Forwarded-Host) and into the access log in its
/// normal form: lower case, no trailing dot, port kept. It went verbatim before.
#[test]
fn the_normal_form_goes_upstream_and_into_the_log() {
    let fx = fixture("");
    let r = request(fx.gw.addr, "GET /x HTTP/1.1", &["Host: WWW.Example.COM.:8080"]);
    assert_eq!(seen(&r), triple("www.example.com:8080", "www.example.com:8080", "/x"));
    let r = request(fx.gw.addr, "GET /any/x HTTP/1.1", &["Host: [::1]:8080"]);
    assert_eq!(seen(&r).1, "[::1]:8080");
    let r = request(fx.gw.addr, "GET /any/x HTTP/1.1", &["Host: 127.0.0.1"]);
    assert_eq!(seen(&r).1, "127.0.0.1");
    // `Admin.Example.COM.` is the protected host, not a wildcard match.
    assert_eq!(request(fx.gw.addr, "GET /x HTTP/1.1", &["Host: Admin.Example.COM."]).status, 401);
    wait_until("the access log line with the host", Duration::from_secs(5), || {
        fx.gw
            .logs()
            .lines()
            .any(|l| l.contains("\"host\":\"www.example.com:8080\"") && l.contains("\"route\":\"public\""))
            .then_some(())
    });
}

/// A client's `X-Forwarded-Host` is replaced by the routed authority, also when the peer is a
/// trusted proxy: the upstream must not be told about a host tollgate never routed by.
#[test]
fn x_forwarded_host_is_the_routed_authority_behind_trusted_proxies() {
    let fx = fixture("trusted_proxies = [\"127.0.0.0/8\"]");
    let r = request(fx.gw.addr, "GET /x HTTP/1.1", &["Host: www.example.com", "X-Forwarded-Host: admin.example.com"]);
    assert_eq!(seen(&r).1, "www.example.com");
    let r = request(fx.gw.addr, "GET /x HTTP/1.1", &["Host: www.example.com", "X.Forwarded.Host: admin.example.com"]);
    let j = r.json();
    let names: Vec<&String> = j["headers"].as_object().unwrap().keys().collect();
    assert!(!names.iter().any(|n| n.as_str() == "x.forwarded.host"), "{names:?}");
}

// ---- HTTP/2 ----------------------------------------------------------------------------------

/// Sends one HTTP/2 request with prior knowledge (h2c) and returns the status and body.
async fn h2_request(addr: SocketAddr, uri: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut req = http::Request::get(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let (resp, _) = client.send_request(req.body(()).unwrap(), true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("an answer").unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), body.data()).await.expect("the body") {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// `:authority` and a `host` field that disagree: routed by `:authority` (public) while the
/// upstream got `host` (admin). Now 400; agreeing or alone, the one authority is used.
#[test]
fn http2_authority_must_agree_with_host() {
    let fx = fixture("");
    h2_runtime().block_on(http2_cases(fx.gw.addr));
}

/// A runtime for the HTTP/2 client, apart from the echo upstream's (which a test must not drop
/// from inside another runtime).
fn h2_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn http2_cases(addr: SocketAddr) {
    let (status, body) = h2_request(addr, "http://www.example.com/x", &[("host", "admin.example.com")]).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = h2_request(addr, "http://admin.example.com/x", &[("host", "www.example.com")]).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = h2_request(addr, "http://www.example.com/x", &[]).await;
    assert_eq!(status, 200, "{body}");
    let j: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(j["headers"]["host"], serde_json::json!(["www.example.com"]));
    assert_eq!(j["headers"]["x-forwarded-host"], serde_json::json!(["www.example.com"]));
    let (status, body) = h2_request(addr, "http://www.example.com/x", &[("host", "WWW.example.com")]).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = h2_request(addr, "http://admin.example.com/x", &[]).await;
    assert_eq!(status, 401, "{body}");
    // Two `host` fields besides `:authority`.
    let (status, body) =
        h2_request(addr, "http://www.example.com/x", &[("host", "www.example.com"), ("host", "admin.example.com")])
            .await;
    assert_eq!(status, 400, "{body}");
}
