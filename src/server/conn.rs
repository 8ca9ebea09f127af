//! One client connection: an IO wrapper that notes activity, and the timers hyper does not give
//! us in the shape we need. hyper's own HTTP/1 header timer starts as soon as a keep-alive
//! connection goes idle, which would close idle connections at the header timeout; here the
//! header timer starts with the first byte of a request head, and idleness has its own limit.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

const NONE: u64 = u64::MAX;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Activity of one connection, shared by its IO wrapper, its service and its timer loop.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_io_ms: AtomicU64,
    /// When the head of the next request began to arrive (ms since start), or NONE.
    head_started_ms: AtomicU64,
    in_flight: AtomicU32,
    seen_bytes: AtomicBool,
    /// HTTP/2 multiplexes and sends control frames: no per-request head timer applies.
    h2: AtomicBool,
}

/// What the timer loop should do with the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Open,
    /// A request head took longer than the header timeout (slowloris): close now.
    HeaderTimeout,
    /// Nothing happened for the idle timeout: close gracefully.
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
            seen_bytes: AtomicBool::new(false),
            h2: AtomicBool::new(h2),
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
            self.h2.store(true, Relaxed);
            self.head_started_ms.store(NONE, Relaxed);
        }
        if self.h2.load(Relaxed) {
            return;
        }
        if self.in_flight.load(Relaxed) == 0 && self.head_started_ms.load(Relaxed) == NONE {
            self.head_started_ms.store(now, Relaxed);
        }
    }

    fn on_write(&self) {
        self.last_io_ms.store(self.now_ms(), Relaxed);
    }

    /// Marks a request as being handled until the guard drops (also when its future is dropped).
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Relaxed);
        self.head_started_ms.store(NONE, Relaxed);
        RequestGuard(self.clone())
    }

    pub fn check(&self, header_timeout: Duration, idle_timeout: Duration) -> Verdict {
        if self.in_flight.load(Relaxed) > 0 {
            return Verdict::Open;
        }
        let now = self.now_ms();
        let head = self.head_started_ms.load(Relaxed);
        if head != NONE && now.saturating_sub(head) >= header_timeout.as_millis() as u64 {
            return Verdict::HeaderTimeout;
        }
        if now.saturating_sub(self.last_io_ms.load(Relaxed)) >= idle_timeout.as_millis() as u64 {
            return Verdict::Idle;
        }
        Verdict::Open
    }
}

/// Ends a request's "in flight" mark when dropped.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        a.in_flight.fetch_sub(1, Relaxed);
        a.last_io_ms.store(a.now_ms(), Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// Wraps a connection's IO to record when bytes move.
    pub struct Tracked<I> {
        #[pin]
        inner: I,
        activity: Arc<Activity>,
    }
}

impl<I> Tracked<I> {
    pub fn new(inner: I, activity: Arc<Activity>) -> Tracked<I> {
        Tracked { inner, activity }
    }
}

impl<I: AsyncRead> AsyncRead for Tracked<I> {
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

impl<I: AsyncWrite> AsyncWrite for Tracked<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.on_write();
        }
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let res = this.inner.poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.on_write();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slow_head_times_out_but_idle_waits_longer() {
        let header = Duration::from_secs(10);
        let idle = Duration::from_secs(60);
        let a = Arc::new(Activity::new(false));
        a.on_read(b"GET / HTTP/1.1\r\n");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(a.check(header, idle), Verdict::Open);
        a.on_read(b"X: y\r\n");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(a.check(header, idle), Verdict::HeaderTimeout, "trickling bytes must not extend the head timer");

        let b = Arc::new(Activity::new(false));
        b.on_read(b"GET / HTTP/1.1\r\n\r\n");
        drop(b.request());
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.check(header, idle), Verdict::Open, "an idle keep-alive connection outlives the header timeout");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(b.check(header, idle), Verdict::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_requests_keep_the_connection_open() {
        let a = Arc::new(Activity::new(false));
        a.on_read(b"GET / HTTP/1.1\r\n\r\n");
        let guard = a.request();
        tokio::time::advance(Duration::from_secs(120)).await;
        assert_eq!(a.check(Duration::from_secs(1), Duration::from_secs(1)), Verdict::Open);
        drop(guard);
    }

    #[tokio::test(start_paused = true)]
    async fn silent_new_connection_is_cut_at_the_header_timeout() {
        let a = Arc::new(Activity::new(false));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(a.check(Duration::from_secs(10), Duration::from_secs(60)), Verdict::HeaderTimeout);
        let h2 = Arc::new(Activity::new(false));
        h2.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(h2.check(Duration::from_secs(10), Duration::from_secs(60)), Verdict::Open);
    }
}
