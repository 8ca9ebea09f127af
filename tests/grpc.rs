//! gRPC and HTTP/2 upstreams through the real binary: a real gRPC server and client (Python
//! grpcio, `tests/py/grpc_server.py` and `grpc_client.py`), bearer tokens from the real OpenID
//! Provider, `upstream_protocol = "h2c"` and `"h2"` (TLS with ALPN), gRPC refusals
//! (UNAUTHENTICATED with the challenge, PERMISSION_DENIED, UNAVAILABLE, UNIMPLEMENTED),
//! `grpc-timeout`, and a raw HTTP/2 upstream (the `h2` crate) for trailers both ways and
//! streams multiplexed on one upstream connection.
//!
//! Needs `tests/py/.venv` (made by `tests/run.sh`) and node with `cd tests/idp && npm ci`.

mod common;
#[path = "support/idp.rs"]
mod idp;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{check, dead_port, raw, wait_ready, Gateway, TempDir, BASE};
use http::{HeaderMap, HeaderValue, Request, Response};
use idp::{Idp, IdpOptions, API_RESOURCE};
use rcgen::{CertificateParams, KeyPair};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;

// ---- the Python parts ----------------------------------------------------------------------------

fn py_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py")
}

fn python() -> PathBuf {
    let p = py_dir().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run `bash tests/run.sh --lib --no-run` once to install it", p.display());
    p
}

/// `grpc_server.py` on a free loopback port; stopped (stdin closed, then killed) on drop.
struct GrpcServer {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl GrpcServer {
    fn start(tls: Option<(&PathBuf, &PathBuf)>) -> GrpcServer {
        let mut cmd = Command::new(python());
        cmd.arg(py_dir().join("grpc_server.py"));
        if let Some((cert, key)) = tls {
            cmd.arg("--tls").arg(cert).arg(key);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap();
        let stdin = child.stdin.take();
        let mut line = String::new();
        // Bounded: the server prints its port or exits (EOF) on any failure.
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).unwrap_or_else(|| {
            let _ = child.kill();
            panic!("grpc_server.py did not start: {line:?}")
        });
        GrpcServer { child, stdin, port }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One call with `grpc_client.py` through `gw`; the JSON line it prints.
fn call(gw: &Gateway, method: &str, token: Option<&str>, args: &[&str], timeout: Option<&str>) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(py_dir().join("grpc_client.py")).arg(gw.addr.to_string()).arg(method);
    if let Some(t) = token {
        cmd.arg("--token").arg(t);
    }
    if let Some(t) = timeout {
        cmd.arg("--timeout").arg(t);
    }
    for a in args {
        cmd.arg("--arg").arg(a);
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!("grpc_client.py {method}: {e}: {text}\n{}\nlogs:\n{}", String::from_utf8_lossy(&out.stderr), gw.logs())
    })
}

// ---- configuration -------------------------------------------------------------------------------

fn issuer_toml(url: &str) -> String {
    format!(
        "\n[[issuer]]\nname = \"idp\"\nurl = \"{url}\"\naudiences = [\"{API_RESOURCE}\"]\ntoken_type = \"at+jwt\"\n"
    )
}

/// A bearer `[[route]]` for the gRPC service path `/test.Echo/` to `upstream` over `protocol`.
fn grpc_route(name: &str, upstream: &str, protocol: &str, keys: &str) -> String {
    format!(
        "\n[[route]]\nname = \"{name}\"\nauth = \"bearer\"\npath = \"/test.Echo/\"\nupstream = \"{upstream}\"\n\
         upstream_protocol = \"{protocol}\"\n{keys}\n"
    )
}

fn start(config: &str) -> Gateway {
    let gw = Gateway::start(&format!("{BASE}{config}"));
    wait_ready(&gw);
    gw
}

fn read_token(idp: &Idp) -> String {
    idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE))
}

fn assert_ok(v: &Value) {
    assert_eq!(v["code"], "OK", "{v}");
}

// ---- the real gRPC server and client ---------------------------------------------------------------

/// With a provider token every kind of call passes over h2c, metadata arrives both ways and
/// trailers (trailing metadata) come back; bidi streaming is lock-step, so it completes only
/// when nothing on the way buffers a whole body.
#[test]
fn grpc_calls_of_every_kind_pass_with_a_provider_token() {
    let idp = Idp::start(IdpOptions::default());
    let server = GrpcServer::start(None);
    let up = format!("http://127.0.0.1:{}", server.port);
    let gw = start(&format!("{}{}", issuer_toml(&idp.issuer), grpc_route("echo", &up, "h2c", "")));
    let token = read_token(&idp);

    let v = call(&gw, "Unary", Some(&token), &["hello"], None);
    assert_ok(&v);
    let echoed: Value = serde_json::from_str(v["responses"][0].as_str().unwrap()).unwrap();
    assert_eq!(echoed["echo"], "hello");
    let md = &echoed["metadata"];
    assert_eq!(md["x-client"], "python", "client metadata reaches the server: {md}");
    assert!(md["x-forwarded-user"].is_string(), "identity headers are added: {md}");
    assert!(md["x-request-id"].is_string(), "{md}");
    assert_eq!(v["initial"]["x-initial"], "yes", "{v}");
    assert_eq!(v["trailing"]["x-trailer"], "done", "trailers come back: {v}");

    let v = call(&gw, "ServerStream", Some(&token), &["5"], None);
    assert_ok(&v);
    assert_eq!(v["responses"], serde_json::json!(["0", "1", "2", "3", "4"]));
    assert_eq!(v["trailing"]["x-count"], "5");

    let v = call(&gw, "ClientStream", Some(&token), &["a", "b", "c"], None);
    assert_ok(&v);
    assert_eq!(v["responses"], serde_json::json!(["a|b|c"]));
    assert_eq!(v["trailing"]["x-count"], "3");

    let v = call(&gw, "Bidi", Some(&token), &["x", "y", "z", "w"], Some("10"));
    assert_ok(&v);
    assert_eq!(v["responses"], serde_json::json!(["echo:x", "echo:y", "echo:z", "echo:w"]));
    assert_eq!(v["trailing"]["x-count"], "4");
}

/// Refusals are gRPC statuses a gRPC client reads: UNAUTHENTICATED with the message and the
/// `WWW-Authenticate` challenge, PERMISSION_DENIED for a token without the scope, UNAVAILABLE
/// for an upstream that is down, UNIMPLEMENTED for a path no route serves. Metrics keep the
/// HTTP status each stands for.
#[test]
fn refused_grpc_calls_get_grpc_statuses() {
    let idp = Idp::start(IdpOptions::default());
    let server = GrpcServer::start(None);
    let up = format!("http://127.0.0.1:{}", server.port);
    let writers = "[route.rules]\nscopes = [\"api:write\"]\n";
    let config = format!(
        "{}{}{}{}",
        issuer_toml(&idp.issuer),
        grpc_route("echo", &up, "h2c", "").replace("/test.Echo/", "/test.Echo/Unary"),
        grpc_route("writers", &up, "h2c", writers).replace("/test.Echo/", "/test.Echo/ClientStream"),
        grpc_route("down", &format!("http://{}", dead_port()), "h2c", "").replace("/test.Echo/", "/test.Echo/Bidi"),
    );
    let gw = start(&config);
    let token = read_token(&idp);

    let v = call(&gw, "Unary", None, &["hi"], None);
    assert_eq!(v["code"], "UNAUTHENTICATED", "{v}");
    assert_eq!(v["details"], "an access token is required");
    // Both challenges of a route that accepts DPoP as well (RFC 9449 §7.1), Bearer first.
    let challenges = &v["trailing"]["www-authenticate"];
    assert!(challenges[0].as_str().unwrap_or_default().starts_with("Bearer realm="), "challenge kept: {v}");
    assert!(challenges[1].as_str().unwrap_or_default().starts_with("DPoP realm="), "DPoP challenge kept: {v}");

    let v = call(&gw, "Unary", Some("not-a-token"), &["hi"], None);
    assert_eq!(v["code"], "UNAUTHENTICATED", "{v}");
    assert!(v["trailing"]["www-authenticate"][0].as_str().unwrap_or_default().contains("invalid_token"), "{v}");

    let v = call(&gw, "ClientStream", Some(&token), &["a"], None);
    assert_eq!(v["code"], "PERMISSION_DENIED", "{v}");
    assert_eq!(v["details"], "the access token lacks a required scope");

    let v = call(&gw, "Bidi", Some(&token), &["a"], None);
    assert_eq!(v["code"], "UNAVAILABLE", "{v}");
    assert_eq!(v["details"], "bad gateway: upstream of route down is unavailable", "{v}");

    let v = call(&gw, "ServerStream", Some(&token), &["1"], None);
    assert_eq!(v["code"], "UNIMPLEMENTED", "{v}");

    // The route's own call still passes, and the refusals were counted as 401/403/502.
    assert_ok(&call(&gw, "Unary", Some(&token), &["hi"], None));
    let m = |route: &str, status: &str| {
        common::metric(&gw, "tollgate_requests_total", &[("route", route), ("code", status)])
    };
    assert_eq!(m("echo", "401"), 2.0);
    assert_eq!(m("writers", "403"), 1.0);
    assert_eq!(m("down", "502"), 1.0);
}

/// `upstream_protocol = "h2"`: HTTP/2 over TLS to a gRPC server whose certificate the
/// `[upstream] ca_file` trusts; a TLS server that does not negotiate ALPN `h2` is refused
/// (UNAVAILABLE), not spoken to in HTTP/1.1: one offering only `http/1.1` (the handshake fails
/// with `no_application_protocol`) and one without ALPN (the handshake succeeds with no
/// protocol, and tollgate refuses it).
#[test]
fn h2_over_tls_needs_alpn_h2() {
    let idp = Idp::start(IdpOptions::default());
    let dir = TempDir::new("grpc-tls");
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let pair = KeyPair::generate().unwrap();
    let signed = params.self_signed(&pair).unwrap();
    std::fs::write(&cert, signed.pem()).unwrap();
    std::fs::write(&key, pair.serialize_pem()).unwrap();
    let server = GrpcServer::start(Some((&cert, &key)));

    let rt = runtime();
    let http1_only = rt.block_on(tls_server_alpn(&signed.pem(), &pair.serialize_pem(), &[b"http/1.1"]));
    let no_alpn = rt.block_on(tls_server_alpn(&signed.pem(), &pair.serialize_pem(), &[]));

    let ca = format!("\n[upstream]\nca_file = {:?}\n", cert.display().to_string());
    let config = format!(
        "{ca}{}{}{}{}",
        issuer_toml(&idp.issuer),
        grpc_route("tls", &format!("https://localhost:{}", server.port), "h2", "")
            .replace("/test.Echo/", "/test.Echo/Unary"),
        grpc_route("h1only", &format!("https://localhost:{}", http1_only.port()), "h2", "")
            .replace("/test.Echo/", "/test.Echo/ServerStream"),
        grpc_route("noalpn", &format!("https://localhost:{}", no_alpn.port()), "h2", "")
            .replace("/test.Echo/", "/test.Echo/ClientStream"),
    );
    let gw = start(&config);
    let token = read_token(&idp);

    let v = call(&gw, "Unary", Some(&token), &["over tls"], None);
    assert_ok(&v);
    assert!(v["responses"][0].as_str().unwrap().contains("over tls"), "{v}");
    assert_eq!(v["trailing"]["x-trailer"], "done", "{v}");

    let v = call(&gw, "ServerStream", Some(&token), &["1"], None);
    assert_eq!(v["code"], "UNAVAILABLE", "{v}");
    gw.wait_log("NoApplicationProtocol");
    let v = call(&gw, "ClientStream", Some(&token), &["1"], None);
    assert_eq!(v["code"], "UNAVAILABLE", "{v}");
    gw.wait_log("NoH2(localhost:");
}

// ---- raw HTTP/2 upstreams (the h2 crate) ---------------------------------------------------------

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A TLS server that offers only `alpn` (none when empty) and closes every connection after
/// the handshake.
async fn tls_server_alpn(cert_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    let certs = vec![rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(tcp).await;
            });
        }
    });
    addr
}

type Stream = (Request<h2::RecvStream>, h2::server::SendResponse<Bytes>);

/// An h2c server on a free port that hands every stream to `handler`; counts connections.
async fn h2_upstream<F, Fut>(handler: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(Stream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let up = h2_upstream_with(false, handler).await;
    (up.addr, up.opened)
}

/// An h2c upstream's address and counters.
struct H2Upstream {
    addr: SocketAddr,
    /// Connections accepted.
    opened: Arc<AtomicUsize>,
    /// Connections that ended (closed by the peer, or after `goaway`).
    closed: Arc<AtomicUsize>,
}

/// [`h2_upstream`]; with `goaway`, each connection is shut down gracefully (GOAWAY) once its
/// first stream is handled.
async fn h2_upstream_with<F, Fut>(goaway: bool, handler: F) -> H2Upstream
where
    F: Fn(Stream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (count, ended) = (opened.clone(), closed.clone());
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (handler, ended) = (handler.clone(), ended.clone());
            tokio::spawn(async move {
                if let Ok(mut conn) = h2::server::handshake(tcp).await {
                    while let Some(Ok(stream)) = conn.accept().await {
                        let task = tokio::spawn(handler(stream));
                        if goaway {
                            let _ = task.await;
                            conn.graceful_shutdown();
                        }
                    }
                }
                ended.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    H2Upstream { addr, opened, closed }
}

/// An h2c (prior knowledge) client connection to the gateway.
async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn read_all(body: &mut h2::RecvStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

fn public_route(upstream: SocketAddr, protocol: &str, keys: &str) -> String {
    format!(
        "\n[[route]]\nname = \"h2\"\nauth = \"none\"\npath = \"/\"\nupstream = \"http://{upstream}\"\n\
         upstream_protocol = \"{protocol}\"\n{keys}\n"
    )
}

/// A non-gRPC h2c upstream: request trailers reach it and its response trailers reach the
/// client; `te: trailers` passes, no `Host` goes along (the authority is `:authority`), and
/// eight concurrent requests from one client connection share one upstream connection (the
/// upstream answers none until all eight are open at once).
#[test]
fn h2c_upstream_multiplexes_streams_and_forwards_trailers() {
    const N: usize = 8;
    let rt = runtime();
    let open = Arc::new(AtomicUsize::new(0));
    let all_open = Arc::new(Notify::new());
    let (up, connections) = rt.block_on(h2_upstream(move |(req, mut respond): Stream| {
        let (open, all_open) = (open.clone(), all_open.clone());
        async move {
            let saw =
                |name: &str| req.headers().get(name).map_or("none".to_string(), |v| v.to_str().unwrap().to_string());
            let (te, host, authority) = (saw("te"), saw("host"), req.uri().authority().map(|a| a.to_string()));
            let mut body = req.into_body();
            let data = read_all(&mut body).await;
            let trailers = body.trailers().await.unwrap().unwrap_or_default();
            if open.fetch_add(1, Ordering::SeqCst) + 1 == N {
                all_open.notify_waiters();
            }
            let notified = all_open.notified();
            if open.load(Ordering::SeqCst) < N {
                let _ = tokio::time::timeout(Duration::from_secs(10), notified).await;
            }
            let resp = Response::builder()
                .status(200)
                .header("x-saw-te", te)
                .header("x-saw-host", host)
                .header("x-saw-authority", authority.unwrap_or_default())
                .header("x-saw-open", open.load(Ordering::SeqCst).to_string())
                .body(())
                .unwrap();
            let mut send = respond.send_response(resp, false).unwrap();
            send.send_data(Bytes::from(data), false).unwrap();
            let mut t = HeaderMap::new();
            let echoed = trailers.get("x-req-trailer").cloned().unwrap_or(HeaderValue::from_static("missing"));
            t.insert("x-resp-trailer", echoed);
            send.send_trailers(t).unwrap();
        }
    }));
    let gw = Gateway::start(&format!("{BASE}{}", public_route(up, "h2c", "")));

    let results = rt.block_on(async {
        let client = h2_client(gw.addr).await;
        let mut tasks = Vec::new();
        for i in 0..N {
            let client = client.clone();
            let addr = gw.addr;
            tasks.push(tokio::spawn(async move {
                let req = Request::post(format!("http://{addr}/stream/{i}")).header("te", "trailers").body(()).unwrap();
                let (resp, mut send) = client.ready().await.unwrap().send_request(req, false).unwrap();
                send.send_data(Bytes::from(format!("body {i}")), false).unwrap();
                let mut t = HeaderMap::new();
                t.insert("x-req-trailer", HeaderValue::from_str(&format!("t{i}")).unwrap());
                send.send_trailers(t).unwrap();
                let resp = tokio::time::timeout(Duration::from_secs(20), resp).await.unwrap().unwrap();
                let head = resp.headers().clone();
                let mut body = resp.into_body();
                let data = read_all(&mut body).await;
                let trailers = body.trailers().await.unwrap().unwrap_or_default();
                (i, head, data, trailers)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    for (i, head, data, trailers) in results {
        assert_eq!(String::from_utf8(data).unwrap(), format!("body {i}"));
        assert_eq!(trailers["x-resp-trailer"], format!("t{i}").as_str(), "trailers both ways");
        assert_eq!(head["x-saw-te"], "trailers");
        assert_eq!(head["x-saw-host"], "none", "no Host header next to :authority");
        assert_eq!(head["x-saw-authority"], up.to_string().as_str());
        assert_eq!(head["x-saw-open"], N.to_string().as_str(), "all streams were open at once");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1, "one upstream connection carried all {N} streams");
}

/// A gRPC call whose `grpc-timeout` is shorter than the route's timeout ends at that deadline
/// with DEADLINE_EXCEEDED from tollgate (the upstream here never answers and ignores
/// deadlines), and the upstream stream is reset (CANCEL), not left open; a malformed
/// `grpc-timeout` is ignored and the route's timeout applies (UNAVAILABLE).
#[test]
fn grpc_timeout_bounds_the_route_timeout() {
    let rt = runtime();
    let cancelled = Arc::new(AtomicUsize::new(0));
    let seen = cancelled.clone();
    let (up, _) = rt.block_on(h2_upstream(move |(req, mut respond): Stream| {
        let seen = seen.clone();
        async move {
            // No answer: hold the stream until tollgate resets it.
            let mut body = req.into_body();
            let _ = read_all(&mut body).await;
            let reset = std::future::poll_fn(|cx| respond.poll_reset(cx));
            if let Ok(Ok(h2::Reason::CANCEL)) = tokio::time::timeout(Duration::from_secs(20), reset).await {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    }));
    let gw = Gateway::start(&format!("{BASE}{}", public_route(up, "h2c", "timeout = \"3s\"")));

    let ask = |timeout: &'static str| {
        rt.block_on(async {
            let client = h2_client(gw.addr).await;
            let req = Request::post(format!("http://{}/test.Echo/Slow", gw.addr))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("grpc-timeout", timeout)
                .body(())
                .unwrap();
            let started = Instant::now();
            let (resp, _send) = client.ready().await.unwrap().send_request(req, true).unwrap();
            let resp = tokio::time::timeout(Duration::from_secs(20), resp).await.unwrap().unwrap();
            (started.elapsed(), resp.status(), resp.headers().clone(), resp.into_body().is_end_stream())
        })
    };
    let (took, status, headers, ended) = ask("300m");
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/grpc");
    assert_eq!(headers["grpc-status"], "4", "DEADLINE_EXCEEDED: {headers:?}");
    assert!(headers["grpc-message"].to_str().unwrap().contains("grpc-timeout"), "{headers:?}");
    assert!(ended, "trailers-only: the HEADERS frame ends the stream");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(2500), "{took:?}");
    common::wait_until("the upstream stream to be cancelled", Duration::from_secs(5), || {
        (cancelled.load(Ordering::SeqCst) == 1).then_some(())
    });

    let (took, _, headers, _) = ask("soon");
    assert_eq!(headers["grpc-status"], "14", "route timeout → UNAVAILABLE: {headers:?}");
    assert!(took >= Duration::from_secs(3), "the malformed deadline was ignored: {took:?}");
    common::wait_until("the second upstream stream to be cancelled", Duration::from_secs(5), || {
        (cancelled.load(Ordering::SeqCst) == 2).then_some(())
    });
}

/// WebSocket upgrades stay HTTP/1.1-only: on an HTTP/2 route they get a plain 400 naming the
/// reason, and nothing is sent upstream.
#[test]
fn websocket_upgrades_on_an_h2_route_are_refused() {
    let rt = runtime();
    let (up, connections) = rt.block_on(h2_upstream(|_| async {}));
    let gw = Gateway::start(&format!("{BASE}{}", public_route(up, "h2c", "")));
    let r = raw(
        gw.addr,
        b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("WebSocket upgrades need an HTTP/1.1 upstream"), "{}", r.body);
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

async fn answer_ok((_, mut respond): Stream) {
    let resp = Response::builder().status(200).body(()).unwrap();
    let mut send = respond.send_response(resp, false).unwrap();
    send.send_data(Bytes::from_static(b"ok"), true).unwrap();
}

/// The pooled HTTP/2 connection's life: when the upstream closes it (GOAWAY) the next request
/// opens a new one, and one idle for `pool_idle_timeout` is closed by tollgate.
#[test]
fn h2_connections_are_replaced_after_goaway_and_closed_when_idle() {
    let rt = runtime();
    let up = rt.block_on(h2_upstream_with(true, answer_ok));
    let idle = rt.block_on(h2_upstream_with(false, answer_ok));
    let config = format!(
        "\n[upstream]\npool_idle_timeout = \"1s\"\n{}{}",
        public_route(up.addr, "h2c", ""),
        public_route(idle.addr, "h2c", "")
            .replace("name = \"h2\"", "name = \"idle\"")
            .replace("path = \"/\"", "path = \"/idle/\""),
    );
    let gw = Gateway::start(&format!("{BASE}{config}"));
    let get = |path: &str| common::get(gw.addr, path, &[]);

    assert_eq!(get("/a").status, 200);
    common::wait_until("the upstream to close its first connection", Duration::from_secs(10), || {
        (up.closed.load(Ordering::SeqCst) == 1).then_some(())
    });
    let r = get("/b");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.opened.load(Ordering::SeqCst), 2, "a new connection after GOAWAY");

    assert_eq!(get("/idle/a").status, 200);
    assert_eq!(idle.opened.load(Ordering::SeqCst), 1);
    common::wait_until("tollgate to close the idle connection", Duration::from_secs(10), || {
        (idle.closed.load(Ordering::SeqCst) == 1).then_some(())
    });
    assert_eq!(get("/idle/b").status, 200);
    assert_eq!(idle.opened.load(Ordering::SeqCst), 2);
}

/// An HTTP/1.1 client's connection-specific headers never reach an HTTP/2 upstream (the h2
/// crate would reset a stream carrying them): `Connection` and the names it lists,
/// `Keep-Alive`, `Transfer-Encoding`; the chunked body arrives whole, `te: trailers` passes.
#[test]
fn http1_clients_connection_headers_stay_off_an_h2_upstream() {
    let rt = runtime();
    let (up, _) = rt.block_on(h2_upstream(|(req, mut respond): Stream| async move {
        let mut names: Vec<String> = req.headers().keys().map(|k| k.to_string()).collect();
        names.sort();
        let mut body = req.into_body();
        let data = read_all(&mut body).await;
        let resp = Response::builder().status(200).header("x-saw", names.join(",")).body(()).unwrap();
        let mut send = respond.send_response(resp, false).unwrap();
        send.send_data(Bytes::from(data), true).unwrap();
    }));
    let gw = Gateway::start(&format!("{BASE}{}", public_route(up, "h2c", "")));
    let r = raw(
        gw.addr,
        b"POST /x HTTP/1.1\r\nHost: app.test\r\nConnection: close, x-hop\r\nX-Hop: 1\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "hello");
    let saw = r.header("x-saw").unwrap_or_default().to_string();
    for gone in ["connection", "x-hop", "keep-alive", "transfer-encoding", "host"] {
        assert!(!saw.split(',').any(|n| n == gone), "{gone} reached the upstream: {saw}");
    }
    assert!(saw.split(',').any(|n| n == "te"), "{saw}");
}

/// `tollgate check` names the field: unknown protocol names, `h2` with an http:// upstream,
/// `h2c` with an https:// one.
#[test]
fn upstream_protocol_is_validated() {
    let dir = TempDir::new("grpc-check");
    let file = dir.path("t.toml");
    let route = |upstream: &str, protocol: &str| {
        format!(
            "\n[[route]]\nauth = \"none\"\npath = \"/\"\nupstream = \"{upstream}\"\nupstream_protocol = \"{protocol}\"\n"
        )
    };
    for (upstream, protocol, want) in [
        ("http://127.0.0.1:1", "http2", "unknown protocol \"http2\""),
        ("http://127.0.0.1:1", "h2", "needs an https:// upstream"),
        ("https://127.0.0.1:1", "h2c", "needs an http:// upstream"),
    ] {
        std::fs::write(&file, format!("{BASE}{}", route(upstream, protocol))).unwrap();
        let (code, out) = check(&file, &[]);
        assert_ne!(code, 0, "{out}");
        assert!(out.contains("route[0].upstream_protocol") && out.contains(want), "{protocol}: {out}");
    }
    for (upstream, protocol) in
        [("http://127.0.0.1:1", "h2c"), ("https://127.0.0.1:1", "h2"), ("http://127.0.0.1:1", "http1")]
    {
        std::fs::write(&file, format!("{BASE}{}", route(upstream, protocol))).unwrap();
        let (code, out) = check(&file, &[]);
        assert_eq!(code, 0, "{protocol}: {out}");
    }
}

/// What the hand-made upstream of [`silent_after_first_answer`] saw on one connection.
#[derive(Default)]
struct Silent {
    /// Connections accepted.
    opened: AtomicUsize,
    /// PINGs the first connection got (and never answered).
    pings: AtomicUsize,
    /// When the first connection's answer went out, and when tollgate closed it.
    answered: std::sync::Mutex<Option<Instant>>,
    closed: std::sync::Mutex<Option<Instant>>,
}

/// An h2c upstream written frame by frame, so that it can do what no HTTP/2 library does: on
/// its first connection it completes the preface and SETTINGS, answers one request (`:status
/// 200`, HPACK static index 8) and then stops answering anything, PINGs included, while keeping
/// the socket open (a hung or paused process). Later connections answer every request and PING.
async fn silent_after_first_answer() -> (SocketAddr, Arc<Silent>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Silent::default());
    let state = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let first = state.opened.fetch_add(1, Ordering::SeqCst) == 0;
            let state = state.clone();
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if tcp.read_exact(&mut preface).await.is_err() || &preface != b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" {
                    return;
                }
                // Our SETTINGS: none, the defaults.
                tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
                let mut silent = false;
                loop {
                    let mut head = [0u8; 9];
                    if tcp.read_exact(&mut head).await.is_err() {
                        break;
                    }
                    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                    let (kind, flags) = (head[3], head[4]);
                    let stream = &head[5..9];
                    let mut payload = vec![0u8; len];
                    if tcp.read_exact(&mut payload).await.is_err() {
                        break;
                    }
                    if kind == 6 && flags & 1 == 0 && first {
                        state.pings.fetch_add(1, Ordering::SeqCst);
                    }
                    if silent {
                        continue;
                    }
                    let mut out = Vec::new();
                    match kind {
                        // SETTINGS: acknowledged.
                        4 if flags & 1 == 0 => out.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]),
                        // HEADERS: `:status 200`, END_HEADERS | END_STREAM.
                        1 => {
                            out.extend_from_slice(&[0, 0, 1, 1, 5]);
                            out.extend_from_slice(stream);
                            out.push(0x88);
                        }
                        // PING: the ACK with the same payload.
                        6 if flags & 1 == 0 => {
                            out.extend_from_slice(&[0, 0, 8, 6, 1, 0, 0, 0, 0]);
                            out.extend_from_slice(&payload);
                        }
                        _ => {}
                    }
                    if !out.is_empty() && tcp.write_all(&out).await.is_err() {
                        break;
                    }
                    if kind == 1 && first {
                        *state.answered.lock().unwrap() = Some(Instant::now());
                        silent = true;
                    }
                }
                if first {
                    *state.closed.lock().unwrap() = Some(Instant::now());
                }
            });
        }
    });
    (addr, seen)
}

/// `[upstream] h2_keepalive_interval` and `_timeout`: an upstream that accepted the connection
/// and then stopped answering frames is found by a PING left unanswered, its connection is
/// dropped within interval + timeout (1 s + 1 s here, measured from the last answer), and the
/// next request gets a fresh connection that works. Before these settings no PING was ever
/// sent and the dead connection stayed pooled until `pool_idle_timeout` (90 s), each request on
/// it waiting out the route's timeout.
#[test]
fn a_silent_h2_upstream_is_dropped_after_an_unanswered_ping() {
    let rt = runtime();
    let (up, seen) = rt.block_on(silent_after_first_answer());
    let config = format!(
        "\n[upstream]\nh2_keepalive_interval = \"1s\"\nh2_keepalive_timeout = \"1s\"\n{}",
        public_route(up, "h2c", "timeout = \"30s\"")
    );
    let gw = Gateway::start(&format!("{BASE}{config}"));
    wait_ready(&gw);
    let r = common::get(gw.addr, "/a", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let closed = common::wait_until("tollgate to drop the silent connection", Duration::from_secs(15), || {
        *seen.closed.lock().unwrap()
    });
    let answered = seen.answered.lock().unwrap().expect("the first request was answered");
    let after = closed.duration_since(answered);
    eprintln!("dropped {after:?} after the last answer");
    assert!(seen.pings.load(Ordering::SeqCst) >= 1, "dropped for its unanswered PING");
    // 2 s of settings; the slack is for a loaded machine, not for the mechanism.
    assert!(after >= Duration::from_millis(1_500) && after < Duration::from_secs(5), "dropped after {after:?}");
    let started = Instant::now();
    let r = common::get(gw.addr, "/b", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(5), "not the route's timeout: {:?}", started.elapsed());
    assert_eq!(seen.opened.load(Ordering::SeqCst), 2, "a fresh connection");
}

/// The keep-alive settings are validated with the field named; `"0"` turns PINGs off.
#[test]
fn h2_keepalive_settings_are_validated() {
    let dir = TempDir::new("h2-keepalive-check");
    let file = dir.path("t.toml");
    let route =
        "\n[[route]]\nauth = \"none\"\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\nupstream_protocol = \"h2c\"\n";
    for (keys, field, want) in [
        ("h2_keepalive_interval = \"often\"", "upstream.h2_keepalive_interval", "invalid duration"),
        ("h2_keepalive_timeout = \"0\"", "upstream.h2_keepalive_timeout", "must be more than 0"),
        ("h2_keepalive_timeout = \"20\"", "upstream.h2_keepalive_timeout", "unit"),
    ] {
        std::fs::write(&file, format!("{BASE}\n[upstream]\n{keys}\n{route}")).unwrap();
        let (code, out) = check(&file, &[]);
        assert_ne!(code, 0, "{out}");
        assert!(out.contains("t.toml") && out.contains(field) && out.contains(want), "{keys}: {out}");
    }
    for keys in ["h2_keepalive_interval = \"0\"", "h2_keepalive_interval = \"30s\"\nh2_keepalive_timeout = \"5s\"", ""]
    {
        std::fs::write(&file, format!("{BASE}\n[upstream]\n{keys}\n{route}")).unwrap();
        let (code, out) = check(&file, &[]);
        assert_eq!(code, 0, "{keys}: {out}");
    }
}
