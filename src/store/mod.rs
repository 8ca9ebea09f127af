//! Stores shared between replicas: Redis, reached directly or through Sentinel, over TCP or TLS.
//!
//! By job: [`url`] (the URL forms), [`conn`] (one connection: TLS, `AUTH`, RESP2), [`sentinel`]
//! (finding and checking the primary), [`redis`] (the pool, failover and retries, and the
//! commands sessions use), [`tls`] (the client TLS settings), [`metrics`].

pub mod conn;
pub mod metrics;
pub mod redis;
pub mod sentinel;
pub mod tls;
pub mod url;

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The connection could not be made or broke.
    #[error("redis at {addr}: {source}")]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// Connect, handshake or reply took longer than the timeout.
    #[error("redis at {addr} timed out")]
    Timeout { addr: String },
    /// The TLS handshake failed (certificate not trusted, wrong name, no TLS on the port).
    #[error("redis at {addr}: TLS: {why}")]
    Tls { addr: String, why: String },
    /// An error reply.
    #[error("redis error: {0}")]
    Server(String),
    /// A reply of an unexpected shape.
    #[error("unexpected redis reply")]
    Protocol,
    /// No sentinel named a primary that answers `ROLE` as master.
    #[error("no primary for {master:?}: {why}")]
    NoPrimary { master: String, why: String },
    /// The server is not (or no longer) the primary.
    #[error("redis at {addr} is not the primary (ROLE: {role})")]
    NotPrimary { addr: String, role: String },
    /// The URL cannot be used.
    #[error("invalid redis URL ({0}): expected {forms}", forms = url::FORMS)]
    Url(#[from] url::UrlError),
    /// The TLS settings cannot be used (such as a CA file without certificates).
    #[error("redis TLS settings: {0}")]
    TlsConfig(String),
}

impl RedisError {
    /// True when the server we talk to may be gone or no longer the primary: pooled
    /// connections are dropped and the primary looked up again.
    pub fn is_failover(&self) -> bool {
        match self {
            RedisError::Io { .. }
            | RedisError::Timeout { .. }
            | RedisError::Tls { .. }
            | RedisError::NoPrimary { .. }
            | RedisError::NotPrimary { .. } => true,
            // READONLY: we reached a replica (a demoted primary); LOADING: a restarted server
            // still reading its data; MASTERDOWN: a replica that lost its primary.
            RedisError::Server(msg) => ["READONLY", "LOADING", "MASTERDOWN"].iter().any(|p| msg.starts_with(p)),
            RedisError::Protocol | RedisError::Url(_) | RedisError::TlsConfig(_) => false,
        }
    }

    /// The `kind` label of `tollgate_redis_command_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            RedisError::Io { .. } => "io",
            RedisError::Timeout { .. } => "timeout",
            RedisError::Tls { .. } | RedisError::TlsConfig(_) => "tls",
            RedisError::Server(_) => "server",
            RedisError::Protocol | RedisError::Url(_) => "protocol",
            RedisError::NoPrimary { .. } | RedisError::NotPrimary { .. } => "no_primary",
        }
    }
}
