//! Browser login (authorization code + PKCE S256) and the `/oauth2/` endpoints: `start`,
//! `callback`, `sign_out`, `userinfo` and `backchannel_logout` (`auth`, forward-auth, is
//! [`crate::forward_auth`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::cookie;
use super::id_token::{self, constant_time_eq, Expect};
use super::redirect::safe_target;
use super::session::cache::{Opened, OpenedCache};
use super::session::{random_token, Session, SessionError, Sessions, Write};
use super::{unix_now, AuthError, Authenticator, Principal};
use crate::body::Body;
use crate::config::{Config, Login};
use crate::oidc::http::encode_form;
use crate::oidc::token_client::{self, TokenError, TokenResponse};
use crate::util::query_param;

const FLOW_PURPOSE: &str = "tollgate login flow";
/// A login must finish within this long after it started.
const FLOW_TTL: Duration = Duration::from_secs(600);
/// Flow cookies a browser keeps at once, the newest: each start adds one (up to ~3 KB), and
/// a browser that starts sign-in after sign-in (tabs, reloads, a script) must not grow its
/// `Cookie` header past the server's limit (431 on every request until they expire).
const MAX_FLOWS: usize = 3;
/// Flow cookies of one request looked at when trimming them; a browser that follows our
/// `Set-Cookie`s never holds more than `MAX_FLOWS`, so this bounds a hostile request's work.
const FLOW_SCAN: usize = 16;
const SIGN_OUT_PURPOSE: &str = "tollgate sign-out";
/// How long a sign-out confirmation form stays usable.
const SIGN_OUT_TTL: Duration = Duration::from_secs(600);
/// How long a replica waits for another one's refresh of the same session (Redis store).
const REFRESH_WAIT: Duration = Duration::from_secs(10);
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// What a login flow remembers between `start` and `callback`, sealed in its own cookie.
#[derive(Serialize, Deserialize)]
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    rd: String,
    created: u64,
}

/// A flow cookie's age, all that trimming needs to know of it.
#[derive(Deserialize)]
struct FlowAge {
    created: u64,
}

/// A signed-in caller, the session's access token, and cookies to set on the response (after
/// a refresh or to slide the idle timeout).
pub struct SessionCaller {
    pub principal: Arc<Principal>,
    pub access_token: Arc<str>,
    pub set_cookie: HeaderMap,
}

pub struct LoginService {
    cfg: Login,
    auth: Arc<Authenticator>,
    sessions: Sessions,
    /// Refreshes in flight or just done, keyed by session id and refresh token, so a rotated
    /// refresh token is spent once however many requests arrive together.
    refreshes: moka::future::Cache<String, Option<Session>>,
    /// Back-channel logout token ids already used (replay protection).
    logout_jtis: moka::sync::Cache<String, ()>,
    /// Sessions this worker thread opened recently (see [`OpenedCache`]).
    opened: OpenedCache,
}

impl LoginService {
    pub fn new(
        config: &Config,
        auth: Arc<Authenticator>,
    ) -> Result<Option<Arc<LoginService>>, crate::store::redis::RedisError> {
        let Some(cfg) = config.login.clone() else { return Ok(None) };
        let sessions = Sessions::new(&cfg)?;
        Ok(Some(Arc::new(LoginService {
            sessions,
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
        })))
    }

    pub fn config(&self) -> &Login {
        &self.cfg
    }

    /// Handles `/oauth2/...`; gives the request back when the path is not one of ours.
    pub async fn endpoint(&self, req: Request<Incoming>) -> Result<Response<Body>, Request<Incoming>> {
        let resp = match req.uri().path() {
            "/oauth2/start" => self.start(&req).await,
            "/oauth2/callback" => self.callback(&req).await,
            "/oauth2/sign_out" => self.sign_out(req).await,
            "/oauth2/userinfo" => self.userinfo(&req).await,
            "/oauth2/backchannel_logout" => self.backchannel_logout(req).await,
            _ => return Err(req),
        };
        let mut resp = resp;
        resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }

    /// `/oauth2/start?rd=...`
    async fn start(&self, req: &Request<Incoming>) -> Response<Body> {
        let rd = query_param(req.uri().query(), "rd").unwrap_or_else(|| "/".into());
        self.begin_login(req.headers(), &rd)
    }

    /// Starts a login: fresh state, nonce and PKCE verifier in a flow cookie named after the
    /// state (several tabs can log in at once, up to [`MAX_FLOWS`]; older flow cookies in
    /// `req` are deleted), then off to the provider.
    pub fn begin_login(&self, req: &HeaderMap, rd: &str) -> Response<Body> {
        let Some(endpoint) =
            self.auth.issuer(self.cfg.issuer).metadata().and_then(|m| m.authorization_endpoint.clone())
        else {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in unavailable",
                "The identity provider has not been reached yet. Try again in a moment.",
            );
        };
        let flow = Flow {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token() + &random_token(),
            rd: safe_target(rd, &self.cfg.public_url, &self.cfg.allowed_redirect_hosts),
            created: unix_now(),
        };
        let challenge = {
            use base64::Engine;
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, flow.verifier.as_bytes());
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
        };
        let scope = self.cfg.scopes.join(" ");
        let redirect_uri = self.cfg.redirect_uri();
        let mut params: Vec<(&str, &str)> = vec![
            ("response_type", "code"),
            ("client_id", &self.cfg.client_id),
            ("redirect_uri", &redirect_uri),
            ("scope", &scope),
            ("state", &flow.state),
            ("nonce", &flow.nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ];
        params.extend(self.cfg.extra_params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let sep = if endpoint.query().is_some() { '&' } else { '?' };
        let location = format!("{endpoint}{sep}{}", encode_form(&params));
        let Some(sealed) = serde_json::to_vec(&flow).ok().and_then(|j| self.sessions.sealer.seal(FLOW_PURPOSE, &j))
        else {
            return page(StatusCode::INTERNAL_SERVER_ERROR, "Sign-in failed", "The login state could not be sealed.");
        };
        let mut resp = redirect(&location);
        for stale in self.stale_flows(req, flow.created) {
            cookie::append(resp.headers_mut(), stale, "", None, self.sessions.attrs());
        }
        cookie::append(
            resp.headers_mut(),
            &self.flow_cookie(&flow.state),
            &sealed,
            Some(FLOW_TTL),
            self.sessions.attrs(),
        );
        resp
    }

    /// The request's flow cookies to delete so that, with a new one, at most [`MAX_FLOWS`]
    /// remain: the oldest, and any that are expired or do not open. Only the first
    /// [`FLOW_SCAN`] distinct ones are looked at.
    fn stale_flows<'h>(&self, req: &'h HeaderMap, now: u64) -> Vec<&'h str> {
        let base = self.sessions.cookie_name();
        let mut flows: Vec<(u64, &str)> = Vec::new();
        for (name, value) in crate::util::cookies(req) {
            if !is_flow_cookie(base, name) || flows.iter().any(|(_, n)| *n == name) {
                continue;
            }
            if flows.len() == FLOW_SCAN {
                break;
            }
            let created = self
                .sessions
                .sealer
                .open(FLOW_PURPOSE, value)
                .and_then(|p| serde_json::from_slice::<FlowAge>(&p).ok())
                .map_or(0, |f| f.created);
            let live = created.saturating_add(FLOW_TTL.as_secs()) > now;
            flows.push((if live { created } else { 0 }, name));
        }
        // Newest first; the expired and unreadable (0) last.
        flows.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
        let keep = flows.iter().take(MAX_FLOWS - 1).filter(|(created, _)| *created > 0).count();
        flows.into_iter().skip(keep).map(|(_, name)| name).collect()
    }

    fn flow_cookie(&self, state: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, state.as_bytes());
        let tag = crate::util::hex(&digest.as_ref()[..6]);
        format!("{}_flow_{tag}", self.sessions.cookie_name())
    }

    /// `/oauth2/callback`: checks state (and `iss`, RFC 9207), exchanges the code with the PKCE
    /// verifier, validates the ID token, and starts a new session.
    async fn callback(&self, req: &Request<Incoming>) -> Response<Body> {
        let q = req.uri().query();
        if let Some(error) = query_param(q, "error") {
            let description = query_param(q, "error_description").unwrap_or_default();
            tracing::info!(error, description, "the identity provider returned an error");
            let mut resp = page(
                StatusCode::BAD_REQUEST,
                "Sign-in was not completed",
                &format!("The identity provider answered: {error}. {description}"),
            );
            if let Some(state) = query_param(q, "state") {
                cookie::append(resp.headers_mut(), &self.flow_cookie(&state), "", None, self.sessions.attrs());
            }
            return resp;
        }
        let (Some(state), Some(code)) = (query_param(q, "state"), query_param(q, "code")) else {
            return page(StatusCode::BAD_REQUEST, "Invalid sign-in response", "The response lacks a code or state.");
        };
        let flow_name = self.flow_cookie(&state);
        let flow: Option<Flow> = cookie::read(req.headers(), &flow_name)
            .and_then(|v| self.sessions.sealer.open(FLOW_PURPOSE, &v))
            .and_then(|p| serde_json::from_slice(&p).ok());
        let Some(flow) = flow.filter(|f| constant_time_eq(f.state.as_bytes(), state.as_bytes())) else {
            return restart_page(
                "This sign-in response does not belong to a sign-in started in this browser, or it was already used.",
            );
        };
        if unix_now() > flow.created + FLOW_TTL.as_secs() {
            return restart_page("The sign-in took too long.");
        }
        let issuer = self.auth.issuer(self.cfg.issuer);
        let metadata = issuer.metadata();
        let iss_param = query_param(q, "iss");
        let iss_required = metadata.as_ref().is_some_and(|m| m.authorization_response_iss_parameter_supported);
        if iss_param.as_deref().is_some_and(|i| i != issuer.config.url) || (iss_required && iss_param.is_none()) {
            return page(StatusCode::BAD_REQUEST, "Invalid sign-in response", "The response names another issuer.");
        }
        let mut resp = match self.finish_login(req.headers(), &code, &flow).await {
            Ok(resp) => resp,
            Err(LoginFailure::Grant) => restart_page("The sign-in code was already used or has expired."),
            Err(LoginFailure::Token(reason)) => page(
                StatusCode::UNAUTHORIZED,
                "Sign-in failed",
                &format!("The identity provider's answer was not accepted: {reason}."),
            ),
            Err(LoginFailure::Provider(e)) => {
                tracing::warn!(error = %e, "code exchange failed");
                page(
                    StatusCode::BAD_GATEWAY,
                    "Sign-in failed",
                    "The identity provider could not be reached or refused the request.",
                )
            }
            Err(LoginFailure::Store(e)) => {
                tracing::error!(error = %e, "saving the session failed");
                page(StatusCode::SERVICE_UNAVAILABLE, "Sign-in failed", "The session could not be saved. Try again.")
            }
        };
        cookie::append(resp.headers_mut(), &flow_name, "", None, self.sessions.attrs());
        resp
    }

    async fn finish_login(
        &self,
        req_headers: &HeaderMap,
        code: &str,
        flow: &Flow,
    ) -> Result<Response<Body>, LoginFailure> {
        let redirect_uri = self.cfg.redirect_uri();
        let tokens = self
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", &flow.verifier),
            ])
            .await?;
        let id_token = tokens.id_token.clone().ok_or(LoginFailure::Token("no ID token".into()))?;
        let expect =
            Expect { issuer: self.cfg.issuer, client_id: &self.cfg.client_id, nonce: Some(&flow.nonce), logout: false };
        let mut claims = id_token::validate(&self.auth, &id_token, &expect, unix_now())
            .await
            .map_err(|e| LoginFailure::Token(describe(&e)))?;
        if self.cfg.userinfo {
            self.merge_userinfo(&mut claims, &tokens.access_token).await?;
        }
        let now = unix_now();
        let session = Session {
            id: Sessions::new_id(),
            claims,
            id_token,
            access_exp: now + tokens.expires_in.unwrap_or(300),
            access_issued: now,
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            created: now,
            seen: now,
        };
        let mut resp = redirect(&flow.rd);
        self.sessions.save(&session, Write::New, req_headers, resp.headers_mut()).await.map_err(LoginFailure::Store)?;
        let sub = session.claims.get("sub").and_then(Value::as_str).unwrap_or("");
        tracing::info!(sub, "signed in");
        Ok(resp)
    }

    async fn token_request(&self, params: &[(&str, &str)]) -> Result<TokenResponse, LoginFailure> {
        let metadata = self.auth.issuer(self.cfg.issuer).metadata();
        let endpoint =
            metadata.and_then(|m| m.token_endpoint.clone()).ok_or(LoginFailure::Token("no token endpoint".into()))?;
        let client = token_client::Client { id: &self.cfg.client_id, auth: &self.cfg.client_auth };
        token_client::request(self.auth.client(), &endpoint, &client, params).await.map_err(|e| {
            if e.is_invalid_grant() {
                LoginFailure::Grant
            } else {
                LoginFailure::Provider(e)
            }
        })
    }

    /// OIDC userinfo: its claims join the ID token's; its `sub` must be the same user.
    async fn merge_userinfo(&self, claims: &mut Value, access_token: &str) -> Result<(), LoginFailure> {
        let Some(endpoint) = self.auth.issuer(self.cfg.issuer).metadata().and_then(|m| m.userinfo_endpoint.clone())
        else {
            return Ok(());
        };
        let auth = HeaderValue::from_str(&format!("Bearer {access_token}"))
            .map_err(|_| LoginFailure::Token("bad access token".into()))?;
        let fetched = self
            .auth
            .client()
            .get(&endpoint, &[(http::header::AUTHORIZATION, auth)])
            .await
            .map_err(|e| LoginFailure::Provider(TokenError::Http(e)))?;
        let info: Value =
            serde_json::from_slice(&fetched.body).map_err(|_| LoginFailure::Token("userinfo is not JSON".into()))?;
        if !fetched.status.is_success() || info.get("sub") != claims.get("sub") {
            return Err(LoginFailure::Token("userinfo is for another user".into()));
        }
        if let (Some(target), Value::Object(extra)) = (claims.as_object_mut(), info) {
            for (k, v) in extra {
                target.entry(k).or_insert(v);
            }
        }
        Ok(())
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
    async fn session_at(&self, headers: &HeaderMap, now: u64) -> Result<Option<SessionCaller>, AuthError> {
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
            .into_principal(self.auth.issuer(self.cfg.issuer).id, self.cfg.lifetime)
            .ok_or(AuthError::Forbidden("session without subject"))?;
        let principal = Arc::new(principal);
        if now < fresh_until {
            let entry = Opened { principal: principal.clone(), access_token: access_token.clone(), id, fresh_until };
            self.opened.insert(sealed.bytes(), entry, now);
        }
        Ok(Some(SessionCaller { principal, access_token, set_cookie }))
    }

    /// Whether the access token is due for a refresh at `now`.
    fn refresh_due(&self, s: &Session, now: u64) -> bool {
        s.refresh_token.is_some() && s.access_exp <= now + self.refresh_window(s)
    }

    /// Whether to slide the idle timeout at `now`: the cookie is rewritten at most every tenth
    /// of it.
    fn touch_due(&self, s: &Session, now: u64) -> bool {
        now.saturating_sub(s.seen) > self.touch_every()
    }

    fn touch_every(&self) -> u64 {
        (self.cfg.idle_timeout.as_secs() / 10).max(1)
    }

    /// The first second at which `session_at` would not accept `s` as it is: it has expired,
    /// its token is due for refresh, or its idle timeout is due to slide (a new cookie).
    /// Before then a cached answer is the same answer.
    fn fresh_until(&self, s: &Session) -> u64 {
        let touch = s.seen.saturating_add(self.touch_every()).saturating_add(1);
        let mut until = self.sessions.live_until(s).min(touch);
        if s.refresh_token.is_some() {
            until = until.min(s.access_exp.saturating_sub(self.refresh_window(s)));
        }
        until
    }

    /// How long before expiry to refresh: `refresh_before`, but at most half the token's
    /// lifetime, so a short-lived token is not refreshed on every request.
    fn refresh_window(&self, s: &Session) -> u64 {
        let configured = self.cfg.refresh_before.as_secs();
        match s.access_exp.checked_sub(s.access_issued) {
            Some(lifetime) if s.access_issued > 0 => configured.min(lifetime / 2),
            _ => configured,
        }
    }

    /// One refresh per session and refresh token, however many requests ask at once. Fresh and
    /// ended outcomes are remembered briefly (late requests with the old cookie reuse them);
    /// an unavailable provider is not, so the next request tries again.
    async fn refresh(&self, session: &Session) -> Refreshed {
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
            let expect = Expect { issuer: self.cfg.issuer, client_id: &self.cfg.client_id, nonce: None, logout: false };
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

    /// `/oauth2/sign_out?rd=...`: the session and all its cookies go; then the provider's
    /// end-session endpoint when it has one. Only the user may end a session (logout CSRF): a
    /// navigation typed or started on tollgate's own origin (`Sec-Fetch-Site: none` or
    /// `same-origin`), or the POST of the confirmation form, whose token is bound to the
    /// session. Other sites, sibling subdomains (`same-site`) included, get that form instead.
    /// Without `Sec-Fetch-Site` (browsers before 2020-2023, scripts) a GET is believed.
    async fn sign_out(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let session = self.sessions.load(&parts.headers).await.ok().flatten();
        let post = parts.method == Method::POST;
        let (rd, confirmed) = if post {
            let form = Limited::new(body, 8 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let token = form_param(&form, "token");
            let valid = session.as_ref().is_none_or(|s| token.is_some_and(|t| self.sign_out_token_valid(&t, s)));
            (form_param(&form, "rd"), valid)
        } else {
            (query_param(parts.uri.query(), "rd"), session.is_none() || is_user_navigation(&parts.headers))
        };
        let rd = safe_target(rd.as_deref().unwrap_or("/"), &self.cfg.public_url, &self.cfg.allowed_redirect_hosts);
        if let (false, Some(s)) = (confirmed, &session) {
            return self.confirm_sign_out(s, &rd);
        }
        let end_session = self.auth.issuer(self.cfg.issuer).metadata().and_then(|m| m.end_session_endpoint.clone());
        let location = match (&end_session, &session) {
            (Some(endpoint), Some(s)) => {
                let params = [
                    ("id_token_hint", s.id_token.as_str()),
                    ("post_logout_redirect_uri", self.cfg.post_logout_redirect.as_str()),
                    ("client_id", self.cfg.client_id.as_str()),
                ];
                let sep = if endpoint.query().is_some() { '&' } else { '?' };
                format!("{endpoint}{sep}{}", encode_form(&params))
            }
            _ => rd,
        };
        let mut resp = redirect(&location);
        if post {
            // After a POST, the browser must GET the next page.
            *resp.status_mut() = StatusCode::SEE_OTHER;
        }
        if let Err(e) = self.sessions.remove(session.as_ref(), &parts.headers, resp.headers_mut()).await {
            tracing::warn!(error = %e, "removing the session from the store failed; its cookies are cleared");
        }
        resp
    }

    /// A page asking the user to confirm a sign-out that another site started: a form that
    /// POSTs back with a token for this session (no other site can read it), and that no other
    /// site may frame (a click on the button must be the user's own).
    fn confirm_sign_out(&self, s: &Session, rd: &str) -> Response<Body> {
        let expires = unix_now() + SIGN_OUT_TTL.as_secs();
        let token = self.sessions.sealer.seal(SIGN_OUT_PURPOSE, format!("{}:{expires}", s.id).as_bytes());
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign out?</title></head><body>\
             <h1>Sign out?</h1><p>Another site asked to sign you out. Sign out only if you meant to.</p>\
             <form method=\"post\" action=\"/oauth2/sign_out\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <input type=\"hidden\" name=\"rd\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form></body></html>\n",
            escape(&token.unwrap_or_default()),
            escape(rd)
        );
        let mut resp = Response::new(Body::text(html));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        h.insert(
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
        h.insert(HeaderName::from_static("x-frame-options"), HeaderValue::from_static("DENY"));
        resp
    }

    /// A confirmation form's token: sealed for this purpose, for this session, not expired.
    fn sign_out_token_valid(&self, token: &str, s: &Session) -> bool {
        let Some(plain) = self.sessions.sealer.open(SIGN_OUT_PURPOSE, token) else { return false };
        let Some((id, expires)) = std::str::from_utf8(&plain).ok().and_then(|p| p.rsplit_once(':')) else {
            return false;
        };
        constant_time_eq(id.as_bytes(), s.id.as_bytes()) && expires.parse::<u64>().is_ok_and(|e| e > unix_now())
    }

    /// `/oauth2/userinfo`: the session's identity as JSON.
    async fn userinfo(&self, req: &Request<Incoming>) -> Response<Body> {
        match self.session(req.headers()).await {
            Ok(Some(s)) => {
                let p = &s.principal;
                let mut resp = json(
                    StatusCode::OK,
                    serde_json::json!({"user": p.subject, "email": p.email, "preferred_username": p.username, "groups": p.groups}),
                );
                resp.headers_mut().extend(s.set_cookie);
                resp
            }
            _ => json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"error": "unauthorized", "error_description": "no session"}),
            ),
        }
    }

    /// OIDC Back-Channel Logout 1.0: the provider POSTs a signed logout token naming a user
    /// (`sub`) or a provider session (`sid`); their sessions are removed (Redis store).
    async fn backchannel_logout(&self, req: Request<Incoming>) -> Response<Body> {
        let bad = |why: &str| {
            json(StatusCode::BAD_REQUEST, serde_json::json!({"error": "invalid_request", "error_description": why}))
        };
        if req.method() != Method::POST {
            return bad("use POST");
        }
        let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return bad("body too large or unreadable"),
        };
        let Some(token) = form_param(&body, "logout_token") else { return bad("no logout_token") };
        let expect = Expect { issuer: self.cfg.issuer, client_id: &self.cfg.client_id, nonce: None, logout: true };
        let claims = match id_token::validate(&self.auth, &token, &expect, unix_now()).await {
            Ok(c) => c,
            Err(e) => return bad(&describe(&e)),
        };
        let has_event = claims.get("events").and_then(|e| e.get(BACKCHANNEL_EVENT)).is_some_and(Value::is_object);
        let sub = claims.get("sub").and_then(Value::as_str);
        let sid = claims.get("sid").and_then(Value::as_str);
        let jti = claims.get("jti").and_then(Value::as_str);
        if !has_event || claims.get("nonce").is_some() || (sub.is_none() && sid.is_none()) || jti.is_none() {
            return bad("not a logout token");
        }
        let jti = jti.unwrap_or_default().to_string();
        if self.logout_jtis.contains_key(&jti) {
            return bad("logout token already used");
        }
        self.logout_jtis.insert(jti, ());
        match self.sessions.remove_by_logout(sub, sid).await {
            Ok(Some(n)) => {
                tracing::info!(removed = n, "back-channel logout");
                json(StatusCode::OK, serde_json::json!({}))
            }
            Ok(None) => json(
                StatusCode::NOT_IMPLEMENTED,
                serde_json::json!({"error": "unsupported", "error_description": "sessions in cookies cannot be revoked; use session_store = \"redis\""}),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "back-channel logout failed");
                json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"error": "temporarily_unavailable"}))
            }
        }
    }

    /// Removes the gateway's own cookies from a request going upstream: the app never sees
    /// the session.
    pub fn strip_cookies(&self, headers: &mut HeaderMap) {
        let name = self.sessions.cookie_name();
        crate::util::strip_cookies(headers, |n| is_own_cookie(name, n));
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
fn is_flow_cookie(base: &str, name: &str) -> bool {
    name.strip_prefix(base)
        .and_then(|r| r.strip_prefix("_flow_"))
        .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What a refresh came to.
enum Refreshed {
    Fresh(Session),
    /// The provider refused (the grant is spent, revoked or expired): sign in again.
    Ended,
    /// The provider could not be reached or failed: try again later.
    Unavailable,
}

enum LoginFailure {
    /// `invalid_grant`: the code was spent or expired.
    Grant,
    Token(String),
    Provider(TokenError),
    Store(SessionError),
}

impl LoginFailure {
    /// Network failures and 5xx answers: the provider may recover; nothing was refused.
    fn is_outage(&self) -> bool {
        match self {
            LoginFailure::Provider(TokenError::Http(_)) => true,
            LoginFailure::Provider(TokenError::Refused { status, error, .. }) => {
                status.is_server_error() || error == "temporarily_unavailable"
            }
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            LoginFailure::Grant => "invalid_grant".into(),
            LoginFailure::Token(t) => t.clone(),
            LoginFailure::Provider(e) => e.to_string(),
            LoginFailure::Store(e) => e.to_string(),
        }
    }
}

fn store_unavailable(e: SessionError) -> AuthError {
    tracing::warn!(error = %e, "session store failed");
    AuthError::Unavailable("the session store is unavailable")
}

fn describe(e: &AuthError) -> String {
    match e {
        AuthError::InvalidToken(why) => why.description(),
        other => other.to_string(),
    }
}

/// A navigation the user started: typed or bookmarked (`Sec-Fetch-Site: none`), or from a page
/// of tollgate's own origin. Requests without the header (older browsers, scripts) count too.
fn is_user_navigation(headers: &HeaderMap) -> bool {
    header_str(headers, "sec-fetch-site")
        .is_none_or(|s| s.eq_ignore_ascii_case("same-origin") || s.eq_ignore_ascii_case("none"))
}

/// Browsers (navigations) get redirects and pages; scripts and API clients get status codes.
pub fn is_browser(headers: &HeaderMap) -> bool {
    let xhr = header_str(headers, "x-requested-with").is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"));
    !xhr && headers.get_all(ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| v.contains("text/html"))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn form_param(body: &Bytes, name: &str) -> Option<String> {
    query_param(std::str::from_utf8(body).ok(), name)
}

pub fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

fn json(status: StatusCode, v: Value) -> Response<Body> {
    let mut resp = Response::new(Body::text(v.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn restart_page(why: &str) -> Response<Body> {
    page(
        StatusCode::BAD_REQUEST,
        "Sign-in could not be completed",
        &format!("{why} <a href=\"/oauth2/start\">Sign in again</a>."),
    )
}

/// A small HTML page. `message` may contain the fixed link markup of `restart_page`; everything
/// that comes from outside is escaped by the callers through [`escape`].
pub fn page(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1><p>{m}</p></body></html>\n",
        t = escape(title),
        m = escape_except_link(message)
    );
    let mut resp = Response::new(Body::text(html));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes everything but the one fixed sign-in link.
fn escape_except_link(s: &str) -> String {
    const LINK: &str = "<a href=\"/oauth2/start\">Sign in again</a>";
    s.split(LINK).map(escape).collect::<Vec<_>>().join(LINK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_provider_text() {
        let resp =
            page(StatusCode::BAD_REQUEST, "x", "<script>alert(1)</script> <a href=\"/oauth2/start\">Sign in again</a>");
        let Body::Full(Some(b)) = resp.into_body() else { panic!() };
        let html = std::str::from_utf8(&b).unwrap();
        assert!(!html.contains("<script>"));
        assert!(html.contains("<a href=\"/oauth2/start\">"));
    }

    #[test]
    fn browsers_are_told_apart() {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml"));
        assert!(is_browser(&h));
        h.insert("x-requested-with", HeaderValue::from_static("XMLHttpRequest"));
        assert!(!is_browser(&h));
        let mut api = HeaderMap::new();
        api.insert(ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!is_browser(&api));
    }

    // Set-up that fails should stop the test loudly.
    #[allow(clippy::unwrap_used)]
    mod cached_sessions {
        use super::super::*;
        use crate::auth::session::cache::OpenedCache;
        use http::header::{COOKIE, SET_COOKIE};
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
            LoginService::new(&config, auth).unwrap().unwrap()
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
        assert_eq!(query_param(Some("a=1&rd=%2Fx%3Fy%3D1&b"), "rd").as_deref(), Some("/x?y=1"));
        assert_eq!(query_param(Some("b"), "b").as_deref(), Some(""));
        assert_eq!(query_param(None, "rd"), None);
    }
}
