//! Resources a few clients could exhaust, through the real binary: WebSocket tunnels hold their
//! connection's `max_connections` place, close when idle and get the drain timeout at shutdown;
//! `accept` failures (out of file descriptors) back off and recover; one HTTP/2 connection
//! cannot open more than `max_connections_per_host` upstream connections, and a full pool
//! answers 503 after a short wait; `max_concurrent_streams` is what HTTP/2 clients are told;
//! a client that does not take its response is cut at the write timeout; an HTTP/2 connection
//! sending only PINGs is idle; half-sent requests to the admin listener cannot take the file
//! descriptors the traffic listener needs.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const CHUNK_LEN: usize = 64 * 1024;
static CHUNK: [u8; CHUNK_LEN] = [b'x'; CHUNK_LEN];

fn config(up: SocketAddr, server: &str, upstream: &str) -> String {
    let base = BASE.replace("workers = 2", &format!("workers = 2\n{server}"));
    format!(
        "{base}\n[upstream]\n{upstream}\n\n[[route]]\nauth = \"none\"\nname = \"app\"\npath = \"/\"\nupstream = \"http://{up}\"\n"
    )
}

/// Starts the gateway with its open-file limit lowered to `nofile`.
fn start_with_nofile(config: &str, nofile: u32) -> Gateway {
    Gateway::start_limited(config, &[], Some(nofile))
}

/// Upstreams on their own runtime, so the tests can use blocking sockets.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// An upstream that accepts WebSocket upgrades and echoes every byte of the tunnel; other
/// requests get `ok`.
async fn tunnel_upstream() -> SocketAddr {
    upstream(Arc::new(|mut req: Request<Incoming>| {
        Box::pin(async move {
            if !req.headers().contains_key("upgrade") {
                return Response::new(full("ok"));
            }
            echo_upgrade(&mut req)
        })
    }))
    .await
}

/// Echoes the tunnel `req` asks for once it is upgraded; the 101 that upgrades it.
fn echo_upgrade(req: &mut Request<Incoming>) -> Response<UpBody> {
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(up) = on.await {
            let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(full(""))
        .unwrap()
}

/// Opens a WebSocket tunnel through the gateway (raw bytes; the echo upstream does not care
/// about WebSocket framing).
fn open_tunnel(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed during the upgrade: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// Sends `msg` through a tunnel and reads the echo; false when the tunnel is closed.
fn echoes(s: &mut TcpStream, msg: &[u8]) -> bool {
    if s.write_all(msg).is_err() {
        return false;
    }
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).is_ok() && got == msg
}

/// Waits (bounded) until the peer closes `s`; returns how long that took.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// A client connection with a 64 KiB receive buffer, so that a client that does not read
/// stops the gateway's writes soon.
fn small_buffer_client(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(64 * 1024).unwrap();
    s.connect(&addr.into()).unwrap();
    s.into()
}

fn metric_of(gw: &Gateway, name: &str) -> f64 {
    metric(gw, name, &[])
}

/// `max_connections = 3`: three open tunnels take every place, so a plain request waits; when
/// one tunnel closes, the request is served. Before, a tunnel gave its place back at the upgrade
/// (20 tunnels were admitted with `max_connections = 5`).
#[test]
fn tunnels_count_as_connections() {
    let rt = runtime();
    let up = rt.block_on(tunnel_upstream());
    let gw = Gateway::start(&config(up, "max_connections = 3\nidle_timeout = \"60s\"", ""));
    let mut tunnels: Vec<TcpStream> = (0..3).map(|_| open_tunnel(gw.addr)).collect();
    for (i, t) in tunnels.iter_mut().enumerate() {
        assert!(echoes(t, format!("hello {i}").as_bytes()), "tunnel {i} does not echo");
    }
    let (tx, rx) = mpsc::channel();
    let addr = gw.addr;
    std::thread::spawn(move || {
        let _ = tx.send(get(addr, "/plain", &[]).status);
    });
    // A bounded negative check: nothing may be served while the tunnels hold every place.
    assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err(), "a 4th connection was served beside 3 tunnels");
    assert_eq!(metric_of(&gw, "tollgate_tunnels"), 3.0);
    assert_eq!(metric_of(&gw, "tollgate_connections"), 3.0, "tunnels are counted as connections");
    drop(tunnels.pop());
    let status = rx.recv_timeout(Duration::from_secs(10)).expect("not served after a tunnel closed");
    assert_eq!(status, 200);
    for t in tunnels.iter_mut() {
        assert!(echoes(t, b"still open"), "the other tunnels keep working");
    }
}

/// `tunnel_idle_timeout = "1s"`: a tunnel with no bytes either way is closed about a second
/// after its last byte; one in use every 300 ms stays open well past that. Before, tunnels had
/// no idle limit at all (still open after 16 s with `idle_timeout = "5s"`).
#[test]
fn idle_tunnels_are_closed() {
    let rt = runtime();
    let up = rt.block_on(tunnel_upstream());
    let gw = Gateway::start(&config(up, "tunnel_idle_timeout = \"1s\"\nidle_timeout = \"60s\"", ""));
    let mut busy = open_tunnel(gw.addr);
    let mut idle = open_tunnel(gw.addr);
    assert!(echoes(&mut idle, b"once"));
    let (tx, rx) = mpsc::channel();
    let mut idle_clone = idle.try_clone().unwrap();
    std::thread::spawn(move || {
        let _ = tx.send(closed_within(&mut idle_clone, Duration::from_secs(8)));
    });
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        assert!(echoes(&mut busy, b"tick"), "a busy tunnel was closed after {:?}", started.elapsed());
        // Pacing: a byte every 300 ms keeps the tunnel from being idle for 1 s.
        std::thread::sleep(Duration::from_millis(300));
    }
    let took = rx.recv_timeout(Duration::from_secs(10)).unwrap().expect("an idle tunnel stayed open for 8 s");
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(4), "idle tunnel closed after {took:?}");
    wait_until("the idle tunnel's place is free", Duration::from_secs(5), || {
        (metric_of(&gw, "tollgate_tunnels") == 1.0).then_some(())
    });
    drop(idle);
}

/// SIGTERM with `drain_timeout = "1s"`: an open tunnel keeps working after the listener has
/// closed (it gets the drain timeout like an in-flight request), then it is cut and the process
/// exits. Before, tunnels were cut the moment the listener closed.
#[test]
fn tunnels_get_the_drain_timeout_then_are_cut() {
    let rt = runtime();
    let up = rt.block_on(tunnel_upstream());
    let mut gw = Gateway::start(&config(up, "drain_timeout = \"1s\"", ""));
    let mut t = open_tunnel(gw.addr);
    assert!(echoes(&mut t, b"before"));
    gw.signal("TERM");
    let signalled = Instant::now();
    wait_until("the listener to close", Duration::from_secs(5), || TcpStream::connect(gw.addr).is_err().then_some(()));
    assert!(echoes(&mut t, b"during the drain"), "the tunnel was cut before the drain timeout");
    closed_within(&mut t, Duration::from_secs(6)).expect("the tunnel outlived the drain timeout");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(5),
        "tunnel closed {took:?} after SIGTERM"
    );
    assert_eq!(gw.wait_exit(Duration::from_secs(5)), Some(0), "the gateway did not exit after the drain");
}

/// A client that resets its connection while the upstream is still answering its upgrade (its
/// request head followed by a byte, so that the gateway is not reading and does not see the
/// reset): the 101 cannot be written, the connection ends with an error, and the tunnel the
/// request opened must give its place back at once. With the ended connection kept alive until
/// the tunnel finished, the client side of the upgrade never came and the tunnel held its
/// `max_connections` place for the tunnel idle timeout (here 60 s).
#[test]
fn an_upgrade_whose_client_reset_gives_its_place_back() {
    use socket2::SockRef;
    let rt = runtime();
    let (got, asked) = mpsc::channel::<()>();
    let answer = Arc::new(tokio::sync::Notify::new());
    let first = Arc::new(AtomicBool::new(true));
    let up = rt.block_on(upstream({
        let answer = answer.clone();
        Arc::new(move |mut req: Request<Incoming>| {
            let (got, answer, first) = (got.clone(), answer.clone(), first.clone());
            Box::pin(async move {
                let switching = echo_upgrade(&mut req);
                // The first upgrade is answered once its client has reset; later ones at once.
                if first.swap(false, SeqCst) {
                    let _ = got.send(());
                    answer.notified().await;
                }
                switching
            })
        })
    }));
    let gw = Gateway::start(&config(up, "tunnel_idle_timeout = \"60s\"", ""));
    let mut s = TcpStream::connect(gw.addr).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: gateway.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nX",
    )
    .unwrap();
    asked.recv_timeout(Duration::from_secs(10)).expect("the upgrade did not reach the upstream");
    SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
    answer.notify_one();
    wait_until("the reset connection's place to be free", Duration::from_secs(5), || {
        (metric_of(&gw, "tollgate_connections") == 0.0 && metric_of(&gw, "tollgate_tunnels") == 0.0).then_some(())
    });
    // And the place serves the next client.
    let mut next = open_tunnel(gw.addr);
    assert!(echoes(&mut next, b"next"));
}

/// With its open-file limit at 64, the gateway runs out of descriptors when 80 clients connect
/// and stay silent: `accept` fails with EMFILE. It logs that at most once a second (not once per
/// retry), counts it in `tollgate_accept_errors_total`, and once the clients leave it serves a
/// plain request again.
#[test]
fn accept_failures_back_off_log_rarely_and_recover() {
    let rt = runtime();
    let up = rt.block_on(echo_upstream());
    let gw = start_with_nofile(&config(up, "header_read_timeout = \"30s\"\nidle_timeout = \"60s\"", ""), 64);
    let clients: Vec<TcpStream> = (0..80).map(|_| TcpStream::connect(gw.addr).unwrap()).collect();
    let failures = |gw: &Gateway| gw.logs.lock().unwrap().iter().filter(|l| l.contains("accept failed")).count();
    wait_until("accept to fail", Duration::from_secs(10), || (failures(&gw) > 0).then_some(()));
    // An observation window: the back-off retries many times in 2.5 s; the log says so at most
    // once a second.
    let first = Instant::now();
    while first.elapsed() < Duration::from_millis(2500) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines = failures(&gw);
    assert!(lines <= 4, "{lines} accept-failure lines in 2.5 s:\n{}", gw.logs());
    drop(clients);
    let r = get(gw.addr, "/after", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let errors = metric(&gw, "tollgate_accept_errors_total", &[("listener", "traffic")]);
    assert!(errors >= lines as f64, "tollgate_accept_errors_total = {errors}");
}

/// Counts the connections an upstream accepts and how many are open at once.
#[derive(Default)]
struct Conns {
    accepted: AtomicUsize,
    open: AtomicUsize,
    most_open: AtomicUsize,
}

/// An HTTP/1.1 upstream like `common::upstream` that counts its connections.
async fn counting_upstream(handler: Handler, conns: Arc<Conns>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            conns.accepted.fetch_add(1, SeqCst);
            let open = conns.open.fetch_add(1, SeqCst) + 1;
            conns.most_open.fetch_max(open, SeqCst);
            let (handler, conns) = (handler.clone(), conns.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                conns.open.fetch_sub(1, SeqCst);
            });
        }
    });
    addr
}

/// An HTTP/2 (prior knowledge) client connection.
async fn h2_client(
    addr: SocketAddr,
) -> (h2::client::SendRequest<Bytes>, h2::client::Connection<tokio::net::TcpStream>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    h2::client::handshake(tcp).await.unwrap()
}

fn h2_get(path: &str) -> Request<()> {
    Request::get(format!("http://gateway.test{path}")).body(()).unwrap()
}

/// One HTTP/2 connection opens 200 streams at once to an upstream that takes 20 ms per
/// request: with `max_connections_per_host = 4`, the upstream never sees more than 4
/// connections, and every request is answered (they wait for a free connection). Before, one
/// such connection opened an upstream connection per stream (201 at once).
#[test]
fn one_http2_connection_cannot_open_more_than_the_per_host_limit() {
    let rt = runtime();
    let conns = Arc::new(Conns::default());
    let up = rt.block_on(counting_upstream(
        Arc::new(|_req| {
            Box::pin(async move {
                // The upstream's own work time, so that requests overlap.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Response::new(full("ok"))
            })
        }),
        conns.clone(),
    ));
    let gw =
        Gateway::start(&config(up, "", "max_connections_per_host = 4\npool_wait_timeout = \"30s\"\ntimeout = \"60s\""));
    let statuses = rt.block_on(async {
        let (client, conn) = h2_client(gw.addr).await;
        tokio::spawn(conn);
        // One request first, so that the client knows the server's stream limit and queues
        // the streams beyond it (sent before the SETTINGS, they would be refused).
        let mut ready = client.clone().ready().await.unwrap();
        let (first, _) = ready.send_request(h2_get("/first"), true).unwrap();
        assert_eq!(first.await.unwrap().status(), 200);
        let mut responses = Vec::new();
        for i in 0..200 {
            let client = client.clone();
            responses.push(tokio::spawn(async move {
                let mut client = client.ready().await.unwrap();
                let (resp, _) = client.send_request(h2_get(&format!("/s{i}")), true).unwrap();
                resp.await.unwrap().status()
            }));
        }
        let mut statuses = Vec::new();
        for r in responses {
            statuses.push(tokio::time::timeout(Duration::from_secs(60), r).await.expect("stream unanswered").unwrap());
        }
        statuses
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let most = conns.most_open.load(SeqCst);
    assert!(most <= 4, "{most} upstream connections open at once (limit 4)");
    assert!(conns.accepted.load(SeqCst) <= 8, "{} upstream connections made", conns.accepted.load(SeqCst));
}

/// `max_connections_per_host = 1` and `pool_wait_timeout = "300ms"`: while the one connection is
/// busy, a second request waits about 300 ms, then gets 503 with a body that names the setting
/// and `Retry-After`; once the first request finishes, the next one is served.
#[test]
fn a_full_upstream_pool_answers_503_after_the_wait() {
    let rt = runtime();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = release.clone();
    let (arrived_tx, arrived) = mpsc::channel::<()>();
    let up = rt.block_on(upstream(Arc::new(move |req: Request<Incoming>| {
        let (gate, arrived_tx) = (gate.clone(), arrived_tx.clone());
        Box::pin(async move {
            if req.uri().path() == "/slow" {
                let _ = arrived_tx.send(());
                let _permit = gate.acquire().await.unwrap();
            }
            Response::new(full(format!("done {}", req.uri().path())))
        })
    })));
    // One worker: the limit is per worker.
    let cfg = config(up, "", "max_connections_per_host = 1\npool_wait_timeout = \"300ms\"");
    let gw = Gateway::start(&cfg.replace("workers = 2", "workers = 1"));
    let addr = gw.addr;
    let slow = std::thread::spawn(move || get(addr, "/slow", &[]));
    arrived.recv_timeout(Duration::from_secs(5)).expect("the slow request never reached the upstream");
    let started = Instant::now();
    let r = get(gw.addr, "/second", &[]);
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("max_connections_per_host") && r.body.contains("route app"), "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "503 after {took:?}");
    assert_eq!(metric_of(&gw, "tollgate_upstream_pool_full_total"), 1.0);

    release.add_permits(1);
    assert_eq!(slow.join().unwrap().body, "done /slow");
    let r = get(gw.addr, "/third", &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "done /third"));
}

/// HTTP/2 clients are told `SETTINGS_MAX_CONCURRENT_STREAMS = 100` by default (hyper's own
/// default was 200), and the configured value when set.
#[test]
fn http2_clients_are_told_max_concurrent_streams() {
    let rt = runtime();
    let up = rt.block_on(echo_upstream());
    for (server, want) in [("", 100), ("max_concurrent_streams = 7", 7)] {
        let gw = Gateway::start(&config(up, server, ""));
        let advertised = rt.block_on(async {
            let (client, conn) = h2_client(gw.addr).await;
            tokio::spawn(conn);
            let mut ready = client.ready().await.unwrap();
            let (resp, _) = ready.send_request(h2_get("/settle"), true).unwrap();
            assert_eq!(resp.await.unwrap().status(), 200);
            ready.current_max_send_streams()
        });
        assert_eq!(advertised, want, "with {server:?}");
    }
}

/// `idle_timeout = "1s"`: an HTTP/2 connection that only sends PINGs (which the server answers)
/// is closed about a second after it opened; one whose only request takes 1.5 s is not closed
/// under it. Before, PINGs counted as activity and kept the connection open forever.
#[test]
fn http2_connection_sending_only_pings_is_idle() {
    let rt = runtime();
    let up = rt.block_on(upstream(Arc::new(|_req| {
        Box::pin(async move {
            // A slow answer: the connection must stay open while its stream is.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Response::new(full("slow"))
        })
    })));
    let gw = Gateway::start(&config(up, "idle_timeout = \"1s\"", ""));
    rt.block_on(async {
        let (_client, mut conn) = h2_client(gw.addr).await;
        let mut pings = conn.ping_pong().unwrap();
        let opened = Instant::now();
        let mut conn = tokio::spawn(conn);
        let mut answered = 0;
        loop {
            tokio::select! {
                _ = &mut conn => break,
                pong = pings.ping(h2::Ping::opaque()) => {
                    if pong.is_err() {
                        break;
                    }
                    answered += 1;
                    assert!(opened.elapsed() < Duration::from_secs(6), "PINGs kept the connection open for 6 s");
                    // Pacing: a PING every 200 ms, well inside the idle timeout.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let took = opened.elapsed();
        assert!(answered >= 3, "only {answered} PINGs answered");
        assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(4), "closed after {took:?}");

        let (client, conn) = h2_client(gw.addr).await;
        tokio::spawn(conn);
        let mut ready = client.ready().await.unwrap();
        let (resp, _) = ready.send_request(h2_get("/slow"), true).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("no answer").unwrap();
        assert_eq!(resp.status(), 200);
    });
}

/// A response body of `left` bytes in 64 KiB chunks that raises `dropped` when the upstream's
/// server drops it (the gateway went away before taking all of it).
struct Generated {
    left: u64,
    dropped: Arc<AtomicBool>,
}

impl http_body::Body for Generated {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left = self.left.saturating_sub(CHUNK_LEN as u64);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

impl Drop for Generated {
    fn drop(&mut self) {
        if self.left > 0 {
            self.dropped.store(true, SeqCst);
        }
    }
}

/// An upstream whose `GET /big?mib=N` streams N MiB; `abandoned` is raised when a body is
/// dropped before its end.
async fn big_upstream(abandoned: Arc<AtomicBool>) -> SocketAddr {
    upstream(Arc::new(move |req: Request<Incoming>| {
        let dropped = abandoned.clone();
        Box::pin(async move {
            let mib: u64 =
                req.uri().query().and_then(|q| q.strip_prefix("mib=")).and_then(|v| v.parse().ok()).unwrap_or(1);
            Response::new(Generated { left: mib << 20, dropped }.boxed())
        })
    }))
    .await
}

/// `write_timeout = "1s"`: a client that asks for 256 MiB and never reads is cut once the
/// gateway's writes stop for a second; the cut reaches the upstream (its response is dropped
/// instead of being held open forever) and is counted. The same over HTTP/2, where the client
/// withholds flow-control credit. A client that reads slowly but steadily gets all its bytes.
#[test]
fn a_client_that_does_not_read_is_cut_at_the_write_timeout() {
    let rt = runtime();
    let abandoned = Arc::new(AtomicBool::new(false));
    let up = rt.block_on(big_upstream(abandoned.clone()));
    let gw = Gateway::start(&config(up, "write_timeout = \"1s\"\nidle_timeout = \"60s\"", ""));

    let mut s = small_buffer_client(gw.addr);
    s.write_all(b"GET /big?mib=256 HTTP/1.1\r\nHost: gateway.test\r\n\r\n").unwrap();
    wait_until("the upstream response to be dropped (HTTP/1.1)", Duration::from_secs(15), || {
        abandoned.load(SeqCst).then_some(())
    });
    wait_until("the write timeout to be counted", Duration::from_secs(5), || {
        (metric_of(&gw, "tollgate_write_timeouts_total") == 1.0).then_some(())
    });
    drop(s);

    abandoned.store(false, SeqCst);
    rt.block_on(async {
        let (client, conn) = h2_client(gw.addr).await;
        tokio::spawn(conn);
        let mut ready = client.ready().await.unwrap();
        let (resp, _) = ready.send_request(h2_get("/big?mib=256"), true).unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), resp).await.expect("no response head").unwrap();
        assert_eq!(resp.status(), 200);
        // The body is never read, so no WINDOW_UPDATE goes back: the server's window runs out.
        let _body = resp.into_body();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !abandoned.load(SeqCst) {
            assert!(Instant::now() < deadline, "the upstream response was held for 15 s (HTTP/2)");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    });
    wait_until("the second write timeout", Duration::from_secs(5), || {
        (metric_of(&gw, "tollgate_write_timeouts_total") == 2.0).then_some(())
    });

    // Slow but steady: 1 MiB every 100 ms for 24 MiB (about 2.4 s, over the write timeout).
    let mut s = small_buffer_client(gw.addr);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /big?mib=24 HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n").unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let mut got = 0;
        while got < buf.len() {
            match s.read(&mut buf[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        total += got;
        if got < buf.len() {
            break;
        }
        // Pacing: the slow reader under test.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(total > 24 << 20, "a steady slow reader got only {total} bytes");
    assert_eq!(metric_of(&gw, "tollgate_write_timeouts_total"), 2.0);
}

/// The admin listener takes at most `max_connections` (64 by default) at once, and cuts
/// half-sent requests at the header timeout: 150 half-sent requests to it leave the traffic
/// listener with descriptors to serve (open-file limit 128). Before, the admin listener
/// accepted until the process ran out of descriptors and the traffic listener stopped answering.
#[test]
fn half_sent_admin_requests_do_not_starve_the_traffic_listener() {
    let rt = runtime();
    let up = rt.block_on(echo_upstream());
    let gw = start_with_nofile(&config(up, "header_read_timeout = \"2s\"", ""), 128);
    let mut half: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut s = TcpStream::connect(gw.admin).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n").unwrap();
            s
        })
        .collect();
    let r = get(gw.addr, "/traffic", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let took = closed_within(&mut half[0], Duration::from_secs(8)).expect("a half-sent admin request stayed open");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    drop(half);
    let r = wait_until("the admin listener to answer again", Duration::from_secs(30), || {
        let mut s = TcpStream::connect(gw.admin).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").ok()?;
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf.starts_with(b"HTTP/1.1 200").then_some(buf)
    });
    assert!(String::from_utf8_lossy(&r).contains("ok"));
}

/// The new limits refuse values that would disable them, naming the field.
#[test]
fn zero_limits_are_configuration_errors() {
    let dir = TempDir::new("edge-check");
    let file = dir.path("tollgate.toml");
    let server = "max_concurrent_streams = 0\nwrite_timeout = \"0s\"\ntunnel_idle_timeout = \"0s\"";
    let cfg = config("127.0.0.1:9".parse().unwrap(), server, "max_connections_per_host = 0")
        .replace("[admin]\nlisten = \"127.0.0.1:0\"", "[admin]\nlisten = \"127.0.0.1:0\"\nmax_connections = 0");
    std::fs::write(&file, cfg).unwrap();
    let (code, out) = check(&file, &[]);
    assert_ne!(code, 0, "{out}");
    for field in [
        "server.max_concurrent_streams",
        "server.write_timeout",
        "server.tunnel_idle_timeout",
        "upstream.max_connections_per_host",
        "admin.max_connections",
    ] {
        assert!(out.contains(field), "{field} not named in:\n{out}");
    }
}
