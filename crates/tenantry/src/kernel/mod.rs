//! The component kernel: factories, named instances with properties, boot in dependency
//! order, hot add and hot remove, and the service registry.
//!
//! Instance names are unique per runtime and live in one namespace with factory and
//! manager names, so a bus route prefix always means one thing. The `target` property
//! sets an instance's partition. A service provider is visible to a consumer when it is
//! in the consumer's partition or unpartitioned (shared) — never another tenant's.
//!
//! By job: `registry.rs` (factories, instances, grants, rankings),
//! `boot.rs` (dependency order), `lifecycle.rs` (activation, hot add and remove,
//! shutdown), `recovery.rs` (components that gave up), `services.rs` (contracts and
//! providers), `routes.rs` (what the bus asks of it). This file holds the shared types
//! and the kernel's state.
//!
//! The kernel sits below the bus and knows nothing of it: the bus asks the kernel where a
//! route leads and who subscribes to a topic ([`KernelCore::named`],
//! [`KernelCore::subscribers`]), reading the kernel's tables through those queries only.

mod boot;
mod lifecycle;
mod recovery;
mod registry;
mod routes;
mod services;
mod table;

use routes::RouteCache;
pub(crate) use routes::{Named, Reachable};
pub(crate) use services::providers;
pub use services::{ServiceRef, ServiceRegistry};
use table::Table;

use crate::component::Properties;
use crate::config::ConfigStore;
use crate::error::Dependency;
use crate::instance::cell::AnyInstance;
use crate::manager::{AnyManager, ManagerConfig, Managers, Shared};
use crate::scope::CredentialVault;
use crate::telemetry::EventKind;
use crate::{Error, Identity, Key, Partition};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// What the kernel knows of a factory.
#[derive(Clone)]
pub(crate) struct FactoryEntry {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) provides: &'static [&'static str],
    pub(crate) requires: &'static [&'static str],
    pub(crate) depends: &'static [&'static str],
    pub(crate) subscriptions: &'static [&'static str],
    pub(crate) manager: Arc<dyn AnyManager>,
}

/// A factory as introspection shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FactoryInfo {
    /// The factory name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Contracts it provides.
    pub provides: Vec<String>,
    /// Contracts it requires.
    pub requires: Vec<String>,
    /// Factories it depends on.
    pub depends: Vec<String>,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum InstanceStatus {
    /// Instantiated, not active yet.
    Registered,
    /// Running.
    Active,
    /// Its activation failed (why); nothing of it runs.
    Failed(String),
    /// It gave up after repeated crashes (or failed to start again) and waits out its
    /// backoff; the kernel starts it again at `next_try_at_ms`.
    BackingOff {
        /// Why (the last crash or start failure; may hold a panic's text).
        error: String,
        /// Consecutive failures.
        attempt: u32,
        /// When the kernel tries again, in milliseconds since the Unix epoch.
        next_try_at_ms: u64,
    },
    /// Not started because something it needs is not active (what).
    Blocked(Vec<Dependency>),
}

impl InstanceStatus {
    /// The status of an instance waiting out the backoff of `failure`.
    pub fn backing_off(failure: &crate::failure::Failure) -> Self {
        let next_try_at_ms = failure
            .next_try_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self::BackingOff {
            error: failure.reason.clone(),
            attempt: failure.attempt,
            next_try_at_ms,
        }
    }
}

/// Cross-tenant rights given at instantiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// The default: the instance reaches its own partition only.
    None,
    /// The instance may administer other partitions; every such access is audited.
    Admin,
}

pub(crate) struct Record {
    pub(crate) name: String,
    pub(crate) factory: &'static str,
    pub(crate) properties: Arc<Properties>,
    pub(crate) partition: Partition,
    pub(crate) seq: u64,
    pub(crate) status: InstanceStatus,
    pub(crate) grant: Grant,
    pub(crate) ranking: i64,
    pub(crate) handle: Option<Arc<dyn AnyInstance>>,
}

/// An instance as introspection shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceInfo {
    /// The instance name.
    pub name: String,
    /// Its factory.
    pub factory: String,
    /// Its partition (`target`).
    pub partition: Partition,
    /// Its properties.
    pub properties: Properties,
    /// Its status.
    pub status: InstanceStatus,
    /// Its service ranking.
    pub ranking: i64,
    /// Its grant.
    pub grant: Grant,
}

/// What `boot` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BootReport {
    /// Instances activated, in order.
    pub activated: Vec<String>,
    /// Instances whose activation failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// Instances not started, with what they were waiting for.
    pub blocked: Vec<(String, Vec<Dependency>)>,
}

/// Active instance names by `(factory, partition)` and then by age.
pub(crate) type RouteIndex = BTreeMap<(&'static str, Partition), BTreeMap<u64, String>>;

/// The kernel's state, one per runtime.
#[derive(Default)]
pub(crate) struct KernelState {
    pub(crate) factories: Table<BTreeMap<String, FactoryEntry>>,
    pub(crate) instances: Table<BTreeMap<String, Record>>,
    seq: AtomicU64,
    activation_order: Mutex<Vec<String>>,
    pub(crate) services: ServiceRegistry,
    /// Active instances by (factory, partition), oldest first: the factory + target route.
    pub(crate) routes: Table<RouteIndex>,
    /// Routes the bus resolved to active instances, while the tables above are unchanged.
    pub(crate) resolved: RouteCache,
    pub(crate) credentials: Arc<CredentialVault>,
    pub(crate) config: Arc<ConfigStore>,
}

/// What `Kernel::placed` finds about an instance.
pub(crate) struct Placed {
    pub(crate) manager: Arc<dyn AnyManager>,
    pub(crate) partition: Partition,
    pub(crate) properties: Arc<Properties>,
    pub(crate) provides: &'static [&'static str],
}

/// The ranking property of a service provider (higher wins; ties go to the older).
pub const RANKING_PROPERTY: &str = "service.ranking";
/// The property that sets an instance's partition.
pub const TARGET_PROPERTY: &str = "target";

/// The kernel's state and what it works with: the managers' shared part and registry.
pub(crate) struct KernelCore {
    pub(crate) state: KernelState,
    pub(crate) shared: Arc<Shared>,
    pub(crate) managers: Arc<Managers>,
}

impl KernelCore {
    pub(crate) fn new(shared: Arc<Shared>, managers: Arc<Managers>) -> Self {
        Self {
            state: KernelState {
                config: shared.quotas.config().clone(),
                ..KernelState::default()
            },
            shared,
            managers,
        }
    }
}

/// The component kernel of a runtime. Cheap to clone.
#[derive(Clone)]
pub struct Kernel {
    core: Arc<KernelCore>,
}

/// Whether an instance in `provider` is visible to a consumer in `consumer`.
pub(crate) fn visible(provider: &Partition, consumer: &Partition) -> bool {
    provider == consumer || provider.is_unpartitioned()
}

impl Kernel {
    pub(crate) fn new(core: Arc<KernelCore>) -> Self {
        Self { core }
    }

    pub(super) fn state(&self) -> &KernelState {
        &self.core.state
    }

    pub(super) fn seq_of(&self, name: &str) -> u64 {
        self.state()
            .instances
            .read()
            .get(name)
            .map_or(u64::MAX, |r| r.seq)
    }

    pub(super) fn is_active(&self, name: &str) -> bool {
        self.state()
            .instances
            .read()
            .get(name)
            .is_some_and(|r| r.status == InstanceStatus::Active)
    }

    pub(crate) fn set_status(&self, name: &str, status: InstanceStatus) {
        if let Some(r) = self.state().instances.write().get_mut(name) {
            r.status = status;
        }
    }

    /// Where instance `name` lives: its factory's manager, its partition, its properties
    /// and the contracts it provides.
    pub(crate) fn placed(&self, name: &str) -> Result<Placed, Error> {
        let factories = self.state().factories.read();
        let instances = self.state().instances.read();
        let record = instances
            .get(name)
            .ok_or_else(|| Error::UnknownInstance(name.to_owned()))?;
        let entry = factories
            .get(record.factory)
            .ok_or_else(|| Error::UnknownFactory(record.factory.to_owned()))?;
        Ok(Placed {
            manager: entry.manager.clone(),
            partition: record.partition.clone(),
            properties: record.properties.clone(),
            provides: entry.provides,
        })
    }

    pub(super) fn services_changed(&self, contracts: &[&str], by: &Identity) {
        for contract in contracts {
            self.state().services.bump(contract);
            self.core.shared.telemetry.emit(
                by,
                EventKind::ServiceChanged {
                    contract: (*contract).to_owned(),
                },
            );
        }
    }

    /// The runtime's credentials (host code writes secrets here).
    pub fn credentials(&self) -> &Arc<CredentialVault> {
        &self.state().credentials
    }

    /// The runtime's configuration.
    pub fn config(&self) -> &Arc<ConfigStore> {
        &self.state().config
    }
}

pub(super) fn info(r: &Record) -> InstanceInfo {
    InstanceInfo {
        name: r.name.clone(),
        factory: r.factory.to_owned(),
        partition: r.partition.clone(),
        properties: (*r.properties).clone(),
        status: r.status.clone(),
        ranking: r.ranking,
        grant: r.grant,
    }
}
