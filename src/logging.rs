//! Log set-up: pretty or JSON lines on stderr; the filter comes from `RUST_LOG` when set,
//! else from `log.level` in the config.

use tracing_subscriber::EnvFilter;

use crate::config::{Log, LogFormat};

pub fn init(cfg: &Log) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests starting several gateways in one process) is harmless: keep the first.
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
