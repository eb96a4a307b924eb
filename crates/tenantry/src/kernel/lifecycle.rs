//! Lifecycle: activation (and its routes, subscriptions and services), deactivation,
//! withdrawal from routing, hot add and hot remove, shutdown.

use super::*;

impl Kernel {
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
        let recorded = match self.state().instances.write().get_mut(name) {
            // The record may have been removed (a hot_remove racing this activation).
            Some(r) if Arc::ptr_eq(&r.properties, &properties) => {
                r.status = InstanceStatus::Active;
                r.handle = Some(handle.clone());
                self.state()
                    .routes
                    .write()
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
        self.services_changed(provides, handle.identity());
        Ok(())
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
        if let Some(r) = self.state().instances.write().get_mut(name) {
            r.status = status;
            r.handle = None;
            let mut routes = self.state().routes.write();
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
            self.state().instances.write().remove(name);
        }
        outcome
    }

    /// Deactivates `name` and removes everything it registered: its runnables and target
    /// routes (they resolve through the instance table), its event subscriptions and the
    /// services it provided (consumers resolve to the next provider, or are told it is
    /// gone). The factory stays registered.
    pub async fn hot_remove(&self, name: &str) -> Result<(), Error> {
        if !self.state().instances.read().contains_key(name) {
            return Err(Error::UnknownInstance(name.to_owned()));
        }
        if self.is_active(name) {
            self.deactivate(name).await?;
        }
        self.state().instances.write().remove(name);
        Ok(())
    }
}
