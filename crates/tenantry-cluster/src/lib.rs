//! Cluster mode for the Tenantry runtime, built on NATS: which nodes are alive
//! ([`Membership`]), which node owns which shard ([`Ownership`]), how calls reach
//! the owner ([`Forwarder`]), and how bus events reach every node. [`ClusterNode::serve`] runs a runtime as a node.
//!
//! Placement itself is pure and lives in the library ([`tenantry::cluster`]); the fence
//! that makes a former owner's writes harmless lives in the PostgreSQL store
//! (`tenantry_postgres::PgStore::fenced`). This crate holds what needs the network.
//!
//! # Membership without clock agreement
//!
//! Each node renews its own entry in a JetStream key-value bucket
//! (`tenantry_<cluster>_members`) with a compare-and-set on the entry's revision. A node
//! serves only until (the send time of its last successful renewal) + lease − margin, on
//! its own monotonic clock; another node considers it dead only after seeing its entry
//! unchanged for lease + margin on *its* monotonic clock. No two clocks are compared, so
//! a node has stopped serving before anyone may take its shards. A node whose entry was
//! overwritten by someone else (a duplicate name, a node that was presumed dead) is
//! deposed: it stops serving at once.
//!
//! # Tests
//!
//! The tests run against the NATS server named by `TENANTRY_TEST_NATS_URL` (JetStream
//! enabled), each in a cluster of its own whose bucket it deletes, and are skipped,
//! saying so, when it is not set.

mod bucket;
mod error;
mod events;
mod forward;
mod membership;
mod node;
mod ownership;
mod pinning;
mod wire;

pub use async_nats;
pub use error::ClusterError;
pub use forward::{DEFAULT_DEADLINE, Forwarder, call_subject, relay_subject};
pub use membership::{Member, MemberState, Membership, MembershipConfig};
pub use node::{ClusterNode, HandOff, Join, NodeConfig, NodeStatus, shard_of};
pub use ownership::{Ownership, Round};
pub use pinning::{
    DEFAULT_PIN_SHARDS, MAX_PIN_NODES, MAX_PIN_SHARDS, PinRequest, PinState, TenantPin,
};
