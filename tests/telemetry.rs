//! OpenTelemetry traces through the real binary, exported to a real OTLP/HTTP receiver
//! (`tests/py/otlp_receiver.py`, decoding with the `opentelemetry-proto` protobufs): parentage
//! from client through tollgate to the upstream, spans for identity-provider calls against the
//! real provider (`tests/idp`), sampling, what never goes into the exported data, the trace id in
//! the access log, a receiver that is down or stalled, and the flush at shutdown.
//!
//! Needs tests/py/.venv (tests/run.sh creates it) and, for the provider, node with `tests/idp`
//! installed.

mod common;
#[path = "support/idp.rs"]
mod idp;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{dead_port, echo, get, metric, wait_ready, wait_until, Gateway, RawResponse, TempDir, BASE};
use idp::{Idp, IdpOptions, API_RESOURCE};
use serde_json::Value;

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// OTLP span kinds.
const SERVER: u64 = 2;
const CLIENT: u64 = 3;

// ---- the receiver -----------------------------------------------------------------------------

/// `tests/py/otlp_receiver.py` on a free loopback port, stopped on drop.
struct Receiver {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::start_with(&[])
    }

    fn start_with(args: &[&str]) -> Receiver {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = root.join("tests/py/.venv/bin/python");
        assert!(python.exists(), "{} is missing: run `bash tests/run.sh --lib --no-run` once", python.display());
        let dir = TempDir::new("otlp");
        let port_file = dir.path("port");
        let child = Command::new(python)
            .arg(root.join("tests/py/otlp_receiver.py"))
            .arg(&port_file)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the OTLP receiver");
        let port = wait_until("the OTLP receiver's port file", Duration::from_secs(20), || {
            std::fs::read_to_string(&port_file).ok().and_then(|s| s.trim().parse().ok())
        });
        Receiver { child, port, _dir: dir }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn spans(&self) -> Vec<Value> {
        let r = get(self.addr(), "/spans", &[]);
        assert_eq!(r.status, 200, "{r:?}");
        r.json().as_array().cloned().unwrap_or_default()
    }

    /// Every exported request body, decoded from hex: what a secret must never be found in.
    fn raw_bodies(&self) -> Vec<u8> {
        let r = get(self.addr(), "/requests", &[]);
        let mut out = Vec::new();
        for req in r.json().as_array().cloned().unwrap_or_default() {
            assert_eq!(req["path"], "/v1/traces");
            assert_eq!(req["content_type"], "application/x-protobuf");
            let hex = req["body_hex"].as_str().unwrap_or("");
            out.extend((0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()));
        }
        out
    }

    /// Waits (bounded) until a span matching `pred` has arrived.
    fn wait_span(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_until(what, Duration::from_secs(20), || self.spans().into_iter().find(|s| pred(s)))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- helpers ----------------------------------------------------------------------------------

fn telemetry_toml(endpoint: &str, extra: &str) -> String {
    format!("\n[telemetry]\notlp_endpoint = \"{endpoint}\"\nexport_interval = \"100ms\"\n{extra}\n")
}

fn public_route(up: SocketAddr) -> String {
    format!("\n[[route]]\nname = \"public\"\npath = \"/\"\nauth = \"none\"\nupstream = \"http://{up}\"\n")
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

fn server_span_of<'a>(spans: &'a [Value], trace: &str) -> Option<&'a Value> {
    spans.iter().find(|s| s["trace_id"] == trace && s["kind"] == SERVER)
}

/// The `traceparent` the echo upstream received, split in its four fields.
fn upstream_traceparent(r: &RawResponse) -> Vec<String> {
    assert_eq!(r.status, 200, "{r:?}");
    let tp = r.json()["headers"]["traceparent"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no traceparent: {}", r.body))
        .to_string();
    tp.split('-').map(str::to_string).collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The first access-log line (JSON) that `pred` accepts, waited for (bounded).
fn access_line(gw: &Gateway, pred: impl Fn(&Value) -> bool) -> Value {
    wait_until("the access-log line", Duration::from_secs(10), || {
        gw.logs()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["target"] == "tollgate::access" && pred(v))
    })
}

// ---- tests ------------------------------------------------------------------------------------

/// A client's valid `traceparent` makes tollgate's server span its child in the same trace; the
/// upstream call is a client span under it, and the upstream receives a `traceparent` naming that
/// span as its parent, sampled, with the client's `tracestate` unchanged. The span has the route,
/// method, status, authority, path and outcome; no token, cookie or query value is anywhere in
/// the exported bytes; the access-log line carries the trace id.
#[test]
fn client_trace_continues_through_tollgate_to_the_upstream() {
    let rx = Receiver::start();
    let up = echo();
    let gw = Gateway::start(&format!("{BASE}{}{}", telemetry_toml(&rx.endpoint(), ""), public_route(up.addr)));
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let r = get(
        gw.addr,
        "/things/1?access_token=query-secret-value&q=x",
        &[
            ("traceparent", &traceparent),
            ("tracestate", "rojo=00f067aa0ba902b7,congo=t61"),
            ("Authorization", "Bearer header-secret-token"),
            ("Cookie", "session=cookie-secret-value"),
        ],
    );
    let received = upstream_traceparent(&r);
    assert_eq!(r.json()["headers"]["tracestate"][0], "rojo=00f067aa0ba902b7,congo=t61", "tracestate as sent");

    let server = rx.wait_span("the server span", |s| s["trace_id"] == CLIENT_TRACE && s["kind"] == SERVER);
    let upstream = rx.wait_span("the upstream span", |s| s["trace_id"] == CLIENT_TRACE && s["kind"] == CLIENT);
    assert_eq!(server["parent_id"], CLIENT_SPAN, "the client's span is the parent: {server}");
    assert_eq!(upstream["parent_id"], server["span_id"], "{upstream}");
    assert_eq!(received, ["00", CLIENT_TRACE, upstream["span_id"].as_str().unwrap(), "01"], "the upstream's parent");
    assert_eq!(server["name"], "GET public");
    assert_eq!(server["service_name"], "tollgate");
    assert_eq!(server["trace_state"], "rojo=00f067aa0ba902b7,congo=t61");
    assert_eq!(attr(&server, "http.route"), "public");
    assert_eq!(attr(&server, "http.request.method"), "GET");
    assert_eq!(attr(&server, "http.response.status_code"), 200);
    assert_eq!(attr(&server, "server.address"), "gateway.test");
    assert_eq!(attr(&server, "url.path"), "/things/1", "the path without its query");
    assert_eq!(attr(&server, "tollgate.auth.outcome"), "anonymous");
    assert!(attr(&server, "tollgate.upstream.duration_ms").as_f64().is_some_and(|ms| ms > 0.0), "{server}");
    assert_eq!(attr(&upstream, "server.address"), "127.0.0.1");
    assert_eq!(attr(&upstream, "http.response.status_code"), 200);

    let bytes = rx.raw_bodies();
    assert!(!bytes.is_empty());
    for secret in ["query-secret-value", "header-secret-token", "cookie-secret-value", "access_token", "q=x"] {
        assert!(!contains(&bytes, secret), "{secret:?} was exported");
    }
    let line = access_line(&gw, |v| v["route"] == "public");
    assert_eq!(line["trace_id"], CLIENT_TRACE, "{line}");
}

/// Without a `traceparent`, or with one that is not strictly valid, tollgate starts a new trace
/// (the request is served as usual) and the invalid parent's `tracestate` is not passed on.
#[test]
fn missing_or_invalid_traceparent_starts_a_new_trace() {
    let rx = Receiver::start();
    let up = echo();
    let gw = Gateway::start(&format!("{BASE}{}{}", telemetry_toml(&rx.endpoint(), ""), public_route(up.addr)));
    let none = get(gw.addr, "/none", &[]);
    let fresh = upstream_traceparent(&none);
    assert_eq!((fresh.len(), fresh[1].len(), fresh[3].as_str()), (4, 32, "01"), "{fresh:?}");
    let invalid = [
        format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase()),
        format!("01-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
        format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32)),
        format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-extra"),
    ];
    let mut traces = vec![fresh[1].clone()];
    for tp in &invalid {
        let r = get(gw.addr, "/bad", &[("traceparent", tp), ("tracestate", "rojo=1")]);
        let got = upstream_traceparent(&r);
        assert_ne!(got[1], CLIENT_TRACE, "{tp}: a new trace");
        assert_ne!(got[1], "0".repeat(32));
        assert!(r.json()["headers"].get("tracestate").is_none(), "{tp}: tracestate of another trace passed on");
        traces.push(got[1].clone());
    }
    for trace in &traces {
        let spans = wait_until("the new trace's server span", Duration::from_secs(20), || {
            let spans = rx.spans();
            server_span_of(&spans, trace).cloned()
        });
        assert_eq!(spans["parent_id"], "", "a root span: {spans}");
    }
}

/// `sample_ratio = 0`: a new trace is not sampled (nothing exported, the upstream's
/// `traceparent` has the sampled flag off), but a client's sampled parent is followed
/// (parent-based). Everything queued is exported at shutdown, so after exit the receiver holds
/// exactly the followed trace.
#[test]
fn ratio_zero_samples_only_what_the_client_sampled() {
    let rx = Receiver::start();
    let up = echo();
    let toml = telemetry_toml(&rx.endpoint(), "sample_ratio = 0.0\nexport_interval = \"1h\"");
    let toml = toml.replace("export_interval = \"100ms\"\n", "");
    let mut gw = Gateway::start(&format!("{BASE}{toml}{}", public_route(up.addr)));
    let unsampled = upstream_traceparent(&get(gw.addr, "/new", &[]));
    assert_eq!(unsampled[3], "00", "not sampled: {unsampled:?}");
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let followed = upstream_traceparent(&get(gw.addr, "/followed", &[("traceparent", &tp)]));
    assert_eq!((followed[1].as_str(), followed[3].as_str()), (CLIENT_TRACE, "01"));
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(20)), Some(0), "{}", gw.logs());
    let spans = rx.spans();
    assert!(spans.iter().all(|s| s["trace_id"] == CLIENT_TRACE), "only the followed trace: {spans:?}");
    assert!(server_span_of(&spans, CLIENT_TRACE).is_some(), "{spans:?}");
    assert!(!spans.iter().any(|s| s["trace_id"] == unsampled[1]));
}

/// Spans still queued at shutdown are exported before the process exits (an hour-long export
/// interval would otherwise hold them).
#[test]
fn queued_spans_are_flushed_at_shutdown() {
    let rx = Receiver::start();
    let up = echo();
    let toml = telemetry_toml(&rx.endpoint(), "").replace("100ms", "1h");
    let mut gw = Gateway::start(&format!("{BASE}{toml}{}", public_route(up.addr)));
    let trace = upstream_traceparent(&get(gw.addr, "/x", &[]))[1].clone();
    assert!(rx.spans().is_empty(), "nothing is sent before the interval");
    gw.signal("TERM");
    assert_eq!(gw.wait_exit(Duration::from_secs(20)), Some(0), "{}", gw.logs());
    assert!(server_span_of(&rx.spans(), &trace).is_some(), "flushed at shutdown: {:?}", rx.spans());
}

/// A bearer route against the real provider: the key set fetch and discovery are client spans
/// (the first load, in the background, each the root of its own trace); an opaque token's
/// introspection happens while serving the request, so its span is a child of the request's.
/// Outcomes are recorded; neither token nor the gateway's client secret is exported.
#[test]
fn provider_calls_are_spans_and_outcomes_are_recorded() {
    let rx = Receiver::start();
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = Gateway::start(&format!(
        "{BASE}{}
[[issuer]]
name = \"idp\"
url = \"{}\"
audiences = [\"{API_RESOURCE}\"]
token_type = \"at+jwt\"
[issuer.introspection]
client_id = \"gateway\"
client_secret = \"gateway-secret\"

[[route]]
name = \"api\"
path = \"/api/\"
auth = \"bearer\"
upstream = \"http://{}\"
",
        telemetry_toml(&rx.endpoint(), ""),
        idp.issuer,
        up.addr
    ));
    wait_ready(&gw);
    let jwks = rx.wait_span("the key set fetch", |s| s["name"] == "idp jwks");
    assert_eq!((jwks["kind"].as_u64(), attr(&jwks, "tollgate.idp.call").as_str()), (Some(CLIENT), Some("jwks")));
    assert_eq!(attr(&jwks, "http.response.status_code"), 200);
    // The URL as called, port included (the provider is on a loopback port), no query.
    let port: u16 = idp.issuer.rsplit(':').next().and_then(|p| p.split('/').next()?.parse().ok()).unwrap();
    let full = attr(&jwks, "url.full").as_str().unwrap_or_default();
    assert!(full.starts_with(&format!("http://127.0.0.1:{port}/")) && !full.contains('?'), "{jwks}");
    assert_eq!(attr(&jwks, "server.port"), i64::from(port), "{jwks}");
    rx.wait_span("discovery", |s| s["name"] == "idp discovery" && attr(s, "tollgate.idp.call") == "discovery");

    let jwt = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    let ok = get(gw.addr, "/api/jwt", &[("Authorization", &format!("Bearer {jwt}"))]);
    let jwt_trace = upstream_traceparent(&ok)[1].clone();
    let opaque = idp.access_token("m2m", "m2m-secret", Some("api:read"), None);
    let ok = get(gw.addr, "/api/opaque", &[("Authorization", &format!("Bearer {opaque}"))]);
    let opaque_trace = upstream_traceparent(&ok)[1].clone();
    let refused = get(gw.addr, "/api/none", &[]);
    assert_eq!(refused.status, 401);

    let server = rx.wait_span("the JWT request's span", |s| s["trace_id"] == jwt_trace && s["kind"] == SERVER);
    assert_eq!(attr(&server, "tollgate.auth.outcome"), "bearer");
    assert_eq!(attr(&server, "http.route"), "api");
    let opaque_server =
        rx.wait_span("the opaque request's span", |s| s["trace_id"] == opaque_trace && s["kind"] == SERVER);
    let introspection = rx.wait_span("the introspection", |s| s["name"] == "idp introspection");
    assert_eq!(introspection["trace_id"], opaque_trace, "made while serving the request");
    assert_eq!(introspection["parent_id"], opaque_server["span_id"]);
    let unauthenticated = rx.wait_span("the refused request's span", |s| {
        s["kind"] == SERVER && attr(s, "http.response.status_code") == 401
    });
    assert_eq!(attr(&unauthenticated, "tollgate.auth.outcome"), "unauthenticated");
    assert_eq!(attr(&unauthenticated, "url.path"), "/api/none");

    let bytes = rx.raw_bodies();
    for secret in [jwt.as_str(), &jwt[jwt.rfind('.').unwrap() + 1..], opaque.as_str(), "gateway-secret"] {
        assert!(!contains(&bytes, secret), "a secret was exported: {secret:.12}...");
    }
}

/// A collector that is down never touches requests: they are answered as usual while every
/// export fails, and the failed spans are counted.
#[test]
fn receiver_down_costs_requests_nothing_and_drops_are_counted() {
    let up = echo();
    let endpoint = format!("http://{}", dead_port());
    let gw = Gateway::start(&format!("{BASE}{}{}", telemetry_toml(&endpoint, ""), public_route(up.addr)));
    for i in 0..20 {
        let r = get(gw.addr, &format!("/r{i}"), &[]);
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    wait_until("export failures to be counted", Duration::from_secs(30), || {
        let failed = metric(&gw, "tollgate_telemetry_spans_dropped_total", &[("reason", "export_failed")]);
        (failed >= 1.0).then_some(())
    });
    assert_eq!(metric(&gw, "tollgate_telemetry_spans_exported_total", &[]), 0.0);
}

/// A collector that accepts connections and never answers stalls the export thread, not the
/// requests: with the queue full, new spans are dropped on the request path and counted.
#[test]
fn a_stalled_receiver_fills_the_queue_and_drops_are_counted() {
    let up = echo();
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in hole.incoming().take(16).flatten() {
            seen.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
        // Drain nothing, answer nothing; the listener closes when the test process ends.
        let mut sink = [0u8; 1];
        for mut c in held {
            let _ = c.read(&mut sink);
        }
    });
    let toml = telemetry_toml(&format!("http://{hole_addr}"), "max_queue_size = 2\nexport_timeout = \"5s\"");
    let gw = Gateway::start(&format!("{BASE}{toml}{}", public_route(up.addr)));
    assert_eq!(get(gw.addr, "/first", &[]).status, 200);
    wait_until("the export thread to connect", Duration::from_secs(10), || {
        (accepted.load(Ordering::SeqCst) >= 1).then_some(())
    });
    let started = Instant::now();
    for i in 0..10 {
        assert_eq!(get(gw.addr, &format!("/r{i}"), &[]).status, 200, "request {i}");
    }
    assert!(started.elapsed() < Duration::from_secs(4), "requests waited for the exporter: {:?}", started.elapsed());
    let dropped = metric(&gw, "tollgate_telemetry_spans_dropped_total", &[("reason", "queue_full")]);
    assert!(dropped >= 16.0, "20 spans into a queue of 2 while the exporter is stuck: {dropped} dropped");
}

/// Without `[telemetry]` tollgate adds no trace headers and passes a client's `traceparent`
/// and `tracestate` through unchanged, so the hops around it still trace.
#[test]
fn without_telemetry_trace_context_passes_through() {
    let up = echo();
    let gw = Gateway::start(&format!("{BASE}{}", public_route(up.addr)));
    let tp = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let r = get(gw.addr, "/x", &[("traceparent", &tp), ("tracestate", "rojo=1")]);
    assert_eq!(r.json()["headers"]["traceparent"][0], tp.as_str());
    assert_eq!(r.json()["headers"]["tracestate"][0], "rojo=1");
    let r = get(gw.addr, "/y", &[]);
    assert!(r.json()["headers"].get("traceparent").is_none(), "{}", r.body);
    assert_eq!(metric(&gw, "tollgate_telemetry_spans_exported_total", &[]), 0.0);
    let line = access_line(&gw, |v| v["route"] == "public");
    assert_eq!(line["trace_id"], "-", "{line}");
}

/// `tollgate check` names the `[telemetry]` field that is wrong, unknown keys included.
#[test]
fn bad_telemetry_settings_name_their_field() {
    let dir = TempDir::new("telemetry-check");
    let cases = [
        ("otlp_endpoint = \"collector:4318\"", "telemetry.otlp_endpoint"),
        ("otlp_endpoint = \"http://c:4318\"\nsample_ratio = 1.5", "telemetry.sample_ratio"),
        ("otlp_endpoint = \"http://c:4318\"\nendpoint = \"x\"", "endpoint"),
        ("sample_ratio = 0.5", "telemetry.otlp_endpoint"),
    ];
    for (i, (body, field)) in cases.iter().enumerate() {
        let file: PathBuf = dir.path(&format!("t{i}.toml"));
        let toml = format!("{BASE}{}\n[telemetry]\n{body}\n", public_route(dead_port()));
        std::fs::write(&file, toml).unwrap();
        let (code, out) = common::check(&file, &[]);
        assert_ne!(code, 0, "{body}: accepted");
        assert!(out.contains(field), "{body}: the error should name {field}: {out}");
    }
}

/// A GET whose upstream token the upstream rejects (`401 invalid_token`) is sent again with a
/// new token, and that second attempt is an upstream call of its own: a client span beside the
/// first (both children of the server span) with `http.request.resend_count = 1`, and the
/// upstream gets a `traceparent` naming that span, not the first attempt's. Before, the retry
/// re-sent the first attempt's head, its `traceparent` included, under no span of its own.
#[test]
fn a_retry_after_a_rejected_upstream_token_has_its_own_upstream_span() {
    use std::sync::Mutex;
    let rx = Receiver::start();
    let idp = Idp::start(IdpOptions::default());
    // (token, traceparent) of each request; the first token it sees is refused.
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = seen.clone();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let up = rt.block_on(common::upstream(Arc::new(move |req: hyper::Request<hyper::body::Incoming>| {
        let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let (token, traceparent) = (header("authorization"), header("traceparent"));
        let first = {
            let mut seen = record.lock().unwrap();
            seen.push((token.clone(), traceparent));
            seen[0].0 == token
        };
        Box::pin(async move {
            let mut resp = hyper::Response::builder();
            if first {
                resp = resp.status(401).header("www-authenticate", "Bearer error=\"invalid_token\"");
            }
            resp.body(common::full("x")).unwrap()
        })
    })));
    let gw = Gateway::start(&format!(
        "{BASE}{}{}
[[client]]
name = \"orders\"
issuer = \"idp\"
client_id = \"m2m\"
client_secret = \"m2m-secret\"
scope = \"api:read\"
resource = \"{API_RESOURCE}\"

[[route]]
name = \"api\"
auth = \"none\"
path = \"/\"
upstream = \"http://{up}\"
upstream_token = \"orders\"
",
        telemetry_toml(&rx.endpoint(), ""),
        common::issuer_toml("idp", &idp.issuer, API_RESOURCE),
    ));
    wait_ready(&gw);
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let r = get(gw.addr, "/orders", &[("traceparent", &traceparent)]);
    assert_eq!(r.status, 200, "the retry's answer: {r:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "the first attempt and one retry: {seen:?}");
    assert_ne!(seen[0].0, seen[1].0, "a new token");
    let parent = |tp: &str| tp.split('-').nth(2).unwrap_or_else(|| panic!("no traceparent: {tp:?}")).to_string();
    let (first_parent, retry_parent) = (parent(&seen[0].1), parent(&seen[1].1));
    assert_ne!(first_parent, retry_parent, "the retry names a span of its own: {seen:?}");
    for tp in [&seen[0].1, &seen[1].1] {
        assert!(tp.starts_with(&format!("00-{CLIENT_TRACE}-")) && tp.ends_with("-01"), "the client's trace: {tp}");
    }

    let server = rx.wait_span("the server span", |s| s["trace_id"] == CLIENT_TRACE && s["kind"] == SERVER);
    let calls = wait_until("both upstream spans", Duration::from_secs(20), || {
        let calls: Vec<Value> = rx
            .spans()
            .into_iter()
            .filter(|s| s["trace_id"] == CLIENT_TRACE && s["kind"] == CLIENT && s["name"] == "upstream")
            .collect();
        (calls.len() >= 2).then_some(calls)
    });
    let by_id = |id: &str| calls.iter().find(|s| s["span_id"] == id).unwrap_or_else(|| panic!("{id}: {calls:?}"));
    let (first, retry) = (by_id(&first_parent), by_id(&retry_parent));
    for call in [first, retry] {
        assert_eq!(call["parent_id"], server["span_id"], "under the server span: {call}");
        assert_eq!(call["name"], "upstream", "{call}");
    }
    assert_eq!(attr(first, "http.response.status_code"), 401, "{first}");
    assert!(attr(first, "http.request.resend_count").is_null(), "not a resend: {first}");
    assert_eq!(attr(retry, "http.response.status_code"), 200, "{retry}");
    assert_eq!(attr(retry, "http.request.resend_count"), 1, "{retry}");
    assert_eq!(calls.len(), 2, "two upstream calls: {calls:?}");
}
