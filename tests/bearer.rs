//! Bearer-token enforcement through the real binary against the real OpenID Provider
//! (panva's oidc-provider in `tests/idp`): provider-issued RFC 9068 JWTs and opaque tokens,
//! RFC 6750 refusals, the verified-token and introspection caches (single flight, `cache_max`
//! bounding how long a revoked token lives on), key rotation, keys kept while the provider is
//! down, the rate limit on unknown-`kid` refetches, readiness and discovery's issuer check.
//!
//! Needs node and `cd tests/idp && npm ci`. Every test starts its own provider and gateway, so
//! provider-side counters belong to one test only.

mod common;
#[path = "support/idp.rs"]
mod idp;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::wait_ready;
use common::{admin, dead_port, echo, get, metric, wait_until, Gateway, RawResponse, BASE};
use idp::{jwt_parts, key_file, kid_of, Idp, IdpOptions, API_RESOURCE};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

// ---- helpers ------------------------------------------------------------------------------------

/// The `kid` the provider signs with by default (`keys/rsa1.json`).
const KID1: &str = "test-rsa-1";

/// One `[[issuer]]` named `idp` for `url`: audience `API_RESOURCE`, `typ` must be `at+jwt`,
/// unknown-`kid` refetches at most once a second, and introspection as the `gateway` client.
fn issuer_toml(url: &str) -> String {
    issuer_toml_with(url, "")
}

/// `issuer_toml` with extra `[issuer.introspection]` keys.
fn issuer_toml_with(url: &str, introspection: &str) -> String {
    issuer_introspecting_as(
        url,
        &format!("client_id = \"gateway\"\nclient_secret = \"gateway-secret\"\n{introspection}"),
    )
}

/// `issuer_toml`'s issuer, introspecting with exactly the `client` keys given.
fn issuer_introspecting_as(url: &str, client: &str) -> String {
    format!(
        r#"
[[issuer]]
name = "idp"
url = "{url}"
audiences = ["{API_RESOURCE}"]
token_type = "at+jwt"
jwks_refetch_interval = "1s"
[issuer.introspection]
{client}
"#
    )
}

/// A `[[route]]` with `auth = "bearer"`; `keys` are extra route keys, `rules` the body of
/// `[route.rules]` (empty for none).
fn route_toml(name: &str, path: &str, upstream: SocketAddr, keys: &str, rules: &str) -> String {
    let mut s = format!(
        "\n[[route]]\nauth = \"bearer\"\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"http://{upstream}\"\n{keys}\n"
    );
    if !rules.is_empty() {
        s.push_str(&format!("[route.rules]\n{rules}\n"));
    }
    s
}

/// Starts the gateway with `BASE` + `config` and waits until `/readyz` says the issuer is loaded.
fn start_ready(config: &str) -> Gateway {
    let gw = Gateway::start(&format!("{BASE}{config}"));
    wait_ready(&gw);
    gw
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rsa_key(name: &'static str) -> &'static EncodingKey {
    static RSA1: OnceLock<EncodingKey> = OnceLock::new();
    static RSA2: OnceLock<EncodingKey> = OnceLock::new();
    let cell = match name {
        "rsa1" => &RSA1,
        "rsa2" => &RSA2,
        other => panic!("no key {other}"),
    };
    cell.get_or_init(|| {
        let pem = std::fs::read(key_file(&format!("{name}.pem"))).unwrap();
        EncodingKey::from_rsa_pem(&pem).unwrap()
    })
}

/// Claims the gateway must accept from `issuer`: exact `iss`, our audience, a future `exp`,
/// a `sub`, and a fresh `jti` so that every minted token is new to the verified cache.
fn good_claims(issuer: &str, sub: &str) -> Value {
    let t = now();
    json!({
        "iss": issuer,
        "aud": API_RESOURCE,
        "sub": sub,
        "client_id": "minted",
        "scope": "api:read",
        "iat": t,
        "exp": t + 300,
        "jti": random_hex(12),
    })
}

/// An RS256 JWS signed with `key` (`"rsa1"` or `"rsa2"`), header `kid` and `typ` as given.
fn mint(key: &'static str, kid: &str, typ: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    header.typ = typ.map(str::to_string);
    jsonwebtoken::encode(&header, claims, rsa_key(key)).unwrap()
}

/// A token the provider itself could have issued (rsa1, `at+jwt`).
fn mint_good(issuer: &str, sub: &str) -> String {
    mint("rsa1", KID1, Some("at+jwt"), &good_claims(issuer, sub))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn call(gw: &Gateway, path: &str, token: &str) -> RawResponse {
    get(gw.addr, path, &[("Authorization", &bearer(token))])
}

/// The headers the upstream received, from the echo upstream's JSON.
fn upstream_headers(r: &RawResponse) -> Value {
    assert_eq!(r.status, 200, "expected the upstream's answer: {r:?}");
    r.json()["headers"].clone()
}

fn www_authenticate(r: &RawResponse) -> &str {
    r.header("www-authenticate").unwrap_or_else(|| panic!("no WWW-Authenticate: {r:?}"))
}

/// Neither the token nor its signature appears anywhere in the gateway's answer.
fn assert_no_leak(r: &RawResponse, token: &str) {
    let signature = token.rsplit('.').next().unwrap_or(token);
    for needle in [token, signature] {
        assert!(!r.body.contains(needle), "token echoed in the body: {}", r.body);
        for (k, v) in &r.headers {
            assert!(!v.contains(needle), "token echoed in header {k}: {v}");
        }
    }
}

/// A refusal: `status`, a JSON body whose `error` is `error`, and no trace of `token`.
fn assert_refused(r: &RawResponse, status: u16, error: &str, token: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{r:?}");
    assert_eq!(r.json()["error"], error, "{r:?}");
    assert_no_leak(r, token);
}

/// A 401 `invalid_token` with an RFC 6750 challenge; returns the `error_description`.
fn assert_invalid_token(r: &RawResponse, token: &str) -> String {
    assert_refused(r, 401, "invalid_token", token);
    let challenge = www_authenticate(r);
    assert!(challenge.starts_with("Bearer realm=\"tollgate\""), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    r.json()["error_description"].as_str().unwrap_or_default().to_string()
}

// ---- accepted tokens and identity headers ------------------------------------------------------

/// A client-credentials JWT from the provider is accepted; the upstream sees the token's `sub`
/// as `X-Forwarded-User`, the `Authorization` header (by default), and a mapped claim header,
/// while client-sent identity headers in any spelling are removed or replaced. With
/// `forward_authorization = false` the bearer header is dropped (and `pass_access_token`
/// passes the token in `X-Forwarded-Access-Token` instead of a forged one).
#[test]
fn provider_jwt_is_accepted_and_identity_headers_are_set_by_the_gateway() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let config = issuer_toml(&idp.issuer)
        + &route_toml(
            "api",
            "/api/",
            up.addr,
            "claim_headers = { \"X-Client\" = \"client_id\" }",
            "scopes = [\"api:read\"]",
        )
        + &route_toml("internal", "/internal/", up.addr, "forward_authorization = false\npass_access_token = true", "");
    let gw = start_ready(&config);

    let token = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], KID1);
    let sub = claims["sub"].as_str().expect("sub").to_string();

    let auth = bearer(&token);
    let r = get(
        gw.addr,
        "/api/orders",
        &[
            ("Authorization", &auth),
            ("X-Forwarded-User", "admin"),
            ("X_Forwarded_User", "admin"),
            ("X_Forwarded_Email", "admin@evil.test"),
            ("X-Forwarded-Email", "admin@evil.test"),
            ("X-Forwarded-Groups", "admins"),
            ("X-Client", "spoofed"),
        ],
    );
    let h = upstream_headers(&r);
    assert_eq!(h["x-forwarded-user"], json!([sub]), "{h}");
    assert_eq!(h["authorization"], json!([auth]), "the bearer passes through by default: {h}");
    assert_eq!(h["x-client"], json!(["m2m"]), "claim header from the token, not the client: {h}");
    for gone in ["x_forwarded_user", "x_forwarded_email", "x-forwarded-email", "x-forwarded-groups"] {
        assert!(h.get(gone).is_none(), "client-sent {gone} reached the upstream: {h}");
    }

    let r = get(
        gw.addr,
        "/internal/jobs",
        &[("Authorization", &auth), ("X-Forwarded-Access-Token", "forged"), ("X-Forwarded-User", "admin")],
    );
    let h = upstream_headers(&r);
    assert!(h.get("authorization").is_none(), "forward_authorization = false must drop it: {h}");
    assert_eq!(h["x-forwarded-access-token"], json!([token]), "{h}");
    assert_eq!(h["x-forwarded-user"], json!([sub]), "{h}");
}

// ---- refusals ----------------------------------------------------------------------------------

/// No credentials (or a non-Bearer scheme) → 401 with a bare `Bearer realm="tollgate"`
/// challenge (the route's `realm` when it sets one): no `error` attribute (RFC 6750 §3.1), and
/// the upstream is never called.
#[test]
fn missing_token_gets_a_bare_challenge() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let config = issuer_toml(&idp.issuer)
        + &route_toml("api", "/api/", up.addr, "", "")
        + &route_toml("orders", "/orders/", up.addr, "realm = \"orders\"", "");
    let gw = start_ready(&config);

    for headers in [&[][..], &[("Authorization", "Basic Zm9vOmJhcg==")][..]] {
        let r = get(gw.addr, "/api/x", headers);
        assert_eq!(r.status, 401, "{headers:?}: {r:?}");
        assert_eq!(www_authenticate(&r), "Bearer realm=\"tollgate\"", "{headers:?}");
        let j = r.json();
        assert_eq!(j["error"], "unauthorized", "{j}");
        assert!(j.get("headers").is_none(), "the upstream answered: {j}");
    }
    let r = get(gw.addr, "/orders/1", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(www_authenticate(&r), "Bearer realm=\"orders\"", "the route's realm");
}

/// A malformed `Authorization` (`Bearer` without a token; two `Authorization` headers) is
/// 400 `invalid_request`, and neither token is echoed.
#[test]
fn malformed_authorization_is_invalid_request() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start_ready(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", "")));

    let r = get(gw.addr, "/api/x", &[("Authorization", "Bearer")]);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"], "invalid_request", "{r:?}");
    let challenge = www_authenticate(&r);
    assert!(challenge.starts_with("Bearer realm=\"tollgate\""), "{challenge}");
    assert!(challenge.contains("error=\"invalid_request\""), "{challenge}");

    let a = mint_good(&idp.issuer, "alice");
    let b = mint_good(&idp.issuer, "bob");
    let r = get(gw.addr, "/api/x", &[("Authorization", &bearer(&a)), ("Authorization", &bearer(&b))]);
    assert_refused(&r, 400, "invalid_request", &a);
    assert_no_leak(&r, &b);
    assert!(www_authenticate(&r).contains("error=\"invalid_request\""), "{r:?}");
}

/// A token that expired beyond the leeway → 401 `invalid_token` whose description (in the
/// challenge and the body) says it expired.
#[test]
fn expired_token_is_invalid_token() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start_ready(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", "")));

    let mut claims = good_claims(&idp.issuer, "late");
    claims["iat"] = json!(now() - 900);
    claims["exp"] = json!(now() - 300); // the default leeway is 30 s
    let token = mint("rsa1", KID1, Some("at+jwt"), &claims);
    let r = call(&gw, "/api/x", &token);
    let description = assert_invalid_token(&r, &token);
    assert!(description.contains("expired"), "{description}");
    assert!(www_authenticate(&r).contains("expired"), "{r:?}");
    assert_eq!(metric(&gw, "tollgate_token_validations_total", &[("reason", "expired")]), 1.0);
}

/// Each claim or header check refuses with 401 `invalid_token` and a matching description:
/// wrong audience, wrong issuer, no `exp`, a future `nbf`, `typ` other than `at+jwt` (which the
/// issuer requires), and a signature by another key under the trusted `kid`. The untouched
/// token is accepted, so each refusal is due to its one change.
#[test]
fn tokens_failing_a_claim_or_header_check_are_invalid_token() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start_ready(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", "")));

    let control = mint_good(&idp.issuer, "control");
    assert_eq!(upstream_headers(&call(&gw, "/api/x", &control))["x-forwarded-user"], json!(["control"]));

    // (case, signing key, typ, claim changes (null removes the claim), expected description)
    let at = Some("at+jwt");
    let cases = [
        ("wrong audience", "rsa1", at, json!({"aud": "https://other.test"}), "audience"),
        ("audience list without ours", "rsa1", at, json!({"aud": ["a", "b"]}), "audience"),
        ("wrong issuer", "rsa1", at, json!({"iss": "http://127.0.0.1:1"}), "issuer"),
        ("issuer with a trailing slash", "rsa1", at, json!({"iss": format!("{}/", idp.issuer)}), "issuer"),
        ("missing exp", "rsa1", at, json!({"exp": null}), "missing claim exp"),
        ("future nbf", "rsa1", at, json!({"nbf": now() + 600}), "not yet valid"),
        ("typ JWT", "rsa1", Some("JWT"), json!({}), "wrong token type"),
        ("no typ", "rsa1", None, json!({}), "wrong token type"),
        ("signed by another key", "rsa2", at, json!({}), "invalid signature"),
    ];
    for (name, key, typ, changes, expect) in cases {
        let mut claims = good_claims(&idp.issuer, "tampered");
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        let token = mint(key, KID1, typ, &claims);
        let r = call(&gw, "/api/x", &token);
        let description = assert_invalid_token(&r, &token);
        assert!(description.contains(expect), "{name}: description {description:?} lacks {expect:?}");
    }
}

/// A provider token lacking a scope the route requires → 403 `insufficient_scope` naming the
/// scope; with both scopes it passes.
#[test]
fn missing_scope_is_insufficient_scope() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let route = route_toml("write", "/api/", up.addr, "", "scopes = [\"api:read\", \"api:write\"]");
    let gw = start_ready(&(issuer_toml(&idp.issuer) + &route));

    let read_only = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    let r = call(&gw, "/api/x", &read_only);
    assert_refused(&r, 403, "insufficient_scope", &read_only);
    let challenge = www_authenticate(&r);
    assert!(challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    assert!(challenge.contains("scope=\"api:read api:write\""), "{challenge}");

    let both = idp.access_token("m2m", "m2m-secret", Some("api:read api:write"), Some(API_RESOURCE));
    assert_eq!(upstream_headers(&call(&gw, "/api/x", &both))["x-forwarded-user"], json!(["m2m"]));
}

/// Claim and group rules: a token with `realm_access.roles` containing `admin` and group
/// `staff` passes; without the role, without the group, or a provider token carrying neither
/// → 403 `access_denied`.
#[test]
fn failing_claim_or_group_rule_is_forbidden() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let rules = "groups = [\"staff\"]\nclaims = [{ claim = \"realm_access.roles\", contains = \"admin\" }]";
    let gw = start_ready(&(issuer_toml(&idp.issuer) + &route_toml("admin", "/admin/", up.addr, "", rules)));

    let with = |roles: Value, groups: Value| {
        let mut c = good_claims(&idp.issuer, "ruled");
        c["realm_access"] = json!({ "roles": roles });
        c["groups"] = groups;
        mint("rsa1", KID1, Some("at+jwt"), &c)
    };
    let ok = with(json!(["user", "admin"]), json!(["staff"]));
    let h = upstream_headers(&call(&gw, "/admin/x", &ok));
    assert_eq!(h["x-forwarded-groups"], json!(["staff"]), "{h}");

    let provider = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    for (name, token) in [
        ("no admin role", with(json!(["user"]), json!(["staff"]))),
        ("not staff", with(json!(["admin"]), json!(["guests"]))),
        ("provider token without the claims", provider),
    ] {
        let r = call(&gw, "/admin/x", &token);
        assert!(r.status == 403, "{name}: {r:?}");
        assert_refused(&r, 403, "access_denied", &token);
    }
}

// ---- caches ------------------------------------------------------------------------------------

/// The second request with the same token is answered from the verified-token cache: one miss,
/// then one hit, and no key fetch at the provider.
#[test]
fn repeated_token_is_a_verified_cache_hit() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start_ready(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", "")));
    let token = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    idp.reset_counters();

    let hits = |gw: &Gateway| metric(gw, "tollgate_verified_cache_total", &[("result", "hit")]);
    let misses = |gw: &Gateway| metric(gw, "tollgate_verified_cache_total", &[("result", "miss")]);
    let (h0, m0) = (hits(&gw), misses(&gw));

    assert_eq!(call(&gw, "/api/x", &token).status, 200);
    assert_eq!((hits(&gw) - h0, misses(&gw) - m0), (0.0, 1.0), "first use verifies");
    assert_eq!(call(&gw, "/api/x", &token).status, 200);
    assert_eq!((hits(&gw) - h0, misses(&gw) - m0), (1.0, 1.0), "second use is a cache hit");
    assert_eq!(idp.count("jwks"), 0, "the cached keys sufficed");
}

// ---- keys: rotation, outage, unknown-kid flood --------------------------------------------------

/// Key rotation: the provider restarts on the same port signing with rsa2; its new token
/// (kid test-rsa-2) is accepted within seconds without restarting the gateway, the provider
/// sees the key set refetched, and a fresh token under the retired key is then refused.
#[test]
fn rotated_provider_key_is_accepted_without_restart() {
    let mut idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start_ready(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", "")));
    let old = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    assert_eq!(call(&gw, "/api/x", &old).status, 200);

    let (port, issuer) = (idp.port, idp.issuer.clone());
    idp.stop();
    let idp = Idp::start(IdpOptions { port, jwks_file: Some(key_file("rsa2.json")), ..Default::default() });
    assert_eq!(idp.issuer, issuer);
    let new = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    let kid2 = kid_of(&key_file("rsa2.json"));
    assert_eq!(jwt_parts(&new).0["kid"], kid2.as_str());

    let started = Instant::now();
    let r = wait_until("the rotated key to be accepted", Duration::from_secs(10), || {
        let r = call(&gw, "/api/x", &new);
        match r.status {
            200 => Some(r),
            401 => None,
            other => panic!("unexpected {other} while waiting for the rotated key: {r:?}"),
        }
    });
    eprintln!("rotated key accepted after {:?}", started.elapsed());
    assert_eq!(upstream_headers(&r)["x-forwarded-user"], json!(["m2m"]));
    assert!(idp.count("jwks") >= 1, "no key set refetch at the provider: {}", idp.counters());
    assert_eq!(admin(&gw, "/readyz").status, 200);

    // The new set holds only rsa2: a token signed with the retired key is no longer trusted.
    let retired = mint_good(&issuer, "retired");
    let description = assert_invalid_token(&call(&gw, "/api/x", &retired), &retired);
    assert!(description.contains("unknown signing key"), "{description}");
}

/// An issuer whose unknown-`kid` refetches are 30 s apart for a `kid` that stays missing, and
/// at least 3 s apart (a tenth) for any two.
fn slow_refetch_issuer(url: &str) -> String {
    issuer_toml(url).replace("jwks_refetch_interval = \"1s\"", "jwks_refetch_interval = \"30s\"")
}

/// Restarts `idp` on its port serving (and signing with) rsa2; the token a caller would then
/// hold, signed by rsa2 under its `kid`.
fn rotate_to_rsa2(idp: Idp) -> (Idp, String) {
    let (port, issuer) = (idp.port, idp.issuer.clone());
    drop(idp);
    let idp = Idp::start(IdpOptions { port, jwks_file: Some(key_file("rsa2.json")), ..Default::default() });
    let token = mint("rsa2", &kid_of(&key_file("rsa2.json")), Some("at+jwt"), &good_claims(&issuer, "rotated"));
    (idp, token)
}

/// Waits (10 s at most) for `token` to be accepted, answering 401 until then.
fn accepted_within_10s(gw: &Gateway, token: &str, what: &str) -> Duration {
    let started = Instant::now();
    wait_until(what, Duration::from_secs(10), || match call(gw, "/api/x", token).status {
        200 => Some(()),
        401 => None,
        other => panic!("{what}: unexpected {other}"),
    });
    started.elapsed()
}

/// Tokens under a made-up (or retired) `kid`, sent just before a key rotation, do not hold the
/// rotated key's tokens back for the refetch interval (30 s here): a `kid` not asked for yet
/// is fetched for once the floor (3 s) has passed. Failed on the old code, where the made-up
/// `kid`'s refetch closed the gate for every `kid` for the whole interval.
#[test]
fn a_made_up_kid_does_not_hold_back_a_rotated_key() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start_ready(&(slow_refetch_issuer(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", "")));
    let junk = mint("rsa1", "made-up", Some("at+jwt"), &good_claims(&idp.issuer, "junk"));
    let description = assert_invalid_token(&call(&gw, "/api/x", &junk), &junk);
    assert!(description.contains("unknown signing key"), "{description}");
    let (idp, rotated) = rotate_to_rsa2(idp);
    let took = accepted_within_10s(&gw, &rotated, "the rotated key after a made-up kid");
    eprintln!("rotated key accepted {took:?} after the provider came back");
    // The made-up kid keeps being refused, and costs no fetch of its own before its back-off ends.
    idp.reset_counters();
    for _ in 0..20 {
        assert_eq!(call(&gw, "/api/x", &junk).status, 401);
    }
    assert_eq!(idp.count("jwks"), 0, "a missing kid refetched again within its back-off: {}", idp.counters());
}

/// A refetch that does not find a token's `kid` (it reached a provider instance still serving
/// the old set, say) is tried again for that `kid` after the floor (3 s), not after the whole
/// interval (30 s). Failed on the old code.
#[test]
fn a_kid_a_refetch_missed_is_tried_again_soon() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start_ready(&(slow_refetch_issuer(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", "")));
    let early = mint("rsa2", &kid_of(&key_file("rsa2.json")), Some("at+jwt"), &good_claims(&idp.issuer, "early"));
    // The rotated key's first token reaches the gateway before the provider publishes the key.
    assert_eq!(call(&gw, "/api/x", &early).status, 401);
    let (_idp, rotated) = rotate_to_rsa2(idp);
    let took = accepted_within_10s(&gw, &rotated, "a kid a refetch had missed");
    eprintln!("kid missed once, accepted {took:?} after the provider published it");
}

/// With the provider stopped, fresh tokens signed with its key (never seen, so verified, not
/// served from the verified cache) still validate with the keys the gateway already holds;
/// an opaque token, which needs the provider, is 503 `temporarily_unavailable`.
#[test]
fn cached_keys_validate_while_the_provider_is_down() {
    let mut idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start_ready(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", "")));
    let issuer = idp.issuer.clone();
    let idp_addr: SocketAddr = issuer.trim_start_matches("http://").parse().unwrap();
    idp.stop();
    assert!(TcpStream::connect_timeout(&idp_addr, Duration::from_secs(1)).is_err(), "the provider still listens");

    let misses = || metric(&gw, "tollgate_verified_cache_total", &[("result", "miss")]);
    let before = misses();
    for i in 0..5 {
        let sub = format!("offline-{i}");
        let r = call(&gw, "/api/x", &mint_good(&issuer, &sub));
        assert_eq!(upstream_headers(&r)["x-forwarded-user"], json!([sub]));
    }
    assert_eq!(misses() - before, 5.0, "each token was verified, not served from the cache");
    assert_eq!(admin(&gw, "/readyz").status, 200, "keys are kept while the issuer is down");

    // What needs the provider cannot be checked now: an opaque token is 503, not 401 or 500.
    let opaque = random_hex(24);
    let r = call(&gw, "/api/x", &opaque);
    assert_refused(&r, 503, "temporarily_unavailable", &opaque);
}

/// A flood of tokens with random `kid`s (signed with rsa1) lasting T ≥ 3 s makes at most
/// T/0.1 s + 2 key set fetches at the provider (refetch interval 1 s, so any two refetches at
/// least a tenth of it apart), at least two (unknown kids do trigger refetches), and every
/// token is refused 401.
#[test]
fn random_kid_flood_makes_a_bounded_number_of_jwks_fetches() {
    const MIN_TOKENS: usize = 300;
    const MIN_DURATION: Duration = Duration::from_secs(3);
    const THREADS: usize = 6;

    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = Arc::new(start_ready(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", ""))));
    let unknown_before = metric(&gw, "tollgate_token_validations_total", &[("reason", "unknown_kid")]);
    let gw_fetches = |gw: &Gateway| metric(gw, "tollgate_jwks_fetches_total", &[("issuer", "idp")]);
    let gw_fetches_before = gw_fetches(&gw);
    idp.reset_counters();

    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (gw, sent, failures, issuer) = (gw.clone(), sent.clone(), failures.clone(), idp.issuer.clone());
            std::thread::spawn(move || {
                while sent.load(Ordering::Relaxed) < MIN_TOKENS || started.elapsed() < MIN_DURATION {
                    let kid = random_hex(8);
                    let token = mint("rsa1", &kid, Some("at+jwt"), &good_claims(&issuer, "flood"));
                    let r = call(&gw, "/api/x", &token);
                    sent.fetch_add(1, Ordering::Relaxed);
                    let refused = r.status == 401
                        && r.header("www-authenticate").is_some_and(|c| c.contains("error=\"invalid_token\""));
                    if !refused {
                        failures.lock().unwrap().push(format!("kid {kid}: {r:?}"));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed();
    let sent = sent.load(Ordering::Relaxed);
    let fetches = idp.count("jwks");
    eprintln!(
        "flood: {sent} tokens in {elapsed:?}, {fetches} JWKS fetches at the provider ({} ok, {} not modified)",
        metric(&gw, "tollgate_jwks_fetches_total", &[("outcome", "ok")]),
        metric(&gw, "tollgate_jwks_fetches_total", &[("outcome", "not_modified")]),
    );

    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{} of {sent} not refused 401 invalid_token, e.g. {}", failures.len(), failures[0]);
    let bound = elapsed.as_secs_f64() / 0.1 + 2.0;
    assert!((fetches as f64) <= bound, "{fetches} JWKS fetches in {elapsed:?} (bound {bound:.1})");
    assert!(fetches >= 2, "unknown kids should still refetch once per interval: {fetches} in {elapsed:?}");
    let unknown = metric(&gw, "tollgate_token_validations_total", &[("reason", "unknown_kid")]) - unknown_before;
    assert_eq!(unknown as usize, sent, "every flood token refused as unknown_kid");
    assert_eq!(gw_fetches(&gw) - gw_fetches_before, fetches as f64, "the gateway's fetch metric matches the provider");
}

// ---- opaque tokens (introspection) -------------------------------------------------------------

/// An opaque provider token is accepted via introspection; using it 20 times makes exactly one
/// introspection call at the provider (the answer is cached).
#[test]
fn opaque_token_is_introspected_once() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start_ready(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", "")));
    let token = idp.access_token("m2m", "m2m-secret", Some("api:read"), None);
    assert!(!token.contains('.'), "expected an opaque token, got {token}");
    idp.reset_counters();

    for i in 0..20 {
        let r = call(&gw, "/api/x", &token);
        assert_eq!(upstream_headers(&r)["x-forwarded-user"], json!(["m2m"]), "request {i}");
    }
    assert_eq!(idp.count("introspection"), 1, "{}", idp.counters());
    assert_eq!(metric(&gw, "tollgate_introspections_total", &[("issuer", "idp"), ("outcome", "active")]), 1.0);
}

/// Introspection authenticates with `private_key_jwt` (RFC 7523), the same client
/// authentication as token requests: the provider accepts the `m2m-jwt` client's signed
/// assertion and answers for the opaque token. (Before, introspection knew only the two secret
/// methods and `auth_method = "private_key_jwt"` was a configuration error.)
#[test]
fn introspection_authenticates_with_private_key_jwt() {
    let idp = Idp::start(IdpOptions::default().with_env("IDP_INTROSPECTORS", "gateway,m2m-jwt"));
    let up = echo();
    let pem = key_file("m2m-jwt.pem");
    let client =
        format!("client_id = \"m2m-jwt\"\nauth_method = \"private_key_jwt\"\nprivate_key_file = \"{}\"", pem.display());
    let config = issuer_introspecting_as(&idp.issuer, &client) + &route_toml("api", "/api/", up.addr, "", "");
    let gw = start_ready(&config);
    let token = idp.access_token("m2m", "m2m-secret", Some("api:read"), None);
    assert!(!token.contains('.'), "expected an opaque token, got {token}");
    idp.reset_counters();
    let r = call(&gw, "/api/x", &token);
    assert_eq!(upstream_headers(&r)["x-forwarded-user"], json!(["m2m"]), "{r:?}");
    assert_eq!(idp.count("introspection"), 1, "{}", idp.counters());
    assert_eq!(metric(&gw, "tollgate_introspections_total", &[("issuer", "idp"), ("outcome", "active")]), 1.0);
}

/// A random opaque string is introspected as inactive → 401 `invalid_token`; asking again is
/// answered from the (negative) cache without a second call.
#[test]
fn unknown_opaque_token_is_invalid_token() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start_ready(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", "")));
    idp.reset_counters();

    let token = random_hex(24);
    for _ in 0..2 {
        let description = assert_invalid_token(&call(&gw, "/api/x", &token), &token);
        assert!(description.contains("not active"), "{description}");
    }
    assert_eq!(idp.count("introspection"), 1, "{}", idp.counters());
}

/// An active introspection answer is remembered at most `cache_max` (documented: "upper bound
/// on how long an active answer is remembered"): once the provider revokes an opaque token, the
/// gateway refuses it within about `cache_max` (1 s here), long before the token's own `exp`
/// (5 min).
#[test]
fn revoked_opaque_token_is_refused_once_cache_max_has_passed() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let config = issuer_toml_with(&idp.issuer, "cache_max = \"1s\"") + &route_toml("api", "/api/", up.addr, "", "");
    let gw = start_ready(&config);
    let token = idp.access_token("m2m", "m2m-secret", Some("api:read"), None);
    assert_eq!(call(&gw, "/api/x", &token).status, 200);

    let basic = format!("Basic {}", idp::base64_encode(b"m2m:m2m-secret"));
    let form = format!("token={}&token_type_hint=access_token", idp::form_encode(&token));
    let revoked = idp::http_request(
        "POST",
        &idp.url("/revocation"),
        &[("Authorization", &basic), ("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    );
    assert_eq!(revoked.status, 200, "revocation: {}", revoked.text());
    assert_eq!(idp.introspect("gateway", "gateway-secret", &token)["active"], false, "not revoked at the provider");

    let started = Instant::now();
    let r = wait_until("the revoked token to be refused", Duration::from_secs(10), || {
        let r = call(&gw, "/api/x", &token);
        (r.status != 200).then_some(r)
    });
    eprintln!("revoked opaque token refused after {:?}", started.elapsed());
    let description = assert_invalid_token(&r, &token);
    assert!(description.contains("not active"), "{description}");
}

/// 20 concurrent requests with one new opaque token share a single introspection call (single
/// flight). The provider delays introspection by 500 ms so that all of them arrive while the
/// first call is still in flight.
#[test]
fn concurrent_requests_with_a_new_opaque_token_share_one_introspection() {
    const CALLERS: usize = 20;
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = Arc::new(start_ready(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "", ""))));
    let token = idp.access_token("m2m", "m2m-secret", Some("api:read"), None);
    idp.set_delay("introspection", 500);
    idp.reset_counters();

    let barrier = Arc::new(Barrier::new(CALLERS));
    let threads: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (gw, barrier, token) = (gw.clone(), barrier.clone(), token.clone());
            std::thread::spawn(move || {
                barrier.wait();
                call(&gw, "/api/x", &token).status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(idp.count("introspection"), 1, "{}", idp.counters());
    assert_eq!(metric(&gw, "tollgate_introspections_total", &[("issuer", "idp")]), 1.0);
}

// ---- readiness and an unreachable issuer -------------------------------------------------------

/// Pointed at an issuer whose port has nothing listening, the gateway is not ready (`/readyz`
/// 503, `tollgate_issuer_ready` 0) and bearer routes answer 503 with a JSON error (not 500,
/// not 401) for JWTs and opaque tokens alike. Once the provider starts on that port the gateway
/// becomes ready by itself and the same token is accepted.
#[test]
fn readiness_follows_the_issuer_and_a_dead_issuer_is_503() {
    let port = dead_port().port();
    let issuer = format!("http://127.0.0.1:{port}");
    let up = echo();
    let gw = Gateway::start(&format!("{BASE}{}", issuer_toml(&issuer) + &route_toml("api", "/api/", up.addr, "", "")));

    wait_until("a failed discovery attempt", Duration::from_secs(10), || {
        (metric(&gw, "tollgate_discovery_failures_total", &[("issuer", "idp")]) >= 1.0).then_some(())
    });
    assert_eq!(admin(&gw, "/readyz").status, 503);
    assert_eq!(metric(&gw, "tollgate_issuer_ready", &[("issuer", "idp")]), 0.0);

    let jwt = mint_good(&issuer, "early");
    for token in [jwt.as_str(), "0123456789abcdefABCDEF-opaque"] {
        let r = call(&gw, "/api/x", token);
        assert_refused(&r, 503, "temporarily_unavailable", token);
        assert!(r.header("retry-after").is_some(), "{r:?}");
    }

    let idp = Idp::start(IdpOptions { port, ..Default::default() });
    assert_eq!(idp.issuer, issuer);
    let started = Instant::now();
    wait_ready(&gw);
    eprintln!("ready {:?} after the provider started", started.elapsed());
    assert_eq!(metric(&gw, "tollgate_issuer_ready", &[("issuer", "idp")]), 1.0);
    assert_eq!(upstream_headers(&call(&gw, "/api/x", &jwt))["x-forwarded-user"], json!(["early"]));
}

/// A discovery document that names another issuer (here the configured URL differs only by a
/// trailing slash) is refused: the provider is reached, yet the gateway never becomes ready and
/// bearer routes answer 503 rather than trusting keys from a mixed-up issuer.
#[test]
fn discovery_naming_another_issuer_is_never_ready() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let configured = format!("{}/", idp.issuer);
    let gw =
        Gateway::start(&format!("{BASE}{}", issuer_toml(&configured) + &route_toml("api", "/api/", up.addr, "", "")));

    wait_until("a failed discovery attempt", Duration::from_secs(10), || {
        (metric(&gw, "tollgate_discovery_failures_total", &[("issuer", "idp")]) >= 1.0).then_some(())
    });
    assert!(idp.count(".well-known/openid-configuration") >= 1, "{}", idp.counters());
    // The log line is written after the counter moves, and read from the child's stderr by a
    // thread: wait for it rather than race it.
    wait_until("the mismatch in the logs", Duration::from_secs(10), || {
        gw.logs().contains("describes issuer").then_some(())
    });
    assert_eq!(admin(&gw, "/readyz").status, 503);
    assert_eq!(idp.count("jwks"), 0, "keys fetched from a mismatched issuer: {}", idp.counters());

    let token = mint_good(&configured, "mixup");
    assert_refused(&call(&gw, "/api/x", &token), 503, "temporarily_unavailable", &token);
}

/// With `forward_authorization = false`, a token taken from a query parameter or a cookie
/// (routes that opt in to those sources) is removed from the upstream request too; other
/// parameters and cookies pass.
#[test]
fn unforwarded_tokens_leave_with_their_query_parameter_or_cookie() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let config = issuer_toml(&idp.issuer)
        + &route_toml(
            "hidden",
            "/hidden/",
            up.addr,
            "forward_authorization = false\ntoken_sources = [\"query:access_token\", \"cookie:at\"]",
            "",
        )
        + &route_toml("kept", "/kept/", up.addr, "token_sources = [\"query:access_token\"]", "");
    let gw = start_ready(&config);
    let token = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));

    let r = get(gw.addr, &format!("/hidden/q?a=1&access_token={token}&b=2"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["uri"], "/hidden/q?a=1&b=2");

    let cookie = format!("theme=dark; at={token}; lang=en");
    let r = get(gw.addr, "/hidden/c", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(upstream_headers(&r)["cookie"], json!(["theme=dark; lang=en"]));

    let r = get(gw.addr, &format!("/kept/q?access_token={token}"), &[]);
    assert_eq!(r.json()["uri"], format!("/kept/q?access_token={token}"), "forwarded by default");
}
