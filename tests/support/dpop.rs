//! A DPoP client for tests and benches: a key of its own (ES256 generated, EdDSA generated, or
//! RS256 from `tests/idp/keys/rsa2.*`) and proofs (RFC 9449 §4.2) signed with it, well formed or
//! bent in any way a test needs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

enum Signer {
    /// With its PKCS#8 document, so that a tool can keep the key in a file.
    Ec(EcdsaKeyPair, Vec<u8>),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

pub struct ProofKey {
    pub alg: &'static str,
    /// The public JWK put in every proof's header.
    pub jwk: Value,
    signer: Signer,
}

pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn sha256_b64(data: &[u8]) -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A `jti` no other proof of this process has.
pub fn fresh_jti() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let mut r = [0u8; 12];
    aws_lc_rs::rand::fill(&mut r).unwrap();
    format!("{}-{}", b64(&r), N.fetch_add(1, Ordering::Relaxed))
}

impl ProofKey {
    pub fn es256() -> ProofKey {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        ProofKey::es256_from_pkcs8(pkcs8.as_ref())
    }

    pub fn es256_from_pkcs8(pkcs8: &[u8]) -> ProofKey {
        let pair = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])});
        ProofKey { alg: "ES256", jwk, signer: Signer::Ec(pair, pkcs8.to_vec()) }
    }

    /// The ES256 key's PKCS#8 document.
    pub fn pkcs8(&self) -> &[u8] {
        match &self.signer {
            Signer::Ec(_, pkcs8) => pkcs8,
            _ => panic!("only ES256 keys are kept in files"),
        }
    }

    pub fn ed25519() -> ProofKey {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
        ProofKey { alg: "EdDSA", jwk, signer: Signer::Ed(pair) }
    }

    /// RS256 with the key in `dir/rsa2.pem` (PKCS#8) and `dir/rsa2.json` (its public JWK).
    pub fn rs256(dir: &Path) -> ProofKey {
        let pem = std::fs::read_to_string(dir.join("rsa2.pem")).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let pair = RsaKeyPair::from_pkcs8(&STANDARD.decode(body).unwrap()).unwrap();
        let set: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("rsa2.json")).unwrap()).unwrap();
        let key = &set["keys"][0];
        let jwk = json!({"kty": "RSA", "n": key["n"], "e": key["e"]});
        ProofKey { alg: "RS256", jwk, signer: Signer::Rsa(pair) }
    }

    /// RFC 7638 thumbprint of the public key.
    pub fn thumbprint(&self) -> String {
        let j = &self.jwk;
        let canonical = match j["kty"].as_str().unwrap() {
            "EC" => format!(r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#, s(&j["crv"]), s(&j["x"]), s(&j["y"])),
            "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, s(&j["crv"]), s(&j["x"])),
            _ => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s(&j["e"]), s(&j["n"])),
        };
        sha256_b64(canonical.as_bytes())
    }

    /// The header of a good proof.
    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk})
    }

    /// The claims of a good proof for `method` `htu` and `token`, issued now.
    pub fn claims(&self, method: &str, htu: &str, token: &str) -> Value {
        json!({"jti": fresh_jti(), "htm": method, "htu": htu, "iat": unix_now(), "ath": sha256_b64(token.as_bytes())})
    }

    /// A good proof.
    pub fn proof(&self, method: &str, htu: &str, token: &str) -> String {
        self.sign(&self.header(), &self.claims(method, htu, token))
    }

    /// A proof for a token request (no `ath`).
    pub fn token_request_proof(&self, htu: &str) -> String {
        let claims = json!({"jti": fresh_jti(), "htm": "POST", "htu": htu, "iat": unix_now()});
        self.sign(&self.header(), &claims)
    }

    /// `header` and `claims` signed with this key, whatever they say.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let message = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let rng = SystemRandom::new();
        let signature = match &self.signer {
            Signer::Ec(k, _) => k.sign(&rng, message.as_bytes()).unwrap().as_ref().to_vec(),
            Signer::Ed(k) => k.sign(message.as_bytes()).as_ref().to_vec(),
            Signer::Rsa(k) => {
                let mut out = vec![0u8; k.public_modulus_len()];
                k.sign(&sig::RSA_PKCS1_SHA256, &rng, message.as_bytes(), &mut out).unwrap();
                out
            }
        };
        format!("{message}.{}", b64(&signature))
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap()
}
