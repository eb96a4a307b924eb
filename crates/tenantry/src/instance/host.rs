//! What the instance layer knows of the runtime that hosts it: one narrow trait.
//!
//! A [`Context`](super::Context) reaches the store, telemetry, config and credentials
//! through [`Host`], and asks it whether its instance holds the admin grant. It knows
//! nothing of managers, the kernel, the bus or pods: the layers above add their own
//! context methods (`Context::get`, `Context::service`, `Context::bus`) and fetch their
//! own part of the runtime with [`Host::part`], by type. The runtime, the composition
//! root, is the only implementor.

use crate::Identity;
use crate::config::ConfigStore;
use crate::scope::CredentialVault;
use crate::store::CheckpointStore;
use crate::telemetry::Telemetry;
use std::any::{Any, TypeId};
use std::sync::{Arc, Weak};

/// The host as every context of a runtime reaches it: one shared weak reference, so a
/// context pays one thin pointer for it (a `Weak<dyn Host>` would be two words in every
/// idle instance).
pub(crate) type HostRef = Arc<Weak<dyn Host>>;

/// The runtime as an instance sees it (see the module documentation).
pub(crate) trait Host: Send + Sync + 'static {
    /// The checkpoint store (an instance's own storage is scoped from it).
    fn store(&self) -> &Arc<dyn CheckpointStore>;
    /// Events and metrics.
    fn telemetry(&self) -> &Telemetry;
    /// The configuration.
    fn config(&self) -> &Arc<ConfigStore>;
    /// The credentials (an instance's own are scoped from them).
    fn credentials(&self) -> &Arc<CredentialVault>;
    /// Whether the component instance `identity` was instantiated with the admin grant.
    fn holds_admin_grant(&self, identity: &Identity) -> bool;
    /// The part of a higher layer of type `part` (an `Arc` of that layer's core), if the
    /// runtime has one.
    fn part(&self, part: TypeId) -> Option<&(dyn Any + Send + Sync)>;
}
