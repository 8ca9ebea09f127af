//! Configuration changes without a restart. On SIGHUP, and when the file's bytes change
//! (checked every `[server] config_check_interval`), the whole file is read and validated
//! again. A valid one replaces the live gateways at once; an unchanged issuer keeps its keys and
//! verified tokens, an unchanged client its token, and sessions live on in their cookies or in
//! Redis. An invalid one changes nothing and is reported with the file, field and reason.
//! Settings bound at start (listen addresses, workers, TLS, connection limits and timers, the
//! upstream pool, logging) are named in the log and wait for a restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{gateways, Live, Parts};
use crate::config::Config;
use crate::login::Logins;
use crate::metrics::Metrics;

/// Watches the configuration file and applies its changes.
pub struct Reloader {
    file: PathBuf,
    live: Live,
    /// The configuration the process started with: what restart-only settings still are.
    started: Config,
    /// How often the file is checked, from the configuration in force.
    interval: Duration,
    /// The bytes last read from the file (valid or not), so a bad file is reported once.
    last_seen: Option<Vec<u8>>,
    metrics: Metrics,
}

/// Why a valid file could still not be applied.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error("login: {0}")]
    Login(String),
    #[error(transparent)]
    Build(#[from] super::BuildError),
}

impl Reloader {
    pub fn new(started: Config, live: Live, metrics: Metrics) -> Reloader {
        let last_seen = std::fs::read(&started.file).ok();
        Reloader {
            file: started.file.clone(),
            interval: started.server.config_check_interval,
            live,
            started,
            last_seen,
            metrics,
        }
    }

    /// Runs on the background runtime until it stops.
    pub async fn run(mut self) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; configuration reloads only by file checks");
                None
            }
        };
        loop {
            let interval = self.interval;
            tokio::select! {
                Some(()) = async { hangup.as_mut()?.recv().await } => {
                    if let Some(bytes) = self.read() {
                        self.reload("SIGHUP", bytes);
                    }
                }
                _ = tokio::time::sleep(interval), if !interval.is_zero() => {
                    match self.read() {
                        Some(bytes) if self.last_seen.as_deref() != Some(&bytes[..]) => self.reload("file changed", bytes),
                        _ => {}
                    }
                }
            }
        }
    }

    /// The file's bytes: a change is told by them (a Kubernetes ConfigMap update swaps a
    /// symlink, so times say little), and what is validated is exactly what was compared.
    fn read(&self) -> Option<Vec<u8>> {
        match std::fs::read(&self.file) {
            Ok(bytes) => Some(bytes),
            // Mid-update or gone: keep serving; a later check (or SIGHUP) tries again.
            Err(e) => {
                tracing::debug!(file = %self.file.display(), error = %e, "configuration file unreadable; not reloaded");
                None
            }
        }
    }

    /// Validates and applies `bytes`; on any error the running configuration stays, and the
    /// same bytes are not reported again by the file check.
    fn reload(&mut self, why: &'static str, bytes: Vec<u8>) {
        let parsed = Config::from_file_bytes(&self.file, &bytes);
        self.last_seen = Some(bytes);
        let config = match parsed {
            Ok(c) => c,
            Err(e) => {
                self.metrics.config_reloads.with_label_values(&["failure"]).inc();
                for line in e.to_string().lines() {
                    tracing::error!(
                        trigger = why,
                        error = line,
                        "configuration reload refused; the running configuration stays"
                    );
                }
                return;
            }
        };
        match self.apply(&config) {
            Ok(summary) => {
                self.metrics.config_reloads.with_label_values(&["success"]).inc();
                self.metrics.config_last_reload_success.set(crate::util::unix_now() as f64);
                self.interval = config.server.config_check_interval;
                tracing::info!(trigger = why, file = %self.file.display(), routes = config.routes.len(), %summary, "configuration reloaded");
                for field in restart_only(&self.started, &config) {
                    tracing::warn!(field, "changed in the file, but takes effect only after a restart");
                }
            }
            Err(e) => {
                self.metrics.config_reloads.with_label_values(&["failure"]).inc();
                tracing::error!(trigger = why, file = %self.file.display(), error = %e, "configuration reload refused; the running configuration stays");
            }
        }
    }

    /// Builds the new gateways from what the old ones had, swaps them in, then hands background
    /// work over (issuers no longer used stop, new ones start; client tokens move).
    fn apply(&self, config: &Config) -> Result<String, ApplyError> {
        let current = self.live.main.load_full();
        let auth = current.auth().next(config);
        let credentials = current.credentials().next(config, auth.clone());
        let logins = Logins::new(config, auth.clone(), Some(&self.metrics.redis))
            .map_err(|e| ApplyError::Login(e.to_string()))?;
        let telemetry = current.telemetry().cloned();
        let parts = Parts { auth: auth.clone(), logins, credentials: credentials.clone(), telemetry };
        let (main, egress) = gateways(config, &parts, &self.metrics)?;
        self.live.main.store(Arc::new(main));
        for (name, gateway) in egress {
            // A new egress listener needs a socket: it waits for a restart (named below).
            if let Some((_, slot)) = self.live.egress.iter().find(|(n, _)| *n == name) {
                slot.store(Arc::new(gateway));
            }
        }
        let (kept, added, retired) = current.auth().hand_over(&auth);
        current.credentials().hand_over(&credentials);
        Ok(format!("issuers kept {kept}, added {added}, retired {retired}"))
    }
}

/// Settings that changed but are bound at start, by field name.
fn restart_only(started: &Config, now: &Config) -> Vec<&'static str> {
    let (a, b) = (&started.server, &now.server);
    let mut changed = Vec::new();
    let mut check = |field: &'static str, same: bool| {
        if !same {
            changed.push(field);
        }
    };
    check("server.listen", a.listen == b.listen);
    check("server.workers", a.workers == b.workers);
    check("server.tls", format!("{:?}", a.tls) == format!("{:?}", b.tls));
    check("server.header_read_timeout", a.header_read_timeout == b.header_read_timeout);
    check("server.idle_timeout", a.idle_timeout == b.idle_timeout);
    check("server.write_timeout", a.write_timeout == b.write_timeout);
    check("server.tunnel_idle_timeout", a.tunnel_idle_timeout == b.tunnel_idle_timeout);
    check("server.max_header_bytes", a.max_header_bytes == b.max_header_bytes);
    check("server.max_connections", a.max_connections == b.max_connections);
    check("server.max_concurrent_streams", a.max_concurrent_streams == b.max_concurrent_streams);
    check("server.drain_timeout", a.drain_timeout == b.drain_timeout);
    check("admin", format!("{:?}", started.admin) == format!("{:?}", now.admin));
    check("upstream", format!("{:?}", started.upstream) == format!("{:?}", now.upstream));
    check("log.format", started.log.format == now.log.format);
    check("log.level", started.log.level == now.log.level);
    check("telemetry", started.telemetry == now.telemetry);
    let listeners = |c: &Config| c.egress.iter().map(|e| (e.name.clone(), e.listen)).collect::<Vec<_>>();
    check("egress (names and listen addresses)", listeners(started) == listeners(now));
    changed
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(extra_server: &str) -> Config {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:1\"\nworkers = 1\n{extra_server}\n[[route]]\nauth = \"none\"\nupstream = \"http://127.0.0.1:2\"\n"
        );
        Config::from_str(&text, std::path::Path::new("t.toml"), &|_| None).unwrap()
    }

    #[test]
    fn restart_only_settings_are_named() {
        assert!(restart_only(&config(""), &config("")).is_empty());
        assert_eq!(restart_only(&config(""), &config("idle_timeout = \"5s\"")), vec!["server.idle_timeout"]);
        assert!(restart_only(&config(""), &config("trusted_proxies = [\"10.0.0.0/8\"]")).is_empty(), "live");
        assert!(restart_only(&config(""), &config("config_check_interval = \"1s\"")).is_empty(), "live");
    }
}
