//! The sign-in flow: `start` sends the browser to the provider with a fresh state, nonce and
//! PKCE verifier (remembered in a flow cookie), `callback` checks what comes back, exchanges the
//! code and starts the session.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::render::{page, redirect, restart_page};
use super::{describe, is_flow_cookie, LoginService};
use crate::auth::id_token::{self, constant_time_eq, Expect};
use crate::auth::unix_now;
use crate::body::Body;
use crate::oidc::http::encode_form;
use crate::oidc::token_client::{self, TokenError, TokenResponse};
use crate::session::{cookie, random_token, Session, SessionError, Sessions, Write};
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

impl LoginService {
    /// `/oauth2/start?rd=...` (`rd` defaults to the login's `public_url`).
    pub(super) async fn start(&self, req: &Request<Incoming>) -> Response<Body> {
        let rd = query_param(req.uri().query(), "rd");
        let rd = rd.as_deref().unwrap_or(self.cfg.cookie_path());
        self.begin_login(req.headers(), rd)
    }

    /// Starts a login: fresh state, nonce and PKCE verifier in a flow cookie named after the
    /// state (several tabs can log in at once, up to [`MAX_FLOWS`]; older flow cookies in
    /// `req` are deleted), then off to the provider.
    pub fn begin_login(&self, req: &HeaderMap, rd: &str) -> Response<Body> {
        let Some(endpoint) = self.issuer.metadata().and_then(|m| m.authorization_endpoint.clone()) else {
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
            rd: super::redirect::for_login(rd, &self.cfg),
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

    /// A callback refused: one warning naming the reason (the browser's page says less).
    fn refused(&self, reason: &str) {
        tracing::warn!(login = %self.cfg.name, reason, "sign-in callback refused");
    }

    fn restart_page(&self, why: &str) -> Response<Body> {
        restart_page(why, &self.cfg.endpoint_path("start"))
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
    pub(super) async fn callback(&self, req: &Request<Incoming>) -> Response<Body> {
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
            self.refused("the response lacks a code or state");
            return page(StatusCode::BAD_REQUEST, "Invalid sign-in response", "The response lacks a code or state.");
        };
        let flow_name = self.flow_cookie(&state);
        let flow: Option<Flow> = cookie::read(req.headers(), &flow_name)
            .and_then(|v| self.sessions.sealer.open(FLOW_PURPOSE, std::str::from_utf8(&v).ok()?))
            .and_then(|p| serde_json::from_slice(&p).ok());
        let Some(flow) = flow.filter(|f| constant_time_eq(f.state.as_bytes(), state.as_bytes())) else {
            self.refused("no flow cookie of this browser holds the state (forged, replayed or from another browser)");
            return self.restart_page(
                "This sign-in response does not belong to a sign-in started in this browser, or it was already used.",
            );
        };
        if unix_now() > flow.created + FLOW_TTL.as_secs() {
            self.refused("the sign-in flow expired");
            return self.restart_page("The sign-in took too long.");
        }
        let issuer = &self.issuer;
        let metadata = issuer.metadata();
        let iss_param = query_param(q, "iss");
        let iss_required = metadata.as_ref().is_some_and(|m| m.authorization_response_iss_parameter_supported);
        if iss_param.as_deref().is_some_and(|i| i != issuer.config.url) || (iss_required && iss_param.is_none()) {
            self.refused("the response's iss is missing or names another issuer");
            return page(StatusCode::BAD_REQUEST, "Invalid sign-in response", "The response names another issuer.");
        }
        let mut resp = match self.finish_login(req.headers(), &code, &flow).await {
            Ok(resp) => resp,
            Err(LoginFailure::Grant) => {
                self.refused("the provider refused the code (invalid_grant: already used or expired)");
                self.restart_page("The sign-in code was already used or has expired.")
            }
            Err(LoginFailure::Token(reason)) => {
                self.refused(&format!("the provider's answer was not accepted: {reason}"));
                page(
                    StatusCode::UNAUTHORIZED,
                    "Sign-in failed",
                    &format!("The identity provider's answer was not accepted: {reason}."),
                )
            }
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
            Expect { issuer: &self.issuer, client_id: &self.cfg.client_id, nonce: Some(&flow.nonce), logout: false };
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

    pub(super) async fn token_request(&self, params: &[(&str, &str)]) -> Result<TokenResponse, LoginFailure> {
        let metadata = self.issuer.metadata();
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
        let Some(endpoint) = self.issuer.metadata().and_then(|m| m.userinfo_endpoint.clone()) else {
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
}

pub(super) enum LoginFailure {
    /// `invalid_grant`: the code was spent or expired.
    Grant,
    Token(String),
    Provider(TokenError),
    Store(SessionError),
}

impl LoginFailure {
    /// Network failures and 5xx answers: the provider may recover; nothing was refused.
    pub(super) fn is_outage(&self) -> bool {
        match self {
            LoginFailure::Provider(TokenError::Http(_)) => true,
            LoginFailure::Provider(TokenError::Refused { status, error, .. }) => {
                status.is_server_error() || error == "temporarily_unavailable"
            }
            _ => false,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            LoginFailure::Grant => "invalid_grant".into(),
            LoginFailure::Token(t) => t.clone(),
            LoginFailure::Provider(e) => e.to_string(),
            LoginFailure::Store(e) => e.to_string(),
        }
    }
}
