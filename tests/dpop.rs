//! DPoP (RFC 9449) on bearer routes, through the real binary against the real OpenID Provider
//! (panva's oidc-provider with its `dPoP` feature): the provider issues DPoP-bound tokens (JWT
//! with `cnf.jkt`, and opaque ones whose introspection answer carries it) to a client that holds
//! its own key, and the gateway accepts them only with a valid proof of that key for the very
//! request, and refuses what a token thief would try: replays, proofs for another method, URL,
//! host or scheme, another key, stale or future proofs, a missing or wrong `ath`, private keys,
//! `none` and HMAC proofs, two proofs, and the bound token sent as a plain bearer token.
//!
//! Needs node and `cd tests/idp && npm ci` (and redis-server for the replica test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "support/dpop.rs"]
mod dpop;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/services.rs"]
mod services;

use std::net::SocketAddr;

use common::{echo, metric, raw, wait_ready, Gateway, RawResponse, BASE};
use dpop::{sha256_b64, unix_now, ProofKey};
use idp::{base64_encode, form_encode, http_request, idp_dir, jwt_parts, Idp, IdpOptions, API_RESOURCE};
use serde_json::{json, Value};

const HOST: &str = "gateway.test";
const NONCE_SECRET: &str = "0123456789abcdef0123456789abcdef-dpop";

// ---- harness ------------------------------------------------------------------------------------

/// The provider as the one issuer: `at+jwt` access tokens, introspection as `gateway`.
fn issuer_toml(url: &str) -> String {
    common::issuer_toml("idp", url, API_RESOURCE)
        + "token_type = \"at+jwt\"\n[issuer.introspection]\nclient_id = \"gateway\"\nclient_secret = \"gateway-secret\"\n"
}

fn route_toml(name: &str, path: &str, upstream: SocketAddr, keys: &str) -> String {
    format!("\n[[route]]\nauth = \"bearer\"\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"http://{upstream}\"\n{keys}\n")
}

fn start(config: &str) -> Gateway {
    start_with(BASE, config)
}

fn start_with(base: &str, config: &str) -> Gateway {
    let gw = Gateway::start(&format!("{base}{config}"));
    wait_ready(&gw);
    gw
}

/// A client-credentials token bound to `key` (the token request carries a proof): a JWT for
/// `resource`, or an opaque token without one.
fn bound_token(idp: &Idp, key: &ProofKey, resource: Option<&str>) -> String {
    let endpoint = idp.url("/token");
    let proof = key.token_request_proof(&endpoint);
    let mut body = "grant_type=client_credentials&scope=api%3Aread".to_string();
    if let Some(r) = resource {
        body.push_str(&format!("&resource={}", form_encode(r)));
    }
    let basic = format!("Basic {}", base64_encode(b"m2m:m2m-secret"));
    let headers = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Authorization", basic.as_str()),
        ("DPoP", proof.as_str()),
    ];
    let resp = http_request("POST", &endpoint, &headers, Some(body.as_bytes()));
    assert_eq!(resp.status, 200, "DPoP token request: {}", resp.text());
    let j = resp.json();
    assert_eq!(j["token_type"], "DPoP", "{j}");
    j["access_token"].as_str().unwrap().to_string()
}

/// One request with `Connection: close` and the given header lines.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw(addr, req.as_bytes())
}

/// `GET path` with `Authorization: DPoP token` and `proof`.
fn with_proof(gw: &Gateway, path: &str, token: &str, proof: &str) -> RawResponse {
    let auth = format!("DPoP {token}");
    request(gw.addr, "GET", path, &[("Authorization", &auth), ("DPoP", proof)])
}

fn as_bearer(gw: &Gateway, path: &str, token: &str) -> RawResponse {
    let auth = format!("Bearer {token}");
    request(gw.addr, "GET", path, &[("Authorization", &auth)])
}

fn htu(path: &str) -> String {
    format!("http://{HOST}{path}")
}

fn challenges(r: &RawResponse) -> Vec<&str> {
    r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate")).map(|(_, v)| v.as_str()).collect()
}

fn challenge<'a>(r: &'a RawResponse, scheme: &str) -> Option<&'a str> {
    challenges(r).into_iter().find(|c| c.starts_with(&format!("{scheme} ")))
}

/// 401 with `error="invalid_dpop_proof"` in the DPoP challenge (with its `algs`), the bare
/// Bearer challenge beside it, and the body saying the same.
fn assert_bad_proof(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 401, "{what}: {r:?}");
    let dpop = challenge(r, "DPoP").unwrap_or_else(|| panic!("{what}: no DPoP challenge: {r:?}"));
    assert!(dpop.contains("error=\"invalid_dpop_proof\""), "{what}: {dpop}");
    assert!(dpop.contains("algs=\"ES256 RS256 PS256 EdDSA\""), "{what}: {dpop}");
    assert_eq!(challenge(r, "Bearer"), Some("Bearer realm=\"tollgate\""), "{what}: {r:?}");
    assert_eq!(r.json()["error"], "invalid_dpop_proof", "{what}: {r:?}");
    assert!(r.json().get("headers").is_none(), "{what}: the upstream answered");
}

fn assert_passed(r: &RawResponse, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    r.json()["headers"].clone()
}

fn refusals(gw: &Gateway, reason: &str) -> f64 {
    metric(gw, "tollgate_token_validations_total", &[("outcome", "invalid"), ("reason", reason)])
}

// ---- tests --------------------------------------------------------------------------------------

/// The provider binds a JWT to the client's key (`cnf.jkt` = its RFC 7638 thumbprint); with a
/// fresh proof for each request it passes, and the upstream gets the token and the proof (with
/// `forward_authorization = false`, neither). A proof names one request: replayed, or made for
/// another method, path, host or scheme, it is refused with `invalid_dpop_proof`; the URI is
/// compared after syntax-based normalisation only (case, default port, percent-encoding).
#[test]
fn bound_jwt_passes_with_a_proof_for_exactly_this_request() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start(
        &(issuer_toml(&idp.issuer)
            + &route_toml("api", "/api/", up.addr, "")
            + &route_toml("internal", "/internal/", up.addr, "forward_authorization = false")),
    );
    let key = ProofKey::es256();
    let token = bound_token(&idp, &key, Some(API_RESOURCE));
    let (_, claims) = jwt_parts(&token);
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint(), "the provider bound the token to our key");

    let proof = key.proof("GET", &htu("/api/orders"), &token);
    let h = assert_passed(&with_proof(&gw, "/api/orders", &token, &proof), "a fresh proof");
    assert_eq!(h["authorization"], json!([format!("DPoP {token}")]), "{h}");
    assert_eq!(h["dpop"], json!([proof]), "the proof goes with the token: {h}");
    let p = key.proof("GET", &htu("/internal/x"), &token);
    let h = assert_passed(&with_proof(&gw, "/internal/x", &token, &p), "internal");
    assert!(h.get("authorization").is_none() && h.get("dpop").is_none(), "neither goes upstream: {h}");

    // Replayed, even on the request it was made for.
    assert_bad_proof(&with_proof(&gw, "/api/orders", &token, &proof), "replayed proof");
    assert_eq!(refusals(&gw, "dpop_replay"), 1.0);

    // Another method, path, host or scheme.
    let p = key.proof("POST", &htu("/api/orders"), &token);
    assert_bad_proof(&with_proof(&gw, "/api/orders", &token, &p), "proof for POST");
    for other in ["http://gateway.test/api/other", "http://evil.test/api/orders", "https://gateway.test/api/orders"] {
        let p = key.proof("GET", other, &token);
        assert_bad_proof(&with_proof(&gw, "/api/orders", &token, &p), other);
    }
    let p = key.proof("GET", &htu("/api/orders"), &token);
    let r = request(gw.addr, "POST", "/api/orders", &[("Authorization", &format!("DPoP {token}")), ("DPoP", &p)]);
    assert_bad_proof(&r, "GET proof on a POST");
    assert!(refusals(&gw, "dpop_htu") >= 3.0 && refusals(&gw, "dpop_htm") >= 2.0);

    // Percent-encoding: an encoded slash is another path; hex case, unreserved characters,
    // scheme and host case, the default port, query and fragment are not differences.
    for (request_path, proof_htu, ok) in [
        ("/api/a/b", "http://gateway.test/api/a%2Fb", false),
        ("/api/%61", "http://gateway.test/api/%41", false),
        ("/api/caf%C3%A9", "http://gateway.test/api/café", false),
        ("/api/caf%c3%a9", "http://gateway.test/api/caf%C3%A9", true),
        ("/api/%7Euser", "http://gateway.test/api/~user", true),
        ("/api/x?q=1", "HTTP://Gateway.TEST:80/api/x#frag", true),
        ("/api/x", "http://gateway.test:8080/api/x", false),
    ] {
        let p = key.proof("GET", proof_htu, &token);
        let r = with_proof(&gw, request_path, &token, &p);
        if ok {
            assert_passed(&r, proof_htu);
        } else {
            assert_bad_proof(&r, proof_htu);
        }
    }
}

/// Behind a trusted proxy the scheme is the proxy's `X-Forwarded-Proto`; from anyone else that
/// header changes nothing, so a proof for `https` made for a plain-HTTP request is refused.
#[test]
fn the_scheme_is_the_trusted_proxys() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let routes = issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "");
    let trusting =
        start_with(&BASE.replacen("workers = 2", "workers = 2\ntrusted_proxies = [\"127.0.0.1/32\"]", 1), &routes);
    let plain = start(&routes);
    let key = ProofKey::es256();
    let token = bound_token(&idp, &key, Some(API_RESOURCE));
    let auth = format!("DPoP {token}");
    let https = "https://gateway.test/api/x";

    let p = key.proof("GET", https, &token);
    let r = request(
        trusting.addr,
        "GET",
        "/api/x",
        &[("Authorization", &auth), ("DPoP", &p), ("X-Forwarded-Proto", "https")],
    );
    assert_passed(&r, "https by the trusted proxy");
    let p = key.proof("GET", &htu("/api/x"), &token);
    let r = request(
        trusting.addr,
        "GET",
        "/api/x",
        &[("Authorization", &auth), ("DPoP", &p), ("X-Forwarded-Proto", "https")],
    );
    assert_bad_proof(&r, "http proof for an https request");

    let p = key.proof("GET", https, &token);
    let r =
        request(plain.addr, "GET", "/api/x", &[("Authorization", &auth), ("DPoP", &p), ("X-Forwarded-Proto", "https")]);
    assert_bad_proof(&r, "X-Forwarded-Proto from an untrusted peer");
}

/// The proof itself: from another key, badly signed, stale or from the future, without or with
/// the wrong `ath`, with private key members, `alg` none or HMAC, the wrong `typ`, two proofs or
/// a list, or none at all: each is `invalid_dpop_proof`, and none reaches the upstream.
#[test]
fn forged_and_bent_proofs_are_refused() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "")));
    let key = ProofKey::es256();
    let thief = ProofKey::es256();
    let token = bound_token(&idp, &key, Some(API_RESOURCE));
    let url = htu("/api/x");
    let good = |c: &Value| key.sign(&key.header(), c);
    let claims = || key.claims("GET", &url, &token);

    // Another key: the thief's own proof, or the owner's key in the header but the thief's signature.
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &thief.proof("GET", &url, &token)), "another key");
    assert_eq!(refusals(&gw, "dpop_key_mismatch"), 1.0);
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &thief.sign(&key.header(), &claims())), "forged signature");
    assert_eq!(refusals(&gw, "dpop_signature"), 1.0);

    let mut c = claims();
    c["iat"] = json!(unix_now() - 120);
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &good(&c)), "stale iat");
    let mut c = claims();
    c["iat"] = json!(unix_now() + 60);
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &good(&c)), "future iat");
    let mut c = claims();
    c.as_object_mut().unwrap().remove("ath");
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &good(&c)), "no ath");
    let mut c = claims();
    c["ath"] = json!(sha256_b64(b"another token"));
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &good(&c)), "wrong ath");
    assert_eq!(refusals(&gw, "dpop_ath"), 2.0);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("jti");
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &good(&c)), "no jti");

    // A private key in the header (here with a made-up `d`: refused whatever its value).
    let mut h = key.header();
    h["jwk"]["d"] = json!("c2VjcmV0");
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &key.sign(&h, &claims())), "private jwk");
    assert_eq!(refusals(&gw, "dpop_private_key"), 1.0);
    let mut h = key.header();
    h["typ"] = json!("JWT");
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &key.sign(&h, &claims())), "typ JWT");
    let mut h = key.header();
    h["kid"] = json!("k1");
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &key.sign(&h, &claims())), "kid");

    // alg none, and an HMAC proof whose "key" is a shared secret in the header.
    let b64 = |v: &Value| dpop::b64(v.to_string().as_bytes());
    let none = format!("{}.{}.", b64(&json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk})), b64(&claims()));
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &none), "alg none");
    let none_sig = format!("{none}AAAA");
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &none_sig), "alg none with a signature");
    let secret = b"shared secret of the thief";
    let header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": dpop::b64(secret)}});
    let message = format!("{}.{}", b64(&header), b64(&claims()));
    let tag =
        aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret), message.as_bytes());
    let hmac = format!("{message}.{}", dpop::b64(tag.as_ref()));
    assert_bad_proof(&with_proof(&gw, "/api/x", &token, &hmac), "HMAC proof");
    assert_eq!(refusals(&gw, "dpop_alg"), 2.0, "none with a signature, and HS256");
    assert!(refusals(&gw, "dpop_malformed") >= 2.0, "no jti; none without a signature");

    // Two proofs (two fields, or a list in one), or none.
    let auth = format!("DPoP {token}");
    let (a, b) = (key.proof("GET", &url, &token), key.proof("GET", &url, &token));
    let r = request(gw.addr, "GET", "/api/x", &[("Authorization", &auth), ("DPoP", &a), ("DPoP", &b)]);
    assert_bad_proof(&r, "two DPoP headers");
    let list = format!("{a}, {b}");
    assert_bad_proof(&request(gw.addr, "GET", "/api/x", &[("Authorization", &auth), ("DPoP", &list)]), "a list");
    assert_bad_proof(&request(gw.addr, "GET", "/api/x", &[("Authorization", &auth)]), "no proof");
    assert_eq!(refusals(&gw, "dpop_multiple"), 2.0);

    // After all that, a good proof still passes (nothing above was remembered as used).
    assert_passed(&with_proof(&gw, "/api/x", &token, &key.proof("GET", &url, &token)), "a good proof");
}

/// The downgrade on a route with no DPoP settings at all (the default, `dpop = "allowed"`): a
/// DPoP-bound token sent as `Authorization: Bearer` is refused, while an unbound token passes.
/// (Before DPoP support the bound token passed: a stolen bound token worked as a bearer token.)
#[test]
fn a_bound_token_sent_as_bearer_is_refused_on_a_default_route() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "")));
    let bound = bound_token(&idp, &ProofKey::es256(), Some(API_RESOURCE));
    let unbound = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    assert_passed(&as_bearer(&gw, "/api/x", &unbound), "an unbound token");
    let r = as_bearer(&gw, "/api/x", &bound);
    assert_eq!(r.status, 401, "a bound token as a bearer token: {r:?}");
    assert_eq!(r.json()["error"], "invalid_token", "{r:?}");
}

/// The downgrade: a bound token sent as a bearer token is refused, also once a DPoP request
/// has put it in the verified-token caches; `invalid_token` in the Bearer challenge. An
/// opaque bound token (its `cnf.jkt` from introspection) behaves the same. On a route with
/// `dpop = "required"` an unbound bearer token is refused, and the only challenge is DPoP's.
#[test]
fn bound_tokens_never_pass_as_bearer_tokens() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start(
        &(issuer_toml(&idp.issuer)
            + &route_toml("api", "/api/", up.addr, "")
            + &route_toml("strict", "/strict/", up.addr, "dpop = \"required\"\ndpop_algorithms = [\"ES256\"]")),
    );
    let key = ProofKey::es256();
    let jwt = bound_token(&idp, &key, Some(API_RESOURCE));
    let opaque = bound_token(&idp, &key, None);
    assert_eq!(opaque.split('.').count(), 1, "an opaque token: {opaque}");
    assert_eq!(idp.introspect("gateway", "gateway-secret", &opaque)["cnf"]["jkt"], key.thumbprint());

    for (what, token) in [("jwt", &jwt), ("opaque", &opaque)] {
        let r = as_bearer(&gw, "/api/x", token);
        assert_eq!(r.status, 401, "{what} as Bearer before any DPoP use: {r:?}");
        for _ in 0..3 {
            let p = key.proof("GET", &htu("/api/x"), token);
            assert_passed(&with_proof(&gw, "/api/x", token, &p), what);
            // Warmed caches (front and shared): the binding is still checked.
            let r = as_bearer(&gw, "/api/x", token);
            assert_eq!(r.status, 401, "{what} as Bearer: {r:?}");
            let bearer = challenge(&r, "Bearer").unwrap();
            assert!(bearer.contains("error=\"invalid_token\"") && bearer.contains("DPoP"), "{bearer}");
            assert_eq!(r.json()["error"], "invalid_token");
        }
        // From another key, an opaque token too.
        let thief = ProofKey::es256();
        assert_bad_proof(&with_proof(&gw, "/api/x", token, &thief.proof("GET", &htu("/api/x"), token)), what);
    }
    assert!(refusals(&gw, "dpop_bound_as_bearer") >= 8.0);

    // dpop = "required": an unbound token fails as Bearer and as DPoP; a bound one passes
    // with a proof (of an algorithm the route lists).
    let unbound = idp.access_token("m2m", "m2m-secret", Some("api:read"), Some(API_RESOURCE));
    assert_passed(&as_bearer(&gw, "/api/x", &unbound), "an unbound token on the default route");
    let r = as_bearer(&gw, "/strict/x", &unbound);
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(challenges(&r).len(), 1, "DPoP only: {r:?}");
    let dpop = challenge(&r, "DPoP").unwrap();
    assert!(dpop.contains("algs=\"ES256\"") && dpop.contains("error=\"invalid_token\""), "{dpop}");
    let p = key.proof("GET", &htu("/strict/x"), &unbound);
    let r = with_proof(&gw, "/strict/x", &unbound, &p);
    assert_eq!(r.status, 401, "an unbound token with a proof: {r:?}");
    assert!(challenge(&r, "DPoP").unwrap().contains("error=\"invalid_token\""), "{r:?}");
    let r = as_bearer(&gw, "/strict/x", "");
    assert_eq!(r.status, 400, "{r:?}");
    let r = request(gw.addr, "GET", "/strict/x", &[]);
    assert_eq!(challenges(&r), vec!["DPoP realm=\"tollgate\", algs=\"ES256\""], "{r:?}");
    let p = key.proof("GET", &htu("/strict/x"), &jwt);
    assert_passed(&with_proof(&gw, "/strict/x", &jwt, &p), "bound token on the strict route");
    let ed = ProofKey::ed25519();
    let ed_token = bound_token(&idp, &ed, Some(API_RESOURCE));
    let p = ed.proof("GET", &htu("/strict/x"), &ed_token);
    let r = with_proof(&gw, "/strict/x", &ed_token, &p);
    assert_eq!(r.status, 401, "EdDSA is not listed on the strict route: {r:?}");
    let p = ed.proof("GET", &htu("/api/x"), &ed_token);
    assert_passed(&with_proof(&gw, "/api/x", &ed_token, &p), "EdDSA on the default route");
}

/// Server nonces (§8): without one, `use_dpop_nonce` and a `DPoP-Nonce` header; with it the
/// request passes, at this gateway and at a replica with the same `nonce_secret`, and a made-up
/// nonce is refused the same way. RS256 proofs work as ES256 ones.
#[test]
fn nonce_routes_hand_out_nonces_and_replicas_accept_them() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let config = format!("\n[dpop]\nnonce_secret = \"{NONCE_SECRET}\"\n")
        + &issuer_toml(&idp.issuer)
        + &route_toml("api", "/api/", up.addr, "dpop_nonce = true");
    let gw = start(&config);
    let replica = start(&config);
    let key = ProofKey::rs256(&idp_dir().join("keys"));
    let token = bound_token(&idp, &key, Some(API_RESOURCE));
    let url = htu("/api/x");

    let r = with_proof(&gw, "/api/x", &token, &key.proof("GET", &url, &token));
    assert_eq!(r.status, 401, "{r:?}");
    let dpop = challenge(&r, "DPoP").unwrap();
    assert!(dpop.contains("error=\"use_dpop_nonce\""), "{dpop}");
    assert_eq!(r.json()["error"], "use_dpop_nonce");
    let nonce = r.header("dpop-nonce").expect("a DPoP-Nonce header").to_string();

    let with_nonce = |n: &str| {
        let mut c = key.claims("GET", &url, &token);
        c["nonce"] = json!(n);
        key.sign(&key.header(), &c)
    };
    assert_passed(&with_proof(&gw, "/api/x", &token, &with_nonce(&nonce)), "with the nonce");
    assert_passed(&with_proof(&replica, "/api/x", &token, &with_nonce(&nonce)), "the replica's");
    let r = with_proof(&gw, "/api/x", &token, &with_nonce("AAAAAAAAAAAAAAAAAAAAAAAA"));
    assert_eq!(r.status, 401, "{r:?}");
    assert!(challenge(&r, "DPoP").unwrap().contains("use_dpop_nonce"), "{r:?}");
    assert_eq!(r.header("dpop-nonce"), Some(nonce.as_str()), "the current nonce again");
    assert_eq!(refusals(&gw, "dpop_nonce"), 2.0);
}

/// Replicas sharing a Redis session store share the memory of used proofs: a proof used at
/// one is refused at the other.
#[test]
fn replicas_with_a_redis_store_refuse_each_others_used_proofs() {
    let redis = services::Redis::start();
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let config = issuer_toml(&idp.issuer)
        + &format!(
            "\n[login]\nclient_id = \"web\"\nclient_secret = \"web-secret\"\npublic_url = \"http://{HOST}\"\n\
             session_store = \"redis\"\nredis_url = \"{}\"\ncookie_secret = \"{NONCE_SECRET}\"\n",
            redis.url()
        )
        + &route_toml("api", "/api/", up.addr, "");
    let a = start(&config);
    let b = start(&config);
    let key = ProofKey::es256();
    let token = bound_token(&idp, &key, Some(API_RESOURCE));
    let proof = key.proof("GET", &htu("/api/x"), &token);
    assert_passed(&with_proof(&a, "/api/x", &token, &proof), "first use");
    assert_bad_proof(&with_proof(&b, "/api/x", &token, &proof), "replayed at the replica");
    assert_eq!(redis.keys("tollgate:dpop:*").len(), 1, "{}", redis.output());
}

/// Forward-auth checks a proof against the original request, which the proxy describes: its
/// method too. Without being told the method (a plain nginx `auth_request` subrequest is always
/// a GET), a DPoP request is refused rather than judged as a GET, so a captured GET proof cannot
/// pass for a POST.
#[test]
fn forward_auth_checks_the_proof_against_the_original_method() {
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let gw = start(&(issuer_toml(&idp.issuer) + &route_toml("api", "/api/", up.addr, "")));
    let key = ProofKey::es256();
    let token = bound_token(&idp, &key, Some(API_RESOURCE));
    let auth = format!("DPoP {token}");
    let ask = |method: Option<&str>, proof: &str| {
        let mut headers = vec![("Authorization", auth.as_str()), ("DPoP", proof), ("X-Original-URI", "/api/orders")];
        if let Some(m) = method {
            headers.push(("X-Original-Method", m));
        }
        request(gw.addr, "GET", "/oauth2/auth", &headers)
    };
    let get_proof = || key.proof("GET", &htu("/api/orders"), &token);
    let r = ask(None, &get_proof());
    assert_eq!(r.status, 403, "the method is unknown: {} {}", r.status, r.body);
    assert!(r.body.contains("X-Original-Method"), "{}", r.body);
    assert_bad_proof(&ask(Some("POST"), &get_proof()), "a GET proof for a POST");
    assert_eq!(ask(Some("GET"), &get_proof()).status, 202, "a proof for the original request");
}

/// A browser app on another origin using DPoP: the preflight allows the `DPoP` header, and the
/// answers expose `DPoP-Nonce` and `WWW-Authenticate`, which the route's `cors` does not list
/// (before this the preflight left `DPoP` out, so the browser refused to send the proof, and
/// the nonce was unreadable). The whole nonce round trip, each answer readable by the app.
#[test]
fn a_dpop_route_with_cors_lets_a_browser_app_send_proofs_and_read_nonces() {
    const APP: &str = "https://app.example.com";
    let idp = Idp::start(IdpOptions::default());
    let up = echo();
    let cors =
        format!("dpop_nonce = true\ncors = {{ allowed_origins = [\"{APP}\"], allowed_headers = [\"Authorization\"] }}");
    let config = format!("\n[dpop]\nnonce_secret = \"{NONCE_SECRET}\"\n")
        + &issuer_toml(&idp.issuer)
        + &route_toml("api", "/api/", up.addr, &cors);
    let gw = start(&config);
    let exposed = |r: &RawResponse| {
        let v = r.header("access-control-expose-headers").unwrap_or_else(|| panic!("nothing exposed: {r:?}"));
        v.split(',').map(|h| h.trim().to_ascii_lowercase()).collect::<Vec<_>>()
    };

    let pre = request(
        gw.addr,
        "OPTIONS",
        "/api/x",
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization,dpop"),
        ],
    );
    assert_eq!(pre.status, 204, "{pre:?}");
    let allowed: Vec<String> =
        pre.header("access-control-allow-headers").unwrap_or("").split(',').map(|h| h.trim().to_string()).collect();
    assert!(allowed.contains(&"dpop".to_string()) && allowed.contains(&"authorization".to_string()), "{pre:?}");

    let key = ProofKey::rs256(&idp_dir().join("keys"));
    let token = bound_token(&idp, &key, Some(API_RESOURCE));
    let url = htu("/api/x");
    let auth = format!("DPoP {token}");
    let call =
        |proof: &str| request(gw.addr, "GET", "/api/x", &[("Origin", APP), ("Authorization", &auth), ("DPoP", proof)]);
    let r = call(&key.proof("GET", &url, &token));
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some(APP), "{r:?}");
    let e = exposed(&r);
    assert!(e.contains(&"dpop-nonce".to_string()) && e.contains(&"www-authenticate".to_string()), "{r:?}");
    let nonce = r.header("dpop-nonce").expect("a DPoP-Nonce header").to_string();
    let mut c = key.claims("GET", &url, &token);
    c["nonce"] = json!(nonce);
    let ok = call(&key.sign(&key.header(), &c));
    assert_eq!((ok.status, ok.header("access-control-allow-origin")), (200, Some(APP)), "{ok:?}");
    assert!(exposed(&ok).contains(&"dpop-nonce".to_string()));
}
