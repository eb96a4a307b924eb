//! The component kernel: factories, named instances with properties, boot in dependency
//! order, hot add and hot remove, and the service registry.
//!
//! Instance names are unique per runtime and live in one namespace with factory and
//! manager names, so a bus route prefix always means one thing. The `target` property
//! sets an instance's partition. A service provider is visible to a consumer when it is
//! in the consumer's partition or unpartitioned (shared) — never another tenant's.

mod recovery;
mod services;

pub use services::{ServiceRef, ServiceRegistry};

use crate::component::{Component, ComponentState, Properties};
use crate::config::ConfigStore;
use crate::cycles::find_cycle;
use crate::instance::cell::AnyInstance;
use crate::manager::{AnyManager, ManagerConfig};
use crate::runtime::RuntimeInner;
use crate::scope::CredentialVault;
use crate::telemetry::EventKind;
use crate::{Error, Identity, Key, Partition, Runtime};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

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
    Blocked(Vec<String>),
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
    pub blocked: Vec<(String, Vec<String>)>,
}

/// Active instance names by `(factory, partition)` and then by age.
pub(crate) type RouteIndex = BTreeMap<(&'static str, Partition), BTreeMap<u64, String>>;

/// The kernel's state, one per runtime.
#[derive(Default)]
pub(crate) struct KernelState {
    pub(crate) factories: RwLock<BTreeMap<String, FactoryEntry>>,
    pub(crate) instances: RwLock<BTreeMap<String, Record>>,
    seq: AtomicU64,
    activation_order: Mutex<Vec<String>>,
    pub(crate) services: ServiceRegistry,
    /// Active instances by (factory, partition), oldest first: the factory + target route.
    pub(crate) routes: RwLock<RouteIndex>,
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

/// The component kernel of a runtime. Cheap to clone.
#[derive(Clone)]
pub struct Kernel {
    rt: Runtime,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// Whether an instance in `provider` is visible to a consumer in `consumer`.
pub(crate) fn visible(provider: &Partition, consumer: &Partition) -> bool {
    provider == consumer || provider.is_unpartitioned()
}

impl Kernel {
    pub(crate) fn new(rt: Runtime) -> Self {
        Self { rt }
    }

    fn inner(&self) -> &Arc<RuntimeInner> {
        self.rt.inner()
    }

    fn state(&self) -> &KernelState {
        &self.inner().kernel
    }

    /// Registers component factory `C` (its manager is named after it). A duplicate
    /// factory (or a manager of that name) is an error.
    pub fn register<C: Component>(&self) -> Result<(), Error> {
        if read(&self.state().factories).contains_key(C::FACTORY) {
            return Err(Error::DuplicateFactory(C::FACTORY.to_owned()));
        }
        let manager = self
            .rt
            .register::<ComponentState<C>>(C::FACTORY, ManagerConfig::default().ephemeral())
            .map_err(|e| match e {
                Error::DuplicateManager(name) => Error::DuplicateFactory(name),
                other => other,
            })?;
        manager.on_give_up(recovery::hook(Arc::downgrade(self.inner())));
        write(&self.state().factories).insert(
            C::FACTORY.to_owned(),
            FactoryEntry {
                name: C::FACTORY,
                version: C::VERSION,
                provides: C::provides(),
                requires: C::requires(),
                depends: C::depends(),
                subscriptions: C::subscriptions(),
                manager: Arc::new(manager),
            },
        );
        Ok(())
    }

    /// The registered factories.
    pub fn factories(&self) -> Vec<FactoryInfo> {
        read(&self.state().factories)
            .values()
            .map(|f| FactoryInfo {
                name: f.name.to_owned(),
                version: f.version.to_owned(),
                provides: f.provides.iter().map(|s| s.to_string()).collect(),
                requires: f.requires.iter().map(|s| s.to_string()).collect(),
                depends: f.depends.iter().map(|s| s.to_string()).collect(),
            })
            .collect()
    }

    /// Creates instance `name` of `factory` with `properties` (a JSON object). Not active
    /// until [`Kernel::boot`]. The `target` property sets its partition.
    pub fn instantiate(
        &self,
        factory: &str,
        name: &str,
        properties: serde_json::Value,
    ) -> Result<(), Error> {
        self.instantiate_with(factory, name, properties, Grant::None)
    }

    /// Like [`Kernel::instantiate`], with an explicit grant. Only host code can call this:
    /// there is no way to ask for a grant from inside an instance.
    pub fn instantiate_with(
        &self,
        factory: &str,
        name: &str,
        properties: serde_json::Value,
        grant: Grant,
    ) -> Result<(), Error> {
        crate::partition::check_name(name).map_err(|e| Error::InvalidName {
            what: "instance",
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        let properties = match properties {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => Properties::new(),
            other => {
                return Err(Error::InvalidProperties(format!(
                    "properties must be a JSON object, not {other}"
                )));
            }
        };
        let partition = match properties.get(TARGET_PROPERTY) {
            None | Some(serde_json::Value::Null) => Partition::unpartitioned(),
            Some(serde_json::Value::String(t)) => Partition::new(t)?,
            Some(other) => {
                return Err(Error::InvalidProperties(format!(
                    "property `target` must be a partition name, not {other}"
                )));
            }
        };
        let ranking = match properties.get(RANKING_PROPERTY) {
            None => 0,
            Some(v) => v.as_i64().ok_or_else(|| {
                Error::InvalidProperties(format!(
                    "property `{RANKING_PROPERTY}` must be an integer"
                ))
            })?,
        };
        let factories = read(&self.state().factories);
        let entry = factories
            .get(factory)
            .ok_or_else(|| Error::UnknownFactory(factory.to_owned()))?;
        let mut instances = write(&self.state().instances);
        // One namespace for route prefixes; an instance may share its own factory's name
        // (exact instance routes resolve first).
        if instances.contains_key(name)
            || (name != factory
                && (factories.contains_key(name) || self.rt.manager_dyn(name).is_some()))
        {
            return Err(Error::NameTaken(name.to_owned()));
        }
        instances.insert(
            name.to_owned(),
            Record {
                name: name.to_owned(),
                factory: entry.name,
                properties: Arc::new(properties),
                partition,
                seq: self.state().seq.fetch_add(1, Ordering::Relaxed),
                status: InstanceStatus::Registered,
                grant,
                ranking,
                handle: None,
            },
        );
        Ok(())
    }

    /// Every instance, by name.
    pub fn instances(&self) -> Vec<InstanceInfo> {
        read(&self.state().instances).values().map(info).collect()
    }

    /// One instance.
    pub fn instance(&self, name: &str) -> Option<InstanceInfo> {
        read(&self.state().instances).get(name).map(info)
    }

    /// What `name` waits for: instances of its `depends` factories and providers of its
    /// required contracts, visible from its partition. `Err` lists what does not exist.
    fn prerequisites(&self, name: &str) -> Result<Vec<String>, Vec<String>> {
        let factories = read(&self.state().factories);
        let instances = read(&self.state().instances);
        let Some(record) = instances.get(name) else {
            return Err(vec![format!("instance {name}")]);
        };
        let Some(entry) = factories.get(record.factory) else {
            return Err(vec![format!("factory {}", record.factory)]);
        };
        let mut needed = Vec::new();
        let mut missing = Vec::new();
        for dep in entry.depends {
            let found: Vec<&Record> = instances
                .values()
                .filter(|r| r.factory == *dep && visible(&r.partition, &record.partition))
                .collect();
            if found.is_empty() {
                missing.push(format!("an instance of factory {dep}"));
            }
            needed.extend(found.iter().map(|r| r.name.clone()));
        }
        for contract in entry.requires {
            let found: Vec<&Record> = instances
                .values()
                .filter(|r| {
                    r.name != record.name
                        && visible(&r.partition, &record.partition)
                        && factories
                            .get(r.factory)
                            .is_some_and(|f| f.provides.contains(contract))
                })
                .collect();
            if found.is_empty() {
                missing.push(format!("a provider of {contract}"));
            }
            needed.extend(found.iter().map(|r| r.name.clone()));
        }
        if missing.is_empty() {
            needed.sort();
            needed.dedup();
            Ok(needed)
        } else {
            Err(missing)
        }
    }

    /// Activates every instance that is not active, in dependency order. A cycle is
    /// refused (naming it) before anything starts. An instance whose activation fails is
    /// reported and nothing of it runs; instances that need it are reported blocked and
    /// not started; the rest runs. Boot again to retry.
    pub async fn boot(&self) -> Result<BootReport, Error> {
        // Instances backing off are restarted by their recovery, not by boot.
        let pending: Vec<String> = read(&self.state().instances)
            .values()
            .filter(|r| {
                !matches!(
                    r.status,
                    InstanceStatus::Active | InstanceStatus::BackingOff { .. }
                )
            })
            .map(|r| r.name.clone())
            .collect();
        let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut report = BootReport::default();
        let mut blocked: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in &pending {
            match self.prerequisites(name) {
                Ok(deps) => {
                    edges.insert(name.clone(), deps);
                }
                Err(missing) => {
                    blocked.insert(name.clone(), missing);
                }
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            return Err(Error::DependencyCycle(cycle));
        }
        let order = topo_order(&edges, |n| self.seq_of(n));
        for name in order {
            if let Some(missing) = blocked.get(&name) {
                self.set_status(&name, InstanceStatus::Blocked(missing.clone()));
                report.blocked.push((name.clone(), missing.clone()));
                continue;
            }
            let not_ready: Vec<String> = edges
                .get(&name)
                .map(|deps| {
                    deps.iter()
                        .filter(|d| !self.is_active(d))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if !not_ready.is_empty() && !self.missing_active(&name).is_empty() {
                self.set_status(&name, InstanceStatus::Blocked(not_ready.clone()));
                report.blocked.push((name.clone(), not_ready));
                continue;
            }
            match self.activate(&name).await {
                Ok(()) => report.activated.push(name),
                Err(e) => {
                    let reason = e.to_string();
                    self.set_status(&name, InstanceStatus::Failed(reason.clone()));
                    report.failed.push((name, reason));
                }
            }
        }
        // Blocked instances that only waited for names missing from the graph.
        for (name, missing) in blocked {
            if !report.blocked.iter().any(|(n, _)| n == &name) {
                self.set_status(&name, InstanceStatus::Blocked(missing.clone()));
                report.blocked.push((name, missing));
            }
        }
        Ok(report)
    }

    fn seq_of(&self, name: &str) -> u64 {
        read(&self.state().instances)
            .get(name)
            .map_or(u64::MAX, |r| r.seq)
    }

    fn is_active(&self, name: &str) -> bool {
        read(&self.state().instances)
            .get(name)
            .is_some_and(|r| r.status == InstanceStatus::Active)
    }

    /// What `name` needs that is not active, looked up in the route index (cost grows
    /// with the number of factories, not of instances): an active visible instance of each
    /// `depends` factory and an active visible provider of each required contract.
    fn missing_active(&self, name: &str) -> Vec<String> {
        let factories = read(&self.state().factories);
        let instances = read(&self.state().instances);
        let routes = read(&self.state().routes);
        let Some(record) = instances.get(name) else {
            return vec![format!("instance {name}")];
        };
        let Some(entry) = factories.get(record.factory) else {
            return vec![format!("factory {}", record.factory)];
        };
        let shared = Partition::unpartitioned();
        let active = |factory: &'static str| {
            [&record.partition, &shared]
                .into_iter()
                .any(|p| routes.contains_key(&(factory, p.clone())))
        };
        let mut missing = Vec::new();
        for dep in entry.depends {
            if !active(dep) {
                missing.push(format!("an active instance of factory {dep}"));
            }
        }
        for contract in entry.requires {
            let provided = factories
                .values()
                .filter(|f| f.provides.contains(contract))
                .any(|f| active(f.name));
            if !provided {
                missing.push(format!("an active provider of {contract}"));
            }
        }
        missing
    }

    pub(crate) fn set_status(&self, name: &str, status: InstanceStatus) {
        if let Some(r) = write(&self.state().instances).get_mut(name) {
            r.status = status;
        }
    }

    /// Where instance `name` lives: its factory's manager, its partition, its properties
    /// and the contracts it provides.
    pub(crate) fn placed(&self, name: &str) -> Result<Placed, Error> {
        let factories = read(&self.state().factories);
        let instances = read(&self.state().instances);
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

    pub(crate) async fn activate(&self, name: &str) -> Result<(), Error> {
        let Placed {
            manager,
            partition,
            properties,
            provides,
        } = self.placed(name)?;
        let key = Key::new(name)?;
        let handle = manager
            .get_json_dyn(
                key.clone(),
                &partition,
                Some(serde_json::Value::Object((*properties).clone())),
            )
            .await?;
        let recorded = match write(&self.state().instances).get_mut(name) {
            // The record may have been removed (a hot_remove racing this activation).
            Some(r) if Arc::ptr_eq(&r.properties, &properties) => {
                r.status = InstanceStatus::Active;
                r.handle = Some(handle.clone());
                write(&self.state().routes)
                    .entry((r.factory, r.partition.clone()))
                    .or_default()
                    .insert(r.seq, r.name.clone());
                true
            }
            _ => false,
        };
        if !recorded {
            // Nothing may run without a record: stop what was just started.
            let _ = manager.stop_dyn(key, &partition).await;
            return Err(Error::UnknownInstance(name.to_owned()));
        }
        self.state()
            .activation_order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.to_owned());
        let subscriptions = read(&self.state().factories)
            .get(handle.factory())
            .map_or(&[][..], |f| f.subscriptions);
        for pattern in subscriptions {
            self.inner()
                .bus
                .subscribe_instance(&partition, pattern, name, handle.clone());
        }
        self.services_changed(provides, handle.identity());
        Ok(())
    }

    fn services_changed(&self, contracts: &[&str], by: &Identity) {
        for contract in contracts {
            self.state().services.bump(contract);
            self.inner().shared.telemetry.emit(
                by,
                EventKind::ServiceChanged {
                    contract: (*contract).to_owned(),
                },
            );
        }
    }

    /// Deactivates every active instance in reverse activation order. Returns the
    /// instances that failed to stop.
    pub async fn shutdown(&self) -> Vec<(String, Error)> {
        let order: Vec<String> = std::mem::take(
            &mut *self
                .state()
                .activation_order
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut failures = Vec::new();
        for name in order.into_iter().rev() {
            if let Err(e) = self.deactivate(&name).await {
                failures.push((name, e));
            }
        }
        failures
    }

    async fn deactivate(&self, name: &str) -> Result<(), Error> {
        let Placed {
            manager, partition, ..
        } = self.placed(name)?;
        let key = Key::new(name)?;
        self.inner().bus.unsubscribe_owner(name);
        match manager.stop_dyn(key, &partition).await {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.withdraw(name, InstanceStatus::Registered)
    }

    /// Takes `name` out of routing (runnables, target routes, subscriptions, services)
    /// and sets its status; what runs of it is the caller's business.
    pub(crate) fn withdraw(&self, name: &str, status: InstanceStatus) -> Result<(), Error> {
        let Placed {
            manager,
            partition,
            provides,
            ..
        } = self.placed(name)?;
        let identity = Identity::new(partition, manager.name(), Key::new(name)?);
        self.inner().bus.unsubscribe_owner(name);
        if let Some(r) = write(&self.state().instances).get_mut(name) {
            r.status = status;
            r.handle = None;
            let mut routes = write(&self.state().routes);
            let slot = (r.factory, r.partition.clone());
            if let Some(by_seq) = routes.get_mut(&slot) {
                by_seq.remove(&r.seq);
                if by_seq.is_empty() {
                    routes.remove(&slot);
                }
            }
        }
        self.state()
            .activation_order
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| n != name);
        self.services_changed(provides, &identity);
        Ok(())
    }

    /// Instantiates and activates `name` at runtime. Its prerequisites must be active;
    /// on any failure nothing of it remains.
    pub async fn hot_add(
        &self,
        factory: &str,
        name: &str,
        properties: serde_json::Value,
    ) -> Result<(), Error> {
        self.hot_add_with(factory, name, properties, Grant::None)
            .await
    }

    /// [`Kernel::hot_add`] with an explicit grant (host code only).
    pub async fn hot_add_with(
        &self,
        factory: &str,
        name: &str,
        properties: serde_json::Value,
        grant: Grant,
    ) -> Result<(), Error> {
        self.instantiate_with(factory, name, properties, grant)?;
        let missing = self.missing_active(name);
        let outcome = if missing.is_empty() {
            self.activate(name).await
        } else {
            Err(Error::DependenciesNotActive {
                instance: name.to_owned(),
                missing,
            })
        };
        if outcome.is_err() {
            write(&self.state().instances).remove(name);
        }
        outcome
    }

    /// Deactivates `name` and removes everything it registered: its runnables and target
    /// routes (they resolve through the instance table), its event subscriptions and the
    /// services it provided (consumers resolve to the next provider, or are told it is
    /// gone). The factory stays registered.
    pub async fn hot_remove(&self, name: &str) -> Result<(), Error> {
        if !read(&self.state().instances).contains_key(name) {
            return Err(Error::UnknownInstance(name.to_owned()));
        }
        if self.is_active(name) {
            self.deactivate(name).await?;
        }
        write(&self.state().instances).remove(name);
        Ok(())
    }

    /// Changes a provider's ranking; consumers re-resolve.
    pub fn set_ranking(&self, name: &str, ranking: i64) -> Result<(), Error> {
        let (provides, identity) = {
            let factories = read(&self.state().factories);
            let mut instances = write(&self.state().instances);
            let record = instances
                .get_mut(name)
                .ok_or_else(|| Error::UnknownInstance(name.to_owned()))?;
            record.ranking = ranking;
            let provides = factories
                .get(record.factory)
                .map_or(&[][..], |f| f.provides);
            let key = Key::new(name)?;
            (
                provides,
                Identity::new(record.partition.clone(), record.factory, key),
            )
        };
        self.services_changed(provides, &identity);
        Ok(())
    }

    /// The best active provider of `contract` visible from `partition`.
    pub fn require(&self, contract: &str, partition: &Partition) -> Option<String> {
        self.require_all(contract, partition).into_iter().next()
    }

    /// Every active provider of `contract` visible from `partition`, best first.
    pub fn require_all(&self, contract: &str, partition: &Partition) -> Vec<String> {
        providers(self.state(), contract, partition)
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// A live reference to the best provider of `contract` for `partition`: it resolves
    /// on every use, so it follows re-wiring and never holds a removed provider.
    pub fn service(&self, contract: &str, partition: &Partition) -> ServiceRef {
        ServiceRef::new(
            Arc::downgrade(self.inner()),
            contract,
            partition.clone(),
            crate::caller::Caller::host(),
        )
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

/// Active providers of `contract` visible from `partition`, best first, with handles.
pub(crate) fn providers(
    state: &KernelState,
    contract: &str,
    partition: &Partition,
) -> Vec<(String, Arc<dyn AnyInstance>)> {
    let factories = read(&state.factories);
    let instances = read(&state.instances);
    let mut found: Vec<&Record> = instances
        .values()
        .filter(|r| {
            r.status == InstanceStatus::Active
                && visible(&r.partition, partition)
                && factories
                    .get(r.factory)
                    .is_some_and(|f| f.provides.contains(&contract))
        })
        .collect();
    found.sort_by(|a, b| b.ranking.cmp(&a.ranking).then(a.seq.cmp(&b.seq)));
    found
        .into_iter()
        .filter_map(|r| r.handle.clone().map(|h| (r.name.clone(), h)))
        .collect()
}

fn info(r: &Record) -> InstanceInfo {
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

/// Prerequisites first; among the ready, the older instance first.
fn topo_order(edges: &BTreeMap<String, Vec<String>>, seq: impl Fn(&str) -> u64) -> Vec<String> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    let mut left: Vec<&String> = edges.keys().collect();
    left.sort_by_key(|n| seq(n));
    while !left.is_empty() {
        let ready = left.iter().position(|n| {
            edges[*n]
                .iter()
                .all(|d| done.contains(d) || !edges.contains_key(d))
        });
        // No cycle (checked before), so some node is always ready.
        let Some(i) = ready else { break };
        let n = left.remove(i);
        done.insert(n.clone());
        order.push(n.clone());
    }
    order
}
