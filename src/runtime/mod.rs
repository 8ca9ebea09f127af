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
    let auth = match &cfg.auth {
        RouteAuth::None => Auth::None,
        RouteAuth::Bearer(b) => Auth::Bearer(parts.auth.route_bearer(b)),
        RouteAuth::Login => Auth::Login(login()?),
        RouteAuth::LoginOrBearer(b) => Auth::LoginOrBearer(login()?, parts.auth.route_bearer(b)),
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
