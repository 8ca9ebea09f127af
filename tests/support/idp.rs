//! Harness for the real-IdP test bed in `tests/idp/` (panva's oidc-provider under node).
//!
//! Include it from an integration test with
//! ```ignore
//! #[path = "support/idp.rs"]
//! mod idp;
//! ```
//! then `let idp = idp::Idp::start(idp::IdpOptions::default());` and point the gateway at
//! `idp.issuer`. The process is stopped (SIGTERM, then SIGKILL) when the `Idp` is dropped.
//!
//! Only std and serde_json are used: the HTTP helpers speak plain HTTP/1.1 over a `TcpStream`
//! with `Connection: close`, which is all a loopback test IdP needs. They are blocking, so call
//! them from `#[test]` functions or via `tokio::task::spawn_blocking` inside async tests.
//!
//! Clients, keys, env variables and counter names are documented in `tests/idp/README.md`.
#![allow(dead_code)] // each test crate uses a different subset of this module

#[path = "http.rs"]
pub mod http;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long `Idp::start` waits for the `IDP_READY` line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `Idp::stop` waits after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of the IdP's stderr kept for panic messages.
const STDERR_TAIL: usize = 60;

/// The resource indicator the IdP accepts by default (JWT access tokens with this `aud`).
pub const API_RESOURCE: &str = "https://api.tollgate.test";

/// How to start the IdP. `IdpOptions::default()` is an ephemeral port with `keys/rsa1.json`.
#[derive(Debug, Clone, Default)]
pub struct IdpOptions {
    /// Port on 127.0.0.1; 0 picks a free one. Pass a previous `Idp::port` to restart in place.
    pub port: u16,
    /// `{"keys":[private JWKs]}` file (`IDP_JWKS_FILE`); `None` = `tests/idp/keys/rsa1.json`.
    pub jwks_file: Option<PathBuf>,
    /// Access-token lifetime in seconds (`IDP_AT_TTL`); `None` = 300.
    pub at_ttl: Option<u64>,
    /// Any other `IDP_*` variables, e.g. `IDP_EXTRA_CLIENTS` or `IDP_WEB_REDIRECT_URIS`.
    pub env: Vec<(String, String)>,
}

impl IdpOptions {
    /// Adds one environment variable for the IdP process.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// A running test IdP.
pub struct Idp {
    /// `http://127.0.0.1:PORT`, exactly as the provider puts it in `iss`.
    pub issuer: String,
    pub port: u16,
    /// `https://127.0.0.1:PORT` of the mTLS listener, when `IDP_MTLS_CERT_FILE` was given.
    pub mtls: Option<String>,
    child: Child,
    // Kept open so the server's stdin stays open; when this process dies without calling
    // `stop` the pipe closes and the server exits by itself (IDP_EXIT_ON_STDIN_EOF).
    stdin: Option<ChildStdin>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stopped: bool,
}

/// `tests/idp` inside this crate.
pub fn idp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("idp")
}

/// A file under `tests/idp/keys`, e.g. `key_file("rsa2.json")` or `key_file("rsa1.pem")`.
pub fn key_file(name: &str) -> PathBuf {
    idp_dir().join("keys").join(name)
}

/// The `kid` of the first key in a `{"keys":[...]}` file such as `key_file("rsa1.json")`.
pub fn kid_of(jwks_file: &Path) -> String {
    let text =
        std::fs::read_to_string(jwks_file).unwrap_or_else(|e| panic!("cannot read {}: {e}", jwks_file.display()));
    let jwks: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", jwks_file.display()));
    jwks["keys"][0]["kid"].as_str().unwrap_or_else(|| panic!("{} has no keys[0].kid", jwks_file.display())).to_owned()
}

/// Panics with install instructions unless node and the IdP's npm packages are present.
/// Never skips: a test bed that silently does not run hides every test that needs it.
fn check_prerequisites() {
    const HOW: &str = "install the test IdP with `cd tests/idp && npm ci` \
                       (needs Node.js >= 18 and npm), or run `bash tests/run.sh`";
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`node --version` failed ({}): {HOW}", out.status),
        Err(e) => panic!("Node.js (`node`) is not runnable ({e}): {HOW}"),
    }
    let module = idp_dir().join("node_modules").join("oidc-provider").join("package.json");
    if !module.exists() {
        panic!("{} is missing: {HOW}", module.display());
    }
}

impl Idp {
    /// Spawns `node tests/idp/server.mjs` and waits (bounded) for its `IDP_READY` line.
    pub fn start(opts: IdpOptions) -> Idp {
        check_prerequisites();

        let mut cmd = Command::new("node");
        cmd.arg(idp_dir().join("server.mjs"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("IDP_PORT", opts.port.to_string())
            .env("IDP_EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(file) = &opts.jwks_file {
            cmd.env("IDP_JWKS_FILE", file);
        }
        if let Some(ttl) = opts.at_ttl {
            cmd.env("IDP_AT_TTL", ttl.to_string());
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn node tests/idp/server.mjs: {e}"));

        // stderr: forwarded line by line with eprintln!, which the test harness captures (and
        // shows for failing tests), and the last lines kept for our own panic messages.
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&stderr_tail);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[idp] {line}");
                    if let Ok(mut tail) = tail.lock() {
                        if tail.len() == STDERR_TAIL {
                            tail.pop_front();
                        }
                        tail.push_back(line);
                    }
                }
            });
        }

        // stdout: every line goes through a channel; only the first IDP_READY matters, but the
        // thread keeps draining so the child can never block on a full pipe.
        let (tx, rx) = mpsc::channel::<String>();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }

        let mut idp = Idp {
            issuer: String::new(),
            port: 0,
            mtls: None,
            stdin: child.stdin.take(),
            child,
            stderr_tail,
            stopped: false,
        };

        let deadline = Instant::now() + READY_TIMEOUT;
        let mut other_stdout = Vec::new();
        let issuer = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => match line.strip_prefix("IDP_READY ") {
                    Some(json) => {
                        let ready: Value = serde_json::from_str(json)
                            .unwrap_or_else(|e| idp.fail(&format!("bad IDP_READY line {line:?}: {e}")));
                        idp.mtls = ready["mtls"].as_str().map(str::to_owned);
                        match ready["issuer"].as_str() {
                            Some(issuer) => break issuer.to_owned(),
                            None => idp.fail(&format!("IDP_READY without issuer: {line:?}")),
                        }
                    }
                    None => other_stdout.push(line),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    idp.fail(&format!("no IDP_READY line within {READY_TIMEOUT:?} (stdout so far: {other_stdout:?})"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting; give it a moment to be reaped.
                    std::thread::sleep(Duration::from_millis(200));
                    let status = idp.child.try_wait().ok().flatten();
                    idp.fail(&format!(
                        "the IdP exited before it was ready (status {status:?}, stdout {other_stdout:?})"
                    ))
                }
            }
        };
        idp.port = issuer
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| idp.fail(&format!("cannot read a port from issuer {issuer}")));
        idp.issuer = issuer;
        idp
    }

    /// Stops the process and panics with `msg` and the tail of its stderr.
    fn fail(&mut self, msg: &str) -> ! {
        self.stop();
        let tail =
            self.stderr_tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default();
        panic!("test IdP (node tests/idp/server.mjs): {msg}\n--- IdP stderr (last lines) ---\n{tail}");
    }

    /// `issuer + path`, e.g. `idp.url("/token")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL. Idempotent; also run on drop.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.stdin = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
    }

    // ---- discovery and keys --------------------------------------------------------------

    /// The discovery document (`/.well-known/openid-configuration`).
    pub fn discovery(&self) -> Value {
        self.get_json("/.well-known/openid-configuration")
    }

    /// The public JWKS served at `/jwks`.
    pub fn jwks(&self) -> Value {
        self.get_json("/jwks")
    }

    fn get_json(&self, path: &str) -> Value {
        let resp = http_get(&self.url(path));
        assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
        resp.json()
    }

    // ---- counters and fault injection (test-only endpoints) ------------------------------

    /// `GET /__test/counters`: requests per endpoint since start or the last reset,
    /// e.g. `{"token": 2, "jwks": 1, ".well-known/openid-configuration": 1}`.
    pub fn counters(&self) -> Value {
        self.get_json("/__test/counters")
    }

    /// Requests seen by one endpoint (a counters key such as `"jwks"`, `"token"`,
    /// `"introspection"`, `".well-known/openid-configuration"`); 0 when never called.
    pub fn count(&self, endpoint: &str) -> u64 {
        self.counters()[endpoint].as_u64().unwrap_or(0)
    }

    /// `POST /__test/reset`: zeroes every counter (delays and failures stay).
    pub fn reset_counters(&self) {
        self.test_post("/__test/reset");
    }

    /// Delays every request to `endpoint` by `ms` before it is handled; 0 clears.
    pub fn set_delay(&self, endpoint: &str, ms: u64) {
        self.test_post(&format!("/__test/delay?endpoint={}&ms={ms}", form_encode(endpoint)));
    }

    /// Answers every request to `endpoint` with `status` (400..=599) instead of handling it;
    /// 0 clears. Handy for "the issuer is down" tests without stopping the process.
    pub fn set_failure(&self, endpoint: &str, status: u16) {
        self.test_post(&format!("/__test/fail?endpoint={}&status={status}", form_encode(endpoint)));
    }

    fn test_post(&self, path: &str) {
        let resp = http_request("POST", &self.url(path), &[], Some(b""));
        assert_eq!(resp.status, 200, "POST {path}: {}", resp.text());
    }

    // ---- token endpoint ------------------------------------------------------------------

    /// POSTs a form to `/token`, with HTTP Basic client authentication when `basic` is given.
    /// Returns the status and the JSON body (errors included, e.g. `{"error":"invalid_target"}`).
    pub fn token_request(&self, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
        self.form_post("/token", form, basic)
    }

    /// A client-credentials grant with `client_secret_basic`. Panics unless the IdP answers 200;
    /// use `token_request` to test errors. `resource: Some(API_RESOURCE)` yields an RFC 9068
    /// JWT access token, `None` an opaque one (unless IDP_DEFAULT_RESOURCE is set).
    pub fn client_credentials_token(
        &self,
        client_id: &str,
        secret: &str,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Value {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        let (status, body) = self.token_request(&form, Some((client_id, secret)));
        assert_eq!(status, 200, "client_credentials for {client_id} failed: {body}");
        body
    }

    /// Shorthand: just the `access_token` of `client_credentials_token`.
    pub fn access_token(&self, client_id: &str, secret: &str, scope: Option<&str>, resource: Option<&str>) -> String {
        let body = self.client_credentials_token(client_id, secret, scope, resource);
        body["access_token"].as_str().unwrap_or_else(|| panic!("no access_token in {body}")).to_owned()
    }

    /// RFC 7662 introspection as client `client_id` (`gateway`/`gateway-secret` may introspect
    /// any token; other clients only their own).
    pub fn introspect(&self, client_id: &str, secret: &str, token: &str) -> Value {
        let (status, body) = self.form_post("/introspection", &[("token", token)], Some((client_id, secret)));
        assert_eq!(status, 200, "introspection failed: {body}");
        body
    }

    fn form_post(&self, path: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
        let body =
            form.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect::<Vec<_>>().join("&");
        let mut headers = vec![("Content-Type".to_owned(), "application/x-www-form-urlencoded".to_owned())];
        if let Some((id, secret)) = basic {
            // RFC 6749 §2.3.1: id and secret are form-encoded before being joined and base64'd.
            let creds = format!("{}:{}", form_encode(id), form_encode(secret));
            headers.push(("Authorization".to_owned(), format!("Basic {}", base64_encode(creds.as_bytes()))));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let resp = http_request("POST", &self.url(path), &headers, Some(body.as_bytes()));
        let json = serde_json::from_slice(&resp.bytes).unwrap_or_else(|_| Value::String(resp.text()));
        (resp.status, json)
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- HTTP (the suite's one client, support/http.rs) -----------------------------------------

/// A response read by `http_request`.
pub use http::Response as HttpResponse;

/// `GET url` (plain `http://host:port/path` only).
pub fn http_get(url: &str) -> HttpResponse {
    http::request("GET", url, &[], None)
}

/// One request over a fresh connection with `Connection: close`; the response is read to EOF.
/// Panics on I/O errors (with the URL), never on HTTP error statuses.
pub fn http_request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> HttpResponse {
    http::request(method, url, headers, body)
}

// ---- encodings -------------------------------------------------------------------------------

/// `application/x-www-form-urlencoded` encoding of one name or value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (for HTTP Basic credentials).
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64url (RFC 4648 §5), with or without padding; `None` on invalid input.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover sextet cannot encode a byte: the input was truncated.
    (bits < 6).then_some(out)
}

/// Splits a compact JWS into its decoded header and payload (the signature is not checked).
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS (expected 3 parts): {token}");
    let decode = |part: &str, what: &str| -> Value {
        let bytes = base64url_decode(part).unwrap_or_else(|| panic!("JWT {what} is not base64url: {part}"));
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("JWT {what} is not JSON ({e}): {part}"))
    };
    (decode(parts[0], "header"), decode(parts[1], "payload"))
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_encode(b"m2m:m2m-secret"), "bTJtOm0ybS1zZWNyZXQ=");
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64url_decode("eyJhbGciOiJSUzI1NiJ9").as_deref(), Some(&br#"{"alg":"RS256"}"#[..]));
        assert_eq!(base64url_decode("_-8").as_deref(), Some(&[0xff, 0xef][..]));
        assert_eq!(base64url_decode("YWI=").as_deref(), Some(&b"ab"[..]));
        assert_eq!(base64url_decode("a"), None);
        assert_eq!(base64url_decode("a+b"), None);
    }

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("api:read api:write"), "api%3Aread+api%3Awrite");
    }
}
