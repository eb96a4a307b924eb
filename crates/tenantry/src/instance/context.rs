//! What a running instance sees of the world: its identity and partition-scoped access.
//!
//! There is deliberately no way to name another partition from here: [`Context::get`]
//! always activates in the instance's own partition.

use super::cell::{InstanceHandle, KeepAlive};
use super::factory::Factory;
use crate::bus::{Bus, Caller};
use crate::component::Properties;
use crate::config::ConfigView;
use crate::kernel::{Grant, ServiceRef};
use crate::runtime::RuntimeInner;
use crate::scope::{Credentials, Storage};
use crate::{Error, Identity, IntoKey, Key, Partition};
use std::sync::{Arc, Weak};

/// An instance's view of the runtime, passed to every handler and hook.
pub struct Context {
    identity: Arc<Identity>,
    runtime: Weak<RuntimeInner>,
    held: Vec<KeepAlive>,
    stop_requested: bool,
    properties: Option<Arc<Properties>>,
    /// Whether the instance holds the admin grant; fixed at instantiation, so cached.
    admin: std::sync::OnceLock<bool>,
}

impl Context {
    pub(crate) fn new(identity: Arc<Identity>, runtime: Weak<RuntimeInner>) -> Self {
        Self {
            identity,
            runtime,
            held: Vec::new(),
            stop_requested: false,
            properties: None,
            admin: std::sync::OnceLock::new(),
        }
    }

    /// This instance's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This instance's partition.
    pub fn partition(&self) -> &Partition {
        &self.identity.partition
    }

    /// This instance's key.
    pub fn key(&self) -> &Key {
        &self.identity.key
    }

    /// The manager hosting this instance.
    pub fn manager(&self) -> &str {
        &self.identity.manager
    }

    /// The instance's properties (components; empty for agents).
    pub fn properties(&self) -> &Properties {
        static EMPTY: std::sync::OnceLock<Properties> = std::sync::OnceLock::new();
        match &self.properties {
            Some(p) => p,
            None => EMPTY.get_or_init(Properties::new),
        }
    }

    pub(crate) fn set_properties(&mut self, properties: Arc<Properties>) {
        self.properties = Some(properties);
    }

    /// Asks to hibernate and stop once the current turn is over.
    pub fn request_stop(&mut self) {
        self.stop_requested = true;
    }

    pub(crate) fn take_stop_request(&mut self) -> bool {
        std::mem::take(&mut self.stop_requested)
    }

    /// Keeps another instance alive (see [`KeepAlive`]) for as long as this one runs.
    pub fn hold(&mut self, keep_alive: KeepAlive) {
        self.held.push(keep_alive);
    }

    /// Releases every keep-alive this instance holds (done on restart and stop).
    pub(crate) fn release_all(&mut self) {
        self.held.clear();
    }

    pub(crate) fn runtime_inner(&self) -> Option<Arc<RuntimeInner>> {
        self.runtime.upgrade()
    }

    /// Whether this instance was instantiated with the admin grant.
    fn is_admin(&self) -> bool {
        *self.admin.get_or_init(|| self.lookup_admin())
    }

    fn lookup_admin(&self) -> bool {
        self.runtime.upgrade().is_some_and(|rt| {
            let instances = rt
                .kernel
                .instances
                .read()
                .unwrap_or_else(|e| e.into_inner());
            instances
                .get(self.identity.key.encoded())
                .is_some_and(|r| r.grant == Grant::Admin && *r.factory == *self.identity.manager)
        })
    }

    /// The bus, calling from this instance: confined to its partition unless it holds
    /// the admin grant (then audited whenever it reaches another partition).
    pub fn bus(&self) -> Result<Bus, Error> {
        let rt = self.runtime.upgrade().ok_or(Error::ShutDown)?;
        let caller = if self.is_admin() {
            Caller::Admin((*self.identity).clone())
        } else {
            Caller::Partition(self.identity.partition.clone())
        };
        Ok(Bus::new(rt, caller))
    }

    /// This instance's own storage.
    pub fn storage(&self) -> Result<Storage, Error> {
        let rt = self.runtime.upgrade().ok_or(Error::ShutDown)?;
        Ok(Storage::new(rt.shared.store.clone(), &self.identity))
    }

    /// This instance's own credentials.
    pub fn credentials(&self) -> Result<Credentials, Error> {
        let rt = self.runtime.upgrade().ok_or(Error::ShutDown)?;
        Ok(Credentials::new(
            rt.kernel.credentials.clone(),
            &self.identity,
        ))
    }

    /// This instance's view of the config: shared keys plus its own tenant's subtree.
    pub fn config(&self) -> Result<ConfigView, Error> {
        let rt = self.runtime.upgrade().ok_or(Error::ShutDown)?;
        Ok(ConfigView::new(
            rt.kernel.config.clone(),
            self.identity.partition.clone(),
            self.is_admin(),
        ))
    }

    /// A live reference to the best provider of `contract` visible from this instance
    /// (its partition's or a shared one).
    pub fn service(&self, contract: &str) -> ServiceRef {
        ServiceRef::new(
            self.runtime.clone(),
            contract,
            self.identity.partition.clone(),
        )
    }

    /// Gets or starts an instance of manager `manager` in this instance's own partition.
    pub async fn get<G: Factory>(
        &self,
        manager: &str,
        key: impl IntoKey,
    ) -> Result<InstanceHandle<G>, Error> {
        let runtime = self.runtime.upgrade().ok_or(Error::ShutDown)?;
        let manager = runtime.typed_manager::<G>(manager)?;
        manager.get(key, &self.identity.partition).await
    }
}
