//! Resource limits through the real binary: 100 MB bodies streamed both ways in bounded memory,
//! slow and silent clients cut at the header read timeout, idle keep-alive connections closed at
//! the idle timeout (and only then), oversized request heads refused with 431, and
//! `max_connections` holding extra connections back until a slot frees.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MIB: u64 = 1024 * 1024;
const CHUNK_LEN: usize = 64 * 1024;
static CHUNK: [u8; CHUNK_LEN] = [b'x'; CHUNK_LEN];

/// `total` bytes as a stream of 64 KiB frames that all share one static buffer: nothing is
/// built in memory on the sending side.
fn generated(total: u64) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync {
    let frames = total / CHUNK_LEN as u64;
    futures_util::stream::iter((0..frames).map(|_| Ok(Frame::data(Bytes::from_static(&CHUNK)))))
}

/// The value of an unlabelled or labelled series in the admin `/metrics` (0 when absent).
fn metric(gw: &Gateway, series: &str) -> f64 {
    let body = tokio::task::block_in_place(|| admin(gw, "/metrics").body);
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

fn config(up: SocketAddr, server: &str, route: &str) -> String {
    let base = BASE.replace("workers = 2", &format!("workers = 2\n{server}"));
    format!("{base}\n[[route]]\nauth = \"none\"\nname = \"app\"\npath = \"/\"\nupstream = \"http://{up}\"\n{route}\n")
}

type H1<B> = hyper::client::conn::http1::SendRequest<B>;

/// A keep-alive HTTP/1.1 client connection; the handle ends when the connection closes.
async fn h1<B>(addr: SocketAddr) -> (H1<B>, tokio::task::JoinHandle<()>)
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, task)
}

/// GET `path` on `sender` (bounded), returning the status and the body as text.
async fn get_on(sender: &mut H1<Empty<Bytes>>, path: &str) -> (StatusCode, String) {
    let req = Request::get(path).header("host", "gateway.test").body(Empty::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), async {
        sender.ready().await?;
        sender.send_request(req).await
    })
    .await
    .expect("no response within 10 s")
    .expect("request failed");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// An upstream that counts a streamed request body without keeping it (`POST /upload`
/// answers with the count), and streams `GET /download?mib=N` as generated 64 KiB chunks.
async fn bulk_upstream() -> SocketAddr {
    upstream(Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            if req.uri().path() == "/upload" {
                let mut body = req.into_body();
                let mut n: u64 = 0;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                        Err(e) => return Response::builder().status(500).body(full(e.to_string())).unwrap(),
                    }
                }
                return Response::new(full(n.to_string()));
            }
            let mib: u64 =
                req.uri().query().and_then(|q| q.strip_prefix("mib=")).and_then(|v| v.parse().ok()).unwrap_or(1);
            Response::new(StreamBody::new(generated(mib * MIB)).boxed())
        })
    }))
    .await
}

/// 100 MiB up and 100 MiB down through one gateway connection, both streamed (chunked, no
/// Content-Length): every byte arrives, and the gateway's peak resident memory stays far
/// below the body size, so neither direction is buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_megabytes_each_way_in_bounded_memory() {
    let up = bulk_upstream().await;
    let gw = Gateway::start(&config(up, "", "max_body = \"unlimited\"\ntimeout = \"300s\""));
    let before = gw.peak_rss_kib();
    let total = 100 * MIB;

    let (mut sender, _conn) = h1::<StreamBody<_>>(gw.addr).await;
    let req = Request::post("/upload").header("host", "gateway.test").body(StreamBody::new(generated(total))).unwrap();
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(300), sender.send_request(req))
        .await
        .expect("upload took over 300 s")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let count = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(String::from_utf8_lossy(&count), total.to_string(), "bytes the upstream counted");
    let upload = started.elapsed();

    let (mut sender, _conn) = h1::<Empty<Bytes>>(gw.addr).await;
    let req = Request::get("/download?mib=100").header("host", "gateway.test").body(Empty::new()).unwrap();
    let started = Instant::now();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut received: u64 = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while let Some(frame) = tokio::time::timeout_at(deadline, body.frame()).await.expect("download took over 300 s") {
        received += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, total, "bytes the client received");
    let download = started.elapsed();

    let peak = gw.peak_rss_kib();
    println!(
        "gateway peak RSS: {peak} KiB ({:.1} MiB; {before} KiB at start); upload {upload:?}, download {download:?}",
        peak as f64 / 1024.0
    );
    assert!(peak < 64 * 1024, "gateway peak RSS {peak} KiB: a body was buffered");
}

/// Sends `GET / HTTP/1.1` and then one more header byte every 150 ms (a request that would take
/// over 10 s to finish) until the gateway closes the connection. Returns when it was cut off,
/// measured from connecting, and anything the gateway sent.
async fn slowloris(addr: SocketAddr) -> (Duration, Vec<u8>) {
    let trickle = b"Host: gateway.test\r\nX-Slow: 0123456789012345678901234567890123456789012345678\r\n\r\n";
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let (mut got, mut buf) = (Vec::new(), [0u8; 1024]);
    for &b in trickle {
        // Pacing: give the gateway 150 ms to close the connection, then send the next byte.
        match tokio::time::timeout(Duration::from_millis(150), s.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
        if s.write_all(&[b]).await.is_err() {
            return (started.elapsed(), got);
        }
    }
    panic!("never cut off: the whole request trickled in over {:?}", started.elapsed());
}

/// Polls (bounded) until the metric `series` reaches `want`.
async fn wait_for_metric(gw: &Gateway, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = metric(gw, series);
        if v >= want {
            return;
        }
        assert!(Instant::now() < deadline, "{series} is {v}, expected {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const HEADER_TIMEOUTS: &str = "tollgate_header_timeouts_total";

/// Slowloris: a client that trickles its request head a byte at a time is cut off once the
/// head has taken `header_read_timeout` (1 s), not when it stops sending, and the cut is
/// counted in `tollgate_header_timeouts_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_at_the_header_read_timeout() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, "header_read_timeout = \"1s\"\nidle_timeout = \"30s\"", ""));
    assert_eq!(metric(&gw, HEADER_TIMEOUTS), 0.0);
    let (took, got) = slowloris(gw.addr).await;
    assert!(took >= Duration::from_millis(950), "cut after {took:?}, before the header timeout");
    assert!(took < Duration::from_secs(4), "cut after {took:?}");
    assert!(!got.starts_with(b"HTTP/1.1 2"), "a trickled request was served: {}", String::from_utf8_lossy(&got));
    wait_for_metric(&gw, HEADER_TIMEOUTS, 1.0).await;
    // the gateway still serves well-behaved clients
    let r = tokio::task::block_in_place(|| get(gw.addr, "/ok", &[]));
    assert_eq!(r.status, 200);
}

/// A client that connects and never sends anything is closed at the header read timeout too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connection_is_cut_at_the_header_read_timeout() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, "header_read_timeout = \"1s\"\nidle_timeout = \"30s\"", ""));
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("a silent connection stayed open for 5 s")
        .unwrap_or(0);
    let took = started.elapsed();
    assert_eq!(n, 0, "unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n]));
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(4), "closed after {took:?}");
    wait_for_metric(&gw, HEADER_TIMEOUTS, 1.0).await;
}

/// The header read timeout does not apply between requests: a keep-alive connection that
/// idles for 1.5 s (header timeout 1 s, idle timeout 30 s) still serves its next request,
/// and no header timeout is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_outlives_the_header_timeout() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, "header_read_timeout = \"1s\"\nidle_timeout = \"30s\"", ""));
    let (mut sender, conn) = h1::<Empty<Bytes>>(gw.addr).await;
    assert_eq!(get_on(&mut sender, "/first").await.0, 200);
    // Deliberately idle for longer than the header timeout (the behaviour under test).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!conn.is_finished(), "the gateway closed an idle keep-alive connection at the header timeout");
    let (status, body) = get_on(&mut sender, "/second").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/second"), "{body}");
    assert_eq!(metric(&gw, HEADER_TIMEOUTS), 0.0);
}

/// `idle_timeout = "1s"`: a keep-alive connection in use every 300 ms stays open past 1 s,
/// and once it stops it is closed about 1 s after its last response (not a header timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_is_closed_at_the_idle_timeout() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, "idle_timeout = \"1s\"", ""));
    let (mut sender, conn) = h1::<Empty<Bytes>>(gw.addr).await;
    let busy = Instant::now();
    while busy.elapsed() < Duration::from_millis(2000) {
        assert_eq!(get_on(&mut sender, "/busy").await.0, 200, "closed while in use after {:?}", busy.elapsed());
        // Pacing: activity every 300 ms keeps the connection from being idle for 1 s.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(get_on(&mut sender, "/last").await.0, 200);
    let last = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), conn).await.expect("idle connection still open after 5 s").unwrap();
    let took = last.elapsed();
    assert!(took >= Duration::from_millis(800) && took < Duration::from_secs(3), "closed {took:?} after going idle");
    assert!(sender.is_closed());
    assert_eq!(metric(&gw, HEADER_TIMEOUTS), 0.0, "an idle close is not a header timeout");
}

/// A request head over `max_header_bytes = "8KiB"` gets 431 (one big header or many small
/// ones; HTTP/1.1 and HTTP/2); a 6 KiB head on the same gateway is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_head_gets_431() {
    let up = echo_upstream().await;
    let gw = Gateway::start(&config(up, "max_header_bytes = \"8KiB\"", ""));
    let small = "a".repeat(6 * 1024);
    let r = tokio::task::block_in_place(|| get(gw.addr, "/small", &[("X-Big", &small)]));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["headers"]["x-big"][0].as_str().map(str::len), Some(small.len()));

    let big = "b".repeat(10 * 1024);
    let r = tokio::task::block_in_place(|| get(gw.addr, "/big", &[("X-Big", &big)]));
    assert_eq!(r.status, 431, "{r:?}");
    // many small headers adding up past the limit count too
    let many: Vec<(String, String)> = (0..200).map(|i| (format!("X-H{i}"), "v".repeat(50))).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = tokio::task::block_in_place(|| get(gw.addr, "/many", &many));
    assert_eq!(r.status, 431, "{r:?}");
    assert_eq!(metric(&gw, r#"tollgate_requests_total{code="200",route="app"}"#), 1.0, "only /small was proxied");

    // HTTP/2 (prior knowledge): the same limit applies to the header list
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("http://gateway.test/h2-big").header("x-big", &big).body(Empty::<Bytes>::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), h2.send_request(req)).await.expect("no h2 response");
    assert_eq!(resp.unwrap().status(), 431);
    // a stream error only: the same HTTP/2 connection serves a request within the limit
    let req = Request::get("http://gateway.test/h2-small").header("x-big", &small).body(Empty::<Bytes>::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), h2.send_request(req)).await.expect("no h2 response");
    assert_eq!(resp.unwrap().status(), 200);
}

/// `max_connections = 2`: with one idle keep-alive connection and one waiting on a slow
/// upstream, a third connection is accepted by the kernel but not served; closing the idle
/// one lets the third through, and the slow one still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_extra_connections_back() {
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = release.clone();
    let up = upstream(Arc::new(move |req: Request<Incoming>| {
        let (arrived_tx, gate) = (arrived_tx.clone(), gate.clone());
        Box::pin(async move {
            if req.uri().path() == "/slow" {
                let _ = arrived_tx.send(());
                let _permit = gate.acquire().await.unwrap();
            }
            Response::new(full(format!("done {}", req.uri().path())))
        })
    }))
    .await;
    let gw =
        Gateway::start(&config(up, "max_connections = 2\nheader_read_timeout = \"30s\"\nidle_timeout = \"60s\"", ""));

    // connection 1: served, then idle
    let (mut idle, idle_conn) = h1::<Empty<Bytes>>(gw.addr).await;
    assert_eq!(get_on(&mut idle, "/fast").await, (StatusCode::OK, "done /fast".into()));
    // connection 2: mid-request, held by the slow upstream
    let (mut slow, _slow_conn) = h1::<Empty<Bytes>>(gw.addr).await;
    let slow_req = tokio::spawn(async move { get_on(&mut slow, "/slow").await });
    tokio::time::timeout(Duration::from_secs(5), arrived.recv()).await.expect("slow request never reached upstream");
    assert_eq!(metric(&gw, "tollgate_connections"), 2.0);

    // connection 3: the TCP connect succeeds (backlog), but no response comes
    let (mut third, _third_conn) = h1::<Empty<Bytes>>(gw.addr).await;
    let mut third_req = tokio::spawn(async move { get_on(&mut third, "/third").await });
    // A bounded negative check: nothing may arrive while both slots are taken.
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), &mut third_req).await.is_err(),
        "a third connection was served while max_connections = 2 were open"
    );
    assert_eq!(metric(&gw, "tollgate_connections"), 2.0);

    // closing the idle connection frees a slot for the third
    drop(idle);
    tokio::time::timeout(Duration::from_secs(5), idle_conn).await.expect("client connection did not close").unwrap();
    let third = tokio::time::timeout(Duration::from_secs(5), third_req)
        .await
        .expect("the third connection was not served after a slot freed")
        .unwrap();
    assert_eq!(third, (StatusCode::OK, "done /third".into()));

    release.add_permits(1);
    let slow = tokio::time::timeout(Duration::from_secs(5), slow_req).await.expect("slow request hung").unwrap();
    assert_eq!(slow, (StatusCode::OK, "done /slow".into()));
}
