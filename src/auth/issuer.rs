//! One issuer's live state: metadata from discovery and its key set, refreshed in the
//! background before they expire, refetched on an unknown `kid` (see
//! [`IssuerState::refetch_for_unknown_kid`] for how often), and kept when the issuer is
//! unreachable.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use http::header::{HeaderName, IF_NONE_MATCH};
use http::{StatusCode, Uri};
use tokio::sync::Notify;

use super::jwks::{self, KeySet};
use super::AuthMetrics;
use crate::config::Issuer;
use crate::oidc::discovery::{self, Metadata};
use crate::oidc::http::IdpClient;
use crate::util::Backoff;

/// Identifies one issuer's state for as long as it lives, across configuration reloads (a
/// principal remembers which issuer vouched for it by this, not by a position in a list).
pub type IssuerId = u64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub struct IssuerState {
    pub id: IssuerId,
    pub config: Issuer,
    metadata: ArcSwapOption<Metadata>,
    keys: ArcSwap<KeySet>,
    ready: AtomicBool,
    started: Instant,
    /// Milliseconds since `started` of the last fetch caused by an unknown `kid`.
    last_refetch_ms: AtomicU64,
    /// `kid`s that a refetch for them did not find, each with when it may cause the next one
    /// (at most [`MAX_MISSING_KIDS`]).
    missing: Mutex<Vec<MissingKid>>,
    fetching: AtomicBool,
    fetched: Notify,
    /// Set when a reload dropped this issuer: its background work stops.
    retired: AtomicBool,
    retire: Notify,
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("no jwks_uri (configure one, or enable discovery)")]
    NoUri,
    #[error(transparent)]
    Http(#[from] crate::oidc::http::HttpError),
    #[error("the JWKS endpoint answered {0}")]
    Status(StatusCode),
    #[error(transparent)]
    Parse(#[from] jwks::JwksError),
}

impl IssuerState {
    pub fn new(config: Issuer, metrics: &AuthMetrics) -> IssuerState {
        metrics.issuer_ready.with_label_values(&[&config.name]).set(0);
        IssuerState {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            metadata: ArcSwapOption::empty(),
            keys: ArcSwap::from_pointee(KeySet::default()),
            ready: AtomicBool::new(false),
            started: Instant::now(),
            last_refetch_ms: AtomicU64::new(u64::MAX),
            missing: Mutex::new(Vec::new()),
            fetching: AtomicBool::new(false),
            fetched: Notify::new(),
            retired: AtomicBool::new(false),
            retire: Notify::new(),
        }
    }

    /// Stops the background work (a reload no longer uses this issuer). Requests still running
    /// on an older snapshot keep using the last keys.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.retire.notify_waiters();
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Sleeps `wait`; false when the issuer was retired meanwhile.
    async fn pause(&self, wait: Duration) -> bool {
        let retired = self.retire.notified();
        tokio::pin!(retired);
        retired.as_mut().enable();
        if self.retired.load(Ordering::Acquire) {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => !self.retired.load(Ordering::Acquire),
            _ = retired => false,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The current key set (a snapshot; no lock).
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    pub fn metadata(&self) -> Option<Arc<Metadata>> {
        self.metadata.load_full()
    }

    fn jwks_uri(&self) -> Option<Uri> {
        self.config.jwks_uri.clone().or_else(|| self.metadata.load().as_ref().and_then(|m| m.jwks_uri.clone()))
    }

    pub fn introspection_endpoint(&self) -> Option<Uri> {
        let explicit = self.config.introspection.as_ref().and_then(|i| i.endpoint.clone());
        explicit.or_else(|| self.metadata.load().as_ref().and_then(|m| m.introspection_endpoint.clone()))
    }

    /// Background work: discovery (retried with backoff), then the key set, then refreshes
    /// before each expiry. Runs until the runtime stops or the issuer is retired.
    pub async fn maintain(self: Arc<Self>, client: IdpClient, metrics: AuthMetrics) {
        let name = self.config.name.clone();
        let mut backoff = Backoff::default();
        while self.config.discovery && self.metadata.load().is_none() {
            match discovery::discover(&client, &self.config).await {
                Ok(m) => {
                    tracing::info!(issuer = %name, "discovered issuer metadata");
                    self.metadata.store(Some(Arc::new(m)));
                }
                Err(e) => {
                    metrics.discovery_failures.with_label_values(&[&name]).inc();
                    let wait = backoff.next_delay();
                    tracing::warn!(issuer = %name, error = %e, retry_in = ?wait, "discovery failed");
                    if !self.pause(wait).await {
                        return;
                    }
                }
            }
        }
        if self.jwks_uri().is_none() {
            // An issuer used only for introspection has no keys to load.
            if self.introspection_endpoint().is_some() {
                self.mark_ready(&metrics);
            } else {
                tracing::error!(issuer = %name, "no jwks_uri and no introspection endpoint: tokens from this issuer cannot be checked");
            }
            return;
        }
        let mut backoff = Backoff::default();
        loop {
            let wait = match self.fetch_keys(&client, &metrics).await {
                Ok(ttl) => {
                    self.mark_ready(&metrics);
                    backoff = Backoff::default();
                    // Refresh before expiry so readers never see an expired set.
                    ttl.mul_f64(0.8).max(Duration::from_secs(1))
                }
                Err(e) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(issuer = %name, error = %e, retry_in = ?wait, "key set fetch failed; keeping the last good keys");
                    wait
                }
            };
            if !self.pause(wait).await {
                tracing::debug!(issuer = %name, "issuer retired by a reload; background work stops");
                return;
            }
        }
    }

    fn mark_ready(&self, metrics: &AuthMetrics) {
        if !self.ready.swap(true, Ordering::AcqRel) {
            metrics.issuer_ready.with_label_values(&[&self.config.name]).set(1);
            tracing::info!(issuer = %self.config.name, keys = self.keys().len(), "issuer ready");
        }
    }

    /// Fetches the key set (conditionally, with the last ETag) and returns how long it is fresh.
    async fn fetch_keys(&self, client: &IdpClient, metrics: &AuthMetrics) -> Result<Duration, FetchError> {
        let result = self.fetch_keys_inner(client).await;
        let outcome = match &result {
            Ok((_, true)) => "not_modified",
            Ok((_, false)) => "ok",
            Err(_) => "error",
        };
        metrics.jwks_fetches.with_label_values(&[&self.config.name, outcome]).inc();
        result.map(|(ttl, _)| ttl)
    }

    async fn fetch_keys_inner(&self, client: &IdpClient) -> Result<(Duration, bool), FetchError> {
        let uri = self.jwks_uri().ok_or(FetchError::NoUri)?;
        let current = self.keys.load_full();
        let extra: Vec<(HeaderName, _)> = current.etag.iter().map(|e| (IF_NONE_MATCH, e.clone())).collect();
        let fetched = client.get(&uri, &extra).await?;
        let ttl = jwks::ttl(&fetched.headers, self.config.jwks_min_ttl, self.config.jwks_max_ttl);
        if fetched.status == StatusCode::NOT_MODIFIED && current.loaded {
            return Ok((ttl, true));
        }
        if !fetched.status.is_success() {
            return Err(FetchError::Status(fetched.status));
        }
        let mut set = KeySet::parse(&fetched.body, &self.config.algorithms)?;
        set.etag = jwks::etag(&fetched.headers);
        if set.is_empty() {
            tracing::warn!(issuer = %self.config.name, "the key set holds no usable signing key");
        }
        self.keys.store(Arc::new(set));
        Ok((ttl, false))
    }

    /// On an unknown `kid`: fetch the key set again, bounded two ways.
    /// - Any two such fetches are at least a tenth of `jwks_refetch_interval` apart (1 s by
    ///   default), however many different `kid`s are asked for: a flood of made-up `kid`s costs
    ///   the provider at most that rate of (conditional) requests.
    /// - A `kid` that a fetch for it did not find waits before it may cause another: that tenth
    ///   first, doubling to the whole interval while it stays missing. So tokens under a retired
    ///   or made-up `kid` sent all the time cost a fetch per interval, and do not hold back a
    ///   rotated key's first tokens, whose `kid` is new; and a fetch that reached a provider
    ///   instance still serving the old set (a keep-alive connection to a replica being
    ///   replaced) is tried again within a second, not a whole interval later.
    ///
    /// Concurrent callers share one fetch and wait for it.
    pub async fn refetch_for_unknown_kid(&self, kid: Option<&str>, client: &IdpClient, metrics: &AuthMetrics) {
        let fetched = self.fetched.notified();
        tokio::pin!(fetched);
        fetched.as_mut().enable();
        if self.fetching.load(Ordering::Acquire) {
            let _ = tokio::time::timeout(Duration::from_secs(10), fetched).await;
            return;
        }
        let interval = self.config.jwks_refetch_interval.as_millis() as u64;
        let floor = interval / 10;
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_refetch_ms.load(Ordering::Acquire);
        if last != u64::MAX && now.saturating_sub(last) < floor {
            return;
        }
        let kid = kid.unwrap_or("");
        if self.lock_missing().iter().any(|m| &*m.kid == kid && now < m.next_ms) {
            return;
        }
        if self.fetching.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            let _ = tokio::time::timeout(Duration::from_secs(10), fetched).await;
            return;
        }
        // Cleared and announced on drop: a caller that goes away mid-fetch (client reset)
        // must not leave the gate closed for everyone after it.
        let _fetching = FetchingGuard(self);
        // Another caller may have fetched between the check above and winning the flag.
        let last = self.last_refetch_ms.load(Ordering::Acquire);
        if last != u64::MAX && now.saturating_sub(last) < floor {
            return;
        }
        self.last_refetch_ms.store(now, Ordering::Release);
        if let Err(e) = self.fetch_keys(client, metrics).await {
            // Nothing was learnt about the kid: it is not held back for this fetch.
            tracing::warn!(issuer = %self.config.name, error = %e, "key set refetch failed; keeping the last good keys");
            return;
        }
        // A kid longer than any real one is not remembered (the floor still bounds its fetches).
        if kid.len() > MAX_REMEMBERED_KID {
            return;
        }
        let found = !kid.is_empty() && self.keys().by_kid_contains(kid);
        let mut missing = self.lock_missing();
        let earlier = missing.iter().position(|m| &*m.kid == kid);
        let backoff = match earlier.map(|i| missing.swap_remove(i)) {
            Some(m) => (m.backoff_ms * 2).clamp(floor, interval),
            None => floor,
        };
        if !found {
            if missing.len() >= MAX_MISSING_KIDS {
                // The one whose wait ends first goes: it is the least held back anyway.
                if let Some(i) = (0..missing.len()).min_by_key(|&i| missing[i].next_ms) {
                    missing.swap_remove(i);
                }
            }
            missing.push(MissingKid { kid: kid.into(), next_ms: now + backoff, backoff_ms: backoff });
        }
    }

    fn lock_missing(&self) -> std::sync::MutexGuard<'_, Vec<MissingKid>> {
        self.missing.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The most `kid`s remembered as missing: a flood of made-up ones then forgets the oldest,
/// each costing at most the floor's rate of fetches.
const MAX_MISSING_KIDS: usize = 64;
/// The longest `kid` remembered as missing (real ones are thumbprints or short names).
const MAX_REMEMBERED_KID: usize = 256;

/// A `kid` an unknown-`kid` refetch did not find (see [`IssuerState::refetch_for_unknown_kid`]).
struct MissingKid {
    kid: Box<str>,
    /// Milliseconds since `started` before which it causes no refetch.
    next_ms: u64,
    backoff_ms: u64,
}

struct FetchingGuard<'a>(&'a IssuerState);

impl Drop for FetchingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetching.store(false, Ordering::Release);
        self.0.fetched.notify_waiters();
    }
}
