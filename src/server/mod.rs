//! Listeners and the serving threads. One current-thread runtime per worker, each with its own
//! `SO_REUSEPORT` listener and its own upstream pool, so a request never takes a lock shared
//! across cores. A background thread runs the admin listener and periodic work.

mod accept;
pub mod admin;
mod conn;
mod on_wake;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::auth::{AuthMetrics, Authenticator};
use crate::config::{Config, IpRange, Server as ServerConfig};
use crate::gateway::{Conn, Gateway, Worker};
use crate::login::Logins;
use crate::metrics::Metrics;
use crate::oidc::http::IdpClient;
use crate::runtime::reload::Reloader;
use crate::runtime::{self, Live, Parts};
use crate::telemetry::{Telemetry, TelemetryError};
use crate::tls::{self, ReloadingCert, ServerTls, TlsError};
use crate::upstream::credentials::{CredentialMetrics, Credentials};
use crate::upstream::proxy::Proxy;
use crate::upstream::tunnel::{self, TunnelSlot};
use accept::{Backoff, LogLimit};
use admin::{AdminLimits, Readiness};
use conn::{Activity, End, Sending, Timeouts, Tracked};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Another process listens on the address (refused rather than shared: with
    /// SO_REUSEPORT a second gateway would silently split the traffic with the first).
    #[error("address {addr} is in use ({what}): another process listens there, perhaps another tollgate")]
    InUse { addr: SocketAddr, what: &'static str },
    /// TLS files or settings are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A runtime or thread could not be created.
    #[error("starting {what}: {source}")]
    Runtime {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The login settings cannot be used (such as a bad Redis URL).
    #[error("login: {0}")]
    Login(String),
    /// A route names something the configuration does not have.
    #[error(transparent)]
    Build(#[from] runtime::BuildError),
    /// Metrics could not be registered.
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// `[telemetry]` could not start.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
}

/// State every worker reads.
struct Shared {
    /// The configuration at start: what listeners, connections and pools are bound to (the
    /// routes and everything they refer to live in `runtime::Live`, swapped on reload).
    config: Config,
    metrics: Metrics,
    client_tls: rustls::ClientConfig,
    connections: Arc<Semaphore>,
    timeouts: Timeouts,
    accept_log: LogLimit,
}

/// What one serving thread listens on: its socket, its routes and whether it speaks TLS.
struct Listener {
    socket: std::net::TcpListener,
    current: Arc<ArcSwap<Gateway>>,
    acceptor: Option<ServerTls>,
}

/// A started gateway. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Egress listeners by name.
    pub egress_addrs: Vec<(String, SocketAddr)>,
    pub metrics: Metrics,
    shutdown: watch::Sender<bool>,
    workers: Vec<JoinHandle<()>>,
    background: Option<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>)>,
    /// Flushed after the workers have drained, so the last requests' spans are sent.
    telemetry: Option<Telemetry>,
}

/// Binds every socket, then starts the workers and the admin listener. Errors come before any
/// thread starts serving.
pub fn start(config: Config) -> Result<Running, StartError> {
    let metrics = Metrics::new()?;
    let client_tls = tls::client_config(&config.upstream)?;
    let cert = config.server.tls.as_ref().map(ReloadingCert::load).transpose()?;
    let acceptor = match &cert {
        Some(c) => Some(ServerTls::new(c.clone())?),
        None => None,
    };
    // Probes first, so that neither listener is bound while the other is refused.
    refuse_if_in_use(config.server.listen, "server")?;
    for e in &config.egress {
        refuse_if_in_use(e.listen, "egress")?;
    }
    let first = bind_reuseport(config.server.listen, "server")?;
    let addr =
        first.local_addr().map_err(|source| StartError::Bind { addr: config.server.listen, what: "server", source })?;
    let mut sockets = vec![first];
    for _ in 1..config.server.workers {
        sockets.push(bind_reuseport(addr, "server")?);
    }
    // Egress listeners: one thread each, plain HTTP on loopback, one route.
    let mut egress_sockets = Vec::new();
    for e in &config.egress {
        let socket = bind_reuseport(e.listen, "egress")?;
        let bound =
            socket.local_addr().map_err(|source| StartError::Bind { addr: e.listen, what: "egress", source })?;
        egress_sockets.push((e.name.clone(), bound, socket));
    }
    let admin_listener = std::net::TcpListener::bind(config.admin.listen)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .map_err(|source| StartError::Bind { addr: config.admin.listen, what: "admin", source })?;
    let admin_addr = admin_listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.admin.listen,
        what: "admin",
        source,
    })?;

    let telemetry = match &config.telemetry {
        Some(t) => Some(Telemetry::start(t, client_tls.clone(), &metrics.registry)?),
        None => None,
    };
    let idp = IdpClient::new(client_tls.clone(), Duration::from_secs(10)).with_telemetry(telemetry.clone());
    let auth = Authenticator::new(&config, idp, AuthMetrics::new(&metrics.registry)?);
    let credentials = Credentials::new(&config, auth.clone(), CredentialMetrics::new(&metrics.registry)?);
    let logins =
        Logins::new(&config, auth.clone(), Some(&metrics.redis)).map_err(|e| StartError::Login(e.to_string()))?;
    let parts = Parts { auth: auth.clone(), logins, credentials: credentials.clone(), telemetry: telemetry.clone() };
    let (main, egress) = runtime::gateways(&config, &parts, &metrics)?;
    let live = Live::new(main, egress);
    let mut listeners: Vec<Listener> = sockets
        .into_iter()
        .map(|socket| Listener { socket, current: live.main.clone(), acceptor: acceptor.clone() })
        .collect();
    let mut egress_addrs = Vec::new();
    for ((name, bound, socket), (_, current)) in egress_sockets.into_iter().zip(&live.egress) {
        egress_addrs.push((name, bound));
        listeners.push(Listener { socket, current: current.clone(), acceptor: None });
    }
    let listening = Arc::new(AtomicBool::new(false));
    let ready: Readiness = {
        let (listening, main) = (listening.clone(), live.main.clone());
        Arc::new(move || listening.load(Ordering::Acquire) && main.load().auth().is_ready())
    };
    let (shutdown, _) = watch::channel(false);
    let accept_log = LogLimit::new();
    let admin_limits = AdminLimits {
        max_connections: config.admin.max_connections,
        timeouts: Timeouts::new(&config.server),
        accept_log: accept_log.clone(),
        shutdown: shutdown.subscribe(),
    };
    let reloader = Reloader::new(config.clone(), live, metrics.clone());
    let shared = Arc::new(Shared {
        metrics: metrics.clone(),
        client_tls,
        connections: Arc::new(Semaphore::new(config.server.max_connections)),
        timeouts: Timeouts::new(&config.server),
        accept_log,
        config,
    });
    let background = spawn_background(Background {
        admin_listener,
        admin_limits,
        metrics: metrics.clone(),
        ready,
        cert,
        auth,
        credentials,
        reloader,
    })?;
    let mut workers = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let rx = shutdown.subscribe();
        let handle = std::thread::Builder::new()
            .name(format!("tollgate-worker-{i}"))
            .spawn(move || worker(listener, shared, rx))
            .map_err(|source| StartError::Runtime { what: "worker thread", source })?;
        workers.push(handle);
    }
    listening.store(true, Ordering::Release);
    warn_if_descriptors_short(&shared.config);
    Ok(Running { addr, admin_addr, egress_addrs, metrics, shutdown, workers, background: Some(background), telemetry })
}

impl Running {
    /// Stops accepting, lets in-flight requests finish within the drain timeout, then returns.
    pub fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some((handle, stop)) = self.background.take() {
            let _ = stop.send(());
            let _ = handle.join();
        }
        if let Some(t) = self.telemetry.take() {
            t.shutdown();
        }
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub fn run_until_signal(self) -> std::io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(wait_for_signal())?;
        tracing::info!("shutting down: draining in-flight requests");
        self.shutdown();
        tracing::info!("stopped");
        Ok(())
    }
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    Ok(())
}

/// Each client connection can need two descriptors (its socket and an upstream's): say so at
/// start when the open-file limit cannot cover `max_connections`, instead of failing `accept`
/// with EMFILE under load.
fn warn_if_descriptors_short(config: &Config) {
    let Some(limit) = open_file_limit() else { return };
    let needed = (config.server.max_connections as u64 * 2).saturating_add(config.admin.max_connections as u64 + 64);
    if needed > limit {
        tracing::warn!(
            open_file_limit = limit,
            max_connections = config.server.max_connections,
            "the open-file limit is below what server.max_connections may need (two descriptors each): \
             raise it (ulimit -n, systemd LimitNOFILE) or lower server.max_connections"
        );
    }
}

/// The soft open-file limit, from /proc (Linux); None when unknown or unlimited.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// Binds `addr` once without SO_REUSEPORT (and closes it again): that fails while any other
/// socket listens there, where the SO_REUSEPORT listeners would join it. Port 0 is always free.
fn refuse_if_in_use(addr: SocketAddr, what: &'static str) -> Result<(), StartError> {
    use socket2::{Domain, Protocol, Socket, Type};
    if addr.port() == 0 {
        return Ok(());
    }
    let err = |source| StartError::Bind { addr, what, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    // Connections of an earlier run in TIME_WAIT do not make the address busy.
    socket.set_reuse_address(true).map_err(err)?;
    match socket.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(StartError::InUse { addr, what }),
        Err(source) => Err(StartError::Bind { addr, what, source }),
    }
}

fn bind_reuseport(addr: SocketAddr, what: &'static str) -> Result<std::net::TcpListener, StartError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |source| StartError::Bind { addr, what, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    Ok(socket.into())
}

/// Work off the request path: the admin listener, certificate reloads, issuer metadata and
/// keys, and upstream token renewal.
struct Background {
    admin_listener: std::net::TcpListener,
    admin_limits: AdminLimits,
    metrics: Metrics,
    ready: Readiness,
    cert: Option<Arc<ReloadingCert>>,
    auth: Arc<Authenticator>,
    credentials: Arc<Credentials>,
    reloader: Reloader,
}

fn spawn_background(bg: Background) -> Result<(JoinHandle<()>, tokio::sync::oneshot::Sender<()>), StartError> {
    let Background { admin_listener, admin_limits, metrics, ready, cert, auth, credentials, reloader } = bg;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| StartError::Runtime { what: "background runtime", source })?;
    let handle = std::thread::Builder::new()
        .name("tollgate-background".into())
        .spawn(move || {
            rt.block_on(async move {
                if let Some(cert) = cert {
                    tokio::spawn(cert.watch(metrics.clone()));
                }
                auth.spawn_maintenance();
                credentials.spawn_maintenance();
                tokio::spawn(reloader.run());
                match TcpListener::from_std(admin_listener) {
                    Ok(l) => {
                        tokio::spawn(admin::serve(l, metrics, ready, admin_limits));
                    }
                    Err(e) => tracing::error!(error = %e, "admin listener"),
                }
                let _ = stop_rx.await;
            })
        })
        .map_err(|source| StartError::Runtime { what: "background thread", source })?;
    Ok((handle, stop_tx))
}

/// One worker thread: accept, serve, and on shutdown drain within the drain timeout.
fn worker(listener: Listener, shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start worker runtime");
            return;
        }
    };
    rt.block_on(async move {
        let Listener { socket, current, acceptor } = listener;
        let socket = match TcpListener::from_std(socket) {
            Ok(l) => l,
            Err(e) => return tracing::error!(error = %e, "worker listener"),
        };
        let proxy =
            Proxy::new(&shared.config.upstream, shared.client_tls.clone(), shared.metrics.upstream_pool_full.clone());
        let gateway = Arc::new(Worker::new(current, proxy));
        let builder = Arc::new(http_builder(&shared.config.server));
        let mut tasks = JoinSet::new();
        let serving = Serving { shared: &shared, gateway: &gateway, builder: &builder, acceptor: acceptor.as_ref() };
        accept_loop(&socket, serving, &mut tasks, shutdown.clone()).await;
        drop(socket);
        let drain = shared.config.server.drain_timeout;
        if tokio::time::timeout(drain, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!(remaining = tasks.len(), "drain timeout reached; closing remaining connections");
            tasks.shutdown().await;
        }
    });
}

/// What a worker's connections are served with.
struct Serving<'a> {
    shared: &'a Arc<Shared>,
    gateway: &'a Arc<Worker>,
    builder: &'a Arc<auto::Builder<TokioExecutor>>,
    acceptor: Option<&'a ServerTls>,
}

async fn accept_loop(
    listener: &TcpListener,
    serving: Serving<'_>,
    tasks: &mut JoinSet<()>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Serving { shared, gateway, builder, acceptor } = serving;
    let errors = shared.metrics.accept_errors.with_label_values(&["traffic"]);
    let mut backoff = Backoff::new("traffic", errors, shared.accept_log.clone());
    // A connection accepted from this worker's listener that is waiting for a permit. It lives
    // outside the select so that a finished task (which restarts the loop) cannot drop it.
    let mut pending = None;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = accept(listener, &shared.connections, &mut pending) => accepted,
        };
        let (stream, peer, permit) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: the connections already open go on
                // being served while this listener waits.
                backoff.failed(&e).await;
                continue;
            }
        };
        backoff.succeeded();
        let _ = stream.set_nodelay(true);
        let (shared, gateway, builder, shutdown) = (shared.clone(), gateway.clone(), builder.clone(), shutdown.clone());
        let acceptor = acceptor.cloned();
        tasks.spawn(async move {
            let slot = Slot::new(permit, &shared.metrics.connections);
            // Trusted proxies from the configuration in force when the connection came.
            let trusted = gateway.current();
            let serving = Connection { shared: &shared, gateway, builder: &builder, shutdown, slot };
            match &acceptor {
                None => {
                    let conn = Conn::new(peer, false, trusted.trusted_proxies());
                    serve(stream, false, conn, serving).await;
                }
                // Boxed: the handshake's and the TLS stream's state would otherwise make every
                // plain connection's task as large.
                Some(acceptor) => Box::pin(serve_tls(stream, peer, acceptor, trusted.trusted_proxies(), serving)).await,
            }
        });
    }
}

/// The TLS handshake (bounded by the header timeout), then [`serve`] over it.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: &ServerTls,
    trusted: &[IpRange],
    serving: Connection<'_>,
) {
    let limit = serving.shared.config.server.header_read_timeout;
    match tokio::time::timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let session = tls.get_ref().1;
            let h2 = session.alpn_protocol() == Some(b"h2");
            let cert = crate::client_cert::of_chain(session.peer_certificates());
            let conn = Conn::new(peer, true, trusted).with_client_cert(cert);
            serve(tls, h2, conn, serving).await;
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// A client connection's place under `max_connections`, counted in `tollgate_connections`. It
/// travels with the connection's IO, into a tunnel too, and is freed when the IO is dropped.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _open: Gauged,
}

impl Slot {
    fn new(permit: tokio::sync::OwnedSemaphorePermit, gauge: &prometheus::IntGauge) -> Slot {
        Slot { _permit: permit, _open: Gauged::new(gauge) }
    }
}

/// One more on a gauge while it lives (also when its task is cut at the drain timeout).
struct Gauged(prometheus::IntGauge);

impl Gauged {
    fn new(gauge: &prometheus::IntGauge) -> Gauged {
        gauge.inc();
        Gauged(gauge.clone())
    }
}

impl Drop for Gauged {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Accepts a connection, then waits for a `max_connections` permit before it is served; while
/// it waits, this worker accepts nothing more, so further connections stay in the kernel
/// backlog. The permit is taken after accepting, not before: every worker has its own
/// `SO_REUSEPORT` listener, and a permit held by a worker with nothing to accept would starve
/// connections queued on another worker's listener. Cancel safe: an accepted connection stays
/// in `pending` until a permit comes.
async fn accept(
    listener: &TcpListener,
    connections: &Arc<Semaphore>,
    pending: &mut Option<(tokio::net::TcpStream, SocketAddr)>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit)> {
    if pending.is_none() {
        *pending = Some(listener.accept().await?);
    }
    let permit = connections.clone().acquire_owned().await.map_err(std::io::Error::other)?;
    let (stream, peer) = pending.take().ok_or_else(|| std::io::Error::other("no accepted connection"))?;
    Ok((stream, peer, permit))
}

fn http_builder(cfg: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .keep_alive(true)
        .max_buf_size(cfg.max_header_bytes)
        // Our own timers (server/conn.rs) replace hyper's, which would also close idle connections.
        .header_read_timeout(None);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(cfg.max_header_bytes as u32)
        .max_concurrent_streams(cfg.max_concurrent_streams);
    builder
}

/// What one client connection is served with.
struct Connection<'a> {
    shared: &'a Shared,
    gateway: Arc<Worker>,
    builder: &'a auto::Builder<TokioExecutor>,
    shutdown: watch::Receiver<bool>,
    slot: Slot,
}

/// What every request of one connection shares.
struct PerConnection {
    conn: Conn,
    activity: Arc<Activity>,
    gateway: Arc<Worker>,
    tunnel: TunnelSlot,
}

/// Serves one connection until it closes, the shutdown signal drains it, or a timer ends it;
/// then, if a request opened a WebSocket tunnel, runs the tunnel on it.
async fn serve<I>(io: I, h2: bool, conn: Conn, c: Connection<'_>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Connection { shared, gateway, builder, shutdown, slot } = c;
    let activity = Arc::new(Activity::new(h2));
    let tunnel = TunnelSlot::default();
    let ctx = Arc::new(PerConnection { conn, activity: activity.clone(), gateway, tunnel: tunnel.clone() });
    // Each request's future is boxed: hyper keeps the service's future inline, in a box it
    // makes per HTTP/1 connection before the first request and in the task it spawns per
    // HTTP/2 stream, and moves it on the way. Inline, every idle connection held the request
    // future's 7 KB and every HTTP/2 stream copied it several times; boxed, a request costs
    // one allocation of it while it runs.
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        Box::pin(async move {
            let open = ctx.activity.request();
            let resp = tunnel::with_tunnel_slot(ctx.tunnel.clone(), ctx.gateway.handle(req, &ctx.conn)).await;
            Ok::<_, Infallible>(resp.map(|body| Sending::new(body, open)))
        })
    });
    let io = TokioIo::new(Tracked::new(io, activity.clone(), slot));
    let t = &shared.timeouts;
    let end = {
        let connection = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(connection);
        conn::drive(connection.as_mut(), &activity, t, shutdown).await
        // Dropped here, before any tunnel runs: a connection that ended with an error still
        // holds its pending upgrade, which the tunnel would wait for until its idle timeout.
    };
    end.record(&shared.metrics);
    let upgraded = tunnel.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let (End::Closed, Some(tunnel)) = (end, upgraded) {
        let _open = Gauged::new(&shared.metrics.tunnels);
        // Boxed: rare, and the connection's task should not carry its state.
        Box::pin(conn::drive_tunnel(tunnel.run(), &activity, t)).await.record(&shared.metrics);
    }
}
