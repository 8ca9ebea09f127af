//! The Kubernetes sidecar shape (deploy/kubernetes/sidecar), for real, in a network namespace
//! standing in for the Pod: inside it, a legacy app bound to 127.0.0.1:3000, a static issuer
//! (JWKS) on 127.0.0.1:3001 and tollgate on 0.0.0.0:8080 (admin 0.0.0.0:9090), with a veth pair
//! to this test's namespace standing in for the Pod network. From outside the "Pod":
//!
//! - the app's port on the Pod address is closed, although the app answers inside the Pod;
//! - tollgate's port answers 401 without a token or with a bad one, and 200 with a valid one,
//!   with the app's response and the identity tollgate adds (spoofed copies removed);
//! - the admin listener answers /healthz, /readyz and /metrics, as the kubelet's probes and
//!   Prometheus see it.
//!
//! Tokens are minted with the test IdP's key (tests/idp/keys/rsa1.pem) and checked against its
//! public half, served as a static JWKS inside the namespace: no node, no IdP process.
//!
//! Needs root and iproute2 (`ip netns`, veth). Without them the test FAILS, saying why: it never
//! passes without having run. The namespace, the veth pair and every process are removed when
//! the test ends, also when it fails.
//!
//! Addresses: a /30 from 10.200.0.0/16 assigned to this test's own veth pair; the traffic never
//! leaves the two namespaces.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{parse_response, RawResponse, TempDir};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const APP_PORT: u16 = 3000;
const ISSUER_PORT: u16 = 3001;
const GATEWAY_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 9090;
const AUDIENCE: &str = "https://legacy-app.tollgate.test";
const NETNS_PREFIX: &str = "tgsc-";

/// The "Pod": a network namespace with a veth pair to ours, and the processes started in it.
/// Dropping it kills the processes, then deletes the namespace (which removes the veth pair).
struct Pod {
    name: String,
    host_if: String,
    pod_ip: Ipv4Addr,
    procs: Vec<(String, Child)>,
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("cannot run `ip` (install iproute2): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`ip {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Deletes namespaces this test left behind in runs that were killed (named tgsc-PID, PID gone).
fn remove_stale_namespaces() {
    let Ok(list) = ip(&["netns", "list"]) else { return };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(pid) = name.strip_prefix(NETNS_PREFIX) {
            if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
}

impl Pod {
    fn create() -> Pod {
        let pid = std::process::id();
        let name = format!("{NETNS_PREFIX}{pid}");
        remove_stale_namespaces();
        if let Err(e) = ip(&["netns", "add", &name]) {
            panic!(
                "sidecar_netns cannot create a network namespace, so the sidecar test did not run: {e}\n\
                 It needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2 (apt-get install iproute2)."
            );
        }
        // From here on, Drop cleans up.
        let mut pod =
            Pod { name: name.clone(), host_if: format!("tgh{pid}"), pod_ip: Ipv4Addr::UNSPECIFIED, procs: Vec::new() };
        let pod_if = format!("tgp{pid}");
        // A /30 in 10.200.0.0/16 that no interface here uses yet.
        let used = ip(&["-o", "-4", "addr", "show"]).unwrap_or_default();
        let third = (0..256u32)
            .map(|i| (pid + i) % 256)
            .find(|n| !used.contains(&format!("10.200.{n}.")))
            .expect("no free 10.200.x.0/30");
        let host_cidr = format!("10.200.{third}.1/30");
        let pod_cidr = format!("10.200.{third}.2/30");
        pod.pod_ip = Ipv4Addr::new(10, 200, third as u8, 2);
        let steps: Vec<Vec<&str>> = vec![
            vec!["link", "add", &pod.host_if, "type", "veth", "peer", "name", &pod_if],
            vec!["link", "set", &pod_if, "netns", &name],
            vec!["addr", "add", &host_cidr, "dev", &pod.host_if],
            vec!["link", "set", &pod.host_if, "up"],
            vec!["netns", "exec", &name, "ip", "addr", "add", &pod_cidr, "dev", &pod_if],
            vec!["netns", "exec", &name, "ip", "link", "set", &pod_if, "up"],
            vec!["netns", "exec", &name, "ip", "link", "set", "lo", "up"],
        ];
        for step in steps {
            if let Err(e) = ip(&step) {
                panic!("sidecar_netns cannot set up the namespace's network, so the test did not run: {e}");
            }
        }
        pod
    }

    /// Starts `program args` inside the namespace (`ip netns exec` execs it: same PID).
    fn spawn(&mut self, what: &str, program: &str, args: &[&str], log: &Path) {
        let log_file = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        self.procs.push((what.to_string(), child));
    }

    /// Runs a command inside the namespace and returns (success, stdout + stderr).
    fn exec(&self, program: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip").args(["netns", "exec", &self.name, program]).args(args).output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    }

    /// Panics (with the logs) if a process started in the namespace has exited.
    fn assert_running(&mut self, logs: &Path) {
        for (what, child) in &mut self.procs {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("{what} exited ({status}); logs:\n{}", read_logs(logs));
            }
        }
    }

    fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.pod_ip), port)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for (_, child) in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = ip(&["netns", "del", &self.name]);
        // Gone with the namespace's end of the pair; removed explicitly in case it is not.
        let _ = ip(&["link", "del", &self.host_if]);
    }
}

fn read_logs(dir: &Path) -> String {
    let mut out = String::new();
    for f in ["app.log", "issuer.log", "tollgate.log"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        out.push_str(&format!(
            "--- {f}\n{}\n",
            text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    out
}

/// `GET path` with headers on a new connection; an error instead of a panic when refused.
fn try_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<RawResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: app.tollgate.test\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(parse_response(&buf))
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    try_get(addr, path, headers).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn keys_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/keys")
}

/// An RS256 access token signed with the test IdP's rsa1 key.
fn mint(issuer: &str, audience: &str, sub: &str) -> String {
    let pem = std::fs::read(keys_dir().join("rsa1.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("test-rsa-1".into());
    let claims = json!({
        "iss": issuer, "aud": audience, "sub": sub, "email": format!("{sub}@example.com"),
        "iat": now(), "exp": now() + 300,
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// The public half of tests/idp/keys/rsa1.json as a JWKS document.
fn public_jwks() -> String {
    let private: Value = serde_json::from_str(&std::fs::read_to_string(keys_dir().join("rsa1.json")).unwrap()).unwrap();
    let k = &private["keys"][0];
    json!({"keys": [{"kty": k["kty"], "n": k["n"], "e": k["e"], "kid": k["kid"], "alg": "RS256", "use": "sig"}]})
        .to_string()
}

/// The legacy app: answers every GET with JSON naming itself and the headers it received.
const APP_PY: &str = r#"
import http.server, json, sys
class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"app": "legacy-app", "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        sys.stderr.write("app: " + (fmt % args) + "\n")
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), App).serve_forever()
"#;

fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap_or_else(|e| panic!("python3 is required for the app and issuer stand-ins: {e}"));
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success() && !path.is_empty(), "python3 does not run: {}", String::from_utf8_lossy(&out.stderr));
    path
}

#[test]
fn sidecar_in_a_network_namespace_exposes_only_tollgate() {
    let tmp = TempDir::new("sidecar-netns");
    let python = python();
    let issuer = format!("http://127.0.0.1:{ISSUER_PORT}");

    // Files for the "Pod".
    let www = tmp.path("issuer");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("jwks.json"), public_jwks()).unwrap();
    std::fs::write(tmp.path("app.py"), APP_PY).unwrap();
    let config = format!(
        r#"
[server]
listen = "0.0.0.0:{GATEWAY_PORT}"
workers = 1
drain_timeout = "1s"

[admin]
listen = "0.0.0.0:{ADMIN_PORT}"

[log]
format = "json"

[[issuer]]
name = "corp"
url = "{issuer}"
jwks_uri = "{issuer}/jwks.json"
audiences = ["{AUDIENCE}"]

[[route]]
auth = "bearer"
name = "app"
path = "/"
upstream = "http://127.0.0.1:{APP_PORT}"
"#
    );
    let cfg = tmp.path("tollgate.toml");
    std::fs::write(&cfg, config).unwrap();

    let mut pod = Pod::create();
    let app_port = APP_PORT.to_string();
    let issuer_port = ISSUER_PORT.to_string();
    pod.spawn("app", &python, &[tmp.path("app.py").to_str().unwrap(), &app_port], &tmp.path("app.log"));
    pod.spawn(
        "issuer",
        &python,
        &["-m", "http.server", &issuer_port, "--bind", "127.0.0.1", "--directory", www.to_str().unwrap()],
        &tmp.path("issuer.log"),
    );
    pod.spawn("tollgate", common::bin(), &["run", "--config", cfg.to_str().unwrap()], &tmp.path("tollgate.log"));

    // Ready as the kubelet sees it: /readyz on the Pod address (listeners bound, keys loaded).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        pod.assert_running(&tmp.0);
        match try_get(pod.addr(ADMIN_PORT), "/readyz", &[]) {
            Ok(r) if r.status == 200 => break,
            _ if Instant::now() > deadline => {
                panic!("tollgate not ready within 30s; logs:\n{}", read_logs(&tmp.0))
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    assert_eq!(get(pod.addr(ADMIN_PORT), "/healthz", &[]).status, 200);

    // The app serves inside the Pod, on loopback...
    let probe = format!(
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{APP_PORT}/inside', timeout=5).read().decode())"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ok, out) = pod.exec(&python, &["-c", &probe]);
        if ok {
            assert!(out.contains("\"app\": \"legacy-app\""), "{out}");
            break;
        }
        pod.assert_running(&tmp.0);
        assert!(Instant::now() < deadline, "the app did not answer inside the namespace: {out}\n{}", read_logs(&tmp.0));
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...and is unreachable from outside it.
    match TcpStream::connect_timeout(&pod.addr(APP_PORT), Duration::from_secs(2)) {
        Err(e) => assert!(
            matches!(e.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut),
            "unexpected error reaching the app's port: {e}"
        ),
        Ok(_) => panic!("the app's port {} is reachable from outside the Pod", pod.addr(APP_PORT)),
    }

    // tollgate's port: no token, a bad one, a token for another audience: 401.
    let gw = pod.addr(GATEWAY_PORT);
    let r = get(gw, "/orders", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{r:?}");
    assert!(!r.body.contains("legacy-app"), "the app answered without a token: {r:?}");
    let bad = format!("{}x", mint(&issuer, AUDIENCE, "alice"));
    let r = get(gw, "/orders", &[("Authorization", &format!("Bearer {bad}"))]);
    assert_eq!(r.status, 401, "bad signature: {r:?}");
    let other = mint(&issuer, "https://another-api.tollgate.test", "alice");
    let r = get(gw, "/orders", &[("Authorization", &format!("Bearer {other}"))]);
    assert_eq!(r.status, 401, "wrong audience: {r:?}");

    // A valid token: 200 with the app's answer and the identity tollgate adds; a spoofed
    // X-Forwarded-User from the caller does not reach the app.
    let token = mint(&issuer, AUDIENCE, "alice");
    let r = get(gw, "/orders?id=7", &[("Authorization", &format!("Bearer {token}")), ("X-Forwarded-User", "mallory")]);
    assert_eq!(r.status, 200, "{r:?}\n{}", read_logs(&tmp.0));
    let seen = r.json();
    assert_eq!(seen["app"], "legacy-app");
    assert_eq!(seen["path"], "/orders?id=7");
    assert_eq!(seen["headers"]["x-forwarded-user"], "alice", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-email"], "alice@example.com", "{seen}");

    // Metrics as Prometheus scrapes them on the Pod address.
    let m = get(pod.addr(ADMIN_PORT), "/metrics", &[]);
    assert_eq!(m.status, 200);
    assert!(
        m.body.lines().any(|l| l.starts_with("tollgate_requests_total")
            && l.contains("route=\"app\"")
            && l.contains("code=\"200\"")),
        "{}",
        m.body
    );
}
