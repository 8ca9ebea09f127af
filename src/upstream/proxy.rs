//! Forwarding over a per-worker pool of HTTP/1.1 upstream connections: HTTP and HTTPS
//! upstreams, streamed bodies, timeouts mapped to 502/504, at most `max_connections_per_host`
//! connections per upstream and worker (then a short wait, then 503), and WebSocket (HTTP/1.1
//! upgrade) tunnels. Routes with `upstream_protocol = "h2c"` or `"h2"` go over the worker's
//! HTTP/2 connections instead (`h2.rs`).
//!
//! The pool is hyper's connection API (`client::conn::http1`) with a small idle list per
//! upstream, not `hyper_util`'s general client: each worker owns its pool, so the lock is never
//! contended, and a request costs a list pop and push instead of the general client's checkout
//! machinery (measured in benches/load.sh, see README "Performance").

use std::error::Error as _;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use prometheus::IntCounter;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;

use super::h2::{self as upstream_h2, H2Pool, H2Sender};
use crate::body::{LimitedBody, RequestBodyError};
use crate::config::{self, Upstream, UpstreamProtocol};

type Sender = SendRequest<LimitedBody>;

/// A request on a connection idle for at least this long is copied first, to be sent again if
/// the upstream closes the connection under it (see `send_now`).
const REPLAY_AFTER_IDLE: Duration = Duration::from_millis(100);

/// Why the upstream gave no response (`error.rs` says what the client gets for each).
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream could not be reached (refused, DNS, TLS handshake, connect timeout).
    #[error("upstream connect failed")]
    Connect(#[source] ConnectError),
    /// No response headers within the route's timeout.
    #[error("upstream timed out")]
    Timeout,
    /// Every connection this worker may open to the upstream stayed busy for the pool wait.
    #[error("upstream busy")]
    Busy,
    /// The request body outgrew the route's `max_body` while it was being sent.
    #[error("request body too large")]
    BodyTooLarge,
    /// The connection failed after connecting (reset, protocol error).
    #[error("upstream failed")]
    Failed(#[source] hyper::Error),
}

/// Why a connection to an upstream could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connecting to {0}: {1}")]
    Tcp(Authority, #[source] std::io::Error),
    #[error("connecting to {0}: timed out")]
    Timeout(Authority),
    #[error("TLS with {0}: {1}")]
    Tls(Authority, #[source] std::io::Error),
    #[error("{0} is not a valid TLS server name")]
    ServerName(Authority),
    #[error("HTTP handshake with {0}: {1}")]
    Handshake(Authority, #[source] hyper::Error),
    /// `upstream_protocol = "h2"`, and the server's TLS handshake did not pick ALPN `h2`.
    #[error("TLS with {0}: the server did not negotiate HTTP/2 (ALPN h2)")]
    NoH2(Authority),
    /// Another request's attempt to open the one HTTP/2 connection, which this one waited for,
    /// failed (its error is logged with that request).
    #[error("connecting to {0} failed for a concurrent request")]
    Concurrent(Authority),
}

/// Connections of one upstream (scheme and authority).
#[derive(PartialEq, Eq, Clone)]
pub(super) struct Key {
    https: bool,
    authority: Authority,
}

#[cfg(test)]
impl Key {
    pub(super) fn for_tests(authority: &'static str) -> Key {
        Key { https: false, authority: Authority::from_static(authority) }
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// One upstream's connections in a worker's pool.
struct Host {
    key: Key,
    idle: Vec<Idle>,
    /// Connections open or being opened, idle ones included (each is an [`Opened`]).
    open: usize,
    /// Requests waiting for a connection because `open` reached the limit.
    waiting: usize,
    /// Wakes one waiting request when a connection comes back idle or closes.
    freed: Arc<Notify>,
}

/// Idle connections by upstream. A list, not a hash map: a gateway has a few upstreams, and
/// comparing an authority costs less than hashing it.
struct Pool {
    hosts: Mutex<Vec<Host>>,
    max_idle_per_host: usize,
    idle_timeout: Duration,
    max_per_host: usize,
}

/// What a request gets from the pool.
enum Checkout {
    /// A live idle connection and how long it was idle.
    Idle(Sender, Duration),
    /// Room for a new connection, counted until the [`Opened`] drops.
    Connect(Opened),
    /// Every allowed connection is busy: wait for the notification, then ask again.
    Full(Waiting),
}

/// A connection counted against its host's limit until its connection task ends.
struct Opened {
    pool: Weak<Pool>,
    key: Key,
}

/// A request counted as waiting for its host until dropped.
struct Waiting {
    pool: Weak<Pool>,
    key: Key,
    freed: Arc<Notify>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Host>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used live idle connection to `key` (warm caches, and the oldest ones
    /// age out); else room for a new one; else a place in the queue.
    fn checkout(self: &Arc<Self>, key: &Key) -> Checkout {
        let mut hosts = self.lock();
        let host = match hosts.iter().position(|h| h.key == *key) {
            Some(i) => &mut hosts[i],
            None => {
                hosts.push(Host { key: key.clone(), idle: Vec::new(), open: 0, waiting: 0, freed: Arc::default() });
                let last = hosts.len() - 1;
                &mut hosts[last]
            }
        };
        while let Some(c) = host.idle.pop() {
            // Dropping a closed or stale sender lets its connection task end.
            let idle = c.since.elapsed();
            if c.sender.is_ready() && idle < self.idle_timeout {
                return Checkout::Idle(c.sender, idle);
            }
        }
        let pool = Arc::downgrade(self);
        if host.open < self.max_per_host {
            host.open += 1;
            return Checkout::Connect(Opened { pool, key: key.clone() });
        }
        host.waiting += 1;
        Checkout::Full(Waiting { pool, key: key.clone(), freed: host.freed.clone() })
    }

    fn put(&self, key: Key, sender: Sender) {
        let mut hosts = self.lock();
        let Some(host) = hosts.iter_mut().find(|h| h.key == key) else { return };
        if host.idle.len() < self.max_idle_per_host {
            host.idle.push(Idle { sender, since: Instant::now() });
            if host.waiting > 0 {
                host.freed.notify_one();
            }
        }
        // Otherwise the sender drops here and its connection closes, which frees its place.
    }

    /// A connection task ended: its place is free.
    fn closed(&self, key: &Key) {
        let mut hosts = self.lock();
        if let Some(host) = hosts.iter_mut().find(|h| h.key == *key) {
            host.open = host.open.saturating_sub(1);
            if host.waiting > 0 {
                host.freed.notify_one();
            }
        }
    }

    fn stopped_waiting(&self, key: &Key) {
        let mut hosts = self.lock();
        if let Some(host) = hosts.iter_mut().find(|h| h.key == *key) {
            host.waiting = host.waiting.saturating_sub(1);
        }
    }

    /// Drops connections idle for longer than the idle timeout, and closed ones.
    fn reap(&self) {
        let mut hosts = self.lock();
        for host in hosts.iter_mut() {
            host.idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() < self.idle_timeout);
        }
        hosts.retain(|h| !h.idle.is_empty() || h.open > 0 || h.waiting > 0);
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.closed(&self.key);
        }
    }
}

impl Waiting {
    /// Waits until a connection may be free or `deadline` passes (false).
    async fn until(&self, deadline: tokio::time::Instant) -> bool {
        tokio::time::timeout_at(deadline, self.freed.notified()).await.is_ok()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.stopped_waiting(&self.key);
        }
    }
}

/// One worker's upstream client. Cloning shares the pool.
#[derive(Clone)]
pub struct Proxy {
    pool: Arc<Pool>,
    tls: TlsConnector,
    h2: Arc<H2Pool>,
    /// As `tls`, offering ALPN `h2` only.
    tls_h2: TlsConnector,
    connect_timeout: Duration,
    pool_wait_timeout: Duration,
    /// `[upstream] h2_keepalive_*` for new HTTP/2 connections.
    h2_keepalive: upstream_h2::KeepAlive,
    /// Requests refused because their upstream's connections stayed busy.
    pool_full: IntCounter,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("connect_timeout", &self.connect_timeout).finish_non_exhaustive()
    }
}

impl Proxy {
    /// Must be called within a Tokio runtime: a task on it closes idle connections.
    pub fn new(cfg: &config::UpstreamClient, mut tls: rustls::ClientConfig, pool_full: IntCounter) -> Proxy {
        let mut tls_h2 = tls.clone();
        tls_h2.alpn_protocols = vec![b"h2".to_vec()];
        // The HTTP/1.1 pool speaks HTTP/1.1 only; an upstream must not pick h2 by ALPN.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let pool = Arc::new(Pool {
            hosts: Mutex::new(Vec::new()),
            max_idle_per_host: cfg.pool_max_idle_per_host,
            idle_timeout: cfg.pool_idle_timeout,
            max_per_host: cfg.max_connections_per_host,
        });
        let h2 = H2Pool::new(cfg.pool_idle_timeout);
        let period = cfg.pool_idle_timeout.max(Duration::from_secs(1));
        tokio::spawn(reap_every(Arc::downgrade(&pool), Arc::downgrade(&h2), period));
        Proxy {
            pool,
            tls: TlsConnector::from(Arc::new(tls)),
            h2,
            tls_h2: TlsConnector::from(Arc::new(tls_h2)),
            connect_timeout: cfg.connect_timeout,
            pool_wait_timeout: cfg.pool_wait_timeout,
            h2_keepalive: upstream_h2::KeepAlive {
                interval: cfg.h2_keepalive_interval,
                timeout: cfg.h2_keepalive_timeout,
            },
            pool_full,
        }
    }

    /// Sends `req` to `upstream` and waits at most `timeout` for the response headers. For
    /// HTTP/1.1 the URI is in origin form with `Host` set; for HTTP/2 it is in absolute form
    /// (its authority becomes `:authority`) without `Host`.
    pub async fn send(
        &self,
        upstream: &Upstream,
        req: Request<LimitedBody>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, ProxyError> {
        let result = match upstream.protocol {
            UpstreamProtocol::Http1 => tokio::time::timeout(timeout, self.send_now(upstream, req)).await,
            // Boxed: the HTTP/1.1 request future stays as it was.
            UpstreamProtocol::H2c | UpstreamProtocol::H2 => {
                tokio::time::timeout(timeout, Box::pin(self.send_h2(upstream, req))).await
            }
        };
        result.unwrap_or(Err(ProxyError::Timeout))
    }

    /// Over the upstream's one HTTP/2 connection. A request the connection hands back unsent
    /// (it was closed, such as by a GOAWAY, just now) goes once more on a new connection.
    async fn send_h2(
        &self,
        upstream: &Upstream,
        mut req: Request<LimitedBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let key = Key { https: upstream.scheme == http::uri::Scheme::HTTPS, authority: upstream.authority.clone() };
        let mut retried = false;
        loop {
            let mut sender = self.h2_sender(&key).await?;
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !retried => {
                        retried = true;
                        req = unsent;
                    }
                    _ => return Err(upstream_error(e.into_error())),
                },
            }
        }
    }

    /// The open connection to `key`, or a new one. Each turn of the loop waits for another
    /// request's connection attempt to end; the caller's timeout bounds the whole.
    async fn h2_sender(&self, key: &Key) -> Result<H2Sender, ProxyError> {
        loop {
            match self.h2.checkout(key) {
                upstream_h2::Checkout::Ready(sender) => return Ok(sender),
                upstream_h2::Checkout::Open(opening) => {
                    return match self.connect_h2(key).await {
                        Ok(sender) => {
                            opening.succeeded(sender.clone());
                            Ok(sender)
                        }
                        Err(e) => {
                            opening.failed();
                            Err(e)
                        }
                    };
                }
                upstream_h2::Checkout::Wait(waiting) => {
                    if !waiting.until_opened(&self.h2, key).await {
                        return Err(ProxyError::Connect(ConnectError::Concurrent(key.authority.clone())));
                    }
                }
            }
        }
    }

    async fn connect_h2(&self, key: &Key) -> Result<H2Sender, ProxyError> {
        let authority = &key.authority;
        let connect = async {
            let (tcp, host) = dial(key).await?;
            if !key.https {
                return upstream_h2::handshake(tcp, authority, self.h2_keepalive).await;
            }
            let name =
                ServerName::try_from(host.to_string()).map_err(|_| ConnectError::ServerName(authority.clone()))?;
            let tls = self.tls_h2.connect(name, tcp).await.map_err(|e| ConnectError::Tls(authority.clone(), e))?;
            // A server without ALPN completes the handshake with no protocol: refused too.
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(ConnectError::NoH2(authority.clone()));
            }
            upstream_h2::handshake(tls, authority, self.h2_keepalive).await
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => Err(ProxyError::Connect(ConnectError::Timeout(authority.clone()))),
            Ok(result) => result.map_err(ProxyError::Connect),
        }
    }

    async fn send_now(
        &self,
        upstream: &Upstream,
        mut req: Request<LimitedBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        let key = Key { https: upstream.scheme == http::uri::Scheme::HTTPS, authority: upstream.authority.clone() };
        // A pooled connection the upstream closed just now hands the request back unsent;
        // then the next one (or a new connection) takes it. If the upstream closed it while the
        // request was on its way (its keep-alive timeout, such as Node's 5 s, firing as the
        // request comes), a request that is safe to send twice goes again; any other gets the
        // 502. The copy that takes is made only for a connection idle for a while (and after
        // one such failure): under load, connections are reused within milliseconds and no
        // copy is paid for.
        let mut replay_always = false;
        let mut deadline = None;
        loop {
            match self.pool.checkout(&key) {
                Checkout::Idle(mut sender, idle) => {
                    let replay = if replay_always || idle >= REPLAY_AFTER_IDLE { replayable(&req) } else { None };
                    match sender.try_send_request(req).await {
                        Ok(resp) => return Ok(self.release(key, sender, resp)),
                        Err(mut e) => match (e.take_message(), replay) {
                            (Some(unsent), _) => req = unsent,
                            (None, Some(copy)) if closed_under_us(e.error()) => {
                                tracing::debug!(upstream = %key.authority, "pooled connection closed by the upstream; retrying");
                                req = copy;
                                replay_always = true;
                            }
                            (None, _) => return Err(upstream_error(e.into_error())),
                        },
                    }
                }
                Checkout::Connect(opened) => {
                    // Boxed: a connection (DNS, TCP, TLS) is rare next to a request, and its
                    // large state would otherwise be part of every request's future.
                    let mut sender = Box::pin(self.connect(&key, opened)).await?;
                    return match sender.send_request(req).await {
                        Ok(resp) => Ok(self.release(key, sender, resp)),
                        Err(e) => Err(upstream_error(e)),
                    };
                }
                Checkout::Full(waiting) => {
                    let deadline =
                        *deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.pool_wait_timeout);
                    if !waiting.until(deadline).await {
                        self.pool_full.inc();
                        return Err(ProxyError::Busy);
                    }
                }
            }
        }
    }

    /// Returns the connection to the pool once it can take another request: at once when the
    /// response body has already been read, otherwise when it has.
    fn release(&self, key: Key, mut sender: Sender, resp: Response<Incoming>) -> Response<Incoming> {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return resp; // the connection now belongs to the tunnel
        }
        if sender.is_ready() {
            self.pool.put(key, sender);
        } else if !sender.is_closed() {
            let pool = Arc::downgrade(&self.pool);
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    if let Some(pool) = pool.upgrade() {
                        pool.put(key, sender);
                    }
                }
            });
        }
        resp
    }

    async fn connect(&self, key: &Key, opened: Opened) -> Result<Sender, ProxyError> {
        let authority = &key.authority;
        let fail = ProxyError::Connect;
        let connect = async {
            let (tcp, host) = dial(key).await?;
            if !key.https {
                return handshake(tcp, authority, opened).await;
            }
            let name =
                ServerName::try_from(host.to_string()).map_err(|_| ConnectError::ServerName(authority.clone()))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| ConnectError::Tls(authority.clone(), e))?;
            handshake(tls, authority, opened).await
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => Err(fail(ConnectError::Timeout(authority.clone()))),
            Ok(result) => result.map_err(fail),
        }
    }
}

/// A TCP connection to `key`'s host (no delay, keep-alive probes), and the host name for TLS.
async fn dial(key: &Key) -> Result<(TcpStream, &str), ConnectError> {
    let authority = &key.authority;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if key.https { 443 } else { 80 });
    let tcp = TcpStream::connect((host, port)).await.map_err(|e| ConnectError::Tcp(authority.clone(), e))?;
    let _ = tcp.set_nodelay(true);
    let _ = socket2::SockRef::from(&tcp)
        .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(crate::tls::TCP_KEEPALIVE));
    Ok((tcp, host))
}

/// HTTP/1.1 over `io`; the connection is driven by its own task (upgrades included) until the
/// pool or the tunnel lets it go. The task holds the connection's place under the per-host
/// limit; an upgrade ends the task, so tunnels (bounded by the client connection limit) do not
/// hold places.
async fn handshake<I>(io: I, authority: &Authority, opened: Opened) -> Result<Sender, ConnectError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ConnectError::Handshake(authority.clone(), e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
        drop(opened);
    });
    Ok(sender)
}

async fn reap_every(pool: Weak<Pool>, h2: Weak<H2Pool>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match (pool.upgrade(), h2.upgrade()) {
            (Some(pool), Some(h2)) => {
                pool.reap();
                h2.reap();
            }
            _ => return,
        }
    }
}

/// A copy of `req` to send again (a reused connection failed under it, the upstream rejected
/// the token tollgate sent): only bodiless requests with an idempotent method (RFC 9110
/// §9.2.2), as a body streamed to the upstream is gone.
pub fn replayable(req: &Request<LimitedBody>) -> Option<Request<LimitedBody>> {
    if !req.method().is_idempotent() || !http_body::Body::is_end_stream(req.body()) {
        return None;
    }
    let mut copy = Request::new(LimitedBody::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

/// The connection ended before a response came: closed or reset by the upstream.
fn closed_under_us(e: &hyper::Error) -> bool {
    e.is_incomplete_message()
        || e.source().and_then(|c| c.downcast_ref::<std::io::Error>()).is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
            )
        })
}

fn upstream_error(e: hyper::Error) -> ProxyError {
    if caused_by_body_limit(&e) {
        ProxyError::BodyTooLarge
    } else {
        ProxyError::Failed(e)
    }
}

fn caused_by_body_limit(e: &hyper::Error) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if matches!(c.downcast_ref::<RequestBodyError>(), Some(RequestBodyError::TooLarge(_))) {
            return true;
        }
        cause = c.source();
    }
    false
}
