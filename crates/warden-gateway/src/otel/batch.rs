//! The span processor: each span written as OTLP on the thread that ends it, into batches
//! that a task on the gateway's runtime posts to the collector.
//!
//! The SDK's `BatchSpanProcessor` sends every `SpanData` through a channel to a thread of its
//! own, which gathers them into a vector and hands that to the exporter: about 2,000
//! instructions a span in moves, the channel and frees across threads, before a byte is
//! written (docs/PERFORMANCE.md). Here `on_end` writes the span's protobuf at once (into a
//! buffer of the thread's, then appended to the batch under a lock held for that copy
//! only) and drops the `SpanData` where it was made. The settings are the batch
//! processor's own, `OTEL_BSP_*`, as the specification defines them: at most
//! `MAX_QUEUE_SIZE` spans wait (the rest are dropped and counted), a batch goes when it
//! holds `MAX_EXPORT_BATCH_SIZE` or every `SCHEDULE_DELAY`, one at a time, each within
//! `EXPORT_TIMEOUT`. No call ever waits for an export.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanProcessor};

use super::encode;

/// `OTEL_BSP_*`, with the specification's defaults.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub(super) max_queue: usize,
    pub(super) max_batch: usize,
    pub(super) delay: Duration,
    pub(super) timeout: Duration,
}

impl Settings {
    /// Read as the SDK reads them: a value that is not a number, or is 0, is the default;
    /// a batch never larger than the queue.
    pub(super) fn from_env() -> Settings {
        Settings::read(super::env)
    }

    fn read(var: impl Fn(&str) -> Option<String>) -> Settings {
        let number = |name: &str, default: u64| {
            var(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(default)
        };
        let max_queue = number("OTEL_BSP_MAX_QUEUE_SIZE", 2048) as usize;
        Settings {
            max_queue,
            max_batch: (number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512) as usize).min(max_queue),
            delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000)),
            timeout: Duration::from_millis(number("OTEL_BSP_EXPORT_TIMEOUT", 30_000)),
        }
    }
}

/// Spans written and waiting, a batch each chunk.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    pub(super) spans: usize,
    /// The spans' bytes by scope (nearly always the one `warden` scope).
    pub(super) scopes: Vec<(InstrumentationScope, Vec<u8>)>,
}

impl Chunk {
    pub(super) fn scopes(&self) -> Vec<(&InstrumentationScope, &[u8])> {
        self.scopes.iter().map(|(s, b)| (s, b.as_slice())).collect()
    }
}

#[derive(Debug, Default)]
struct Pending {
    chunks: VecDeque<Chunk>,
    /// Spans in `chunks`.
    spans: usize,
    /// Flushes asked for, numbered, and the last one the sender has gone through.
    flushes_asked: u64,
    flushes_done: u64,
    /// A batch taken from `chunks` is being posted.
    posting: bool,
    /// Shut down: no span is taken any more.
    closing: bool,
    /// The sender has stopped (after sending what waited, or because its runtime went).
    stopped: bool,
}

/// What the processor and the sender share.
#[derive(Debug)]
pub(super) struct Queue {
    pending: Mutex<Pending>,
    /// A batch is full, or a flush or the end was asked for.
    ready: tokio::sync::Notify,
    /// The sender went through a flush, or stopped.
    done: Condvar,
    resource: Mutex<Arc<encode::EncodedResource>>,
    pub(super) settings: Settings,
}

impl Queue {
    pub(super) fn new(settings: Settings) -> Arc<Queue> {
        Arc::new(Queue {
            pending: Mutex::new(Pending::default()),
            ready: tokio::sync::Notify::new(),
            done: Condvar::new(),
            resource: Mutex::new(Arc::default()),
            settings,
        })
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn resource(&self) -> Arc<encode::EncodedResource> {
        self.resource
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The next batch to send: a full one, or (`all`) any. Off the queue from here on.
    fn take(&self, all: bool) -> Option<Chunk> {
        let mut p = self.pending();
        let ready = p
            .chunks
            .front()
            .is_some_and(|c| all || c.spans >= self.settings.max_batch);
        if !ready {
            return None;
        }
        let chunk = p.chunks.pop_front()?;
        p.spans -= chunk.spans;
        p.posting = true;
        Some(chunk)
    }

    /// The batch taken last is posted (or given up).
    fn posted(&self) {
        self.pending().posting = false;
    }

    /// Waits (a thread, not a task) until `until` holds or `timeout` passes.
    fn wait(&self, timeout: Duration, until: impl Fn(&Pending) -> bool) -> OTelSdkResult {
        let p = self.pending();
        let (p, _) = self
            .done
            .wait_timeout_while(p, timeout, |p| !until(p))
            .unwrap_or_else(PoisonError::into_inner);
        if until(&p) {
            Ok(())
        } else {
            Err(OTelSdkError::Timeout(timeout))
        }
    }

    /// `span` written (into `scratch`) and added to the open batch, or dropped and counted
    /// when the queue is full.
    fn add(&self, scratch: &mut Vec<u8>, span: &SpanData) {
        scratch.clear();
        encode::span(scratch, span);
        let max = self.settings.max_batch;
        let mut p = self.pending();
        if p.closing {
            return;
        }
        if p.spans >= self.settings.max_queue {
            drop(p);
            metrics::counter!("warden_trace_spans_dropped_total", "reason" => "queue_full")
                .increment(1);
            return;
        }
        if p.chunks.back().is_none_or(|c| c.spans >= max) {
            p.chunks.push_back(Chunk::default());
        }
        p.spans += 1;
        let Some(chunk) = p.chunks.back_mut() else {
            return;
        };
        chunk.spans += 1;
        let scope = &span.instrumentation_scope;
        match chunk.scopes.iter_mut().find(|(s, _)| s == scope) {
            Some((_, bytes)) => bytes.extend_from_slice(scratch),
            None => chunk.scopes.push((scope.clone(), scratch.clone())),
        }
        let full = chunk.spans >= max;
        drop(p);
        if full {
            self.ready.notify_one();
        }
    }
}

thread_local! {
    /// The span being written, before it is appended to a batch: kept from span to span.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The provider's span processor.
#[derive(Debug)]
pub(super) struct Batches {
    pub(super) queue: Arc<Queue>,
}

impl SpanProcessor for Batches {
    fn on_start(&self, _: &mut opentelemetry_sdk::trace::Span, _: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        // Recorded but not sampled: kept from the collector, as the SDK's processor does.
        if !span.span_context.is_sampled() {
            return;
        }
        // A span that ends while the thread goes away (its locals torn down) is written
        // into a buffer of its own.
        let queued = SCRATCH
            .try_with(|cell| match cell.try_borrow_mut() {
                Ok(mut scratch) => {
                    self.queue.add(&mut scratch, &span);
                    true
                }
                Err(_) => false,
            })
            .unwrap_or(false);
        if !queued {
            self.queue.add(&mut Vec::new(), &span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        let mine = {
            let mut p = self.queue.pending();
            p.flushes_asked += 1;
            p.flushes_asked
        };
        self.queue.ready.notify_one();
        let timeout = self.queue.settings.timeout;
        self.queue
            .wait(timeout, |p| p.flushes_done >= mine || p.stopped)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let nothing_waits = {
            let mut p = self.queue.pending();
            p.closing = true;
            p.chunks.is_empty() && !p.posting
        };
        self.queue.ready.notify_one();
        // Nothing to send: no wait (the sender stops when it next runs), which also spares
        // a runtime's own thread, dropping the provider on an early error, a wait for a
        // sender that cannot run until it returns.
        if nothing_waits {
            return Ok(());
        }
        self.queue.wait(timeout, |p| p.stopped)
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self
            .queue
            .resource
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Arc::new(encode::EncodedResource::of(resource));
    }
}

/// The sender: posts each full batch as it fills, and whatever waits every `delay`, one
/// request at a time (`post` keeps to `EXPORT_TIMEOUT`); sends everything and stops once
/// the processor is shut down.
pub(super) async fn send<F, Fut>(queue: Arc<Queue>, post: F)
where
    F: Fn(Chunk) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // Whatever ends this task (shut down, its runtime gone, a panic), the processor's
    // waits end with it.
    struct Stopping<'a>(&'a Queue);
    impl Drop for Stopping<'_> {
        fn drop(&mut self) {
            self.0.pending().stopped = true;
            self.0.done.notify_all();
        }
    }
    let _stopping = Stopping(&queue);
    let mut tick = tokio::time::interval(queue.settings.delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let timed = tokio::select! {
            _ = tick.tick() => true,
            () = queue.ready.notified() => false,
        };
        let (flush, closing, waiting) = {
            let p = queue.pending();
            let flush = (p.flushes_asked > p.flushes_done).then_some(p.flushes_asked);
            (flush, p.closing, p.chunks.len())
        };
        // What waited when this turn began goes, full or not; after it only full batches,
        // so that spans ending meanwhile wait for their batch to fill or the next turn.
        let mut any = if timed || flush.is_some() || closing {
            waiting
        } else {
            0
        };
        while let Some(chunk) = queue.take(any > 0) {
            any = any.saturating_sub(1);
            post(chunk).await;
            queue.posted();
        }
        if let Some(asked) = flush {
            queue.pending().flushes_done = asked;
            queue.done.notify_all();
        }
        if closing {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;

    fn settings(max_queue: usize, max_batch: usize, delay_ms: u64) -> Settings {
        Settings {
            max_queue,
            max_batch,
            delay: Duration::from_millis(delay_ms),
            timeout: Duration::from_secs(5),
        }
    }

    /// A processor whose sender decodes each request it would post; what it decoded.
    fn started(
        settings: Settings,
    ) -> (
        Batches,
        Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
        tokio::task::JoinHandle<()>,
    ) {
        let queue = Queue::new(settings);
        let mut batches = Batches {
            queue: queue.clone(),
        };
        batches.set_resource(&Resource::builder().with_service_name("w").build());
        let posted = Arc::new(Mutex::new(Vec::new()));
        let seen = posted.clone();
        let sender = tokio::spawn(send(queue.clone(), move |chunk: Chunk| {
            let mut body = Vec::new();
            encode::framed(&queue.resource(), &chunk.scopes(), &mut body);
            let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            let n: usize = request.resource_spans[0]
                .scope_spans
                .iter()
                .map(|s| s.spans.len())
                .sum();
            assert_eq!(n, chunk.spans);
            seen.lock().unwrap().push(request);
            async {}
        }));
        (batches, posted, sender)
    }

    fn counts(posted: &Mutex<Vec<ExportTraceServiceRequest>>) -> Vec<usize> {
        posted
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                r.resource_spans[0]
                    .scope_spans
                    .iter()
                    .map(|s| s.spans.len())
                    .sum()
            })
            .collect()
    }

    fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("warden").build()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_batch_goes_at_once_and_the_rest_at_the_end() {
        // The delay is far longer than the test: only a full batch, or the end, sends.
        let (batches, posted, sender) = started(settings(100, 4, 600_000));
        for n in 0..10 {
            batches.on_end(encode::tests::span(n, &scope()));
        }
        for _ in 0..200 {
            if counts(&posted) == [4, 4] {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            counts(&posted),
            [4, 4],
            "the two full batches, not the third"
        );
        tokio::task::spawn_blocking(move || batches.shutdown_with_timeout(Duration::from_secs(5)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(counts(&posted), [4, 4, 2], "what waited went at the end");
        sender.await.unwrap();
        // Each span once, in the order they ended.
        let names: Vec<String> = posted
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.resource_spans[0].scope_spans[0].spans.clone())
            .map(|s| s.name)
            .collect();
        let expected: Vec<String> = (0..10).map(|n| format!("tools/call tool_{n}")).collect();
        assert_eq!(names, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_delay_sends_a_batch_that_is_not_full() {
        let (batches, posted, _sender) = started(settings(100, 50, 30));
        batches.on_end(encode::tests::span(1, &scope()));
        for _ in 0..400 {
            if !counts(&posted).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(counts(&posted), [1]);
        // A flush waits for what is waiting to be sent.
        batches.on_end(encode::tests::span(2, &scope()));
        tokio::task::spawn_blocking(move || batches.force_flush())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(counts(&posted).iter().sum::<usize>(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_queue_spans_are_dropped_and_unsampled_ones_never_queued() {
        // No sender: nothing leaves the queue.
        let queue = Queue::new(settings(5, 2, 600_000));
        let batches = Batches {
            queue: queue.clone(),
        };
        let mut unsampled = encode::tests::span(0, &scope());
        unsampled.span_context = SpanContext::new(
            unsampled.span_context.trace_id(),
            unsampled.span_context.span_id(),
            TraceFlags::default(),
            false,
            TraceState::default(),
        );
        batches.on_end(unsampled);
        assert_eq!(queue.pending().spans, 0);
        for n in 1..=8 {
            batches.on_end(encode::tests::span(n, &scope()));
        }
        let p = queue.pending();
        assert_eq!(p.spans, 5);
        assert_eq!(
            p.chunks.iter().map(|c| c.spans).collect::<Vec<_>>(),
            [2, 2, 1]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_that_end_while_a_batch_is_posted_wait_for_the_next_turn() {
        // Each post sees one more span end. A flush sends what waited when it was asked,
        // and returns: it does not chase the spans that keep coming.
        let queue = Queue::new(settings(100, 50, 600_000));
        let batches = Arc::new(Batches {
            queue: queue.clone(),
        });
        let posts = Arc::new(Mutex::new(0u64));
        let (during, counted) = (batches.clone(), posts.clone());
        tokio::spawn(send(queue.clone(), move |_chunk: Chunk| {
            let n = {
                let mut p = counted.lock().unwrap();
                *p += 1;
                *p
            };
            during.on_end(encode::tests::span(100 + n, &scope()));
            async {}
        }));
        batches.on_end(encode::tests::span(1, &scope()));
        let flushing = batches.clone();
        tokio::task::spawn_blocking(move || flushing.force_flush())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*posts.lock().unwrap(), 1);
        assert_eq!(
            queue.pending().spans,
            1,
            "the span that ended meanwhile waits"
        );
    }

    #[tokio::test]
    async fn a_shutdown_with_nothing_to_send_does_not_wait_for_the_sender() {
        // On the runtime's only thread, as when the gateway stops on an error at start:
        // the sender cannot run until this returns, so it must not be waited for.
        let (batches, posted, _sender) = started(settings(100, 4, 600_000));
        assert!(
            batches
                .shutdown_with_timeout(Duration::from_secs(5))
                .is_ok()
        );
        assert!(posted.lock().unwrap().is_empty());
    }

    #[test]
    fn a_sender_whose_runtime_is_gone_is_not_waited_for() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let queue = Queue::new(settings(100, 50, 600_000));
        let batches = Batches {
            queue: queue.clone(),
        };
        runtime.block_on(async {
            tokio::spawn(send(queue.clone(), |_: Chunk| async {}));
            tokio::task::yield_now().await;
        });
        batches.on_end(encode::tests::span(1, &scope()));
        drop(runtime);
        // Stopped with its runtime: the span cannot be sent, and the shutdown says so at
        // once rather than after its timeout.
        assert!(queue.pending().stopped);
        assert!(
            batches
                .shutdown_with_timeout(Duration::from_secs(30))
                .is_ok()
        );
    }

    #[test]
    fn settings_are_read_as_the_sdk_reads_them() {
        let defaults = Settings::read(|_| None);
        assert_eq!(
            (defaults.max_queue, defaults.max_batch),
            (2048, 512),
            "{defaults:?}"
        );
        let s = Settings::read(|name| {
            Some(
                match name {
                    "OTEL_BSP_MAX_QUEUE_SIZE" => "64",
                    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" => "512",
                    "OTEL_BSP_SCHEDULE_DELAY" => "not a number",
                    "OTEL_BSP_EXPORT_TIMEOUT" => "0",
                    _ => return None,
                }
                .to_owned(),
            )
        });
        assert_eq!(s.max_queue, 64);
        assert_eq!(s.max_batch, 64, "never larger than the queue");
        assert_eq!(s.delay, Duration::from_secs(5));
        assert_eq!(s.timeout, Duration::from_secs(30));
    }
}
