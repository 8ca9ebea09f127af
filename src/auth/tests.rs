//! The authenticator's caches end to end: front and shared hits, reloads, bound tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::config::RouteAuth;
use futures_util::FutureExt;
use prometheus::Registry;

/// Two issuers (`a`, `b`); route 0 accepts only `a`, route 1 both. Nothing is fetched.
fn authenticator() -> (Arc<Authenticator>, Config) {
    let toml = "[[issuer]]\nname = \"a\"\nurl = \"https://a.example\"\naudiences = [\"api\"]\nleeway = \"5s\"\n\n\
                [[issuer]]\nname = \"b\"\nurl = \"https://b.example\"\naudiences = [\"api\"]\n\n\
                [[route]]\nauth = \"bearer\"\npath = \"/a/\"\nissuers = [\"a\"]\nupstream = \"http://127.0.0.1:9\"\n\n\
                [[route]]\nauth = \"bearer\"\npath = \"/ab/\"\nupstream = \"http://127.0.0.1:9\"\n";
    let config = Config::from_str(toml, std::path::Path::new("t.toml"), &|_| None).unwrap();
    let tls = crate::tls::client_config(&config.upstream).unwrap();
    let metrics = AuthMetrics::new(&Registry::new()).unwrap();
    (Authenticator::new(&config, IdpClient::new(tls, Duration::from_secs(1)), metrics), config)
}

fn route(config: &Config, i: usize) -> &config::Bearer {
    match &config.routes[i].auth {
        RouteAuth::Bearer(b) => b,
        _ => panic!("not a bearer route"),
    }
}

/// A principal vouched for by `auth`'s issuer number `issuer`.
fn principal(auth: &Authenticator, issuer: usize, expires_at: u64) -> Arc<Principal> {
    let id = auth.issuers[issuer].id;
    Arc::new(Principal::from_claims(id, serde_json::json!({"sub": "u"}), expires_at).unwrap())
}

/// `route` resolved against `auth`'s issuers, as a snapshot built with `auth` holds it.
fn run(auth: &Authenticator, route: &config::Bearer, token: &str) -> Result<Arc<Principal>, AuthError> {
    auth.authenticate(&auth.route_bearer(route).unwrap(), token).now_or_never().expect("no waiting")
}

// A JWS-shaped token no issuer signed: if a cache did not answer, verification refuses it.
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";

/// One pass gives the cache key of the whole token and the digest of its signed part.
#[test]
fn hashes_are_the_tokens_and_its_signed_parts() {
    let sha = |b: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b.as_bytes());
    for token in [TOKEN, "a.b", "no-dot", "", "trailing.", ".leading"] {
        let (key, signed) = hashes(token);
        assert_eq!(&key[..], sha(token).as_ref(), "{token}");
        match token.rfind('.') {
            Some(dot) => {
                let (len, ctx) = signed.expect("a dot");
                assert_eq!((len, ctx.finish().as_ref()), (dot, sha(&token[..dot]).as_ref()), "{token}");
            }
            None => assert!(signed.is_none()),
        }
    }
}

#[tokio::test]
async fn front_hit_checks_expiry_with_leeway() {
    let (auth, config) = authenticator();
    let now = unix_now();
    // Expired 2 s ago, within issuer a's 5 s leeway: accepted from the front cache alone.
    front::put(auth.caches.front_owner, TOKEN, &principal(&auth, 0, now - 2), now + 60);
    assert!(run(&auth, route(&config, 0), TOKEN).is_ok());
    // Expired 10 s ago: refused on the front hit (not verified again) and dropped from it.
    front::put(auth.caches.front_owner, TOKEN, &principal(&auth, 0, now - 10), now + 60);
    assert_eq!(run(&auth, route(&config, 0), TOKEN), Err(AuthError::InvalidToken(Invalid::Expired)));
    assert!(front::get(auth.caches.front_owner, TOKEN, now).is_none());
}

#[tokio::test]
async fn front_hit_checks_the_routes_issuers() {
    let (auth, config) = authenticator();
    front::put(auth.caches.front_owner, TOKEN, &principal(&auth, 1, unix_now() + 60), unix_now() + 60);
    assert_eq!(run(&auth, route(&config, 0), TOKEN), Err(AuthError::InvalidToken(Invalid::UnknownIssuer)));
    assert_eq!(run(&auth, route(&config, 1), TOKEN).map(|p| p.issuer), Ok(auth.issuers[1].id));
}

/// A reload keeps what an unchanged issuer vouched for, and checks again what a changed
/// one did (its audiences, say, may have narrowed): never accepted on the old word.
#[tokio::test]
async fn reloads_keep_what_unchanged_issuers_vouched_for() {
    let (auth, config) = authenticator();
    let p = principal(&auth, 0, unix_now() + 60);
    auth.caches.verified.insert(hash(TOKEN), p.clone(), unix_now());
    assert!(run(&auth, route(&config, 0), TOKEN).is_ok());

    let same = auth.next(&config);
    assert_eq!(same.issuers[0].id, auth.issuers[0].id, "unchanged issuer keeps its state");
    assert!(run(&same, route(&config, 0), TOKEN).is_ok(), "answered from the carried-over cache");

    let text = "[[issuer]]\nname = \"a\"\nurl = \"https://a.example\"\naudiences = [\"other\"]\nleeway = \"5s\"\n\n\
                [[issuer]]\nname = \"b\"\nurl = \"https://b.example\"\naudiences = [\"api\"]\n\n\
                [[route]]\nauth = \"bearer\"\npath = \"/a/\"\nissuers = [\"a\"]\nupstream = \"http://127.0.0.1:9\"\n";
    let changed_config = Config::from_str(text, std::path::Path::new("t.toml"), &|_| None).unwrap();
    let changed = auth.next(&changed_config);
    assert_ne!(changed.issuers[0].id, auth.issuers[0].id, "a changed issuer is a new one");
    assert_eq!(changed.issuers[1].id, auth.issuers[1].id);
    // Not accepted on the old issuer's word: verified again, and this token has no valid
    // signature (keys are not even loaded), so it is refused.
    assert!(run(&changed, route(&changed_config, 0), TOKEN).is_err());
    let (kept, added, retired) = auth.hand_over(&changed);
    assert_eq!((kept, added, retired), (1, 1, 1));
    assert!(auth.issuers[0].is_retired() && !auth.issuers[1].is_retired());
}

/// The binding is checked on cache hits too: a bound principal in the front or the shared
/// cache never passes as a bearer token, and the DPoP scheme needs a proof.
#[tokio::test]
async fn bound_principals_from_either_cache_need_their_proof() {
    let (auth, config) = authenticator();
    let mut bound = (*principal(&auth, 0, unix_now() + 60)).clone();
    bound.cnf_jkt = Some("thumbprint".into());
    let bound = Arc::new(bound);
    let headers = http::HeaderMap::new();
    let req = dpop::Request {
        headers: &headers,
        method: &http::Method::GET,
        path: "/a/x",
        origin: dpop::Origin { tls: false, trusted_proxy: false, authority: "h" },
        cert: Presented::NONE,
    };
    let present = |scheme| token::Presented { token: TOKEN.into(), scheme, in_header: true };
    let run = |scheme| {
        auth.authenticate_request(&auth.route_bearer(route(&config, 0)).unwrap(), &present(scheme), &req)
            .now_or_never()
            .unwrap()
    };
    for fill_front in [true, false] {
        if fill_front {
            front::put(auth.caches.front_owner, TOKEN, &bound, unix_now() + 60);
        } else {
            front::remove(auth.caches.front_owner, TOKEN);
            auth.caches.verified.insert(hash(TOKEN), bound.clone(), unix_now());
        }
        assert_eq!(run(token::Scheme::Bearer), Err(AuthError::InvalidToken(Invalid::DpopBound)), "{fill_front}");
        assert_eq!(
            run(token::Scheme::Dpop),
            Err(AuthError::InvalidToken(Invalid::Dpop(dpop::ProofError::Missing))),
            "{fill_front}"
        );
    }
}

#[tokio::test]
async fn front_entries_belong_to_one_authenticator() {
    let (auth, config) = authenticator();
    let (other, _) = authenticator();
    front::put(other.caches.front_owner, TOKEN, &principal(&other, 0, unix_now() + 60), unix_now() + 60);
    assert!(run(&auth, route(&config, 0), TOKEN).is_err(), "another authenticator's entry answered");
    assert!(run(&other, route(&config, 0), TOKEN).is_ok());
}

#[tokio::test]
async fn shared_hit_fills_the_front_and_both_stay_bounded() {
    let (auth, config) = authenticator();
    let p = principal(&auth, 0, unix_now() + 60);
    let tokens: Vec<String> = (0..front::SLOTS * 4).map(|i| format!("{TOKEN}{i}")).collect();
    for t in &tokens {
        auth.caches.verified.insert(hash(t), p.clone(), unix_now());
    }
    for t in &tokens {
        assert!(run(&auth, route(&config, 0), t).is_ok());
    }
    // A shared-cache hit enters the front on one lookup in a few.
    for _ in 0..8 {
        assert!(run(&auth, route(&config, 0), tokens.last().unwrap()).is_ok());
    }
    let now = unix_now();
    assert!(front::get(auth.caches.front_owner, tokens.last().unwrap(), now).is_some(), "the last hit is in front");
    assert!(front::get(auth.caches.front_owner, tokens.last().unwrap(), now + FRONT_TTL_SECS + 1).is_none());
    assert!(front::thread_len() <= front::SLOTS);
    // Invalid tokens never enter either cache.
    let bad = format!("{TOKEN}x");
    assert!(run(&auth, route(&config, 1), &bad).is_err());
    assert!(front::get(auth.caches.front_owner, &bad, now).is_none());
    assert!(auth.caches.verified.get(&hash(&bad), now).is_none());
}

/// A certificate-bound principal from either cache passes only with its certificate: the
/// check runs on hits, not only when a token is verified.
#[tokio::test]
async fn cache_hits_check_the_certificate_binding() {
    use crate::client_cert::{Presented, Thumbprint};
    let (auth, config) = authenticator();
    let mine = Thumbprint::of_der(b"mine");
    let claims = serde_json::json!({"sub": "u", "cnf": {"x5t#S256": mine.to_base64url()}});
    let p = Arc::new(Principal::from_claims(auth.issuers[0].id, claims, unix_now() + 60).unwrap());
    let headers = http::HeaderMap::new();
    let presented = |t: Option<Thumbprint>| {
        let bearer = token::Presented { token: TOKEN.into(), scheme: token::Scheme::Bearer, in_header: true };
        let req = dpop::Request {
            headers: &headers,
            method: &http::Method::GET,
            path: "/",
            origin: dpop::Origin { tls: true, trusted_proxy: false, authority: "h" },
            cert: Presented::new(t.as_ref(), None),
        };
        auth.authenticate_request(&auth.route_bearer(route(&config, 0)).unwrap(), &bearer, &req).now_or_never().unwrap()
    };
    let refused =
        |r: Result<Arc<Principal>, AuthError>| matches!(r, Err(AuthError::InvalidToken(Invalid::CertBinding(_))));
    auth.caches.verified.insert(hash(TOKEN), p.clone(), unix_now());
    assert!(presented(Some(mine)).is_ok(), "shared-cache hit with the certificate");
    assert!(refused(presented(Some(Thumbprint::of_der(b"other")))), "shared-cache hit, another certificate");
    front::put(auth.caches.front_owner, TOKEN, &p, unix_now() + 60);
    assert!(refused(presented(None)), "front-cache hit without a certificate");
    assert!(refused(run(&auth, route(&config, 0), TOKEN)), "no certificate known");
    assert!(presented(Some(mine)).is_ok());
    let counted = auth.metrics.validations.with_label_values(&["invalid", "cert_binding"]).get();
    assert_eq!(counted, 3);
}
