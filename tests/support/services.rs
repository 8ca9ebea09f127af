//! Real helper services for integration tests: Debian's `redis-server` and `nginx`, each started
//! as a child process on a free 127.0.0.1 port with its own temporary directory, waited for with a
//! deadline (never a fixed sleep), and killed (by its own handle) when dropped.
//!
//! ```ignore
//! #[path = "support/services.rs"]
//! mod services;
//! let redis = services::Redis::start();
//! let url = redis.url();                       // redis://127.0.0.1:PORT
//! assert_eq!(redis.cmd(&["PING"]), services::Resp::Simple("PONG".into()));
//! let nginx = services::Nginx::start("server { listen {{LISTEN}}; location / { return 204; } }");
//! ```
//!
//! Only std is used. `tests/run.sh` installs both packages; when a binary is missing the helpers
//! wait a bounded time (an install may be running) and then panic with instructions — they never
//! skip, so a test that needs them cannot silently pass without them.
#![allow(dead_code)] // each test crate uses a different subset

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long to wait for a service to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long to wait for a binary that is being installed.
const BINARY_TIMEOUT: Duration = Duration::from_secs(180);
/// Attempts with a fresh port when a service exits at start (another process took the port).
const ATTEMPTS: usize = 3;
const TAIL: usize = 80;

/// Finds `name` on PATH or in the sbin directories (nginx lives in /usr/sbin, which a
/// non-root PATH often lacks), waiting up to [`BINARY_TIMEOUT`] for an installation in progress.
pub fn find_binary(name: &str, package: &str) -> PathBuf {
    let deadline = Instant::now() + BINARY_TIMEOUT;
    loop {
        let mut dirs: Vec<PathBuf> =
            std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
        dirs.extend(["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from));
        if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return found;
        }
        if Instant::now() >= deadline {
            panic!(
                "`{name}` is not installed (looked on PATH and in /usr/sbin): `apt-get install {package}` \
                 or run `bash tests/run.sh`"
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A free loopback port for a service (the harness's one allocator; see there).
pub use crate::common::free_port;

/// A private directory under the system temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tollgate-svc-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One child process with its output collected (so it can never block on a full pipe) and
/// kept for panic messages.
struct Proc {
    name: &'static str,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL)));
        let outs: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ];
        for out in outs {
            let tail = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    if t.len() == TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            });
        }
        Proc { name, child, tail }
    }

    fn output(&self) -> String {
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Polls `ready` until it is true; `Err(output)` when the process exits first, panics at
    /// the deadline.
    fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready() {
                return Ok(());
            }
            if self.exited() {
                // Let the reader threads drain what the process said before it died.
                let drained = Instant::now() + Duration::from_millis(500);
                while Instant::now() < drained && self.output().is_empty() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                return Err(self.output());
            }
            if Instant::now() >= deadline {
                let out = self.output();
                self.kill();
                panic!("{} was not ready within {READY_TIMEOUT:?}; output:\n{out}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- Redis ---------------------------------------------------------------------------------

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The members of an array reply as strings (empty for anything else).
    pub fn strings(&self) -> Vec<String> {
        match self {
            Resp::Array(Some(items)) => items
                .iter()
                .filter_map(|i| match i {
                    Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
                    Resp::Simple(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A private, non-persistent redis-server on a free loopback port.
pub struct Redis {
    pub port: u16,
    proc: Proc,
    _dir: Dir,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// [`Redis::start`] with more arguments, like `["--replicaof", "127.0.0.1", "PORT"]` or TLS
    /// settings (the plain port stays, for [`Redis::cmd`] and the readiness check).
    pub fn start_with(extra: &[String]) -> Redis {
        let bin = find_binary("redis-server", "redis-server");
        let dir = Dir::new("redis");
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let port = free_port();
            let mut cmd = Command::new(&bin);
            cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--protected-mode", "yes", "--daemonize", "no", "--logfile", ""])
                .arg("--dir")
                .arg(&dir.0)
                .args(extra);
            let mut proc = Proc::spawn("redis-server", cmd);
            let ready = proc.wait_ready(|| ping(port));
            match ready {
                Ok(()) => return Redis { port, proc, _dir: dir },
                Err(out) => last = out,
            }
        }
        panic!("redis-server did not start after {ATTEMPTS} attempts; last output:\n{last}");
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Runs one command on a fresh connection; panics on I/O errors.
    pub fn cmd(&self, args: &[&str]) -> Resp {
        let mut s = TcpStream::connect(self.addr()).unwrap_or_else(|e| panic!("redis connect: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&encode(args)).unwrap();
        read_resp(&mut BufReader::new(s)).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Keys matching `pattern` (KEYS; fine for a test database).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.cmd(&["KEYS", pattern]).strings()
    }

    /// The server's recent output (for assertion messages).
    pub fn output(&self) -> String {
        self.proc.output()
    }
}

/// A Redis Sentinel (`redis-server sentinel.conf --sentinel`) on a free loopback port,
/// monitoring `master` at 127.0.0.1:`primary_port` with quorum `quorum`. `extra` is appended
/// to its configuration (timeouts, TLS). Sentinel rewrites its file, so each has its own.
pub struct Sentinel {
    pub port: u16,
    proc: Proc,
    _dir: Dir,
}

impl Sentinel {
    pub fn start(master: &str, primary_port: u16, quorum: u32, extra: &str) -> Sentinel {
        let bin = find_binary("redis-server", "redis-server");
        let dir = Dir::new("sentinel");
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let port = free_port();
            let conf = dir.0.join("sentinel.conf");
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nlogfile \"\"\ndir {}\n\
                 sentinel monitor {master} 127.0.0.1 {primary_port} {quorum}\n{extra}\n",
                dir.0.display()
            );
            std::fs::write(&conf, text).unwrap();
            let mut cmd = Command::new(&bin);
            cmd.arg(&conf).arg("--sentinel");
            let mut proc = Proc::spawn("redis-sentinel", cmd);
            match proc.wait_ready(|| ping(port)) {
                Ok(()) => return Sentinel { port, proc, _dir: dir },
                Err(out) => last = out,
            }
        }
        panic!("redis sentinel did not start after {ATTEMPTS} attempts; last output:\n{last}");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Runs one command on a fresh connection; panics on I/O errors.
    pub fn cmd(&self, args: &[&str]) -> Resp {
        let mut s = TcpStream::connect(self.addr()).unwrap_or_else(|e| panic!("sentinel connect: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&encode(args)).unwrap();
        read_resp(&mut BufReader::new(s)).unwrap_or_else(|e| panic!("sentinel {args:?}: {e}"))
    }

    /// The primary's port as this sentinel names it (`SENTINEL get-master-addr-by-name`).
    pub fn primary_port(&self, master: &str) -> Option<u16> {
        self.cmd(&["SENTINEL", "get-master-addr-by-name", master]).strings().get(1)?.parse().ok()
    }

    /// How many other sentinels and replicas this one knows for `master`, not counting ones it
    /// thinks are down.
    pub fn known(&self, master: &str) -> (usize, usize) {
        let up = |r: Resp| match r {
            Resp::Array(Some(items)) => items
                .iter()
                .filter(|i| {
                    let fields = i.strings();
                    let flags = fields.iter().position(|f| f == "flags").and_then(|p| fields.get(p + 1));
                    flags.is_some_and(|f| !f.contains("down") && !f.contains("disconnected"))
                })
                .count(),
            _ => 0,
        };
        (up(self.cmd(&["SENTINEL", "sentinels", master])), up(self.cmd(&["SENTINEL", "replicas", master])))
    }

    pub fn output(&self) -> String {
        self.proc.output()
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(&encode(&["PING"])).is_err() {
        return false;
    }
    matches!(read_resp(&mut BufReader::new(s)), Ok(Resp::Simple(p)) if p == "PONG")
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_resp(r: &mut impl BufRead) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(bad("connection closed"));
    }
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at(line.len().min(1));
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad("bad integer"));
    Ok(match kind {
        "+" => Resp::Simple(rest.into()),
        "-" => Resp::Error(rest.into()),
        ":" => Resp::Int(int(rest)?),
        "$" => match int(rest)? {
            n if n < 0 => Resp::Bulk(None),
            n => {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(n as usize);
                Resp::Bulk(Some(buf))
            }
        },
        "*" => match int(rest)? {
            n if n < 0 => Resp::Array(None),
            n => Resp::Array(Some((0..n).map(|_| read_resp(r)).collect::<Result<_, _>>()?)),
        },
        _ => return Err(bad("unknown reply type")),
    })
}

// ---- nginx ---------------------------------------------------------------------------------

/// A foreground, single-process nginx with its own prefix, temp directories and pid file.
pub struct Nginx {
    pub port: u16,
    proc: Proc,
    dir: Dir,
}

impl Nginx {
    /// Starts nginx with `server_block` as the body of its `http {}` block. `{{LISTEN}}` in it
    /// is replaced by `127.0.0.1:PORT` (a free port). Panics with nginx's output when the
    /// configuration is refused or it does not listen in time.
    pub fn start(server_block: &str) -> Nginx {
        let bin = find_binary("nginx", "nginx");
        let dir = Dir::new("nginx");
        for sub in ["logs", "client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.0.join(sub)).unwrap();
        }
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let port = free_port();
            let conf = dir.0.join("nginx.conf");
            std::fs::write(&conf, config(&dir.0, &server_block.replace("{{LISTEN}}", &format!("127.0.0.1:{port}"))))
                .unwrap();
            let mut cmd = Command::new(&bin);
            // -e: the error log before the configuration is read (the default under /var/log may
            // not be writable); -p: the prefix for every relative path.
            cmd.arg("-e").arg("stderr").arg("-p").arg(&dir.0).arg("-c").arg(&conf);
            let mut proc = Proc::spawn("nginx", cmd);
            match proc.wait_ready(|| {
                TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200))
                    .is_ok()
            }) {
                Ok(()) => return Nginx { port, proc, dir },
                Err(out) if out.contains("Address already in use") => last = out,
                Err(out) => panic!(
                    "nginx exited at start; output:\n{out}\nconfig:\n{}",
                    std::fs::read_to_string(&conf).unwrap_or_default()
                ),
            }
        }
        panic!("nginx did not start after {ATTEMPTS} attempts; last output:\n{last}");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// nginx's recent error-log output (for assertion messages).
    pub fn output(&self) -> String {
        self.proc.output()
    }

    pub fn prefix(&self) -> &Path {
        &self.dir.0
    }
}

fn config(prefix: &Path, http_body: &str) -> String {
    let p = prefix.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {p}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
{http_body}
}}
"#
    )
}

/// The nginx block of the README's "CORS behind a proxy" (run as written by tests/forward_auth.rs
/// and tests/cors_browser.rs), with tollgate's and the app's addresses put in.
pub fn readme_cors_snippet(gw: std::net::SocketAddr, app: std::net::SocketAddr) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let at = readme.find("**CORS behind a proxy.**").expect("README: the CORS behind a proxy paragraph");
    let block = &readme[at..];
    let start = block.find("```nginx\n").expect("README: its nginx snippet") + "```nginx\n".len();
    let end = start + block[start..].find("```").unwrap();
    let snippet = block[start..end]
        .replace("http://tollgate:8080", &format!("http://{gw}"))
        .replace("http://app:3000", &format!("http://{app}"));
    assert!(snippet.contains(&gw.to_string()) && snippet.contains(&app.to_string()), "{snippet}");
    snippet
}
