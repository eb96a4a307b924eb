//! Runtime telemetry: a subscribable event stream, tracing fields and metrics.
//!
//! Every event carries the partition, the manager and the key of the instance it is about.
//! Events go through a broadcast channel; when nobody subscribes, emitting costs one
//! atomic load and builds nothing. Metrics go through the `metrics` crate facade, so the
//! embedding program picks the exporter; their partition label can be switched off for
//! deployments with very many tenants.

use crate::{Key, Partition};
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

#[cfg(feature = "fmt")]
pub mod fmt;
mod turns;
pub(crate) use turns::{Entered, TURN_SPAN_TARGET};
pub use turns::{RunningTurn, TURN_SPAN_NAME, is_turn_span, running_turns};

/// Metric names, as exported.
pub mod metric {
    /// Counter: instances activated; labels `partition`, `manager`, `mode` (fresh, thawed).
    pub const ACTIVATIONS: &str = "tenantry_activations_total";
    /// Counter: hibernation attempts; labels `partition`, `manager`, `outcome`.
    pub const HIBERNATIONS: &str = "tenantry_hibernations_total";
    /// Counter: handler calls; labels `partition`, `manager`, `handler`, `outcome`.
    pub const HANDLER_CALLS: &str = "tenantry_handler_calls_total";
    /// Histogram: handler duration in seconds; labels `partition`, `manager`, `handler`.
    pub const HANDLER_SECONDS: &str = "tenantry_handler_duration_seconds";
    /// Counter: handler or hook panics; labels `partition`, `manager`.
    pub const CRASHES: &str = "tenantry_crashes_total";
    /// Gauge: live instances; labels `partition`, `manager`.
    pub const LIVE_INSTANCES: &str = "tenantry_live_instances";
}

/// One thing that happened to one instance (or, for [`EventKind::Throttled`], to a
/// partition's quota).
#[derive(Debug, Clone)]
pub struct Event {
    /// The instance's partition.
    pub partition: Partition,
    /// The instance's manager.
    pub manager: Arc<str>,
    /// The instance's key.
    pub key: Key,
    /// When it happened.
    pub at: SystemTime,
    /// What happened.
    pub kind: EventKind,
}

/// Why an instance stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `stop` was called, or the instance asked to stop.
    Requested,
    /// It was idle for the manager's idle timeout.
    Idle,
    /// The runtime shut down.
    Shutdown,
    /// Its checkpoint was overwritten by another writer; it stopped without writing.
    Fenced,
    /// Its partition was at its live-instance cap, and it was the least recently used
    /// idle instance: it hibernated to make room.
    Evicted,
}

/// How a handler call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler returned a reply.
    Ok,
    /// The handler returned an error.
    Error,
    /// The handler panicked.
    Panic,
}

impl Outcome {
    /// The label used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Panic => "panic",
        }
    }
}

/// The phase of a pod operation, in the start/stop/exception style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// It began.
    Start,
    /// It finished and everything asked for is running.
    Stop,
    /// It finished with failures (or pending nodes).
    Exception,
}

/// The kinds of runtime events.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EventKind {
    /// Started fresh (no checkpoint).
    Started,
    /// Started from a checkpoint of this version.
    Thawed {
        /// The checkpoint's store version.
        version: u64,
    },
    /// A checkpoint was written.
    Hibernated {
        /// The new store version.
        version: u64,
    },
    /// A checkpoint write failed; the instance stays live unless it was fenced.
    HibernateFailed {
        /// Why.
        error: String,
    },
    /// A stored checkpoint could not be used; nothing was started.
    ThawFailed {
        /// Why.
        error: String,
    },
    /// The instance stopped (after hibernating, unless fenced).
    Stopped {
        /// Why it stopped.
        reason: StopReason,
    },
    /// The instance stopped because it was idle, after hibernating.
    IdleStopped {
        /// How long it had been idle.
        idle_for: Duration,
    },
    /// A handler or hook panicked.
    Crashed {
        /// The panic message.
        message: String,
    },
    /// The instance restarted from its last good state after a crash.
    Restarted {
        /// Restarts within the current policy window, this one included.
        attempt: u32,
    },
    /// The restart bound was exceeded; the instance stopped without a checkpoint.
    GaveUp {
        /// Why.
        reason: String,
    },
    /// A lifecycle hook returned an error that did not stop the instance.
    HookFailed {
        /// The hook (`on_stop`, ...).
        hook: &'static str,
        /// Its error.
        error: String,
    },
    /// A handler finished.
    HandlerFinished {
        /// The handler's name.
        handler: &'static str,
        /// How long it ran.
        duration: Duration,
        /// How it ended.
        outcome: Outcome,
    },
    /// A pod reconcile began or ended (event of the pod's identity).
    PodReconcile {
        /// Start, stop or exception.
        phase: PodPhase,
        /// How long it took (on stop and exception).
        duration: Option<Duration>,
        /// Nodes requested.
        requested: usize,
        /// Nodes running and bound.
        completed: usize,
        /// Nodes that failed.
        failed: usize,
        /// Nodes not tried.
        pending: usize,
    },
    /// A pod's `ensure_node` began or ended (event of the pod's identity).
    NodeEnsure {
        /// The node.
        node: String,
        /// Start, stop or exception.
        phase: PodPhase,
        /// How long it took (on stop and exception).
        duration: Option<Duration>,
    },
    /// The providers of a service contract changed (event of the instance that caused it).
    ServiceChanged {
        /// The contract.
        contract: String,
    },
    /// An admin-granted instance reached into another partition.
    Audit {
        /// What it did (`invoke tenant-db.query`, ...).
        action: String,
        /// The partition it reached.
        target: Partition,
    },
    /// An effect of the instance returned an error.
    EffectFailed {
        /// The error.
        error: String,
    },
    /// A message accepted into the mailbox was dropped because the instance stopped first.
    MessageDropped {
        /// The handler it was for.
        handler: &'static str,
    },
    /// A limit of the partition refused calls or activations (event of the identity
    /// `_quota/<limit>` in the partition, [`crate::quota::QUOTA_IDENTITY`]). Sent at most once a second per partition, by
    /// the first refusal of that second, so a flood of refusals is not a flood of events.
    Throttled {
        /// The refusal: the limit, and when the refused caller may try again.
        throttled: crate::quota::Throttled,
        /// The partition's refusals by this limit so far, this one included.
        refused: u64,
    },
}

/// A subscription to runtime events: every partition's, or one partition's only.
pub struct EventStream {
    rx: broadcast::Receiver<Arc<Event>>,
    /// The counts it is one of: all subscribers, and its channel's.
    counted: [Arc<AtomicUsize>; 2],
}

impl Drop for EventStream {
    fn drop(&mut self) {
        for count in &self.counted {
            count.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Why [`EventStream::recv`] returned no event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The subscriber fell behind and this many events were skipped.
    #[error("the subscriber lagged behind and missed {0} events")]
    Lagged(u64),
    /// The runtime is gone.
    #[error("the runtime is gone")]
    Closed,
}

impl EventStream {
    /// Waits for the next event.
    pub async fn recv(&mut self) -> Result<Arc<Event>, RecvError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<Result<Arc<Event>, RecvError>> {
        match self.rx.try_recv() {
            Ok(e) => Some(Ok(e)),
            Err(broadcast::error::TryRecvError::Empty) => None,
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(broadcast::error::TryRecvError::Closed) => Some(Err(RecvError::Closed)),
        }
    }
}

/// Counter and gauge handles by their labels, so hot paths do not build label sets.
#[derive(Default)]
struct MetricCache {
    counters: DashMap<CounterKey, metrics::Counter>,
    gauges: DashMap<(Partition, Arc<str>), metrics::Gauge>,
}

type CounterKey = (
    &'static str,
    Partition,
    Arc<str>,
    &'static str,
    &'static str,
);

/// One event channel and how many subscribe to it.
#[derive(Clone)]
struct Channel {
    tx: broadcast::Sender<Arc<Event>>,
    subscribers: Arc<AtomicUsize>,
}

impl Channel {
    fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(16)).0,
            subscribers: Arc::default(),
        }
    }
}

/// The most events one partition's subscriber may fall behind by before it lags.
const PARTITION_CAPACITY: usize = 1024;

/// The runtime's telemetry hub.
#[derive(Clone)]
pub(crate) struct Telemetry {
    /// Every partition's events.
    all: Channel,
    /// One channel per partition someone subscribed to: a subscriber of one partition
    /// never holds another's events, and falls behind only on its own.
    partitions: Arc<DashMap<Partition, Channel>>,
    capacity: usize,
    partition_labels: bool,
    cache: Arc<MetricCache>,
    /// Subscribers of any channel.
    subscribers: Arc<AtomicUsize>,
}

impl Telemetry {
    pub(crate) fn new(capacity: usize, partition_labels: bool) -> Self {
        Self {
            all: Channel::new(capacity),
            partitions: Arc::default(),
            capacity,
            partition_labels,
            cache: Arc::default(),
            subscribers: Arc::default(),
        }
    }

    pub(crate) fn subscribe(&self) -> EventStream {
        self.listen(&self.all)
    }

    /// Subscribes to `partition`'s events only.
    pub(crate) fn subscribe_partition(&self, partition: &Partition) -> EventStream {
        let channel = self
            .partitions
            .entry(partition.clone())
            .or_insert_with(|| Channel::new(self.capacity.min(PARTITION_CAPACITY)))
            .clone();
        self.listen(&channel)
    }

    fn listen(&self, channel: &Channel) -> EventStream {
        // Counted before subscribing: an event emitted meanwhile may reach it early, but
        // none is held back from a subscriber that is counted.
        self.subscribers.fetch_add(1, Ordering::Release);
        channel.subscribers.fetch_add(1, Ordering::Release);
        EventStream {
            rx: channel.tx.subscribe(),
            counted: [self.subscribers.clone(), channel.subscribers.clone()],
        }
    }

    /// Whether anybody listens; callers skip building events otherwise.
    #[inline]
    pub(crate) fn wanted(&self) -> bool {
        // An atomic of our own: broadcast's receiver_count takes a lock on every call.
        self.subscribers.load(Ordering::Acquire) > 0
    }

    pub(crate) fn emit(&self, identity: &crate::Identity, kind: EventKind) {
        if !self.wanted() {
            return;
        }
        // Where it goes, before it is built: a subscriber of another partition costs
        // this one a map lookup, not an event.
        let own = self
            .partitions
            .get(&identity.partition)
            .filter(|own| own.subscribers.load(Ordering::Acquire) > 0)
            .map(|own| own.tx.clone());
        let all = self.all.subscribers.load(Ordering::Acquire) > 0;
        if own.is_none() && !all {
            return;
        }
        let event = Arc::new(Event {
            partition: identity.partition.clone(),
            manager: identity.manager.clone(),
            key: identity.key.clone(),
            at: SystemTime::now(),
            kind,
        });
        if let Some(own) = own {
            let _ = own.send(event.clone());
        }
        if all {
            let _ = self.all.tx.send(event);
        }
    }

    /// The partition label value: the name, `""` for unpartitioned, `"*"` when disabled.
    pub(crate) fn partition_label(&self, partition: &Partition) -> String {
        if self.partition_labels {
            partition.as_storage_str().to_owned()
        } else {
            "*".to_owned()
        }
    }

    /// The partition as it appears in the metric cache key (all alike when labels are off).
    fn label_partition(&self, partition: &Partition) -> Partition {
        if self.partition_labels {
            partition.clone()
        } else {
            Partition::unpartitioned()
        }
    }

    pub(crate) fn count(
        &self,
        name: &'static str,
        identity: &crate::Identity,
        extra: (&'static str, &'static str),
    ) {
        let key = (
            name,
            self.label_partition(&identity.partition),
            identity.manager.clone(),
            extra.0,
            extra.1,
        );
        if let Some(counter) = self.cache.counters.get(&key) {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(
            name,
            "partition" => self.partition_label(&identity.partition),
            "manager" => identity.manager.to_string(),
            extra.0 => extra.1
        );
        counter.increment(1);
        self.cache.counters.insert(key, counter);
    }

    /// Moves the live-instances gauge of the instance's partition and manager.
    pub(crate) fn live(&self, identity: &crate::Identity, delta: f64) {
        let key = (
            self.label_partition(&identity.partition),
            identity.manager.clone(),
        );
        self.cache
            .gauges
            .entry(key)
            .or_insert_with(|| {
                metrics::gauge!(
                    metric::LIVE_INSTANCES,
                    "partition" => self.partition_label(&identity.partition),
                    "manager" => identity.manager.to_string()
                )
            })
            .increment(delta);
    }
}

/// Per-instance cache of metric handles, so a handler call does not build labels.
#[derive(Default)]
pub(crate) struct HandlerMetrics {
    by_handler: Vec<(
        &'static str,
        [Option<metrics::Counter>; 3],
        metrics::Histogram,
    )>,
}

impl HandlerMetrics {
    pub(crate) fn record(
        &mut self,
        telemetry: &Telemetry,
        identity: &crate::Identity,
        handler: &'static str,
        outcome: Outcome,
        duration: Duration,
    ) {
        let idx = match self.by_handler.iter().position(|(h, _, _)| *h == handler) {
            Some(i) => i,
            None => {
                let histogram = metrics::histogram!(
                    metric::HANDLER_SECONDS,
                    "partition" => telemetry.partition_label(&identity.partition),
                    "manager" => identity.manager.to_string(),
                    "handler" => handler
                );
                // One slot per handler seen: an idle instance keeps this, and the
                // default growth would reserve four.
                self.by_handler.reserve_exact(1);
                self.by_handler
                    .push((handler, [None, None, None], histogram));
                self.by_handler.len() - 1
            }
        };
        let (_, counters, histogram) = &mut self.by_handler[idx];
        histogram.record(duration.as_secs_f64());
        counters[outcome as usize]
            .get_or_insert_with(|| {
                metrics::counter!(
                    metric::HANDLER_CALLS,
                    "partition" => telemetry.partition_label(&identity.partition),
                    "manager" => identity.manager.to_string(),
                    "handler" => handler,
                    "outcome" => outcome.as_str()
                )
            })
            .increment(1);
    }
}
