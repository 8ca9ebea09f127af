//! Prometheus metrics, registered on an explicit registry (never the global one) so tests and
//! several gateways in one process do not share state.

use http::StatusCode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Requests by route and status code (route `-` when none matched).
    pub requests: IntCounterVec,
    /// Time to response headers, by route.
    pub duration: HistogramVec,
    pub in_flight: IntGauge,
    /// Upstream failures by route and kind (connect, timeout, error).
    pub upstream_errors: IntCounterVec,
    pub connections: IntGauge,
    /// Connections closed for sending headers too slowly.
    pub header_timeouts: IntCounter,
    /// TLS certificate reloads by outcome.
    pub tls_reloads: IntCounterVec,
    /// Connections closed because the client took no response data for the write timeout.
    pub write_timeouts: IntCounter,
    /// Open WebSocket tunnels (each also counts as a connection).
    pub tunnels: IntGauge,
    /// Failed `accept` calls by listener (`traffic`, `admin`): out of file descriptors and the like.
    pub accept_errors: IntCounterVec,
    /// Requests refused with 503 because `max_connections_per_host` connections stayed busy.
    pub upstream_pool_full: IntCounter,
    /// Configuration reloads by outcome (`success`, `failure`).
    pub config_reloads: IntCounterVec,
    /// Unix time of the last configuration that went into force (start-up counts).
    pub config_last_reload_success: prometheus::Gauge,
    /// Redis session stores: failovers, reconnects, retries, command errors (by login).
    pub redis: crate::store::metrics::RedisMetrics,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("tollgate_requests_total", "Requests by route and status code"),
            &["route", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("tollgate_request_duration_seconds", "Time from request to response headers")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["route"],
        )?;
        let in_flight = IntGauge::new("tollgate_requests_in_flight", "Requests being handled")?;
        let upstream_errors = IntCounterVec::new(
            Opts::new("tollgate_upstream_errors_total", "Upstream failures by route and kind"),
            &["route", "kind"],
        )?;
        let connections = IntGauge::new("tollgate_connections", "Open client connections")?;
        let header_timeouts = IntCounter::new(
            "tollgate_header_timeouts_total",
            "Connections closed because request headers arrived too slowly",
        )?;
        let tls_reloads = IntCounterVec::new(
            Opts::new("tollgate_tls_reloads_total", "TLS certificate reloads by outcome"),
            &["outcome"],
        )?;
        let write_timeouts = IntCounter::new(
            "tollgate_write_timeouts_total",
            "Connections closed because the client took no response data within the write timeout",
        )?;
        let tunnels = IntGauge::new("tollgate_tunnels", "Open WebSocket tunnels")?;
        let accept_errors = IntCounterVec::new(
            Opts::new("tollgate_accept_errors_total", "Failed accept calls by listener"),
            &["listener"],
        )?;
        let upstream_pool_full = IntCounter::new(
            "tollgate_upstream_pool_full_total",
            "Requests refused because every allowed connection to their upstream stayed busy",
        )?;
        let config_reloads = IntCounterVec::new(
            Opts::new("tollgate_config_reloads_total", "Configuration reloads by outcome"),
            &["outcome"],
        )?;
        for outcome in ["success", "failure"] {
            config_reloads.with_label_values(&[outcome]);
        }
        let config_last_reload_success = prometheus::Gauge::new(
            "tollgate_config_last_reload_success_timestamp_seconds",
            "Unix time of the last configuration that went into force (start-up counts)",
        )?;
        config_last_reload_success.set(crate::util::unix_now() as f64);
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_last_reload_success.clone()))?;
        registry.register(Box::new(write_timeouts.clone()))?;
        registry.register(Box::new(tunnels.clone()))?;
        registry.register(Box::new(accept_errors.clone()))?;
        registry.register(Box::new(upstream_pool_full.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(header_timeouts.clone()))?;
        registry.register(Box::new(tls_reloads.clone()))?;
        let redis = crate::store::metrics::RedisMetrics::new(&registry)?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            in_flight,
            upstream_errors,
            connections,
            header_timeouts,
            tls_reloads,
            write_timeouts,
            tunnels,
            accept_errors,
            upstream_pool_full,
            config_reloads,
            config_last_reload_success,
            redis,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8 * 1024);
        // Encoding into a Vec cannot fail for well-formed metric families.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        buf
    }
}

/// Status codes whose counters are looked up once per route rather than on every request.
const COMMON_CODES: [u16; 12] = [200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 502, 503];

/// One route's metric handles, resolved at start: recording a request then touches only
/// atomics, never the label map (hashing and a lock shared by all workers).
pub struct RouteMetrics {
    name: String,
    duration: Histogram,
    codes: Vec<IntCounter>,
}

impl RouteMetrics {
    pub fn new(metrics: &Metrics, route: &str) -> RouteMetrics {
        let codes = COMMON_CODES.iter().map(|c| metrics.requests.with_label_values(&[route, &c.to_string()])).collect();
        RouteMetrics { name: route.to_string(), duration: metrics.duration.with_label_values(&[route]), codes }
    }

    pub fn record(&self, metrics: &Metrics, status: StatusCode, seconds: f64) {
        match COMMON_CODES.iter().position(|&c| c == status.as_u16()) {
            Some(i) => self.codes[i].inc(),
            None => metrics.requests.with_label_values(&[&self.name, status.as_str()]).inc(),
        }
        self.duration.observe(seconds);
    }
}
