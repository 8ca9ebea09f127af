//! Client-credentials tokens for upstream calls (`[[client]]`, route `upstream_token`,
//! `[[egress]]`) through the real binary against the real OpenID Provider (panva's
//! oidc-provider in `tests/idp`): the minted RFC 9068 JWT is checked against the provider's
//! JWKS, the caller's own `Authorization` is moved or dropped, concurrent cold misses make one
//! token request, tokens are renewed after expiry, a held token survives the provider going
//! away, no token means 503, every client authentication method is accepted, egress listeners
//! work, and the metrics say what happened.
//!
//! Needs node and `cd tests/idp && npm ci`. Every test starts its own provider and gateway, so
//! provider-side counters belong to one test only.

mod common;
#[path = "support/idp.rs"]
mod idp;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::issuer_toml;
use common::wait_ready;
use common::{admin, dead_port, echo, get, metric, metric_in, wait_until, Gateway, RawResponse, TempDir, BASE};
use idp::{jwt_parts, key_file, Idp, IdpOptions, API_RESOURCE};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

// ---- helpers ------------------------------------------------------------------------------------

/// True when metric `name` has a sample with exactly these labels present (whatever its value).
fn has_series(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> bool {
    let text = admin(gw, "/metrics").body;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The `[[issuer]]` for the provider (or any URL), audience `API_RESOURCE`.
fn issuer_for(url: &str) -> String {
    issuer_toml("idp", url, API_RESOURCE)
}

/// A `[[client]]` named `orders` for the issuer `idp`; `auth` holds the client id and its
/// authentication keys, `extra` anything else (e.g. `refresh_skew`).
fn client_toml(auth: &str, extra: &str) -> String {
    format!(
        r#"
[[client]]
name = "orders"
issuer = "idp"
{auth}
scope = "api:read"
resource = "{API_RESOURCE}"
{extra}
"#
    )
}

const BASIC: &str = r#"client_id = "m2m"
client_secret = "m2m-secret"
auth_method = "client_secret_basic""#;

/// A `[[route]]` without caller authentication that sends `orders`' token upstream.
/// A ready gateway with the provider's issuer, a client (`auth`, plus `extra` lines) and one
/// route `name` at `/` to a new echo upstream.
fn one_route_gateway(idp: &Idp, auth: &str, extra: &str, name: &str) -> (Gateway, common::Echo) {
    let up = echo();
    let config = format!(
        "{BASE}{}{}{}",
        issuer_for(&idp.issuer),
        client_toml(auth, extra),
        route_toml(name, "/", up.addr, None)
    );
    let gw = Gateway::start(&config);
    wait_ready(&gw);
    (gw, up)
}

fn route_toml(name: &str, path: &str, upstream: SocketAddr, incoming: Option<&str>) -> String {
    let incoming = incoming.map(|h| format!("incoming_authorization = \"{h}\"\n")).unwrap_or_default();
    format!(
        "\n[[route]]\nname = \"{name}\"\nauth = \"none\"\npath = \"{path}\"\nupstream = \"http://{upstream}\"\nupstream_token = \"orders\"\n{incoming}"
    )
}

/// The provider's signing keys.
fn jwks(idp: &Idp) -> JwkSet {
    serde_json::from_value(idp.jwks()).expect("the provider's /jwks is a JWK set")
}

/// Verifies `token` (signature against the provider's JWKS, `iss`, `aud` = `API_RESOURCE`,
/// `exp`) and returns its claims.
fn verify(keys: &JwkSet, issuer: &str, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap_or_else(|e| panic!("not a JWT ({e}): {token}"));
    let kid = header.kid.as_deref().unwrap_or_else(|| panic!("no kid in {header:?}"));
    let jwk = keys.find(kid).unwrap_or_else(|| panic!("kid {kid} is not in the provider's JWKS"));
    let key = DecodingKey::from_jwk(jwk).unwrap();
    let mut v = Validation::new(header.alg);
    v.set_audience(&[API_RESOURCE]);
    v.set_issuer(&[issuer]);
    v.leeway = 0;
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap_or_else(|e| panic!("the minted token does not verify against the provider's JWKS: {e}: {token}"))
        .claims
}

/// The single `Authorization: Bearer` token the echo upstream received.
fn upstream_bearer(echoed: &Value) -> String {
    let values = echoed["headers"]["authorization"].as_array().unwrap_or_else(|| panic!("no Authorization: {echoed}"));
    assert_eq!(values.len(), 1, "exactly one Authorization upstream: {echoed}");
    let v = values[0].as_str().unwrap();
    v.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a Bearer credential: {v}")).to_string()
}

fn assert_scope_has(claims: &Value, scope: &str) {
    let scopes = claims["scope"].as_str().unwrap_or_else(|| panic!("no scope claim: {claims}"));
    assert!(scopes.split(' ').any(|s| s == scope), "scope {scope:?} not in {scopes:?}");
}

fn ok_json(resp: &RawResponse) -> Value {
    assert_eq!(resp.status, 200, "expected 200, got {} {}", resp.status, resp.body);
    resp.json()
}

/// The bound address of egress listener `name`, from the gateway's "listening" log line
/// (`egress = "name=addr,..."`).
fn egress_addr(gw: &Gateway, name: &str) -> SocketAddr {
    let logs = gw.logs();
    let line = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "listening" || v["fields"]["message"] == "listening")
        .unwrap_or_else(|| panic!("no listening line in:\n{logs}"));
    let egress = line["egress"].as_str().or_else(|| line["fields"]["egress"].as_str()).unwrap_or_default();
    egress
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, a)| a.parse().unwrap())
        .unwrap_or_else(|| panic!("no egress {name:?} in the listening line: {line}"))
}

/// GETs `path` from `threads` threads at once (released together) and returns the responses.
fn concurrent_gets(addr: SocketAddr, path: &str, threads: usize) -> Vec<RawResponse> {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = barrier.clone();
            let path = path.to_string();
            std::thread::spawn(move || {
                barrier.wait();
                get(addr, &path, &[])
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

// ---- 1. the minted token replaces the caller's Authorization ----------------------------------

/// The upstream gets `Authorization: Bearer <JWT>` that verifies against the provider's keys
/// with `aud` = the resource and `api:read` in `scope`; the caller's own `Authorization` is
/// moved to the configured header (`incoming_authorization`) or dropped, and a client-sent copy
/// of the move-to header never reaches the upstream as sent.
#[test]
fn minted_token_replaces_the_callers_authorization() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let config = format!(
        "{BASE}{}{}{}{}",
        issuer_for(&idp.issuer),
        client_toml(BASIC, ""),
        route_toml("moved", "/moved/", up.addr, Some("X-Original-Authorization")),
        route_toml("dropped", "/dropped/", up.addr, Some("drop")),
    );
    // The sidecar shape: callers need a bearer JWT, the app gets the minted token instead.
    let config = format!(
        "{config}\n[[route]]\nname = \"secure\"\nauth = \"bearer\"\npath = \"/secure/\"\nupstream = \"http://{}\"\n\
         upstream_token = \"orders\"\nincoming_authorization = \"X-Original-Authorization\"\n",
        up.addr
    );
    let gw = Gateway::start(&config);
    wait_ready(&gw);
    let keys = jwks(&idp);

    // The caller's Authorization moves to X-Original-Authorization; its forged copy is gone.
    let echoed = ok_json(&get(
        gw.addr,
        "/moved/orders?id=7",
        &[("Authorization", "Bearer caller-token-abc"), ("X-Original-Authorization", "Bearer forged-by-client")],
    ));
    assert_eq!(echoed["uri"], "/moved/orders?id=7");
    let token = upstream_bearer(&echoed);
    let claims = verify(&keys, &idp.issuer, &token);
    assert_eq!(claims["aud"], API_RESOURCE, "{claims}");
    assert_eq!(claims["client_id"], "m2m", "{claims}");
    assert_scope_has(&claims, "api:read");
    assert!(claims["exp"].as_u64().unwrap() > now(), "{claims}");
    assert_eq!(
        echoed["headers"]["x-original-authorization"],
        serde_json::json!(["Bearer caller-token-abc"]),
        "the caller's Authorization, and only it, under the configured header: {echoed}"
    );
    assert!(!echoed.to_string().contains("forged-by-client"), "a client-sent copy passed through: {echoed}");

    // Without an Authorization of its own, a client-sent X-Original-Authorization is removed.
    let echoed = ok_json(&get(gw.addr, "/moved/x", &[("X-Original-Authorization", "Bearer forged-by-client")]));
    assert_eq!(upstream_bearer(&echoed), token, "the held token is reused");
    assert!(echoed["headers"].get("x-original-authorization").is_none(), "forged header passed: {echoed}");

    // "drop": the caller's credential goes nowhere.
    let echoed = ok_json(&get(gw.addr, "/dropped/y", &[("Authorization", "Bearer caller-token-abc")]));
    assert_eq!(upstream_bearer(&echoed), token);
    assert!(!echoed.to_string().contains("caller-token-abc"), "the caller's token reached the upstream: {echoed}");
    assert!(echoed["headers"].get("x-original-authorization").is_none(), "{echoed}");

    // A bearer route: the caller's verified JWT moves aside, the upstream gets the minted one.
    let caller = idp.access_token("m2m-post", "m2m-post-secret", Some("api:write"), Some(API_RESOURCE));
    assert_eq!(get(gw.addr, "/secure/z", &[]).status, 401, "the bearer route still needs a caller token");
    let echoed = ok_json(&get(
        gw.addr,
        "/secure/z",
        &[("Authorization", &format!("Bearer {caller}")), ("X-Original-Authorization", "Bearer forged-by-client")],
    ));
    assert_eq!(upstream_bearer(&echoed), token, "the minted token, not the caller's");
    assert_eq!(echoed["headers"]["x-original-authorization"], serde_json::json!([format!("Bearer {caller}")]));
    assert!(!echoed.to_string().contains("forged-by-client"), "{echoed}");
}

// ---- 2. single fetch at a cold start ------------------------------------------------------------

/// 200 concurrent requests to a gateway that has just started (the provider's counters reset
/// right before it started, the token endpoint slowed so the requests pile up behind the first
/// fetch) all pass with one token, and the provider saw exactly one token request.
#[test]
fn concurrent_cold_misses_make_one_token_request() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    idp.set_delay("token", 300);
    idp.reset_counters();
    let config =
        format!("{BASE}{}{}{}", issuer_for(&idp.issuer), client_toml(BASIC, ""), route_toml("api", "/", up.addr, None));
    let gw = Gateway::start(&config);

    let started = Instant::now();
    let responses = concurrent_gets(gw.addr, "/cold", 200);
    let elapsed = started.elapsed();
    let failed: Vec<String> =
        responses.iter().filter(|r| r.status != 200).map(|r| format!("{} {}", r.status, r.body.trim())).collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed at a cold start, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    let tokens: std::collections::BTreeSet<String> = responses.iter().map(|r| upstream_bearer(&r.json())).collect();
    assert_eq!(tokens.len(), 1, "every request carried the same minted token");
    let token = tokens.into_iter().next().unwrap();
    verify(&jwks(&idp), &idp.issuer, &token);

    assert_eq!(idp.count("token"), 1, "token requests at the provider for 200 cold requests");
    assert_eq!(metric(&gw, "tollgate_client_token_requests_total", &[("client", "orders"), ("outcome", "ok")]), 1.0);
    eprintln!("200 cold requests in {elapsed:?}, 1 token request");
}

// ---- 3. renewal after expiry ---------------------------------------------------------------

/// With 3-second tokens and a 1-second skew, the upstream soon sees a new token, the provider
/// counts more token requests, and no request ever carries a token already expired when sent.
#[test]
fn a_new_token_is_used_after_expiry() {
    let idp = Idp::start(IdpOptions { at_ttl: Some(3), ..Default::default() });
    let (gw, _up) = one_route_gateway(&idp, BASIC, "refresh_skew = \"1s\"", "api");
    let keys = jwks(&idp);

    let first = upstream_bearer(&ok_json(&get(gw.addr, "/a", &[])));
    let first_claims = verify(&keys, &idp.issuer, &first);
    assert_eq!(first_claims["exp"].as_u64().unwrap() - first_claims["iat"].as_u64().unwrap(), 3, "{first_claims}");
    let count_first = idp.count("token");
    assert!(count_first >= 1);

    let mut seen = 1;
    let second = wait_until("the upstream to see a renewed token", Duration::from_secs(20), || {
        let before = now();
        let token = upstream_bearer(&ok_json(&get(gw.addr, "/b", &[])));
        let (_, payload) = jwt_parts(&token);
        let exp = payload["exp"].as_u64().unwrap();
        assert!(exp > before, "an expired token was sent upstream (exp {exp}, sent at or after {before})");
        seen += 1;
        (token != first).then_some(token)
    });
    let second_claims = verify(&keys, &idp.issuer, &second);
    assert!(second_claims["iat"].as_u64() >= first_claims["iat"].as_u64());
    assert_ne!(second_claims["jti"], first_claims["jti"]);
    let count_second = idp.count("token");
    assert!(count_second > count_first, "token requests {count_first} -> {count_second}");
    eprintln!("renewed after {seen} requests; provider token requests {count_first} -> {count_second}");
}

// ---- 4. the provider going away -------------------------------------------------------------

/// A held, valid token keeps requests passing after the provider stopped.
#[test]
fn a_held_token_survives_the_provider_stopping() {
    let mut idp = Idp::start(IdpOptions::default());
    let (gw, _up) = one_route_gateway(&idp, BASIC, "", "api");
    let token = upstream_bearer(&ok_json(&get(gw.addr, "/before", &[])));
    verify(&jwks(&idp), &idp.issuer, &token);

    idp.stop();
    for i in 0..20 {
        let resp = get(gw.addr, &format!("/after/{i}"), &[]);
        assert_eq!(upstream_bearer(&ok_json(&resp)), token, "request {i} after the provider stopped");
    }
    assert_eq!(metric(&gw, "tollgate_client_token_requests_total", &[("client", "orders"), ("outcome", "error")]), 0.0);
}

/// When renewal fails, the held token stays in use until it expires (renewal starts at 80 %
/// of the usable lifetime), then requests get 503; once the endpoint works again a new token
/// is minted. 10-second tokens, 1-second skew: usable 9 s, renewal from ~7.2 s.
#[test]
fn a_held_token_stays_in_use_while_renewal_fails_then_503() {
    let idp = Idp::start(IdpOptions { at_ttl: Some(10), ..Default::default() });
    let (gw, _up) = one_route_gateway(&idp, BASIC, "refresh_skew = \"1s\"", "orders-api");
    let minted_at = Instant::now();
    let first = upstream_bearer(&ok_json(&get(gw.addr, "/a", &[])));
    idp.set_failure("token", 503);

    let errors = || metric(&gw, "tollgate_client_token_requests_total", &[("client", "orders"), ("outcome", "error")]);
    let mut passed_after_a_failed_renewal = 0;
    let unavailable = wait_until("503 once the held token expired", Duration::from_secs(20), || {
        let failed_renewals = errors();
        let r = get(gw.addr, "/b", &[]);
        if r.status == 200 {
            assert_eq!(upstream_bearer(&r.json()), first, "no new token can have been minted");
            if failed_renewals >= 1.0 {
                passed_after_a_failed_renewal += 1;
            }
            None
        } else {
            Some(r)
        }
    });
    let held_for = minted_at.elapsed();
    assert_unavailable(&unavailable, "orders-api");
    assert!(held_for >= Duration::from_secs(8), "the held token was given up after {held_for:?} (usable 9 s)");
    assert!(
        passed_after_a_failed_renewal >= 1,
        "no request passed with the held token after a failed renewal (errors now {})",
        errors()
    );
    assert!(idp.count("token") >= 2, "renewal was attempted at the provider");

    idp.set_failure("token", 0);
    let echoed = wait_until("a new token after the endpoint recovered", Duration::from_secs(40), || {
        let r = get(gw.addr, "/c", &[]);
        (r.status == 200).then(|| r.json())
    });
    let second = upstream_bearer(&echoed);
    assert_ne!(second, first);
    verify(&jwks(&idp), &idp.issuer, &second);
    eprintln!("held token used {passed_after_a_failed_renewal} times after a failed renewal; 503 after {held_for:?}");
}

fn assert_unavailable(resp: &RawResponse, route: &str) {
    assert_eq!(resp.status, 503, "{} {}", resp.status, resp.body);
    let ct = resp.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "plain body expected, content-type {ct:?}");
    assert!(
        resp.body.contains(&format!("route {route}")) && resp.body.contains("token"),
        "the body names the route and the missing token: {:?}",
        resp.body
    );
}

/// Started while the provider is down (nothing listens at the issuer URL), a request gets 503
/// with a plain body naming the route, and the error counts; once the provider is up on that
/// port, requests pass.
#[test]
fn no_token_while_the_provider_is_down_is_503() {
    let port = dead_port().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let up = echo();
    let config = format!(
        "{BASE}{}{}{}",
        issuer_for(&issuer),
        client_toml(BASIC, ""),
        route_toml("orders-api", "/", up.addr, None)
    );
    let gw = Gateway::start(&config);

    let resp = get(gw.addr, "/x", &[]);
    assert_unavailable(&resp, "orders-api");
    let errors = wait_until("the token error to be counted", Duration::from_secs(10), || {
        let n = metric(&gw, "tollgate_client_token_requests_total", &[("client", "orders"), ("outcome", "error")]);
        (n >= 1.0).then_some(n)
    });
    assert!(!has_series(&gw, "tollgate_client_token_requests_total", &[("client", "orders"), ("outcome", "ok")]));

    // The provider comes up where the configuration says: the gateway recovers by itself.
    let idp = Idp::start(IdpOptions { port, ..Default::default() });
    assert_eq!(idp.issuer, issuer);
    let echoed = wait_until("a request to pass once the provider is up", Duration::from_secs(60), || {
        let r = get(gw.addr, "/y", &[]);
        (r.status == 200).then(|| r.json())
    });
    verify(&jwks(&idp), &idp.issuer, &upstream_bearer(&echoed));
    eprintln!("{errors} token errors counted while the provider was down");
}

/// The provider is up but its token endpoint fails: 503 naming the route, errors counted at
/// the gateway and requests seen at the provider; concurrent requests while it fails do not
/// each call the failing endpoint; after the failure is cleared, requests pass again.
#[test]
fn a_failing_token_endpoint_is_503_without_a_stampede() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    idp.set_failure("token", 503);
    let config = format!(
        "{BASE}{}{}{}",
        issuer_for(&idp.issuer),
        client_toml(BASIC, ""),
        route_toml("orders-api", "/", up.addr, None)
    );
    let gw = Gateway::start(&config);
    wait_ready(&gw);

    let resp = get(gw.addr, "/x", &[]);
    assert_unavailable(&resp, "orders-api");
    assert!(idp.count("token") >= 1, "the gateway asked the provider");
    assert!(metric(&gw, "tollgate_client_token_requests_total", &[("client", "orders"), ("outcome", "error")]) >= 1.0);

    // 50 concurrent misses while the endpoint fails: a few token requests, not one each.
    idp.set_delay("token", 200);
    idp.reset_counters();
    let responses = concurrent_gets(gw.addr, "/y", 50);
    for r in &responses {
        assert_unavailable(r, "orders-api");
    }
    let calls = idp.count("token");
    assert!(calls <= 3, "50 concurrent misses against a failing token endpoint made {calls} token requests");

    idp.set_delay("token", 0);
    idp.set_failure("token", 0);
    let echoed = wait_until("a request to pass after the failure is cleared", Duration::from_secs(30), || {
        let r = get(gw.addr, "/z", &[]);
        (r.status == 200).then(|| r.json())
    });
    verify(&jwks(&idp), &idp.issuer, &upstream_bearer(&echoed));
    eprintln!("50 concurrent misses against a failing endpoint: {calls} token requests");
}

// ---- 5. client authentication methods --------------------------------------------------------

fn assert_method_accepted(auth: &str, client_id: &str) {
    let idp = Idp::start(IdpOptions::default());
    let (gw, _up) = one_route_gateway(&idp, auth, "", "api");
    let resp = get(gw.addr, "/m", &[]);
    let claims = verify(&jwks(&idp), &idp.issuer, &upstream_bearer(&ok_json(&resp)));
    assert_eq!(claims["client_id"], client_id, "{claims}");
    assert_eq!(claims["sub"], client_id, "{claims}");
    assert_scope_has(&claims, "api:read");
    assert_eq!(idp.count("token"), 1);
}

#[test]
fn client_secret_post_is_accepted() {
    assert_method_accepted(
        "client_id = \"m2m-post\"\nclient_secret = \"m2m-post-secret\"\nauth_method = \"client_secret_post\"",
        "m2m-post",
    );
}

#[test]
fn private_key_jwt_is_accepted() {
    let pem = key_file("m2m-jwt.pem");
    assert_method_accepted(
        &format!(
            "client_id = \"m2m-jwt\"\nauth_method = \"private_key_jwt\"\nprivate_key_file = \"{}\"",
            pem.display()
        ),
        "m2m-jwt",
    );
}

// ---- 6. egress listeners --------------------------------------------------------------------

/// A plain HTTP client on loopback calls the egress listener; the upstream gets the path,
/// the query and the minted token (the app's own Authorization does not pass).
#[test]
fn egress_listener_adds_the_token() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let other = echo();
    let config = format!(
        "{BASE}{}{}{}\n[[egress]]\nname = \"partner\"\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{}\"\nclient = \"orders\"\n",
        issuer_for(&idp.issuer),
        client_toml(BASIC, ""),
        route_toml("api", "/", other.addr, None),
        up.addr,
    );
    let gw = Gateway::start(&config);
    wait_ready(&gw);
    let egress = egress_addr(&gw, "partner");
    assert!(egress.ip().is_loopback() && egress.port() != 0, "{egress}");
    assert_ne!(egress, gw.addr);

    let echoed = ok_json(&get(egress, "/some/path?x=1", &[("Authorization", "Bearer app-own-token")]));
    assert_eq!(echoed["uri"], "/some/path?x=1");
    let claims = verify(&jwks(&idp), &idp.issuer, &upstream_bearer(&echoed));
    assert_eq!(claims["client_id"], "m2m");
    assert!(!echoed.to_string().contains("app-own-token"), "{echoed}");

    // A second call reuses the held token.
    let again = ok_json(&get(egress, "/other", &[]));
    assert_eq!(upstream_bearer(&again), upstream_bearer(&echoed));
    assert_eq!(idp.count("token"), 1);
}

/// An egress listener on a non-loopback address is refused by `check` and by `run`, naming
/// `egress[0].listen`.
#[test]
fn egress_must_listen_on_loopback() {
    let up = dead_port();
    let dir = TempDir::new("egress");
    let file = dir.path("tollgate.toml");
    let config = format!(
        "{BASE}{}\n[[client]]\nname = \"orders\"\ntoken_endpoint = \"http://127.0.0.1:{}/token\"\n{BASIC}\n\
         [[route]]\nauth = \"none\"\npath = \"/\"\nupstream = \"http://{up}\"\n\
         [[egress]]\nname = \"partner\"\nlisten = \"0.0.0.0:1234\"\nupstream = \"http://{up}\"\nclient = \"orders\"\n",
        issuer_for(&format!("http://127.0.0.1:{}", up.port())),
        up.port(),
    );
    std::fs::write(&file, &config).unwrap();
    let (code, out) = common::check(&file, &[]);
    assert_ne!(code, 0, "check accepted a non-loopback egress listener: {out}");
    assert!(out.contains("egress[0].listen"), "{out}");
    assert!(out.contains("loopback"), "{out}");

    // `run` refuses it too, before binding anything.
    let mut child = Command::new(common::bin())
        .arg("run")
        .arg("--config")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`run` kept running with a non-loopback egress listener");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!status.success(), "{text}");
    assert!(text.contains("egress[0].listen"), "{text}");
}

// ---- 7. metrics -----------------------------------------------------------------------------

/// Token requests by client and outcome, cache hits, and the seconds left on the held token.
#[test]
fn metrics_count_requests_hits_and_expiry() {
    let idp = Idp::start(IdpOptions::default());
    let (gw, _up) = one_route_gateway(&idp, BASIC, "", "api");
    for i in 0..10 {
        ok_json(&get(gw.addr, &format!("/m/{i}"), &[]));
    }
    let text = admin(&gw, "/metrics").body;
    let ok = metric_in(&text, "tollgate_client_token_requests_total", &[("client", "orders"), ("outcome", "ok")]);
    assert_eq!(ok, idp.count("token") as f64, "gateway-counted token requests match the provider's count");
    assert_eq!(ok, 1.0);
    assert_eq!(
        metric_in(&text, "tollgate_client_token_requests_total", &[("client", "orders"), ("outcome", "error")]),
        0.0
    );
    let hits = metric_in(&text, "tollgate_client_token_cache_total", &[("client", "orders"), ("result", "hit")]);
    let misses = metric_in(&text, "tollgate_client_token_cache_total", &[("client", "orders"), ("result", "miss")]);
    assert!(hits >= 9.0, "cache hits {hits}");
    assert!(misses <= 1.0, "cache misses {misses}");
    assert_eq!(hits + misses, 10.0, "one lookup per request");

    // The gauge is published while a token is held: positive, at most the lifetime (300 s).
    let expiry = wait_until("tollgate_client_token_expiry_seconds > 0", Duration::from_secs(10), || {
        let v = metric(&gw, "tollgate_client_token_expiry_seconds", &[("client", "orders")]);
        (v > 0.0).then_some(v)
    });
    assert!(expiry <= 300.0, "expiry gauge {expiry}");
    eprintln!("token requests ok={ok}, hits={hits}, misses={misses}, expiry gauge={expiry}");
}
