//! Proxying through the real binary: methods and bodies, header hygiene, forwarding headers,
//! request ids, path normalisation, HTTP/2 to HTTP/1.1, WebSockets, 404/413/502/504, metrics.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper::{Request, Response};

fn config(upstream: std::net::SocketAddr, extra_routes: &str) -> String {
    format!(
        "{BASE}\n[[route]]\nauth = \"none\"\nname = \"app\"\npath = \"/\"\nupstream = \"http://{upstream}\"\nmax_body = \"1KiB\"\n{extra_routes}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_and_bodies_pass_through() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, ""));
    let r = get(gw.addr, "/hello?x=1&y=%20", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["method"], "GET");
    assert_eq!(j["uri"], "/hello?x=1&y=%20");
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let r = send(gw.addr, method, "/items/1", b"{\"name\":\"tollgate\"}");
        assert_eq!(r.status, 200, "{method}: {r:?}");
        let j = r.json();
        assert_eq!(j["method"], method);
        assert_eq!(j["body"], "{\"name\":\"tollgate\"}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_gateway_headers_are_removed() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, ""));
    let r = get(
        gw.addr,
        "/",
        &[
            ("Connection", "close, X-Drop-Me"),
            ("X-Drop-Me", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("X-Forwarded-User", "admin"),
            ("X_Forwarded_User", "admin"),
            ("x-forwarded-email", "admin@example.com"),
            ("X-Auth-Request-Groups", "admins"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=6.6.6.6"),
            ("X-Keep", "yes"),
        ],
    );
    assert_eq!(r.status, 200);
    // hop-by-hop headers of the upstream's response are removed too
    assert_eq!(r.header("x-internal"), None, "{r:?}");
    let h = &r.json()["headers"];
    for gone in [
        "x-drop-me",
        "keep-alive",
        "te",
        "proxy-authorization",
        "x-forwarded-user",
        "x_forwarded_user",
        "x-forwarded-email",
        "x-auth-request-groups",
        "forwarded",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
    assert_eq!(h["x-keep"][0], "yes");
    assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]), "spoofed XFF from an untrusted peer");
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["http"]));
    assert_eq!(h["x-forwarded-host"], serde_json::json!(["gateway.test"]));
    assert_eq!(h["host"][0], up.to_string(), "Host is the upstream's by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_trusted_only_from_configured_proxies() {
    let up = echo_upstream().await;
    let cfg = config(up, "").replace("workers = 2", "workers = 2\ntrusted_proxies = [\"127.0.0.0/8\"]");
    let gw = Gateway::start(&cfg);
    let r = get(
        gw.addr,
        "/",
        &[("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "app.example.com")],
    );
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], serde_json::json!(["203.0.113.9, 127.0.0.1"]));
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["https"]));
    // Not believed even from a trusted proxy: X-Forwarded-Host is always the authority the
    // request was routed by (its Host), so the upstream never hears of a host tollgate did
    // not judge (tests/edge_host.rs).
    assert_eq!(h["x-forwarded-host"], serde_json::json!(["gateway.test"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_accepted_or_generated() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, ""));
    let r = get(gw.addr, "/", &[("X-Request-Id", "abc-123")]);
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(r.json()["headers"]["x-request-id"][0], "abc-123");
    let r = get(gw.addr, "/", &[("X-Request-Id", "has spaces; and junk")]);
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(r.json()["headers"]["x-request-id"][0], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_or_refused() {
    let up = echo_upstream().await;
    let routes = "[[route]]\nauth = \"none\"\nname = \"b\"\npath = \"/b\"\nupstream = \"http://UP/from-b\"\n"
        .replace("UP", &up.to_string());
    let gw = Gateway::start(&config(up, &routes));
    for (path, want_uri) in
        [("/a/../b", "/from-b/b"), ("//b", "/from-b/b"), ("/a/./c//d", "/a/c/d"), ("/%62", "/from-b/b")]
    {
        let r = get(gw.addr, path, &[]);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.json()["uri"], want_uri, "{path}");
    }
    for path in ["/%2e%2e/b", "/%2E%2E/%2E%2E/etc/passwd", "/a%2fb", "/a%2Fb", "/a%5cb", "/a\\b", "/a%00b", "/a%zz"] {
        let r = get(gw.addr, path, &[]);
        assert_eq!(r.status, 400, "{path} must be refused: {r:?}");
    }
    // the query string never takes part in matching, and passes unchanged
    let r = get(gw.addr, "/x?path=/b&q=%2e%2e%2f", &[]);
    assert_eq!(r.json()["uri"], "/x?path=/b&q=%2e%2e%2f");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_404_and_prefixes_can_be_stripped() {
    let up = echo_upstream().await;
    let cfg = format!(
        "{BASE}\n[[route]]\nauth = \"none\"\npath = \"/api/\"\nupstream = \"http://{up}/v1\"\nstrip_prefix = true\n\
         [[route]]\nauth = \"none\"\nhost = \"*.example.com\"\npath = \"/\"\nupstream = \"http://{up}/wild\"\n"
    );
    let gw = Gateway::start(&cfg);
    let r = get(gw.addr, "/api/users?id=7", &[]);
    assert_eq!(r.json()["uri"], "/v1/users?id=7");
    let r = get(gw.addr, "/other", &[]);
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no route"), "{}", r.body);
    let r = raw(gw.addr, b"GET /other HTTP/1.1\r\nHost: App.Example.com:8443\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/wild/other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, ""));
    let r = send(gw.addr, "POST", "/upload", &[b'x'; 2048]);
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.body.contains("route app"), "{}", r.body);
    // chunked: the limit is counted while streaming
    let mut req =
        b"POST /upload HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'y'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = raw(gw.addr, &req);
    assert_eq!(r.status, 413, "{r:?}");
    let r = send(gw.addr, "POST", "/upload", &[b'x'; 1000]);
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_is_502_and_slow_upstream_504() {
    let slow = upstream(Arc::new(|_req| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Response::new(full("late"))
        })
    }))
    .await;
    let dead = dead_port();
    let cfg = format!(
        "{BASE}\n[[route]]\nauth = \"none\"\nname = \"dead\"\npath = \"/dead\"\nupstream = \"http://{dead}\"\n\
         [[route]]\nauth = \"none\"\nname = \"slow\"\npath = \"/slow\"\nupstream = \"http://{slow}\"\ntimeout = \"300ms\"\n"
    );
    let gw = Gateway::start(&cfg);
    let r = get(gw.addr, "/dead", &[]);
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("route dead"), "{}", r.body);
    assert!(!r.body.contains("127.0.0.1") && !r.body.contains("refused"), "internals leaked: {}", r.body);
    let started = std::time::Instant::now();
    let r = get(gw.addr, "/slow", &[]);
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.body.contains("route slow"));
    assert!(started.elapsed() < Duration::from_secs(4), "the timeout did not apply");
    let m = admin(&gw, "/metrics").body;
    assert!(m.contains(r#"tollgate_upstream_errors_total{kind="upstream_connect",route="dead"} 1"#), "{m}");
    assert!(m.contains(r#"tollgate_upstream_errors_total{kind="upstream_timeout",route="slow"} 1"#), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_reaches_http1_upstream() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, ""));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://gateway.test/h2?x=1"))
        .method("POST")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"over h2")))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["version"], "HTTP/1.1");
    assert_eq!(j["uri"], "/h2?x=1");
    assert_eq!(j["body"], "over h2");
    assert_eq!(j["headers"]["x-forwarded-host"][0], "gateway.test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_gateway() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        ws.send(msg).await.unwrap();
                    }
                }
            });
        }
    });
    let gw = Gateway::start(&config(up, ""));
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{}/socket", gw.addr), tcp).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..3 {
        let text = format!("hello {i}");
        ws.send(tokio_tungstenite::tungstenite::Message::text(text.clone())).await.unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_and_access_log() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, ""));
    assert_eq!(admin(&gw, "/healthz").status, 200);
    assert_eq!(admin(&gw, "/readyz").status, 200);
    get(gw.addr, "/counted", &[("X-Request-Id", "log-me-1")]);
    let m = admin(&gw, "/metrics").body;
    assert!(m.contains(r#"tollgate_requests_total{code="200",route="app"} 1"#), "{m}");
    assert!(m.contains("tollgate_request_duration_seconds_bucket"), "{m}");
    assert!(m.contains("tollgate_requests_in_flight 0"), "{m}");
    // the routes are not served on the admin port, nor admin paths on the traffic port
    assert_eq!(admin(&gw, "/counted").status, 404);
    assert_eq!(get(gw.addr, "/metrics", &[]).json()["uri"], "/metrics");
    let logs = gw.logs();
    let line = logs.lines().find(|l| l.contains("log-me-1")).unwrap_or_else(|| panic!("no access log line:\n{logs}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["route"], "app");
    assert_eq!(v["status"], 200);
    assert_eq!(v["method"], "GET");
}

/// Only WebSocket upgrades are tunnelled. An `h2c` upgrade (which would let later requests on
/// the tunnel skip the route's checks) is forwarded as a plain request without its upgrade
/// headers, and the client gets the upstream's ordinary answer, not 101.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_is_not_tunnelled() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, ""));
    let r = raw(
        gw.addr,
        b"GET /public/x HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let h = &r.json()["headers"];
    for gone in ["upgrade", "http2-settings", "connection"] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
}

/// A raw HTTP/1.1 upstream on a thread: answers `200 ok` to each request head on a connection
/// for `per_conn` requests; the next request on that connection is read and the connection
/// closed without an answer (an upstream's keep-alive timeout firing just as a request comes).
/// Returns its address and a count of accepted connections.
fn counting_upstream(per_conn: usize) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                for served in 0..=per_conn {
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    if served == per_conn {
                        return;
                    }
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused() {
    let (up, accepted) = counting_upstream(usize::MAX);
    let gw = Gateway::start(&config(up, ""));
    for _ in 0..40 {
        let r = get(gw.addr, "/x", &[]);
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
    // One pooled connection per worker at most (requests here are sequential).
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=4).contains(&n), "{n} upstream connections for 40 sequential requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_closing_pooled_connections_is_not_a_502() {
    // Every upstream connection serves one request and closes under the second: each reused
    // connection fails after the request went out, and the GET goes again on a new one. The
    // gateway keeps a copy for that when the connection has been idle for 100 ms or more (an
    // upstream's keep-alive timeout is what closes connections), so the requests are spaced.
    let (up, accepted) = counting_upstream(1);
    let gw = Gateway::start(&config(up, ""));
    for i in 0..8 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(120)).await; // idle time, not synchronisation
        }
        let r = get(gw.addr, "/x", &[]);
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "request {i}: {r:?}");
    }
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!((8..=16).contains(&n), "{n} connections");
    // A POST is not sent twice: when its connection closes under it, the client gets the 502.
    let mut failed = 0;
    for _ in 0..10 {
        let r = send(gw.addr, "POST", "/x", b"once");
        assert!(r.status == 200 || r.status == 502, "{r:?}");
        failed += usize::from(r.status == 502);
    }
    assert!(failed > 0, "every POST on a reused connection would fail here");
}
