//! Token exchange (RFC 8693) for upstream calls (`[[client]] grant = "token_exchange"`, route
//! `upstream_token`) through the real binary against the real OpenID Provider (oidc-provider in
//! `tests/idp`, with the token-exchange grant handler registered in `server.mjs`): the upstream
//! receives the exchanged token only (verified against the provider's keys: its `aud`, `act`
//! and `sub`), never the caller's; 200 concurrent requests with one caller token make one
//! exchange; a refusal is a 403 naming the client, an outage a 503, and neither reaches the
//! upstream; a cache entry never outlives the caller's token; the actor token is sent when
//! configured; a reload keeps the cache; `tollgate check` refuses every configuration that
//! would give the upstream the caller's token.
//!
//! Needs node and `cd tests/idp && npm ci`. Every test starts its own provider and gateway, so
//! provider-side counters belong to one test only.

mod common;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/login.rs"]
mod login;

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{check, dead_port, echo, get, metric, wait_ready, wait_until, Gateway, RawResponse, TempDir, BASE};
use idp::{jwt_parts, Idp, IdpOptions, API_RESOURCE};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

/// The audience the provider's exchange handler allows by default (IDP_EXCHANGE_AUDIENCES).
const ORDERS: &str = "https://orders.tollgate.test";

// ---- helpers ------------------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The issuer `idp` (audience `API_RESOURCE`) and the exchange client `orders` for the
/// audience `audience`, plus `extra` lines in the client's table.
fn issuer_and_client(idp: &Idp, audience: &str, extra: &str) -> String {
    format!(
        r#"
[[issuer]]
name = "idp"
url = "{}"
audiences = ["{API_RESOURCE}"]
leeway = "30s"

[[client]]
name = "orders"
issuer = "idp"
grant = "token_exchange"
client_id = "exchanger"
client_secret = "exchanger-secret"
audience = "{audience}"
scope = "api:read"
{extra}
"#,
        idp.issuer
    )
}

/// A bearer route at `path` to `upstream` whose upstream token is `orders`' exchange; `extra`
/// lines in the route's table.
fn route_toml(path: &str, upstream: SocketAddr, extra: &str) -> String {
    format!(
        "\n[[route]]\nname = \"orders\"\nauth = \"bearer\"\npath = \"{path}\"\nupstream = \"http://{upstream}\"\n\
         upstream_token = \"orders\"\n{extra}\n"
    )
}

fn gateway(config: &str) -> Gateway {
    let gw = Gateway::start(config);
    wait_ready(&gw);
    gw
}

/// A caller token: the provider's JWT for `API_RESOURCE`, `sub` = the client (`m2m`).
fn caller_token(idp: &Idp) -> String {
    idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE))
}

fn call(gw: &Gateway, path: &str, token: &str) -> RawResponse {
    get(gw.addr, path, &[("Authorization", &format!("Bearer {token}"))])
}

fn ok_json(resp: &RawResponse) -> Value {
    assert_eq!(resp.status, 200, "expected 200, got {} {}", resp.status, resp.body);
    resp.json()
}

/// The single `Authorization: Bearer` token the echo upstream received.
fn upstream_bearer(echoed: &Value) -> String {
    let values = echoed["headers"]["authorization"].as_array().unwrap_or_else(|| panic!("no Authorization: {echoed}"));
    assert_eq!(values.len(), 1, "exactly one Authorization upstream: {echoed}");
    let v = values[0].as_str().unwrap();
    v.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a Bearer credential: {v}")).to_string()
}

/// Verifies the exchanged `token` against the provider's keys for audience `ORDERS` and
/// returns its claims.
fn verify_exchanged(idp: &Idp, token: &str) -> Value {
    let keys: JwkSet = serde_json::from_value(idp.jwks()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap_or_else(|e| panic!("not a JWT ({e}): {token}"));
    let jwk = keys.find(header.kid.as_deref().unwrap()).expect("the exchanged token's kid is in the provider's JWKS");
    let mut v = Validation::new(header.alg);
    v.set_audience(&[ORDERS]);
    v.set_issuer(&[&idp.issuer]);
    v.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .unwrap_or_else(|e| panic!("the exchanged token does not verify: {e}: {token}"))
        .claims
}

fn exchanges(idp: &Idp) -> u64 {
    idp.count("token_exchange")
}

fn exchange_metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("client", "orders")];
    all.extend_from_slice(labels);
    metric(gw, name, &all)
}

/// GETs `path` with `token` from `threads` threads released together.
fn concurrent_calls(addr: SocketAddr, path: &str, token: &str, threads: usize) -> Vec<RawResponse> {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (barrier, path, auth) = (barrier.clone(), path.to_string(), format!("Bearer {token}"));
            std::thread::spawn(move || {
                barrier.wait();
                get(addr, &path, &[("Authorization", &auth)])
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

// ---- 1. the upstream receives the exchanged token, and only it ----------------------------------

/// The upstream gets one `Authorization: Bearer` with a JWT that verifies against the
/// provider's keys, `aud` = the configured audience, `act.sub` = tollgate's client, `sub` =
/// the caller's subject; the caller's token appears nowhere in what the upstream received
/// (not from the header, not from an accepted query parameter or cookie, although
/// `forward_authorization` is on by default).
#[test]
fn upstream_receives_only_the_exchanged_token() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let sources = r#"token_sources = ["header", "query:access_token", "cookie:at"]"#;
    let config = format!("{BASE}{}{}", issuer_and_client(&idp, ORDERS, ""), route_toml("/orders/", up.addr, sources));
    let gw = gateway(&config);
    let caller = caller_token(&idp);
    let (_, caller_claims) = jwt_parts(&caller);

    let echoed = ok_json(&call(&gw, "/orders/list?id=7", &caller));
    let exchanged = upstream_bearer(&echoed);
    assert_ne!(exchanged, caller, "the upstream got the caller's own token");
    assert!(!echoed.to_string().contains(&caller), "the caller's token reached the upstream: {echoed}");
    let claims = verify_exchanged(&idp, &exchanged);
    assert_eq!(claims["aud"], ORDERS, "{claims}");
    assert_eq!(claims["act"]["sub"], "exchanger", "{claims}");
    assert_eq!(claims["sub"], caller_claims["sub"], "the exchanged token speaks for the caller: {claims}");
    assert_eq!(claims["sub"], "m2m");
    assert_eq!(claims["scope"], "api:read");
    assert_eq!(echoed["uri"], "/orders/list?id=7");

    // The same token from the query string and from a cookie: hidden from the upstream too.
    for (path, headers) in [
        (format!("/orders/q?id=8&access_token={caller}"), vec![]),
        ("/orders/c".to_string(), vec![("Cookie".to_string(), format!("theme=dark; at={caller}"))]),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let echoed = ok_json(&get(gw.addr, &path, &headers));
        assert!(!echoed.to_string().contains(&caller), "the caller's token reached the upstream: {echoed}");
        assert_eq!(upstream_bearer(&echoed), exchanged, "answered from the cache: same caller token");
    }
    assert_eq!(exchanges(&idp), 1, "one caller token, one exchange");
}

// ---- 2. single flight and one entry per caller token -----------------------------------------

/// 200 concurrent requests with one caller token make exactly one exchange at the provider,
/// and all get the same exchanged token; a second caller token makes a second exchange; the
/// metrics count one exchange per token and every other lookup as a hit.
#[test]
fn concurrent_requests_with_one_caller_token_make_one_exchange() {
    let idp = Idp::start(IdpOptions::default());
    // Slow exchanges, so that the 200 requests really are waiting on one together.
    idp.set_delay("token", 300);
    let up = echo();
    let gw = gateway(&format!("{BASE}{}{}", issuer_and_client(&idp, ORDERS, ""), route_toml("/", up.addr, "")));
    let first = caller_token(&idp);
    idp.reset_counters();

    let responses = concurrent_calls(gw.addr, "/x", &first, 200);
    let tokens: std::collections::BTreeSet<String> = responses.iter().map(|r| upstream_bearer(&ok_json(r))).collect();
    assert_eq!(tokens.len(), 1, "every request got the one exchanged token");
    assert_eq!(exchanges(&idp), 1, "200 concurrent requests, one exchange");
    assert_eq!(idp.count("token"), 1, "nothing else reached the token endpoint");
    assert_eq!(exchange_metric(&gw, "tollgate_token_exchange_requests_total", &[("outcome", "ok")]), 1.0);
    let hits = exchange_metric(&gw, "tollgate_token_exchange_cache_total", &[("result", "hit")]);
    let misses = exchange_metric(&gw, "tollgate_token_exchange_cache_total", &[("result", "miss")]);
    assert_eq!(hits + misses, 200.0, "hits {hits}, misses {misses}");

    idp.set_delay("token", 0);
    let second = caller_token(&idp);
    let other = upstream_bearer(&ok_json(&call(&gw, "/y", &second)));
    assert!(!tokens.contains(&other), "another caller token, another exchanged token");
    assert_eq!(exchanges(&idp), 2, "a second caller token makes a second exchange");
    assert_eq!(upstream_bearer(&ok_json(&call(&gw, "/z", &first))), *tokens.iter().next().unwrap());
    assert_eq!(exchanges(&idp), 2, "the first token's exchange is still cached");
}

// ---- 3. a refusal is a 403 ---------------------------------------------------------------------

/// The provider refuses the audience (`invalid_target`): 403 with a body naming the route, the
/// client and the provider's error, nothing sent to the upstream (a dead address: a forwarded
/// request would be a 502). The refusal is remembered briefly: a retry within it makes no
/// second exchange.
#[test]
fn a_refused_exchange_is_403_naming_the_client() {
    let idp = Idp::start(IdpOptions::default());
    let config =
        format!("{BASE}{}{}", issuer_and_client(&idp, "https://elsewhere.test", ""), route_toml("/", dead_port(), ""));
    let gw = gateway(&config);
    let caller = caller_token(&idp);

    let resp = call(&gw, "/x", &caller);
    assert_eq!(resp.status, 403, "{}", resp.body);
    for part in ["refused to exchange", "route orders", "client orders", "invalid_target", "https://elsewhere.test"] {
        assert!(resp.body.contains(part), "the body should say {part:?}: {}", resp.body);
    }
    assert!(!resp.body.contains(&caller), "the body must not repeat the token: {}", resp.body);
    assert_eq!(exchanges(&idp), 1);
    assert_eq!(call(&gw, "/x", &caller).status, 403);
    assert_eq!(exchanges(&idp), 1, "a refusal is remembered for a few seconds");
    assert_eq!(exchange_metric(&gw, "tollgate_token_exchange_requests_total", &[("outcome", "refused")]), 1.0);
}

// ---- 4. an outage is a 503 -----------------------------------------------------------------------

/// The token endpoint failing (500) and then the provider gone: 503 each time, nothing reaches
/// the upstream (a dead address would give 502), and the caller's token is never passed on
/// instead. Outages are not cached: once the provider answers again, the next request is
/// exchanged.
#[test]
fn an_unreachable_or_failing_provider_is_503() {
    let mut idp = Idp::start(IdpOptions::default());
    let up = echo();
    let config = format!(
        "{BASE}{}{}{}",
        issuer_and_client(&idp, ORDERS, ""),
        route_toml("/dead/", dead_port(), ""),
        route_toml("/live/", up.addr, "").replace("name = \"orders\"", "name = \"live\"")
    );
    let gw = gateway(&config);
    let caller = caller_token(&idp);

    idp.set_failure("token", 500);
    let resp = call(&gw, "/dead/x", &caller);
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(resp.body.contains("route orders"), "{}", resp.body);
    idp.set_failure("token", 0);
    let echoed = ok_json(&call(&gw, "/live/x", &caller));
    assert_ne!(upstream_bearer(&echoed), caller, "after the outage, an exchanged token");
    assert_eq!(exchanges(&idp), 1, "the failed call was not cached: one exchange when the provider is back");

    let other = caller_token(&idp);
    idp.stop();
    let resp = call(&gw, "/dead/x", &other);
    assert_eq!(resp.status, 503, "{}", resp.body);
    assert!(exchange_metric(&gw, "tollgate_token_exchange_requests_total", &[("outcome", "error")]) >= 2.0);
}

// ---- 5. the cache never outlives the caller token ------------------------------------------------

/// Caller tokens live 4 s, exchanged ones 300 s. The exchanged token is used only while the
/// caller's is valid: a new exchange happens before the caller token expires, and after that
/// (still within the gateway's 30 s leeway, so the caller is accepted) the provider is asked
/// again and refuses the expired subject token: 403, never the long-lived cached token (and
/// the refusal is remembered, so retries within the leeway do not each make an exchange).
#[test]
fn a_cached_exchange_does_not_outlive_the_caller_token() {
    let idp = Idp::start(IdpOptions { at_ttl: Some(4), ..Default::default() });
    let up = echo();
    let gw = gateway(&format!("{BASE}{}{}", issuer_and_client(&idp, ORDERS, ""), route_toml("/", up.addr, "")));
    let caller = caller_token(&idp);
    let (_, claims) = jwt_parts(&caller);
    let exp = claims["exp"].as_u64().unwrap();

    let exchanged = upstream_bearer(&ok_json(&call(&gw, "/x", &caller)));
    assert!(verify_exchanged(&idp, &exchanged)["exp"].as_u64().unwrap() > exp + 200, "the exchanged token lives long");
    assert_eq!(exchanges(&idp), 1);
    wait_until("a second exchange while the caller token is valid", Duration::from_secs(6), || {
        let resp = call(&gw, "/x", &caller);
        (exchanges(&idp) >= 2).then_some(resp)
    });
    assert!(now() <= exp, "the cache entry was renewed only after the caller token expired");
    wait_until("the caller token to expire", Duration::from_secs(8), || (now() > exp).then_some(()));
    let resp = call(&gw, "/x", &caller);
    assert_eq!(resp.status, 403, "an expired caller token must not get the cached exchange: {}", resp.body);
    assert!(resp.body.contains("invalid_grant"), "{}", resp.body);
    let asked = exchanges(&idp);
    assert_eq!(call(&gw, "/x", &caller).status, 403);
    assert_eq!(exchanges(&idp), asked, "the refusal is remembered, also for an expired caller token");
}

// ---- 6. the actor token --------------------------------------------------------------------------

/// With `actor_token = true` the client's own client-credentials token goes with the exchange
/// (the provider counts exchanges that carried a valid one, and refuses invalid ones).
#[test]
fn the_clients_own_token_is_sent_as_actor_token() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let client = issuer_and_client(&idp, ORDERS, "actor_token = true");
    let gw = gateway(&format!("{BASE}{client}{}", route_toml("/", up.addr, "")));
    let caller = caller_token(&idp);
    let claims = verify_exchanged(&idp, &upstream_bearer(&ok_json(&call(&gw, "/x", &caller))));
    assert_eq!(claims["act"]["sub"], "exchanger", "{claims}");
    assert_eq!(idp.count("token_exchange_actor"), 1, "the exchange carried the actor token: {}", idp.counters());
}

// ---- 7. reload keeps the cache -------------------------------------------------------------------

/// A reload that leaves the client's table alone keeps its exchanged tokens: no new exchange
/// for a caller token exchanged before it; a changed client table starts afresh.
#[test]
fn a_reload_keeps_the_exchange_cache_of_an_unchanged_client() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let base = BASE.replacen("workers = 2", "workers = 2\nconfig_check_interval = \"200ms\"", 1);
    let config = format!("{base}{}{}", issuer_and_client(&idp, ORDERS, ""), route_toml("/", up.addr, ""));
    let gw = gateway(&config);
    let caller = caller_token(&idp);
    let before = upstream_bearer(&ok_json(&call(&gw, "/x", &caller)));
    assert_eq!(exchanges(&idp), 1);

    let reloads = |n: f64| {
        wait_until("a reload", Duration::from_secs(15), || {
            (metric(&gw, "tollgate_config_reloads_total", &[("outcome", "success")]) >= n).then_some(())
        })
    };
    let rewrite = |text: &str| {
        let (file, tmp) = (gw.dir.path("tollgate.toml"), gw.dir.path("tollgate.toml.new"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    rewrite(&format!(
        "{config}\n[[route]]\nname = \"other\"\nauth = \"none\"\npath = \"/other/\"\nupstream = \"http://{}\"\n",
        up.addr
    ));
    reloads(1.0);
    assert_eq!(upstream_bearer(&ok_json(&call(&gw, "/x", &caller))), before);
    assert_eq!(exchanges(&idp), 1, "the unchanged client kept its cache across the reload");

    rewrite(&config.replace("scope = \"api:read\"", "scope = \"api:write\""));
    reloads(2.0);
    let after = upstream_bearer(&ok_json(&call(&gw, "/x", &caller)));
    assert_eq!(exchanges(&idp), 2, "a changed client starts with an empty cache");
    assert_eq!(verify_exchanged(&idp, &after)["scope"], "api:write");
}

// ---- 8. configuration ----------------------------------------------------------------------------

/// `tollgate check` refuses a token-exchange client where there is no caller token to exchange
/// (a public route, an egress listener), every setting that would send the caller's token to
/// the upstream beside the exchanged one, exchange settings on a client-credentials client,
/// and a bad grant or token type; each error names its field.
#[test]
fn check_refuses_exchange_clients_that_could_leak_the_callers_token() {
    let dir = TempDir::new("exchange-check");
    let head = r#"
[[issuer]]
name = "idp"
url = "https://idp.example"
audiences = ["api"]

[[client]]
name = "x"
issuer = "idp"
grant = "token_exchange"
client_id = "exchanger"
client_secret = "s"
audience = "https://orders.example"
"#;
    let route = |extra: &str| {
        format!("\n[[route]]\nname = \"r\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\nupstream_token = \"x\"\n{extra}\n")
    };
    let cases: Vec<(String, &[&str])> = vec![
        (route("auth = \"none\""), &["route[0].upstream_token", "must authenticate a caller"]),
        (
            route("auth = \"bearer\"\nincoming_authorization = \"X-Original\""),
            &["route[0].incoming_authorization", "must not reach the upstream"],
        ),
        (
            route("auth = \"bearer\"\npass_access_token = true"),
            &["route[0].pass_access_token", "X-Forwarded-Access-Token"],
        ),
        (
            "\n[[egress]]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\nclient = \"x\"\n".into(),
            &["egress[0].client", "egress listener authenticates no caller"],
        ),
    ];
    for (i, (tail, expected)) in cases.iter().enumerate() {
        let file = dir.path(&format!("c{i}.toml"));
        std::fs::write(&file, format!("{BASE}{head}{tail}")).unwrap();
        let (code, out) = check(&file, &[]);
        assert_ne!(code, 0, "case {i} should fail:\n{out}");
        for e in *expected {
            assert!(out.contains(e), "case {i}: {e:?} not in\n{out}");
        }
    }
    let bad_client = r#"
[[issuer]]
name = "idp"
url = "https://idp.example"
audiences = ["api"]

[[client]]
name = "cc"
issuer = "idp"
client_id = "a"
client_secret = "s"
actor_token = true
subject_token_type = "urn:ietf:params:oauth:token-type:jwt"

[[client]]
name = "te"
issuer = "idp"
grant = "token-exchange"
client_id = "b"
client_secret = "s"

[[client]]
name = "te2"
issuer = "idp"
grant = "token_exchange"
client_id = "c"
client_secret = "s"
subject_token_type = "access token"
actor_token_type = "urn:ietf:params:oauth:token-type:jwt"
extra_params = { subject_token = "x" }
"#;
    let file = dir.path("clients.toml");
    std::fs::write(&file, format!("{BASE}{bad_client}")).unwrap();
    let (code, out) = check(&file, &[]);
    assert_ne!(code, 0, "{out}");
    for e in [
        "client[0].actor_token",
        "client[0].subject_token_type",
        r#"only applies with grant = "token_exchange""#,
        "client[1].grant",
        "client[2].subject_token_type",
        "not a token type URI",
        "client[2].actor_token_type",
        "only applies with actor_token = true",
        "client[2].extra_params.subject_token",
    ] {
        assert!(out.contains(e), "{e:?} not in\n{out}");
    }

    // A valid one: bearer route, defaults.
    let file = dir.path("ok.toml");
    std::fs::write(&file, format!("{BASE}{head}{}", route("auth = \"bearer\""))).unwrap();
    let (code, out) = check(&file, &[]);
    assert_eq!(code, 0, "{out}");
}

// ---- 9. a session's access token -----------------------------------------------------------------

/// On a login route the session's access token is the one exchanged: the upstream gets a token
/// for the signed-in user (`sub` = the login name, `act` = tollgate's client), and neither the
/// session cookie nor the session's own token.
#[test]
fn a_sessions_access_token_is_exchanged_on_login_routes() {
    let port = dead_port().port();
    let public = format!("http://127.0.0.1:{port}");
    let idp = Idp::start(
        IdpOptions::default()
            .with_env("IDP_WEB_REDIRECT_URIS", format!("{public}/oauth2/callback"))
            .with_env("IDP_WEB_POST_LOGOUT_URIS", format!("{public}/"))
            // The session's access token is then a JWT (the handler exchanges JWTs only).
            .with_env("IDP_DEFAULT_RESOURCE", API_RESOURCE),
    );
    let up = echo();
    let base = BASE.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1);
    let config = format!(
        "{base}{}\n[login]\nclient_id = \"web\"\nclient_secret = \"web-secret\"\npublic_url = \"{public}\"\n\
         scopes = [\"openid\", \"email\", \"profile\"]\ncookie_secret = \"0123456789abcdef0123456789abcdef\"\n\
         \n[[route]]\nname = \"orders\"\nauth = \"login\"\npath = \"/\"\nupstream = \"http://{}\"\nupstream_token = \"orders\"\n",
        issuer_and_client(&idp, ORDERS, ""),
        up.addr
    );
    let gw = gateway(&config);
    let session = login::login(&public, "/orders", "alice");
    let cookie = session.cookie_header();

    let echoed = ok_json(&get(gw.addr, "/orders", &[("Cookie", &cookie)]));
    let claims = verify_exchanged(&idp, &upstream_bearer(&echoed));
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["act"]["sub"], "exchanger", "{claims}");
    assert!(echoed["headers"]["cookie"].is_null(), "the session cookie reached the upstream: {echoed}");
    assert_eq!(exchanges(&idp), 1);
    let again = ok_json(&get(gw.addr, "/orders", &[("Cookie", &cookie)]));
    assert_eq!(upstream_bearer(&again), upstream_bearer(&echoed));
    assert_eq!(exchanges(&idp), 1, "the session's token is exchanged once");
}

// ---- 10. a token endpoint that answers nonsense ----------------------------------------------------

/// A token endpoint (a fake one here; the caller's tokens still come from the real provider)
/// that answers 200 with no usable token, in each of the ways a broken provider or a proxy in
/// front of it might, including a body over the 1 MiB the gateway reads, or `invalid_client`
/// (tollgate's own credentials): 503 each time, nothing sent upstream, and each is asked again
/// (not cached).
#[test]
fn unusable_token_endpoint_answers_are_503() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let idp = Idp::start(IdpOptions::default());
    let ty = r#""issued_token_type":"urn:ietf:params:oauth:token-type:access_token""#;
    let answers: Vec<(u16, String)> = vec![
        (200, "not json".into()),
        (200, format!(r#"{{"token_type":"Bearer",{ty}}}"#)),
        (200, format!(r#"{{"access_token":"t","token_type":"N_A",{ty}}}"#)),
        (200, r#"{"access_token":"t","token_type":"Bearer"}"#.into()),
        (200, format!(r#"{{"access_token":"{}","token_type":"Bearer",{ty}}}"#, "x".repeat(2 << 20))),
        (401, r#"{"error":"invalid_client"}"#.into()),
        (502, "<html>bad gateway</html>".into()),
    ];
    let n = answers.len();
    let served = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let fake = {
        let (answers, served) = (Arc::new(answers), served.clone());
        rt.block_on(common::upstream(Arc::new(move |_req| {
            let (answers, served) = (answers.clone(), served.clone());
            Box::pin(async move {
                let (status, body) = answers[served.fetch_add(1, Ordering::SeqCst) % answers.len()].clone();
                hyper::Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(common::full(body))
                    .unwrap()
            })
        })))
    };
    let client = issuer_and_client(&idp, ORDERS, "").replace(
        "issuer = \"idp\"\ngrant",
        &format!("token_endpoint = \"http://{fake}/token\"\ninsecure_http = true\ngrant"),
    );
    let gw = gateway(&format!("{BASE}{client}{}", route_toml("/", dead_port(), "")));
    let caller = caller_token(&idp);
    for i in 0..n {
        let resp = call(&gw, "/x", &caller);
        assert_eq!(resp.status, 503, "answer {i}: {}", resp.body);
        assert!(!resp.body.contains(&caller));
    }
    assert_eq!(served.load(Ordering::SeqCst), n, "every failure was asked again");
    assert_eq!(exchange_metric(&gw, "tollgate_token_exchange_requests_total", &[("outcome", "error")]), n as f64);
}
