//! Shard fences, for cluster mode: which node may write a shard's records.
//!
//! The table `<schema>.shard_fences` holds, per `(cluster, shard)`, an epoch and the node
//! that raised it last. A node that takes a shard raises its epoch
//! ([`PgStore::take_shard`](crate::PgStore::take_shard)) before serving it. A fenced
//! store handle ([`PgStore::fenced`](crate::PgStore::fenced)) then writes a record only
//! while the epoch of the record's shard is still the one it took, checked in the write's
//! own statement with the fence row locked `FOR SHARE`. So once another node has taken
//! the shard, a former owner (paused, partitioned, slow to notice) can still run code but
//! can never write: its puts, turn commits and deletes fail with
//! [`StoreError::Fenced`] and change nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tenantry::cluster::ShardId;
use tenantry::store::{StoreError, StoreKey};

/// Maps a record to the shard it belongs to; `None` for a record no shard owns (every
/// node may write it: compare-and-set alone orders its writers).
pub type ShardOf = Arc<dyn Fn(&StoreKey) -> Option<ShardId> + Send + Sync>;

/// What a fenced handle writes under: its cluster, its node, how records map to shards,
/// and the epochs it took.
pub(crate) struct Fencing {
    pub(crate) cluster: Arc<str>,
    pub(crate) node: String,
    shard_of: ShardOf,
    held: RwLock<HashMap<u32, i64>>,
}

/// The check one write must pass.
#[derive(Clone)]
pub(crate) struct Fence {
    pub(crate) cluster: Arc<str>,
    pub(crate) shard: u32,
    pub(crate) epoch: i64,
}

impl Fencing {
    pub(crate) fn new(cluster: &str, node: &str, shard_of: ShardOf) -> Self {
        Self {
            cluster: cluster.into(),
            node: node.to_owned(),
            shard_of,
            held: RwLock::default(),
        }
    }

    /// The fence a write of `key` passes: its shard and the epoch taken for it; a shard
    /// this node did not take (or released) cannot be written. `None`: the record
    /// belongs to no shard and is written without a fence.
    pub(crate) fn for_key(&self, key: &StoreKey) -> Result<Option<Fence>, StoreError> {
        let Some(shard) = (self.shard_of)(key) else {
            return Ok(None);
        };
        let shard = shard.0;
        let epoch = self
            .held
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&shard)
            .copied()
            .ok_or(StoreError::Fenced { shard })?;
        Ok(Some(Fence {
            cluster: self.cluster.clone(),
            shard,
            epoch,
        }))
    }

    /// Writes under `epoch` from now on; of two takes racing on one handle, the later
    /// epoch stays.
    pub(crate) fn hold(&self, shard: u32, epoch: i64) {
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        let slot = held.entry(shard).or_insert(epoch);
        *slot = (*slot).max(epoch);
    }

    pub(crate) fn release(&self, shard: u32) {
        self.held
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&shard);
    }
}
