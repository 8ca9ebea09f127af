//! An upstream that rejects the token tollgate injected (`401` with `WWW-Authenticate: Bearer
//! error="invalid_token"`), through the real binary against the real OpenID Provider
//! (oidc-provider in `tests/idp`): the token is dropped and fetched again once for all
//! concurrent requests, a bodiless idempotent request is retried once with the new token, a
//! request with a body gets the upstream's 401 and the next one the new token, an upstream
//! that rejects every token costs a bounded number of token requests, and a 401 that does not
//! say `invalid_token` changes nothing. Client-credentials and exchanged tokens alike.
//!
//! Needs node and `cd tests/idp && npm ci`.

mod common;
#[path = "support/idp.rs"]
mod idp;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use common::{full, get, issuer_toml, metric, send, wait_ready, Gateway, RawResponse, BASE};
use hyper::body::Incoming;
use hyper::{Request, Response};
use idp::{Idp, IdpOptions, API_RESOURCE};

const INVALID_TOKEN: &str = r#"Bearer realm="orders", error="invalid_token", error_description="token revoked""#;

/// Which requests the upstream refuses with 401.
#[derive(Clone, Copy)]
enum Reject {
    /// Every request carrying the first token it ever saw, with this `WWW-Authenticate`
    /// (none when empty).
    First(&'static str),
    /// Every request, with [`INVALID_TOKEN`].
    Every,
}

/// One request the upstream received: `METHOD path` and the bearer token.
type Hit = (String, String);

/// A recording upstream on its own runtime.
struct Upstream {
    addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    _rt: tokio::runtime::Runtime,
}

impl Upstream {
    fn start(reject: Reject) -> Upstream {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let seen = hits.clone();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let addr = rt.block_on(common::upstream(Arc::new(move |req: Request<Incoming>| {
            let seen = seen.clone();
            Box::pin(async move {
                let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                let token = auth.strip_prefix("Bearer ").unwrap_or(auth).to_string();
                let refuse = {
                    let mut hits = seen.lock().unwrap();
                    hits.push((format!("{} {}", req.method(), req.uri().path()), token.clone()));
                    match reject {
                        Reject::First(challenge) => (hits[0].1 == token).then_some(challenge),
                        Reject::Every => Some(INVALID_TOKEN),
                    }
                };
                let Some(challenge) = refuse else {
                    return Response::new(full(serde_json::json!({ "token": token }).to_string()));
                };
                // Slow refusals: concurrent requests all hold the rejected token together.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut resp = Response::builder().status(401).header("x-upstream", "said-no");
                if !challenge.is_empty() {
                    resp = resp.header("www-authenticate", challenge);
                }
                resp.body(full("rejected by the upstream")).unwrap()
            })
        })));
        Upstream { addr, hits, _rt: rt }
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn tokens(&self) -> BTreeSet<String> {
        self.hits().into_iter().map(|h| h.1).collect()
    }
}

/// A client-credentials client `orders` and a public route to `up` that sends its token.
fn credentials_gateway(idp: &Idp, up: &Upstream) -> Gateway {
    let config = format!(
        r#"{BASE}{}
[[client]]
name = "orders"
issuer = "idp"
client_id = "m2m"
client_secret = "m2m-secret"
scope = "api:read"
resource = "{API_RESOURCE}"

[[route]]
name = "api"
auth = "none"
path = "/"
upstream = "http://{}"
upstream_token = "orders"
"#,
        issuer_toml("idp", &idp.issuer, API_RESOURCE),
        up.addr
    );
    let gw = Gateway::start(&config);
    wait_ready(&gw);
    gw
}

fn token_of(resp: &RawResponse) -> String {
    assert_eq!(resp.status, 200, "expected 200, got {} {}", resp.status, resp.body);
    resp.json()["token"].as_str().unwrap().to_string()
}

/// The upstream's own 401, passed through as it is.
fn assert_upstreams_401(resp: &RawResponse, challenge: &str) {
    assert_eq!(resp.status, 401, "{}", resp.body);
    assert_eq!(resp.body, "rejected by the upstream", "the upstream's body");
    assert_eq!(resp.header("x-upstream"), Some("said-no"));
    assert_eq!(resp.header("www-authenticate").unwrap_or(""), challenge, "the upstream's challenge, unchanged");
}

fn orders(gw: &Gateway, name: &str) -> f64 {
    metric(gw, name, &[("client", "orders")])
}

/// The first token is rejected: the GET goes again with a new token and the caller gets 200;
/// the provider saw one more token request; the next request uses the new token.
#[test]
fn a_rejected_token_is_renewed_and_the_get_retried() {
    let idp = Idp::start(IdpOptions::default());
    idp.reset_counters();
    let up = Upstream::start(Reject::First(INVALID_TOKEN));
    let gw = credentials_gateway(&idp, &up);

    let second = token_of(&get(gw.addr, "/a", &[]));
    let hits = up.hits();
    assert_eq!(hits.len(), 2, "the first attempt and one retry: {hits:?}");
    assert_ne!(hits[0].1, second, "the retry carried a new token");
    assert_eq!(idp.count("token"), 2, "one token request for the rejected token's replacement");
    assert_eq!(token_of(&get(gw.addr, "/b", &[])), second, "the next request uses the new token");
    assert_eq!(idp.count("token"), 2);
    assert_eq!(orders(&gw, "tollgate_upstream_token_rejections_total"), 1.0);
    assert_eq!(orders(&gw, "tollgate_upstream_token_retries_total"), 1.0);
}

/// 20 concurrent GETs all carrying the first token, all rejected: every caller gets 200 with
/// the one new token, and the provider saw exactly one more token request.
#[test]
fn concurrent_rejections_make_one_new_fetch() {
    let idp = Idp::start(IdpOptions::default());
    idp.set_delay("token", 200);
    idp.reset_counters();
    let up = Upstream::start(Reject::First(INVALID_TOKEN));
    let gw = credentials_gateway(&idp, &up);

    let barrier = Arc::new(Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|i| {
            let (barrier, addr) = (barrier.clone(), gw.addr);
            std::thread::spawn(move || {
                barrier.wait();
                get(addr, &format!("/c{i}"), &[])
            })
        })
        .collect();
    let tokens: BTreeSet<String> = threads.into_iter().map(|t| token_of(&t.join().unwrap())).collect();
    assert_eq!(tokens.len(), 1, "every caller got the one new token: {tokens:?}");
    let first = &up.hits()[0].1;
    assert!(!tokens.contains(first));
    assert_eq!(up.tokens().len(), 2, "the upstream saw two tokens only");
    assert_eq!(idp.count("token"), 2, "20 rejections, one new token request");
    assert!(orders(&gw, "tollgate_upstream_token_retries_total") >= 1.0);
}

/// A POST with a body is not sent twice: the caller gets the upstream's 401; the token is
/// dropped all the same, so the next request carries a new one.
#[test]
fn a_request_with_a_body_is_not_retried_but_the_next_one_has_a_new_token() {
    let idp = Idp::start(IdpOptions::default());
    idp.reset_counters();
    let up = Upstream::start(Reject::First(INVALID_TOKEN));
    let gw = credentials_gateway(&idp, &up);

    assert_upstreams_401(&send(gw.addr, "POST", "/orders", b"{\"n\":1}"), INVALID_TOKEN);
    assert_eq!(up.hits().len(), 1, "sent once: {:?}", up.hits());
    let next = token_of(&get(gw.addr, "/orders", &[]));
    let hits = up.hits();
    assert_eq!(hits.len(), 2, "the GET was not retried: {hits:?}");
    assert_ne!(next, hits[0].1, "the next request carries a new token");
    assert_eq!(idp.count("token"), 2);
    assert_eq!(orders(&gw, "tollgate_upstream_token_retries_total"), 0.0);
}

/// An upstream that rejects every token: the first request is retried once (and fails), the
/// others not at all, and the replacement is not dropped again within the floor: two token
/// requests for any number of requests.
#[test]
fn an_upstream_rejecting_every_token_costs_bounded_token_requests() {
    let idp = Idp::start(IdpOptions::default());
    idp.reset_counters();
    let up = Upstream::start(Reject::Every);
    let gw = credentials_gateway(&idp, &up);

    for i in 0..6 {
        assert_upstreams_401(&get(gw.addr, &format!("/e{i}"), &[]), INVALID_TOKEN);
    }
    let paths: Vec<String> = up.hits().into_iter().map(|h| h.0).collect();
    let per_request = |i: usize| paths.iter().filter(|p| **p == format!("GET /e{i}")).count();
    assert_eq!(per_request(0), 2, "the first request was retried once: {paths:?}");
    for i in 1..6 {
        assert_eq!(per_request(i), 1, "request {i} was not retried with the same token: {paths:?}");
    }
    assert_eq!(up.tokens().len(), 2, "{paths:?}");
    assert_eq!(idp.count("token"), 2, "token requests stay bounded");
    assert_eq!(orders(&gw, "tollgate_upstream_token_rejections_total"), 7.0);
    assert_eq!(orders(&gw, "tollgate_upstream_token_retries_total"), 1.0);
}

/// A 401 that does not say `invalid_token` (no challenge, `insufficient_scope`, another
/// scheme's error) is the upstream's answer and nothing more: no retry, the token is kept.
#[test]
fn a_401_without_invalid_token_changes_nothing() {
    for challenge in ["", r#"Bearer error="insufficient_scope""#, r#"DPoP error="invalid_token""#] {
        let idp = Idp::start(IdpOptions::default());
        idp.reset_counters();
        let up = Upstream::start(Reject::First(challenge));
        let gw = credentials_gateway(&idp, &up);
        for path in ["/n1", "/n2"] {
            assert_upstreams_401(&get(gw.addr, path, &[]), challenge);
        }
        assert_eq!(up.hits().len(), 2, "{challenge:?}: no retry: {:?}", up.hits());
        assert_eq!(up.tokens().len(), 1, "{challenge:?}: the token is kept");
        assert_eq!(idp.count("token"), 1, "{challenge:?}");
        assert_eq!(orders(&gw, "tollgate_upstream_token_rejections_total"), 0.0, "{challenge:?}");
    }
}

/// An exchanged token the upstream rejects is exchanged again (one more exchange) and the GET
/// retried with it; the caller gets 200.
#[test]
fn a_rejected_exchanged_token_is_exchanged_again_and_the_get_retried() {
    let idp = Idp::start(IdpOptions::default());
    let up = Upstream::start(Reject::First("bearer error=invalid_token"));
    let config = format!(
        r#"{BASE}{}
[[client]]
name = "orders"
issuer = "idp"
grant = "token_exchange"
client_id = "exchanger"
client_secret = "exchanger-secret"
audience = "https://orders.tollgate.test"
scope = "api:read"

[[route]]
name = "orders"
auth = "bearer"
path = "/"
upstream = "http://{}"
upstream_token = "orders"
"#,
        issuer_toml("idp", &idp.issuer, API_RESOURCE),
        up.addr
    );
    let gw = Gateway::start(&config);
    wait_ready(&gw);
    let caller = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    idp.reset_counters();
    let auth = format!("Bearer {caller}");

    let second = token_of(&get(gw.addr, "/x", &[("Authorization", &auth)]));
    let hits = up.hits();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_ne!(hits[0].1, second, "the retry carried a newly exchanged token");
    assert!(!up.tokens().contains(&caller), "never the caller's own token");
    assert_eq!(idp.count("token_exchange"), 2, "one more exchange");
    assert_eq!(token_of(&get(gw.addr, "/y", &[("Authorization", &auth)])), second);
    assert_eq!(idp.count("token_exchange"), 2, "the new exchanged token is cached");
    assert_eq!(orders(&gw, "tollgate_upstream_token_retries_total"), 1.0);
}
