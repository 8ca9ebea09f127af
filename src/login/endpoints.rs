//! The login's endpoints under `{public_url path}/oauth2/`: `start`, `callback`, `sign_out`,
//! `userinfo` and `backchannel_logout`.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::render::{escape, header_str, json, redirect};
use super::{describe, LoginService};
use crate::auth::id_token::{self, constant_time_eq, Expect};
use crate::auth::unix_now;
use crate::body::Body;
use crate::oidc::http::encode_form;
use crate::session::Session;
use crate::util::query_param;

const SIGN_OUT_PURPOSE: &str = "tollgate sign-out";
/// How long a sign-out confirmation form stays usable.
const SIGN_OUT_TTL: Duration = Duration::from_secs(600);
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

impl LoginService {
    /// Handles `{path}/oauth2/...`; gives the request back when the path is not one of ours.
    pub async fn endpoint(&self, req: Request<Incoming>) -> Result<Response<Body>, Request<Incoming>> {
        let endpoint = req.uri().path().strip_prefix(self.cfg.path.as_str()).and_then(|p| p.strip_prefix("/oauth2/"));
        let resp = match endpoint {
            Some("start") => self.start(&req).await,
            Some("callback") => self.callback(&req).await,
            Some("sign_out") => self.sign_out(req).await,
            Some("userinfo") => self.userinfo(&req).await,
            Some("backchannel_logout") => self.backchannel_logout(req).await,
            _ => return Err(req),
        };
        let mut resp = resp;
        resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }

    /// `/oauth2/sign_out?rd=...`: the session and all its cookies go (this login's: other apps
    /// stay signed in); then the provider's
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
        let rd = super::redirect::for_login(rd.as_deref().unwrap_or(self.cfg.cookie_path()), &self.cfg);
        if let (false, Some(s)) = (confirmed, &session) {
            return self.confirm_sign_out(s, &rd);
        }
        let end_session = self.issuer.metadata().and_then(|m| m.end_session_endpoint.clone());
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
             <form method=\"post\" action=\"{}\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <input type=\"hidden\" name=\"rd\" value=\"{}\">\
             <button type=\"submit\">Sign out</button></form></body></html>\n",
            escape(&self.cfg.endpoint_path("sign_out")),
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
        let expect = Expect { issuer: &self.issuer, client_id: &self.cfg.client_id, nonce: None, logout: true };
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
        self.logout_jtis.insert(jti.clone(), ());
        // With a shared store every replica must refuse a replay, not only this process.
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let ttl = Duration::from_secs(exp.saturating_sub(unix_now()).clamp(60, 600));
        match self.sessions.first_logout_use(&jti, ttl).await {
            Ok(None | Some(true)) => {}
            Ok(Some(false)) => return bad("logout token already used"),
            Err(e) => {
                tracing::warn!(error = %e, "back-channel logout failed");
                return json(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"error": "temporarily_unavailable"}));
            }
        }
        let removed = self.sessions.remove_by_logout(sub, sid).await;
        if removed.is_err() {
            self.logout_jtis.invalidate(&jti);
            let _ = self.sessions.forget_logout_use(&jti).await;
        }
        match removed {
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
}

/// A navigation the user started: typed or bookmarked (`Sec-Fetch-Site: none`), or from a page
/// of tollgate's own origin. Requests without the header (older browsers, scripts) count too.
fn is_user_navigation(headers: &HeaderMap) -> bool {
    header_str(headers, "sec-fetch-site")
        .is_none_or(|s| s.eq_ignore_ascii_case("same-origin") || s.eq_ignore_ascii_case("none"))
}

fn form_param(body: &Bytes, name: &str) -> Option<String> {
    query_param(std::str::from_utf8(body).ok(), name)
}
