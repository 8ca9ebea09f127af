//! Per-request hot paths of the gateway other than token verification (that is `benches/jwt.rs`):
//! one function per path.
//!
//! - `cookie_seal_2k` / `cookie_open_2k`: the session cookie's AEAD (`Sealer`) over 2 KiB.
//! - `session_check_cold` / `session_check_cached`: what a `auth = "login"` route does per
//!   request with a valid cookie (`LoginService::session`), the first time a worker sees the
//!   cookie (read it, open it, parse the session, build the principal) and afterwards (the
//!   worker's cache of opened sessions); `session_part_*` (each cold step alone) and
//!   `session_strip_cookies` (the gateway's cookies removed before forwarding).
//! - `router_find_1000`: `Router::find` over 1,000 routes (exact hosts, wildcards, host-less
//!   prefixes), cycling through a fixed mix of hits and misses; `normalize_path` beside it.
//! - `headers_clean_request` / `headers_clean_response`: the header hygiene of one request and
//!   one response, on realistic header maps; `token_extract`, `is_browser`.
//! - Shared state touched by every request, on one thread and on two at once (this machine has
//!   two cores, and the gateway runs one worker per core): the Prometheus updates of
//!   `Gateway::handle` (and the label lookups they replaced), a moka verified-token cache hit,
//!   and the per-thread front cache in front of moka. `*_x2` functions report the time per
//!   operation while two threads run the same loop, so 1× means no contention.
//! - `upstream_headers_*`: the gateway's inserts into an upstream request's headers.
//! - `telemetry_request_*`: the spans and header `[telemetry]` adds to one request.
//! - `proposal_router_find_1000_segment_index`: a stand-alone index by first path segment,
//!   checked to give the same answers as `Router::find`; not adopted (routing is well under a
//!   microsecond at 1,000 routes, and a handful of routes is the usual case).
//!
//! Everything runs without sockets; async functions that never wait (a cookie session store)
//! are driven with `now_or_never`, so a `None` would be a bug in the set-up and panics.
//!
//! Run: `cargo bench --bench gateway -- --warm-up-time 1 --measurement-time 3`

// A bench is set-up code: a failed set-up should stop it loudly.
#![allow(clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use futures_util::FutureExt;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use serde_json::json;
use tollgate::auth::{front, token, unix_now, AuthMetrics, Authenticator, Principal};
use tollgate::authority::HostPattern;
use tollgate::config::{Config, Route, TokenSource};
use tollgate::login::{is_browser, LoginService};
use tollgate::metrics::{Metrics, RouteMetrics};
use tollgate::oidc::http::IdpClient;
use tollgate::path::normalize_path;
use tollgate::router::Router;
use tollgate::secret::Secret;
use tollgate::session::{cookie, Sealer, Session, Sessions, Write};
use tollgate::upstream::headers::{clean_response, Protected};

/// A bearer token of realistic size (538 bytes; the dev issuer's ES256 access tokens are ~530).
const TOKEN: &str = concat!(
    "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFUzI1NiIsImtpZCI6IkFCQ0RFRkdISUpLTE1OT1AifQ.",
    "eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjQxMjM0Iiwic3ViIjoiZGV2LWNsaSIsImF1ZCI6InRvbGxnYXRlLWRldi1hcGkiLCJjbGll",
    "bnRfaWQiOiJkZXYtY2xpIiwic2NvcGUiOiJhcGkiLCJqdGkiOiJ4cUZ3bTBzQlBhZ3JDZ2Y0Z3RxV0ZQb1BfbG1vS3hJZ0JpTGZ3Y2s5",
    "UTlJIiwiaWF0IjoxNzQ1MDAwMDAwLCJleHAiOjE3NDUwMDAzMDAsImVtYWlsIjoiZGV2LWNsaUBleGFtcGxlLmNvbSIsInByZWZlcnJl",
    "ZF91c2VybmFtZSI6ImRldi1jbGkiLCJncm91cHMiOlsic3RhZmYiXX0.",
    "MEUCIQDm7P2v8mN3m5e2O3u9V1dX0yQk7b2c4nH9a1s8Zq3lYwIgR2w5t8p0b6c3m1n4v7x9z2a5d8f1h4j7k0l3o6r9u2y"
);

fn bench_config(routes: &str) -> Config {
    let text = format!(
        r#"
[[issuer]]
name = "dev"
url = "http://127.0.0.1:1"
audiences = ["api"]

[login]
client_id = "bench"
client_secret = "bench-secret"
public_url = "http://127.0.0.1:8080"
cookie_secret = "bench-cookie-secret-that-is-at-least-32-bytes"

{routes}"#
    );
    Config::from_str(&text, Path::new("bench.toml"), &|_| None).expect("bench config is valid")
}

// ---- cookies and sessions -------------------------------------------------------------------

fn cookies(c: &mut Criterion) {
    let sealer = Sealer::new(&[Secret::new("bench-cookie-secret-that-is-at-least-32-bytes")], "default");
    let payload: Vec<u8> = (0..2048u32).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789"[(i % 36) as usize]).collect();
    c.bench_function("cookie_seal_2k", |b| b.iter(|| black_box(sealer.seal("session", black_box(&payload)))));
    let sealed = sealer.seal("session", &payload).expect("seals");
    c.bench_function("cookie_open_2k", |b| {
        b.iter(|| black_box(sealer.open("session", black_box(&sealed)).expect("opens")))
    });
}

/// A session as the login flow stores it: ID token, access token, refresh token and claims.
/// Built from JSON so fields added later with defaults do not break the bench.
fn sample_session() -> Session {
    let now = unix_now();
    let claims = json!({
        "iss": "http://127.0.0.1:1", "sub": "bench-user", "aud": "bench", "iat": now, "exp": now + 3600,
        "email": "bench-user@example.com", "email_verified": true, "preferred_username": "bench-user",
        "name": "Bench User", "groups": ["staff", "admins"], "sid": "k3QyY2Q0ZTVmNmE3YjhjOWQwZTFmMmEzYjRjNWQ2",
    });
    let session = json!({
        "id": "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5",
        "claims": claims,
        "id_token": TOKEN,
        "access_token": TOKEN,
        "refresh_token": "cmVmcmVzaC10b2tlbi1vcGFxdWUtYmVuY2gtdmFsdWU",
        "access_exp": now + 3600,
        "access_issued": now,
        "created": now,
        "seen": now,
    });
    serde_json::from_value(session).expect("a session")
}

/// What an `auth = "login"` route does per request with a valid cookie (`LoginService::session`):
/// `session_check_cold` on a cookie this thread has not seen (read, open, parse, build the
/// principal, remember it), `session_check_cached` on a repeated one (read, look up);
/// `session_strip_cookies` (the gateway's cookies removed before forwarding), and the steps of a
/// cold check alone (`session_part_*`).
fn sessions(c: &mut Criterion) {
    let config =
        bench_config("[[route]]\nname = \"app\"\nauth = \"login\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n");
    let metrics = AuthMetrics::new(&prometheus::Registry::new()).expect("metrics");
    let tls = tollgate::tls::client_config(&config.upstream).expect("tls");
    let auth = Authenticator::new(&config, IdpClient::new(tls, Duration::from_secs(1)), metrics);
    let login = LoginService::new(config.logins[0].clone(), auth, None).expect("login");
    let store = Sessions::new(login.config()).expect("cookie store");
    let check = |headers: &HeaderMap| {
        let s = login.session(black_box(headers)).now_or_never().expect("no waiting");
        black_box(s.expect("store").expect("a valid session"))
    };
    // Each cold check gets a cookie sealed anew (another nonce, other bytes), as a browser that
    // signed in elsewhere would bring.
    c.bench_function("session_check_cold", |b| {
        b.iter_batched_ref(|| browser_headers(&session_cookie(&store)), |h| check(h), BatchSize::SmallInput)
    });
    let headers = browser_headers(&session_cookie(&store));
    check(&headers);
    c.bench_function("session_check_cached", |b| b.iter(|| check(&headers)));
    c.bench_function("session_strip_cookies", |b| {
        b.iter_batched_ref(|| headers.clone(), |h| login.strip_cookies(h), BatchSize::SmallInput)
    });
    session_parts(c, &login, &store, &headers);
}

/// The steps of `session_check_cold`, each alone on the same cookie.
fn session_parts(c: &mut Criterion, login: &LoginService, store: &Sessions, headers: &HeaderMap) {
    let name = login.config().cookie_name.clone();
    let value = cookie::read(headers, &name).expect("the session cookie").into_owned();
    let json = serde_json::to_vec(&sample_session()).expect("json");
    eprintln!("session cookie: {} bytes sealed, {} bytes of JSON", value.len(), json.len());
    c.bench_function("session_part_cookie_read", |b| b.iter(|| black_box(cookie::read(black_box(headers), &name))));
    let sealed = store.sealer.seal("bench", &json).expect("seals");
    c.bench_function("session_part_open", |b| b.iter(|| black_box(store.sealer.open("bench", black_box(&sealed)))));
    c.bench_function("session_part_json", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Session>(black_box(&json)).expect("a session")))
    });
    let session: Session = serde_json::from_slice(&json).expect("a session");
    let (issuer, lifetime) = (login.config().issuer as u64, login.config().lifetime);
    c.bench_function("session_part_principal", |b| {
        b.iter_batched(
            || session.clone(),
            |s| black_box(s.into_principal(issuer, lifetime).expect("principal")),
            BatchSize::SmallInput,
        )
    });
}

/// The session cookie(s) a sign-in sets, as the browser sends them back, sealed by a `Sessions`
/// built from the service's `[login]` (same keys, same cookie name; `LoginService` keeps its
/// own private). Every call seals anew: other bytes, the same session.
fn session_cookie(store: &Sessions) -> String {
    let mut set = HeaderMap::new();
    let saved =
        store.save(&sample_session(), Write::New, &HeaderMap::new(), &mut set).now_or_never().expect("no waiting");
    saved.expect("session saved");
    let jar: Vec<&str> =
        set.get_all(http::header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()?.split(';').next()).collect();
    assert!(!jar.is_empty(), "the session was saved into a cookie");
    jar.join("; ")
}

// ---- routing --------------------------------------------------------------------------------

/// 1,000 routes: 40 API hosts × 15 prefixes, 10 wildcard domains × 10 prefixes, 300 host-less
/// prefixes (services under one host name) and a catch-all.
fn thousand_routes() -> String {
    let mut out = String::new();
    let mut n = 0;
    let mut add = |host: Option<String>, path: String| {
        n += 1;
        out.push_str(&format!("[[route]]\nname = \"r{n}\"\nauth = \"none\"\npath = \"{path}\"\n"));
        if let Some(h) = host {
            out.push_str(&format!("host = \"{h}\"\n"));
        }
        out.push_str("upstream = \"http://127.0.0.1:9\"\n\n");
    };
    for h in 0..40 {
        for p in 0..15 {
            add(Some(format!("api{h}.example.com")), format!("/v{}/svc{p}/", p % 3 + 1));
        }
    }
    for d in 0..10 {
        for p in 0..10 {
            add(Some(format!("*.tenant{d}.example.net")), format!("/app{p}/"));
        }
    }
    for p in 0..299 {
        add(None, format!("/services/team{}/svc{p}/", p % 20));
    }
    add(None, "/".into());
    out
}

fn lookups() -> Vec<(&'static str, &'static str)> {
    vec![
        ("api7.example.com", "/v2/svc4/orders/123"),
        ("api39.example.com", "/v1/svc0/"),
        ("api12.example.com", "/v3/svc14/items"),
        ("api12.example.com", "/unknown/path"),
        ("x.tenant3.example.net", "/app7/dashboard"),
        ("deep.a.tenant9.example.net", "/app0/"),
        ("www.example.org", "/services/team5/svc125/api/v1/things"),
        ("www.example.org", "/services/team19/svc299/"),
        ("www.example.org", "/static/app.js"),
        ("www.example.org", "/"),
    ]
}

fn routing(c: &mut Criterion) {
    let config = bench_config(&thousand_routes());
    assert_eq!(config.routes.len(), 1000);
    let router = Router::new(config.routes);
    let cases = lookups();
    for (host, path) in &cases {
        assert!(router.find(host, &Method::GET, path).route().is_some(), "{host}{path}");
    }
    c.bench_function("router_find_1000", |b| {
        let mut i = 0;
        b.iter(|| {
            let (host, path) = cases[i % cases.len()];
            i += 1;
            black_box(router.find(black_box(host), &Method::GET, black_box(path)).route())
        })
    });
    c.bench_function("router_find_1000_hostless_deep", |b| {
        b.iter(|| {
            black_box(router.find(black_box("www.example.org"), &Method::GET, black_box("/static/app.js")).route())
        })
    });
    let indexed = SegmentIndex::new(router.routes());
    let more = [
        ("api7.example.com", "/"),
        ("api7.example.com", "/v2/svc4"),
        ("api7.example.com", "/v2;x/svc4/"),
        ("a.tenant1.example.net", "/services/team1/svc1/x"),
        ("www.example.org", "/services/team5/svc125;jsessionid=1/x"),
        ("www.example.org", "/servicesx/team5/svc125/"),
    ];
    for (host, path) in cases.iter().copied().chain(more) {
        let want = router.find(host, &Method::GET, path).route().map(|r| r.name.as_str());
        assert_eq!(indexed.find(host, path).map(|r| r.name.as_str()), want, "{host}{path}");
    }
    c.bench_function("proposal_router_find_1000_segment_index", |b| {
        let mut i = 0;
        b.iter(|| {
            let (host, path) = cases[i % cases.len()];
            i += 1;
            black_box(indexed.find(black_box(host), black_box(path)))
        })
    });
    c.bench_function("normalize_path", |b| {
        b.iter(|| black_box(normalize_path(black_box("/services/team5/svc125/api/v1/things"))))
    });
}

/// Proposed route table: within each host group, routes are indexed by the first segment of
/// their prefix (every prefix but `/` ends its first segment on a boundary, `/` or `;`, so only
/// routes with the request's first segment can match), each list longest first. Same precedence as
/// `Router::find`: longest prefix, then exact host, wildcard, no host.
struct SegmentIndex<'r> {
    routes: &'r [Route],
    exact: HashMap<&'r str, Group<'r>>,
    suffix: Vec<(&'r str, Group<'r>)>,
    any: Group<'r>,
}

#[derive(Default)]
struct Group<'r> {
    by_segment: HashMap<&'r str, Vec<usize>>,
    root: Vec<usize>,
}

impl<'r> SegmentIndex<'r> {
    fn new(routes: &'r [Route]) -> SegmentIndex<'r> {
        let mut index = SegmentIndex { routes, exact: HashMap::new(), suffix: Vec::new(), any: Group::default() };
        let mut order: Vec<usize> = (0..routes.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(routes[i].path.len()));
        for i in order {
            let group = match &routes[i].host {
                Some(HostPattern::Exact(h)) => index.exact.entry(h.as_str()).or_default(),
                Some(HostPattern::Suffix(s)) => match index.suffix.iter().position(|(k, _)| k == s) {
                    Some(p) => &mut index.suffix[p].1,
                    None => {
                        index.suffix.push((s.as_str(), Group::default()));
                        &mut index.suffix.last_mut().expect("just pushed").1
                    }
                },
                None => &mut index.any,
            };
            match first_segment(&routes[i].path) {
                "" => group.root.push(i),
                seg => group.by_segment.entry(seg).or_default().push(i),
            }
        }
        index.suffix.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        index
    }

    fn find(&self, host: &str, path: &str) -> Option<&'r Route> {
        let seg = first_segment(path);
        let mut best: Option<usize> = None;
        let mut consider = |g: &Group<'r>| {
            let candidates = g.by_segment.get(seg).map(Vec::as_slice).unwrap_or(&[]).iter().chain(&g.root);
            if let Some(&i) = candidates.into_iter().find(|&&i| segment_prefix_matches(&self.routes[i].path, path)) {
                if best.is_none_or(|b| self.routes[i].path.len() > self.routes[b].path.len()) {
                    best = Some(i);
                }
            }
        };
        if let Some(g) = self.exact.get(host) {
            consider(g);
        }
        for (suffix, g) in &self.suffix {
            if host.len() > suffix.len() && host.ends_with(suffix) {
                consider(g);
            }
        }
        consider(&self.any);
        best.map(|i| &self.routes[i])
    }
}

/// The first segment of a path or prefix: up to `/` or `;` (which ends a segment for the
/// router, as servlet containers drop `;params`).
fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split(['/', ';']).next().unwrap_or("")
}

/// `router::prefix_matches` (private), copied: `/api` and `/api/` match `/api`, `/api/x` and
/// `/api;p/x`, never `/apix`.
fn segment_prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    let base = prefix.strip_suffix('/').unwrap_or(prefix);
    path.starts_with(base) && matches!(path.as_bytes().get(base.len()), None | Some(b'/') | Some(b';'))
}

// ---- headers --------------------------------------------------------------------------------

/// What a browser sends (with a session cookie and an analytics cookie).
fn browser_headers(cookie: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    let pairs = [
        ("host", "app.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/dashboard"),
        ("connection", "keep-alive"),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
        ("priority", "u=0, i"),
        ("x-request-id", "3f2a9c1e-77b0-4d0e-9a51-0c7d1c2b9f10"),
    ];
    for (k, v) in pairs {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    let cookie = format!("_ga=GA1.1.123456789.1700000000; {cookie}; theme=dark");
    h.append(http::header::COOKIE, HeaderValue::from_str(&cookie).expect("cookie"));
    h
}

/// What an API client sends through another proxy.
fn api_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    let bearer = format!("Bearer {TOKEN}");
    h.append(HeaderName::from_static("host"), HeaderValue::from_static("api.example.com"));
    h.append(HeaderName::from_static("user-agent"), HeaderValue::from_static("okhttp/4.12.0"));
    h.append(HeaderName::from_static("accept"), HeaderValue::from_static("application/json"));
    h.append(HeaderName::from_static("content-type"), HeaderValue::from_static("application/json"));
    h.append(HeaderName::from_static("authorization"), HeaderValue::from_str(&bearer).expect("bearer"));
    h.append(HeaderName::from_static("x-forwarded-for"), HeaderValue::from_static("203.0.113.7"));
    h.append(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("https"));
    h.append(HeaderName::from_static("x-forwarded-user"), HeaderValue::from_static("spoofed-admin"));
    h.append(HeaderName::from_static("connection"), HeaderValue::from_static("keep-alive"));
    h
}

fn upstream_response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("server", "nginx/1.22.1"),
        ("date", "Tue, 01 Apr 2025 12:00:00 GMT"),
        ("content-type", "application/json"),
        ("content-length", "42"),
        ("connection", "keep-alive"),
        ("cache-control", "no-store"),
    ] {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

fn headers(c: &mut Criterion) {
    let protected = Protected::new([HeaderName::from_static("x-user-role")].into_iter());
    let browser = browser_headers("tollgate=v1.c2Vzc2lvbg");
    let api = api_headers();
    c.bench_function("headers_clean_request_browser", |b| {
        b.iter_batched_ref(|| browser.clone(), |h| protected.clean_request(h, false), BatchSize::SmallInput)
    });
    c.bench_function("headers_clean_request_api", |b| {
        b.iter_batched_ref(|| api.clone(), |h| protected.clean_request(h, false), BatchSize::SmallInput)
    });
    let resp = upstream_response_headers();
    c.bench_function("headers_clean_response", |b| {
        b.iter_batched_ref(|| resp.clone(), clean_response, BatchSize::SmallInput)
    });
    let uri: Uri = "/v1/orders?limit=10".parse().expect("uri");
    let sources = [TokenSource::Header];
    c.bench_function("token_extract", |b| {
        b.iter(|| black_box(token::extract(black_box(&api), &uri, &sources, true).expect("ok").expect("a token")))
    });
    c.bench_function("is_browser", |b| b.iter(|| black_box(is_browser(black_box(&browser)))));
    c.bench_function("header_map_clone_browser", |b| b.iter(|| black_box(browser.clone())));
}

// ---- shared state across worker threads -----------------------------------------------------

/// Runs `op` `iters` times on each of `threads` threads started together; the wall time of
/// the slowest, so the result is per operation per thread.
fn on_threads<F>(threads: usize, iters: u64, op: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, op) = (&barrier, &op);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    for i in 0..iters {
                        op(i + t as u64 * 7919);
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("bench thread")).max().unwrap_or_default()
    })
}

/// The Prometheus updates `Gateway::handle` makes per request: the in-flight gauge and the
/// route's handles resolved at start (`RouteMetrics`), against looking the labels up on every
/// request (the code before it). Both still share atomics between workers: see the `_x2` runs.
fn metrics(c: &mut Criterion) {
    let m = Metrics::new().expect("metrics");
    let route = RouteMetrics::new(&m, "api");
    let per_request = |_: u64| {
        m.in_flight.inc();
        route.record(&m, StatusCode::OK, black_box(0.000_42));
        m.in_flight.dec();
    };
    let label_lookup = |_: u64| {
        m.in_flight.inc();
        m.requests.with_label_values(&[black_box("api"), "200"]).inc();
        m.duration.with_label_values(&[black_box("api")]).observe(0.000_42);
        m.in_flight.dec();
    };
    for threads in [1, 2] {
        let sfx = if threads == 1 { "" } else { "_x2" };
        c.bench_function(&format!("metrics_per_request{sfx}"), |b| {
            b.iter_custom(|n| on_threads(threads, n, per_request))
        });
        c.bench_function(&format!("metrics_label_lookup_per_request{sfx}"), |b| {
            b.iter_custom(|n| on_threads(threads, n, label_lookup))
        });
    }
}

/// The verified-token cache on a hit, with the gateway's own pieces: SHA-256 of the token then
/// the shared moka cache (with the digest hasher `Authenticator` gives it), and the per-thread
/// front cache (`tollgate::auth::front`) in front of it. The whole path through
/// `Authenticator::authenticate` (front hit plus the route's checks) is `cache_hit` in
/// `benches/jwt.rs`.
fn token_cache(c: &mut Criterion) {
    let claims = json!({"sub": "dev-cli", "scope": "api", "email": "dev-cli@example.com", "groups": ["staff"]});
    let principal = Arc::new(Principal::from_claims(0, claims, unix_now() + 3600).expect("principal"));
    let cache: moka::sync::Cache<[u8; 32], Arc<Principal>, front::DigestHasherBuilder> =
        moka::sync::Cache::builder().max_capacity(100_000).build_with_hasher(front::DigestHasherBuilder::default());
    let keys: Vec<[u8; 32]> = (0..1024u32).map(|i| sha256(format!("{TOKEN}{i}").as_bytes())).collect();
    for k in &keys {
        cache.insert(*k, principal.clone());
    }
    c.bench_function("token_sha256", |b| b.iter(|| black_box(sha256(black_box(TOKEN.as_bytes())))));
    let moka_hit = |i: u64| {
        black_box(cache.get(&keys[(i % 1024) as usize]).expect("hit"));
    };
    // The whole lookup per request, over 1,024 distinct tokens (more than the front's `SLOTS`,
    // so mostly front misses): SHA-256 then moka, against the front cache in front of them (a
    // front miss falls back to SHA-256 and moka, then offers the slot, as `Authenticator` does).
    let tokens: Vec<String> = (0..1024u32).map(|i| format!("{TOKEN}{i:04}")).collect();
    let by_token = |i: u64| {
        let token = &tokens[(i % 1024) as usize];
        black_box(cache.get(&sha256(token.as_bytes())).expect("hit"));
    };
    for t in &tokens {
        cache.insert(sha256(t.as_bytes()), principal.clone());
    }
    let owner = front::new_owner();
    let with_front = |i: u64| {
        let token = tokens[(i % 1024) as usize].as_str();
        let now = unix_now();
        let p = front::get(owner, token, now).unwrap_or_else(|| {
            let p = cache.get(&sha256(token.as_bytes())).expect("hit");
            front::offer(owner, token, &p, now + 10);
            p
        });
        black_box(p);
    };
    // Only front hits: as many tokens as there are slots would still collide, so one token.
    let front_hit = |_: u64| {
        let token = tokens[0].as_str();
        let now = unix_now();
        let p = front::get(owner, token, now).unwrap_or_else(|| {
            front::put(owner, token, &principal, now + 10);
            principal.clone()
        });
        black_box(p);
    };
    for threads in [1, 2] {
        let sfx = if threads == 1 { "" } else { "_x2" };
        c.bench_function(&format!("bearer_lookup_sha256_moka{sfx}"), |b| {
            b.iter_custom(|n| on_threads(threads, n, by_token))
        });
        c.bench_function(&format!("bearer_lookup_front_1024{sfx}"), |b| {
            b.iter_custom(|n| on_threads(threads, n, with_front))
        });
        c.bench_function(&format!("moka_get_hit{sfx}"), |b| b.iter_custom(|n| on_threads(threads, n, moka_hit)));
        c.bench_function(&format!("front_hit{sfx}"), |b| b.iter_custom(|n| on_threads(threads, n, front_hit)));
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

// ---- prototypes of proposed changes ---------------------------------------------------------
//
/// The gateway's inserts into an upstream request's headers, and (measured and rejected)
/// reserving room for them first.
fn upstream_headers(c: &mut Criterion) {
    let browser = browser_headers("tollgate=v1.c2Vzc2lvbg");
    let mut parsed = HeaderMap::with_capacity(browser.len());
    parsed.extend(browser.clone());
    let forwarded = [
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "app.example.com"),
        ("x-request-id", "3f2a9c1e77b04d0e"),
        ("x-forwarded-user", "bench-user"),
        ("x-forwarded-email", "bench-user@example.com"),
    ];
    let add = |h: &mut HeaderMap| {
        for (k, v) in forwarded {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
    };
    // Measured and rejected: reserving room before the gateway's inserts does not help.
    c.bench_function("upstream_headers_insert", |b| b.iter_batched_ref(|| parsed.clone(), add, BatchSize::SmallInput));
    c.bench_function("upstream_headers_reserve_then_insert", |b| {
        b.iter_batched_ref(
            || parsed.clone(),
            |h| {
                h.reserve(forwarded.len());
                add(h)
            },
            BatchSize::SmallInput,
        )
    });
}

/// What `[telemetry]` adds to one request (`Gateway::handle` and `forward`): the server span
/// (with and without a client `traceparent`), the upstream span and `traceparent` header, and
/// closing both; sampled (ratio 1.0) and not (ratio 0.0). Spans go to the bounded queue; the
/// collector is a closed port, so the export thread's failures stay off this thread.
fn telemetry(c: &mut Criterion) {
    let route = String::from(
        "[[route]]\nname = \"api\"\npath = \"/api/\"\nauth = \"none\"\nupstream = \"http://127.0.0.1:1\"\n\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:1\"\nmax_queue_size = 1\n"
    );
    let sampled = bench_config(&route);
    let unsampled = bench_config(&route.replace("max_queue_size", "sample_ratio = 0.0\nmax_queue_size"));
    let authority = tollgate::authority::parse(b"app.example.com").expect("authority");
    let mut parent = HeaderMap::new();
    parent.insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    for (name, config, headers) in [
        ("telemetry_request_new_trace", &sampled, HeaderMap::new()),
        ("telemetry_request_client_parent", &sampled, parent.clone()),
        ("telemetry_request_unsampled", &unsampled, HeaderMap::new()),
    ] {
        let cfg = config.telemetry.as_ref().expect("[telemetry]");
        let tls = tollgate::tls::client_config(&config.upstream).expect("client TLS");
        let t = tollgate::telemetry::Telemetry::start(cfg, tls, &prometheus::Registry::new()).expect("telemetry");
        let route = &config.routes[0];
        c.bench_function(name, |b| {
            b.iter(|| {
                let span = t.request(black_box(&headers), &Method::GET, "/api/things/1");
                span.auth_outcome("anonymous");
                let mut up = HeaderMap::with_capacity(8);
                if let Some(call) = span.upstream(route, &mut up, 0) {
                    span.upstream_done(call, Ok(StatusCode::OK));
                }
                span.finish(Some(&route.name), Some(&authority), StatusCode::OK);
                black_box(up)
            })
        });
        t.shutdown();
    }
}

criterion_group!(gateway, cookies, sessions, routing, headers, metrics, token_cache, upstream_headers, telemetry);
criterion_main!(gateway);
