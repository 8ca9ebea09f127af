//! One DPoP proof check (RFC 9449 §4.3) per algorithm, as the request path runs it:
//! `auth::dpop::check_proof` parses the proof, checks `typ`, `alg`, the embedded key, `htm`,
//! `htu` (normalised), `iat`, `ath`, verifies the signature and computes the key's RFC 7638
//! thumbprint. The replay memory is benched apart (`replay_first_use`), and each algorithm's
//! bare signature check is the baseline (`*_signature_only`): the target is a DPoP
//! request costing at most the bearer route plus 1.2 times that signature check.
//!
//! `check_proof` does not remember proofs, so one proof checked over and over measures exactly
//! a first use.
//!
//! Run: `cargo bench --bench dpop -- --warm-up-time 1 --measurement-time 3`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/dpop.rs"]
mod client;

use std::path::Path;

use aws_lc_rs::signature as sig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use tollgate::auth::dpop::{check_proof, Origin, ReplayCache, Request};
use tollgate::config::dpop::Dpop;

const TOKEN: &str = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJlLW9mLWEtdG9rZW4";

fn bench_alg(c: &mut Criterion, name: &str, key: &client::ProofKey) {
    let settings = Dpop::default();
    let proof = key.proof("GET", "http://api.example/orders/42", TOKEN);
    let mut headers = HeaderMap::new();
    headers.insert("dpop", HeaderValue::from_str(&proof).unwrap());
    let method = Method::GET;
    let req = Request {
        headers: &headers,
        method: &method,
        path: "/orders/42",
        origin: Origin { tls: false, trusted_proxy: false, authority: "api.example" },
        cert: tollgate::client_cert::Presented::NONE,
    };
    let now = client::unix_now();
    assert!(check_proof(&settings, &req, TOKEN, now).is_ok());
    c.bench_function(&format!("{name}_proof_check"), |b| b.iter(|| check_proof(&settings, &req, TOKEN, now).unwrap()));

    // The signature alone, with the key already decoded: what the proof check adds to.
    let (message, signature) = proof.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let b64 = |m: &str| URL_SAFE_NO_PAD.decode(key.jwk[m].as_str().unwrap()).unwrap();
    match key.alg {
        "ES256" => {
            let mut point = vec![4];
            point.extend(b64("x"));
            point.extend(b64("y"));
            let public = sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point);
            c.bench_function(&format!("{name}_signature_only"), |b| {
                b.iter(|| public.verify(message.as_bytes(), &signature).unwrap())
            });
        }
        _ => {
            let (n, e) = (b64("n"), b64("e"));
            let public = sig::RsaPublicKeyComponents { n: &n, e: &e };
            c.bench_function(&format!("{name}_signature_only"), |b| {
                b.iter(|| public.verify(&sig::RSA_PKCS1_2048_8192_SHA256, message.as_bytes(), &signature).unwrap())
            });
        }
    }
}

fn proofs(c: &mut Criterion) {
    bench_alg(c, "es256", &client::ProofKey::es256());
    let keys = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/keys");
    bench_alg(c, "rs256", &client::ProofKey::rs256(&keys));
}

/// Remembering one new proof (a distinct key each time, as real traffic has).
fn replay(c: &mut Criterion) {
    let cache = ReplayCache::new(1 << 20);
    let mut n: u64 = 0;
    let now = client::unix_now();
    // Proofs from 256 keys, so none reaches its share of the memory.
    let owners: Vec<String> = (0..256).map(|i| format!("key-{i}")).collect();
    c.bench_function("replay_first_use", |b| {
        b.iter(|| {
            n += 1;
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
            key[8..].copy_from_slice(&n.to_le_bytes());
            // A clock that moves a second per 500,000 proofs and entries that live a second: the
            // memory never fills however long it runs, and the sweeps are part of the cost.
            let t = now + n / 500_000;
            cache.first_use(key, &owners[(n % 256) as usize], t + 1, t).unwrap()
        })
    });
}

criterion_group!(benches, proofs, replay);
criterion_main!(benches);
