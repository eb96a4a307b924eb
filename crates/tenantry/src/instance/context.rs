//! What a running instance sees of the world: its identity and partition-scoped access.
//!
//! There is deliberately no way to name another partition from here: [`Context::get`]
//! always activates in the instance's own partition.

use super::cell::{InstanceHandle, KeepAlive};
use super::factory::Factory;
use crate::runtime::RuntimeInner;
use crate::{Error, Identity, IntoKey, Key, Partition};
use std::sync::{Arc, Weak};

/// An instance's view of the runtime, passed to every handler and hook.
pub struct Context {
    identity: Arc<Identity>,
    runtime: Weak<RuntimeInner>,
    held: Vec<KeepAlive>,
    stop_requested: bool,
}

impl Context {
    pub(crate) fn new(identity: Arc<Identity>, runtime: Weak<RuntimeInner>) -> Self {
        Self {
            identity,
            runtime,
            held: Vec::new(),
            stop_requested: false,
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
