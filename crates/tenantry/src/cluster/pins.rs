//! Per-tenant pins: a tenant placed on chosen nodes gets shards of its own.
//!
//! The cluster's shared shards (`0..count`) hold every tenant's identities mixed, so no
//! shared shard can be kept on one tenant's nodes. A pinned tenant's identities route
//! instead into a [`ShardRange`] of its own, numbered after the shared shards, by the
//! same hash within the range; the cluster places that range only on the tenant's
//! nodes. [`Pins`] is a node's view of the pins: the ranges, and the tenants whose
//! placement is changing (pinned or unpinned, while the nodes that may host their
//! instances let go of them), which no node serves until every one has.

use super::shard::ShardCount;
use crate::Partition;
use std::collections::{BTreeMap, BTreeSet};

/// A pinned tenant's own shards: `first..first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardRange {
    /// The first shard of the range.
    pub first: u32,
    /// How many shards the range holds (at least one).
    pub count: ShardCount,
}

/// A node's view of the cluster's pins (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    ranges: BTreeMap<String, ShardRange>,
    moving: BTreeSet<String>,
}

impl Pins {
    /// No tenant pinned, none moving.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes the identities of the tenant `partition` (a partition's name) into `range`.
    pub fn pin(mut self, partition: &str, range: ShardRange) -> Self {
        self.ranges.insert(partition.to_owned(), range);
        self
    }

    /// Marks `partition`'s placement as changing: no node serves it meanwhile.
    pub fn moving(mut self, partition: &str) -> Self {
        self.moving.insert(partition.to_owned());
        self
    }

    /// The range `partition`'s identities route into, if it is pinned.
    pub fn range(&self, partition: &Partition) -> Option<ShardRange> {
        self.ranges.get(partition.name()?).copied()
    }

    /// Whether `partition`'s placement is changing.
    pub fn is_moving(&self, partition: &Partition) -> bool {
        partition.name().is_some_and(|p| self.moving.contains(p))
    }

    /// The range of every pinned tenant, by partition name.
    pub fn ranges(&self) -> &BTreeMap<String, ShardRange> {
        &self.ranges
    }

    /// The tenants whose placement is changing.
    pub fn moving_tenants(&self) -> &BTreeSet<String> {
        &self.moving
    }

    /// Whether nothing is pinned and nothing moves.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.moving.is_empty()
    }

    /// The tenants whose range differs between `self` and `next`.
    pub fn changed(&self, next: &Pins) -> Vec<String> {
        let names: BTreeSet<&String> = self.ranges.keys().chain(next.ranges.keys()).collect();
        names
            .into_iter()
            .filter(|p| self.ranges.get(*p) != next.ranges.get(*p))
            .cloned()
            .collect()
    }

    /// These pins, with `partitions` marked moving as well.
    pub fn with_moving<'a>(mut self, partitions: impl IntoIterator<Item = &'a String>) -> Self {
        self.moving.extend(partitions.into_iter().cloned());
        self
    }
}
