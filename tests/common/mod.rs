//! Shared integration-test harness: the real `tollgate` binary started as a child process on
//! ephemeral loopback ports, in-process upstream servers, and small raw HTTP clients.
#![allow(dead_code)]

#[path = "../support/http.rs"]
pub mod http;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A private temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tollgate-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tollgate")
}

/// The server and admin sections every test config starts with: loopback, ephemeral ports,
/// JSON logs so the harness can read the bound addresses.
pub const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"
workers = 2

[admin]
listen = "127.0.0.1:0"

[log]
format = "json"
level = "info"
"#;

/// A running gateway child process.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
    pub dir: TempDir,
}

impl Gateway {
    /// Starts `tollgate run` with `config` (TOML) and waits until it reports its addresses.
    pub fn start(config: &str) -> Gateway {
        Gateway::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_limited(config, env, None)
    }

    /// Starts the gateway, with its open-file limit lowered to `nofile` when given (through the
    /// shell's `ulimit`, so the harness itself keeps its own limit).
    pub fn start_limited(config: &str, env: &[(&str, &str)], nofile: Option<u32>) -> Gateway {
        let dir = TempDir::new("gw");
        let file = dir.path("tollgate.toml");
        std::fs::write(&file, config).unwrap();
        let mut cmd = match nofile {
            None => Command::new(bin()),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c").arg(format!("ulimit -n {n} && exec \"$0\" \"$@\"")).arg(bin());
                sh
            }
        };
        cmd.arg("run").arg("--config").arg(&file).stdout(Stdio::null()).stderr(Stdio::piped()).env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tollgate");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("\"listening\"") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("tollgate did not report listening; logs:\n{}", logs.lock().unwrap().join("\n"));
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let addr = v["addr"].as_str().unwrap().parse().unwrap();
        let admin = v["admin_addr"].as_str().unwrap().parse().unwrap();
        Gateway { child, addr, admin, logs, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap().success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits (bounded) for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits (bounded) until the log holds `needle`: lines reach the test through a reader
    /// thread, so one written just before a response may not be here yet when it arrives.
    pub fn wait_log(&self, needle: &str) {
        let what = format!("a log line with {needle:?}");
        wait_until(&what, Duration::from_secs(5), || {
            self.logs.lock().unwrap().iter().any(|l| l.contains(needle)).then_some(())
        });
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tollgate check --config FILE` and returns (exit code, stdout + stderr).
pub fn check(file: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(bin());
    cmd.arg("check").arg("--config").arg(file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

pub type Handler =
    Arc<dyn Fn(Request<Incoming>) -> futures_util::future::BoxFuture<'static, Response<UpBody>> + Send + Sync>;
pub type UpBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

pub fn full(body: impl Into<Bytes>) -> UpBody {
    Full::new(body.into()).map_err(|never| match never {}).boxed()
}

/// Starts an HTTP/1.1 upstream on 127.0.0.1:0 in the current runtime (with upgrades).
pub async fn upstream(handler: Handler) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// An upstream that answers with JSON describing the request it received: method, URI,
/// version, headers (lower-case name → values) and the body's length.
pub async fn echo_upstream() -> SocketAddr {
    upstream(Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (k, v) in &parts.headers {
                headers.entry(k.as_str().to_string()).or_default().push(String::from_utf8_lossy(v.as_bytes()).into());
            }
            let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let json = serde_json::json!({
                "method": parts.method.as_str(),
                "uri": parts.uri.to_string(),
                "version": format!("{:?}", parts.version),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
                "body_len": body.len(),
            });
            Response::builder()
                .header("content-type", "application/json")
                .header("connection", "x-internal")
                .header("x-internal", "secret")
                .body(full(json.to_string()))
                .unwrap()
        })
    }))
    .await
}

/// A response read by [`raw`], [`get`] or [`send`]: the suite's one response type.
pub use http::Response as RawResponse;

/// An `[[issuer]]` table named `name` for `url` accepting tokens for `audience`; more keys of the
/// same table may follow it directly.
pub fn issuer_toml(name: &str, url: &str, audience: &str) -> String {
    format!("\n[[issuer]]\nname = \"{name}\"\nurl = \"{url}\"\naudiences = [\"{audience}\"]\n")
}

/// Sends raw request bytes on a new connection (`Connection: close` expected in them) and
/// reads the whole response. Used where a well-behaved client library would refuse the request.
pub fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    http::raw(addr, request)
}

/// Parses a response read by hand (panics with the bytes when it is not one).
pub fn parse_response(buf: &[u8]) -> RawResponse {
    http::parse(buf).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(buf)))
}

/// `GET path` with extra header lines, `Connection: close`.
pub fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes())
}

/// A request with a body and `Content-Length`.
pub fn send(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> RawResponse {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(addr, &req)
}

/// Fetches an admin endpoint.
pub fn admin(gw: &Gateway, path: &str) -> RawResponse {
    get(gw.admin, path, &[])
}

/// A free loopback port with nothing listening, for a server the test starts on it (or for a
/// peer that must refuse connections). See [`free_port`].
pub fn dead_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A loopback port nothing listens on, that nothing else will take before the test's server
/// binds it. A port from `bind(0)` does not have that: it is in the kernel's ephemeral range,
/// where the next `bind(0)` elsewhere (the test provider, an in-process upstream) or the local
/// end of an outgoing connection may land on it once released (seen: tollgate refused to start
/// on a port the provider had taken in between). So ports come from below that range, which the
/// kernel never hands out itself, once each per process (one counter), from a place that
/// differs between processes (test binaries, other checkouts' runs), and only when binding
/// them succeeds now.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    // The ephemeral range's first port ("32768	60999" by default).
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32_768)
        .min(65_536);
    let span = high.saturating_sub(LOW);
    if span < 1_000 {
        // A machine whose ephemeral range starts low: the kernel's choice is all there is.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        return l.local_addr().unwrap().port();
    }
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{high}");
}

/// An echo upstream (see [`echo_upstream`]) on its own small runtime, so tests can stay plain
/// blocking `#[test]`s.
pub struct Echo {
    pub addr: SocketAddr,
    _rt: tokio::runtime::Runtime,
}

pub fn echo() -> Echo {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let addr = rt.block_on(echo_upstream());
    Echo { addr, _rt: rt }
}

/// Waits (bounded) until the gateway's `/readyz` answers 200: every issuer discovered and
/// its keys loaded. Fails with the gateway's logs.
pub fn wait_ready(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while admin(gw, "/readyz").status != 200 {
        assert!(Instant::now() < deadline, "gateway not ready after 30 s; logs:\n{}", gw.logs());
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Polls `f` every 25 ms until it returns `Some`, failing after `limit`.
pub fn wait_until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The sum of the samples of metric `name` on the gateway's admin listener whose labels include
/// every pair in `labels` (0 when there is none).
pub fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_in(&admin(gw, "/metrics").body, name, labels)
}

/// [`metric`] over a Prometheus text exposition already fetched.
pub fn metric_in(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (metric_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric_name != name {
            continue;
        }
        let present: Vec<(&str, &str)> = label_text
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        if labels.iter().all(|want| present.contains(want)) {
            total += value.parse::<f64>().unwrap_or_else(|_| panic!("bad sample {line:?}"));
        }
    }
    total
}
