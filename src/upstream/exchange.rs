//! Token exchange (RFC 8693) for upstream calls: the caller's validated token is exchanged at
//! the token endpoint for one meant for the upstream (its own audience, an `act` claim naming
//! tollgate's client), and the upstream receives only that.
//!
//! Exchanged tokens are cached per client and digest of the caller's token, bounded by memory,
//! until the earlier of both tokens' expiries less the client's `refresh_skew` (see
//! [`cache_for`]); concurrent misses for one caller token share one exchange. A refusal is
//! remembered briefly ([`REFUSAL_TTL`]), so a caller retrying a token the provider will not
//! exchange does not make one call per request; an outage (unreachable, 5xx, an answer that is
//! not a usable token) is not remembered: the next request tries again, concurrent ones still
//! share one attempt.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use http::{HeaderValue, StatusCode, Uri};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde::Deserialize;

use super::credentials::REJECTION_FLOOR;
use crate::auth::front::DigestHasherBuilder;
use crate::config::{Client, Exchange, ACCESS_TOKEN_TYPE};
use crate::oidc::http::IdpClient;
use crate::oidc::token_client;
#[cfg(test)]
use crate::oidc::MAX_DESCRIPTION;
use crate::oidc::{answer_object as object, printable};

/// The grant type of RFC 8693 §2.1.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: a JWT, as some providers label the access tokens they issue.
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Memory for one client's exchanged tokens: about 8,000 tokens of 2 KB. Bounded by bytes, so a
/// flood of distinct caller tokens cannot grow the process past it (they evict each other).
const CACHE_BYTES: u64 = 16 << 20;
/// How long a refused exchange is remembered for its caller token. Also past that token's
/// expiry: a refusal grants nothing, and a caller retrying an expired token within the
/// gateway's leeway would otherwise make one exchange per request.
pub const REFUSAL_TTL: Duration = Duration::from_secs(5);
/// Caller tokens remembered as recently rejected (a bound, not a tuning knob).
const DROPPED_KEYS: u64 = 10_000;
/// The lifetime assumed when the provider sends no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The longest exchanged token accepted: it becomes a header, and upstreams limit those.
const MAX_TOKEN_BYTES: usize = 16 << 10;

/// The caller's token to exchange, and when it expires (Unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub token: &'a str,
    pub expires_at: u64,
    /// A session's access token: `expires_at` is the session's end, and the token's own JWT
    /// `exp`, when it has one, bounds it too (read on a cache miss only).
    pub session: bool,
}

impl Subject<'_> {
    fn expires_at(&self) -> u64 {
        match self.session.then(|| jwt_exp(self.token)).flatten() {
            Some(exp) => exp.min(self.expires_at),
            None => self.expires_at,
        }
    }
}

/// Why no exchanged token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// The provider answered with an OAuth error about this request (RFC 8693 §2.2.2 and
    /// RFC 6749 §5.2: `invalid_grant`, `invalid_target`, `unauthorized_client`, ...).
    #[error("{error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { error: String, description: Option<String> },
    /// No usable answer: unreachable, a 5xx, tollgate's own client refused (`invalid_client`), a
    /// success without a usable token.
    #[error("{0}")]
    Unavailable(String),
}

/// One cached answer.
#[derive(Debug)]
enum Outcome {
    Token { authorization: HeaderValue, until: Instant },
    Refused { error: ExchangeError, until: Instant },
}

impl Outcome {
    fn until(&self) -> Instant {
        match self {
            Outcome::Token { until, .. } | Outcome::Refused { until, .. } => *until,
        }
    }

    fn result(&self) -> Result<HeaderValue, ExchangeError> {
        match self {
            Outcome::Token { authorization, .. } => Ok(authorization.clone()),
            Outcome::Refused { error, .. } => Err(error.clone()),
        }
    }

    /// Roughly the bytes the entry holds (value, key, the cache's own bookkeeping).
    fn weight(&self) -> u32 {
        let held = match self {
            Outcome::Token { authorization, .. } => authorization.len(),
            Outcome::Refused { error: ExchangeError::Refused { error, description }, .. } => {
                error.len() + description.as_ref().map_or(0, String::len)
            }
            Outcome::Refused { .. } => 0,
        };
        u32::try_from(held + 200).unwrap_or(u32::MAX)
    }
}

struct UntilOutcome;

impl moka::Expiry<[u8; 32], Arc<Outcome>> for UntilOutcome {
    fn expire_after_create(&self, _: &[u8; 32], o: &Arc<Outcome>, now: Instant) -> Option<Duration> {
        Some(o.until().saturating_duration_since(now))
    }
}

#[derive(Clone)]
pub struct ExchangeMetrics {
    requests: IntCounterVec,
    cache: IntCounterVec,
}

impl ExchangeMetrics {
    pub fn new(registry: &Registry) -> Result<ExchangeMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_token_exchange_requests_total",
                "Token exchanges (RFC 8693) at the token endpoint, by client and outcome (ok, refused, error)",
            ),
            &["client", "outcome"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "tollgate_token_exchange_cache_total",
                "Exchanged-token lookups by client and result (hit, miss)",
            ),
            &["client", "result"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        Ok(ExchangeMetrics { requests, cache })
    }
}

/// One token-exchange client's cache of exchanged tokens.
pub struct ClientExchange {
    pub(super) cfg: Client,
    exchange: Exchange,
    cache: moka::future::Cache<[u8; 32], Arc<Outcome>, DigestHasherBuilder>,
    metrics: ExchangeMetrics,
    /// `tollgate_token_exchange_cache_total{client, result="hit"}`, resolved once.
    hits: IntCounter,
    /// Caller tokens whose exchanged token an upstream's rejection dropped within
    /// [`REJECTION_FLOOR`], and the lock that makes one drop of concurrent rejections.
    dropped: moka::sync::Cache<[u8; 32], (), DigestHasherBuilder>,
    rejecting: tokio::sync::Mutex<()>,
}

impl ClientExchange {
    /// `None` for a client that does not exchange tokens.
    pub fn new(cfg: &Client, metrics: &ExchangeMetrics) -> Option<ClientExchange> {
        let crate::config::Grant::TokenExchange(exchange) = &cfg.grant else { return None };
        Some(ClientExchange {
            cfg: cfg.clone(),
            exchange: exchange.clone(),
            cache: moka::future::Cache::builder()
                .weigher(|_, o: &Arc<Outcome>| o.weight())
                .max_capacity(CACHE_BYTES)
                .expire_after(UntilOutcome)
                .build_with_hasher(DigestHasherBuilder::default()),
            metrics: metrics.clone(),
            hits: metrics.cache.with_label_values(&[cfg.name.as_str(), "hit"]),
            dropped: moka::sync::Cache::builder()
                .max_capacity(DROPPED_KEYS)
                .time_to_live(REJECTION_FLOOR)
                .build_with_hasher(DigestHasherBuilder::default()),
            rejecting: tokio::sync::Mutex::new(()),
        })
    }

    /// The upstream rejected `used`, the exchanged token for the caller token `key`: drops it
    /// when it is still the cached one and not itself the replacement of a rejected one within
    /// [`REJECTION_FLOOR`]. True when the next lookup gives another token.
    pub async fn rejected(&self, key: [u8; 32], used: &HeaderValue) -> bool {
        let _one = self.rejecting.lock().await;
        match self.cache.get(&key).await.as_deref() {
            Some(Outcome::Token { authorization, .. }) if authorization == used => {
                if self.dropped.contains_key(&key) {
                    return false;
                }
                self.cache.invalidate(&key).await;
                self.dropped.insert(key, ());
                true
            }
            Some(Outcome::Token { .. }) | None => true,
            Some(Outcome::Refused { .. }) => false,
        }
    }

    /// The cached answer for `key`, if any is still current.
    pub async fn cached(&self, key: &[u8; 32]) -> Option<Result<HeaderValue, ExchangeError>> {
        let found = self.cache.get(key).await.filter(|o| Instant::now() < o.until())?;
        self.hits.inc();
        Some(found.result())
    }

    /// The exchanged token for `subject` (whose digest is `key`): from the cache, or from one
    /// exchange shared by every concurrent request for it. `endpoint` and `actor` (the client's
    /// own token, when it sends one) are only awaited when an exchange is made.
    pub async fn exchange<E, A>(
        &self,
        http: &IdpClient,
        key: [u8; 32],
        subject: Subject<'_>,
        endpoint: E,
        actor: A,
    ) -> Result<HeaderValue, ExchangeError>
    where
        E: std::future::Future<Output = Result<Uri, ExchangeError>>,
        A: std::future::Future<Output = Result<Option<String>, ExchangeError>>,
    {
        self.metrics.cache.with_label_values(&[self.cfg.name.as_str(), "miss"]).inc();
        let made = self.cache.try_get_with(key, async {
            let endpoint = endpoint.await?;
            let actor = actor.await?;
            self.request(http, &endpoint, subject, actor.as_deref()).await.map(Arc::new)
        });
        match made.await {
            Ok(outcome) => outcome.result(),
            Err(e) => Err((*e).clone()),
        }
    }

    /// One exchange: a token or a refusal to cache, or an outage (not cached).
    async fn request(
        &self,
        http: &IdpClient,
        endpoint: &Uri,
        subject: Subject<'_>,
        actor: Option<&str>,
    ) -> Result<Outcome, ExchangeError> {
        let name = self.cfg.name.as_str();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", subject.token),
            ("subject_token_type", &self.exchange.subject_token_type),
        ];
        if let Some(t) = &self.exchange.requested_token_type {
            form.push(("requested_token_type", t));
        }
        if let (Some(token), Some(t)) = (actor, &self.exchange.actor_token_type) {
            form.push(("actor_token", token));
            form.push(("actor_token_type", t));
        }
        form.extend(self.cfg.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let client = token_client::Client { id: &self.cfg.client_id, auth: &self.cfg.auth };
        let answer = match client.post_form(http, endpoint, &form).await {
            Ok(fetched) => parse_answer(fetched.status, &fetched.body, self.exchange.requested_token_type.as_deref()),
            Err(e) => Err(ExchangeError::Unavailable(e.to_string())),
        };
        let outcome = match &answer {
            Ok(_) => "ok",
            Err(ExchangeError::Refused { .. }) => "refused",
            Err(ExchangeError::Unavailable(_)) => "error",
        };
        self.metrics.requests.with_label_values(&[name, outcome]).inc();
        let now = Instant::now();
        let caller_left = until_unix(subject.expires_at());
        match answer {
            Ok(issued) => {
                let ttl = cache_for(caller_left, issued.expires_in, self.cfg.refresh_skew);
                tracing::debug!(client = name, expires_in = ?issued.expires_in, cached_for = ?ttl, "caller token exchanged");
                Ok(Outcome::Token { authorization: issued.authorization, until: now + ttl })
            }
            Err(error @ ExchangeError::Refused { .. }) => {
                tracing::info!(client = name, %error, "token exchange refused");
                Ok(Outcome::Refused { error, until: now + REFUSAL_TTL })
            }
            Err(error) => {
                tracing::warn!(client = name, %error, "token exchange failed");
                Err(error)
            }
        }
    }
}

/// The cache key of a caller token.
pub fn digest(token: &str) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// How long from now until Unix time `exp` (zero when past), to the millisecond: whole seconds
/// would let an entry outlive its caller token by up to one.
fn until_unix(exp: u64) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(exp).saturating_sub(now)
}

/// How long an exchanged token is used: until the earlier of the caller token's expiry
/// (`caller_left` from now) and its own (`expires_in`, else [`DEFAULT_LIFETIME`]), less `skew`
/// but never less than half of that (the client-credentials rule), so a token close to expiry
/// is still cached briefly instead of exchanged on every request. Never past either expiry.
pub fn cache_for(caller_left: Duration, expires_in: Option<u64>, skew: Duration) -> Duration {
    let own = expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs);
    let left = caller_left.min(own);
    left.saturating_sub(skew).max(left / 2)
}

/// A usable exchange answer.
#[derive(Debug)]
pub struct Issued {
    /// `Bearer <access_token>`.
    pub authorization: HeaderValue,
    pub expires_in: Option<u64>,
}

/// The token endpoint's answer to an exchange (RFC 8693 §2.2). A success must carry a
/// non-empty `access_token` of `token_type` Bearer (case-insensitive: it is sent as one) and
/// an `issued_token_type` equal to `requested` when one was asked for, else an access token or
/// a JWT. An OAuth error (4xx with an `error`) is a refusal, except `invalid_client`: that is
/// tollgate's own client, not the caller's token, so like a 5xx or garbage it is an outage.
pub fn parse_answer(status: StatusCode, body: &[u8], requested: Option<&str>) -> Result<Issued, ExchangeError> {
    if !status.is_success() {
        return Err(refusal(status, body));
    }
    #[derive(Deserialize)]
    struct Answer {
        access_token: Option<String>,
        token_type: Option<String>,
        issued_token_type: Option<String>,
        expires_in: Option<u64>,
    }
    let invalid = |why: String| ExchangeError::Unavailable(format!("invalid token exchange answer: {why}"));
    let a: Answer = object(body).map_err(invalid)?;
    let token = a.access_token.filter(|t| !t.is_empty()).ok_or_else(|| invalid("no access_token".into()))?;
    match a.token_type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(t) => return Err(invalid(format!("token_type {t:?} is not Bearer"))),
        None => return Err(invalid("no token_type".into())),
    }
    let issued = a.issued_token_type.ok_or_else(|| invalid("no issued_token_type".into()))?;
    let expected_ok = match requested {
        Some(r) => issued == r,
        None => issued == ACCESS_TOKEN_TYPE || issued == JWT_TOKEN_TYPE,
    };
    if !expected_ok {
        return Err(invalid(format!("issued_token_type {issued:?} was not asked for")));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid(format!("access_token of {} bytes (at most {MAX_TOKEN_BYTES})", token.len())));
    }
    let authorization = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| invalid("the access token is not valid in a header".into()))?;
    Ok(Issued { authorization, expires_in: a.expires_in })
}

fn refusal(status: StatusCode, body: &[u8]) -> ExchangeError {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
        error_description: Option<String>,
    }
    match object::<ErrorBody>(body) {
        Ok(b) if status.is_client_error() && b.error != "invalid_client" && is_error_code(&b.error) => {
            ExchangeError::Refused { error: b.error, description: b.error_description.map(|d| printable(&d)) }
        }
        Ok(b) => ExchangeError::Unavailable(format!("token endpoint answered {status}: {}", printable(&b.error))),
        Err(_) => ExchangeError::Unavailable(format!("token endpoint answered {status}")),
    }
}

/// RFC 6749 §5.2: error codes are `%x20-21 / %x23-5B / %x5D-7E`; anything else is not an
/// OAuth error this gateway repeats to callers.
fn is_error_code(e: &str) -> bool {
    !e.is_empty() && e.len() <= 64 && e.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// The `exp` of a JWT, read without verification: only used to bound a cache entry's life by
/// a token tollgate already trusts (a session's access token), never to accept one.
pub fn jwt_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(30);
    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn cached_until_the_earlier_expiry_less_the_skew() {
        // The exchanged token outlives the caller's: the caller's expiry bounds the entry.
        assert_eq!(cache_for(S(120), Some(3600), SKEW), S(90));
        // The caller's outlives the exchanged token: its own expiry does.
        assert_eq!(cache_for(S(3600), Some(120), SKEW), S(90));
        // No expires_in: five minutes assumed, still bounded by the caller.
        assert_eq!(cache_for(S(3600), None, SKEW), S(270));
        assert_eq!(cache_for(S(100), None, SKEW), S(70));
        // Close to expiry: half of what is left, never more than the earlier expiry.
        assert_eq!(cache_for(S(40), Some(3600), SKEW), S(20));
        assert_eq!(cache_for(Duration::from_millis(1500), Some(3600), SKEW), Duration::from_millis(750));
        assert_eq!(cache_for(S(3600), Some(4), SKEW), S(2));
        // Expired or instantly expiring: not cached at all.
        assert_eq!(cache_for(Duration::ZERO, Some(3600), SKEW), Duration::ZERO);
        assert_eq!(cache_for(S(3600), Some(0), SKEW), Duration::ZERO);
        for (caller, own) in [(1, 2), (2, 1), (29, 3600), (31, 3600), (3600, 31), (7, 7)] {
            let ttl = cache_for(S(caller), Some(own), SKEW);
            assert!(ttl <= S(caller.min(own)), "{caller} {own}: {ttl:?}");
        }
    }

    #[test]
    fn caller_expiry_is_counted_in_milliseconds() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let left = until_unix(now.as_secs() + 1);
        assert!(left <= S(1) && left > Duration::ZERO, "{left:?}");
        assert_eq!(until_unix(now.as_secs().saturating_sub(5)), Duration::ZERO);
    }

    fn ok(body: &str) -> Result<Issued, ExchangeError> {
        parse_answer(StatusCode::OK, body.as_bytes(), None)
    }

    fn unavailable(r: Result<Issued, ExchangeError>, why: &str) {
        match r {
            Err(ExchangeError::Unavailable(e)) => assert!(e.contains(why), "{e:?} should say {why:?}"),
            other => panic!("expected an outage ({why}), got {other:?}"),
        }
    }

    #[test]
    fn a_usable_answer() {
        let a = ok(r#"{"access_token":"abc.def.ghi","token_type":"Bearer","expires_in":60,
            "issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#)
        .unwrap();
        assert_eq!(a.authorization, "Bearer abc.def.ghi");
        assert_eq!(a.expires_in, Some(60));
        let jwt = ok(
            r#"{"access_token":"t","token_type":"bearer","issued_token_type":"urn:ietf:params:oauth:token-type:jwt"}"#,
        )
        .unwrap();
        assert_eq!((jwt.authorization.to_str().unwrap(), jwt.expires_in), ("Bearer t", None));
        let asked = r#"{"access_token":"t","token_type":"Bearer","issued_token_type":"urn:example:t"}"#;
        assert!(parse_answer(StatusCode::OK, asked.as_bytes(), Some("urn:example:t")).is_ok());
    }

    #[test]
    fn bad_answers_are_outages_never_tokens() {
        let ty = r#""issued_token_type":"urn:ietf:params:oauth:token-type:access_token""#;
        unavailable(ok(&format!(r#"{{"token_type":"Bearer",{ty}}}"#)), "no access_token");
        unavailable(ok(&format!(r#"{{"access_token":"","token_type":"Bearer",{ty}}}"#)), "no access_token");
        unavailable(ok(&format!(r#"{{"access_token":"t",{ty}}}"#)), "no token_type");
        unavailable(ok(&format!(r#"{{"access_token":"t","token_type":"N_A",{ty}}}"#)), "is not Bearer");
        unavailable(ok(&format!(r#"{{"access_token":"t","token_type":"DPoP",{ty}}}"#)), "is not Bearer");
        unavailable(ok(r#"{"access_token":"t","token_type":"Bearer"}"#), "no issued_token_type");
        let id_token = r#"{"access_token":"t","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:id_token"}"#;
        unavailable(ok(id_token), "was not asked for");
        let other = format!(r#"{{"access_token":"t","token_type":"Bearer",{ty}}}"#);
        unavailable(parse_answer(StatusCode::OK, other.as_bytes(), Some("urn:example:t")), "was not asked for");
        unavailable(ok("<html>gateway error</html>"), "invalid token exchange answer");
        unavailable(ok(""), "invalid token exchange answer");
        unavailable(ok("[]"), "invalid token exchange answer");
        let array = r#"["t","Bearer","urn:ietf:params:oauth:token-type:access_token",60]"#;
        unavailable(ok(array), "not a JSON object");
        unavailable(ok(&format!(r#"{{"access_token":"t","token_type":"Bearer","expires_in":-1,{ty}}}"#)), "invalid");
        unavailable(ok(&format!(r#"{{"access_token":"a\nb","token_type":"Bearer",{ty}}}"#)), "not valid in a header");
        let huge = "x".repeat(MAX_TOKEN_BYTES + 1);
        unavailable(ok(&format!(r#"{{"access_token":"{huge}","token_type":"Bearer",{ty}}}"#)), "bytes (at most");
    }

    #[test]
    fn oauth_errors_are_refusals_other_failures_outages() {
        let refused = |status: u16, body: &str| match parse_answer(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            None,
        ) {
            Err(ExchangeError::Refused { error, description }) => Some((error, description)),
            _ => None,
        };
        assert_eq!(
            refused(400, r#"{"error":"invalid_target","error_description":"audience not allowed"}"#),
            Some(("invalid_target".into(), Some("audience not allowed".into())))
        );
        assert_eq!(refused(400, r#"{"error":"invalid_grant"}"#), Some(("invalid_grant".into(), None)));
        assert_eq!(refused(403, r#"{"error":"unauthorized_client"}"#).map(|r| r.0), Some("unauthorized_client".into()));
        let long = format!(r#"{{"error":"invalid_grant","error_description":"a\u0007{}"}}"#, "b".repeat(500));
        let (_, d) = refused(400, &long).unwrap();
        let d = d.unwrap();
        assert!(d.chars().count() == MAX_DESCRIPTION && !d.chars().any(char::is_control), "{d:?}");
        // tollgate's own client, the provider failing, or no OAuth error: outages.
        assert_eq!(refused(401, r#"{"error":"invalid_client"}"#), None);
        assert_eq!(refused(500, r#"{"error":"server_error"}"#), None);
        assert_eq!(refused(503, "Service Unavailable"), None);
        assert_eq!(refused(404, "<html>not found</html>"), None);
        assert_eq!(refused(400, r#"{"error":"has \"quotes\""}"#), None);
        assert_eq!(refused(400, r#"["invalid_grant","by position"]"#), None, "not an object");
        unavailable(parse_answer(StatusCode::BAD_GATEWAY, b"", None), "502");
    }

    #[test]
    fn jwt_expiry_is_read_from_the_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"sub":"u","exp":1700000000}"#);
        assert_eq!(jwt_exp(&format!("h.{payload}.s")), Some(1_700_000_000));
        assert_eq!(jwt_exp("opaque-token"), None);
        assert_eq!(jwt_exp("a.!!.c"), None);
    }

    #[test]
    fn digests_differ_per_token() {
        assert_eq!(digest("a"), digest("a"));
        assert_ne!(digest("a"), digest("b"));
    }
}
