//! The runtime: one host of managers over one store, with one telemetry hub.
//!
//! Several runtimes in one process share nothing: each has its own store handle,
//! managers, directories and event stream.

use crate::bus::{Bus, BusState, Transport};
use crate::caller::Caller;
use crate::instance::cell::AnyInstance;
use crate::instance::factory::Factory;
use crate::kernel::{Kernel, KernelState};
use crate::manager::{AnyManager, Manager, ManagerConfig};
use crate::pod::lineage::{Binding, Lineage};
use crate::pod::state::LivePod;
use crate::pod::topology::{NodeKind, OnParentStop, Topology, TopologyError, node_label};
use crate::pod::{PodFactory, PodManager, PodState};
use crate::store::{CheckpointStore, MemoryStore, RedbStore, StoreError};
use crate::telemetry::{EventStream, Telemetry};
use crate::{Error, Identity, IntoKey, Partition};
use dashmap::DashMap;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What every manager of a runtime shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn CheckpointStore>,
    pub(crate) telemetry: Telemetry,
    pub(crate) epoch: Instant,
    /// Counts running actor tasks. Kept apart from the store so that, once it reads zero,
    /// no task holds the store any more (a reopened redb file is free).
    pub(crate) actors: Arc<ActorTracker>,
    /// Parent bindings, per partition.
    pub(crate) lineage: Lineage,
    /// Topology caches of live pods.
    pub(crate) live_pods: DashMap<Identity, Arc<LivePod>>,
    closed: AtomicBool,
    anchor_started: AtomicBool,
}

/// Counts actor tasks and wakes whoever waits for them to end.
#[derive(Default)]
pub(crate) struct ActorTracker {
    live: AtomicUsize,
    changed: Notify,
}

impl ActorTracker {
    pub(crate) fn enter(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// Called as the very last thing an actor task does, after dropping its state.
    pub(crate) fn exit(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Waits until at most `n` actors run, or `limit` passes.
    async fn wait_at_most(&self, n: usize, limit: Duration) {
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

pub(crate) struct RuntimeInner {
    pub(crate) shared: Arc<Shared>,
    managers: RwLock<HashMap<Arc<str>, Arc<dyn AnyManager>>>,
    /// Declared topologies of the pods managers, by manager name.
    pods: RwLock<HashMap<String, PodDecl>>,
    /// Component factories and instances, services.
    pub(crate) kernel: KernelState,
    /// Transports and subscriptions.
    pub(crate) bus: BusState,
}

struct PodDecl {
    factory: &'static str,
    topology: Topology,
}

impl RuntimeInner {
    /// Whether `name` is a pods manager.
    pub(crate) fn is_pod_manager(&self, name: &str) -> bool {
        self.pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// The names of all managers, sorted.
    pub(crate) fn manager_names(&self) -> Vec<String> {
        let managers = self.managers.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = managers.keys().map(|k| k.to_string()).collect();
        names.sort();
        names
    }

    /// The pods manager `name`.
    pub(crate) fn pod_manager(&self, name: &str) -> Result<Arc<dyn AnyManager>, Error> {
        if !self
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
        {
            return Err(Error::UnknownManager(name.to_owned()));
        }
        self.manager_dyn(name)
            .ok_or_else(|| Error::UnknownManager(name.to_owned()))
    }

    /// Checks a topology against the registry: every node's manager exists and manages
    /// its factory, pod nodes live in pods managers, and no pod contains itself.
    pub(crate) fn check_topology(
        &self,
        pod_factory: &str,
        own_manager: &str,
        topology: &Topology,
    ) -> Result<(), TopologyError> {
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        for node in &topology.nodes {
            let label = node_label(&node.name);
            if node.kind == NodeKind::Pod
                && (node.manager == own_manager || node.factory == pod_factory)
            {
                return Err(TopologyError::ContainsItself {
                    pod: pod_factory.to_owned(),
                    path: vec![pod_factory.to_owned(), node.factory.clone()],
                });
            }
            let manager =
                self.manager_dyn(&node.manager)
                    .ok_or_else(|| TopologyError::UnknownManager {
                        node: label.clone(),
                        manager: node.manager.clone(),
                    })?;
            if manager.factory() != node.factory {
                return Err(TopologyError::ManagerMismatch {
                    node: label,
                    manager: node.manager.clone(),
                    expected: node.factory.clone(),
                    actual: manager.factory().to_owned(),
                });
            }
            if node.kind == NodeKind::Pod {
                if !pods.contains_key(&node.manager) {
                    return Err(TopologyError::NotAPodManager {
                        node: label,
                        manager: node.manager.clone(),
                    });
                }
                let mut path = vec![pod_factory.to_owned()];
                contains(&pods, &node.manager, pod_factory, &mut path)?;
            }
        }
        Ok(())
    }
    pub(crate) fn manager_dyn(&self, name: &str) -> Option<Arc<dyn AnyManager>> {
        self.managers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub(crate) fn typed_manager<F: Factory>(&self, name: &str) -> Result<Manager<F>, Error> {
        self.manager_dyn(name)
            .and_then(|m| m.as_any().downcast_ref::<Manager<F>>().cloned())
            .ok_or_else(|| Error::UnknownManager(name.to_owned()))
    }
}

/// A Tenantry runtime. Cheap to clone; clones share the same runtime.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

/// Builds a [`Runtime`].
pub struct RuntimeBuilder {
    store: Option<Arc<dyn CheckpointStore>>,
    event_capacity: usize,
    metric_partition_labels: bool,
}

impl RuntimeBuilder {
    /// Uses `store` for checkpoints.
    pub fn store(mut self, store: impl CheckpointStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Uses a shared store handle for checkpoints.
    pub fn store_arc(mut self, store: Arc<dyn CheckpointStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Uses the embedded redb store at `path` (created if missing).
    pub fn redb(self, path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Ok(self.store(RedbStore::open(path)?))
    }

    /// How many events a slow subscriber may fall behind before it lags (default 4096).
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Whether metrics carry a `partition` label (default true). Switch off with very
    /// many tenants to bound metric cardinality.
    pub fn metric_partition_labels(mut self, on: bool) -> Self {
        self.metric_partition_labels = on;
        self
    }

    /// Builds the runtime (an in-memory store unless one was given).
    pub fn build(self) -> Runtime {
        let shared = Arc::new(Shared {
            store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
            telemetry: Telemetry::new(self.event_capacity, self.metric_partition_labels),
            epoch: Instant::now(),
            actors: Arc::default(),
            lineage: Lineage::default(),
            live_pods: DashMap::new(),
            closed: AtomicBool::new(false),
            anchor_started: AtomicBool::new(false),
        });
        Runtime {
            inner: Arc::new(RuntimeInner {
                shared,
                managers: RwLock::new(HashMap::new()),
                pods: RwLock::new(HashMap::new()),
                kernel: KernelState::default(),
                bus: BusState::default(),
            }),
        }
    }
}

/// What [`Runtime::shutdown`] did.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Instances hibernated and stopped.
    pub stopped: usize,
    /// Instances that could not hibernate (they were left running until the runtime drops).
    pub errors: Vec<Error>,
}

/// Walks nested pods from `manager` and fails if `target` appears at any depth.
fn contains(
    pods: &HashMap<String, PodDecl>,
    manager: &str,
    target: &str,
    path: &mut Vec<String>,
) -> Result<(), TopologyError> {
    let Some(decl) = pods.get(manager) else {
        return Ok(());
    };
    path.push(decl.factory.to_owned());
    if decl.factory == target {
        return Err(TopologyError::ContainsItself {
            pod: target.to_owned(),
            path: path.clone(),
        });
    }
    for node in decl
        .topology
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Pod)
    {
        contains(pods, &node.manager, target, path)?;
    }
    path.pop();
    Ok(())
}

impl Runtime {
    pub(crate) fn inner(&self) -> &Arc<RuntimeInner> {
        &self.inner
    }

    /// The runtime behind a weak reference, while it exists.
    pub(crate) fn upgrade(weak: &std::sync::Weak<RuntimeInner>) -> Option<Self> {
        weak.upgrade().map(|inner| Self { inner })
    }

    /// Registers a pods manager named `name` for pod factory `P`. The declared topology
    /// is checked here: its structure, that every node manager is registered and manages
    /// the node's factory (register node managers and nested pods managers first), and
    /// that no nested pod contains this pod at any depth.
    pub fn register_pod<P: PodFactory>(
        &self,
        name: &str,
        config: ManagerConfig,
    ) -> Result<PodManager<P>, Error> {
        let topology = P::topology().map_err(Error::Topology)?;
        topology.validate().map_err(Error::Topology)?;
        self.inner
            .check_topology(P::NAME, name, &topology)
            .map_err(Error::Topology)?;
        let manager = self.register::<PodState<P>>(name, config)?;
        self.inner
            .pods
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name.to_owned(),
                PodDecl {
                    factory: P::NAME,
                    topology,
                },
            );
        Ok(PodManager {
            manager,
            runtime: self.clone(),
        })
    }

    /// Binds the live instance `child_key` of `child_manager` to `parent`. The child is
    /// looked up in the parent's own partition only: adoption never crosses tenants.
    pub fn adopt(
        &self,
        parent: &Identity,
        child_manager: &str,
        child_key: impl IntoKey,
        policy: OnParentStop,
    ) -> Result<(), Error> {
        let key = child_key.into_key()?;
        let child = Identity::new(parent.partition.clone(), child_manager, key);
        let live = self
            .inner
            .manager_dyn(child_manager)
            .and_then(|m| m.lookup_dyn(&child.key, &child.partition))
            .is_some();
        if !live {
            return Err(Error::NotFound(child));
        }
        self.inner.shared.lineage.bind(&child, parent, policy);
        Ok(())
    }

    /// The escape hatch: binds an instance by its raw handle to a parent in any
    /// partition. Pods never use it; every use is logged as a cross-partition adoption.
    pub fn adopt_across_partitions_unchecked(
        &self,
        parent: &Identity,
        child: &dyn AnyInstance,
        policy: OnParentStop,
    ) {
        let child = child.identity();
        if child.partition != parent.partition {
            tracing::warn!(
                parent = %parent,
                child = %child,
                "cross-partition adoption through the escape hatch"
            );
        }
        self.inner.shared.lineage.bind(child, parent, policy);
    }

    /// The parent binding of `child`, if it has one (or had one and was orphaned).
    pub fn binding(&self, child: &Identity) -> Option<Binding> {
        self.inner.shared.lineage.binding(child)
    }

    /// A builder.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            store: None,
            event_capacity: 4096,
            metric_partition_labels: true,
        }
    }

    /// A runtime over `store`.
    pub fn new(store: impl CheckpointStore) -> Self {
        Self::builder().store(store).build()
    }

    /// A runtime over an in-memory store.
    pub fn in_memory() -> Self {
        Self::builder().build()
    }

    /// The checkpoint store.
    pub fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.inner.shared.store
    }

    /// Registers a manager named `name` for factory `F`. Names are unique per runtime and
    /// follow the partition-name rules (ASCII letters, digits, `_`, `-`).
    pub fn register<F: Factory>(
        &self,
        name: &str,
        config: ManagerConfig,
    ) -> Result<Manager<F>, Error> {
        crate::partition::check_name(name).map_err(|e| Error::InvalidName {
            what: "manager",
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        let mut managers = self
            .inner
            .managers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if managers.contains_key(name) {
            return Err(Error::DuplicateManager(name.to_owned()));
        }
        let name: Arc<str> = Arc::from(name);
        let manager = Manager::<F>::new(
            name.clone(),
            config,
            self.inner.shared.clone(),
            Arc::downgrade(&self.inner),
        )?;
        managers.insert(name, Arc::new(manager.clone()));
        Ok(manager)
    }

    /// The manager named `name`, if it manages factory `F`.
    pub fn manager<F: Factory>(&self, name: &str) -> Result<Manager<F>, Error> {
        self.inner.typed_manager(name)
    }

    /// The manager named `name`, without its factory type.
    pub fn manager_dyn(&self, name: &str) -> Option<Arc<dyn AnyManager>> {
        self.inner.manager_dyn(name)
    }

    /// The names of all registered managers, sorted.
    pub fn manager_names(&self) -> Vec<String> {
        self.inner.manager_names()
    }

    /// The names of the pods managers, sorted.
    pub fn pod_manager_names(&self) -> Vec<String> {
        let pods = self.inner.pods.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = pods.keys().cloned().collect();
        names.sort();
        names
    }

    /// The topology a pods manager declared.
    pub fn pod_topology(&self, manager: &str) -> Option<Topology> {
        self.inner
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(manager)
            .map(|d| d.topology.clone())
    }

    /// The component kernel.
    pub fn kernel(&self) -> Kernel {
        Kernel::new(self.clone())
    }

    /// The bus, as trusted host code.
    pub fn bus(&self) -> Bus {
        Bus::new(self.inner.clone(), Caller::host())
    }

    /// The bus, confined to `partition` (what a tenant's API key gets).
    pub fn bus_for(&self, partition: &Partition) -> Bus {
        Bus::new(self.inner.clone(), Caller::tenant(partition.clone()))
    }

    /// Adds a remote transport, tried after every local route.
    pub fn add_transport(&self, transport: impl Transport) {
        self.inner.bus.add_transport(Arc::new(transport));
    }

    /// Subscribes to runtime events.
    pub fn subscribe(&self) -> EventStream {
        self.inner.shared.telemetry.subscribe()
    }

    fn all_managers(&self) -> Vec<Arc<dyn AnyManager>> {
        let managers = self
            .inner
            .managers
            .read()
            .unwrap_or_else(|e| e.into_inner());
        managers.values().cloned().collect()
    }

    /// Hibernates every live instance of one partition, across all managers, and forgets
    /// the partition's parent bindings (offboarding).
    pub async fn stop_partition(&self, partition: &Partition) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        for manager in self.all_managers() {
            let (stopped, errors) = manager.stop_partition_dyn(partition).await;
            report.stopped += stopped;
            report.errors.extend(errors);
        }
        if report.errors.is_empty() {
            self.inner.shared.lineage.purge_partition(partition);
        }
        report
    }

    /// Refuses new activations, then hibernates every live instance and waits (up to five
    /// seconds) for their tasks to end, so the store is released when this returns.
    pub async fn shutdown(&self) -> ShutdownReport {
        self.inner.shared.closed.store(true, Ordering::Release);
        let mut report = ShutdownReport::default();
        for manager in self.all_managers() {
            let (stopped, errors) = manager.stop_all_dyn().await;
            report.stopped += stopped;
            report.errors.extend(errors);
        }
        self.inner
            .shared
            .actors
            .wait_at_most(report.errors.len(), Duration::from_secs(5))
            .await;
        report
    }
}
