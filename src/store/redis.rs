//! A small Redis client: the handful of commands sessions need, over RESP2, with a pool of
//! connections to the primary. Kept in-house because the `redis` crate would add more build
//! than it saves.
//!
//! Failover: an error that means the server may be gone or demoted (connection refused or
//! broken, timeout, `READONLY`, `LOADING`, `MASTERDOWN`) drops every pooled connection and, with
//! Sentinel, forgets the primary, so the next connection asks the sentinels again. The command
//! is then retried, at most [`MAX_ATTEMPTS`] times within [`RETRY_BUDGET`]:
//! - any command, when it cannot have run: no connection, or the server refused it (READONLY,
//!   LOADING, MASTERDOWN);
//! - after a reply was lost (the connection broke or timed out once the command was sent) only
//!   the idempotent ones: `GET`, `SMEMBERS`, `DEL`, `SET key value EX ttl` (the same value and
//!   expiry twice is the same outcome), `SET ... XX` of the same value, `SADD` and `EXPIRE`. The
//!   refresh lock (`SET NX`) is not: if the lost reply had taken the lock, a retry would find it
//!   taken and this replica would wait for a refresh that nobody does.
//!
//! Writes acknowledged by a primary just before it died may be lost if its replica had not yet
//! received them; Redis replication is asynchronous.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use super::conn::Reply;
use super::conn::{Conn, Dialer};
use super::metrics::StoreMetrics;
use super::sentinel::{open_primary, select, Lookup};
use super::url::{Endpoint, RedisUrl, Target};
pub use super::RedisError;

/// Connect (with TLS handshake) and each command's reply.
const TIMEOUT: Duration = Duration::from_secs(3);
/// Attempts of one command, the first included.
pub const MAX_ATTEMPTS: u32 = 4;
/// A command is not tried again once this long has passed since its first attempt.
pub const RETRY_BUDGET: Duration = Duration::from_secs(5);
/// Pauses before the 2nd, 3rd and 4th attempt: a failover takes a moment.
const BACKOFF: [Duration; MAX_ATTEMPTS as usize - 1] =
    [Duration::from_millis(25), Duration::from_millis(150), Duration::from_millis(500)];
/// After a lookup found no primary, requests fail at once for this long instead of each asking
/// the sentinels again (they would all get the same answer).
const LOOKUP_HOLDOFF: Duration = Duration::from_millis(100);
const MAX_IDLE: usize = 32;

/// Whether a command may be sent again after its reply was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice is the same as once.
    Idempotent,
    /// Only when it cannot have run.
    IfNotSent,
}

pub struct Redis {
    url: RedisUrl,
    dialer: Dialer,
    pool: Mutex<Pool>,
    /// One sentinel lookup at a time; the others wait for its answer.
    lookup: tokio::sync::Mutex<()>,
    metrics: Option<StoreMetrics>,
}

#[derive(Default)]
struct Pool {
    /// Bumped when the connections are dropped; a connection from an older one is not reused.
    generation: u64,
    idle: Vec<(Conn, u64)>,
    /// The primary the sentinels named and that answered ROLE as master.
    primary: Option<Endpoint>,
    /// The last primary in use, to count failovers.
    last_primary: Option<Endpoint>,
    lookup_failed: Option<Instant>,
    /// The sentinel that answered last.
    sentinel: usize,
}

/// A failed attempt, and whether the command may have run.
struct Failure {
    error: RedisError,
    sent: bool,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.url.target {
            Target::Direct(ep) => write!(f, "Redis({ep}/{})", self.url.db),
            Target::Sentinel { master, .. } => write!(f, "Redis(sentinel {master}/{})", self.url.db),
        }
    }
}

impl Redis {
    /// A client for `url` (see [`super::url`]); `ca_pem` is the CA file's contents for TLS.
    pub fn new(url: &str, ca_pem: Option<&[u8]>, metrics: Option<StoreMetrics>) -> Result<Redis, RedisError> {
        let url = RedisUrl::parse(url)?;
        let tls = match (url.tls, ca_pem) {
            (true, ca) => {
                Some(tokio_rustls::TlsConnector::from(super::tls::client_config(ca).map_err(RedisError::TlsConfig)?))
            }
            (false, None) => None,
            (false, Some(_)) => return Err(RedisError::TlsConfig("a CA file needs a rediss:// URL".into())),
        };
        Ok(Redis {
            url,
            dialer: Dialer { tls, timeout: TIMEOUT },
            pool: Mutex::new(Pool::default()),
            lookup: tokio::sync::Mutex::new(()),
            metrics,
        })
    }

    /// `redis://...` without TLS settings (tests and tools).
    pub fn from_url(url: &str) -> Result<Redis, RedisError> {
        Redis::new(url, None, None)
    }

    /// Runs one command and returns its reply, following a failover (see the module's notes).
    pub async fn cmd(&self, args: &[&[u8]], retry: Retry) -> Result<Reply, RedisError> {
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let left = RETRY_BUDGET.saturating_sub(started.elapsed());
            let failure = match tokio::time::timeout(left.max(TIMEOUT), self.attempt(args)).await {
                Ok(Ok(reply)) => return Ok(reply),
                Ok(Err(f)) => f,
                Err(_) => Failure { error: RedisError::Timeout { addr: format!("{self:?}") }, sent: true },
            };
            let pause = BACKOFF.get(attempt).copied();
            attempt += 1;
            let again = failure.error.is_failover()
                && (retry == Retry::Idempotent || !failure.sent)
                && pause.is_some_and(|p| started.elapsed() + p < RETRY_BUDGET);
            match pause.filter(|_| again) {
                Some(p) => {
                    tracing::debug!(error = %failure.error, attempt, "redis command failed; retrying");
                    if let Some(m) = &self.metrics {
                        m.retries.inc();
                    }
                    tokio::time::sleep(p).await;
                }
                None => {
                    if let Some(m) = &self.metrics {
                        m.error(&failure.error);
                    }
                    return Err(failure.error);
                }
            }
        }
    }

    async fn attempt(&self, args: &[&[u8]]) -> Result<Reply, Failure> {
        let (pooled, generation) = self.take_idle();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect(generation).await.map_err(|e| self.failed(e, false, generation))?,
        };
        match conn.roundtrip(args, TIMEOUT).await {
            Err(e) => Err(self.failed(e, true, generation)),
            Ok(result) => {
                let result = result.map_err(RedisError::Server);
                let failover = result.as_ref().is_err_and(RedisError::is_failover);
                if !failover {
                    self.put_idle(conn, generation);
                }
                // An error reply means the command did not run (READONLY and the like included).
                result.map_err(|e| self.failed(e, false, generation))
            }
        }
    }

    /// Records a failure; one that means a failover drops the pool (once per generation).
    fn failed(&self, error: RedisError, sent: bool, generation: u64) -> Failure {
        // A failed lookup had nothing connected to drop.
        if error.is_failover() && !matches!(error, RedisError::NoPrimary { .. }) {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            if pool.generation == generation {
                tracing::warn!(error = %error, store = ?self, "redis connection failed; reconnecting");
                pool.generation += 1;
                pool.idle.clear();
                pool.primary = None;
                if let Some(m) = &self.metrics {
                    m.reconnects.inc();
                }
            }
        }
        Failure { error, sent }
    }

    fn take_idle(&self) -> (Option<Conn>, u64) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        (pool.idle.pop().map(|(c, _)| c), pool.generation)
    }

    fn put_idle(&self, conn: Conn, generation: u64) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.generation == generation && pool.idle.len() < MAX_IDLE {
            pool.idle.push((conn, generation));
        }
    }

    /// A new connection to the primary: the configured server, or the one the sentinels name.
    async fn connect(&self, generation: u64) -> Result<Conn, RedisError> {
        let (auth, db) = (self.url.auth.as_ref(), self.url.db);
        match &self.url.target {
            Target::Direct(ep) => {
                let mut conn = self.dialer.dial(ep, auth).await?;
                select(&mut conn, db, TIMEOUT).await?;
                Ok(conn)
            }
            Target::Sentinel { sentinels, master, auth: sentinel_auth } => {
                if let Some(known) = self.known_primary(generation)? {
                    return open_primary(&self.dialer, &known, auth, db).await;
                }
                let first = self.pool.lock().unwrap_or_else(|p| p.into_inner()).sentinel;
                let sentinel_auth = sentinel_auth.as_ref();
                let lookup = Lookup { sentinels, master, sentinel_auth, auth, db, dialer: &self.dialer, first };
                self.look_up(&lookup, generation).await
            }
        }
    }

    /// The primary in use, if there is one for this generation; an error while a failed
    /// lookup is fresh.
    fn known_primary(&self, generation: u64) -> Result<Option<Endpoint>, RedisError> {
        let pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.generation == generation {
            if let Some(p) = &pool.primary {
                return Ok(Some(p.clone()));
            }
        }
        match pool.lookup_failed {
            Some(at) if at.elapsed() < LOOKUP_HOLDOFF => Err(self.no_primary("the last lookup just failed")),
            _ => Ok(None),
        }
    }

    /// Asks the sentinels, one task at a time: a task that waited finds the answer in place.
    async fn look_up(&self, lookup: &Lookup<'_>, generation: u64) -> Result<Conn, RedisError> {
        let _one = tokio::time::timeout(RETRY_BUDGET, self.lookup.lock())
            .await
            .map_err(|_| self.no_primary("timed out waiting for another lookup"))?;
        if let Some(known) = self.known_primary(generation)? {
            return open_primary(&self.dialer, &known, lookup.auth, lookup.db).await;
        }
        let found = lookup.primary().await;
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        match found {
            Ok((primary, conn, sentinel)) => {
                pool.sentinel = sentinel;
                if pool.last_primary.as_ref().is_some_and(|last| *last != primary) {
                    tracing::warn!(store = ?self, from = ?pool.last_primary, to = %primary, "redis primary changed");
                    if let Some(m) = &self.metrics {
                        m.failovers.inc();
                    }
                }
                pool.last_primary = Some(primary.clone());
                pool.lookup_failed = None;
                if pool.generation == generation {
                    pool.primary = Some(primary);
                }
                Ok(conn)
            }
            Err(e) => {
                pool.lookup_failed = Some(Instant::now());
                Err(e)
            }
        }
    }

    fn no_primary(&self, why: &str) -> RedisError {
        let master = match &self.url.target {
            Target::Sentinel { master, .. } => master.clone(),
            Target::Direct(ep) => ep.to_string(),
        };
        RedisError::NoPrimary { master, why: why.to_string() }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        match self.cmd(&[b"GET", key.as_bytes()], Retry::Idempotent).await? {
            Reply::Nil => Ok(None),
            Reply::Bytes(b) => Ok(Some(b)),
            _ => Err(RedisError::Protocol),
        }
    }

    pub async fn set_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), RedisError> {
        let secs = ttl.as_secs().max(1).to_string();
        self.cmd(&[b"SET", key.as_bytes(), value, b"EX", secs.as_bytes()], Retry::Idempotent).await.map(drop)
    }

    /// `SET key value EX ttl XX`: replaces the value only if the key still exists. False when
    /// it was gone (deleted by a sign-out or logout meanwhile).
    pub async fn replace_ex(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, RedisError> {
        let secs = ttl.as_secs().max(1).to_string();
        let args: [&[u8]; 6] = [b"SET", key.as_bytes(), value, b"EX", secs.as_bytes(), b"XX"];
        Ok(self.cmd(&args, Retry::Idempotent).await? == Reply::Ok)
    }

    pub async fn del(&self, keys: &[&str]) -> Result<(), RedisError> {
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        self.cmd(&args, Retry::Idempotent).await.map(drop)
    }

    /// Adds `member` to the set at `key` and (re)sets the set's expiry.
    pub async fn sadd_ex(&self, key: &str, member: &str, ttl: Duration) -> Result<(), RedisError> {
        self.cmd(&[b"SADD", key.as_bytes(), member.as_bytes()], Retry::Idempotent).await?;
        let secs = ttl.as_secs().max(1).to_string();
        self.cmd(&[b"EXPIRE", key.as_bytes(), secs.as_bytes()], Retry::Idempotent).await.map(drop)
    }

    pub async fn smembers(&self, key: &str) -> Result<Vec<String>, RedisError> {
        match self.cmd(&[b"SMEMBERS", key.as_bytes()], Retry::Idempotent).await? {
            Reply::Array(items) => Ok(items
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Bytes(b) => String::from_utf8(b).ok(),
                    _ => None,
                })
                .collect()),
            _ => Err(RedisError::Protocol),
        }
    }

    /// `SET key value NX PX ms`: true when this caller took the lock. Not retried after a lost
    /// reply (see the module's notes).
    pub async fn lock(&self, key: &str, ttl: Duration) -> Result<bool, RedisError> {
        let ms = ttl.as_millis().max(1).to_string();
        let args: [&[u8]; 6] = [b"SET", key.as_bytes(), b"1", b"NX", b"PX", ms.as_bytes()];
        Ok(self.cmd(&args, Retry::IfNotSent).await? == Reply::Ok)
    }

    /// Removes the refresh lock. Not retried after a lost reply: by then another replica may
    /// hold the lock, and a second `DEL` would take it away.
    pub async fn unlock(&self, key: &str) -> Result<(), RedisError> {
        self.cmd(&[b"DEL", key.as_bytes()], Retry::IfNotSent).await.map(drop)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let r = Redis::from_url("redis://:s3cret%40x@redis.local").unwrap();
        assert_eq!(format!("{r:?}"), "Redis(redis.local:6379/0)");
        let r = Redis::from_url("redis+sentinel://:s3cret@a,b/mymaster/1").unwrap();
        assert_eq!(format!("{r:?}"), "Redis(sentinel mymaster/1)");
        assert!(Redis::from_url("rediss://h:6380").is_ok(), "TLS with the webpki roots");
        assert!(matches!(Redis::new("redis://h", Some(b"x"), None), Err(RedisError::TlsConfig(_))));
        assert!(matches!(Redis::new("rediss://h", Some(b"not pem"), None), Err(RedisError::TlsConfig(_))));
        for bad in ["http://x", "redis://", "redis://h:1/x"] {
            let e = Redis::from_url(bad).unwrap_err();
            assert!(e.to_string().contains("redis+sentinel://"), "{e}");
        }
    }

    /// A fake Redis: answers `reply(command name)` to every command, on its own task.
    async fn fake(reply: fn(&str, u16) -> Vec<u8>) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        // `*N\r\n$LEN\r\nNAME\r\n...`: the third line is the command's name.
                        let text = String::from_utf8_lossy(&buf[..n]).to_string();
                        let name = text.split("\r\n").nth(2).unwrap_or("").to_ascii_uppercase();
                        if s.write_all(&reply(&name, port)).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    static PRIMARY_PORT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);

    /// A sentinel that does not answer costs its timeout once: the next lookup starts at the
    /// sentinel that answered. A replica named as primary is refused.
    #[tokio::test]
    async fn lookups_skip_silent_sentinels_and_refuse_replicas() {
        let primary = fake(|name, _| match name {
            "ROLE" => b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n".to_vec(),
            _ => b"$1\r\nv\r\n".to_vec(),
        })
        .await;
        PRIMARY_PORT.store(primary, std::sync::atomic::Ordering::SeqCst);
        let sentinel = fake(|_, _| {
            let port = PRIMARY_PORT.load(std::sync::atomic::Ordering::SeqCst).to_string();
            format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{port}\r\n", port.len()).into_bytes()
        })
        .await;
        // Accepts (the backlog) but never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis+sentinel://127.0.0.1:{},127.0.0.1:{sentinel}/m", silent.local_addr().unwrap().port());
        let redis = Redis::from_url(&url).unwrap();
        let started = Instant::now();
        assert_eq!(redis.get("k").await.unwrap(), Some(b"v".to_vec()));
        assert!(started.elapsed() >= TIMEOUT, "the silent sentinel was asked first");
        // Forget the primary as a failover would: the next lookup asks the good sentinel first.
        let generation = redis.take_idle().1;
        let _ = redis.failed(RedisError::Timeout { addr: "x".into() }, false, generation);
        let started = Instant::now();
        assert_eq!(redis.get("k").await.unwrap(), Some(b"v".to_vec()));
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());

        // The sentinel names a server that says it is a replica: no primary, never its data.
        let replica = fake(|name, _| match name {
            "ROLE" => b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:1\r\n$9\r\nconnected\r\n:0\r\n".to_vec(),
            _ => b"$1\r\nv\r\n".to_vec(),
        })
        .await;
        PRIMARY_PORT.store(replica, std::sync::atomic::Ordering::SeqCst);
        let redis = Redis::from_url(&format!("redis+sentinel://127.0.0.1:{sentinel}/m")).unwrap();
        match redis.get("k").await {
            Err(RedisError::NoPrimary { why, .. }) => assert!(why.contains("not the primary (ROLE: slave)"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// A server that accepts and closes at once: every attempt fails, the command is tried
    /// again for idempotent commands only, and within the bounds.
    #[tokio::test]
    async fn retries_are_bounded_and_only_for_safe_commands() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(s);
            }
        });
        let redis = Redis::from_url(&format!("redis://{addr}")).unwrap();
        let started = Instant::now();
        assert!(matches!(redis.get("k").await, Err(RedisError::Io { .. })));
        assert!(started.elapsed() < RETRY_BUDGET + TIMEOUT);
        assert_eq!(accepted.swap(0, std::sync::atomic::Ordering::SeqCst), MAX_ATTEMPTS);
        // The lock's reply was lost after sending: not sent again.
        assert!(redis.lock("k", Duration::from_secs(1)).await.is_err());
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
