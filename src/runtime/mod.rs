//! The live configuration: what every listener serves, built from one [`Config`] and replaced
//! as a whole when the file changes or on SIGHUP ([`reload`]). Requests read it once each
//! (one atomic load) and finish on the configuration they started with.

pub mod reload;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::login::Logins;
use crate::metrics::Metrics;
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

/// The traffic listener's gateway and the egress listeners' (one route each), by name.
pub fn gateways(config: &Config, parts: &Parts, metrics: &Metrics) -> (Gateway, Vec<(String, Gateway)>) {
    let build = |router: Router| {
        Gateway::new(
            config,
            Arc::new(router),
            parts.auth.clone(),
            parts.logins.clone(),
            parts.credentials.clone(),
            metrics.clone(),
            parts.telemetry.clone(),
        )
    };
    let main = build(Router::new(config.routes.clone()));
    let egress = config.egress.iter().map(|e| (e.name.clone(), build(Router::new(vec![e.route.clone()])))).collect();
    (main, egress)
}

impl Live {
    pub fn new(main: Gateway, egress: Vec<(String, Gateway)>) -> Live {
        Live {
            main: Arc::new(ArcSwap::from_pointee(main)),
            egress: egress.into_iter().map(|(n, g)| (n, Arc::new(ArcSwap::from_pointee(g)))).collect(),
        }
    }
}
