//! Tenantry: a multi-tenant runtime for durable agents and components.
//!
//! One [`Runtime`] hosts many tenants ([`Partition`]s). Keyed instances of a [`Factory`]
//! live in named [`Manager`]s that get-or-start them on demand, hibernate them to a
//! [`CheckpointStore`](store::CheckpointStore) when stopped or idle, and thaw them on the
//! next `get`. The partition is part of every identity (`(partition, manager, key)`), so
//! lookups, stats, stops, checkpoints, events and metrics of one tenant never see another.
//!
//! ```no_run
//! # use tenantry::*;
//! # use serde::{Deserialize, Serialize};
//! #[derive(Serialize, Deserialize, Default)]
//! struct Counter { count: u64 }
//!
//! #[derive(Serialize, Deserialize, schemars::JsonSchema)]
//! struct Increment { by: u64 }
//! impl Message for Increment { const NAME: &'static str = "increment"; type Reply = u64; }
//!
//! impl Factory for Counter {
//!     const NAME: &'static str = "counter";
//!     fn fresh(_: &Identity) -> Self { Self::default() }
//!     fn handlers(h: &mut Handlers<Self>) { h.add::<Increment>(); }
//! }
//! impl Handler<Increment> for Counter {
//!     async fn handle(&mut self, m: Increment, _: &mut Context) -> Result<u64, HandlerError> {
//!         self.count += m.by;
//!         Ok(self.count)
//!     }
//! }
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::in_memory();
//! let counters = runtime.register::<Counter>("counters", ManagerConfig::default())?;
//! let alpha = Partition::new("alpha")?;
//! let c = counters.get("visits", &alpha).await?;
//! assert_eq!(c.call(Increment { by: 2 }).await?, 2);
//! # Ok(()) }
//! ```

pub mod bus;
mod caller;
pub mod checkpoint;
pub mod cluster;
pub mod component;
pub mod config;
mod cycles;
mod error;
pub mod failure;
mod identity;
pub mod instance;
pub mod kernel;
mod key;
pub mod manager;
pub mod params;
mod partition;
pub mod pod;
pub mod providers;
pub mod quota;
pub mod reactive;
mod runtime;
pub mod scope;
pub mod store;
pub mod telemetry;

pub use bus::{Bus, Invoke};
pub use caller::{Caller, CallerKind};
pub use component::{Component, NoParams, Runnables};
pub use error::{CallError, Dependency, Error, HandlerError, RefusalKind};
pub use failure::{Backoff, Failure};
pub use identity::Identity;
pub use instance::{
    AnyInstance, Context, Factory, Handler, HandlerInfo, Handlers, InstanceHandle, JsonParams,
    KeepAlive, Message,
};
pub use kernel::Kernel;
pub use key::{IntoKey, Key, KeyError, KeyPart, MAX_KEY_LEN};
pub use manager::{
    Admission, AnyManager, Durability, Manager, ManagerConfig, ManagerStats, RestartPolicy,
};
pub use partition::{MAX_PARTITION_LEN, Partition, PartitionError};
pub use pod::{Pod, PodFactory, PodManager};
pub use runtime::{Runtime, RuntimeBuilder, ShutdownReport};

/// Re-exported so applications derive schemas with the same schemars version.
pub use schemars;
