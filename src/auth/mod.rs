//! Authentication: who is calling. Bearer tokens (JWT verified against the issuer's keys, or
//! opaque tokens introspected) become a [`Principal`]; rules decide what it may do.
//!
//! Here: the [`Authenticator`]'s entry points, its caches of verified tokens and introspection
//! answers, and [`RouteBearer`], a route's settings with its issuers resolved. What a token is
//! bound to (a client certificate, a DPoP key) is checked in `binding`; why a caller is refused
//! is `error` ([`AuthError`], [`Invalid`]).

mod binding;
pub mod claims;
pub mod dpop;
mod error;
pub mod front;
pub mod id_token;
pub mod introspection;
pub mod issuer;
pub mod jwks;
pub mod jwt;
mod metrics;
pub mod principal;
pub mod rules;
pub mod token;
mod verified;

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::client_cert::Presented;
use crate::config::{self, Config};
use crate::oidc::http::IdpClient;
use crate::store::redis::Redis;
pub use binding::check_cert_binding;
use binding::dpop_redis;
pub use error::{AuthError, Invalid};
use introspection::Answer;
use issuer::{IssuerId, IssuerState};
use jwks::Lookup;
pub use metrics::AuthMetrics;
pub use principal::{CertBinding, Principal};

type TokenHash = [u8; 32];

/// Shared by every worker: issuers' keys, the verified-token cache and introspection answers.
/// One configuration's issuers; the caches are shared with the authenticators of later
/// configurations (hot reload), keyed by issuer identity so they stay right across them.
pub struct Authenticator {
    issuers: Vec<Arc<IssuerState>>,
    caches: Arc<Caches>,
    client: IdpClient,
    metrics: AuthMetrics,
    /// Where DPoP proofs are remembered across replicas: the login session store, when Redis.
    dpop_redis: Option<Arc<Redis>>,
}

/// A route's bearer settings with its issuers resolved to their states, built with the
/// configuration's snapshot: the request path reaches an issuer through a handle here, never by
/// a position or a name. Reads as the configured settings (`sources`, `dpop`, `realm`, ...);
/// `issuers` shadows the configuration's list with the states it names.
pub struct RouteBearer {
    cfg: config::Bearer,
    /// The issuers whose tokens the route accepts, in the configuration's order.
    pub issuers: Box<[Arc<IssuerState>]>,
    /// The largest `max_token_bytes` among them: a longer token is refused unread.
    max_token_bytes: usize,
}

impl Deref for RouteBearer {
    type Target = config::Bearer;

    fn deref(&self) -> &config::Bearer {
        &self.cfg
    }
}

/// What verified tokens and introspection answers are remembered in.
struct Caches {
    verified: verified::Verified,
    /// The mark on the entries of the per-thread front caches (`front.rs`).
    front_owner: u64,
    /// Keyed by issuer and token: one issuer's answer says nothing about another's.
    introspected: moka::future::Cache<(IssuerId, TokenHash), Answer>,
    /// How long an inactive answer is remembered (the shortest `cache_inactive`), in ms.
    inactive_ms: Arc<AtomicU64>,
    /// DPoP proofs seen (carried over reloads, so a reload opens no window for replays).
    dpop_seen: dpop::ReplayCache,
}

/// DPoP proofs remembered at once: within a one-minute window, over 15,000 a second.
const DPOP_REPLAY_ENTRIES: usize = 1 << 20;

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

struct AnswerExpiry {
    inactive_ms: Arc<AtomicU64>,
}

impl moka::Expiry<(IssuerId, TokenHash), Answer> for AnswerExpiry {
    fn expire_after_create(&self, _: &(IssuerId, TokenHash), a: &Answer, _: std::time::Instant) -> Option<Duration> {
        Some(match a {
            Answer::Active(p) => Duration::from_secs(p.expires_at.saturating_sub(unix_now())),
            Answer::Inactive => Duration::from_millis(self.inactive_ms.load(Ordering::Relaxed)),
        })
    }
}

/// The shortest `cache_inactive` of the issuers that introspect (10 s when none does).
fn inactive_ms(config: &Config) -> u64 {
    let shortest = config.issuers.iter().filter_map(|i| i.introspection.as_ref()).map(|c| c.cache_inactive).min();
    shortest.unwrap_or(Duration::from_secs(10)).as_millis() as u64
}

pub use crate::util::unix_now;

/// The cache key of `token` (tests fill the caches with it).
#[cfg(test)]
fn hash(token: &str) -> TokenHash {
    hashes(token).0
}

/// The SHA-256 of a token's signed part: the length of the prefix it covers and the digest.
type Signed = (usize, aws_lc_rs::digest::Digest);

/// The SHA-256 of a token's signed part, not yet finished: the hashing state after the prefix
/// (its length), so that only a cache miss, which checks a signature, pays for finishing it.
type SignedPart = (usize, aws_lc_rs::digest::Context);

/// In one pass over `token`: its cache key (the SHA-256 of the whole token) and, when it has a
/// `.`, the hashing state after everything before the last one (a JWS's `header.payload`, whose
/// digest an RS256, PS256 or ES256 signature is over), so a miss does not hash it again.
fn hashes(token: &str) -> (TokenHash, Option<SignedPart>) {
    use aws_lc_rs::digest::{Context, SHA256};
    let mut ctx = Context::new(&SHA256);
    let signed = token.rfind('.').map(|dot| {
        ctx.update(&token.as_bytes()[..dot]);
        let signed = (dot, ctx.clone());
        ctx.update(&token.as_bytes()[dot..]);
        signed
    });
    if signed.is_none() {
        ctx.update(token.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    (out, signed)
}

impl Authenticator {
    pub fn new(config: &Config, client: IdpClient, metrics: AuthMetrics) -> Arc<Authenticator> {
        let issuers = config.issuers.iter().map(|i| Arc::new(IssuerState::new(i.clone(), &metrics))).collect();
        let inactive_ms = Arc::new(AtomicU64::new(inactive_ms(config)));
        let caches = Arc::new(Caches {
            verified: verified::Verified::new(VERIFIED_CACHE_BYTES, VERIFIED_MAX_TTL),
            front_owner: front::new_owner(),
            introspected: moka::future::Cache::builder()
                .weigher(|_, a: &Answer| match a {
                    Answer::Active(p) => p.approx_size(),
                    Answer::Inactive => 64,
                })
                .max_capacity(INTROSPECTION_CACHE_BYTES)
                .expire_after(AnswerExpiry { inactive_ms: inactive_ms.clone() })
                .build(),
            inactive_ms,
            dpop_seen: dpop::ReplayCache::new(DPOP_REPLAY_ENTRIES),
        });
        Arc::new(Authenticator { issuers, caches, client, metrics, dpop_redis: dpop_redis(config) })
    }

    /// The authenticator for a reloaded `config`: an issuer whose table is unchanged keeps its
    /// state (metadata, keys, background refresh), and with it every verified token and
    /// introspection answer it vouched for; a changed or new issuer starts afresh under a new
    /// identity, so nothing checked under the old settings is accepted under the new ones.
    pub fn next(&self, config: &Config) -> Arc<Authenticator> {
        let issuers = config
            .issuers
            .iter()
            .map(|i| match self.issuers.iter().find(|old| old.config.fingerprint == i.fingerprint) {
                Some(old) => old.clone(),
                None => Arc::new(IssuerState::new(i.clone(), &self.metrics)),
            })
            .collect();
        self.caches.inactive_ms.store(inactive_ms(config), Ordering::Relaxed);
        Arc::new(Authenticator {
            issuers,
            caches: self.caches.clone(),
            client: self.client.clone(),
            metrics: self.metrics.clone(),
            dpop_redis: dpop_redis(config),
        })
    }

    /// After `next` took over: retires the issuers it no longer uses and starts the background
    /// work of the ones it added. Returns (kept, added, retired).
    pub fn hand_over(&self, next: &Arc<Authenticator>) -> (usize, usize, usize) {
        let kept = |id: IssuerId, list: &[Arc<IssuerState>]| list.iter().any(|i| i.id == id);
        let mut retired = 0;
        for old in self.issuers.iter().filter(|o| !kept(o.id, &next.issuers)) {
            old.retire();
            retired += 1;
        }
        let mut added = 0;
        for new in next.issuers.iter().filter(|n| !kept(n.id, &self.issuers)) {
            tokio::spawn(new.clone().maintain(next.client.clone(), next.metrics.clone()));
            added += 1;
        }
        (next.issuers.len() - added, added, retired)
    }

    /// True when every issuer has what it needs to check tokens.
    pub fn is_ready(&self) -> bool {
        self.issuers.iter().all(|i| i.is_ready())
    }

    /// The state of the configuration's issuer number `index` (`new` and `next` keep the
    /// file's order): how a snapshot resolves the configuration's references to issuers, once,
    /// when it is built. Nothing on the request path calls it.
    pub fn configured_issuer(&self, index: usize) -> Option<&Arc<IssuerState>> {
        self.issuers.get(index)
    }

    /// `cfg`, a route's bearer settings, with its issuers resolved to this configuration's
    /// states (see [`Authenticator::configured_issuer`]); `None` when it names an issuer this
    /// configuration does not have (validation rules that out; never a route with fewer).
    pub fn route_bearer(&self, cfg: &config::Bearer) -> Option<RouteBearer> {
        let issuers: Box<[_]> =
            cfg.issuers.iter().map(|&i| self.configured_issuer(i).cloned()).collect::<Option<_>>()?;
        let max_token_bytes = issuers.iter().map(|i| i.config.max_token_bytes).max().unwrap_or(0);
        Some(RouteBearer { cfg: cfg.clone(), issuers, max_token_bytes })
    }

    /// Starts discovery and key refresh for every issuer on the current runtime.
    pub fn spawn_maintenance(self: &Arc<Self>) {
        for issuer in &self.issuers {
            tokio::spawn(issuer.clone().maintain(self.client.clone(), self.metrics.clone()));
        }
    }

    /// Authenticates `token` as a bearer token presented with nothing else: no DPoP proof, no
    /// client certificate (so a token bound to either is refused). For callers without a
    /// request, such as benchmarks; the gateway uses [`Authenticator::authenticate_request`].
    pub async fn authenticate(&self, route: &RouteBearer, token: &str) -> Result<Arc<Principal>, AuthError> {
        let presented = token::Presented {
            token: std::borrow::Cow::Borrowed(token),
            scheme: token::Scheme::Bearer,
            in_header: true,
        };
        let headers = http::HeaderMap::new();
        let origin = dpop::Origin { tls: false, trusted_proxy: false, authority: "" };
        let req =
            dpop::Request { headers: &headers, method: &http::Method::GET, path: "/", origin, cert: Presented::NONE };
        self.authenticate_request(route, &presented, &req).await
    }

    /// Authenticates what a request presented: the token, for the `DPoP` scheme its proof, and
    /// the client certificate. What the token is bound to is checked on every request, whichever
    /// cache answered for it (the caches hold principals, not requests): a token bound to a
    /// certificate (RFC 8705 §3) passes only with that certificate, a DPoP-bound token never
    /// passes as a bearer token, and a proof must be from its key.
    pub async fn authenticate_request(
        &self,
        route: &RouteBearer,
        presented: &token::Presented<'_>,
        req: &dpop::Request<'_>,
    ) -> Result<Arc<Principal>, AuthError> {
        let result = self.authenticate_bound(route, presented, req).await;
        self.record(&result);
        result
    }

    fn record(&self, result: &Result<Arc<Principal>, AuthError>) {
        match result {
            Ok(_) => self.metrics.valid.inc(),
            Err(e) => self.metrics.count_failure(e),
        }
    }

    async fn authenticate_inner(&self, route: &RouteBearer, token: &str) -> Result<Arc<Principal>, AuthError> {
        if token.len() > route.max_token_bytes {
            return Err(AuthError::InvalidToken(Invalid::TooLarge));
        }
        // This thread's front cache, then the shared cache: the same checks on a hit from either.
        let now = unix_now();
        let owner = self.caches.front_owner;
        if let Some(p) = front::get(owner, token, now) {
            match self.accept_cached(route, p) {
                Ok(Some(p)) => {
                    self.metrics.cache_hits.inc();
                    return Ok(p);
                }
                // Vouched for by an issuer a reload replaced: checked again below.
                Ok(None) => front::remove(owner, token),
                Err(e) => {
                    self.metrics.cache_hits.inc();
                    if matches!(e, AuthError::InvalidToken(Invalid::Expired)) {
                        front::remove(owner, token);
                    }
                    return Err(e);
                }
            }
        }
        let (key, signed) = hashes(token);
        if let Some(p) = self.caches.verified.get(&key, now) {
            if let Some(accepted) = self.accept_cached(route, p.clone()).transpose() {
                self.metrics.cache_hits.inc();
                front::offer(owner, token, &p, now + FRONT_TTL_SECS);
                return accepted;
            }
        }
        self.metrics.cache_misses.inc();
        // Boxed: a miss (key refetch, introspection call) carries large state, and a request
        // future holding it inline would be copied at that size on every request, hit or not.
        Box::pin(self.authenticate_miss(route, token, key, signed, now)).await
    }

    async fn authenticate_miss(
        &self,
        route: &RouteBearer,
        token: &str,
        key: TokenHash,
        signed: Option<SignedPart>,
        now: u64,
    ) -> Result<Arc<Principal>, AuthError> {
        if jwt::looks_like_jws(token) {
            let signed = signed.map(|(len, ctx)| (len, ctx.finish()));
            let principal = self.verify_jwt(route, token, signed.as_ref()).await?;
            self.caches.verified.insert(key, principal.clone(), now);
            front::put(self.caches.front_owner, token, &principal, now + FRONT_TTL_SECS);
            Ok(principal)
        } else if token.split('.').count() == 5 {
            Err(AuthError::InvalidToken(Invalid::Encrypted))
        } else {
            self.introspect(route, token, key).await
        }
    }

    /// A remembered principal, for this route. `Ok(None)` when the issuer that vouched for it
    /// is not one of this configuration's (a reload changed or removed it): the token is then
    /// checked again as if never seen.
    fn accept_cached(&self, route: &RouteBearer, p: Arc<Principal>) -> Result<Option<Arc<Principal>>, AuthError> {
        let Some(issuer) = route.issuers.iter().find(|i| i.id == p.issuer) else {
            if self.issuers.iter().any(|i| i.id == p.issuer) {
                return Err(AuthError::InvalidToken(Invalid::UnknownIssuer));
            }
            return Ok(None);
        };
        if unix_now() >= p.expires_at.saturating_add(issuer.config.leeway.as_secs()) {
            return Err(AuthError::InvalidToken(Invalid::Expired));
        }
        Ok(Some(p))
    }

    /// `signed`: the SHA-256 of the token's signed part, from [`hashes`], if the caller has it.
    async fn verify_jwt(
        &self,
        route: &RouteBearer,
        token: &str,
        signed: Option<&Signed>,
    ) -> Result<Arc<Principal>, AuthError> {
        let invalid = AuthError::InvalidToken;
        let parsed = jwt::parse(token).map_err(invalid)?;
        let iss = parsed.issuer().map_err(invalid)?;
        let issuer = route
            .issuers
            .iter()
            .find(|i| i.config.url == iss)
            .ok_or(AuthError::InvalidToken(Invalid::UnknownIssuer))?;
        if token.len() > issuer.config.max_token_bytes {
            return Err(invalid(Invalid::TooLarge));
        }
        let key = self.verification_key(issuer, &parsed).await?;
        parsed.verify_signature_prehashed(&key, signed).map_err(invalid)?;
        let exp = parsed.check_claims(&issuer.config, unix_now()).map_err(invalid)?;
        let principal =
            Principal::from_claims(issuer.id, parsed.claims, exp).ok_or(invalid(Invalid::MissingClaim("sub")))?;
        Ok(Arc::new(principal))
    }

    /// The issuer's key for a parsed token: by `kid` (refetching the key set on an unknown one,
    /// rate limited) and pinned to the token's `alg`.
    pub async fn verification_key(
        &self,
        issuer: &IssuerState,
        parsed: &jwt::Token<'_>,
    ) -> Result<Arc<jwks::VerifyKey>, AuthError> {
        let invalid = AuthError::InvalidToken;
        match issuer.keys().find(parsed.kid.as_deref(), parsed.alg) {
            Lookup::Found(k) => Ok(k),
            Lookup::AlgorithmMismatch => Err(invalid(Invalid::AlgorithmMismatch)),
            Lookup::UnknownKid if !issuer.keys().loaded => {
                Err(AuthError::Unavailable("the issuer's keys are not loaded yet"))
            }
            Lookup::UnknownKid => {
                // Perhaps a key rotation: refetch, rate limited per issuer and per kid.
                issuer.refetch_for_unknown_kid(parsed.kid.as_deref(), &self.client, &self.metrics).await;
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
    async fn introspect(&self, route: &RouteBearer, token: &str, key: TokenHash) -> Result<Arc<Principal>, AuthError> {
        let Some(issuer) = route.issuers.iter().find(|i| i.config.introspection.is_some()) else {
            return Err(AuthError::InvalidToken(Invalid::Malformed(
                "not a JWT, and no issuer here introspects tokens",
            )));
        };
        let name = issuer.config.name.as_str();
        let endpoint =
            issuer.introspection_endpoint().ok_or(AuthError::Unavailable("the issuer's metadata is not loaded yet"))?;
        let answer = self
            .caches
            .introspected
            .try_get_with((issuer.id, key), async {
                let result =
                    introspection::introspect(&self.client, &endpoint, issuer.id, &issuer.config, token, unix_now())
                        .await;
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
            Answer::Active(p) => self.accept_cached(route, p)?.ok_or(AuthError::InvalidToken(Invalid::UnknownIssuer)),
            Answer::Inactive => Err(AuthError::InvalidToken(Invalid::Inactive)),
        }
    }
}

#[cfg(test)]
mod tests;
