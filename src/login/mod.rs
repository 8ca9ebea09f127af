//! Browser login: one [`LoginService`] per `[login]` / `[[login]]` (its client, issuer,
//! `public_url`, cookies and session store), and [`Logins`], the set of them that the gateway
//! dispatches `/oauth2/*` to by host and path prefix and that routes name theirs in.
//!
//! By job: [`flow`] (start and callback: authorization code with PKCE S256), [`refresh`] (the
//! session's access token renewed without the user), [`endpoints`] (`start`, `callback`,
//! `sign_out`, `userinfo`, `backchannel_logout` under `{public_url path}/oauth2/`; `auth`,
//! forward-auth, is `gateway::forward_auth`), [`redirect`] (where a browser may be sent) and
//! [`render`] (pages). Sessions, their cookies and their sealing are [`crate::session`].

mod endpoints;
mod flow;
pub mod redirect;
mod refresh;
pub mod render;
mod set;

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderMap;

use crate::auth::issuer::IssuerState;
use crate::auth::{unix_now, AuthError, Authenticator, Principal};
use crate::config::Login;
use crate::session::cache::{Opened, OpenedCache};
use crate::session::{SessionError, Sessions, Write};
use crate::store::metrics::RedisMetrics;
use refresh::Refreshed;
pub use render::{escape, is_browser, page, redirect};
pub use set::{Logins, LoginsError, SetupError};

/// A signed-in caller, the session's access token, and cookies to set on the response (after
/// a refresh or to slide the idle timeout).
pub struct SessionCaller {
    pub principal: Arc<Principal>,
    pub access_token: Arc<str>,
    pub set_cookie: HeaderMap,
}

/// One login: its settings, its sessions and what it remembers between requests.
pub struct LoginService {
    cfg: Login,
    /// The issuer it signs in with, resolved when the snapshot was built.
    issuer: Arc<IssuerState>,
    auth: Arc<Authenticator>,
    sessions: Sessions,
    /// Refreshes in flight or just done, keyed by session id and refresh token, so a rotated
    /// refresh token is spent once however many requests arrive together.
    refreshes: moka::future::Cache<String, Option<crate::session::Session>>,
    /// Back-channel logout token ids already used (replay protection).
    logout_jtis: moka::sync::Cache<String, ()>,
    /// Sessions this worker thread opened recently (see [`OpenedCache`]).
    opened: OpenedCache,
}

impl LoginService {
    /// The service for one validated login of the configuration `auth` was built from; fails
    /// only when its session store cannot be set up (or, never after validation, its issuer
    /// is not one of `auth`'s).
    pub fn new(
        cfg: Login,
        auth: Arc<Authenticator>,
        redis_metrics: Option<&RedisMetrics>,
    ) -> Result<LoginService, SetupError> {
        let issuer = auth.configured_issuer(cfg.issuer).cloned().ok_or(SetupError::NoIssuer)?;
        let sessions = Sessions::with_metrics(&cfg, redis_metrics)?;
        Ok(LoginService {
            sessions,
            issuer,
            auth,
            refreshes: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            logout_jtis: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            opened: OpenedCache::new(),
            cfg,
        })
    }

    pub fn config(&self) -> &Login {
        &self.cfg
    }

    /// The name routes know it by.
    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// The request's session, refreshed when its access token is about to expire. `Ok(None)`
    /// when there is none, or it ended (the refresh failed).
    pub async fn session(&self, headers: &HeaderMap) -> Result<Option<SessionCaller>, AuthError> {
        self.session_at(headers, unix_now()).await
    }

    /// [`LoginService::session`] at `now`. A session this thread opened before from the same
    /// sealed bytes is answered from [`OpenedCache`] until [`LoginService::fresh_until`]: up to
    /// then this path would accept it unchanged (no refresh, no new cookie). With Redis the
    /// stored value is still fetched first, so a removed session is never answered.
    pub(crate) async fn session_at(&self, headers: &HeaderMap, now: u64) -> Result<Option<SessionCaller>, AuthError> {
        let sealed = self.sessions.load_sealed(headers).await.map_err(store_unavailable)?;
        let Some(sealed) = sealed else { return Ok(None) };
        if let Some((principal, access_token)) = self.opened.get(sealed.bytes(), sealed.id(), now) {
            return Ok(Some(SessionCaller { principal, access_token, set_cookie: HeaderMap::new() }));
        }
        let Some(mut session) = self.sessions.open_sealed(&sealed, now) else { return Ok(None) };
        let mut changed = false;
        if self.refresh_due(&session, now) {
            // Boxed: the refresh's state (token request, ID token check, Redis lock) is tens of
            // kilobytes, and would otherwise be part of this future, copied on every request.
            match Box::pin(self.refresh(&session)).await {
                Refreshed::Fresh(fresh) => {
                    session = fresh;
                    changed = true;
                }
                Refreshed::Ended => return Ok(None),
                // The provider is down: a token that is still valid keeps the session going
                // (the next request tries again); an expired one cannot be vouched for.
                Refreshed::Unavailable if session.access_exp > now => {}
                Refreshed::Unavailable => {
                    return Err(AuthError::Unavailable("the identity provider cannot refresh the session"))
                }
            }
        }
        if self.touch_due(&session, now) {
            session.seen = now;
            changed = true;
        }
        let mut set_cookie = HeaderMap::new();
        if changed {
            match Box::pin(self.sessions.save(&session, Write::Update, headers, &mut set_cookie)).await {
                Ok(()) => {}
                Err(SessionError::Gone) => return Ok(None),
                Err(e) => return Err(store_unavailable(e)),
            }
        }
        // A changed session has new sealed bytes: the old ones are not cached for it.
        let fresh_until = if changed { 0 } else { self.fresh_until(&session) };
        let (id, access_token) =
            (std::mem::take(&mut session.id), Arc::<str>::from(std::mem::take(&mut session.access_token)));
        let principal = session
            .into_principal(self.issuer.id, self.cfg.lifetime)
            .ok_or(AuthError::Forbidden("session without subject"))?;
        let principal = Arc::new(principal);
        if now < fresh_until {
            let entry = Opened { principal: principal.clone(), access_token: access_token.clone(), id, fresh_until };
            self.opened.insert(sealed.bytes(), entry, now);
        }
        Ok(Some(SessionCaller { principal, access_token, set_cookie }))
    }

    /// Removes the gateway's own cookies from a request going upstream: the app never sees
    /// the session.
    pub fn strip_cookies(&self, headers: &mut HeaderMap) {
        crate::util::strip_cookies(headers, |n| self.owns_cookie(n));
    }

    /// Whether a cookie of this name is one of this login's (session, chunk or flow cookie).
    pub fn owns_cookie(&self, name: &str) -> bool {
        is_own_cookie(self.sessions.cookie_name(), name)
    }
}

/// The session cookie `base`, its chunks `base_N` and flow cookies `base_flow_HEX`; not an
/// application's cookie that merely starts the same way (`sessionid` next to `session`).
fn is_own_cookie(base: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(base) else { return false };
    if rest.is_empty() {
        return true;
    }
    let Some(rest) = rest.strip_prefix('_') else { return false };
    (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())) || is_flow_cookie(base, name)
}

/// A flow cookie's name: `base_flow_HEX`.
pub(super) fn is_flow_cookie(base: &str, name: &str) -> bool {
    name.strip_prefix(base)
        .and_then(|r| r.strip_prefix("_flow_"))
        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn store_unavailable(e: SessionError) -> AuthError {
    tracing::warn!(error = %e, "session store failed");
    AuthError::Unavailable("the session store is unavailable")
}

pub(super) fn describe(e: &AuthError) -> String {
    match e {
        AuthError::InvalidToken(why) => why.description(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Set-up that fails should stop the test loudly.
    #[allow(clippy::unwrap_used)]
    mod cached_sessions {
        use super::super::*;
        use crate::config::Config;
        use crate::session::cache::OpenedCache;
        use crate::session::Session;
        use http::header::{HeaderValue, COOKIE, SET_COOKIE};
        use serde_json::json;

        const T0: u64 = 1_900_000_000;

        fn service(login_lines: &str) -> Arc<LoginService> {
            let text = format!(
                "[[issuer]]\nname = \"idp\"\nurl = \"http://127.0.0.1:1\"\naudiences = [\"api\"]\n\n\
                 [login]\nclient_id = \"web\"\nclient_secret = \"web-secret\"\n\
                 public_url = \"http://127.0.0.1:8080\"\n\
                 cookie_secret = \"unit-test-cookie-secret-of-32-bytes-or-more\"\n{login_lines}\n\
                 [[route]]\nname = \"app\"\nauth = \"login\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n"
            );
            let config = Config::from_str(&text, std::path::Path::new("t.toml"), &|_| None).unwrap();
            let metrics = crate::auth::AuthMetrics::new(&prometheus::Registry::new()).unwrap();
            let tls = crate::tls::client_config(&config.upstream).unwrap();
            let client = crate::oidc::http::IdpClient::new(tls, Duration::from_secs(1));
            let auth = Authenticator::new(&config, client, metrics);
            Arc::new(LoginService::new(config.logins[0].clone(), auth, None).unwrap())
        }

        fn session(refresh: bool, access_exp: u64) -> Session {
            Session {
                id: Sessions::new_id(),
                claims: json!({"sub": "ann", "email": "ann@example.com", "groups": ["staff"]}),
                id_token: "id-token".into(),
                access_token: "access-token".into(),
                refresh_token: refresh.then(|| "refresh-token".to_string()),
                access_exp,
                access_issued: T0,
                created: T0,
                seen: T0,
            }
        }

        /// The request headers of a browser holding `s` as the cookie store seals it.
        fn cookie_for(login: &LoginService, s: &Session) -> HeaderMap {
            let mut set = HeaderMap::new();
            run(login.sessions.save(s, Write::New, &HeaderMap::new(), &mut set)).unwrap();
            let jar: Vec<&str> =
                set.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().split(';').next().unwrap()).collect();
            let mut h = HeaderMap::new();
            h.insert(COOKIE, HeaderValue::from_str(&format!("a=1; {}; b=2", jar.join("; "))).unwrap());
            h
        }

        /// Everything here runs on the test's thread, where its cache lives.
        fn run<F: std::future::Future>(f: F) -> F::Output {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
        }

        fn at(login: &LoginService, h: &HeaderMap, now: u64) -> Option<SessionCaller> {
            run(login.session_at(h, now)).unwrap()
        }

        #[test]
        fn fresh_until_is_exactly_where_the_uncached_path_would_act() {
            let login =
                service("session_idle_timeout = \"1000s\"\nsession_lifetime = \"5000s\"\nrefresh_before = \"60s\"\n");
            let mut cases = Vec::new();
            for refresh in [false, true] {
                for exp in [T0, T0 + 30, T0 + 100, T0 + 300, T0 + 10_000] {
                    for seen in [T0, T0 + 50, T0 + 4990] {
                        let mut s = session(refresh, exp);
                        s.seen = seen;
                        cases.push(s.clone());
                        s.access_issued = 0;
                        cases.push(s);
                    }
                }
            }
            for s in &cases {
                let until = login.fresh_until(s);
                for now in T0.saturating_sub(10)..T0 + 5100 {
                    let unchanged =
                        now < login.sessions.live_until(s) && !login.refresh_due(s, now) && !login.touch_due(s, now);
                    assert_eq!(now < until, unchanged, "{s:?} at {now}: fresh until {until}");
                }
            }
        }

        #[test]
        fn a_repeated_cookie_is_answered_from_the_cache_until_the_token_is_due_for_refresh() {
            let login = service("refresh_before = \"60s\"\n");
            let h = cookie_for(&login, &session(true, T0 + 1000));
            let first = at(&login, &h, T0).unwrap();
            assert!(first.set_cookie.is_empty());
            assert_eq!(&*first.access_token, "access-token");
            let again = at(&login, &h, T0 + 939).unwrap();
            assert!(Arc::ptr_eq(&first.principal, &again.principal), "answered from the cache");
            assert_eq!(again.principal.subject, "ann");
            // From T0 + 940 the uncached path refreshes; with no provider reachable here the
            // refresh is refused and the session ends. A cached answer would still say "ann".
            assert!(at(&login, &h, T0 + 940).is_none(), "the refresh was skipped");
            let reopened = at(&login, &h, T0 + 939).unwrap();
            assert!(!Arc::ptr_eq(&first.principal, &reopened.principal), "the stale entry was dropped");
        }

        #[test]
        fn a_repeated_cookie_still_gets_its_idle_timeout_slid_and_ends_with_its_session() {
            let login = service("session_idle_timeout = \"100s\"\nsession_lifetime = \"300s\"\n");
            let s = session(false, T0 + 50);
            let h = cookie_for(&login, &s);
            let first = at(&login, &h, T0).unwrap();
            let cached = at(&login, &h, T0 + 10).unwrap();
            assert!(Arc::ptr_eq(&first.principal, &cached.principal) && cached.set_cookie.is_empty());
            // seen + a tenth of the idle timeout: the cookie is rewritten (Set-Cookie goes out).
            let slid = at(&login, &h, T0 + 11).unwrap();
            assert!(!slid.set_cookie.is_empty(), "the idle timeout did not slide");
            assert!(!Arc::ptr_eq(&first.principal, &slid.principal));
            // A cookie whose `seen` is the last second of its lifetime, cached, then expired.
            let mut late = s.clone();
            late.seen = T0 + 290;
            let h = cookie_for(&login, &late);
            assert!(at(&login, &h, T0 + 290).is_some() && at(&login, &h, T0 + 299).unwrap().set_cookie.is_empty());
            assert!(at(&login, &h, T0 + 300).is_none(), "the session outlived its lifetime");
        }

        #[test]
        fn forged_cookies_are_never_cached() {
            let login = service("");
            let h = cookie_for(&login, &session(false, T0 + 1000));
            let value = h.get(COOKIE).unwrap().to_str().unwrap().to_string();
            let (before, _) = OpenedCache::thread_usage();
            for i in 0..200 {
                let mut forged = value.clone().into_bytes();
                let at_byte = 20 + i * 7 % (forged.len() - 30);
                forged[at_byte] = if forged[at_byte] == b'A' { b'B' } else { b'A' };
                let mut f = HeaderMap::new();
                f.insert(COOKIE, HeaderValue::from_bytes(&forged).unwrap());
                let mut junk = HeaderMap::new();
                junk.insert(
                    COOKIE,
                    HeaderValue::from_str(&format!("tollgate=v1.{i}AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
                        .unwrap(),
                );
                for h in [&f, &junk] {
                    if let Some(s) = at(&login, h, T0) {
                        panic!("a forged cookie opened: {}", s.principal.subject);
                    }
                }
            }
            assert_eq!(OpenedCache::thread_usage().0, before, "forged cookies took room in the cache");
            assert!(at(&login, &h, T0).is_some());
            assert_eq!(OpenedCache::thread_usage().0, before + 1);
        }
    }

    #[test]
    fn query_params() {
        use crate::util::query_param;
        assert_eq!(query_param(Some("a=1&rd=%2Fx%3Fy%3D1&b"), "rd").as_deref(), Some("/x?y=1"));
        assert_eq!(query_param(Some("b"), "b").as_deref(), Some(""));
        assert_eq!(query_param(None, "rd"), None);
    }

    #[test]
    fn own_cookies_are_the_session_its_chunks_and_flows() {
        for own in ["tollgate", "tollgate_0", "tollgate_15", "tollgate_flow_0a1b"] {
            assert!(is_own_cookie("tollgate", own), "{own}");
        }
        for theirs in ["tollgatex", "tollgate_wiki", "tollgate_wiki_0", "tollgate_", "tollgate_flow_", "session"] {
            assert!(!is_own_cookie("tollgate", theirs), "{theirs}");
        }
    }
}
