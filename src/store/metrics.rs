//! Redis metrics, on the gateway's registry, labelled by the login whose store it is.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::RedisError;

/// The metric families, registered once per gateway (reloads reuse them).
#[derive(Clone)]
pub struct RedisMetrics {
    failovers: IntCounterVec,
    reconnects: IntCounterVec,
    retries: IntCounterVec,
    errors: IntCounterVec,
}

/// One store's handles, resolved when it is built: counting touches only atomics.
#[derive(Clone)]
pub struct StoreMetrics {
    pub failovers: IntCounter,
    pub reconnects: IntCounter,
    pub retries: IntCounter,
    errors: IntCounterVec,
    login: String,
}

impl RedisMetrics {
    pub fn new(registry: &Registry) -> Result<RedisMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| IntCounterVec::new(Opts::new(name, help), labels);
        let m = RedisMetrics {
            failovers: counter(
                "tollgate_redis_failovers_total",
                "Times the sentinels named a primary other than the one in use",
                &["login"],
            )?,
            reconnects: counter(
                "tollgate_redis_reconnects_total",
                "Times pooled Redis connections were dropped after a connection error, READONLY or LOADING",
                &["login"],
            )?,
            retries: counter("tollgate_redis_retries_total", "Redis commands sent again after a failure", &["login"])?,
            errors: counter(
                "tollgate_redis_command_errors_total",
                "Redis commands that failed (after retries) by kind",
                &["login", "kind"],
            )?,
        };
        for c in [&m.failovers, &m.reconnects, &m.retries, &m.errors] {
            registry.register(Box::new(c.clone()))?;
        }
        Ok(m)
    }

    pub fn for_login(&self, login: &str) -> StoreMetrics {
        StoreMetrics {
            failovers: self.failovers.with_label_values(&[login]),
            reconnects: self.reconnects.with_label_values(&[login]),
            retries: self.retries.with_label_values(&[login]),
            errors: self.errors.clone(),
            login: login.to_string(),
        }
    }
}

impl StoreMetrics {
    /// A failed command (rare: the label lookup is fine here).
    pub fn error(&self, e: &RedisError) {
        self.errors.with_label_values(&[&self.login, e.kind()]).inc();
    }
}
