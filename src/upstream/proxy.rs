//! Forwarding over a per-worker pool of HTTP/1.1 upstream connections: HTTP and HTTPS
//! upstreams, streamed bodies, timeouts mapped to 502/504, and WebSocket (HTTP/1.1 upgrade)
//! tunnels.
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
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::body::{LimitedBody, RequestBodyError};
use crate::config::{self, Upstream};
use crate::error::GatewayError;

type Sender = SendRequest<LimitedBody>;

/// A request on a connection idle for at least this long is copied first, to be sent again if
/// the upstream closes the connection under it (see `send_now`).
const REPLAY_AFTER_IDLE: Duration = Duration::from_millis(100);

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
    #[error("HTTP/1.1 handshake with {0}: {1}")]
    Handshake(Authority, #[source] hyper::Error),
}

/// Idle connections of one upstream (scheme and authority).
#[derive(PartialEq, Eq, Clone)]
struct Key {
    https: bool,
    authority: Authority,
}

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections by upstream. A list, not a hash map: a gateway has a few upstreams, and
/// comparing an authority costs less than hashing it.
struct Pool {
    idle: Mutex<Vec<(Key, Vec<Idle>)>>,
    max_idle_per_host: usize,
    idle_timeout: Duration,
}

impl Pool {
    /// The most recently used live connection to `key`, if any (warm caches, and the oldest
    /// ones age out).
    fn checkout(&self, key: &Key) -> Option<(Sender, Duration)> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let (_, list) = idle.iter_mut().find(|(k, _)| k == key)?;
        while let Some(c) = list.pop() {
            // Dropping a closed or stale sender lets its connection task end.
            let idle = c.since.elapsed();
            if c.sender.is_ready() && idle < self.idle_timeout {
                return Some((c.sender, idle));
            }
        }
        None
    }

    fn put(&self, key: Key, sender: Sender) {
        if self.max_idle_per_host == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let i = match idle.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                idle.push((key, Vec::new()));
                idle.len() - 1
            }
        };
        let list = &mut idle[i].1;
        if list.len() < self.max_idle_per_host {
            list.push(Idle { sender, since: Instant::now() });
        }
    }

    /// Drops connections idle for longer than the idle timeout, and closed ones.
    fn reap(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for (_, list) in idle.iter_mut() {
            list.retain(|c| !c.sender.is_closed() && c.since.elapsed() < self.idle_timeout);
        }
        idle.retain(|(_, list)| !list.is_empty());
    }
}

/// One worker's upstream client. Cloning shares the pool.
#[derive(Clone)]
pub struct Proxy {
    pool: Arc<Pool>,
    tls: TlsConnector,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("connect_timeout", &self.connect_timeout).finish_non_exhaustive()
    }
}

impl Proxy {
    /// Must be called within a Tokio runtime: a task on it closes idle connections.
    pub fn new(cfg: &config::UpstreamClient, mut tls: rustls::ClientConfig) -> Proxy {
        // This client speaks HTTP/1.1 only; an upstream must not pick h2 by ALPN.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let pool = Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            max_idle_per_host: cfg.pool_max_idle_per_host,
            idle_timeout: cfg.pool_idle_timeout,
        });
        tokio::spawn(reap_every(Arc::downgrade(&pool), cfg.pool_idle_timeout.max(Duration::from_secs(1))));
        Proxy { pool, tls: TlsConnector::from(Arc::new(tls)), connect_timeout: cfg.connect_timeout }
    }

    /// Sends `req` (origin-form URI, `Host` set) to `upstream` and waits at most `timeout` for
    /// the response headers.
    pub async fn send(
        &self,
        upstream: &Upstream,
        req: Request<LimitedBody>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, GatewayError> {
        match tokio::time::timeout(timeout, self.send_now(upstream, req)).await {
            Err(_) => Err(GatewayError::UpstreamTimeout),
            Ok(result) => result,
        }
    }

    async fn send_now(
        &self,
        upstream: &Upstream,
        mut req: Request<LimitedBody>,
    ) -> Result<Response<Incoming>, GatewayError> {
        let key = Key { https: upstream.scheme == http::uri::Scheme::HTTPS, authority: upstream.authority.clone() };
        // A pooled connection the upstream closed just now hands the request back unsent;
        // then the next one (or a new connection) takes it. If the upstream closed it while the
        // request was on its way (its keep-alive timeout, such as Node's 5 s, firing as the
        // request comes), a request that is safe to send twice goes again on a new connection;
        // any other gets the 502. The copy that takes is made only for a connection idle for a
        // while: under load, connections are reused within milliseconds and no copy is paid for.
        while let Some((mut sender, idle)) = self.pool.checkout(&key) {
            let replay = if idle >= REPLAY_AFTER_IDLE { replayable(&req) } else { None };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.release(key, sender, resp)),
                Err(mut e) => match (e.take_message(), replay) {
                    (Some(unsent), _) => req = unsent,
                    (None, Some(copy)) if closed_under_us(e.error()) => {
                        tracing::debug!(upstream = %key.authority, "pooled connection closed by the upstream; retrying");
                        req = copy;
                        break;
                    }
                    (None, _) => return Err(upstream_error(e.into_error())),
                },
            }
        }
        // Boxed: a connection (DNS, TCP, TLS) is rare next to a request, and its large state
        // would otherwise be part of every request's future.
        let mut sender = Box::pin(self.connect(&key)).await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok(self.release(key, sender, resp)),
            Err(e) => Err(upstream_error(e)),
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

    async fn connect(&self, key: &Key) -> Result<Sender, GatewayError> {
        let authority = &key.authority;
        let fail = GatewayError::UpstreamConnect;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if key.https { 443 } else { 80 });
        let connect = async {
            let tcp = TcpStream::connect((host, port)).await.map_err(|e| ConnectError::Tcp(authority.clone(), e))?;
            let _ = tcp.set_nodelay(true);
            let _ = socket2::SockRef::from(&tcp)
                .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(crate::tls::TCP_KEEPALIVE));
            if !key.https {
                return handshake(tcp, authority).await;
            }
            let name =
                ServerName::try_from(host.to_string()).map_err(|_| ConnectError::ServerName(authority.clone()))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| ConnectError::Tls(authority.clone(), e))?;
            handshake(tls, authority).await
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Err(_) => Err(fail(ConnectError::Timeout(authority.clone()))),
            Ok(result) => result.map_err(fail),
        }
    }
}

/// HTTP/1.1 over `io`; the connection is driven by its own task (upgrades included) until the
/// pool or the tunnel lets it go.
async fn handshake<I>(io: I, authority: &Authority) -> Result<Sender, ConnectError>
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
    });
    Ok(sender)
}

async fn reap_every(pool: Weak<Pool>, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.reap(),
            None => return,
        }
    }
}

/// A copy of `req` to send again if a reused connection fails under it: only bodiless requests
/// with an idempotent method (RFC 9110 §9.2.2).
fn replayable(req: &Request<LimitedBody>) -> Option<Request<LimitedBody>> {
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

fn upstream_error(e: hyper::Error) -> GatewayError {
    if caused_by_body_limit(&e) {
        GatewayError::PayloadTooLarge
    } else {
        GatewayError::Upstream(e)
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

/// Joins the client's and the upstream's upgraded connections and copies bytes both ways
/// until either side closes.
pub fn tunnel(client: OnUpgrade, upstream: OnUpgrade, route: String) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(route, error = %e, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(route, error = %e, "tunnel closed with an error");
        }
    });
}
