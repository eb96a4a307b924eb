//! The registry of a runtime's managers, with the role each plays.
//!
//! Every manager (keyed agents, the kernel's component managers, pods managers) is
//! registered here under a unique name. The role says who may reach its instances by
//! key: only keyed managers answer [`Context::get`](crate::Context::get) and the bus's
//! keyed routes; component instances are made by the kernel and pods by their pods API,
//! never minted by a keyed get.

use super::shared::Shared;
use super::{AnyManager, Manager, ManagerConfig};
use crate::instance::cell::InstanceHandle;
use crate::instance::context::Context;
use crate::instance::factory::Factory;
use crate::{Error, IntoKey};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What a manager is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Keyed agents: reachable by key.
    Keyed,
    /// The manager of a component factory (the kernel's).
    Component,
    /// A pods manager.
    Pods,
}

struct Entry {
    manager: Arc<dyn AnyManager>,
    role: Role,
}

/// The managers of one runtime, by name.
#[derive(Default)]
pub(crate) struct Managers {
    by_name: RwLock<HashMap<Arc<str>, Entry>>,
}

impl Managers {
    /// Registers a manager named `name` for factory `F`. Names are unique per runtime and
    /// follow the partition-name rules.
    pub(crate) fn register<F: Factory>(
        &self,
        shared: &Arc<Shared>,
        name: &str,
        config: ManagerConfig,
        role: Role,
    ) -> Result<Manager<F>, Error> {
        crate::partition::check_name(name).map_err(|e| Error::InvalidName {
            what: "manager",
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        let mut by_name = self.by_name.write().unwrap_or_else(|e| e.into_inner());
        if by_name.contains_key(name) {
            return Err(Error::DuplicateManager(name.to_owned()));
        }
        let name: Arc<str> = Arc::from(name);
        let manager = Manager::<F>::new(name.clone(), config, shared.clone(), role)?;
        by_name.insert(
            name,
            Entry {
                manager: Arc::new(manager.clone()),
                role,
            },
        );
        Ok(manager)
    }

    /// The manager named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<dyn AnyManager>> {
        self.read().get(name).map(|e| e.manager.clone())
    }

    /// The manager named `name`, if it plays `role`.
    pub(crate) fn with_role(&self, name: &str, role: Role) -> Option<Arc<dyn AnyManager>> {
        self.read()
            .get(name)
            .filter(|e| e.role == role)
            .map(|e| e.manager.clone())
    }

    /// The manager named `name`, if it manages factory `F`.
    pub(crate) fn typed<F: Factory>(&self, name: &str) -> Result<Manager<F>, Error> {
        downcast(self.get(name), name)
    }

    /// The managers playing `role`, with their names, sorted by name.
    pub(crate) fn playing(&self, role: Role) -> Vec<(String, Arc<dyn AnyManager>)> {
        let mut out: Vec<(String, Arc<dyn AnyManager>)> = self
            .read()
            .iter()
            .filter(|(_, e)| e.role == role)
            .map(|(name, e)| (name.to_string(), e.manager.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The names of the managers playing `role` (every manager with `None`), sorted.
    pub(crate) fn names(&self, role: Option<Role>) -> Vec<String> {
        let mut names: Vec<String> = self
            .read()
            .iter()
            .filter(|(_, e)| role.is_none_or(|r| e.role == r))
            .map(|(name, _)| name.to_string())
            .collect();
        names.sort();
        names
    }

    /// The least recently used idle instance of `partition` among the managers of agents
    /// and pods that hibernate (what makes room at the live-instance cap), leaving out
    /// `tried`.
    pub(crate) fn least_recently_used(
        &self,
        partition: &crate::Partition,
        tried: &[(Arc<str>, crate::Key)],
    ) -> Option<(Arc<str>, crate::Key, Arc<dyn AnyManager>)> {
        let keyed: Vec<(Arc<str>, Arc<dyn AnyManager>)> = self
            .read()
            .iter()
            .filter(|(_, e)| e.role != Role::Component && e.manager.config_dyn().persist)
            .map(|(name, e)| (name.clone(), e.manager.clone()))
            .collect();
        keyed
            .into_iter()
            .filter_map(|(name, manager)| {
                let skip: Vec<&crate::Key> = tried
                    .iter()
                    .filter(|(m, _)| *m == name)
                    .map(|(_, k)| k)
                    .collect();
                let (last_active, key) = manager.least_recently_used_dyn(partition, &skip)?;
                Some((last_active, name, key, manager))
            })
            .min_by_key(|(last_active, ..)| *last_active)
            .map(|(_, name, key, manager)| (name, key, manager))
    }

    /// Every manager.
    pub(crate) fn all(&self) -> Vec<Arc<dyn AnyManager>> {
        self.read().values().map(|e| e.manager.clone()).collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Entry>> {
        self.by_name.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Context {
    /// Gets or starts an instance of keyed manager `manager` in this instance's own
    /// partition. The handle calls with this instance's own authority.
    pub async fn get<G: Factory>(
        &self,
        manager: &str,
        key: impl IntoKey,
    ) -> Result<InstanceHandle<G>, Error> {
        // Components are created by the kernel and pods through Pod::get, never here:
        // a keyed get of either would mint an instance outside their rules.
        let keyed = self
            .part::<Arc<Managers>>()?
            .with_role(manager, Role::Keyed);
        let manager = downcast::<G>(keyed, manager)?;
        let handle = manager.get(key, self.partition()).await?;
        Ok(handle.bound(self.own_caller()))
    }
}

/// `manager` as the manager of factory `F`, or `UnknownManager(name)`.
fn downcast<F: Factory>(
    manager: Option<Arc<dyn AnyManager>>,
    name: &str,
) -> Result<Manager<F>, Error> {
    manager
        .and_then(|m| m.as_any().downcast_ref::<Manager<F>>().cloned())
        .ok_or_else(|| Error::UnknownManager(name.to_owned()))
}
