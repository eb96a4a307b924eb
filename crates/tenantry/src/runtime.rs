//! The runtime: the composition root of the layers, one host of managers over one store,
//! with one telemetry hub.
//!
//! Every layer keeps its own part ([`Shared`] and [`Managers`] for the managers,
//! [`KernelCore`], [`BusCore`], [`PodCore`]), and each part holds only the parts below it.
//! Only here are they put together: the runtime builds them in order, implements the
//! instance layer's [`Host`] over them, and adds the public API that spans layers.
//! Several runtimes in one process share nothing: each has its own store handle,
//! managers, directories and event stream.

use crate::bus::{Bus, BusCore, EventSink, Transport};
use crate::caller::Caller;
use crate::config::ConfigStore;
use crate::instance::cell::AnyInstance;
use crate::instance::factory::Factory;
use crate::instance::host::Host;
use crate::kernel::{Kernel, KernelCore};
use crate::manager::lineage::{Binding, OnParentStop};
use crate::manager::{AnyManager, Manager, ManagerConfig, Managers, Role, Shared};
use crate::pod::core::PodCore;
use crate::pod::topology::Topology;
use crate::pod::{Pod, PodFactory, PodManager, ReconcileReport};
use crate::quota::Quotas;
use crate::quota::metered::Metered;
use crate::scope::CredentialVault;
use crate::store::{CheckpointStore, MemoryStore, RedbStore, StoreError};
use crate::telemetry::{EventStream, Telemetry};
use crate::{Error, Identity, IntoKey, Partition};
use std::any::{Any, TypeId};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The composition root: every layer's part of one runtime.
pub(crate) struct RuntimeInner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) managers: Arc<Managers>,
    /// Component factories and instances, services.
    pub(crate) kernel: Arc<KernelCore>,
    /// Transports and subscriptions.
    pub(crate) bus: Arc<BusCore>,
    /// Pods managers' topologies and live pods.
    pub(crate) pods: Arc<PodCore>,
}

impl Drop for RuntimeInner {
    /// Dropping the runtime (every [`Runtime`] handle) ends its idle instances, as if the
    /// process had ended; `shutdown` first to hibernate them.
    fn drop(&mut self) {
        self.shared.close();
        for manager in self.managers.all() {
            manager.abandon();
        }
    }
}

impl Host for RuntimeInner {
    fn store(&self) -> &Arc<dyn CheckpointStore> {
        &self.shared.store
    }

    fn telemetry(&self) -> &Telemetry {
        &self.shared.telemetry
    }

    fn config(&self) -> &Arc<ConfigStore> {
        &self.kernel.state.config
    }

    fn credentials(&self) -> &Arc<CredentialVault> {
        &self.kernel.state.credentials
    }

    fn holds_admin_grant(&self, identity: &Identity) -> bool {
        self.kernel.holds_admin_grant(identity)
    }

    fn part(&self, part: TypeId) -> Option<&(dyn Any + Send + Sync)> {
        if part == TypeId::of::<Arc<Managers>>() {
            Some(&self.managers)
        } else if part == TypeId::of::<Arc<KernelCore>>() {
            Some(&self.kernel)
        } else if part == TypeId::of::<Arc<BusCore>>() {
            Some(&self.bus)
        } else if part == TypeId::of::<Arc<PodCore>>() {
            Some(&self.pods)
        } else {
            None
        }
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
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let telemetry = Telemetry::new(self.event_capacity, self.metric_partition_labels);
        let quotas = Quotas::new(Arc::default(), telemetry.clone(), store.clone());
        let store: Arc<dyn CheckpointStore> = Arc::new(Metered::new(store, quotas.clone()));
        let inner = Arc::new_cyclic(|me: &Weak<RuntimeInner>| {
            let managers = Arc::new(Managers::default());
            let host: Weak<dyn Host> = me.clone();
            let host = Arc::new(host);
            let shared = Arc::new(Shared::new(
                store,
                telemetry,
                quotas,
                host,
                Arc::downgrade(&managers),
            ));
            let kernel = Arc::new(KernelCore::new(shared.clone(), managers.clone()));
            let bus = Arc::new(BusCore::new(
                shared.clone(),
                managers.clone(),
                kernel.clone(),
            ));
            let pods = Arc::new(PodCore::new(shared.clone(), managers.clone()));
            RuntimeInner {
                shared,
                managers,
                kernel,
                bus,
                pods,
            }
        });
        Runtime { inner }
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

impl Runtime {
    /// Registers a pods manager named `name` for pod factory `P`. The declared topology
    /// is checked here: its structure, that every node manager is registered and manages
    /// the node's factory (register node managers and nested pods managers first), and
    /// that no nested pod contains this pod at any depth.
    pub fn register_pod<P: PodFactory>(
        &self,
        name: &str,
        config: ManagerConfig,
    ) -> Result<PodManager<P>, Error> {
        self.inner.pods.register::<P>(name, config)
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
            .managers
            .get(child_manager)
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
        self.inner
            .managers
            .register(&self.inner.shared, name, config, Role::Keyed)
    }

    /// The manager named `name`, if it manages factory `F`.
    pub fn manager<F: Factory>(&self, name: &str) -> Result<Manager<F>, Error> {
        self.inner.managers.typed(name)
    }

    /// The manager named `name`, without its factory type.
    pub fn manager_dyn(&self, name: &str) -> Option<Arc<dyn AnyManager>> {
        self.inner.managers.get(name)
    }

    /// The names of all registered managers, sorted.
    pub fn manager_names(&self) -> Vec<String> {
        self.inner.managers.names(None)
    }

    /// The names of the pods managers, sorted.
    pub fn pod_manager_names(&self) -> Vec<String> {
        self.inner.pods.manager_names()
    }

    /// The topology a pods manager declared.
    pub fn pod_topology(&self, manager: &str) -> Option<Topology> {
        self.inner.pods.declared(manager)
    }

    /// The component kernel.
    pub fn kernel(&self) -> Kernel {
        Kernel::new(self.inner.kernel.clone())
    }

    /// The bus, as trusted host code.
    pub fn bus(&self) -> Bus {
        Bus::new(self.inner.bus.clone(), Caller::host())
    }

    /// The bus, confined to `partition` (what a tenant's API key gets). Its calls enter
    /// from outside: the partition's limits admit each first ([`Runtime::quotas`]).
    pub fn bus_for(&self, partition: &Partition) -> Bus {
        Bus::entry(self.inner.bus.clone(), partition)
    }

    /// The partitions' limits and usage, and the fair share of a saturated runtime.
    pub fn quotas(&self) -> &Arc<crate::quota::Quotas> {
        &self.inner.bus.quotas
    }

    /// The bus of the admin-granted component instance `identity`, for host code that
    /// carries on a call that instance made elsewhere (a cluster node answering a
    /// forwarded call). `None` unless this runtime holds such an instance.
    pub fn bus_for_granted(&self, identity: &Identity) -> Option<Bus> {
        self.inner.kernel.holds_admin_grant(identity).then(|| {
            Bus::new(
                self.inner.bus.clone(),
                Caller::admin(Arc::new(identity.clone())),
            )
        })
    }

    /// Adds a sink every published event also goes to (see [`EventSink`]).
    pub fn add_event_sink(&self, sink: impl EventSink) {
        self.inner.bus.add_sink(Arc::new(sink));
    }

    /// Delivers an event published elsewhere (another node of a cluster) to this
    /// runtime's subscribers of `partition`, and to no sink; how many it reached.
    pub fn deliver_event(
        &self,
        partition: &Partition,
        topic: &str,
        payload: serde_json::Value,
    ) -> usize {
        self.bus().deliver(partition, topic, payload)
    }

    /// Adds a remote transport, tried after every local route.
    pub fn add_transport(&self, transport: impl Transport) {
        self.inner.bus.add_transport(Arc::new(transport));
    }

    /// Subscribes to runtime events, of every partition.
    pub fn subscribe(&self) -> EventStream {
        self.inner.shared.telemetry.subscribe()
    }

    /// Subscribes to the events of `partition`'s instances only. Its subscribers have a
    /// buffer of their own (up to 1,024 events, at most the runtime's event capacity):
    /// one that falls behind lags by that partition's events alone, and never holds
    /// another partition's.
    pub fn subscribe_partition(&self, partition: &Partition) -> EventStream {
        self.inner.shared.telemetry.subscribe_partition(partition)
    }

    /// Sets which instances this process may serve from now on (cluster mode: those of
    /// the shards this node serves); `None` admits all (the default). A `get` the
    /// admission refuses, of a new or a live instance, fails with
    /// [`Error::ServedElsewhere`] (which the bus hands to its transports); a refused live
    /// instance stays live until it is stopped (hand a shard off with
    /// [`Runtime::stop_where`]).
    pub fn set_admission(&self, admission: Option<crate::Admission>) {
        self.inner.shared.set_admission(admission);
    }

    /// Hibernates every live instance of one partition, across all managers, and forgets
    /// the partition's parent bindings (offboarding).
    pub async fn stop_partition(&self, partition: &Partition) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        for manager in self.inner.managers.all() {
            let (stopped, errors) = manager.stop_partition_dyn(partition).await;
            report.stopped += stopped;
            report.errors.extend(errors);
        }
        if report.errors.is_empty() {
            self.inner.shared.lineage.purge_partition(partition);
        }
        report
    }

    /// Hibernates every live instance, across all managers, whose identity `matches`
    /// (a cluster node handing shards off: refuse their activation first with
    /// [`Runtime::set_admission`], then stop them here).
    pub async fn stop_where(&self, matches: &(dyn Fn(&Identity) -> bool + Sync)) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        for manager in self.inner.managers.all() {
            let (stopped, errors) = manager.stop_where_dyn(matches).await;
            report.stopped += stopped;
            report.errors.extend(errors);
        }
        report
    }

    /// Refuses new activations, then hibernates every live instance and waits (up to five
    /// seconds) for their actors to end, so the store is released when this returns.
    pub async fn shutdown(&self) -> ShutdownReport {
        self.inner.shared.close();
        let mut report = ShutdownReport::default();
        for manager in self.inner.managers.all() {
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

impl Pod {
    /// Gets or thaws the pod `key` of pods manager `pods_manager` in `partition`, then
    /// reconciles it: eager nodes and their prerequisites start in dependency waves, and
    /// surviving children are re-adopted. A failed reconcile leaves the pod alive; the
    /// report says what failed and what is pending.
    pub async fn get(
        runtime: &Runtime,
        pods_manager: &str,
        key: impl IntoKey,
        partition: &Partition,
    ) -> Result<(Pod, ReconcileReport), Error> {
        Pod::get_in(runtime.inner.pods.clone(), pods_manager, key, partition).await
    }

    /// The live pod `key`, if it runs. Never starts it.
    pub async fn lookup(
        runtime: &Runtime,
        pods_manager: &str,
        key: impl IntoKey,
        partition: &Partition,
    ) -> Result<Option<Pod>, Error> {
        Pod::lookup_in(runtime.inner.pods.clone(), pods_manager, key, partition).await
    }
}
