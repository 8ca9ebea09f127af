//! Token verification hot paths, end to end through `Authenticator::authenticate`: one
//! function per path (cold RS256, ES256 and EdDSA verification, and a verified-cache hit),
//! plus the bare signature check per algorithm as a baseline (`*_signature_only`: jsonwebtoken,
//! which rebuilds the key from the JWK's numbers on every call; `*_signature_prepared_key`: the
//! gateway's `VerifyKey::verify`, the key parsed once).
//!
//! The issuer is served in-process (discovery + JWKS on 127.0.0.1:0) by a multi-thread tokio
//! runtime that lives as long as the benches; the authenticator loads its keys from there
//! exactly as the gateway does.
//!
//! Polling: with the keys loaded and a known `kid`, `authenticate` never awaits anything (a
//! refetch happens only for an unknown `kid`, introspection only for opaque tokens), so each
//! call is driven by `FutureExt::now_or_never` on the bench thread. That measures the
//! verification itself, without a runtime's scheduling; a `None` (the future wanted to wait)
//! would be a bug in the set-up and panics.
//!
//! Cold paths: the verified-token cache is keyed by the token's hash, so a token seen before is
//! a cache hit. Each cold bench pre-mints `TOKENS` distinct tokens (different `jti`) and uses
//! `iter_custom`: the timed loop walks the tokens in order on an authenticator whose cache is
//! empty; when a sample needs more iterations than there are tokens, a fresh authenticator
//! (new empty cache, keys fetched again) is built between runs, outside the timed region. So no
//! token is ever presented twice to the same cache, whatever iteration counts criterion picks,
//! and the cost of inserting into the cache (part of a real miss) is included.
//!
//! Every request a miss at the cache's bound (`rs256_miss_at_bound`): an issuer with a fixed
//! identifier (`MISS_ISSUER`, keys from the in-process JWKS), `MISS_TOKENS` distinct RS256
//! tokens kept in `target/bench-tokens/` between runs (minting 100,000 RSA signatures takes
//! about a minute; a file whose tokens expire within the day is minted again). Before timing,
//! an authenticator's verified-token cache is filled past its 32 MiB bound with `MISS_PREFILL`
//! tokens, untimed, so every timed call pays what a miss costs in steady state under a flood
//! of fresh tokens: verification, insertion, and eviction. A sample that needs more tokens than
//! remain gets a fresh, pre-filled authenticator, untimed; no token is ever presented twice to
//! the same cache.
//!
//! Run: `cargo bench --bench jwt -- --warm-up-time 1 --measurement-time 3`

// A bench is set-up code: a failed set-up should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use tollgate::auth::jwks::{KeySet, Lookup};
use tollgate::auth::{AuthMetrics, Authenticator};
use tollgate::config::{Bearer, Config, RouteAuth};
use tollgate::oidc::http::IdpClient;

/// Distinct tokens minted per algorithm for the cold benches.
const TOKENS: usize = 20_000;
/// Distinct RS256 tokens for `rs256_miss_at_bound`.
const MISS_TOKENS: usize = 100_000;
/// Tokens verified, untimed, to fill a new authenticator's cache past its bound (about 17,000
/// of these principals fit in 32 MiB).
const MISS_PREFILL: usize = 30_000;
/// The issuer identifier of the miss bench: fixed, so its minted tokens can be kept on disk.
const MISS_ISSUER: &str = "https://bench-issuer.tollgate.invalid";

const RSA1_PEM: &[u8] = include_bytes!("../tests/idp/keys/rsa1.pem");
const RSA1_JWK: &str = include_str!("../tests/idp/keys/rsa1.json");
const EC1_PEM: &[u8] = include_bytes!("../tests/idp/keys/ec1.pem");
const EC1_JWK: &str = include_str!("../tests/idp/keys/ec1.json");

/// The issuer, the configuration and the runtime that serves the issuer and runs key refresh.
struct Setup {
    rt: tokio::runtime::Runtime,
    config: Config,
    /// The same keys under `MISS_ISSUER` (no discovery, the JWKS named by `jwks_uri`).
    miss_config: Config,
    issuer: String,
    ed_pkcs8: Vec<u8>,
    jwks: Value,
}

impl Setup {
    fn new() -> Setup {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (pkcs8, ed_x) = ed25519();
        let jwks = json!({"keys": [public_jwk(RSA1_JWK), public_jwk(EC1_JWK),
            {"kty": "OKP", "crv": "Ed25519", "x": ed_x, "kid": "bench-ed", "alg": "EdDSA"}]});
        let addr = rt.block_on(serve_issuer(jwks.clone()));
        let issuer = format!("http://{addr}");
        let toml = format!(
            "[[issuer]]\nname = \"bench\"\nurl = \"{issuer}\"\naudiences = [\"api\"]\n\n\
             [[route]]\nauth = \"bearer\"\npath = \"/api/\"\nupstream = \"http://127.0.0.1:9\"\n"
        );
        let config = Config::from_str(&toml, Path::new("bench.toml"), &|_| None).unwrap();
        let toml = format!(
            "[[issuer]]\nname = \"bench\"\nurl = \"{MISS_ISSUER}\"\njwks_uri = \"{issuer}/jwks\"\n\
             discovery = false\naudiences = [\"api\"]\n\n\
             [[route]]\nauth = \"bearer\"\npath = \"/api/\"\nupstream = \"http://127.0.0.1:9\"\n"
        );
        let miss_config = Config::from_str(&toml, Path::new("bench-miss.toml"), &|_| None).unwrap();
        Setup { rt, config, miss_config, issuer, ed_pkcs8: pkcs8, jwks }
    }

    fn bearer(&self) -> &Bearer {
        bearer_of(&self.config)
    }

    /// A new authenticator (empty caches) with its keys loaded; waits at most 10 s.
    fn authenticator(&self) -> Arc<Authenticator> {
        self.authenticator_for(&self.config)
    }

    fn authenticator_for(&self, config: &Config) -> Arc<Authenticator> {
        let _in_runtime = self.rt.enter();
        let tls = tollgate::tls::client_config(&config.upstream).unwrap();
        let metrics = AuthMetrics::new(&prometheus::Registry::new()).unwrap();
        let auth = Authenticator::new(config, IdpClient::new(tls, Duration::from_secs(5)), metrics);
        auth.spawn_maintenance();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !auth.is_ready() {
            assert!(Instant::now() < deadline, "the authenticator did not load the issuer's keys in 10 s");
            std::thread::sleep(Duration::from_millis(1));
        }
        auth
    }

    /// `n` distinct tokens signed with `alg` by `key` under `kid`.
    fn mint(&self, n: usize, alg: Algorithm, kid: &str, key: &EncodingKey) -> Vec<String> {
        mint(&self.issuer, n, alg, kid, key)
    }
}

fn bearer_of(config: &Config) -> &Bearer {
    match &config.routes[0].auth {
        RouteAuth::Bearer(b) => b,
        _ => panic!("route 0 is not a bearer route"),
    }
}

/// `n` distinct tokens from `issuer`, signed with `alg` by `key` under `kid`, valid for a day.
fn mint(issuer: &str, n: usize, alg: Algorithm, kid: &str, key: &EncodingKey) -> Vec<String> {
    let header = b64(json!({"alg": alg, "typ": "JWT", "kid": kid}).to_string().as_bytes());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mint = |i: usize| {
        let claims = json!({
            "iss": issuer, "aud": "api", "sub": "user-1234", "iat": now, "exp": now + 86_400,
            "jti": format!("{alg:?}-{i}"), "scope": "read write", "email": "user@example.com",
        });
        let message = format!("{header}.{}", b64(claims.to_string().as_bytes()));
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
        format!("{message}.{sig}")
    };
    // RSA signing is slow (~1 ms); use every core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || (t * chunk..((t + 1) * chunk).min(n)).map(mint).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// `MISS_TOKENS` RS256 tokens from `MISS_ISSUER`, from `target/bench-tokens/` when a file there
/// still has them valid for at least 12 hours, minted (and written there) otherwise.
fn miss_tokens(key: &EncodingKey) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-tokens");
    let file = dir.join(format!("rs256-{MISS_TOKENS}.txt"));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    if let Ok(text) = std::fs::read_to_string(&file) {
        let mut lines = text.lines();
        let fresh = lines.next().and_then(|l| l.parse::<u64>().ok()).is_some_and(|exp| exp > now + 12 * 3600);
        let tokens: Vec<String> = lines.map(str::to_string).collect();
        if fresh && tokens.len() == MISS_TOKENS {
            return tokens;
        }
    }
    let minted = Instant::now();
    let tokens = mint(MISS_ISSUER, MISS_TOKENS, Algorithm::RS256, "test-rsa-1", key);
    eprintln!("minted {MISS_TOKENS} tokens for the miss bench in {:?}", minted.elapsed());
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(&file, format!("{}\n{}\n", now + 86_400, tokens.join("\n")));
    tokens
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ed25519() -> (Vec<u8>, String) {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    (pkcs8.as_ref().to_vec(), b64(pair.public_key().as_ref()))
}

/// The public members of the first key in a JWK set file.
fn public_jwk(file: &str) -> Value {
    let doc: Value = serde_json::from_str(file).unwrap();
    let k = &doc["keys"][0];
    let mut out = serde_json::Map::new();
    for member in ["kty", "kid", "alg", "n", "e", "crv", "x", "y"] {
        if let Some(v) = k.get(member) {
            out.insert(member.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// Discovery and the JWKS on 127.0.0.1:0, served by the current runtime.
async fn serve_issuer(jwks: Value) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let discovery = json!({"issuer": format!("http://{addr}"), "jwks_uri": format!("http://{addr}/jwks")}).to_string();
    let jwks = jwks.to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let (discovery, jwks) = (discovery.clone(), jwks.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = match req.uri().path() {
                        "/.well-known/openid-configuration" => Some(discovery.clone()),
                        "/jwks" => Some(jwks.clone()),
                        _ => None,
                    };
                    async move {
                        let resp = match body {
                            Some(b) => Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(b))),
                            None => Response::builder().status(404).body(Full::new(Bytes::new())),
                        };
                        Ok::<_, std::convert::Infallible>(resp.unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

/// One cold-verification bench: every timed call presents a token its authenticator's cache
/// has never seen (see the module comment).
fn cold(c: &mut Criterion, name: &str, setup: &Setup, tokens: &[String]) {
    let bearer = setup.bearer();
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut remaining = iters as usize;
            while remaining > 0 {
                let auth = setup.authenticator();
                let batch = &tokens[..remaining.min(tokens.len())];
                let start = Instant::now();
                authenticate_all(&auth, bearer, batch);
                total += start.elapsed();
                remaining -= batch.len();
            }
            total
        })
    });
}

/// Authenticates each of `tokens`, which must all be valid and answered without waiting.
/// `bearer` is resolved against `auth` once, as a snapshot resolves it when built (one clone
/// per batch, next to a batch of signature checks).
fn authenticate_all(auth: &Authenticator, bearer: &Bearer, tokens: &[String]) {
    let bearer = auth.route_bearer(bearer).expect("the bench's issuers");
    for token in tokens {
        let principal = auth.authenticate(&bearer, token).now_or_never();
        std::hint::black_box(principal.expect("completed without waiting").expect("a valid token"));
    }
}

/// Every call a miss on a cache already at its bound (see the module comment).
fn miss_at_bound(c: &mut Criterion, setup: &Setup, tokens: &[String]) {
    let bearer = bearer_of(&setup.miss_config);
    let (prefill, timed) = tokens.split_at(MISS_PREFILL);
    let fresh = || {
        let auth = setup.authenticator_for(&setup.miss_config);
        authenticate_all(&auth, bearer, prefill);
        auth
    };
    let mut state = (fresh(), 0usize);
    let mut group = c.benchmark_group("miss");
    group.sample_size(20);
    // The baseline: one signature check as a miss does it (the key prepared), on miss tokens.
    let key = miss_key(setup);
    let split: Vec<(&str, &str)> = timed[..1000].iter().map(|t| t.rsplit_once('.').unwrap()).collect();
    let mut i = 0;
    group.bench_function("rs256_signature_prepared_key", |b| {
        b.iter(|| {
            let (message, signature) = split[i % split.len()];
            i += 1;
            assert!(std::hint::black_box(key.verify(Algorithm::RS256, message.as_bytes(), signature)))
        })
    });
    group.bench_function("rs256_miss_at_bound", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut remaining = iters as usize;
            while remaining > 0 {
                if state.1 == timed.len() {
                    state = (fresh(), 0);
                }
                let (auth, next) = (&state.0, state.1);
                let batch = &timed[next..(next + remaining).min(timed.len())];
                let start = Instant::now();
                authenticate_all(auth, bearer, batch);
                total += start.elapsed();
                remaining -= batch.len();
                state.1 += batch.len();
            }
            total
        })
    });
    group.finish();
}

/// True when the command line asks for the miss bench alone (`cargo bench --bench jwt -- miss`):
/// the other benches' 60,000 tokens are then not minted.
fn only_miss() -> bool {
    // Options' values (`--measurement-time 3`) are numbers; a filter is not.
    let filters: Vec<String> =
        std::env::args().skip(1).filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err()).collect();
    // Filters are regular expressions: only plain names of the miss bench count.
    !filters.is_empty()
        && filters.iter().all(|f| {
            ["miss", "miss/rs256_miss_at_bound", "rs256_miss_at_bound", "miss/rs256_signature_prepared_key"]
                .contains(&f.as_str())
        })
}

fn miss_benches(c: &mut Criterion) {
    let setup = Setup::new();
    let tokens = miss_tokens(&EncodingKey::from_rsa_pem(RSA1_PEM).unwrap());
    if let Some(n) = std::env::var("MISS_PROFILE").ok().and_then(|n| n.parse::<usize>().ok()) {
        profile_misses(&setup, &tokens, n);
        std::process::exit(0);
    }
    if let Some(n) = std::env::var("SIGNATURE_PROFILE").ok().and_then(|n| n.parse::<usize>().ok()) {
        profile_signatures(&setup, &tokens, n);
        std::process::exit(0);
    }
    miss_at_bound(c, &setup, &tokens);
}

/// The prepared RS256 key the miss bench's tokens are signed with, as the gateway holds it.
fn miss_key(setup: &Setup) -> Arc<tollgate::auth::jwks::VerifyKey> {
    let set = KeySet::parse(setup.jwks.to_string().as_bytes(), &[Algorithm::RS256]).unwrap();
    let Lookup::Found(key) = set.find(Some("test-rsa-1"), Algorithm::RS256) else { panic!("no test-rsa-1") };
    key
}

/// `SIGNATURE_PROFILE=N cargo bench --bench jwt -- miss`: no criterion; `N` signature checks
/// alone (`VerifyKey::verify`, the key prepared, the message hashed) of distinct miss tokens
/// inside `signature_profile_window`, the baseline a miss's instructions are read against:
/// `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*signature_profile_window*' BENCH -- miss`.
fn profile_signatures(setup: &Setup, tokens: &[String], n: usize) {
    let key = miss_key(setup);
    let split: Vec<(&str, &str)> = tokens[..n.min(tokens.len())].iter().map(|t| t.rsplit_once('.').unwrap()).collect();
    signature_profile_window(&key, &split);
    eprintln!("profiled {} signature checks", split.len());
}

#[inline(never)]
fn signature_profile_window(key: &tollgate::auth::jwks::VerifyKey, tokens: &[(&str, &str)]) {
    for (message, signature) in tokens {
        assert!(std::hint::black_box(key.verify(Algorithm::RS256, message.as_bytes(), signature)));
    }
}

/// `MISS_PROFILE=N cargo bench --bench jwt -- miss`: no criterion; `N` misses at the cache's
/// bound inside `miss_profile_window`, for an instruction profile of a miss alone:
/// `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*miss_profile_window*' BENCH -- miss`
/// (instructions per miss = the window's total ÷ N).
fn profile_misses(setup: &Setup, tokens: &[String], n: usize) {
    let bearer = bearer_of(&setup.miss_config);
    let (prefill, timed) = tokens.split_at(MISS_PREFILL);
    let auth = setup.authenticator_for(&setup.miss_config);
    authenticate_all(&auth, bearer, prefill);
    let timed = &timed[..n.min(timed.len())];
    miss_profile_window(&auth, bearer, timed);
    eprintln!("profiled {} misses at the cache's bound", timed.len());
}

#[inline(never)]
fn miss_profile_window(auth: &Authenticator, bearer: &Bearer, tokens: &[String]) {
    authenticate_all(auth, bearer, tokens);
}

fn benches(c: &mut Criterion) {
    let setup = Setup::new();
    let rsa = EncodingKey::from_rsa_pem(RSA1_PEM).unwrap();
    let ec = EncodingKey::from_ec_pem(EC1_PEM).unwrap();
    let ed = EncodingKey::from_ed_der(&setup.ed_pkcs8);

    if only_miss() {
        return;
    }
    let minted = Instant::now();
    let rs256 = setup.mint(TOKENS, Algorithm::RS256, "test-rsa-1", &rsa);
    let es256 = setup.mint(TOKENS, Algorithm::ES256, "test-ec-1", &ec);
    let eddsa = setup.mint(TOKENS, Algorithm::EdDSA, "bench-ed", &ed);
    eprintln!("minted {} tokens per algorithm in {:?}", TOKENS, minted.elapsed());

    cold(c, "rs256_cold", &setup, &rs256);
    cold(c, "es256_cold", &setup, &es256);
    cold(c, "eddsa_cold", &setup, &eddsa);

    // Baselines: the signature check alone (jsonwebtoken + aws-lc-rs, the key as the JWKS
    // gives it), to read how much of a cold verification is the gateway's own work.
    let jwks = setup.jwks.clone();
    for (name, tokens, kid) in [
        ("rs256_signature_only", &rs256, "test-rsa-1"),
        ("es256_signature_only", &es256, "test-ec-1"),
        ("eddsa_signature_only", &eddsa, "bench-ed"),
    ] {
        let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
        let alg: Algorithm = serde_json::from_value(jwk["alg"].clone()).unwrap();
        let (message, signature) = tokens[0].rsplit_once('.').unwrap();
        c.bench_function(name, |b| {
            b.iter(|| {
                let ok = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, alg).unwrap();
                assert!(std::hint::black_box(ok));
            })
        });
        // The same check as the gateway does it: the key parsed once (`VerifyKey::verify`).
        let set = KeySet::parse(json!({"keys": [jwk]}).to_string().as_bytes(), &[alg]).unwrap();
        let Lookup::Found(prepared) = set.find(Some(kid), alg) else { panic!("{kid} not in the key set") };
        c.bench_function(&name.replace("_only", "_prepared_key"), |b| {
            b.iter(|| assert!(std::hint::black_box(prepared.verify(alg, message.as_bytes(), signature))))
        });
    }

    let auth = setup.authenticator();
    let bearer = &auth.route_bearer(setup.bearer()).expect("the bench's issuers");
    let token = &rs256[0];
    c.bench_function("cache_hit", |b| {
        b.iter(|| {
            let principal = auth.authenticate(bearer, token).now_or_never();
            std::hint::black_box(principal.expect("completed without waiting").expect("a valid token"))
        })
    });
}

criterion_group!(jwt, benches, miss_benches);
criterion_main!(jwt);
