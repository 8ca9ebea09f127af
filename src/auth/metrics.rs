//! Metrics of authentication, on the gateway's registry.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Metrics of authentication, on the gateway's registry.
#[derive(Clone)]
pub struct AuthMetrics {
    pub validations: IntCounterVec,
    pub(super) valid: IntCounter,
    pub(super) cache_hits: IntCounter,
    pub(super) cache_misses: IntCounter,
    pub jwks_fetches: IntCounterVec,
    pub discovery_failures: IntCounterVec,
    pub introspections: IntCounterVec,
    pub issuer_ready: IntGaugeVec,
}

impl AuthMetrics {
    /// Counts a refused or uncheckable token (other errors, such as a missing token, are not
    /// token checks).
    pub(super) fn count_failure(&self, e: &super::AuthError) {
        match e {
            super::AuthError::InvalidToken(why) => self.validations.with_label_values(&["invalid", why.label()]).inc(),
            super::AuthError::Unavailable(_) => self.validations.with_label_values(&["unavailable", ""]).inc(),
            _ => {}
        }
    }

    pub fn new(registry: &Registry) -> Result<AuthMetrics, prometheus::Error> {
        let validations = IntCounterVec::new(
            Opts::new("tollgate_token_validations_total", "Token checks by outcome and reason"),
            &["outcome", "reason"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new("tollgate_verified_cache_total", "Verified-token cache lookups by result"),
            &["result"],
        )?;
        let jwks_fetches = IntCounterVec::new(
            Opts::new("tollgate_jwks_fetches_total", "Key set fetches by issuer and outcome"),
            &["issuer", "outcome"],
        )?;
        let discovery_failures = IntCounterVec::new(
            Opts::new("tollgate_discovery_failures_total", "Failed discovery attempts by issuer"),
            &["issuer"],
        )?;
        let introspections = IntCounterVec::new(
            Opts::new("tollgate_introspections_total", "Introspection calls by issuer and outcome"),
            &["issuer", "outcome"],
        )?;
        let issuer_ready = IntGaugeVec::new(
            Opts::new("tollgate_issuer_ready", "1 when the issuer's metadata and keys are loaded"),
            &["issuer"],
        )?;
        for c in [&validations, &cache, &jwks_fetches, &discovery_failures, &introspections] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(issuer_ready.clone()))?;
        Ok(AuthMetrics {
            valid: validations.with_label_values(&["valid", ""]),
            cache_hits: cache.with_label_values(&["hit"]),
            cache_misses: cache.with_label_values(&["miss"]),
            validations,
            jwks_fetches,
            discovery_failures,
            introspections,
            issuer_ready,
        })
    }
}
