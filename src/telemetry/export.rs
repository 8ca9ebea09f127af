//! Finished spans to the collector: a bounded queue that request threads push into without
//! waiting (a full queue drops the span and counts it), drained by one export thread that
//! sends batches when one fills or `export_interval` passes, and everything left at shutdown.

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Spans in one export request (the SDK's default batch size).
const MAX_BATCH: usize = 512;

/// Export counters, on the gateway's registry.
#[derive(Clone)]
pub struct ExportMetrics {
    /// Spans not exported, by reason: `queue_full` (dropped on the request path) or
    /// `export_failed` (the collector was unreachable or refused the batch).
    pub dropped: IntCounterVec,
    pub exported: IntCounter,
}

impl ExportMetrics {
    pub fn new(registry: &Registry) -> Result<ExportMetrics, prometheus::Error> {
        let dropped = IntCounterVec::new(
            Opts::new("tollgate_telemetry_spans_dropped_total", "Finished spans not exported, by reason"),
            &["reason"],
        )?;
        for reason in ["queue_full", "export_failed"] {
            dropped.with_label_values(&[reason]);
        }
        let exported = IntCounter::new("tollgate_telemetry_spans_exported_total", "Spans the collector accepted")?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(exported.clone()))?;
        Ok(ExportMetrics { dropped, exported })
    }
}

enum Message {
    Span(Box<SpanData>),
    /// Export what is queued, then answer.
    Flush(SyncSender<()>),
    /// Export what is queued, stop, then answer.
    Stop(SyncSender<()>),
}

/// Timing of the export thread.
pub struct Schedule {
    pub interval: Duration,
    pub timeout: Duration,
    pub queue: usize,
}

/// The SDK's span processor for tollgate: `on_end` is one non-blocking channel send.
#[derive(Debug)]
pub struct QueueProcessor {
    queue: SyncSender<Message>,
    dropped: IntCounter,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Longest wait for the export thread when flushing or stopping.
    patience: Duration,
}

impl QueueProcessor {
    /// Starts the export thread (with its own runtime, which the exporter's client runs on).
    pub fn start<E: SpanExporter + 'static>(
        exporter: E,
        schedule: Schedule,
        metrics: ExportMetrics,
    ) -> std::io::Result<QueueProcessor> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (queue, rx) = mpsc::sync_channel(schedule.queue);
        let patience = schedule.timeout + schedule.timeout;
        let dropped = metrics.dropped.with_label_values(&["queue_full"]);
        let thread = std::thread::Builder::new()
            .name("tollgate-telemetry".into())
            .spawn(move || Exporting { exporter, rt, schedule, metrics, batch: Vec::new() }.run(rx))?;
        Ok(QueueProcessor { queue, dropped, thread: Mutex::new(Some(thread)), patience })
    }

    /// Sends a control message (waiting for room: the thread drains the queue) and waits for
    /// its answer, both bounded.
    fn ask(&self, make: fn(SyncSender<()>) -> Message) -> OTelSdkResult {
        let (tx, rx) = mpsc::sync_channel(1);
        let mut msg = make(tx);
        let deadline = Instant::now() + self.patience;
        loop {
            match self.queue.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Full(_)) => return Err(OTelSdkError::Timeout(self.patience)),
                Err(TrySendError::Disconnected(_)) => return Err(OTelSdkError::AlreadyShutdown),
            }
        }
        rx.recv_timeout(self.patience).map_err(|_| OTelSdkError::Timeout(self.patience))
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queue.try_send(Message::Span(Box::new(span))).is_err() {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.ask(Message::Flush)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else {
            return Ok(());
        };
        let answer = self.ask(Message::Stop);
        if answer.is_ok() {
            let _ = thread.join();
        }
        answer
    }
}

/// The export thread's state.
struct Exporting<E> {
    exporter: E,
    rt: tokio::runtime::Runtime,
    schedule: Schedule,
    metrics: ExportMetrics,
    batch: Vec<SpanData>,
}

impl<E: SpanExporter> Exporting<E> {
    fn run(mut self, rx: mpsc::Receiver<Message>) {
        let mut due = Instant::now() + self.schedule.interval;
        loop {
            match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(Message::Span(span)) => {
                    self.batch.push(*span);
                    if self.batch.len() >= MAX_BATCH {
                        self.export();
                        due = Instant::now() + self.schedule.interval;
                    }
                }
                Ok(Message::Flush(done)) => {
                    self.export();
                    let _ = done.send(());
                }
                Ok(Message::Stop(done)) => {
                    self.export();
                    let _ = self.exporter.shutdown();
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.export();
                    due = Instant::now() + self.schedule.interval;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.export();
                    return;
                }
            }
        }
    }

    fn export(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len() as u64;
        let (exporter, timeout) = (&self.exporter, self.schedule.timeout);
        // The timer is made inside the runtime it needs.
        let sent = self.rt.block_on(async { tokio::time::timeout(timeout, exporter.export(batch)).await });
        match sent {
            Ok(Ok(())) => self.metrics.exported.inc_by(n),
            Ok(Err(e)) => {
                self.metrics.dropped.with_label_values(&["export_failed"]).inc_by(n);
                tracing::debug!(error = %e, spans = n, "span export failed");
            }
            Err(_) => {
                self.metrics.dropped.with_label_values(&["export_failed"]).inc_by(n);
                tracing::debug!(after = ?self.schedule.timeout, spans = n, "span export timed out");
            }
        }
    }
}
