//! Hostile bearer tokens and headers against the real binary. Every refusal is checked for its
//! status and RFC 6750 challenge, for never echoing the token, and for never reaching the
//! upstream (a counting upstream records every request it sees). A valid control token on the
//! same gateway proves the refusals are not an artefact of a broken set-up.
//!
//! The issuer is served in-process (discovery + JWKS); tokens are assembled by hand here so that
//! headers and payloads can be anything (duplicate keys, arrays, bad base64), and signed with
//! `jsonwebtoken::crypto::sign` where the signature should be genuine.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::wait_ready;
use common::*;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Keys and token assembly

const RSA1_PEM: &[u8] = include_bytes!("idp/keys/rsa1.pem");
const RSA1_PUB_PEM: &[u8] = include_bytes!("idp/keys/rsa1.pub.pem");
const RSA1_JWK: &str = include_str!("idp/keys/rsa1.json");
const RSA2_PEM: &[u8] = include_bytes!("idp/keys/rsa2.pem");
const RSA2_JWK: &str = include_str!("idp/keys/rsa2.json");
const EC1_PEM: &[u8] = include_bytes!("idp/keys/ec1.pem");
const EC1_JWK: &str = include_str!("idp/keys/ec1.json");

const RSA_KID: &str = "test-rsa-1";
const EC_KID: &str = "test-ec-1";
const ED_KID: &str = "test-ed-1";
/// The order of P-256: r = s = n is as invalid as r = s = 0.
const P256_ORDER: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";

struct Keys {
    rsa1: EncodingKey,
    rsa2: EncodingKey,
    ec1: EncodingKey,
    ed: EncodingKey,
    /// The Ed25519 public key, base64url.
    ed_x: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Keys {
            rsa1: EncodingKey::from_rsa_pem(RSA1_PEM).unwrap(),
            rsa2: EncodingKey::from_rsa_pem(RSA2_PEM).unwrap(),
            ec1: EncodingKey::from_ec_pem(EC1_PEM).unwrap(),
            ed: EncodingKey::from_ed_der(pkcs8.as_ref()),
            ed_x: b64(pair.public_key().as_ref()),
        }
    })
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// Only the public members of the first key of a JWK set file.
fn public_jwk(file: &str, kid: &str) -> Value {
    let doc: Value = serde_json::from_str(file).unwrap();
    let k = &doc["keys"][0];
    let mut out = serde_json::Map::new();
    for member in ["kty", "n", "e", "crv", "x", "y", "alg"] {
        if let Some(v) = k.get(member) {
            out.insert(member.into(), v.clone());
        }
    }
    out.insert("kid".into(), kid.into());
    Value::Object(out)
}

fn rsa1_n() -> Vec<u8> {
    let doc: Value = serde_json::from_str(RSA1_JWK).unwrap();
    unb64(doc["keys"][0]["n"].as_str().unwrap())
}

/// The JWKS of the main issuer: rsa1 (RS256), ec1 (ES256) and a fresh Ed25519 key (EdDSA).
fn main_jwks() -> Value {
    json!({"keys": [
        public_jwk(RSA1_JWK, RSA_KID),
        public_jwk(EC1_JWK, EC_KID),
        {"kty": "OKP", "crv": "Ed25519", "x": keys().ed_x, "kid": ED_KID, "alg": "EdDSA"},
    ]})
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims a correct token for `iss` carries; each call has a new `jti`, so no two tokens are equal.
fn claims(iss: &str) -> serde_json::Map<String, Value> {
    static JTI: AtomicU64 = AtomicU64::new(0);
    let t = now();
    let c = json!({
        "iss": iss, "aud": "api", "sub": "alice", "exp": t + 600, "iat": t,
        "jti": format!("jti-{}", JTI.fetch_add(1, Ordering::Relaxed)),
    });
    c.as_object().unwrap().clone()
}

/// `claims(iss)` changed by `edit`, as JSON text.
fn claims_with(iss: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut c = claims(iss);
    edit(&mut c);
    Value::Object(c).to_string()
}

/// A compact JWS from raw header and payload JSON text, signed for real with `alg`.
fn sign(header: &str, payload: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

/// A compact JWS with a chosen signature (base64url of `sig`).
fn with_sig(header: &str, payload: &str, sig: &[u8]) -> String {
    format!("{}.{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()), b64(sig))
}

fn rs256(iss: &str) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": RSA_KID}).to_string();
    sign(&header, &claims_with(iss, |_| {}), &keys().rsa1, Algorithm::RS256)
}

fn rs256_payload(payload: &str) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": RSA_KID}).to_string();
    sign(&header, payload, &keys().rsa1, Algorithm::RS256)
}

fn rs256_header(header: &str, iss: &str) -> String {
    sign(header, &claims_with(iss, |_| {}), &keys().rsa1, Algorithm::RS256)
}

fn parts(token: &str) -> Vec<&str> {
    token.split('.').collect()
}

// ---------------------------------------------------------------------------------------------
// In-process servers

/// Counts requests and remembers the path and headers of each.
#[derive(Default)]
struct Seen {
    count: AtomicUsize,
    requests: Mutex<Vec<(String, BTreeMap<String, Vec<String>>)>>,
}

impl Seen {
    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
    fn record(&self, req: &Request<Incoming>) {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in req.headers() {
            headers.entry(k.as_str().to_string()).or_default().push(String::from_utf8_lossy(v.as_bytes()).into());
        }
        self.requests.lock().unwrap().push((req.uri().path().to_string(), headers));
        self.count.fetch_add(1, Ordering::SeqCst);
    }
    fn paths(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().map(|(p, _)| p.clone()).collect()
    }
}

/// An upstream that counts requests and echoes the headers it received as JSON.
async fn counting_upstream() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let addr = upstream(Arc::new(move |req: Request<Incoming>| {
        s.record(&req);
        let s = s.clone();
        Box::pin(async move {
            let headers = s.requests.lock().unwrap().last().map(|(_, h)| h.clone()).unwrap_or_default();
            let _ = req.into_body().collect().await;
            Response::builder()
                .header("content-type", "application/json")
                .body(full(json!({ "headers": headers }).to_string()))
                .unwrap()
        })
    }))
    .await;
    (addr, seen)
}

/// An OpenID provider serving discovery and a fixed JWKS, counting requests per path.
struct Idp {
    url: String,
    seen: Arc<Seen>,
}

async fn idp(jwks: Value) -> Idp {
    let url = Arc::new(OnceLock::<String>::new());
    let seen = Arc::new(Seen::default());
    let (u, s) = (url.clone(), seen.clone());
    let jwks = jwks.to_string();
    let addr = upstream(Arc::new(move |req: Request<Incoming>| {
        s.record(&req);
        let issuer = u.get().cloned().unwrap_or_default();
        let body = match req.uri().path() {
            "/.well-known/openid-configuration" => {
                Some(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")}).to_string())
            }
            "/jwks" => Some(jwks.clone()),
            _ => None,
        };
        Box::pin(async move {
            match body {
                Some(b) => Response::builder().header("content-type", "application/json").body(full(b)).unwrap(),
                None => Response::builder().status(404).body(full("")).unwrap(),
            }
        })
    }))
    .await;
    url.set(format!("http://{addr}")).unwrap();
    Idp { url: format!("http://{addr}"), seen }
}

/// A server a token points at (`jku`, `x5u`): it answers with `jwks` and counts every request.
async fn attacker_server(jwks: Value) -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let body = jwks.to_string();
    let addr = upstream(Arc::new(move |req: Request<Incoming>| {
        s.record(&req);
        let body = body.clone();
        Box::pin(
            async move { Response::builder().header("content-type", "application/json").body(full(body)).unwrap() },
        )
    }))
    .await;
    (addr, seen)
}

fn issuer_8k(name: &str, url: &str, audience: &str) -> String {
    issuer_toml(name, url, audience) + "max_token_bytes = \"8KiB\"\n"
}

/// Waits (bounded) until the gateway's `/readyz` answers 200: issuers discovered, keys loaded.

/// One gateway with one issuer, a public route `/public/` and a bearer route `/api/`, both to a
/// counting upstream.
struct Fixture {
    gw: Gateway,
    idp: Idp,
    up: Arc<Seen>,
}

async fn fixture_with(server_extra: &str) -> Fixture {
    let idp = idp(main_jwks()).await;
    let (up, seen) = counting_upstream().await;
    let base = BASE.replace("workers = 2", &format!("workers = 2\n{server_extra}"));
    let config = format!(
        "{base}\n{}\n[[route]]\nname = \"public\"\nauth = \"none\"\npath = \"/public/\"\nupstream = \"http://{up}\"\n\n\
         [[route]]\nname = \"api\"\nauth = \"bearer\"\npath = \"/api/\"\nupstream = \"http://{up}\"\n",
        issuer_8k("test", &idp.url, "api")
    );
    let gw = Gateway::start(&config);
    tokio::task::block_in_place(|| wait_ready(&gw));
    Fixture { gw, idp, up: seen }
}

async fn fixture() -> Fixture {
    fixture_with("").await
}

// ---------------------------------------------------------------------------------------------
// Assertions

fn call(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    tokio::task::block_in_place(|| get(addr, path, headers))
}

fn bearer(addr: SocketAddr, path: &str, token: &str) -> RawResponse {
    call(addr, path, &[("Authorization", &format!("Bearer {token}"))])
}

/// How a hostile request must be refused.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Want {
    /// 401 with `error="invalid_token"`.
    Token,
    /// 400 with `error="invalid_request"`: the `Authorization` header itself is malformed.
    Request,
    /// 401 `invalid_token` whose `error_description` contains this text: refused for the
    /// reason the case is about, not for another one on the way.
    Because(&'static str),
}

/// Collects every failed case of a test, so one run reports all of them.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.0.push(msg());
        }
    }
    fn assert_none(self) {
        assert!(self.0.is_empty(), "{} case(s) failed:\n  - {}", self.0.len(), self.0.join("\n  - "));
    }
}

impl Fixture {
    /// Sends `token` to `/api/` and records a failure unless it is refused as `want`, without
    /// the token in the response and without the upstream seeing a request.
    fn refuse(&self, f: &mut Failures, case: &str, token: &str, want: Want) {
        self.refuse_at(f, case, "/api/x", token, want);
    }

    fn refuse_at(&self, f: &mut Failures, case: &str, path: &str, token: &str, want: Want) {
        let before = self.up.count();
        let r = bearer(self.gw.addr, path, token);
        check_refusal(f, case, &r, token, want);
        let after = self.up.count();
        f.check(after == before, || format!("{case}: the upstream saw {} request(s)", after - before));
    }

    /// A correct token must pass, or the refusals around it mean nothing.
    fn accept(&self, f: &mut Failures, case: &str, token: &str) -> Option<Value> {
        let before = self.up.count();
        let r = bearer(self.gw.addr, "/api/x", token);
        f.check(r.status == 200, || format!("{case}: control token refused: {} {}", r.status, r.body));
        f.check(self.up.count() == before + 1, || format!("{case}: the upstream did not see the request"));
        (r.status == 200).then(|| r.json())
    }
}

fn check_refusal(f: &mut Failures, case: &str, r: &RawResponse, token: &str, want: Want) {
    let (status, code) = match want {
        Want::Token | Want::Because(_) => (401, "invalid_token"),
        Want::Request => (400, "invalid_request"),
    };
    let challenge = r.header("www-authenticate").unwrap_or("");
    if let Want::Because(why) = want {
        f.check(challenge.contains(why), || {
            format!("{case}: refused as {challenge:?}, want a description with {why:?}")
        });
    }
    f.check(r.status == status, || format!("{case}: status {} (want {status}); body {}", r.status, r.body));
    f.check(challenge.starts_with("Bearer ") && challenge.contains(&format!("error=\"{code}\"")), || {
        format!("{case}: WWW-Authenticate {challenge:?} (want Bearer ... error=\"{code}\")")
    });
    f.check(r.status == 200 || !leaks(r, token), || format!("{case}: the response echoes the token: {r:?}"));
}

/// True when the response contains the token or any sizeable piece of it.
fn leaks(r: &RawResponse, token: &str) -> bool {
    let mut text = r.body.clone();
    for (k, v) in &r.headers {
        text.push_str(k);
        text.push_str(v);
    }
    token.split('.').filter(|p| p.len() >= 12).any(|p| text.contains(p)) || (token.len() >= 12 && text.contains(token))
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Correct RS256, ES256 and EdDSA tokens pass, and the upstream learns the subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_tokens_are_accepted() {
    let fx = fixture().await;
    let k = keys();
    let iss = &fx.idp.url;
    let mut f = Failures::default();
    let tokens = [
        ("RS256", rs256(iss)),
        (
            "ES256",
            sign(
                &json!({"alg": "ES256", "kid": EC_KID}).to_string(),
                &claims_with(iss, |_| {}),
                &k.ec1,
                Algorithm::ES256,
            ),
        ),
        (
            "EdDSA",
            sign(
                &json!({"alg": "EdDSA", "kid": ED_KID}).to_string(),
                &claims_with(iss, |_| {}),
                &k.ed,
                Algorithm::EdDSA,
            ),
        ),
    ];
    for (case, token) in &tokens {
        if let Some(j) = fx.accept(&mut f, case, token) {
            f.check(j["headers"]["x-forwarded-user"] == json!(["alice"]), || {
                format!("{case}: identity {}", j["headers"])
            });
        }
    }
    // A second presentation is answered from the cache, with the same result.
    fx.accept(&mut f, "RS256 again (cached)", &tokens[0].1);
    f.assert_none();
}

/// `alg: none` in any casing, with an empty, a junk and a genuine RS256 signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_in_every_casing() {
    let fx = fixture().await;
    let mut f = Failures::default();
    let payload = claims_with(&fx.idp.url, |_| {});
    for alg in ["none", "None", "NONE", "nOnE"] {
        for header in [json!({"alg": alg}), json!({"alg": alg, "kid": RSA_KID, "typ": "JWT"})] {
            let h = header.to_string();
            let unsigned = format!("{}.{}.", b64(h.as_bytes()), b64(payload.as_bytes()));
            fx.refuse(&mut f, &format!("{h} empty signature"), &unsigned, Want::Token);
            fx.refuse(
                &mut f,
                &format!("{h} junk signature"),
                &with_sig(&h, &payload, b"junk"),
                Want::Because("unsupported signing algorithm"),
            );
            // The bytes are genuinely signed with rsa1 (RS256), but the header says none.
            let genuine = sign(&h, &payload, &keys().rsa1, Algorithm::RS256);
            fx.refuse(
                &mut f,
                &format!("{h} genuine RS256 signature"),
                &genuine,
                Want::Because("unsupported signing algorithm"),
            );
        }
    }
    f.assert_none();
}

/// HS256/384/512 keyed with the issuer's RSA public key in every form an attacker could find.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_keyed_with_the_public_key() {
    let fx = fixture().await;
    let mut f = Failures::default();
    let pem_text = std::str::from_utf8(RSA1_PUB_PEM).unwrap();
    let der: String = pem_text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(der).unwrap();
    let secrets: [(&str, Vec<u8>); 5] = [
        ("PEM bytes", RSA1_PUB_PEM.to_vec()),
        ("PEM without trailing newline", pem_text.trim_end().as_bytes().to_vec()),
        ("SPKI DER", der),
        ("JWK n bytes", rsa1_n()),
        ("JWK as JSON", public_jwk(RSA1_JWK, RSA_KID).to_string().into_bytes()),
    ];
    for (what, secret) in &secrets {
        let key = EncodingKey::from_secret(secret);
        for (alg, name) in [(Algorithm::HS256, "HS256"), (Algorithm::HS384, "HS384"), (Algorithm::HS512, "HS512")] {
            for header in [json!({"alg": name, "kid": RSA_KID}), json!({"alg": name})] {
                let token = sign(&header.to_string(), &claims_with(&fx.idp.url, |_| {}), &key, alg);
                fx.refuse(
                    &mut f,
                    &format!("{header} keyed with {what}"),
                    &token,
                    Want::Because("unsupported signing algorithm"),
                );
            }
        }
    }
    f.assert_none();
}

/// Keys the token names or carries itself are never used or fetched: `jwk`, `jku`, `x5u`,
/// `x5c`. The servers the token points at must not see a single request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_the_token_are_never_trusted_or_fetched() {
    let fx = fixture().await;
    let k = keys();
    let iss = fx.idp.url.clone();
    let mut f = Failures::default();
    let attacker_jwk = public_jwk(RSA2_JWK, "attacker");
    let (evil, evil_seen) = attacker_server(json!({"keys": [attacker_jwk.clone()]})).await;
    let payload = || claims_with(&iss, |_| {});
    let cases = [
        ("embedded jwk, kid attacker", json!({"alg": "RS256", "kid": "attacker", "jwk": attacker_jwk})),
        ("embedded jwk, no kid", json!({"alg": "RS256", "jwk": attacker_jwk})),
        ("embedded jwk, kid test-rsa-1", json!({"alg": "RS256", "kid": RSA_KID, "jwk": attacker_jwk})),
        ("jku", json!({"alg": "RS256", "kid": "attacker", "jku": format!("http://{evil}/jwks")})),
        ("jku, kid test-rsa-1", json!({"alg": "RS256", "kid": RSA_KID, "jku": format!("http://{evil}/jwks")})),
        ("x5u", json!({"alg": "RS256", "kid": "attacker", "x5u": format!("http://{evil}/cert.pem")})),
        ("jku as a relative path", json!({"alg": "RS256", "kid": "attacker", "jku": "/jwks"})),
        ("jku null", json!({"alg": "RS256", "kid": "attacker", "jku": null})),
    ];
    for (case, header) in &cases {
        let token = sign(&header.to_string(), &payload(), &k.rsa2, Algorithm::RS256);
        fx.refuse(&mut f, case, &token, Want::Because("jku, x5u and jwk are not accepted"));
    }
    // x5c: a self-signed certificate for the attacker's own EC key, token signed by that key.
    let cert = rcgen::generate_simple_self_signed(vec!["attacker.test".into()]).unwrap();
    let ec_key = EncodingKey::from_ec_der(&cert.signing_key.serialize_der());
    let x5c = STANDARD.encode(cert.cert.der());
    for header in [json!({"alg": "ES256", "x5c": [x5c]}), json!({"alg": "ES256", "kid": EC_KID, "x5c": [x5c]})] {
        let token = sign(&header.to_string(), &payload(), &ec_key, Algorithm::ES256);
        fx.refuse(&mut f, "x5c with the attacker's certificate", &token, Want::Token);
    }
    f.check(evil_seen.count() == 0, || format!("the attacker's server was contacted: {:?}", evil_seen.paths()));
    let idp_paths = fx.idp.seen.paths();
    f.check(idp_paths.iter().all(|p| p == "/.well-known/openid-configuration" || p == "/jwks"), || {
        format!("the issuer was asked for {idp_paths:?}")
    });
    fx.accept(&mut f, "control", &rs256(&iss));
    f.assert_none();
}

/// Signatures that are zero (or the curve order), which broken verifiers have accepted
/// (CVE-2022-21449 for ECDSA r = s = 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degenerate_signatures() {
    let fx = fixture().await;
    let mut f = Failures::default();
    let payload = claims_with(&fx.idp.url, |_| {});
    let es = json!({"alg": "ES256", "kid": EC_KID}).to_string();
    let rs = json!({"alg": "RS256", "kid": RSA_KID}).to_string();
    let ed = json!({"alg": "EdDSA", "kid": ED_KID}).to_string();
    let order: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&P256_ORDER[2 * i..2 * i + 2], 16).unwrap()).collect();
    let r_s_n: Vec<u8> = [order.clone(), order].concat();
    let mut one = vec![0u8; 256];
    one[255] = 1;
    let cases: Vec<(&str, String)> = vec![
        ("ES256 r=s=0", with_sig(&es, &payload, &[0; 64])),
        ("ES256 r=s=n", with_sig(&es, &payload, &r_s_n)),
        ("ES256 one zero byte", with_sig(&es, &payload, &[0])),
        ("ES256 DER-encoded r=s=0", with_sig(&es, &payload, &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00])),
        ("RS256 all-zero signature", with_sig(&rs, &payload, &[0; 256])),
        ("RS256 signature = 1", with_sig(&rs, &payload, &one)),
        ("RS256 signature = n", with_sig(&rs, &payload, &rsa1_n())),
        ("EdDSA all-zero signature", with_sig(&ed, &payload, &[0; 64])),
    ];
    for (case, token) in &cases {
        fx.refuse(&mut f, case, token, Want::Because("invalid signature"));
    }
    f.assert_none();
}

/// Keys are pinned to their `alg`: rsa1 (RS256) does not verify PS256 or RS512 even when the
/// signature is genuinely made with its private key; keys of one type never verify another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_pinned_to_their_algorithm() {
    let fx = fixture().await;
    let k = keys();
    let iss = fx.idp.url.clone();
    let mut f = Failures::default();
    let payload = || claims_with(&iss, |_| {});
    let h = |alg: &str, kid: &str| json!({"alg": alg, "kid": kid}).to_string();
    let cases = [
        ("PS256 by rsa1, kid test-rsa-1", sign(&h("PS256", RSA_KID), &payload(), &k.rsa1, Algorithm::PS256)),
        ("PS512 by rsa1, kid test-rsa-1", sign(&h("PS512", RSA_KID), &payload(), &k.rsa1, Algorithm::PS512)),
        ("RS512 by rsa1, kid test-rsa-1", sign(&h("RS512", RSA_KID), &payload(), &k.rsa1, Algorithm::RS512)),
        ("ES256 by ec1, kid test-rsa-1", sign(&h("ES256", RSA_KID), &payload(), &k.ec1, Algorithm::ES256)),
        ("RS256 by rsa1, kid test-ec-1", sign(&h("RS256", EC_KID), &payload(), &k.rsa1, Algorithm::RS256)),
        ("EdDSA by ed, kid test-ec-1", sign(&h("EdDSA", EC_KID), &payload(), &k.ed, Algorithm::EdDSA)),
        ("ES256 by ec1, kid test-ed-1", sign(&h("ES256", ED_KID), &payload(), &k.ec1, Algorithm::ES256)),
    ];
    for (case, token) in &cases {
        fx.refuse(&mut f, case, token, Want::Because("signing algorithm not allowed for this key"));
    }
    fx.accept(&mut f, "control", &rs256(&iss));
    f.assert_none();
}

/// Signatures stripped, swapped, truncated, re-encoded; payload or header changed after signing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_tokens() {
    let fx = fixture().await;
    let iss = fx.idp.url.clone();
    let mut f = Failures::default();
    let a = rs256(&iss);
    let b = rs256(&iss);
    let (pa, pb) = (parts(&a), parts(&b));
    let admin_payload = b64(claims_with(&iss, |c| {
        c.insert("sub".into(), "admin".into());
    })
    .as_bytes());
    let other_header = b64(json!({"alg": "RS256", "kid": RSA_KID, "typ": "at+jwt"}).to_string().as_bytes());
    // The last character of a 256-byte signature carries 2 bits and 4 unused ones: set those.
    let sig = pa[2];
    let last = sig.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.find(last).unwrap();
    // Canonical encoders leave the 4 low bits zero; flipping bit 0 keeps the decoded bytes.
    let noncanonical = alphabet.chars().nth(idx ^ 1).unwrap();
    let cases = [
        ("stripped signature", format!("{}.{}.", pa[0], pa[1])),
        ("signature swapped from another valid token", format!("{}.{}.{}", pa[0], pa[1], pb[2])),
        ("payload changed after signing (sub=admin)", format!("{}.{}.{}", pa[0], admin_payload, pa[2])),
        ("payload swapped from another valid token", format!("{}.{}.{}", pa[0], pb[1], pa[2])),
        ("header changed after signing", format!("{}.{}.{}", other_header, pa[1], pa[2])),
        ("signature truncated", format!("{}.{}.{}", pa[0], pa[1], &sig[..sig.len() - 4])),
        ("signature extended", format!("{}.{}.{}AAAA", pa[0], pa[1], sig)),
        (
            "non-canonical base64 in the signature's last character",
            format!("{}.{}.{}{}", pa[0], pa[1], &sig[..sig.len() - 1], noncanonical),
        ),
        ("signature doubled", format!("{}.{}.{}{}", pa[0], pa[1], sig, sig)),
    ];
    for (case, token) in &cases {
        let want = if case.starts_with("stripped") { Want::Token } else { Want::Because("invalid signature") };
        fx.refuse(&mut f, case, token, want);
    }
    fx.accept(&mut f, "the untampered token", &a);
    f.assert_none();
}

/// Anything but three parts: JWE-shaped (5), 4, 2 and 1 parts, and empty parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_number_of_parts() {
    let fx = fixture().await;
    let mut f = Failures::default();
    let t = rs256(&fx.idp.url);
    let p = parts(&t);
    let jwe_header = b64(json!({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": RSA_KID}).to_string().as_bytes());
    let cases = [
        (
            "5 parts (JWE)",
            format!("{jwe_header}.{}.{}.{}.{}", b64(&[7; 256]), b64(&[1; 12]), b64(b"ciphertext"), b64(&[2; 16])),
        ),
        ("5 parts from a valid JWS", format!("{t}.{}.{}", p[1], p[2])),
        ("4 parts (trailing dot)", format!("{t}.")),
        ("4 parts", format!("{t}.{}", p[2])),
        ("2 parts", format!("{}.{}", p[0], p[1])),
        ("1 part (header only)", p[0].to_string()),
        ("empty header", format!(".{}.{}", p[1], p[2])),
        ("empty payload", format!("{}..{}", p[0], p[2])),
        ("only dots", "..".to_string()),
        ("6 parts", format!("{t}.{t}").split('.').take(6).collect::<Vec<_>>().join(".")),
    ];
    for (case, token) in &cases {
        let want = if case.starts_with("5 parts") { Want::Because("encrypted tokens") } else { Want::Token };
        fx.refuse(&mut f, case, token, want);
    }
    f.assert_none();
}

/// Encodings and JSON that a lenient parser would take: bad base64, padding, the standard
/// alphabet, non-JSON, arrays, duplicate keys. Headers are signed for real with rsa1 so that
/// the only thing wrong is what the case names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_encodings_and_json() {
    let fx = fixture().await;
    let iss = fx.idp.url.clone();
    let mut f = Failures::default();
    let t = rs256(&iss);
    let p = parts(&t);
    // The malformed header is rejected by the token68 syntax check: 400 invalid_request.
    let request_cases = [
        ("'*' in the payload", format!("{}.{}*.{}", p[0], p[1], p[2])),
        ("'=' padding on the header", format!("{}==.{}.{}", p[0], p[1], p[2])),
        ("'=' padding on the payload", format!("{}.{}=.{}", p[0], p[1], p[2])),
        ("space inside the token", format!("{}.{} .{}", p[0], p[1], p[2])),
        ("quote inside the token", format!("{}.\"{}\".{}", p[0], p[1], p[2])),
        ("comma inside the token", format!("{},.{}.{}", p[0], p[1], p[2])),
        ("non-ASCII character inside the token", format!("{}.{}\u{e9}.{}", p[0], p[1], p[2])),
    ];
    for (case, token) in &request_cases {
        fx.refuse(&mut f, case, token, Want::Request);
    }
    let std_alphabet = t.replace('-', "+").replace('_', "/");
    f.check(std_alphabet != t, || "the control token has no - or _ to re-encode".into());
    let with_pad = |s: &str| format!("{s}{}", "=".repeat((4 - s.len() % 4) % 4));
    let padded_sig = format!("{}.{}.{}", p[0], p[1], with_pad(p[2]));
    f.check(padded_sig != t, || "the signature needs no padding; the case is void".into());
    let payload = claims_with(&iss, |_| {});
    let nest = ("[".repeat(3000), "]".repeat(3000));
    let rs_header = json!({"alg": "RS256", "kid": RSA_KID}).to_string();
    let token_cases = [
        ("standard base64 (+ and /) instead of base64url", std_alphabet),
        ("'=' padding on the signature", padded_sig),
        ("non-JSON header", with_sig("not json", &payload, &[1; 256])),
        ("non-JSON header, signed", rs256_header("not json", &iss)),
        (
            "header that is a JSON array, signed",
            rs256_header(&json!(["RS256", RSA_KID, "JWT", null, null, null, null]).to_string(), &iss),
        ),
        ("header that is a JSON string, signed", rs256_header("\"RS256\"", &iss)),
        (
            "header with trailing garbage, signed",
            rs256_header(&format!("{{\"alg\":\"RS256\",\"kid\":\"{RSA_KID}\"}}x"), &iss),
        ),
        (
            "header with two objects, signed",
            rs256_header(&format!("{{\"alg\":\"RS256\",\"kid\":\"{RSA_KID}\"}}{{}}"), &iss),
        ),
        (
            "duplicate alg (RS256 then none), signed",
            rs256_header(&format!("{{\"alg\":\"RS256\",\"alg\":\"none\",\"kid\":\"{RSA_KID}\"}}"), &iss),
        ),
        (
            "duplicate alg (none then RS256), signed",
            rs256_header(&format!("{{\"alg\":\"none\",\"alg\":\"RS256\",\"kid\":\"{RSA_KID}\"}}"), &iss),
        ),
        (
            "duplicate alg (RS256 twice), signed",
            rs256_header(&format!("{{\"alg\":\"RS256\",\"alg\":\"RS256\",\"kid\":\"{RSA_KID}\"}}"), &iss),
        ),
        (
            "duplicate alg via \\u escape, signed",
            rs256_header(&format!("{{\"alg\":\"RS256\",\"\\u0061lg\":\"none\",\"kid\":\"{RSA_KID}\"}}"), &iss),
        ),
        (
            "duplicate kid, signed",
            rs256_header(&format!("{{\"alg\":\"RS256\",\"kid\":\"{RSA_KID}\",\"kid\":\"{EC_KID}\"}}"), &iss),
        ),
        ("alg not a string, signed", rs256_header(&format!("{{\"alg\":[\"RS256\"],\"kid\":\"{RSA_KID}\"}}"), &iss)),
        ("alg missing, signed", rs256_header(&format!("{{\"kid\":\"{RSA_KID}\"}}"), &iss)),
        ("alg lower-case rs256, signed", rs256_header(&format!("{{\"alg\":\"rs256\",\"kid\":\"{RSA_KID}\"}}"), &iss)),
        ("kid not a string, signed", rs256_header("{\"alg\":\"RS256\",\"kid\":1}", &iss)),
        ("payload not JSON, signed", rs256_payload("not json")),
        ("payload a JSON array, signed", rs256_payload(&json!([claims(&iss)]).to_string())),
        ("payload with trailing garbage, signed", rs256_payload(&format!("{}x", claims_with(&iss, |_| {})))),
        ("empty header object, signed", rs256_header("{}", &iss)),
        // Parsed before the signature is checked, so anyone can send these: they must be
        // refused cheaply (serde_json's recursion limit), without crashing the worker.
        (
            "header nesting 3000 arrays",
            with_sig(&format!("{{\"alg\":\"RS256\",\"x\":{}{}}}", nest.0, nest.1), &payload, &[1; 256]),
        ),
        ("payload nesting 3000 arrays", with_sig(&rs_header, &format!("{{\"x\":{}{}}}", nest.0, nest.1), &[1; 256])),
        (
            "payload with a 400-digit exp, signed",
            rs256_payload(&format!("{{\"iss\":\"{iss}\",\"aud\":\"api\",\"sub\":\"a\",\"exp\":{}}}", "9".repeat(400))),
        ),
    ];
    for (case, token) in &token_cases {
        fx.refuse(&mut f, case, token, Want::Token);
    }
    fx.accept(&mut f, "control", &rs256(&iss));
    f.assert_none();
}

/// Tokens over the issuer's `max_token_bytes` are refused without parsing; a request head
/// over `server.max_header_bytes` gets 431 (not 500); a token just under the limit passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_tokens_and_headers() {
    const TOO_LARGE: Want = Want::Because("token too large");
    let fx = fixture_with("max_header_bytes = \"256KiB\"").await;
    let iss = fx.idp.url.clone();
    let mut f = Failures::default();
    let padded = |size: usize| {
        let mut token = String::new();
        let mut pad = size;
        // Adjust the padding claim until the signed token has the wanted length (±4 bytes).
        for _ in 0..4 {
            token = rs256_payload(&claims_with(&iss, |c| {
                c.insert("pad".into(), "x".repeat(pad).into());
            }));
            pad = (pad as i64 + (size as i64 - token.len() as i64) * 3 / 4) as usize;
        }
        token
    };
    let under = padded(8 * 1024 - 64);
    f.check(under.len() <= 8 * 1024, || format!("control token is {} bytes", under.len()));
    fx.accept(&mut f, "valid token just under max_token_bytes", &under);
    let over = padded(8 * 1024 + 64);
    f.check(over.len() > 8 * 1024, || format!("over-limit token is only {} bytes", over.len()));
    fx.refuse(&mut f, "valid token just over max_token_bytes (8KiB)", &over, TOO_LARGE);
    fx.refuse(&mut f, "valid 100 KB token", &padded(100 * 1024), TOO_LARGE);
    let junk = format!("{}.{}.{}", "a".repeat(40_000), "b".repeat(40_000), "c".repeat(20_000));
    fx.refuse(&mut f, "100 KB of junk in JWS shape", &junk, TOO_LARGE);
    let opaque = "o".repeat(100 * 1024);
    fx.refuse(&mut f, "100 KB opaque token", &opaque, TOO_LARGE);

    let before = fx.up.count();
    let big = format!("Bearer {}", "a".repeat(300 * 1024));
    let r = call(fx.gw.addr, "/api/x", &[("Authorization", &big)]);
    f.check(r.status == 431, || format!("300 KB Authorization header: status {} (want 431)", r.status));
    let r = call(fx.gw.addr, "/public/x", &[("X-Big", &"b".repeat(300 * 1024))]);
    f.check(r.status == 431, || format!("300 KB header on the public route: status {} (want 431)", r.status));
    f.check(fx.up.count() == before, || "an oversized request head reached the upstream".into());
    fx.accept(&mut f, "control after the oversized requests", &rs256(&iss));
    f.assert_none();
}

/// Claims jsonwebtoken's defaults let through (or that a lax check would), each on an otherwise
/// correct token signed by the issuer's real key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_a_lenient_validator_would_accept() {
    let fx = fixture().await;
    let iss = fx.idp.url.clone();
    let t = now();
    let mut f = Failures::default();
    type Edit = Box<dyn Fn(&mut serde_json::Map<String, Value>)>;
    let set = |k: &'static str, v: Value| -> Edit {
        Box::new(move |c| {
            c.insert(k.into(), v.clone());
        })
    };
    let del = |k: &'static str| -> Edit {
        Box::new(move |c| {
            c.remove(k);
        })
    };
    let cases: Vec<(&str, Edit)> = vec![
        ("iss as an array holding the right issuer", set("iss", json!([iss]))),
        ("iss as an array of the issuer and another", set("iss", json!([iss, "https://evil.example"]))),
        ("iss missing", del("iss")),
        ("iss with a trailing slash", set("iss", json!(format!("{iss}/")))),
        ("iss of another issuer", set("iss", json!("https://evil.example"))),
        ("iss null", set("iss", Value::Null)),
        ("aud missing", del("aud")),
        ("aud a number", set("aud", json!(1))),
        ("aud an object", set("aud", json!({"api": true}))),
        ("aud null", set("aud", Value::Null)),
        ("aud another audience", set("aud", json!("other"))),
        ("aud an array of other audiences", set("aud", json!(["other", "api2"]))),
        ("aud an array nesting the audience", set("aud", json!([["api"]]))),
        ("aud empty array", set("aud", json!([]))),
        ("nbf in the future", set("nbf", json!(t + 3600))),
        ("iat in the future", set("iat", json!(t + 3600))),
        ("exp missing", del("exp")),
        ("exp a string", set("exp", json!((t + 600).to_string()))),
        ("exp in the past", set("exp", json!(t - 3600))),
        ("exp negative", set("exp", json!(-1))),
        ("exp null", set("exp", Value::Null)),
        ("exp boolean", set("exp", json!(true))),
        ("nbf a string", set("nbf", json!(t.to_string()))),
        ("iat a string", set("iat", json!(t.to_string()))),
        ("sub missing", del("sub")),
        ("sub empty", set("sub", json!(""))),
    ];
    for (case, edit) in &cases {
        let token = rs256_payload(&claims_with(&iss, |c| edit(c)));
        fx.refuse(&mut f, case, &token, Want::Token);
    }
    let ok = rs256_payload(&claims_with(&iss, |c| {
        c.insert("aud".into(), json!(["other", "api"]));
    }));
    fx.accept(&mut f, "control: aud array containing api", &ok);
    f.assert_none();
}

/// Any `crit` header is refused: tollgate implements no JWS extension (RFC 7515 §4.1.11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crit_headers_are_refused() {
    let fx = fixture().await;
    let iss = fx.idp.url.clone();
    let mut f = Failures::default();
    let cases = [
        (
            "crit [\"exp\"] with exp in the header",
            json!({"alg": "RS256", "kid": RSA_KID, "crit": ["exp"], "exp": now() + 60}),
        ),
        ("crit []", json!({"alg": "RS256", "kid": RSA_KID, "crit": []})),
        ("crit [\"b64\"] with b64 false", json!({"alg": "RS256", "kid": RSA_KID, "crit": ["b64"], "b64": false})),
        ("crit as a string", json!({"alg": "RS256", "kid": RSA_KID, "crit": "exp"})),
        ("crit null", json!({"alg": "RS256", "kid": RSA_KID, "crit": null})),
        (
            "crit naming an unknown extension",
            json!({"alg": "RS256", "kid": RSA_KID, "crit": ["http://example.com/x"], "http://example.com/x": 1}),
        ),
    ];
    for (case, header) in &cases {
        fx.refuse(&mut f, case, &rs256_header(&header.to_string(), &iss), Want::Because("unsupported critical header"));
    }
    fx.accept(&mut f, "control", &rs256(&iss));
    f.assert_none();
}

/// Two issuers publish the same `kid` for different keys: a token is only ever checked with
/// the keys of the issuer it names, only on routes that accept that issuer, and a cached
/// verification for one issuer does not open routes of another. Unknown `kid`s are refused
/// and cannot make the gateway hammer the issuer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_collisions_between_issuers_and_unknown_kids() {
    let a = idp(main_jwks()).await;
    let b = idp(json!({"keys": [public_jwk(RSA2_JWK, RSA_KID)]})).await;
    let (up, seen) = counting_upstream().await;
    let config = format!(
        "{BASE}\n{}\n{}\n\
         [[route]]\nname = \"a\"\nauth = \"bearer\"\nissuers = [\"a\"]\npath = \"/api/\"\nupstream = \"http://{up}\"\n\n\
         [[route]]\nname = \"b\"\nauth = \"bearer\"\nissuers = [\"b\"]\npath = \"/b/\"\nupstream = \"http://{up}\"\n",
        issuer_8k("a", &a.url, "api"),
        issuer_8k("b", &b.url, "api"),
    );
    let gw = Gateway::start(&config);
    tokio::task::block_in_place(|| wait_ready(&gw));
    let fx = Fixture { gw, idp: a, up: seen };
    let k = keys();
    let mut f = Failures::default();
    let header = json!({"alg": "RS256", "kid": RSA_KID}).to_string();
    let from_b = sign(&header, &claims_with(&b.url, |_| {}), &k.rsa2, Algorithm::RS256);
    let b_key_claims_a = sign(&header, &claims_with(&fx.idp.url, |_| {}), &k.rsa2, Algorithm::RS256);
    let a_key_claims_b = sign(&header, &claims_with(&b.url, |_| {}), &k.rsa1, Algorithm::RS256);

    let foreign = Want::Because("token issuer not accepted here");
    fx.refuse(&mut f, "B's token (colliding kid) on A's route, before B's route has seen it", &from_b, foreign);
    let before = fx.up.count();
    let r = bearer(fx.gw.addr, "/b/x", &from_b);
    f.check(r.status == 200 && fx.up.count() == before + 1, || {
        format!("B's token on B's route: {} {}", r.status, r.body)
    });
    fx.refuse(&mut f, "B's token on A's route after it was verified (cached) for B", &from_b, foreign);
    fx.refuse(&mut f, "signed by B's key, iss A, colliding kid", &b_key_claims_a, Want::Because("invalid signature"));
    fx.refuse_at(
        &mut f,
        "signed by A's key, iss B, colliding kid, on B's route",
        "/b/x",
        &a_key_claims_b,
        Want::Because("invalid signature"),
    );

    let jwks_before = fx.idp.seen.paths().iter().filter(|p| *p == "/jwks").count();
    for i in 0..20 {
        let h = json!({"alg": "RS256", "kid": format!("unknown-{i}")}).to_string();
        let token = sign(&h, &claims_with(&fx.idp.url, |_| {}), &k.rsa1, Algorithm::RS256);
        fx.refuse(&mut f, &format!("unknown kid #{i}"), &token, Want::Because("unknown signing key"));
    }
    let jwks_fetches = fx.idp.seen.paths().iter().filter(|p| *p == "/jwks").count() - jwks_before;
    f.check(jwks_fetches <= 1, || format!("20 unknown kids caused {jwks_fetches} JWKS fetches (want at most 1)"));
    fx.accept(&mut f, "A's control token", &rs256(&fx.idp.url));
    f.assert_none();
}

/// Identity headers sent by the client never reach the upstream as sent, in any spelling, on a
/// public route and on a bearer route (where the gateway sets X-Forwarded-User from `sub`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let fx = fixture().await;
    let mut f = Failures::default();
    let spoofed = [
        ("X-Forwarded-User", "admin"),
        ("x_forwarded_user", "admin"),
        ("X-FORWARDED-USER", "root"),
        ("X_Forwarded-User", "admin"),
        ("X-Auth-Request-User", "admin"),
        ("x_auth_request_user", "admin"),
        ("X-Forwarded-Email", "admin@example.com"),
        ("X-Forwarded-Groups", "admins"),
        ("X-Forwarded-Preferred-Username", "admin"),
        ("X-Forwarded-Access-Token", "forged"),
        ("X-Auth-Request-Email", "admin@example.com"),
    ];
    let forbidden_values = ["admin", "root", "admin@example.com", "admins", "forged"];
    let token = rs256(&fx.idp.url);
    let auth = format!("Bearer {token}");
    for (route, path, with_token) in [("public", "/public/x", false), ("bearer", "/api/x", true)] {
        let mut headers: Vec<(&str, &str)> = spoofed.to_vec();
        if with_token {
            headers.push(("Authorization", &auth));
        }
        let r = call(fx.gw.addr, path, &headers);
        f.check(r.status == 200, || format!("{route}: status {} {}", r.status, r.body));
        if r.status != 200 {
            continue;
        }
        let seen = r.json()["headers"].as_object().cloned().unwrap_or_default();
        for (name, values) in &seen {
            let plain = name.replace('_', "-");
            let identity = plain.starts_with("x-forwarded-") || plain.starts_with("x-auth-request-");
            let values: Vec<&str> = values.as_array().unwrap().iter().filter_map(Value::as_str).collect();
            f.check(!(identity && values.iter().any(|v| forbidden_values.contains(v))), || {
                format!("{route}: the upstream saw {name}: {values:?}")
            });
            f.check(!name.contains('_'), || format!("{route}: underscore spelling {name} reached the upstream"));
        }
        for gone in ["x-auth-request-user", "x-forwarded-email", "x-forwarded-groups", "x-forwarded-access-token"] {
            f.check(!seen.contains_key(gone), || format!("{route}: {gone} reached the upstream: {:?}", seen[gone]));
        }
        let user = seen.get("x-forwarded-user").cloned();
        let want = if with_token { Some(json!(["alice"])) } else { None };
        f.check(user == want, || format!("{route}: x-forwarded-user {user:?}, want {want:?}"));
    }
    // Spoofed identity with a bad token: refused before any upstream request.
    let mut bad = spoofed.to_vec();
    let forged = format!("Bearer {}.{}.", parts(&token)[0], parts(&token)[1]);
    bad.push(("Authorization", &forged));
    let before = fx.up.count();
    let r = call(fx.gw.addr, "/api/x", &bad);
    f.check(r.status == 401 && fx.up.count() == before, || format!("spoofed headers + stripped token: {}", r.status));
    f.assert_none();
}

/// The refusal never carries the token back: not in the body, not in `WWW-Authenticate`, not
/// in any header, whatever the reason for the refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_never_echo_the_token() {
    let fx = fixture().await;
    let iss = fx.idp.url.clone();
    let mut f = Failures::default();
    let expired = rs256_payload(&claims_with(&iss, |c| {
        c.insert("exp".into(), json!(now() - 3600));
    }));
    let p = parts(&expired);
    let cases = [
        ("expired", expired.clone(), Want::Token),
        ("bad signature", format!("{}.{}.{}", p[0], p[1], b64(&[9; 256])), Want::Token),
        ("opaque, no introspection", "opaque-token-value-0123456789abcdef".to_string(), Want::Token),
        ("malformed header JSON", format!("{}.{}.{}", b64(b"{\"alg\":"), p[1], p[2]), Want::Token),
        ("invalid request", format!("{}.{}.{}*", p[0], p[1], p[2]), Want::Request),
        ("JWE", format!("{}.{}.{}.{}.{}", p[0], p[1], p[2], p[1], p[2]), Want::Token),
    ];
    for (case, token, want) in &cases {
        fx.refuse(&mut f, case, token, *want);
        let r = bearer(fx.gw.addr, "/api/x", token);
        let text = format!("{r:?}");
        f.check(!text.contains(&token[..token.len().min(24)]), || format!("{case}: token prefix echoed: {text}"));
    }
    // And the gateway's own logs never hold it either.
    let logs = fx.gw.logs();
    f.check(!logs.contains(p[2]), || "a signature was logged".into());
    f.assert_none();
}

/// Claims end up in upstream headers (X-Forwarded-User, -Email, -Groups): a signed token whose
/// claims hold CR/LF must not smuggle extra headers to the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_cannot_inject_upstream_headers() {
    let fx = fixture().await;
    let iss = fx.idp.url.clone();
    let mut f = Failures::default();
    let token = rs256_payload(&claims_with(&iss, |c| {
        c.insert("sub".into(), json!("alice\r\nX-Admin: true"));
        c.insert("email".into(), json!("a@example.com\nX-Injected-Email: 1"));
        c.insert("groups".into(), json!(["users\r\nX-Injected-Group: 1"]));
        c.insert("preferred_username".into(), json!("bob\u{0}"));
    }));
    let before = fx.up.count();
    let r = bearer(fx.gw.addr, "/api/x", &token);
    if r.status == 200 {
        let seen = r.json()["headers"].as_object().cloned().unwrap_or_default();
        for (name, values) in &seen {
            f.check(!name.starts_with("x-admin") && !name.starts_with("x-injected"), || {
                format!("an injected header reached the upstream: {name}: {values}")
            });
            let text = values.to_string();
            f.check(!text.contains("\\r") && !text.contains("\\n") && !text.contains("\\u0000"), || {
                format!("a control character reached the upstream in {name}: {text}")
            });
        }
    } else {
        // Refusing such a token outright is acceptable too, but then nothing may be forwarded.
        check_refusal(&mut f, "claims with CR/LF", &r, &token, Want::Token);
        f.check(fx.up.count() == before, || "refused, yet the upstream saw the request".into());
    }
    f.assert_none();
}

/// A route that takes tokens only from the `Authorization` header ignores tokens in the query
/// and in cookies (no bare 200), and two `Authorization` headers are a malformed request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_outside_the_authorization_header_are_ignored() {
    let fx = fixture().await;
    let mut f = Failures::default();
    let token = rs256(&fx.idp.url);
    let before = fx.up.count();
    for (case, path, headers) in [
        ("token in the query", format!("/api/x?access_token={token}"), vec![]),
        ("token in a cookie", "/api/x".to_string(), vec![("Cookie", format!("access_token={token}"))]),
        ("token in a Basic credential", "/api/x".to_string(), vec![("Authorization", format!("Basic {token}"))]),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = call(fx.gw.addr, &path, &headers);
        let challenge = r.header("www-authenticate").unwrap_or("");
        f.check(r.status == 401 && challenge.starts_with("Bearer ") && !challenge.contains("error="), || {
            format!("{case}: {} {challenge:?} (want 401 with a bare Bearer challenge)", r.status)
        });
        f.check(!leaks(&r, &token), || format!("{case}: the response echoes the token"));
    }
    let auth = format!("Bearer {token}");
    let r = call(fx.gw.addr, "/api/x", &[("Authorization", &auth), ("Authorization", &auth)]);
    check_refusal(&mut f, "two Authorization headers", &r, &token, Want::Request);
    f.check(fx.up.count() == before, || "a request without a usable token reached the upstream".into());
    fx.accept(&mut f, "control", &token);
    f.assert_none();
}

/// Paths that try to reach the bearer route's upstream path through the public route: each is
/// either routed to the bearer route (401 without a token) or refused (400), never forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_do_not_bypass_the_bearer_route() {
    let fx = fixture().await;
    let mut f = Failures::default();
    let before = fx.up.count();
    for path in [
        "/public/../api/x",
        "/public/./../api/x",
        "/public/%2e%2e/api/x",
        "/public/.%2E/api/x",
        "/public/..%2fapi/x",
        "/public/%2E%2E%2Fapi/x",
        "/public/..%5capi/x",
        "/public/..\\api/x",
        "//api/x",
        "/./api/x",
        "/public/..%00/api/x",
    ] {
        let r = call(fx.gw.addr, path, &[]);
        f.check(r.status == 401 || r.status == 400, || format!("{path}: status {} {}", r.status, r.body));
    }
    let after = fx.up.count();
    let seen: Vec<String> = fx.up.paths().into_iter().skip(before).collect();
    f.check(after == before, || format!("forwarded to the upstream as {seen:?}"));
    f.assert_none();
}

/// Servlet containers (Tomcat, Jetty, Spring) strip `;parameters` from each segment before
/// resolving dot segments, so `/public/..;/api/x` is `/api/x` to them while RFC 3986 (and the
/// router) sees an ordinary segment `..;` under the public route. A gateway in front of such
/// an upstream must not forward these: refuse them (400) or route them as the upstream will.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_with_path_parameters_do_not_bypass_the_bearer_route() {
    let fx = fixture().await;
    let mut f = Failures::default();
    let before = fx.up.count();
    for path in ["/public/..;/api/x", "/public/..;jsessionid=1/api/x", "/public/%2e%2e;/api/x"] {
        let r = call(fx.gw.addr, path, &[]);
        f.check(r.status == 401 || r.status == 400, || format!("{path}: status {} (want 400 or 401)", r.status));
    }
    let seen: Vec<String> = fx.up.paths().into_iter().skip(before).collect();
    f.check(seen.is_empty(), || format!("forwarded to the upstream as {seen:?}"));
    f.assert_none();
}
