//! Browser sessions: what tollgate remembers about a signed-in user, kept either in sealed
//! cookies (nothing shared between replicas) or in Redis (revocable: back-channel logout).
//! Each login has its own [`Sessions`]: its cookie name and path, its keys (bound to its name)
//! and its Redis keys, so no login ever opens, finds or removes another's sessions.
//!
//! Its own module, not part of `login/`: the store and the sealing know nothing of OIDC, and
//! the login flow, refresh and endpoints all use them through [`Sessions`] alone.

pub mod cache;
pub mod cookie;
pub mod sealer;

use std::borrow::Cow;
use std::time::Duration;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::issuer::IssuerId;
use crate::auth::Principal;
use crate::config::{Login, SessionStore};
use crate::store::metrics::RedisMetrics;
use crate::store::redis::{Redis, RedisError};
use crate::util::unix_now;
use cookie::Attributes;
pub use sealer::Sealer;

/// One signed-in browser.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Session {
    /// Random, 256 bits; with Redis it is the cookie's value.
    pub id: String,
    /// The ID token's claims (merged with userinfo when configured).
    pub claims: Value,
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// When the access token expires (Unix seconds).
    pub access_exp: u64,
    /// When the access token was issued (0 in sessions sealed before this field existed).
    #[serde(default)]
    pub access_issued: u64,
    pub created: u64,
    pub seen: u64,
}

/// Tokens stay out of logs and panics.
impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sub", &self.claims.get("sub"))
            .field("access_exp", &self.access_exp)
            .field("created", &self.created)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn principal(&self, issuer: IssuerId, lifetime: Duration) -> Option<Principal> {
        Principal::from_claims(issuer, self.claims.clone(), self.created + lifetime.as_secs())
    }

    /// The principal, taking the claims instead of copying them (the session is done with).
    pub fn into_principal(self, issuer: IssuerId, lifetime: Duration) -> Option<Principal> {
        Principal::from_claims(issuer, self.claims, self.created + lifetime.as_secs())
    }
}

/// A request's session before it is opened: the cookie's value (cookie store), or the value
/// stored under the cookie's id (Redis), fetched on every request so removal takes effect.
pub enum Sealed<'h> {
    Cookie(Cow<'h, [u8]>),
    Stored { id: Cow<'h, str>, sealed: Vec<u8> },
}

impl Sealed<'_> {
    /// The sealed bytes: authenticated, so equal bytes are the same session.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Sealed::Cookie(v) => v,
            Sealed::Stored { sealed, .. } => sealed,
        }
    }

    /// The session id the cookie names (Redis store).
    pub fn id(&self) -> Option<&str> {
        match self {
            Sealed::Cookie(_) => None,
            Sealed::Stored { id, .. } => Some(id),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("sealing the session failed")]
    Seal,
    /// The sealed session is longer than the cookies can carry (16 chunks of 3,800 bytes).
    #[error("the session is too large for cookies; use session_store = \"redis\"")]
    TooLarge,
    /// The session was removed (sign-out, back-channel logout) while this request used it.
    #[error("the session has ended")]
    Gone,
}

/// Whether a write creates a session or updates one that must still exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    New,
    Update,
}

enum Backend {
    Cookie,
    Redis(Box<Redis>),
}

/// Loads and saves sessions for one `[login]`.
pub struct Sessions {
    pub sealer: Sealer,
    backend: Backend,
    cookie_name: String,
    cookie_path: String,
    secure: bool,
    /// Where this login's keys start in Redis.
    keys: RedisKeys,
    lifetime: Duration,
    idle: Duration,
}

#[doc(hidden)] // pub for the fuzz targets, which seal sessions
pub const SESSION_PURPOSE: &str = "tollgate session";

/// Key prefixes in Redis: `tollgate:session:`, `tollgate:sid:`, … for the `default` login (as
/// single-login releases wrote them), `tollgate:login:NAME:session:`, … for the others.
struct RedisKeys {
    session: String,
    sid: String,
    sub: String,
    refresh: String,
    logout_jti: String,
}

impl RedisKeys {
    fn new(login: &str) -> RedisKeys {
        let base = match login {
            sealer::DEFAULT_LOGIN => "tollgate:".to_string(),
            name => format!("tollgate:login:{name}:"),
        };
        RedisKeys {
            session: format!("{base}session:"),
            sid: format!("{base}sid:"),
            sub: format!("{base}sub:"),
            refresh: format!("{base}refresh:"),
            logout_jti: format!("{base}logout-jti:"),
        }
    }
}

impl Sessions {
    pub fn new(cfg: &Login) -> Result<Sessions, RedisError> {
        Sessions::with_metrics(cfg, None)
    }

    /// [`Sessions::new`], the Redis store counting into `metrics` (labelled with the login).
    pub fn with_metrics(cfg: &Login, metrics: Option<&RedisMetrics>) -> Result<Sessions, RedisError> {
        let backend = match &cfg.store {
            SessionStore::Cookie => Backend::Cookie,
            SessionStore::Redis(store) => {
                let ca = store.ca_file.as_ref().map(|(_, pem)| pem.as_slice());
                let metrics = metrics.map(|m| m.for_login(&cfg.name));
                Backend::Redis(Box::new(Redis::new(store.url.expose(), ca, metrics)?))
            }
        };
        Ok(Sessions {
            sealer: Sealer::new(&cfg.cookie_secrets, &cfg.name),
            backend,
            cookie_name: cfg.cookie_name.clone(),
            cookie_path: cfg.cookie_path().to_string(),
            secure: cfg.secure,
            keys: RedisKeys::new(&cfg.name),
            lifetime: cfg.lifetime,
            idle: cfg.idle_timeout,
        })
    }

    pub fn attrs(&self) -> Attributes<'_> {
        Attributes { secure: self.secure, path: &self.cookie_path }
    }

    /// A fresh random id (never one the browser brought).
    pub fn new_id() -> String {
        random_token()
    }

    /// The request's session, if it has a valid, unexpired one. Anything that does not open
    /// (tampered, old key removed, unknown id) is simply no session.
    pub async fn load(&self, headers: &HeaderMap) -> Result<Option<Session>, SessionError> {
        Ok(self.load_sealed(headers).await?.and_then(|s| self.open_sealed(&s, unix_now())))
    }

    /// The request's session still sealed: the cookie's value, or with Redis the value stored
    /// under the cookie's id (`None` when there is none).
    pub async fn load_sealed<'h>(&self, headers: &'h HeaderMap) -> Result<Option<Sealed<'h>>, SessionError> {
        let Some(value) = cookie::read(headers, &self.cookie_name) else { return Ok(None) };
        match &self.backend {
            Backend::Cookie => Ok(Some(Sealed::Cookie(value))),
            Backend::Redis(redis) => {
                let value = match value {
                    Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
                    Cow::Owned(b) => String::from_utf8(b).ok().map(Cow::Owned),
                };
                let Some(value) = value.filter(|v| is_id(v)) else { return Ok(None) };
                // Boxed: the Redis call's state would otherwise sit in every session request's
                // future (a network round trip dwarfs the allocation).
                let stored = Box::pin(redis.get(&self.redis_key(&value))).await?;
                Ok(stored.map(|sealed| Sealed::Stored { id: value, sealed }))
            }
        }
    }

    /// Opens what [`Sessions::load_sealed`] found: `None` unless it is ours, for this id, and
    /// live at `now`.
    pub fn open_sealed(&self, sealed: &Sealed<'_>, now: u64) -> Option<Session> {
        self.open(sealed.bytes(), sealed.id(), now)
    }

    /// The stored session with this id (Redis store; the cookie store has none).
    pub async fn load_id(&self, id: &str) -> Result<Option<Session>, SessionError> {
        let Backend::Redis(redis) = &self.backend else { return Ok(None) };
        if !is_id(id) {
            return Ok(None);
        }
        Ok(redis.get(&self.redis_key(id)).await?.and_then(|sealed| self.open(&sealed, Some(id), unix_now())))
    }

    fn open(&self, sealed: &[u8], id: Option<&str>, now: u64) -> Option<Session> {
        let plain = std::str::from_utf8(sealed).ok().and_then(|s| self.sealer.open(SESSION_PURPOSE, s))?;
        let session = serde_json::from_slice::<Session>(&plain).ok()?;
        if id.is_some_and(|id| session.id != id) {
            return None;
        }
        (now < self.live_until(&session)).then_some(session)
    }

    /// When (Unix seconds) the session ends: its lifetime is over or it was idle too long.
    pub fn live_until(&self, s: &Session) -> u64 {
        let end_of_life = s.created.saturating_add(self.lifetime.as_secs());
        end_of_life.min(s.seen.saturating_add(self.idle.as_secs()))
    }

    /// True when sessions live in a store every replica shares (Redis).
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// Takes the shared store's refresh lock for session `id` (true when taken). Replicas must
    /// not spend one rotated refresh token twice: the provider would refuse the second use and
    /// may revoke the whole grant. Without a shared store there is nothing to lock.
    pub async fn lock_refresh(&self, id: &str, ttl: Duration) -> Result<bool, SessionError> {
        match &self.backend {
            Backend::Cookie => Ok(true),
            Backend::Redis(redis) => Ok(redis.lock(&self.refresh_lock_key(id), ttl).await?),
        }
    }

    pub async fn unlock_refresh(&self, id: &str) -> Result<(), SessionError> {
        match &self.backend {
            Backend::Cookie => Ok(()),
            Backend::Redis(redis) => Ok(redis.unlock(&self.refresh_lock_key(id)).await?),
        }
    }

    /// Records the first use of back-channel logout token `jti` in the shared store for `ttl`:
    /// true the first time on any replica, false for a replay. `None` without a shared store
    /// (each process remembers its own). Not retried after a lost reply (a retry would see its
    /// own mark and call the first use a replay).
    pub async fn first_logout_use(&self, jti: &str, ttl: Duration) -> Result<Option<bool>, SessionError> {
        let Backend::Redis(redis) = &self.backend else { return Ok(None) };
        let key = format!("{}{}", self.keys.logout_jti, id_hash(jti));
        Ok(Some(redis.lock(&key, ttl).await?))
    }

    /// Forgets a use recorded by [`Sessions::first_logout_use`] (the logout failed, so the
    /// provider's retry with the same token must be accepted).
    pub async fn forget_logout_use(&self, jti: &str) -> Result<(), SessionError> {
        let Backend::Redis(redis) = &self.backend else { return Ok(()) };
        Ok(redis.unlock(&format!("{}{}", self.keys.logout_jti, id_hash(jti))).await?)
    }

    /// Writes `session` to the shared store (no cookies; nothing to do for the cookie store).
    /// An update never brings back a session that was removed meanwhile.
    pub async fn store(&self, session: &Session, write: Write) -> Result<(), SessionError> {
        let Backend::Redis(redis) = &self.backend else { return Ok(()) };
        let json = serde_json::to_vec(session).map_err(|_| SessionError::Seal)?;
        let sealed = self.sealer.seal(SESSION_PURPOSE, &json).ok_or(SessionError::Seal)?;
        let remaining = Duration::from_secs((session.created + self.lifetime.as_secs()).saturating_sub(unix_now()));
        let key = self.redis_key(&session.id);
        match write {
            Write::New => redis.set_ex(&key, sealed.as_bytes(), remaining.min(self.idle)).await?,
            Write::Update => {
                if !redis.replace_ex(&key, sealed.as_bytes(), remaining.min(self.idle)).await? {
                    return Err(SessionError::Gone);
                }
            }
        }
        for index in self.logout_indexes(session) {
            redis.sadd_ex(&index, &key, remaining).await?;
        }
        Ok(())
    }

    /// Stores `session` and writes its cookie(s) into `out`, clearing stale chunks.
    pub async fn save(
        &self,
        session: &Session,
        write: Write,
        req: &HeaderMap,
        out: &mut HeaderMap,
    ) -> Result<(), SessionError> {
        let remaining = Duration::from_secs((session.created + self.lifetime.as_secs()).saturating_sub(unix_now()));
        let present = cookie::present(req, &self.cookie_name);
        match &self.backend {
            Backend::Cookie => {
                let json = serde_json::to_vec(session).map_err(|_| SessionError::Seal)?;
                let sealed = self.sealer.seal(SESSION_PURPOSE, &json).ok_or(SessionError::Seal)?;
                if !cookie::write(out, &self.cookie_name, &sealed, remaining, self.attrs(), &present) {
                    return Err(SessionError::TooLarge);
                }
            }
            Backend::Redis(_) => {
                self.store(session, write).await?;
                // An id is 43 characters: it always fits.
                let _ = cookie::write(out, &self.cookie_name, &session.id, remaining, self.attrs(), &present);
            }
        }
        Ok(())
    }

    /// Ends the session: removed from the store, and every cookie chunk cleared.
    pub async fn remove(
        &self,
        session: Option<&Session>,
        req: &HeaderMap,
        out: &mut HeaderMap,
    ) -> Result<(), SessionError> {
        if let (Backend::Redis(redis), Some(s)) = (&self.backend, session) {
            redis.del(&[&self.redis_key(&s.id)]).await?;
        }
        cookie::clear(out, &cookie::present(req, &self.cookie_name), self.attrs());
        Ok(())
    }

    /// Back-channel logout: removes the sessions of `sid` (the provider's session id) or of
    /// `sub`. Returns how many were removed; only the Redis store can do this.
    pub async fn remove_by_logout(&self, sub: Option<&str>, sid: Option<&str>) -> Result<Option<usize>, SessionError> {
        let Backend::Redis(redis) = &self.backend else { return Ok(None) };
        let index = match (sid, sub) {
            (Some(sid), _) => format!("{}{sid}", self.keys.sid),
            (None, Some(sub)) => format!("{}{sub}", self.keys.sub),
            (None, None) => return Ok(Some(0)),
        };
        let keys = redis.smembers(&index).await?;
        let mut all: Vec<&str> = keys.iter().map(String::as_str).collect();
        all.push(&index);
        redis.del(&all).await?;
        Ok(Some(keys.len()))
    }

    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    fn logout_indexes(&self, s: &Session) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(sid) = s.claims.get("sid").and_then(Value::as_str) {
            out.push(format!("{}{sid}", self.keys.sid));
        }
        if let Some(sub) = s.claims.get("sub").and_then(Value::as_str) {
            out.push(format!("{}{sub}", self.keys.sub));
        }
        out
    }

    /// Redis keys are a hash of the cookie value, so reading Redis does not yield usable cookies.
    fn redis_key(&self, id: &str) -> String {
        format!("{}{}", self.keys.session, id_hash(id))
    }

    fn refresh_lock_key(&self, id: &str) -> String {
        format!("{}{}", self.keys.refresh, id_hash(id))
    }
}

/// What `random_token` makes: 43 base64url characters.
fn is_id(id: &str) -> bool {
    id.len() == 43 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn id_hash(id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    crate::util::hex(digest.as_ref())
}

/// 256 random bits, base64url (43 characters).
pub fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    // Failure of the system RNG is not recoverable; an all-zero id would be guessable, so
    // make it unusable instead (it cannot match the 43-character check on load).
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return String::new();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_tokens() {
        let s = Session {
            id: "session-id-secret".into(),
            claims: serde_json::json!({"sub": "ann"}),
            id_token: "id.token.secret".into(),
            access_token: "access-secret".into(),
            refresh_token: Some("refresh-secret".into()),
            access_exp: 1,
            access_issued: 0,
            created: 0,
            seen: 0,
        };
        let shown = format!("{s:?}");
        assert!(shown.contains("ann"), "{shown}");
        for secret in ["session-id-secret", "id.token.secret", "access-secret", "refresh-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
