//! The logins of one configuration. Routes name theirs (`Route::login`); the snapshot's routes
//! hold the one they name (resolved here by name when the snapshot is built), and `/oauth2/*`
//! is dispatched here by host and path. Nothing refers to a login by position, so a rebuilt set
//! (hot reload) is simply another `Logins`.

use std::sync::Arc;

use http::HeaderMap;

use super::LoginService;
use crate::auth::Authenticator;
use crate::authority::Authority;
use crate::config::Config;
use crate::store::metrics::RedisMetrics;
use crate::store::redis::RedisError;

/// A login that could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("login {name:?}: {source}")]
pub struct LoginsError {
    pub name: String,
    #[source]
    pub source: SetupError,
}

/// Why one login could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Its session store (Redis) could not be set up.
    #[error(transparent)]
    Store(#[from] RedisError),
    /// Its issuer is not one of the configuration's (validation rules this out).
    #[error("its issuer is not one of the configuration's")]
    NoIssuer,
}

/// Every login of a configuration, in the file's order.
#[derive(Default)]
pub struct Logins {
    all: Vec<Arc<LoginService>>,
}

impl Logins {
    /// One [`LoginService`] per `[login]` / `[[login]]` of `config`.
    /// `redis_metrics`: where Redis stores count failovers and errors (registered once per
    /// gateway, so a reload's new stores count into the same families).
    pub fn new(
        config: &Config,
        auth: Arc<Authenticator>,
        redis_metrics: Option<&RedisMetrics>,
    ) -> Result<Arc<Logins>, LoginsError> {
        let all = config
            .logins
            .iter()
            .map(|cfg| {
                LoginService::new(cfg.clone(), auth.clone(), redis_metrics)
                    .map(Arc::new)
                    .map_err(|source| LoginsError { name: cfg.name.clone(), source })
            })
            .collect::<Result<_, _>>()?;
        Ok(Arc::new(Logins { all }))
    }

    /// The login routes call `name`: how a snapshot resolves a route's `login`, once.
    pub fn by_name(&self, name: &str) -> Option<&Arc<LoginService>> {
        self.all.iter().find(|l| l.name() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<LoginService>> {
        self.all.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// The login whose endpoints `path` is under: `{public_url path}/oauth2/...` on the
    /// `public_url`'s host, the longest path winning (a login on `/wiki` next to one on `/`).
    /// A single login also answers on other hosts, as before there were several.
    pub fn owner(&self, authority: &Authority, path: &str) -> Option<&Arc<LoginService>> {
        let mut best: Option<&Arc<LoginService>> = None;
        let mut any_host = None;
        for login in &self.all {
            let cfg = login.config();
            let ours = path.strip_prefix(cfg.path.as_str()).is_some_and(|p| p.starts_with("/oauth2/"));
            if !ours {
                continue;
            }
            any_host = Some(login);
            if cfg.public_host == authority.host() && best.is_none_or(|b| b.config().path.len() < cfg.path.len()) {
                best = Some(login);
            }
        }
        best.or(any_host.filter(|_| self.all.len() == 1))
    }

    /// Removes every login's cookies from a request going upstream: an app never sees a
    /// session, its own or another app's.
    pub fn strip_cookies(&self, headers: &mut HeaderMap) {
        if !self.all.is_empty() {
            crate::util::strip_cookies(headers, |n| self.all.iter().any(|l| l.owns_cookie(n)));
        }
    }
}
