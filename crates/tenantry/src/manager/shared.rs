//! What every manager of a runtime shares: the store, telemetry, the count of live
//! actors, parent bindings, the registry, and the runtime as instances reach it.

use super::lineage::Lineage;
use super::registry::Managers;
use crate::instance::host::HostRef;
use crate::quota::Quotas;
use crate::store::CheckpointStore;
use crate::telemetry::Telemetry;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What every manager of a runtime shares.
pub(crate) struct Shared {
    /// The runtime's store, metered by the partitions' byte limits.
    pub(crate) store: Arc<dyn CheckpointStore>,
    pub(crate) telemetry: Telemetry,
    /// The partitions' limits: calls from outside, live instances, bytes stored.
    pub(crate) quotas: Arc<Quotas>,
    pub(crate) epoch: Instant,
    /// Counts live actors (running or parked). Kept apart from the store so that, once it
    /// reads zero, no actor holds the store any more (a reopened redb file is free).
    pub(crate) actors: Arc<ActorTracker>,
    /// Parent bindings, per partition.
    pub(crate) lineage: Lineage,
    /// The runtime, as the contexts of instances reach it (weak: the runtime owns us).
    pub(crate) host: HostRef,
    /// Every manager, for actors that stop their children (weak: managers own us).
    pub(crate) managers: Weak<Managers>,
    closed: AtomicBool,
    anchor_started: AtomicBool,
    /// Which instances this process may serve (cluster mode); `None`: all.
    admission: std::sync::RwLock<Option<Admission>>,
    /// Whether `admission` is set: a plain load keeps single-process gets off the lock.
    admission_set: AtomicBool,
}

/// Decides whether this process may serve an instance (activate, thaw, or hand out its
/// live handle): cluster mode admits the identities of the shards this node serves, so
/// a node whose lease ran out answers for none of them.
pub type Admission = Arc<dyn Fn(&crate::Identity) -> bool + Send + Sync>;

/// Counts live actors and wakes whoever waits for them to end.
#[derive(Default)]
pub(crate) struct ActorTracker {
    live: AtomicUsize,
    changed: Notify,
}

impl ActorTracker {
    pub(crate) fn enter(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// Called as the very last thing an ending actor does, after dropping its state.
    pub(crate) fn exit(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Waits until at most `n` actors run, or `limit` passes.
    pub(crate) async fn wait_at_most(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live.load(Ordering::Acquire) <= n {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

/// Period of the timer anchor (see [`Shared::ensure_timer_anchor`]).
const TIMER_ANCHOR_PERIOD: Duration = Duration::from_millis(500);

impl Shared {
    /// The shared part of a runtime over `store`, whose contexts reach `host`.
    pub(crate) fn new(
        store: Arc<dyn CheckpointStore>,
        telemetry: Telemetry,
        quotas: Arc<Quotas>,
        host: HostRef,
        managers: Weak<Managers>,
    ) -> Self {
        Self {
            store,
            telemetry,
            quotas,
            epoch: Instant::now(),
            actors: Arc::default(),
            lineage: Lineage::default(),
            host,
            managers,
            closed: AtomicBool::new(false),
            anchor_started: AtomicBool::new(false),
            admission: std::sync::RwLock::default(),
            admission_set: AtomicBool::new(false),
        }
    }

    /// Sets (or with `None` removes) the admission every activation asks first.
    pub(crate) fn set_admission(&self, admission: Option<Admission>) {
        let mut slot = self.admission.write().unwrap_or_else(|e| e.into_inner());
        self.admission_set
            .store(admission.is_some(), Ordering::Release);
        *slot = admission;
    }

    /// Whether this process may serve the instance `identity` names: `ServedElsewhere`
    /// if not. The identity is built only when an admission is set (gets are a hot
    /// path).
    pub(crate) fn admit(
        &self,
        identity: impl FnOnce() -> crate::Identity,
    ) -> Result<(), crate::Error> {
        if !self.admission_set.load(Ordering::Acquire) {
            return Ok(());
        }
        let admission = self.admission.read().unwrap_or_else(|e| e.into_inner());
        let Some(admits) = admission.as_ref() else {
            return Ok(());
        };
        let identity = identity();
        if admits(&identity) {
            Ok(())
        } else {
            Err(crate::Error::ServedElsewhere(identity))
        }
    }

    /// Refuses new activations from now on (shutdown).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Keeps one timer always pending in tokio's time driver.
    ///
    /// Every call arms a timeout. When the driver has no earlier timer, arming one must
    /// unpark the driver (a syscall): measured, that was most of a call's cost. With an
    /// anchor due within half a second, a call's 5 s timeout is never the earliest and
    /// arms without waking anyone. The task holds only a weak reference and ends with the
    /// runtime.
    pub(crate) fn ensure_timer_anchor(self: &Arc<Self>) {
        if self.anchor_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TIMER_ANCHOR_PERIOD).await;
                match weak.upgrade() {
                    Some(shared) if !shared.is_closed() => {}
                    _ => break,
                }
            }
        });
    }
}
