//! Refresh: a session's access token renewed with its refresh token before it expires, once
//! per session however many requests (and, with Redis, replicas) notice at the same time.

use std::time::Duration;

use super::LoginService;
use crate::auth::id_token::{self, Expect};
use crate::auth::{unix_now, AuthError};
use crate::session::{Session, SessionError, Write};

/// How long a replica waits for another one's refresh of the same session (Redis store).
const REFRESH_WAIT: Duration = Duration::from_secs(10);

/// What a refresh came to.
pub(super) enum Refreshed {
    Fresh(Session),
    /// The provider refused (the grant is spent, revoked or expired): sign in again.
    Ended,
    /// The provider could not be reached or failed: try again later.
    Unavailable,
}

impl LoginService {
    /// Whether the access token is due for a refresh at `now`.
    pub(super) fn refresh_due(&self, s: &Session, now: u64) -> bool {
        s.refresh_token.is_some() && s.access_exp <= now + self.refresh_window(s)
    }

    /// Whether to slide the idle timeout at `now`: the cookie is rewritten at most every tenth
    /// of it.
    pub(super) fn touch_due(&self, s: &Session, now: u64) -> bool {
        now.saturating_sub(s.seen) > self.touch_every()
    }

    fn touch_every(&self) -> u64 {
        (self.cfg.idle_timeout.as_secs() / 10).max(1)
    }

    /// The first second at which `session_at` would not accept `s` as it is: it has expired,
    /// its token is due for refresh, or its idle timeout is due to slide (a new cookie).
    /// Before then a cached answer is the same answer.
    pub(super) fn fresh_until(&self, s: &Session) -> u64 {
        let touch = s.seen.saturating_add(self.touch_every()).saturating_add(1);
        let mut until = self.sessions.live_until(s).min(touch);
        if s.refresh_token.is_some() {
            until = until.min(s.access_exp.saturating_sub(self.refresh_window(s)));
        }
        until
    }

    /// How long before expiry to refresh: `refresh_before`, but at most half the token's
    /// lifetime, so a short-lived token is not refreshed on every request.
    pub(super) fn refresh_window(&self, s: &Session) -> u64 {
        let configured = self.cfg.refresh_before.as_secs();
        match s.access_exp.checked_sub(s.access_issued) {
            Some(lifetime) if s.access_issued > 0 => configured.min(lifetime / 2),
            _ => configured,
        }
    }

    /// One refresh per session and refresh token, however many requests ask at once. Fresh and
    /// ended outcomes are remembered briefly (late requests with the old cookie reuse them);
    /// an unavailable provider is not, so the next request tries again.
    pub(super) async fn refresh(&self, session: &Session) -> Refreshed {
        let Some(token) = session.refresh_token.clone() else { return Refreshed::Ended };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let key = format!("{}:{}", session.id, crate::util::hex(&digest.as_ref()[..12]));
        let outcome = self
            .refreshes
            .try_get_with(key, async {
                match self.refresh_once(session.clone(), token).await {
                    Refreshed::Fresh(s) => Ok(Some(s)),
                    Refreshed::Ended => Ok(None),
                    Refreshed::Unavailable => Err(()),
                }
            })
            .await;
        match outcome {
            Ok(Some(s)) => Refreshed::Fresh(s),
            Ok(None) => Refreshed::Ended,
            Err(_) => Refreshed::Unavailable,
        }
    }

    /// With a store the replicas share (Redis), one replica refreshes and stores the result while
    /// the others wait for it: a rotated refresh token can be spent only once, and spending it
    /// twice makes the provider refuse (and may make it revoke the whole grant).
    async fn refresh_once(&self, session: Session, token: String) -> Refreshed {
        if !self.sessions.is_shared() {
            return self.do_refresh(session, token).await;
        }
        let changed = |stored: &Session| {
            stored.refresh_token != session.refresh_token || stored.access_token != session.access_token
        };
        let store_failed = |e: SessionError| {
            tracing::warn!(error = %e, "session store failed during refresh");
            Refreshed::Unavailable
        };
        let deadline = tokio::time::Instant::now() + REFRESH_WAIT;
        loop {
            match self.sessions.lock_refresh(&session.id, REFRESH_WAIT).await {
                Ok(true) => {
                    // Another replica may have finished between our load and the lock.
                    let result = match self.sessions.load_id(&session.id).await {
                        Ok(Some(stored)) if changed(&stored) => Refreshed::Fresh(stored),
                        Ok(Some(_)) => match self.do_refresh(session.clone(), token.clone()).await {
                            Refreshed::Fresh(fresh) => match self.sessions.store(&fresh, Write::Update).await {
                                Ok(()) => Refreshed::Fresh(fresh),
                                Err(SessionError::Gone) => Refreshed::Ended,
                                Err(e) => store_failed(e),
                            },
                            other => other,
                        },
                        Ok(None) => Refreshed::Ended,
                        Err(e) => store_failed(e),
                    };
                    if let Err(e) = self.sessions.unlock_refresh(&session.id).await {
                        tracing::warn!(error = %e, "releasing the refresh lock failed; it expires by itself");
                    }
                    return result;
                }
                Ok(false) => {}
                Err(e) => return store_failed(e),
            }
            // Another replica holds the lock: wait for the session it stores.
            tokio::time::sleep(Duration::from_millis(50)).await;
            match self.sessions.load_id(&session.id).await {
                Ok(Some(stored)) if changed(&stored) => return Refreshed::Fresh(stored),
                Ok(Some(_)) if tokio::time::Instant::now() < deadline => {}
                Ok(Some(_)) => return Refreshed::Unavailable,
                Ok(None) => return Refreshed::Ended,
                Err(e) => return store_failed(e),
            }
        }
    }

    async fn do_refresh(&self, mut session: Session, token: String) -> Refreshed {
        // No `scope`: RFC 6749 §6 then means "as originally granted". Asking for the configured
        // scopes again fails (invalid_scope) whenever the provider granted fewer of them, e.g.
        // `offline_access` without a consent prompt, and would end every session at its first
        // refresh.
        let tokens = match self.token_request(&[("grant_type", "refresh_token"), ("refresh_token", &token)]).await {
            Ok(t) => t,
            Err(e) if e.is_outage() => {
                tracing::warn!(reason = %e.describe(), "refresh failed: the provider is unavailable");
                return Refreshed::Unavailable;
            }
            Err(e) => {
                tracing::info!(reason = %e.describe(), "refresh refused; the session ends");
                return Refreshed::Ended;
            }
        };
        if let Some(id_token) = &tokens.id_token {
            let expect = Expect { issuer: &self.issuer, client_id: &self.cfg.client_id, nonce: None, logout: false };
            match id_token::validate(&self.auth, id_token, &expect, unix_now()).await {
                Ok(claims) if claims.get("sub") == session.claims.get("sub") => {
                    session.claims = claims;
                    session.id_token = id_token.clone();
                }
                Err(AuthError::Unavailable(_)) => return Refreshed::Unavailable,
                Ok(_) | Err(_) => {
                    tracing::warn!("the refreshed ID token was not valid for this session; the session ends");
                    return Refreshed::Ended;
                }
            }
        }
        let now = unix_now();
        session.access_issued = now;
        session.access_exp = now + tokens.expires_in.unwrap_or(300);
        session.access_token = tokens.access_token;
        if tokens.refresh_token.is_some() {
            session.refresh_token = tokens.refresh_token;
        }
        Refreshed::Fresh(session)
    }
}
