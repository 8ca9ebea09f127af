//! Client-credentials tokens (RFC 6749 §4.4) for upstream calls: one held token per client,
//! read without locks, renewed in the background before it expires, fetched once for any
//! number of concurrent cold misses, and kept in use while the token endpoint fails. Clients
//! with `grant = "token_exchange"` exchange the caller's token instead (`exchange.rs`); the
//! same held token serves as their actor token when they send one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::exchange::{self, ClientExchange, ExchangeError, ExchangeMetrics, Subject};
use crate::auth::issuer::IssuerState;
use crate::auth::Authenticator;
use crate::config::{Client, Config, TokenEndpoint};
use crate::oidc::token_client::{self, TokenError};
use crate::util::Backoff;

/// A minted token, ready to be sent.
#[derive(Debug)]
struct Held {
    authorization: HeaderValue,
    expires_at: Instant,
    /// When to start renewing (a fraction of the lifetime, minus the skew).
    renew_at: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No valid token, and the token endpoint did not give one.
    #[error("no valid token for client {client}: {reason}")]
    Unavailable { client: String, reason: String },
    /// The provider refused to exchange the caller's token (a 403 for the caller).
    #[error("client {client}: the token exchange was refused: {source}")]
    Refused {
        client: String,
        #[source]
        source: ExchangeError,
    },
}

#[derive(Clone)]
pub struct CredentialMetrics {
    requests: IntCounterVec,
    cache: IntCounterVec,
    expiry: IntGaugeVec,
    rejections: IntCounterVec,
    retries: IntCounterVec,
    exchange: ExchangeMetrics,
}

impl CredentialMetrics {
    pub fn new(registry: &Registry) -> Result<CredentialMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_client_token_requests_total",
                "Token endpoint calls for upstream tokens, by client and outcome",
            ),
            &["client", "outcome"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new("tollgate_client_token_cache_total", "Upstream token lookups by client and result (hit, miss)"),
            &["client", "result"],
        )?;
        let expiry = IntGaugeVec::new(
            Opts::new("tollgate_client_token_expiry_seconds", "Seconds until the held upstream token expires"),
            &["client"],
        )?;
        let rejections = IntCounterVec::new(
            Opts::new(
                "tollgate_upstream_token_rejections_total",
                "Upstream 401 invalid_token answers to a token tollgate sent, by client",
            ),
            &["client"],
        )?;
        let retries = IntCounterVec::new(
            Opts::new(
                "tollgate_upstream_token_retries_total",
                "Requests sent again with a new token after the upstream rejected one, by client",
            ),
            &["client"],
        )?;
        for c in [&requests, &cache, &rejections, &retries] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(expiry.clone()))?;
        let exchange = ExchangeMetrics::new(registry)?;
        Ok(CredentialMetrics { requests, cache, expiry, rejections, retries, exchange })
    }
}

/// One client's token.
pub struct ClientToken {
    cfg: Client,
    /// The issuer whose discovered token endpoint it uses (`TokenEndpoint::Issuer`), resolved
    /// when it was made. A client kept across a reload kept its issuer too (the client's
    /// identity includes the issuer's).
    issuer: Option<Arc<IssuerState>>,
    held: ArcSwapOption<Held>,
    /// Serialises fetches: concurrent misses wait here and then find the fresh token.
    fetch: tokio::sync::Mutex<()>,
    /// Completed fetch attempts, and why the last failed one failed: callers that waited on
    /// `fetch` while an attempt failed share its failure instead of each calling again.
    attempts: AtomicU64,
    last_error: ArcSwapOption<String>,
    /// `tollgate_client_token_cache_total{client, result="hit"}`, resolved once.
    hits: prometheus::IntCounter,
    /// When an upstream's rejection last dropped the held token (see [`REJECTION_FLOOR`]).
    dropped_at: std::sync::Mutex<Option<Instant>>,
}

impl ClientToken {
    fn new(cfg: &Client, auth: &Authenticator, metrics: &CredentialMetrics) -> ClientToken {
        let issuer = match cfg.endpoint {
            TokenEndpoint::Issuer(i) => auth.configured_issuer(i).cloned(),
            TokenEndpoint::Url(_) => None,
        };
        ClientToken {
            cfg: cfg.clone(),
            issuer,
            held: ArcSwapOption::empty(),
            fetch: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            last_error: ArcSwapOption::empty(),
            hits: metrics.cache.with_label_values(&[cfg.name.as_str(), "hit"]),
            dropped_at: std::sync::Mutex::new(None),
        }
    }
}

/// After an upstream's `401 invalid_token` dropped a token, the next one is not dropped for
/// this long (per client, or per caller token for exchanged tokens): an upstream that rejects
/// every token then costs one token request per this time, not one per request.
pub const REJECTION_FLOOR: Duration = Duration::from_secs(10);

/// How long after start a token request waits for the issuer's discovery (the first requests
/// race it); later, an issuer still not discovered is unreachable and the request fails at once.
const DISCOVERY_WAIT: Duration = Duration::from_secs(5);

/// One configured client, as a route with `upstream_token` holds it: its token and, for a
/// token-exchange client, its exchanged tokens (both carried over a reload by the client's
/// identity).
pub struct UpstreamClient {
    token: Arc<ClientToken>,
    exchange: Option<Arc<ClientExchange>>,
}

/// All configured clients' tokens.
pub struct Credentials {
    /// In the configuration's order.
    clients: Vec<Arc<UpstreamClient>>,
    auth: Arc<Authenticator>,
    metrics: CredentialMetrics,
    started: Instant,
    /// Set when a reload handed the clients to the next configuration's `Credentials`.
    stopped: AtomicBool,
    stop: tokio::sync::Notify,
}

impl Credentials {
    pub fn new(config: &Config, auth: Arc<Authenticator>, metrics: CredentialMetrics) -> Arc<Credentials> {
        let clients = config.clients.iter().map(|c| Arc::new(UpstreamClient::new(c, &auth, &metrics))).collect();
        Arc::new(Credentials {
            clients,
            auth,
            metrics,
            started: Instant::now(),
            stopped: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
        })
    }

    /// The credentials of a reloaded `config`: a client whose table (and issuer) is unchanged
    /// keeps its token and its exchanged tokens; others start without any.
    pub fn next(&self, config: &Config, auth: Arc<Authenticator>) -> Arc<Credentials> {
        let clients = config
            .clients
            .iter()
            .map(|c| match self.clients.iter().find(|old| old.token.cfg.fingerprint == c.fingerprint) {
                Some(old) => old.clone(),
                None => Arc::new(UpstreamClient::new(c, &auth, &self.metrics)),
            })
            .collect();
        Arc::new(Credentials {
            clients,
            auth,
            metrics: self.metrics.clone(),
            started: self.started,
            stopped: AtomicBool::new(false),
            stop: tokio::sync::Notify::new(),
        })
    }

    /// After `next` took over: this one's renewals stop and `next`'s start (a kept client's
    /// token is renewed by exactly one loop).
    pub fn hand_over(&self, next: &Arc<Credentials>) {
        self.stopped.store(true, Ordering::Release);
        self.stop.notify_waiters();
        next.spawn_maintenance();
    }

    /// The configuration's client number `index`: how a snapshot resolves a route's
    /// `upstream_token`, once, when it is built.
    pub fn configured_client(&self, index: usize) -> Option<&Arc<UpstreamClient>> {
        self.clients.get(index)
    }

    /// The `Authorization` value for `client`: the held token when still valid, else a fetch.
    pub async fn authorization(&self, client: &UpstreamClient) -> Result<HeaderValue, CredentialError> {
        let ct = &client.token;
        if let Some(v) = ct.valid() {
            ct.hits.inc();
            return Ok(v);
        }
        // Boxed: the fetch's state is large, and the request future carrying this one should
        // not grow (and be copied) by it on every request.
        Box::pin(self.fetch_for_request(ct)).await
    }

    /// The `Authorization` value for the token-exchange `client`: `subject` (the caller's
    /// token) exchanged, from the cache when it holds a current answer. Without a caller token
    /// (which the configuration rules out) there is nothing to exchange, and no token.
    pub async fn exchanged(
        &self,
        client: &UpstreamClient,
        subject: Option<Subject<'_>>,
    ) -> Result<HeaderValue, CredentialError> {
        let unavailable = |reason: &str| CredentialError::Unavailable {
            client: client.token.cfg.name.clone(),
            reason: reason.into(),
        };
        let Some(ex) = &client.exchange else {
            return Err(unavailable("not a token-exchange client"));
        };
        let Some(subject) = subject else { return Err(unavailable("no caller token to exchange")) };
        let key = exchange::digest(subject.token);
        let result = match ex.cached(&key).await {
            Some(r) => r,
            // Boxed, as the client-credentials fetch: the request future stays small.
            None => Box::pin(self.exchange_miss(client, ex, key, subject)).await,
        };
        result.map_err(|e| match e {
            ExchangeError::Refused { .. } => CredentialError::Refused { client: ex.cfg.name.clone(), source: e },
            ExchangeError::Unavailable(reason) => CredentialError::Unavailable { client: ex.cfg.name.clone(), reason },
        })
    }

    /// The upstream answered `401 invalid_token` to `used`, the token `authorization` or
    /// `exchanged` (`exchange`) gave for `client` (and `subject`). Drops it when it is still
    /// the one held and no rejection dropped one within [`REJECTION_FLOOR`]; says whether
    /// asking again gives another token (a new one comes, or one came already).
    pub async fn rejected(
        &self,
        client: &UpstreamClient,
        exchange: bool,
        subject: Option<Subject<'_>>,
        used: &HeaderValue,
    ) -> bool {
        let ct = &client.token;
        self.metrics.rejections.with_label_values(&[ct.cfg.name.as_str()]).inc();
        let renew = match (exchange, &client.exchange, subject) {
            (false, _, _) => ct.rejected(used),
            (true, Some(ex), Some(s)) => ex.rejected(exchange::digest(s.token), used).await,
            (true, _, _) => false,
        };
        tracing::info!(client = %ct.cfg.name, renew, "the upstream rejected the token (invalid_token)");
        renew
    }

    /// Counts a request sent again after [`Credentials::rejected`].
    pub fn retried(&self, client: &UpstreamClient) {
        self.metrics.retries.with_label_values(&[client.token.cfg.name.as_str()]).inc();
    }

    async fn exchange_miss(
        &self,
        client: &UpstreamClient,
        ex: &ClientExchange,
        key: [u8; 32],
        subject: Subject<'_>,
    ) -> Result<HeaderValue, ExchangeError> {
        let endpoint =
            async { self.endpoint(&client.token).await.map_err(|e| ExchangeError::Unavailable(e.to_string())) };
        let actor = async {
            if !ex.cfg.mints_own_token() {
                return Ok(None);
            }
            let own = self.authorization(client).await.map_err(|e| ExchangeError::Unavailable(e.to_string()))?;
            let own = own.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::to_string);
            own.map(Some).ok_or_else(|| ExchangeError::Unavailable("the actor token is not a Bearer token".into()))
        };
        ex.exchange(self.auth.client(), key, subject, endpoint, actor).await
    }

    async fn fetch_for_request(&self, ct: &ClientToken) -> Result<HeaderValue, CredentialError> {
        let name = ct.cfg.name.as_str();
        self.metrics.cache.with_label_values(&[name, "miss"]).inc();
        let attempts = ct.attempts.load(Ordering::Acquire);
        let _guard = ct.fetch.lock().await;
        if let Some(v) = ct.valid() {
            return Ok(v);
        }
        if ct.attempts.load(Ordering::Acquire) != attempts {
            // An attempt finished while we waited and left no valid token: share its failure.
            let reason = ct.last_error.load_full().map_or_else(|| "the token request failed".into(), |e| (*e).clone());
            return Err(CredentialError::Unavailable { client: name.to_string(), reason });
        }
        self.fetch(ct)
            .await
            .map_err(|e| CredentialError::Unavailable { client: name.to_string(), reason: e.to_string() })?;
        ct.valid().ok_or_else(|| CredentialError::Unavailable {
            client: name.to_string(),
            reason: "the new token is already expired".into(),
        })
    }

    /// Background renewal for every client: before expiry, with jittered backoff on failure.
    /// Runs until the runtime stops.
    pub fn spawn_maintenance(self: &Arc<Self>) {
        for client in &self.clients {
            let (this, ct) = (self.clone(), client.token.clone());
            tokio::spawn(async move { this.maintain(&ct).await });
        }
    }

    async fn maintain(&self, ct: &ClientToken) {
        if !ct.cfg.mints_own_token() {
            return;
        }
        let mut backoff = Backoff::default();
        loop {
            let now = Instant::now();
            let held = ct.held.load_full();
            if let Some(h) = &held {
                let left = h.expires_at.saturating_duration_since(now).as_secs();
                self.metrics.expiry.with_label_values(&[&ct.cfg.name]).set(i64::try_from(left).unwrap_or(i64::MAX));
            }
            let due = held.as_ref().is_none_or(|h| now >= h.renew_at);
            let wait = if due {
                let result = {
                    let _guard = ct.fetch.lock().await;
                    // Another caller may have renewed it while we waited for the lock.
                    if ct.held.load().as_ref().is_some_and(|h| Instant::now() < h.renew_at) {
                        Ok(())
                    } else {
                        self.fetch(ct).await
                    }
                };
                match result {
                    Ok(()) => {
                        backoff = Backoff::default();
                        Duration::from_secs(1)
                    }
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(client = %ct.cfg.name, error = %e, retry_in = ?wait, "token request failed; the held token stays in use while valid");
                        wait
                    }
                }
            } else {
                // Check again soon: the gauge moves and renewal starts on time.
                held.map_or(Duration::from_secs(1), |h| {
                    h.renew_at.saturating_duration_since(now).min(Duration::from_secs(5))
                })
            };
            let stop = self.stop.notified();
            tokio::pin!(stop);
            stop.as_mut().enable();
            if self.stopped.load(Ordering::Acquire) {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_millis(50))) => {}
                _ = stop => return,
            }
        }
    }

    /// One token request (the caller holds `ct.fetch`); stores the token or the failure.
    async fn fetch(&self, ct: &ClientToken) -> Result<(), TokenError> {
        let result = self.fetch_inner(ct).await;
        ct.last_error.store(result.as_ref().err().map(|e| Arc::new(e.to_string())));
        ct.attempts.fetch_add(1, Ordering::AcqRel);
        result
    }

    async fn fetch_inner(&self, ct: &ClientToken) -> Result<(), TokenError> {
        let name = ct.cfg.name.as_str();
        let result = self.request(ct).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics.requests.with_label_values(&[name, outcome]).inc();
        let resp = result?;
        let lifetime = Duration::from_secs(resp.expires_in.unwrap_or(300).max(1));
        let now = Instant::now();
        let usable = lifetime.saturating_sub(ct.cfg.refresh_skew).max(lifetime / 2);
        let authorization = HeaderValue::from_str(&format!("Bearer {}", resp.access_token))
            .map_err(|_| TokenError::Invalid("the access token is not valid in a header".into()))?;
        ct.held.store(Some(Arc::new(Held {
            authorization,
            expires_at: now + usable,
            renew_at: now + usable.mul_f64(0.8),
        })));
        self.metrics.expiry.with_label_values(&[name]).set(i64::try_from(usable.as_secs()).unwrap_or(i64::MAX));
        tracing::debug!(client = name, expires_in = lifetime.as_secs(), "upstream token minted");
        Ok(())
    }

    async fn request(&self, ct: &ClientToken) -> Result<token_client::TokenResponse, TokenError> {
        let endpoint = self.endpoint(ct).await?;
        let mut params: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        params.extend(ct.cfg.client_credentials_params().iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let client = token_client::Client { id: &ct.cfg.client_id, auth: &ct.cfg.auth };
        token_client::request(self.auth.client(), &endpoint, &client, &params).await
    }

    /// The client's token endpoint: configured, or from its issuer's discovery.
    async fn endpoint(&self, ct: &ClientToken) -> Result<http::Uri, TokenError> {
        Ok(match (&ct.cfg.endpoint, &ct.issuer) {
            (TokenEndpoint::Url(u), _) => u.clone(),
            (TokenEndpoint::Issuer(_), None) => {
                return Err(TokenError::Invalid("the client's issuer is not one of the configuration's".into()))
            }
            (TokenEndpoint::Issuer(_), Some(issuer)) => {
                // Right after start, discovery may still be under way: wait for it (bounded)
                // rather than fail the first requests.
                let deadline = self.started + DISCOVERY_WAIT;
                let metadata = loop {
                    match issuer.metadata() {
                        Some(m) => break Some(m),
                        None if Instant::now() >= deadline => break None,
                        None => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                };
                metadata.and_then(|m| m.token_endpoint.clone()).ok_or_else(|| {
                    TokenError::Invalid(
                        "the issuer's token endpoint is not discovered (is the issuer reachable?)".into(),
                    )
                })?
            }
        })
    }
}

impl UpstreamClient {
    fn new(cfg: &Client, auth: &Authenticator, metrics: &CredentialMetrics) -> UpstreamClient {
        UpstreamClient {
            token: Arc::new(ClientToken::new(cfg, auth, metrics)),
            exchange: ClientExchange::new(cfg, &metrics.exchange).map(Arc::new),
        }
    }
}

impl ClientToken {
    /// See [`Credentials::rejected`]. Under `dropped_at`'s lock, so concurrent rejections of
    /// one token drop it once; the next `authorization` fetches (single flight).
    fn rejected(&self, used: &HeaderValue) -> bool {
        let mut dropped_at = self.dropped_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = self.held.load_full();
        match held {
            Some(h) if h.authorization != *used => true,
            None => true,
            Some(_) if dropped_at.is_some_and(|t| t.elapsed() < REJECTION_FLOOR) => false,
            Some(h) => {
                // Only this token: a renewal that replaced it meanwhile stays.
                let _ = self.held.compare_and_swap(&h, None);
                *dropped_at = Some(Instant::now());
                true
            }
        }
    }

    fn valid(&self) -> Option<HeaderValue> {
        let held = self.held.load();
        held.as_ref().filter(|h| Instant::now() < h.expires_at).map(|h| h.authorization.clone())
    }
}
