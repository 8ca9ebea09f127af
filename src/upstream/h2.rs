//! HTTP/2 upstream connections (`upstream_protocol = "h2c"` or `"h2"`): one multiplexed
//! connection per upstream and worker, shared by all of the worker's requests to it.
//!
//! Why one and not a list like the HTTP/1.1 pool: HTTP/2 carries up to the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (100 or more by default in gRPC servers) requests at once
//! on one connection, and further requests wait inside hyper's dispatcher for a free stream, so
//! a second connection would only add handshakes. hyper's `client::conn::http2` is used
//! directly rather than `hyper_util`'s legacy client for the same reasons as the HTTP/1.1 pool:
//! the pool is the worker's own (its lock is never contended), a checkout is a lock, a compare
//! and a clone of the sender, and the connect path (TLS with ALPN `h2` required, the connect
//! timeout, TCP keep-alive) is the same code as for HTTP/1.1.
//!
//! Requests that find the connection being opened wait for that attempt instead of opening
//! their own, so a burst to a cold upstream makes one connection; when the attempt fails they
//! fail with it (UNAVAILABLE to gRPC clients) rather than trying one after another.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::uri::Authority;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;

use super::proxy::{ConnectError, Key};
use crate::body::LimitedBody;

pub(super) type H2Sender = http2::SendRequest<LimitedBody>;

/// One worker's HTTP/2 connections, by upstream.
pub(super) struct H2Pool {
    hosts: Mutex<Vec<Host>>,
    idle_timeout: Duration,
}

struct Host {
    key: Key,
    conn: Option<Shared>,
    /// Set while a request opens the connection; the others wait on it.
    opening: Option<Arc<Notify>>,
    /// Failed connection attempts; a waiter that sees this change gives up too.
    failures: u64,
}

struct Shared {
    sender: H2Sender,
    last_used: Instant,
}

/// What a request gets from the pool.
pub(super) enum Checkout {
    /// The open connection.
    Ready(H2Sender),
    /// No connection: this request opens it and reports the outcome.
    Open(Opening),
    /// Another request is opening it: wait, then ask again.
    Wait(Waiting),
}

/// The right, and the duty, to open a host's connection. Dropped without an outcome (the
/// request was cancelled), it lets a waiter try instead.
pub(super) struct Opening {
    pool: Weak<H2Pool>,
    key: Key,
    reported: bool,
}

pub(super) struct Waiting {
    notified: OwnedNotified,
    failures: u64,
}

impl H2Pool {
    pub(super) fn new(idle_timeout: Duration) -> Arc<H2Pool> {
        Arc::new(H2Pool { hosts: Mutex::new(Vec::new()), idle_timeout })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Host>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn checkout(self: &Arc<Self>, key: &Key) -> Checkout {
        let mut hosts = self.lock();
        let host = match hosts.iter().position(|h| h.key == *key) {
            Some(i) => &mut hosts[i],
            None => {
                hosts.push(Host { key: key.clone(), conn: None, opening: None, failures: 0 });
                let last = hosts.len() - 1;
                &mut hosts[last]
            }
        };
        if let Some(c) = host.conn.as_mut().filter(|c| !c.sender.is_closed()) {
            c.last_used = Instant::now();
            return Checkout::Ready(c.sender.clone());
        }
        host.conn = None;
        match &host.opening {
            // Created under the lock, so the wake-up from `finish` cannot be missed.
            Some(n) => Checkout::Wait(Waiting { notified: n.clone().notified_owned(), failures: host.failures }),
            None => {
                host.opening = Some(Arc::default());
                Checkout::Open(Opening { pool: Arc::downgrade(self), key: key.clone(), reported: false })
            }
        }
    }

    /// Whether `key` saw a failed connection attempt since `failures` was read.
    fn failed_since(&self, key: &Key, failures: u64) -> bool {
        self.lock().iter().find(|h| h.key == *key).is_some_and(|h| h.failures != failures)
    }

    fn finish(&self, key: &Key, outcome: Option<Result<H2Sender, ()>>) {
        let mut hosts = self.lock();
        let Some(host) = hosts.iter_mut().find(|h| h.key == *key) else { return };
        match outcome {
            Some(Ok(sender)) => host.conn = Some(Shared { sender, last_used: Instant::now() }),
            Some(Err(())) => host.failures = host.failures.wrapping_add(1),
            None => {}
        }
        if let Some(n) = host.opening.take() {
            n.notify_waiters();
        }
    }

    /// Lets go of connections closed by the upstream and of those no request has taken for the
    /// idle timeout. Streams still running on a released connection finish on it (the
    /// connection closes after them); new requests open a new one.
    pub(super) fn reap(&self) {
        let mut hosts = self.lock();
        for host in hosts.iter_mut() {
            if host.conn.as_ref().is_some_and(|c| c.sender.is_closed() || c.last_used.elapsed() >= self.idle_timeout) {
                host.conn = None;
            }
        }
        hosts.retain(|h| h.conn.is_some() || h.opening.is_some());
    }
}

impl Opening {
    pub(super) fn succeeded(mut self, sender: H2Sender) {
        self.report(Some(Ok(sender)));
    }

    pub(super) fn failed(mut self) {
        self.report(Some(Err(())));
    }

    fn report(&mut self, outcome: Option<Result<H2Sender, ()>>) {
        self.reported = true;
        if let Some(pool) = self.pool.upgrade() {
            pool.finish(&self.key, outcome);
        }
    }
}

impl Drop for Opening {
    fn drop(&mut self) {
        if !self.reported {
            self.report(None);
        }
    }
}

impl Waiting {
    /// Waits for the opening attempt to end; false when it failed.
    pub(super) async fn until_opened(self, pool: &H2Pool, key: &Key) -> bool {
        self.notified.await;
        !pool.failed_since(key, self.failures)
    }
}

/// HTTP/2 PINGs on upstream connections (`[upstream] h2_keepalive_interval` and `_timeout`).
#[derive(Debug, Clone, Copy)]
pub(super) struct KeepAlive {
    /// A PING after this long without a frame from the upstream; `None`: no PINGs.
    pub interval: Option<Duration>,
    /// Unanswered for this long, the connection is closed: its streams fail, and the pool sees
    /// it closed and opens a new one for the next request.
    pub timeout: Duration,
}

/// HTTP/2 over `io` (TLS already negotiated `h2`, or clear text with prior knowledge). The
/// connection is driven by its own task until both the pool and every stream let it go.
///
/// PINGs go out also while no stream is open (`keep_alive_while_idle`): the pooled connection
/// sits idle between requests, and an upstream that stopped answering (a paused process, a
/// peer gone without a FIN) is found then rather than by the next request's timeout. gRPC
/// servers refuse frequent pings (GOAWAY `too_many_pings`; grpc-go allows one per 5 minutes by
/// default), hence the 5-minute default; an idle connection is released after
/// `pool_idle_timeout` (90 s) anyway.
pub(super) async fn handshake<I>(io: I, authority: &Authority, keep_alive: KeepAlive) -> Result<H2Sender, ConnectError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new());
    if let Some(interval) = keep_alive.interval {
        builder.keep_alive_interval(interval).keep_alive_timeout(keep_alive.timeout).keep_alive_while_idle(true);
    }
    let (sender, conn) =
        builder.handshake(TokioIo::new(io)).await.map_err(|e| ConnectError::Handshake(authority.clone(), e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> (Arc<H2Pool>, Key) {
        (H2Pool::new(Duration::from_secs(90)), Key::for_tests("127.0.0.1:9"))
    }

    /// Requests that find the connection being opened wait for that one attempt; when it
    /// fails, they fail with it instead of each trying in turn.
    #[tokio::test]
    async fn waiters_share_the_opening_attempt_and_its_failure() {
        let (pool, key) = pool();
        let Checkout::Open(opening) = pool.checkout(&key) else { panic!("the first request opens") };
        let (Checkout::Wait(a), Checkout::Wait(b)) = (pool.checkout(&key), pool.checkout(&key)) else {
            panic!("the others wait")
        };
        opening.failed();
        assert!(!a.until_opened(&pool, &key).await, "the failure reaches every waiter");
        assert!(!b.until_opened(&pool, &key).await);
        assert!(matches!(pool.checkout(&key), Checkout::Open(_)), "the next request tries again");
    }

    /// An opener that goes away (its client cancelled) lets a waiter open instead.
    #[tokio::test]
    async fn a_cancelled_opening_hands_over_to_a_waiter() {
        let (pool, key) = pool();
        let Checkout::Open(opening) = pool.checkout(&key) else { panic!("the first request opens") };
        let Checkout::Wait(waiting) = pool.checkout(&key) else { panic!("the second waits") };
        drop(opening);
        assert!(waiting.until_opened(&pool, &key).await, "not a failure");
        let Checkout::Open(_again) = pool.checkout(&key) else { panic!("the waiter opens now") };
        assert!(matches!(pool.checkout(&key), Checkout::Wait(_)));
    }

    /// Hosts without a connection or an attempt are forgotten by the reaper.
    #[tokio::test]
    async fn the_reaper_forgets_empty_hosts() {
        let (pool, key) = pool();
        let Checkout::Open(opening) = pool.checkout(&key) else { panic!() };
        pool.reap();
        assert_eq!(pool.lock().len(), 1, "an attempt in progress is kept");
        opening.failed();
        pool.reap();
        assert!(pool.lock().is_empty());
    }
}
