//! Authentication: who is calling. Bearer tokens (JWT verified against the issuer's keys, or
//! opaque tokens introspected) become a [`Principal`]; rules decide what it may do.

pub mod claims;
pub mod front;
pub mod id_token;
pub mod introspection;
pub mod issuer;
pub mod jwks;
pub mod jwt;
pub mod principal;
pub mod rules;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::config::{Bearer, Config};
use crate::oidc::http::IdpClient;
use introspection::Answer;
use issuer::IssuerState;
use jwks::Lookup;
pub use principal::Principal;

/// Why a token was not accepted; each has a metrics label and a description for
/// `error_description` (which never echoes the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Malformed(&'static str),
    TooLarge,
    /// A JWE (five parts): tollgate does not decrypt tokens.
    Encrypted,
    UnsupportedAlg,
    Crit,
    /// `jku`, `x5u` or an embedded `jwk`.
    ForbiddenHeader,
    UnknownIssuer,
    UnknownKid,
    AlgorithmMismatch,
    BadSignature,
    MissingClaim(&'static str),
    WrongAudience,
    WrongType,
    Expired,
    NotYetValid,
    IssuedInFuture,
    /// Introspection said the token is not active (or not for us).
    Inactive,
}

impl Invalid {
    pub fn label(&self) -> &'static str {
        match self {
            Invalid::Malformed(_) => "malformed",
            Invalid::TooLarge => "too_large",
            Invalid::Encrypted => "encrypted",
            Invalid::UnsupportedAlg => "unsupported_alg",
            Invalid::Crit => "crit",
            Invalid::ForbiddenHeader => "forbidden_header",
            Invalid::UnknownIssuer => "unknown_issuer",
            Invalid::UnknownKid => "unknown_kid",
            Invalid::AlgorithmMismatch => "alg_mismatch",
            Invalid::BadSignature => "bad_signature",
            Invalid::MissingClaim(_) => "missing_claim",
            Invalid::WrongAudience => "wrong_audience",
            Invalid::WrongType => "wrong_type",
            Invalid::Expired => "expired",
            Invalid::NotYetValid => "not_yet_valid",
            Invalid::IssuedInFuture => "issued_in_future",
            Invalid::Inactive => "inactive",
        }
    }

    pub fn description(&self) -> String {
        match self {
            Invalid::Malformed(why) => format!("malformed token: {why}"),
            Invalid::TooLarge => "token too large".into(),
            Invalid::Encrypted => "encrypted tokens are not supported".into(),
            Invalid::UnsupportedAlg => "unsupported signing algorithm".into(),
            Invalid::Crit => "unsupported critical header".into(),
            Invalid::ForbiddenHeader => "token headers jku, x5u and jwk are not accepted".into(),
            Invalid::UnknownIssuer => "token issuer not accepted here".into(),
            Invalid::UnknownKid => "unknown signing key".into(),
            Invalid::AlgorithmMismatch => "signing algorithm not allowed for this key".into(),
            Invalid::BadSignature => "invalid signature".into(),
            Invalid::MissingClaim(c) => format!("missing claim {c}"),
            Invalid::WrongAudience => "token audience not accepted here".into(),
            Invalid::WrongType => "wrong token type".into(),
            Invalid::Expired => "token expired".into(),
            Invalid::NotYetValid => "token not yet valid".into(),
            Invalid::IssuedInFuture => "token issued in the future".into(),
            Invalid::Inactive => "token is not active".into(),
        }
    }
}

/// Authentication and authorization failures; `error.rs` turns them into RFC 6750 responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all: 401 with a bare challenge.
    #[error("no access token")]
    MissingToken,
    /// A malformed request (bad `Authorization`, token in several places): 400.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// 401 `invalid_token`.
    #[error("invalid token: {}", .0.label())]
    InvalidToken(Invalid),
    /// 403 `insufficient_scope`, with the scopes needed.
    #[error("insufficient scope")]
    InsufficientScope { scope: String },
    /// 403: a rule other than scope failed.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// 503: the token cannot be checked right now (keys not loaded, introspection failing).
    #[error("cannot check the token now: {0}")]
    Unavailable(&'static str),
}

/// Metrics of authentication, on the gateway's registry.
#[derive(Clone)]
pub struct AuthMetrics {
    pub validations: IntCounterVec,
    valid: IntCounter,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    pub jwks_fetches: IntCounterVec,
    pub discovery_failures: IntCounterVec,
    pub introspections: IntCounterVec,
    pub issuer_ready: IntGaugeVec,
}

impl AuthMetrics {
    pub fn new(registry: &Registry) -> Result<AuthMetrics, prometheus::Error> {
        let validations = IntCounterVec::new(
            Opts::new("tollgate_token_validations_total", "Token checks by outcome and reason"),
            &["outcome", "reason"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new("tollgate_verified_cache_total", "Verified-token cache lookups by result"),
            &["result"],
        )?;
        let jwks_fetches = IntCounterVec::new(
            Opts::new("tollgate_jwks_fetches_total", "Key set fetches by issuer and outcome"),
            &["issuer", "outcome"],
        )?;
        let discovery_failures = IntCounterVec::new(
            Opts::new("tollgate_discovery_failures_total", "Failed discovery attempts by issuer"),
            &["issuer"],
        )?;
        let introspections = IntCounterVec::new(
            Opts::new("tollgate_introspections_total", "Introspection calls by issuer and outcome"),
            &["issuer", "outcome"],
        )?;
        let issuer_ready = IntGaugeVec::new(
            Opts::new("tollgate_issuer_ready", "1 when the issuer's metadata and keys are loaded"),
            &["issuer"],
        )?;
        for c in [&validations, &cache, &jwks_fetches, &discovery_failures, &introspections] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(issuer_ready.clone()))?;
        Ok(AuthMetrics {
            valid: validations.with_label_values(&["valid", ""]),
            cache_hits: cache.with_label_values(&["hit"]),
            cache_misses: cache.with_label_values(&["miss"]),
            validations,
            jwks_fetches,
            discovery_failures,
            introspections,
            issuer_ready,
        })
    }
}

type TokenHash = [u8; 32];

/// Shared by every worker: issuers' keys, the verified-token cache and introspection answers.
pub struct Authenticator {
    issuers: Vec<Arc<IssuerState>>,
    verified: moka::sync::Cache<TokenHash, Arc<Principal>, front::DigestHasherBuilder>,
    /// This authenticator's mark on the entries of the per-thread front caches (`front.rs`).
    front_owner: u64,
    /// Keyed by issuer and token: one issuer's answer says nothing about another's.
    introspected: moka::future::Cache<(usize, TokenHash), Answer>,
    client: IdpClient,
    metrics: AuthMetrics,
}

/// Memory for verified tokens (by the estimate, about 12,000 typical access tokens): bounded by
/// bytes, not by count, so a flood of distinct tokens cannot grow the process past it.
const VERIFIED_CACHE_BYTES: u64 = 32 << 20;
/// Memory for introspection answers.
const INTROSPECTION_CACHE_BYTES: u64 = 8 << 20;

/// Verified tokens live until their `exp`, and never longer than this.
const VERIFIED_MAX_TTL: Duration = Duration::from_secs(3600);
/// Seconds a per-thread front-cache entry is answered (`front.rs`) before the shared cache is
/// asked again: the most by which a verification can be trusted past `VERIFIED_MAX_TTL`.
const FRONT_TTL_SECS: u64 = 10;

struct UntilExp;

impl moka::Expiry<TokenHash, Arc<Principal>> for UntilExp {
    fn expire_after_create(&self, _: &TokenHash, p: &Arc<Principal>, _: std::time::Instant) -> Option<Duration> {
        Some(Duration::from_secs(p.expires_at.saturating_sub(unix_now())).min(VERIFIED_MAX_TTL))
    }
}

struct AnswerExpiry {
    inactive: Vec<Duration>,
}

impl moka::Expiry<(usize, TokenHash), Answer> for AnswerExpiry {
    fn expire_after_create(&self, _: &(usize, TokenHash), a: &Answer, _: std::time::Instant) -> Option<Duration> {
        Some(match a {
            Answer::Active(p) => Duration::from_secs(p.expires_at.saturating_sub(unix_now())),
            Answer::Inactive => self.inactive.iter().copied().min().unwrap_or(Duration::from_secs(10)),
        })
    }
}

pub use crate::util::unix_now;

fn hash(token: &str) -> TokenHash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl Authenticator {
    pub fn new(config: &Config, client: IdpClient, metrics: AuthMetrics) -> Arc<Authenticator> {
        let issuers = config.issuers.iter().map(|i| Arc::new(IssuerState::new(i.clone(), &metrics))).collect();
        let inactive =
            config.issuers.iter().filter_map(|i| i.introspection.as_ref()).map(|c| c.cache_inactive).collect();
        Arc::new(Authenticator {
            issuers,
            verified: moka::sync::Cache::builder()
                .weigher(|_, p: &Arc<Principal>| p.approx_size())
                .max_capacity(VERIFIED_CACHE_BYTES)
                .expire_after(UntilExp)
                .build_with_hasher(front::DigestHasherBuilder::default()),
            front_owner: front::new_owner(),
            introspected: moka::future::Cache::builder()
                .weigher(|_, a: &Answer| match a {
                    Answer::Active(p) => p.approx_size(),
                    Answer::Inactive => 64,
                })
                .max_capacity(INTROSPECTION_CACHE_BYTES)
                .expire_after(AnswerExpiry { inactive })
                .build(),
            client,
            metrics,
        })
    }

    /// True when every issuer has what it needs to check tokens.
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|i| i.is_ready())
    }

    pub fn issuer(&self, index: usize) -> &IssuerState {
        &self.issuers[index]
    }

    /// Starts discovery and key refresh for every issuer on the current runtime.
    pub fn spawn_maintenance(self: &Arc<Self>) {
        for issuer in &self.issuers {
            tokio::spawn(issuer.clone().maintain(self.client.clone(), self.metrics.clone()));
        }
    }

    /// Authenticates `token` for a route. Repeated tokens are answered from the cache.
    pub async fn authenticate(&self, route: &Bearer, token: &str) -> Result<Arc<Principal>, AuthError> {
        let result = self.authenticate_inner(route, token).await;
        match &result {
            Ok(_) => self.metrics.valid.inc(),
            Err(AuthError::InvalidToken(why)) => {
                self.metrics.validations.with_label_values(&["invalid", why.label()]).inc()
            }
            Err(AuthError::Unavailable(_)) => self.metrics.validations.with_label_values(&["unavailable", ""]).inc(),
            Err(_) => {}
        }
        result
    }

    async fn authenticate_inner(&self, route: &Bearer, token: &str) -> Result<Arc<Principal>, AuthError> {
        let limit = route.issuers.iter().map(|&i| self.issuers[i].config.max_token_bytes).max().unwrap_or(0);
        if token.len() > limit {
            return Err(AuthError::InvalidToken(Invalid::TooLarge));
        }
        // This thread's front cache, then the shared cache: the same checks on a hit from either.
        let now = unix_now();
        if let Some(p) = front::get(self.front_owner, token, now) {
            self.metrics.cache_hits.inc();
            let accepted = self.accept_cached(route, p);
            if matches!(accepted, Err(AuthError::InvalidToken(Invalid::Expired))) {
                front::remove(self.front_owner, token);
            }
            return accepted;
        }
        let key = hash(token);
        if let Some(p) = self.verified.get(&key) {
            self.metrics.cache_hits.inc();
            front::offer(self.front_owner, token, &p, now + FRONT_TTL_SECS);
            return self.accept_cached(route, p);
        }
        self.metrics.cache_misses.inc();
        // Boxed: a miss (key refetch, introspection call) carries large state, and a request
        // future holding it inline would be copied at that size on every request, hit or not.
        Box::pin(self.authenticate_miss(route, token, key, now)).await
    }

    async fn authenticate_miss(
        &self,
        route: &Bearer,
        token: &str,
        key: TokenHash,
        now: u64,
    ) -> Result<Arc<Principal>, AuthError> {
        if jwt::looks_like_jws(token) {
            let principal = self.verify_jwt(route, token).await?;
            self.verified.insert(key, principal.clone());
            front::put(self.front_owner, token, &principal, now + FRONT_TTL_SECS);
            Ok(principal)
        } else if token.split('.').count() == 5 {
            Err(AuthError::InvalidToken(Invalid::Encrypted))
        } else {
            self.introspect(route, token, key).await
        }
    }

    fn accept_cached(&self, route: &Bearer, p: Arc<Principal>) -> Result<Arc<Principal>, AuthError> {
        if !route.issuers.contains(&p.issuer) {
            return Err(AuthError::InvalidToken(Invalid::UnknownIssuer));
        }
        let leeway = self.issuers[p.issuer].config.leeway.as_secs();
        if unix_now() >= p.expires_at.saturating_add(leeway) {
            return Err(AuthError::InvalidToken(Invalid::Expired));
        }
        Ok(p)
    }

    async fn verify_jwt(&self, route: &Bearer, token: &str) -> Result<Arc<Principal>, AuthError> {
        let invalid = AuthError::InvalidToken;
        let parsed = jwt::parse(token).map_err(invalid)?;
        let iss = parsed.issuer().map_err(invalid)?;
        let index = *route
            .issuers
            .iter()
            .find(|&&i| self.issuers[i].config.url == iss)
            .ok_or(AuthError::InvalidToken(Invalid::UnknownIssuer))?;
        let issuer = &self.issuers[index];
        if token.len() > issuer.config.max_token_bytes {
            return Err(invalid(Invalid::TooLarge));
        }
        let key = self.verification_key(index, &parsed).await?;
        parsed.verify_signature(&key).map_err(invalid)?;
        let exp = parsed.check_claims(&issuer.config, unix_now()).map_err(invalid)?;
        let principal =
            Principal::from_claims(index, parsed.claims, exp).ok_or(invalid(Invalid::MissingClaim("sub")))?;
        Ok(Arc::new(principal))
    }

    /// The issuer's key for a parsed token: by `kid` (refetching the key set on an unknown one,
    /// rate limited) and pinned to the token's `alg`.
    pub async fn verification_key(
        &self,
        index: usize,
        parsed: &jwt::Token<'_>,
    ) -> Result<Arc<jwks::VerifyKey>, AuthError> {
        let invalid = AuthError::InvalidToken;
        let issuer = &self.issuers[index];
        match issuer.keys().find(parsed.kid.as_deref(), parsed.alg) {
            Lookup::Found(k) => Ok(k),
            Lookup::AlgorithmMismatch => Err(invalid(Invalid::AlgorithmMismatch)),
            Lookup::UnknownKid if !issuer.keys().loaded => {
                Err(AuthError::Unavailable("the issuer's keys are not loaded yet"))
            }
            Lookup::UnknownKid => {
                // Perhaps a key rotation: refetch, at most once per interval per issuer.
                issuer.refetch_for_unknown_kid(&self.client, &self.metrics).await;
                match issuer.keys().find(parsed.kid.as_deref(), parsed.alg) {
                    Lookup::Found(k) => Ok(k),
                    Lookup::AlgorithmMismatch => Err(invalid(Invalid::AlgorithmMismatch)),
                    Lookup::UnknownKid => Err(invalid(Invalid::UnknownKid)),
                }
            }
        }
    }

    pub fn client(&self) -> &IdpClient {
        &self.client
    }

    /// Opaque tokens: the first of the route's issuers that introspects. Concurrent requests
    /// with the same token share one call.
    async fn introspect(&self, route: &Bearer, token: &str, key: TokenHash) -> Result<Arc<Principal>, AuthError> {
        let Some(&index) = route.issuers.iter().find(|&&i| self.issuers[i].config.introspection.is_some()) else {
            return Err(AuthError::InvalidToken(Invalid::Malformed(
                "not a JWT, and no issuer here introspects tokens",
            )));
        };
        let issuer = &self.issuers[index];
        let name = issuer.config.name.as_str();
        let endpoint =
            issuer.introspection_endpoint().ok_or(AuthError::Unavailable("the issuer's metadata is not loaded yet"))?;
        let answer = self
            .introspected
            .try_get_with((index, key), async {
                let result =
                    introspection::introspect(&self.client, &endpoint, index, &issuer.config, token, unix_now()).await;
                let outcome = match &result {
                    Ok(Answer::Active(_)) => "active",
                    Ok(Answer::Inactive) => "inactive",
                    Err(_) => "error",
                };
                self.metrics.introspections.with_label_values(&[name, outcome]).inc();
                result
            })
            .await
            .map_err(|e| {
                tracing::warn!(issuer = name, error = %e, "introspection failed");
                AuthError::Unavailable("the token could not be introspected")
            })?;
        match answer {
            Answer::Active(p) => self.accept_cached(route, p),
            Answer::Inactive => Err(AuthError::InvalidToken(Invalid::Inactive)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::RouteAuth;
    use futures_util::FutureExt;

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

    fn route(config: &Config, i: usize) -> &Bearer {
        match &config.routes[i].auth {
            RouteAuth::Bearer(b) => b,
            _ => panic!("not a bearer route"),
        }
    }

    fn principal(issuer: usize, expires_at: u64) -> Arc<Principal> {
        Arc::new(Principal::from_claims(issuer, serde_json::json!({"sub": "u"}), expires_at).unwrap())
    }

    fn run(auth: &Authenticator, route: &Bearer, token: &str) -> Result<Arc<Principal>, AuthError> {
        auth.authenticate(route, token).now_or_never().expect("no waiting")
    }

    // A JWS-shaped token no issuer signed: if a cache did not answer, verification refuses it.
    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";

    #[tokio::test]
    async fn front_hit_checks_expiry_with_leeway() {
        let (auth, config) = authenticator();
        let now = unix_now();
        // Expired 2 s ago, within issuer a's 5 s leeway: accepted from the front cache alone.
        front::put(auth.front_owner, TOKEN, &principal(0, now - 2), now + 60);
        assert!(run(&auth, route(&config, 0), TOKEN).is_ok());
        // Expired 10 s ago: refused on the front hit (not verified again) and dropped from it.
        front::put(auth.front_owner, TOKEN, &principal(0, now - 10), now + 60);
        assert_eq!(run(&auth, route(&config, 0), TOKEN), Err(AuthError::InvalidToken(Invalid::Expired)));
        assert!(front::get(auth.front_owner, TOKEN, now).is_none());
    }

    #[tokio::test]
    async fn front_hit_checks_the_routes_issuers() {
        let (auth, config) = authenticator();
        front::put(auth.front_owner, TOKEN, &principal(1, unix_now() + 60), unix_now() + 60);
        assert_eq!(run(&auth, route(&config, 0), TOKEN), Err(AuthError::InvalidToken(Invalid::UnknownIssuer)));
        assert_eq!(run(&auth, route(&config, 1), TOKEN).map(|p| p.issuer), Ok(1));
    }

    #[tokio::test]
    async fn front_entries_belong_to_one_authenticator() {
        let (auth, config) = authenticator();
        let (other, _) = authenticator();
        front::put(other.front_owner, TOKEN, &principal(0, unix_now() + 60), unix_now() + 60);
        assert!(run(&auth, route(&config, 0), TOKEN).is_err(), "another authenticator's entry answered");
        assert!(run(&other, route(&config, 0), TOKEN).is_ok());
    }

    #[tokio::test]
    async fn shared_hit_fills_the_front_and_both_stay_bounded() {
        let (auth, config) = authenticator();
        let p = principal(0, unix_now() + 60);
        let tokens: Vec<String> = (0..front::SLOTS * 4).map(|i| format!("{TOKEN}{i}")).collect();
        for t in &tokens {
            auth.verified.insert(hash(t), p.clone());
        }
        for t in &tokens {
            assert!(run(&auth, route(&config, 0), t).is_ok());
        }
        // A shared-cache hit enters the front on one lookup in a few.
        for _ in 0..8 {
            assert!(run(&auth, route(&config, 0), tokens.last().unwrap()).is_ok());
        }
        let now = unix_now();
        assert!(front::get(auth.front_owner, tokens.last().unwrap(), now).is_some(), "the last hit is in front");
        assert!(front::get(auth.front_owner, tokens.last().unwrap(), now + FRONT_TTL_SECS + 1).is_none());
        assert!(front::thread_len() <= front::SLOTS);
        // Invalid tokens never enter either cache.
        let bad = format!("{TOKEN}x");
        assert!(run(&auth, route(&config, 1), &bad).is_err());
        assert!(front::get(auth.front_owner, &bad, now).is_none());
        assert!(auth.verified.get(&hash(&bad)).is_none());
    }
}
