//! One client connection: an IO wrapper that notes activity, a response-body wrapper that notes
//! progress, and the timers hyper does not give us in the shape we need. Both listeners (traffic
//! and admin) serve their connections through [`drive`].
//!
//! - The header timer starts with the first byte of a request head (hyper's own starts as soon
//!   as a keep-alive connection goes idle, which would close idle connections at the header
//!   timeout).
//! - Idleness: HTTP/1 is idle when no request is open and no bytes moved; HTTP/2 when no stream
//!   is open (request being handled or response body being sent) since the last one ended.
//!   Bytes do not count for HTTP/2: the stack answers PINGs and SETTINGS by itself, so a peer
//!   sending only those would never be idle.
//! - Write timeout: a response that has data for the client but makes no progress (the client
//!   does not read, or withholds HTTP/2 flow-control credit) closes the connection, which frees
//!   the upstream connection streaming into it.
//! - A WebSocket tunnel is the rest of its connection's life: it keeps the connection's slot
//!   and is closed when no byte moves either way for the tunnel idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::on_wake::{OnWake, WakeFlag};
use crate::config::Server as ServerConfig;
use crate::metrics::Metrics;

const NONE: u64 = u64::MAX;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

const MODE_H1: u8 = 0;
const MODE_H2: u8 = 1;
const MODE_TUNNEL: u8 = 2;

/// The time limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
    pub write: Duration,
    pub tunnel_idle: Duration,
}

impl Timeouts {
    pub fn new(cfg: &ServerConfig) -> Timeouts {
        Timeouts {
            header_read: cfg.header_read_timeout,
            idle: cfg.idle_timeout,
            write: cfg.write_timeout,
            tunnel_idle: cfg.tunnel_idle_timeout,
        }
    }

    /// How often the timers are looked at: a quarter of the shortest limit, 10 ms to 1 s.
    fn period(&self) -> Duration {
        let shortest = self.header_read.min(self.idle).min(self.write).min(self.tunnel_idle);
        (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// Activity of one connection, shared by its IO wrapper, its response bodies and its timer loop.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_io_ms: AtomicU64,
    /// When the head of the next request began to arrive (ms since start), or NONE.
    head_started_ms: AtomicU64,
    /// Requests open: from the service call until the response body is done with.
    in_flight: AtomicU32,
    /// When the last request ended (ms since start; 0 before the first).
    last_request_ms: AtomicU64,
    seen_bytes: AtomicBool,
    /// HTTP/1, HTTP/2 (multiplexed, control frames: no head timer, idleness by streams) or a
    /// tunnel (idleness by bytes, with the tunnel's own limit).
    mode: AtomicU8,
    /// Bumped each time the client side took data: a response body asked for its next frame, or
    /// (HTTP/1 and tunnels) a write to the socket went through.
    progress: AtomicU64,
    /// Response bodies that handed over a frame and have not been asked for the next one.
    owed: AtomicU32,
    /// The last write to the socket could not go through (the client is not reading).
    write_blocked: AtomicBool,
}

/// What the timer loop should do with the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Open,
    /// A request head took longer than the header timeout (slowloris): close now.
    HeaderTimeout,
    /// Data waited for the client for the write timeout without any being taken: close now.
    WriteTimeout,
    /// Nothing happened for the idle timeout: close gracefully (a tunnel: close now).
    Idle,
}

impl Activity {
    /// A new HTTP/1 connection must send its first request head within the header timeout.
    pub fn new(h2: bool) -> Activity {
        Activity {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(if h2 { NONE } else { 0 }),
            in_flight: AtomicU32::new(0),
            last_request_ms: AtomicU64::new(0),
            seen_bytes: AtomicBool::new(false),
            mode: AtomicU8::new(if h2 { MODE_H2 } else { MODE_H1 }),
            progress: AtomicU64::new(0),
            owed: AtomicU32::new(0),
            write_blocked: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn on_read(&self, bytes: &[u8]) {
        let now = self.now_ms();
        self.last_io_ms.store(now, Relaxed);
        if !self.seen_bytes.swap(true, Relaxed) && bytes.starts_with(H2_PREFACE) {
            // HTTP/2 with prior knowledge (h2c).
            self.mode.store(MODE_H2, Relaxed);
            self.head_started_ms.store(NONE, Relaxed);
        }
        if self.mode.load(Relaxed) != MODE_H1 {
            return;
        }
        if self.in_flight.load(Relaxed) == 0 && self.head_started_ms.load(Relaxed) == NONE {
            self.head_started_ms.store(now, Relaxed);
        }
    }

    fn on_write(&self) {
        self.last_io_ms.store(self.now_ms(), Relaxed);
        self.write_blocked.store(false, Relaxed);
        // HTTP/2 writes include the stack's own PING and SETTINGS answers: not response progress.
        if self.mode.load(Relaxed) != MODE_H2 {
            self.progress.fetch_add(1, Relaxed);
        }
    }

    fn on_write_blocked(&self) {
        self.write_blocked.store(true, Relaxed);
    }

    /// Marks a request as open until the guard drops; the guard goes into the response body, so
    /// the request stays open while its body is sent (and ends if its future is dropped).
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Relaxed);
        self.head_started_ms.store(NONE, Relaxed);
        RequestGuard { activity: self.clone(), owed: false }
    }

    /// The connection became a tunnel: from now on only bytes (either way) count as activity.
    pub fn begin_tunnel(&self) {
        self.mode.store(MODE_TUNNEL, Relaxed);
        self.head_started_ms.store(NONE, Relaxed);
        self.last_io_ms.store(self.now_ms(), Relaxed);
    }

    pub fn check(&self, t: &Timeouts, writes: &mut WriteWatch) -> Verdict {
        let now = self.now_ms();
        if writes.stalled_for(self, now) >= t.write.as_millis() as u64 {
            return Verdict::WriteTimeout;
        }
        let since = |ms: &AtomicU64| now.saturating_sub(ms.load(Relaxed));
        let mode = self.mode.load(Relaxed);
        if mode == MODE_TUNNEL {
            return if since(&self.last_io_ms) >= t.tunnel_idle.as_millis() as u64 {
                Verdict::Idle
            } else {
                Verdict::Open
            };
        }
        if self.in_flight.load(Relaxed) > 0 {
            return Verdict::Open;
        }
        if mode == MODE_H2 {
            return if since(&self.last_request_ms) >= t.idle.as_millis() as u64 {
                Verdict::Idle
            } else {
                Verdict::Open
            };
        }
        let head = self.head_started_ms.load(Relaxed);
        if head != NONE && now.saturating_sub(head) >= t.header_read.as_millis() as u64 {
            return Verdict::HeaderTimeout;
        }
        if since(&self.last_io_ms) >= t.idle.as_millis() as u64 {
            return Verdict::Idle;
        }
        Verdict::Open
    }
}

/// The timer loop's view of write progress between two looks.
#[derive(Debug, Default)]
pub struct WriteWatch {
    seen: u64,
    /// Since when (ms) data has waited for the client with no progress.
    since: u64,
}

impl WriteWatch {
    /// How long (ms) data has been waiting for the client without any of it being taken.
    fn stalled_for(&mut self, a: &Activity, now: u64) -> u64 {
        let progress = a.progress.load(Relaxed);
        let waiting = a.owed.load(Relaxed) > 0 || a.write_blocked.load(Relaxed);
        if !waiting || progress != self.seen {
            self.seen = progress;
            self.since = now;
            return 0;
        }
        now.saturating_sub(self.since)
    }
}

/// Ends a request's "open" mark when dropped.
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<Activity>,
    /// This request's body handed over a frame and was not asked for the next one yet.
    owed: bool,
}

impl RequestGuard {
    fn polled(&mut self) {
        if self.owed {
            self.owed = false;
            self.activity.owed.fetch_sub(1, Relaxed);
            self.activity.progress.fetch_add(1, Relaxed);
        }
    }

    fn handed_over(&mut self) {
        self.owed = true;
        self.activity.owed.fetch_add(1, Relaxed);
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.activity;
        if self.owed {
            a.owed.fetch_sub(1, Relaxed);
        }
        a.in_flight.fetch_sub(1, Relaxed);
        let now = a.now_ms();
        a.last_io_ms.store(now, Relaxed);
        a.last_request_ms.store(now, Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request open until it is done with, and notes when the
    /// client side takes its frames.
    #[derive(Debug)]
    pub struct Sending<B> {
        #[pin]
        inner: B,
        guard: RequestGuard,
    }
}

impl<B> Sending<B> {
    pub fn new(inner: B, guard: RequestGuard) -> Sending<B> {
        Sending { inner, guard }
    }
}

impl<B: HttpBody> HttpBody for Sending<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        this.guard.polled();
        let res = this.inner.poll_frame(cx);
        if matches!(&res, Poll::Ready(Some(Ok(f))) if f.is_data()) {
            this.guard.handed_over();
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// How a connection's serving ended.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum End {
    /// The connection (or tunnel) finished by itself or after a graceful close.
    Closed,
    HeaderTimeout,
    WriteTimeout,
    /// Idle: a tunnel past its idle timeout, or a connection that did not close after being
    /// asked to.
    Idle,
}

impl End {
    /// Counts the cut in the metrics and says so in the debug log.
    pub fn record(self, metrics: &Metrics) {
        match self {
            End::Closed => {}
            End::HeaderTimeout => {
                metrics.header_timeouts.inc();
                tracing::debug!("request head not received in time; closing");
            }
            End::WriteTimeout => {
                metrics.write_timeouts.inc();
                tracing::debug!("client took no response data within the write timeout; closing");
            }
            End::Idle => tracing::debug!("idle; closing"),
        }
    }
}

/// Serves `conn` until it ends, a timer cuts it, or `shutdown` closes it gracefully. An idle
/// connection is asked to close; one still open a header timeout later is cut. `conn` is
/// pinned by the caller (taken by value, it would sit in this future twice), who should drop
/// it as soon as this returns: until then it keeps its IO, its slot and any pending upgrade.
pub async fn drive<C>(
    mut conn: Pin<&mut C>,
    activity: &Activity,
    t: &Timeouts,
    mut shutdown: watch::Receiver<bool>,
) -> End
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let mut tick = tokio::time::interval(t.period());
    let mut writes = WriteWatch::default();
    let mut closing: Option<Instant> = None;
    // The connection's task wakes several times per request, each time for the connection; the
    // timer and the shutdown signal are polled only when their own wakers fired.
    let (tick_woke, stop_woke) = (WakeFlag::new(), WakeFlag::new());
    loop {
        let stop = std::pin::pin!(shutdown.wait_for(|stop| *stop));
        let next = std::pin::pin!(tick.tick());
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return End::Closed;
            }
            _ = OnWake::new(&stop_woke, stop), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = OnWake::new(&tick_woke, next) => match activity.check(t, &mut writes) {
                Verdict::Open => {}
                Verdict::HeaderTimeout => return End::HeaderTimeout,
                Verdict::WriteTimeout => return End::WriteTimeout,
                Verdict::Idle => match closing {
                    None => {
                        conn.as_mut().graceful_shutdown();
                        closing = Some(Instant::now());
                    }
                    Some(since) if since.elapsed() >= t.header_read => return End::Idle,
                    Some(_) => {}
                },
            },
        }
    }
}

/// Runs a tunnel on this connection until either side closes it or a timer cuts it (no bytes
/// either way for the tunnel idle timeout; the client not reading for the write timeout).
pub async fn drive_tunnel(tunnel: impl std::future::Future<Output = ()>, activity: &Activity, t: &Timeouts) -> End {
    activity.begin_tunnel();
    tokio::pin!(tunnel);
    let mut tick = tokio::time::interval(t.period());
    let mut writes = WriteWatch::default();
    // As in `drive`: the tunnel's task wakes for every chunk copied, the timer seldom.
    let tick_woke = WakeFlag::new();
    loop {
        let next = std::pin::pin!(tick.tick());
        tokio::select! {
            biased;
            _ = tunnel.as_mut() => return End::Closed,
            _ = OnWake::new(&tick_woke, next) => match activity.check(t, &mut writes) {
                Verdict::Open | Verdict::HeaderTimeout => {}
                Verdict::WriteTimeout => return End::WriteTimeout,
                Verdict::Idle => return End::Idle,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Wraps a connection's IO to record when bytes move. `slot` (the connection's place under
    /// `max_connections`) goes wherever the IO goes, into a tunnel too, and is freed with it.
    pub struct Tracked<I, S> {
        #[pin]
        inner: I,
        activity: Arc<Activity>,
        slot: S,
    }
}

impl<I, S> Tracked<I, S> {
    pub fn new(inner: I, activity: Arc<Activity>, slot: S) -> Tracked<I, S> {
        Tracked { inner, activity, slot }
    }
}

impl<I: AsyncRead, S> AsyncRead for Tracked<I, S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read(&buf.filled()[before..]);
        }
        res
    }
}

impl<I: AsyncWrite, S> AsyncWrite for Tracked<I, S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        note_write(this.activity, &res);
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        note_write(this.activity, &res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

fn note_write(activity: &Activity, res: &Poll<io::Result<usize>>) {
    match res {
        Poll::Ready(Ok(n)) if *n > 0 => activity.on_write(),
        Poll::Pending => activity.on_write_blocked(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header: u64, idle: u64) -> Timeouts {
        Timeouts {
            header_read: Duration::from_secs(header),
            idle: Duration::from_secs(idle),
            write: Duration::from_secs(30),
            tunnel_idle: Duration::from_secs(300),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slow_head_times_out_but_idle_waits_longer() {
        let t = limits(10, 60);
        let w = &mut WriteWatch::default();
        let a = Arc::new(Activity::new(false));
        a.on_read(b"GET / HTTP/1.1\r\n");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(a.check(&t, w), Verdict::Open);
        a.on_read(b"X: y\r\n");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(a.check(&t, w), Verdict::HeaderTimeout, "trickling bytes must not extend the head timer");

        let b = Arc::new(Activity::new(false));
        b.on_read(b"GET / HTTP/1.1\r\n\r\n");
        drop(b.request());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.check(&t, w), Verdict::Open, "an idle keep-alive connection outlives the header timeout");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(b.check(&t, w), Verdict::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_requests_keep_the_connection_open() {
        let a = Arc::new(Activity::new(false));
        a.on_read(b"GET / HTTP/1.1\r\n\r\n");
        let guard = a.request();
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(a.check(&limits(1, 1), &mut WriteWatch::default()), Verdict::Open);
        drop(guard);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_new_connection_is_cut_at_the_header_timeout() {
        let t = limits(10, 60);
        let a = Arc::new(Activity::new(false));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(a.check(&t, &mut WriteWatch::default()), Verdict::HeaderTimeout);
        let h2 = Arc::new(Activity::new(false));
        h2.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(h2.check(&t, &mut WriteWatch::default()), Verdict::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_bytes_without_streams_are_idle() {
        let t = limits(10, 60);
        let w = &mut WriteWatch::default();
        let a = Arc::new(Activity::new(true));
        for _ in 0..7 {
            tokio::time::advance(Duration::from_secs(10)).await;
            a.on_read(b"PING");
            a.on_write();
        }
        assert_eq!(a.check(&t, w), Verdict::Idle, "PINGs alone keep an HTTP/2 connection open");
        let b = Arc::new(Activity::new(true));
        let stream = b.request();
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(b.check(&t, w), Verdict::Open, "an open stream is not idle");
        drop(stream);
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(b.check(&t, w), Verdict::Open, "idleness counts from the end of the last stream");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.check(&t, w), Verdict::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn data_the_client_does_not_take_hits_the_write_timeout() {
        let t = limits(10, 60);
        let w = &mut WriteWatch::default();
        let a = Arc::new(Activity::new(true));
        let mut g = a.request();
        g.handed_over();
        assert_eq!(a.check(&t, w), Verdict::Open);
        tokio::time::advance(Duration::from_secs(20)).await;
        g.polled();
        g.handed_over();
        assert_eq!(a.check(&t, w), Verdict::Open, "progress restarts the write timer");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(a.check(&t, w), Verdict::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(a.check(&t, w), Verdict::WriteTimeout);
        // a body waiting on its upstream (nothing handed over) is not a stalled write
        g.polled();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(a.check(&t, w), Verdict::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn tunnels_idle_by_bytes_with_their_own_limit() {
        let t = limits(1, 1);
        let w = &mut WriteWatch::default();
        let a = Arc::new(Activity::new(false));
        drop(a.request());
        a.begin_tunnel();
        tokio::time::advance(Duration::from_secs(200)).await;
        a.on_read(b"frame");
        assert_eq!(a.check(&t, w), Verdict::Open, "a tunnel ignores the connection idle and head timers");
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(a.check(&t, w), Verdict::Idle);
    }
}
