//! The development issuer: discovery, JWKS, authorization code with PKCE S256, refresh with
//! rotation, client credentials, userinfo and RP-initiated logout, keys in memory only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use http::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, SET_COOKIE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::login::escape;
use crate::session::random_token;
use crate::util::query_param;
use crate::util::unix_now;

use super::{html, json_resp, redirect, refuse_non_loopback, serve, Resp};

/// A client registered at the development issuer.
#[derive(Debug, Clone)]
pub struct DevClient {
    pub id: String,
    pub secret: String,
    /// Exact redirect URIs for the authorization code flow (empty: no browser login).
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
}

/// Settings of a development issuer.
#[derive(Debug, Clone)]
pub struct DevIssuerOptions {
    pub clients: Vec<DevClient>,
    /// `aud` of access tokens when no `resource` is asked for.
    pub audience: String,
    pub access_token_ttl: Duration,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    sub: String,
    scope: String,
    expires: u64,
}

struct Grant {
    client_id: String,
    sub: String,
    scope: String,
    /// Spent refresh tokens stay here to detect reuse (which revokes the whole grant).
    spent: bool,
    family: String,
}

/// The issuer's RS256 key.
struct RsaKey {
    pair: aws_lc_rs::signature::RsaKeyPair,
    kid: String,
    jwk: Value,
}

struct State {
    url: String,
    opts: DevIssuerOptions,
    key: EncodingKey,
    kid: String,
    jwk: Value,
    /// Made on a blocking thread as the issuer starts (RSA key generation takes a while): the
    /// JWKS and RS256 token requests wait for it. `None` if generation failed.
    rsa: tokio::sync::OnceCell<Option<RsaKey>>,
    codes: Mutex<HashMap<String, Code>>,
    refresh: Mutex<HashMap<String, Grant>>,
    revoked_families: Mutex<Vec<String>>,
}

/// A running development issuer.
#[derive(Clone)]
pub struct DevIssuer {
    pub url: String,
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl DevIssuer {
    /// Binds `listen` (loopback only) and serves on the current tokio runtime.
    pub async fn start(listen: SocketAddr, opts: DevIssuerOptions) -> std::io::Result<DevIssuer> {
        refuse_non_loopback(listen)?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let (key, kid, jwk) = generate_key()?;
        let state = Arc::new(State {
            url: url.clone(),
            opts,
            key,
            kid,
            jwk,
            rsa: tokio::sync::OnceCell::new(),
            codes: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            revoked_families: Mutex::new(Vec::new()),
        });
        let s = state.clone();
        tokio::spawn(async move {
            s.rsa_key().await;
        });
        let s = state.clone();
        tokio::spawn(serve(listener, move |req| {
            let s = s.clone();
            async move { issuer_route(&s, req).await }
        }));
        Ok(DevIssuer { url, addr, state })
    }

    /// Signs `claims` with the issuer's key (`typ` as given), for tests that need tokens of
    /// their own making.
    pub fn sign(&self, claims: &Value, typ: &str) -> String {
        self.state.sign(claims, typ, None)
    }

    /// An access token for `sub`, as the token endpoint would issue it.
    pub fn access_token(&self, sub: &str, scope: &str) -> String {
        self.state.access_token(sub, scope, "dev-tests", None, None)
    }
}

impl State {
    /// The RS256 key, once generated (waits for it).
    async fn rsa_key(&self) -> Option<&RsaKey> {
        let generated = self.rsa.get_or_init(|| async {
            let key =
                tokio::task::spawn_blocking(generate_rsa_key).await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
            key.inspect_err(|e| tracing::warn!(error = %e, "no RS256 key: the development issuer signs ES256 only"))
                .ok()
        });
        generated.await.as_ref()
    }

    /// A JWT of `claims`, signed ES256, or RS256 with `rsa`.
    fn sign(&self, claims: &Value, typ: &str, rsa: Option<&RsaKey>) -> String {
        let Some(rsa) = rsa else {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(self.kid.clone());
            header.typ = Some(typ.to_string());
            return jsonwebtoken::encode(&header, claims, &self.key).unwrap_or_default();
        };
        // Signed with the key pair at hand: jsonwebtoken would take the private key as DER and
        // parse (and check) it again for every token.
        let header = json!({"typ": typ, "alg": "RS256", "kid": rsa.kid});
        let mut jwt =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; rsa.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        if rsa.pair.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, jwt.as_bytes(), &mut signature).is_err() {
            return String::new();
        }
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(&signature));
        jwt
    }

    fn access_token(
        &self,
        sub: &str,
        scope: &str,
        client_id: &str,
        resource: Option<&str>,
        rsa: Option<&RsaKey>,
    ) -> String {
        let now = unix_now();
        let claims = json!({
            "iss": self.url, "sub": sub, "aud": resource.unwrap_or(&self.opts.audience),
            "client_id": client_id, "scope": scope, "jti": random_token(),
            "iat": now, "exp": now + self.opts.access_token_ttl.as_secs(),
            "email": format!("{sub}@example.com"), "preferred_username": sub, "groups": groups(sub),
        });
        self.sign(&claims, "at+jwt", rsa)
    }

    /// A client's access token bound to the DPoP key with thumbprint `jkt` (RFC 9449 §6.1).
    fn bound_access_token(
        &self,
        client_id: &str,
        scope: &str,
        resource: Option<&str>,
        rsa: Option<&RsaKey>,
        jkt: &str,
    ) -> String {
        let now = unix_now();
        let claims = json!({
            "iss": self.url, "sub": client_id, "aud": resource.unwrap_or(&self.opts.audience),
            "client_id": client_id, "scope": scope, "jti": random_token(),
            "iat": now, "exp": now + self.opts.access_token_ttl.as_secs(), "cnf": {"jkt": jkt},
        });
        self.sign(&claims, "at+jwt", rsa)
    }

    fn id_token(&self, sub: &str, client_id: &str, nonce: Option<&str>, rsa: Option<&RsaKey>) -> String {
        let now = unix_now();
        let mut claims = json!({
            "iss": self.url, "sub": sub, "aud": client_id, "iat": now, "exp": now + 3600,
            "email": format!("{sub}@example.com"), "email_verified": true,
            "preferred_username": sub, "name": sub, "groups": groups(sub), "sid": random_token(),
        });
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        self.sign(&claims, "JWT", rsa)
    }

    /// The claims of an unexpired ES256 access token this issuer signed.
    fn verify_own(&self, token: &str) -> Option<Value> {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(self.jwk.clone()).ok()?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()?;
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_issuer(&[&self.url]);
        v.validate_aud = false;
        v.leeway = 0;
        jsonwebtoken::decode::<Value>(token, &key, &v).ok().map(|d| d.claims)
    }

    fn client(&self, id: &str) -> Option<&DevClient> {
        self.opts.clients.iter().find(|c| c.id == id)
    }
}

fn groups(sub: &str) -> Value {
    if sub.starts_with("admin") {
        json!(["staff", "admins"])
    } else {
        json!(["staff"])
    }
}

fn generate_key() -> std::io::Result<(EncodingKey, String, Value)> {
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let err = |what: &str| std::io::Error::other(format!("generating the dev issuer key: {what}"));
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| err("keygen"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).map_err(|_| err("parse"))?;
    let public = pair.public_key().as_ref();
    if public.len() != 65 || public[0] != 4 {
        return Err(err("unexpected public key form"));
    }
    let kid = random_token()[..16].to_string();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&public[1..33]), "y": URL_SAFE_NO_PAD.encode(&public[33..65]),
    });
    Ok((EncodingKey::from_ec_der(pkcs8.as_ref()), kid, jwk))
}

fn generate_rsa_key() -> std::io::Result<RsaKey> {
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair, RsaKeyPair};
    let pair = RsaKeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| std::io::Error::other("generating the dev issuer's RSA key failed"))?;
    let public = pair.public_key();
    let kid = random_token()[..16].to_string();
    let jwk = json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    });
    Ok(RsaKey { pair, kid, jwk })
}

async fn issuer_route(s: &Arc<State>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let mut resp = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/.well-known/openid-configuration") => json_resp(StatusCode::OK, discovery(s)),
        (Method::GET, "/jwks") => jwks(s).await,
        (Method::GET, "/authorize") => authorize_form(s, &req),
        (Method::POST, "/authorize") => authorize_submit(s, req).await,
        (Method::POST, "/token") => token(s, req).await,
        (Method::GET, "/userinfo") => userinfo(s, &req).await,
        (Method::GET, "/end_session") => end_session(s, &req),
        _ => json_resp(StatusCode::NOT_FOUND, json!({"error": "not_found"})),
    };
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn jwks(s: &State) -> Resp {
    let mut keys = vec![s.jwk.clone()];
    keys.extend(s.rsa_key().await.map(|k| k.jwk.clone()));
    json_resp(StatusCode::OK, json!({ "keys": keys }))
}

fn discovery(s: &State) -> Value {
    let u = &s.url;
    json!({
        "issuer": u,
        "authorization_endpoint": format!("{u}/authorize"),
        "token_endpoint": format!("{u}/token"),
        "jwks_uri": format!("{u}/jwks"),
        "userinfo_endpoint": format!("{u}/userinfo"),
        "end_session_endpoint": format!("{u}/end_session"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", crate::upstream::exchange::GRANT_TYPE],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid", "email", "profile", "offline_access"],
        "authorization_response_iss_parameter_supported": true,
    })
}

/// The sign-in form. A remembered sign-in (the issuer's own cookie) skips it.
fn authorize_form(s: &State, req: &Request<Incoming>) -> Resp {
    let q = req.uri().query();
    let p = |name| query_param(q, name).unwrap_or_default();
    let (client_id, redirect_uri) = (p("client_id"), p("redirect_uri"));
    let Some(client) = s.client(&client_id) else { return html(StatusCode::BAD_REQUEST, "Unknown client", "") };
    if !client.redirect_uris.contains(&redirect_uri) {
        // Never redirect to an unregistered URI: show the error instead.
        return html(StatusCode::BAD_REQUEST, "Unregistered redirect_uri", "");
    }
    if p("response_type") != "code" || p("code_challenge_method") != "S256" || p("code_challenge").is_empty() {
        return redirect_error(&redirect_uri, "invalid_request", &p("state"), &s.url);
    }
    if let Some(user) = remembered_user(req) {
        return issue_code(s, &client_id, &redirect_uri, &p("code_challenge"), q, &user);
    }
    let hidden: String = ["client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge"]
        .iter()
        .map(|k| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", escape(&p(k))))
        .collect();
    let body = format!(
        "<form method=\"post\" action=\"/authorize\">{hidden}<label>User name <input name=\"username\" id=\"username\" autofocus required></label> \
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form><p>Development issuer: any user name signs in \
         (names starting with <code>admin</code> are in the <code>admins</code> group).</p>"
    );
    html(StatusCode::OK, "Sign in to the tollgate development issuer", &body)
}

async fn authorize_submit(s: &State, req: Request<Incoming>) -> Resp {
    let Some(form) = read_form(req).await else { return html(StatusCode::BAD_REQUEST, "Bad form", "") };
    let f = |name| query_param(Some(&form), name).unwrap_or_default();
    let (client_id, redirect_uri, user) = (f("client_id"), f("redirect_uri"), f("username"));
    let valid_user =
        !user.is_empty() && user.len() <= 64 && user.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if !s.client(&client_id).is_some_and(|c| c.redirect_uris.contains(&redirect_uri)) {
        return html(StatusCode::BAD_REQUEST, "Unknown client or redirect_uri", "");
    }
    if !valid_user {
        return html(StatusCode::BAD_REQUEST, "Invalid user name", "<p>Use letters, digits and . _ - @</p>");
    }
    let mut resp = issue_code(s, &client_id, &redirect_uri, &f("code_challenge"), Some(&form), &user);
    if let Ok(v) = HeaderValue::from_str(&format!("dev_issuer_user={user}; Path=/; HttpOnly; SameSite=Lax")) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}

fn issue_code(
    s: &State,
    client_id: &str,
    redirect_uri: &str,
    challenge: &str,
    params: Option<&str>,
    user: &str,
) -> Resp {
    let code = random_token();
    let nonce = query_param(params, "nonce").filter(|n| !n.is_empty());
    let scope = query_param(params, "scope").unwrap_or_else(|| "openid".into());
    let state = query_param(params, "state").unwrap_or_default();
    s.codes.lock().unwrap_or_else(|p| p.into_inner()).insert(
        code.clone(),
        Code {
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            challenge: challenge.into(),
            nonce,
            sub: user.into(),
            scope,
            expires: unix_now() + 60,
        },
    );
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!(
        "{redirect_uri}{sep}code={code}&state={}&iss={}",
        crate::oidc::http::form_encode(&state),
        crate::oidc::http::form_encode(&s.url)
    );
    redirect(&location)
}

fn redirect_error(redirect_uri: &str, error: &str, state: &str, iss: &str) -> Resp {
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let enc = crate::oidc::http::form_encode;
    redirect(&format!("{redirect_uri}{sep}error={error}&state={}&iss={}", enc(state), enc(iss)))
}

fn remembered_user(req: &Request<Incoming>) -> Option<String> {
    crate::util::cookies(req.headers())
        .find(|(n, _)| *n == "dev_issuer_user")
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

async fn token(s: &Arc<State>, req: Request<Incoming>) -> Resp {
    let basic = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(parse_basic);
    let Some(form) = read_form(req).await else { return token_error("invalid_request", "unreadable form") };
    // `alg=RS256` (not a standard parameter): the tokens of this response signed RS256, on a
    // blocking thread (an RSA signature takes over half a millisecond: a benchmark minting many
    // tokens over parallel connections then uses every core).
    match query_param(Some(&form), "alg").as_deref() {
        None | Some("ES256") => grant(s, basic, &form, None),
        Some("RS256") => {
            if s.rsa_key().await.is_none() {
                return token_error("server_error", "no RS256 key");
            }
            let s = s.clone();
            tokio::task::spawn_blocking(move || grant(&s, basic, &form, s.rsa.get().and_then(Option::as_ref)))
                .await
                .unwrap_or_else(|_| token_error("server_error", "signing failed"))
        }
        Some(_) => token_error("invalid_request", "alg: ES256 (the default) or RS256"),
    }
}

/// The token endpoint once the form is read: tokens signed RS256 with `rsa`, else ES256.
fn grant(s: &State, basic: Option<(String, String)>, form: &str, rsa: Option<&RsaKey>) -> Resp {
    let f = |name| query_param(Some(form), name);
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => (f("client_id").unwrap_or_default(), f("client_secret").unwrap_or_default()),
    };
    let Some(client) =
        s.client(&id).filter(|c| crate::auth::id_token::constant_time_eq(c.secret.as_bytes(), secret.as_bytes()))
    else {
        return json_resp(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"}));
    };
    match f("grant_type").as_deref() {
        Some("authorization_code") => code_grant(
            s,
            client,
            &f("code").unwrap_or_default(),
            &f("redirect_uri").unwrap_or_default(),
            &f("code_verifier").unwrap_or_default(),
            rsa,
        ),
        Some("refresh_token") => refresh_grant(s, client, &f("refresh_token").unwrap_or_default(), rsa),
        Some("client_credentials") => {
            let scope = f("scope").unwrap_or_default();
            let mut token = s.access_token(&client.id, &scope, &client.id, f("resource").as_deref(), rsa);
            // `jkt=THUMBPRINT` (not a standard parameter; for the load benchmark's DPoP mode):
            // the token bound to that DPoP key (`cnf.jkt`). The development issuer checks no
            // proof here; a real provider binds the key of the proof the token request carries.
            if let Some(jkt) = f("jkt") {
                token = s.bound_access_token(&client.id, &scope, f("resource").as_deref(), rsa, &jkt);
            }
            json_resp(
                StatusCode::OK,
                json!({"access_token": token, "token_type": "Bearer", "expires_in": s.opts.access_token_ttl.as_secs(), "scope": scope}),
            )
        }
        Some(crate::upstream::exchange::GRANT_TYPE) => exchange_grant(s, client, form, rsa),
        _ => token_error("unsupported_grant_type", "use authorization_code, refresh_token or client_credentials"),
    }
}

/// Token exchange (RFC 8693), for trying tollgate's `grant = "token_exchange"` (and its load
/// benchmark): the subject must be an access token this issuer signed ES256 and still valid;
/// the answer is an access token for the `audience` (else `resource`, else the default
/// audience) with the subject's `sub` and scope, and `act` naming the client.
fn exchange_grant(s: &State, client: &DevClient, form: &str, rsa: Option<&RsaKey>) -> Resp {
    let f = |name: &str| query_param(Some(form), name);
    let (Some(subject), Some(crate::config::ACCESS_TOKEN_TYPE)) =
        (f("subject_token"), f("subject_token_type").as_deref())
    else {
        return token_error("invalid_request", "subject_token of type access_token required");
    };
    let Some(claims) = s.verify_own(&subject) else {
        return token_error("invalid_grant", "subject_token is not a valid access token of this issuer");
    };
    let sub = claims["sub"].as_str().unwrap_or_default();
    let scope = f("scope").or_else(|| claims["scope"].as_str().map(str::to_string)).unwrap_or_default();
    let audience = f("audience").or_else(|| f("resource"));
    let now = unix_now();
    let out = json!({
        "iss": s.url, "sub": sub, "aud": audience.as_deref().unwrap_or(&s.opts.audience),
        "client_id": client.id, "act": {"sub": client.id}, "scope": scope, "jti": random_token(),
        "iat": now, "exp": now + s.opts.access_token_ttl.as_secs(),
    });
    json_resp(
        StatusCode::OK,
        json!({"access_token": s.sign(&out, "at+jwt", rsa), "issued_token_type": crate::config::ACCESS_TOKEN_TYPE,
            "token_type": "Bearer", "expires_in": s.opts.access_token_ttl.as_secs(), "scope": scope}),
    )
}

fn code_grant(
    s: &State,
    client: &DevClient,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
    rsa: Option<&RsaKey>,
) -> Resp {
    // Codes are single use: taken out whether or not the rest checks out.
    let Some(c) = s.codes.lock().unwrap_or_else(|p| p.into_inner()).remove(code) else {
        return token_error("invalid_grant", "unknown or used code");
    };
    let challenge =
        URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref());
    if c.client_id != client.id || c.redirect_uri != redirect_uri || c.expires < unix_now() || challenge != c.challenge
    {
        return token_error("invalid_grant", "code, redirect_uri or code_verifier does not match");
    }
    tokens(s, client, &c.sub, &c.scope, c.nonce.as_deref(), random_token(), rsa)
}

fn refresh_grant(s: &State, client: &DevClient, token: &str, rsa: Option<&RsaKey>) -> Resp {
    let mut grants = s.refresh.lock().unwrap_or_else(|p| p.into_inner());
    let Some(g) = grants.get_mut(token).filter(|g| g.client_id == client.id) else {
        return token_error("invalid_grant", "unknown refresh token");
    };
    if g.spent || s.revoked_families.lock().unwrap_or_else(|p| p.into_inner()).contains(&g.family) {
        // Reuse of a rotated refresh token: revoke the whole family (OAuth 2.0 Security BCP).
        let family = g.family.clone();
        s.revoked_families.lock().unwrap_or_else(|p| p.into_inner()).push(family);
        return token_error("invalid_grant", "refresh token already used");
    }
    g.spent = true;
    let (sub, scope, family) = (g.sub.clone(), g.scope.clone(), g.family.clone());
    drop(grants);
    tokens(s, client, &sub, &scope, None, family, rsa)
}

fn tokens(
    s: &State,
    client: &DevClient,
    sub: &str,
    scope: &str,
    nonce: Option<&str>,
    family: String,
    rsa: Option<&RsaKey>,
) -> Resp {
    let mut body = json!({
        "access_token": s.access_token(sub, scope, &client.id, None, rsa),
        "token_type": "Bearer",
        "expires_in": s.opts.access_token_ttl.as_secs(),
        "scope": scope,
        "id_token": s.id_token(sub, &client.id, nonce, rsa),
    });
    if scope.split(' ').any(|x| x == "offline_access") {
        let refresh = random_token();
        s.refresh.lock().unwrap_or_else(|p| p.into_inner()).insert(
            refresh.clone(),
            Grant { client_id: client.id.clone(), sub: sub.into(), scope: scope.into(), spent: false, family },
        );
        body["refresh_token"] = json!(refresh);
    }
    json_resp(StatusCode::OK, body)
}

async fn userinfo(s: &State, req: &Request<Incoming>) -> Resp {
    let token = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let rsa = match token.and_then(|t| jsonwebtoken::decode_header(t).ok()) {
        Some(h) if h.alg == Algorithm::RS256 => s.rsa_key().await,
        _ => None,
    };
    let claims = token.and_then(|t| {
        let (jwk, alg) = match rsa {
            Some(k) => (&k.jwk, Algorithm::RS256),
            None => (&s.jwk, Algorithm::ES256),
        };
        let key = jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).ok()?).ok()?;
        let mut v = jsonwebtoken::Validation::new(alg);
        v.validate_aud = false;
        v.set_issuer(&[&s.url]);
        jsonwebtoken::decode::<Value>(t, &key, &v).ok().map(|d| d.claims)
    });
    match claims.and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_string)) {
        Some(sub) => json_resp(
            StatusCode::OK,
            json!({"sub": sub, "email": format!("{sub}@example.com"), "email_verified": true, "preferred_username": sub, "name": sub, "groups": groups(&sub)}),
        ),
        None => json_resp(StatusCode::UNAUTHORIZED, json!({"error": "invalid_token"})),
    }
}

fn end_session(s: &State, req: &Request<Incoming>) -> Resp {
    let q = req.uri().query();
    let target = query_param(q, "post_logout_redirect_uri")
        .filter(|u| s.opts.clients.iter().any(|c| c.post_logout_redirect_uris.contains(u)));
    let mut resp = match target {
        Some(u) => redirect(&u),
        None => html(StatusCode::OK, "Signed out", "<p>You are signed out of the development issuer.</p>"),
    };
    resp.headers_mut()
        .append(SET_COOKIE, HeaderValue::from_static("dev_issuer_user=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"));
    resp
}

fn parse_basic(v: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(v.strip_prefix("Basic ")?).ok()?;
    let (id, secret) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((query_param(Some(&format!("a={id}")), "a")?, query_param(Some(&format!("a={secret}")), "a")?))
}

async fn read_form(req: Request<Incoming>) -> Option<String> {
    let body = Limited::new(req.into_body(), 64 * 1024).collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

fn token_error(error: &str, description: &str) -> Resp {
    json_resp(StatusCode::BAD_REQUEST, json!({"error": error, "error_description": description}))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(refuse_non_loopback("0.0.0.0:8080".parse().unwrap()).is_err());
        assert!(refuse_non_loopback("192.168.1.2:8080".parse().unwrap()).is_err());
        assert!(refuse_non_loopback("127.0.0.1:8080".parse().unwrap()).is_ok());
        assert!(refuse_non_loopback("[::1]:8080".parse().unwrap()).is_ok());
    }

    #[test]
    fn basic_credentials() {
        let v = format!("Basic {}", STANDARD.encode("dev-cli:dev%20secret"));
        assert_eq!(parse_basic(&v), Some(("dev-cli".into(), "dev secret".into())));
        assert_eq!(parse_basic("Bearer x"), None);
    }

    /// One HTTP/1.1 exchange with the issuer: the response's status line and body.
    async fn exchange(addr: SocketAddr, request: String) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    }

    async fn client_credentials(issuer: &DevIssuer, extra: &str) -> (String, Value) {
        let form = format!("grant_type=client_credentials&scope=api{extra}");
        let (status, body) = exchange(
            issuer.addr,
            format!(
                "POST /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                STANDARD.encode("cli:cli-secret"),
                form.len()
            ),
        )
        .await;
        (status, serde_json::from_str(&body).unwrap())
    }

    /// Token exchange (RFC 8693): an access token of this issuer becomes one for the asked
    /// audience with the subject's `sub` and `act` naming the client; a token it did not sign
    /// (or a tampered one) is `invalid_grant`.
    #[tokio::test]
    async fn exchanges_its_own_access_tokens() {
        let client = DevClient {
            id: "cli".into(),
            secret: "cli-secret".into(),
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
        };
        let opts = DevIssuerOptions {
            clients: vec![client],
            audience: "api".into(),
            access_token_ttl: Duration::from_secs(60),
        };
        let issuer = DevIssuer::start("127.0.0.1:0".parse().unwrap(), opts).await.unwrap();
        let subject = issuer.access_token("ann", "api");
        let post = |form: String| {
            format!(
                "POST /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                STANDARD.encode("cli:cli-secret"),
                form.len()
            )
        };
        let form = |token: &str| {
            format!(
                "grant_type={}&subject_token={token}&subject_token_type={}&audience=https%3A%2F%2Forders.example",
                crate::oidc::http::form_encode(crate::upstream::exchange::GRANT_TYPE),
                crate::oidc::http::form_encode(crate::config::ACCESS_TOKEN_TYPE)
            )
        };
        let (status, body) = exchange(issuer.addr, post(form(&subject))).await;
        assert!(status.contains(" 200 "), "{status} {body}");
        let answer = crate::upstream::exchange::parse_answer(http::StatusCode::OK, body.as_bytes(), None).unwrap();
        let token = answer.authorization.to_str().unwrap().strip_prefix("Bearer ").unwrap().to_string();
        let claims = issuer.state.verify_own(&token).expect("signed by the issuer");
        assert_eq!((claims["sub"].as_str(), claims["aud"].as_str()), (Some("ann"), Some("https://orders.example")));
        assert_eq!(claims["act"]["sub"], "cli");

        let tampered = format!("{}x", &subject[..subject.len() - 1]);
        let (status, body) = exchange(issuer.addr, post(form(&tampered))).await;
        assert!(status.contains(" 400 ") && body.contains("invalid_grant"), "{status} {body}");
    }

    /// `alg=RS256` at the token endpoint: a token signed with the RSA key, which the JWKS
    /// publishes next to the EC key, each pinned to its algorithm, as the gateway reads them.
    #[tokio::test]
    async fn rs256_tokens_verify_against_the_jwks() {
        use crate::auth::jwks::{KeySet, Lookup};
        let issuer = DevIssuer::start(
            "127.0.0.1:0".parse().unwrap(),
            DevIssuerOptions {
                clients: vec![DevClient {
                    id: "cli".into(),
                    secret: "cli-secret".into(),
                    redirect_uris: vec![],
                    post_logout_redirect_uris: vec![],
                }],
                audience: "api".into(),
                access_token_ttl: Duration::from_secs(60),
            },
        )
        .await
        .unwrap();
        let (_, jwks) =
            exchange(issuer.addr, "GET /jwks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into()).await;
        let set = KeySet::parse(jwks.as_bytes(), &[Algorithm::RS256, Algorithm::ES256]).unwrap();
        assert_eq!(set.len(), 2, "{jwks}");

        for (extra, alg) in [("&alg=RS256", Algorithm::RS256), ("", Algorithm::ES256), ("&alg=ES256", Algorithm::ES256)]
        {
            let (status, body) = client_credentials(&issuer, extra).await;
            assert!(status.contains(" 200 "), "{status} {body}");
            let token = body["access_token"].as_str().unwrap();
            let header = jsonwebtoken::decode_header(token).unwrap();
            assert_eq!(header.alg, alg);
            let (message, signature) = token.rsplit_once('.').unwrap();
            let Lookup::Found(key) = set.find(header.kid.as_deref(), alg) else { panic!("{alg:?}: no key") };
            assert!(key.verify(alg, message.as_bytes(), signature), "{alg:?}");
            let other = if alg == Algorithm::RS256 { Algorithm::ES256 } else { Algorithm::RS256 };
            assert!(matches!(set.find(header.kid.as_deref(), other), Lookup::AlgorithmMismatch), "{alg:?} key pinned");
            // And as any JWT library would check it.
            let jwk = serde_json::from_str::<Value>(&jwks).unwrap()["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"].as_str() == header.kid.as_deref())
                .cloned()
                .unwrap();
            let key = jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk).unwrap()).unwrap();
            let mut v = jsonwebtoken::Validation::new(alg);
            v.set_audience(&["api"]);
            v.set_issuer(&[&issuer.url]);
            let claims = jsonwebtoken::decode::<Value>(token, &key, &v).unwrap().claims;
            assert_eq!(claims["sub"], "cli");
        }
        let (status, body) = client_credentials(&issuer, "&alg=HS256").await;
        assert!(status.contains(" 400 ") && body["error"] == "invalid_request", "{status} {body}");
        // `jkt=`: the token is bound to that DPoP key (the load benchmark's DPoP mode).
        let (_, body) = client_credentials(&issuer, "&jkt=the-thumbprint").await;
        let payload = body["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["cnf"]["jkt"], "the-thumbprint", "{claims}");
    }
}
