//! What a listener does when `accept` fails (out of file descriptors, out of memory, a
//! connection reset while queued): it keeps serving the connections it has, waits a little
//! longer after each failure in a row, counts every failure and logs at most once a second
//! across all listeners.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::IntCounter;

const FIRST_DELAY: Duration = Duration::from_millis(10);
const MAX_DELAY: Duration = Duration::from_millis(250);
const LOG_EVERY: Duration = Duration::from_secs(1);

/// One log line a second for every listener together.
#[derive(Debug, Clone)]
pub struct LogLimit {
    start: Instant,
    /// ms since start of the last line, plus one (0: none yet).
    last_ms: Arc<AtomicU64>,
    /// Failures not logged yet.
    unlogged: Arc<AtomicU64>,
}

impl LogLimit {
    pub fn new() -> LogLimit {
        LogLimit { start: Instant::now(), last_ms: Arc::new(AtomicU64::new(0)), unlogged: Arc::new(AtomicU64::new(0)) }
    }

    /// Whether a line may be written now; when so, how many failures it reports.
    fn take(&self) -> Option<u64> {
        self.take_at(self.start.elapsed().as_millis() as u64 + 1)
    }

    fn take_at(&self, now_ms: u64) -> Option<u64> {
        self.unlogged.fetch_add(1, Relaxed);
        let last = self.last_ms.load(Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due && self.last_ms.compare_exchange(last, now_ms, Relaxed, Relaxed).is_ok() {
            return Some(self.unlogged.swap(0, Relaxed));
        }
        None
    }
}

/// One listener's back-off state.
#[derive(Debug)]
pub struct Backoff {
    delay: Duration,
    listener: &'static str,
    errors: IntCounter,
    log: LogLimit,
}

impl Backoff {
    pub fn new(listener: &'static str, errors: IntCounter, log: LogLimit) -> Backoff {
        Backoff { delay: FIRST_DELAY, listener, errors, log }
    }

    /// Counts the failure, maybe logs it, then waits before the next `accept`.
    pub async fn failed(&mut self, e: &std::io::Error) {
        self.errors.inc();
        if let Some(failures) = self.log.take() {
            tracing::warn!(listener = self.listener, error = %e, failures, retry_in_ms = self.delay.as_millis() as u64, "accept failed");
        }
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
    }

    /// A connection was accepted: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.delay = FIRST_DELAY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_a_second_and_reports_what_it_skipped() {
        let log = LogLimit::new();
        assert_eq!(log.take_at(5), Some(1), "the first failure is logged");
        for ms in 6..56 {
            assert_eq!(log.take_at(ms), None, "within the second, nothing more is logged");
        }
        assert_eq!(log.take_at(1005), Some(51), "the next line counts the failures it stood for");
        assert_eq!(log.take_at(1500), None);
    }

    #[tokio::test(start_paused = true)]
    async fn delay_grows_and_is_bounded() {
        let counter = IntCounter::new("t", "t").unwrap();
        let mut b = Backoff::new("test", counter.clone(), LogLimit::new());
        let e = std::io::Error::from_raw_os_error(24);
        for _ in 0..10 {
            b.failed(&e).await;
        }
        assert_eq!(b.delay, MAX_DELAY);
        assert_eq!(counter.get(), 10);
        b.succeeded();
        assert_eq!(b.delay, FIRST_DELAY);
    }
}
