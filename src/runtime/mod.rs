//! The live configuration: what every listener serves, built from one [`Config`] and replaced
//! as a whole when the file changes or on SIGHUP ([`reload`]). Requests read it once each
//! (one atomic load) and finish on the configuration they started with.
//!
//! Building it resolves what the configuration names (a route's issuers, login and upstream
//! client) to handles on the runtime objects, so that a request follows `Arc`s and never looks
//! anything up by position or by name.

pub mod reload;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Authenticator;
use crate::config::{self, Config, RouteAuth};
use crate::gateway::{Auth, Gateway, Route, UpstreamToken};
use crate::login::{LoginService, Logins};
use crate::metrics::{Metrics, RouteMetrics};
use crate::router::Router;
use crate::upstream::credentials::Credentials;

/// The gateways the listeners serve: the traffic listener's and each egress listener's (by
/// name), each behind its own swappable pointer.
#[derive(Clone)]
pub struct Live {
    pub main: Arc<ArcSwap<Gateway>>,
    pub egress: Vec<(String, Arc<ArcSwap<Gateway>>)>,
}

/// What one configuration's gateways share.
pub struct Parts {
    pub auth: Arc<Authenticator>,
    pub logins: Arc<Logins>,
    pub credentials: Arc<Credentials>,
    /// Started once with the process (`[telemetry]` changes wait for a restart).
    pub telemetry: Option<crate::telemetry::Telemetry>,
}

/// A reference in the configuration that names nothing in it (validation rules these out).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("route {route:?}: no login named {login:?}")]
    NoLogin { route: String, login: String },
    #[error("route {route:?}: its upstream_token client is not one of the configuration's")]
    NoClient { route: String },
    #[error("route {route:?}: an issuer it accepts is not one of the configuration's")]
    NoIssuer { route: String },
}

/// The traffic listener's gateway and the egress listeners' (one route each), by name.
pub fn gateways(
    config: &Config,
    parts: &Parts,
    metrics: &Metrics,
) -> Result<(Gateway, Vec<(String, Gateway)>), BuildError> {
    let build = |routes: Vec<Route>| {
        Gateway::new(
            config,
            Arc::new(Router::new(routes)),
            parts.auth.clone(),
            parts.logins.clone(),
            parts.credentials.clone(),
            metrics.clone(),
            parts.telemetry.clone(),
        )
    };
    let routes = config.routes.iter().map(|r| route(r, parts, metrics)).collect::<Result<_, _>>()?;
    let main = build(routes);
    let egress = config
        .egress
        .iter()
        .map(|e| Ok((e.name.clone(), build(vec![route(&e.route, parts, metrics)?]))))
        .collect::<Result<_, _>>()?;
    Ok((main, egress))
}

/// `cfg` with what it names resolved to this snapshot's runtime objects.
fn route(cfg: &config::Route, parts: &Parts, metrics: &Metrics) -> Result<Route, BuildError> {
    let login = || -> Result<Arc<LoginService>, BuildError> {
        let name = cfg.login.as_deref().unwrap_or_default();
        let found = parts.logins.by_name(name).cloned();
        found.ok_or_else(|| BuildError::NoLogin { route: cfg.name.clone(), login: name.to_string() })
    };
    let bearer = |b| parts.auth.route_bearer(b).ok_or_else(|| BuildError::NoIssuer { route: cfg.name.clone() });
    let auth = match &cfg.auth {
        RouteAuth::None => Auth::None,
        RouteAuth::Bearer(b) => Auth::Bearer(bearer(b)?),
        RouteAuth::Login => Auth::Login(login()?),
        RouteAuth::LoginOrBearer(b) => Auth::LoginOrBearer(login()?, bearer(b)?),
    };
    let upstream_token = match &cfg.upstream_token {
        None => None,
        Some(t) => Some(UpstreamToken {
            client: parts
                .credentials
                .configured_client(t.client)
                .cloned()
                .ok_or_else(|| BuildError::NoClient { route: cfg.name.clone() })?,
            incoming: t.incoming.clone(),
            exchange: t.exchange,
        }),
    };
    Ok(Route::new(cfg.clone(), auth, upstream_token, RouteMetrics::new(metrics, &cfg.name)))
}

impl Live {
    pub fn new(main: Gateway, egress: Vec<(String, Gateway)>) -> Live {
        Live {
            main: Arc::new(ArcSwap::from_pointee(main)),
            egress: egress.into_iter().map(|(n, g)| (n, Arc::new(ArcSwap::from_pointee(g)))).collect(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::auth::AuthMetrics;
    use crate::oidc::http::IdpClient;
    use crate::upstream::credentials::CredentialMetrics;

    const ISSUERS: &str = "[[issuer]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/a\"\naudiences = [\"api\"]\n\n\
                           [[issuer]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/b\"\naudiences = [\"api\"]\n\n";
    const REST: &str = "[login]\nissuer = \"b\"\nclient_id = \"web\"\nclient_secret = \"s\"\n\
                        public_url = \"http://127.0.0.1:8080\"\n\
                        cookie_secret = \"unit-test-cookie-secret-of-32-bytes-or-more\"\n\n\
                        [[client]]\nname = \"orders\"\nissuer = \"a\"\nclient_id = \"svc\"\nclient_secret = \"s\"\n\n\
                        [[route]]\nname = \"api\"\nauth = \"bearer\"\nissuers = [\"b\"]\npath = \"/api/\"\nupstream = \"http://127.0.0.1:9\"\n\n\
                        [[route]]\nname = \"app\"\nauth = \"login\"\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n\
                        upstream_token = \"orders\"\n";

    fn config(issuers: &str) -> Config {
        Config::from_str(&format!("{issuers}{REST}"), std::path::Path::new("t.toml"), &|_| None).unwrap()
    }

    /// What `config`'s snapshot is built from; `before`: the parts of the configuration it
    /// replaces (a reload), or none (start).
    fn parts(config: &Config, before: Option<&Parts>) -> Parts {
        let (auth, credentials) = match before {
            Some(b) => {
                let auth = b.auth.next(config);
                (auth.clone(), b.credentials.next(config, auth))
            }
            None => {
                let registry = prometheus::Registry::new();
                let tls = crate::tls::client_config(&config.upstream).unwrap();
                let idp = IdpClient::new(tls, std::time::Duration::from_secs(1));
                let auth = Authenticator::new(config, idp, AuthMetrics::new(&registry).unwrap());
                (auth.clone(), Credentials::new(config, auth, CredentialMetrics::new(&registry).unwrap()))
            }
        };
        let logins = Logins::new(config, auth.clone(), None).unwrap();
        Parts { auth, logins, credentials, telemetry: None }
    }

    fn routes(gateway: &Gateway) -> (&Route, &Route) {
        match gateway.router().routes() {
            [api, app] => (api, app),
            other => panic!("{} routes", other.len()),
        }
    }

    fn issuers(route: &Route) -> &[Arc<crate::auth::issuer::IssuerState>] {
        match &route.auth {
            Auth::Bearer(b) => &b.issuers,
            _ => panic!("{} is not a bearer route", route.name),
        }
    }

    /// The snapshot's routes hold the runtime objects they name, and a reload's snapshot holds
    /// the very same ones for what did not change: state carries over by identity, never by a
    /// position that a changed file may have moved.
    #[test]
    fn routes_hold_what_they_name_and_reloads_keep_it_by_identity() {
        let metrics = Metrics::new().unwrap();
        let first = config(ISSUERS);
        let before = parts(&first, None);
        let (gateway, _) = gateways(&first, &before, &metrics).unwrap();
        let (api, app) = routes(&gateway);
        let b = before.auth.configured_issuer(1).unwrap();
        assert!(issuers(api).len() == 1 && Arc::ptr_eq(&issuers(api)[0], b), "api accepts issuer b itself");
        let login = app.auth.login().unwrap();
        assert!(Arc::ptr_eq(login, before.logins.by_name("default").unwrap()));
        let client = &app.upstream_token.as_ref().unwrap().client;
        assert!(Arc::ptr_eq(client, before.credentials.configured_client(0).unwrap()));

        // The same issuers, listed the other way round: b is now number 0, and still itself.
        let swapped = "[[issuer]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/b\"\naudiences = [\"api\"]\n\n\
                       [[issuer]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/a\"\naudiences = [\"api\"]\n\n";
        let second = config(swapped);
        let after = parts(&second, Some(&before));
        let (reloaded, _) = gateways(&second, &after, &metrics).unwrap();
        let (api2, _) = routes(&reloaded);
        assert!(Arc::ptr_eq(&issuers(api2)[0], b), "the reloaded route holds the kept issuer b");
        assert!(Arc::ptr_eq(after.auth.configured_issuer(0).unwrap(), b));
    }
}
