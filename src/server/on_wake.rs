//! A future polled only when its own waker fired. A connection's task wakes several times per
//! request, each time for the connection; its timer and shutdown signal, raced against it in a
//! `select!`, would otherwise be polled on every one of those wake-ups (a `watch` wait and an
//! interval tick: about 700 instructions per request).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Whether a future's own waker fired since it was last polled, and the task to wake then.
pub struct WakeFlag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl WakeFlag {
    pub fn new() -> Arc<WakeFlag> {
        Arc::new(WakeFlag { woken: AtomicBool::new(true), task: AtomicWaker::new() })
    }
}

impl Wake for WakeFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, SeqCst);
        self.task.wake();
    }
}

/// Polls `inner` on its first poll and then only after its own waker fired; otherwise it is
/// pending without being looked at. The flag outlives the future, so a loop that makes a new
/// future each turn allocates it once.
pub struct OnWake<'a, F> {
    flag: &'a Arc<WakeFlag>,
    inner: F,
}

impl<'a, F> OnWake<'a, F> {
    pub fn new(flag: &'a Arc<WakeFlag>, inner: F) -> Self {
        flag.woken.store(true, SeqCst); // a new future: poll it once
        OnWake { flag, inner }
    }
}

impl<F: Future + Unpin> Future for OnWake<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.flag.task.register(cx.waker());
        // Cleared before polling: a wake-up during or after the poll is seen next time.
        if !self.flag.woken.swap(false, SeqCst) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.flag.clone());
        Pin::new(&mut self.inner).poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    /// The timer and shutdown branches are looked at only when their own wakers fired, and
    /// such a wake-up reaches the connection's task.
    #[test]
    fn on_wake_polls_only_after_its_own_wake_up() {
        use std::cell::{Cell, RefCell};
        struct Probe<'a> {
            polls: &'a Cell<u32>,
            waker: &'a RefCell<Option<Waker>>,
            ready: &'a Cell<bool>,
        }
        impl Future for Probe<'_> {
            type Output = ();
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.polls.set(self.polls.get() + 1);
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                if self.ready.get() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            }
        }
        struct Task(AtomicU32);
        impl Wake for Task {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Relaxed);
            }
        }
        let task = Arc::new(Task(AtomicU32::new(0)));
        let task_waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&task_waker);
        let (polls, waker, ready) = (Cell::new(0), RefCell::new(None), Cell::new(false));
        let flag = WakeFlag::new();
        let mut f = OnWake::new(&flag, Probe { polls: &polls, waker: &waker, ready: &ready });
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(polls.get(), 1, "polled once, then not until woken");
        waker.borrow().as_ref().unwrap().wake_by_ref();
        assert_eq!(task.0.load(Relaxed), 1, "the wake-up reaches the task");
        ready.set(true);
        assert!(Pin::new(&mut f).poll(&mut cx).is_ready());
        assert_eq!(polls.get(), 2);
    }
}
