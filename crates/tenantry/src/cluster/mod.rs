//! Cluster mode's placement logic: which shard an identity belongs to
//! ([`shard`], and for a runtime's managers [`map`]), and which node owns which shard
//! ([`placement`]), and the shards of pinned tenants ([`pins`]).
//!
//! Both are pure functions of their inputs, so every node computes the same answers from
//! the same membership and ownership records, and a simulation can check them without
//! processes. Membership, ownership records, fencing and forwarding build on them.

pub mod map;
pub mod pins;
pub mod placement;
pub mod shard;

pub use map::{Routing, ShardMap};
pub use pins::{Pins, ShardRange};
pub use placement::{Placement, plan};
pub use shard::{RoutingKey, ShardCount, ShardId, shard_of};
