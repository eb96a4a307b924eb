//! The kernel's registry: factories, instances with their properties, partitions and
//! grants, rankings.

use super::*;
use crate::component::{Component, ComponentState};
use crate::manager::Role;
use std::sync::atomic::Ordering;

impl Kernel {
    /// Registers component factory `C` (its manager is named after it). A duplicate
    /// factory (or a manager of that name) is an error.
    pub fn register<C: Component>(&self) -> Result<(), Error> {
        if self.state().factories.read().contains_key(C::FACTORY) {
            return Err(Error::DuplicateFactory(C::FACTORY.to_owned()));
        }
        let manager = self
            .core
            .managers
            .register::<ComponentState<C>>(
                &self.core.shared,
                C::FACTORY,
                ManagerConfig::default().ephemeral(),
                Role::Component,
            )
            .map_err(|e| match e {
                Error::DuplicateManager(name) => Error::DuplicateFactory(name),
                other => other,
            })?;
        manager.on_give_up(recovery::hook(Arc::downgrade(&self.core)));
        self.state().factories.write().insert(
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
        self.state()
            .factories
            .read()
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
        let factories = self.state().factories.read();
        let entry = factories
            .get(factory)
            .ok_or_else(|| Error::UnknownFactory(factory.to_owned()))?;
        let mut instances = self.state().instances.write();
        // One namespace for route prefixes; an instance may share its own factory's name
        // (exact instance routes resolve first).
        if instances.contains_key(name)
            || (name != factory
                && (factories.contains_key(name) || self.core.managers.get(name).is_some()))
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
        self.state().instances.read().values().map(info).collect()
    }

    /// One instance.
    pub fn instance(&self, name: &str) -> Option<InstanceInfo> {
        self.state().instances.read().get(name).map(info)
    }

    /// Changes a provider's ranking; consumers re-resolve.
    pub fn set_ranking(&self, name: &str, ranking: i64) -> Result<(), Error> {
        let (provides, identity) = {
            let factories = self.state().factories.read();
            let mut instances = self.state().instances.write();
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
}
