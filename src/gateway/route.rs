//! A route of the live configuration: its settings, and handles to the runtime objects it
//! refers to (its issuers' states, its login, its upstream client, its metrics), resolved once
//! when the snapshot is built (`runtime::build`). The request path follows these handles; it
//! never looks anything up by position or by name.

use std::borrow::Borrow;
use std::ops::Deref;
use std::sync::Arc;

use crate::auth::RouteBearer;
use crate::config::{self, IncomingAuthorization};
use crate::login::LoginService;
use crate::metrics::RouteMetrics;
use crate::upstream::credentials::UpstreamClient;

/// Reads as the configured route (`name`, `upstream`, `rules`, ...). `auth` and
/// `upstream_token` shadow the configured settings of the same name with their resolved form.
pub struct Route {
    cfg: config::Route,
    pub auth: Auth,
    pub upstream_token: Option<UpstreamToken>,
    /// The route's request counters and latency histogram, labelled once.
    pub metrics: RouteMetrics,
}

/// How the route authenticates callers, with what it needs.
pub enum Auth {
    None,
    Bearer(RouteBearer),
    /// A session of this login.
    Login(Arc<LoginService>),
    /// A session of this login, or else a bearer token.
    LoginOrBearer(Arc<LoginService>, RouteBearer),
}

/// The route's `upstream_token` with its client resolved.
pub struct UpstreamToken {
    pub client: Arc<UpstreamClient>,
    pub incoming: IncomingAuthorization,
    /// The client exchanges the caller's token (`grant = "token_exchange"`).
    pub exchange: bool,
}

impl Route {
    pub fn new(cfg: config::Route, auth: Auth, upstream_token: Option<UpstreamToken>, metrics: RouteMetrics) -> Route {
        Route { cfg, auth, upstream_token, metrics }
    }
}

impl Auth {
    /// The route's login, for `login` and `login_or_bearer` routes.
    pub fn login(&self) -> Option<&Arc<LoginService>> {
        match self {
            Auth::Login(l) | Auth::LoginOrBearer(l, _) => Some(l),
            Auth::None | Auth::Bearer(_) => None,
        }
    }
}

impl Deref for Route {
    type Target = config::Route;

    fn deref(&self) -> &config::Route {
        &self.cfg
    }
}

/// For the route table, which matches on the configured host, path and methods.
impl Borrow<config::Route> for Route {
    fn borrow(&self) -> &config::Route {
        &self.cfg
    }
}
