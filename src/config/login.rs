//! Validation of `[login]`: the OIDC client for browser login and its sessions.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use jsonwebtoken::{Algorithm, EncodingKey};

use super::raw::RawLogin;
use super::validate::Check;
use super::*;
use crate::secret::Secret;

/// Browser login settings.
#[derive(Debug, Clone)]
pub struct Login {
    /// Index into `Config::issuers`.
    pub issuer: usize,
    pub client_id: String,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub extra_params: Vec<(String, String)>,
    /// Scheme and authority the browser uses, like `https://app.example.com` (no trailing slash).
    pub public_url: String,
    pub public_host: String,
    /// Cookies get `Secure` and the `__Host-` prefix (PUBLIC_URL is https).
    pub secure: bool,
    /// Cookie keys: the first seals, all open.
    pub cookie_secrets: Vec<Secret>,
    /// The session cookie's name, prefix included.
    pub cookie_name: String,
    pub store: SessionStore,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
    pub refresh_before: Duration,
    pub userinfo: bool,
    /// Hosts (exact, or `.suffix`) that `rd` may point to besides PUBLIC_URL's own.
    pub allowed_redirect_hosts: Vec<String>,
    pub post_logout_redirect: String,
    pub auth_request_access_token: bool,
}

impl Login {
    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth2/callback", self.public_url)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStore {
    Cookie,
    /// The URL may hold a password.
    Redis(Secret),
}

/// Client authentication at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    ClientSecretBasic(Secret),
    ClientSecretPost(Secret),
    PrivateKeyJwt(PrivateKey),
}

/// A private key for `private_key_jwt` (RFC 7523), read from a PEM file at start.
#[derive(Clone)]
pub struct PrivateKey {
    pub key: Arc<EncodingKey>,
    pub alg: Algorithm,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey({:?}, [redacted])", self.alg)
    }
}

pub(super) fn login(c: &mut Check, raw: Option<RawLogin>, issuers: &[Issuer], base_dir: &Path) -> Option<Login> {
    let r = raw?;
    let issuer = match &r.issuer {
        Some(name) => issuers.iter().position(|i| &i.name == name).or_else(|| {
            c.err("login.issuer", format!("no issuer named {name:?}"));
            None
        }),
        None if issuers.len() == 1 => Some(0),
        None => {
            c.err("login.issuer", "name the [[issuer]] used for login (there is not exactly one)");
            None
        }
    };
    let (public_url, public_host, secure) = match public_url(&r.public_url) {
        Ok(p) => p,
        Err(e) => {
            c.err("login.public_url", e);
            (String::new(), String::new(), false)
        }
    };
    let client_auth =
        client_auth(c, "login", r.auth_method.as_deref(), r.client_secret, r.private_key_file.as_deref(), base_dir);
    let cookie_secrets: Vec<Secret> = match &r.cookie_secret {
        None => {
            c.err("login.cookie_secret", "required (32 or more random bytes, e.g. `openssl rand -base64 32`); several, comma-separated, rotate keys: the first seals, all open");
            Vec::new()
        }
        Some(s) => s.split(',').map(str::trim).filter(|k| !k.is_empty()).map(Secret::new).collect(),
    };
    if r.cookie_secret.is_some() && (cookie_secrets.is_empty() || cookie_secrets.iter().any(|k| k.expose().len() < 32))
    {
        c.err("login.cookie_secret", "every key must be at least 32 characters (e.g. `openssl rand -base64 32`)");
    }
    let base_name = r.cookie_name.unwrap_or_else(|| "tollgate".into());
    if base_name.is_empty() || !base_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        c.err("login.cookie_name", "use letters, digits, '-' and '_' only");
    }
    let store = match r.session_store.as_deref() {
        None | Some("cookie") => SessionStore::Cookie,
        Some("redis") => match r.redis_url {
            Some(u) => match crate::store::redis::Redis::from_url(&u) {
                Ok(_) => SessionStore::Redis(Secret::new(u)),
                Err(e) => {
                    c.err("login.redis_url", e.to_string());
                    SessionStore::Cookie
                }
            },
            None => {
                c.err("login.redis_url", "required with session_store = \"redis\": redis://[:PASSWORD@]HOST:PORT[/DB]");
                SessionStore::Cookie
            }
        },
        Some(other) => {
            c.err("login.session_store", format!("unknown store {other:?}: use \"cookie\" or \"redis\""));
            SessionStore::Cookie
        }
    };
    let mut scopes = r.scopes.unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let reserved = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ];
    for k in r.extra_params.keys() {
        if reserved.contains(&k.as_str()) {
            c.err(format!("login.extra_params.{k}"), "set by tollgate itself");
        }
    }
    let post_logout_redirect = r.post_logout_redirect.unwrap_or_else(|| format!("{public_url}/"));
    Some(Login {
        issuer: issuer.unwrap_or(0),
        client_id: r.client_id,
        client_auth,
        scopes,
        extra_params: r.extra_params.into_iter().collect(),
        cookie_name: if secure { format!("__Host-{base_name}") } else { base_name },
        public_url,
        public_host,
        secure,
        cookie_secrets,
        store,
        idle_timeout: c.duration(
            "login.session_idle_timeout",
            r.session_idle_timeout.as_deref(),
            Duration::from_secs(8 * 3600),
        ),
        lifetime: c.duration("login.session_lifetime", r.session_lifetime.as_deref(), Duration::from_secs(7 * 86_400)),
        refresh_before: c.duration("login.refresh_before", r.refresh_before.as_deref(), Duration::from_secs(60)),
        userinfo: r.userinfo,
        allowed_redirect_hosts: r.allowed_redirect_hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
        post_logout_redirect,
        auth_request_access_token: r.auth_request_access_token,
    })
}

/// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
pub(super) fn client_auth(
    c: &mut Check,
    at: &str,
    method: Option<&str>,
    secret: Option<String>,
    key_file: Option<&str>,
    base_dir: &Path,
) -> ClientAuth {
    let need_secret = |c: &mut Check, secret: Option<String>| {
        secret.map(Secret::new).unwrap_or_else(|| {
            c.err(format!("{at}.client_secret"), "required (or client_secret_file)");
            Secret::new("")
        })
    };
    match method {
        None | Some("client_secret_basic") => ClientAuth::ClientSecretBasic(need_secret(c, secret)),
        Some("client_secret_post") => ClientAuth::ClientSecretPost(need_secret(c, secret)),
        Some("private_key_jwt") => {
            let Some(file) = key_file else {
                c.err(format!("{at}.private_key_file"), "required with auth_method = \"private_key_jwt\"");
                return ClientAuth::ClientSecretBasic(Secret::new(""));
            };
            match read_private_key(&base_dir.join(file)) {
                Ok(k) => ClientAuth::PrivateKeyJwt(k),
                Err(e) => {
                    c.err(format!("{at}.private_key_file"), e);
                    ClientAuth::ClientSecretBasic(Secret::new(""))
                }
            }
        }
        Some(other) => {
            c.err(
                format!("{at}.auth_method"),
                format!("unknown method {other:?}: use client_secret_basic, client_secret_post or private_key_jwt"),
            );
            ClientAuth::ClientSecretBasic(Secret::new(""))
        }
    }
}

fn read_private_key(path: &Path) -> Result<PrivateKey, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (key, alg) = if let Ok(k) = EncodingKey::from_rsa_pem(&pem) {
        (k, Algorithm::RS256)
    } else if let Ok(k) = EncodingKey::from_ec_pem(&pem) {
        (k, Algorithm::ES256)
    } else if let Ok(k) = EncodingKey::from_ed_pem(&pem) {
        (k, Algorithm::EdDSA)
    } else {
        return Err(format!("{}: not an RSA, EC P-256 or Ed25519 private key in PEM", path.display()));
    };
    Ok(PrivateKey { key: Arc::new(key), alg })
}

/// PUBLIC_URL: `https://host[:port]` (plain http allowed, without secure cookies). Returns the
/// origin without trailing slash, the host, and whether it is https.
fn public_url(s: &str) -> Result<(String, String, bool), String> {
    let uri: Uri = s.parse().map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    let secure = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(format!("invalid URL {s:?}: the scheme must be https (or http)")),
    };
    let authority = uri.authority().ok_or_else(|| format!("invalid URL {s:?}: no host"))?;
    if authority.as_str().contains('@') || uri.query().is_some() || !matches!(uri.path(), "" | "/") {
        return Err(format!("{s:?}: give only scheme and host, like https://app.example.com"));
    }
    let scheme = if secure { "https" } else { "http" };
    Ok((
        format!("{scheme}://{}", authority.as_str().to_ascii_lowercase()),
        authority.host().to_ascii_lowercase(),
        secure,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn public_urls() {
        assert_eq!(
            super::public_url("https://App.example.com/").unwrap(),
            ("https://app.example.com".into(), "app.example.com".into(), true)
        );
        assert_eq!(super::public_url("http://127.0.0.1:8080").unwrap().2, false);
        for bad in ["app.example.com", "https://a/b", "https://u@a", "ftp://a", "https://a/?x=1"] {
            assert!(super::public_url(bad).is_err(), "{bad}");
        }
    }
}
