//! Checkpoint stores: where hibernated instances live.
//!
//! A store maps `(partition, manager, key)` to a versioned byte record. It knows nothing
//! of the checkpoint format (see [`crate::checkpoint`]); it only keeps bytes and enforces
//! compare-and-set on the version, which fences stale writers. Backends: [`MemoryStore`]
//! for tests and benchmarks, [`RedbStore`] as the embedded, durable default.

mod memory;
mod redb;

pub use self::memory::MemoryStore;
pub use self::redb::{RedbOptions, RedbStore};

use crate::{Identity, Key, Partition};
use futures::future::BoxFuture;
use std::sync::Arc;

/// Where one checkpoint lives: an instance [`Identity`]. The partition is part of it, so
/// the same manager and key in two partitions are two records.
pub type StoreKey = Identity;

/// A stored record: its version (1 for the first write, +1 per write) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's version, for compare-and-set.
    pub version: u64,
    /// The opaque bytes (an encoded checkpoint).
    pub bytes: Arc<[u8]>,
}

/// One write to a record beside a checkpoint (an instance's scoped storage), committed
/// with its turn. Side writes are not compare-and-set: the turn's checkpoint is, and it
/// decides for all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideWrite {
    /// The record written.
    pub key: StoreKey,
    /// The new bytes, or `None` to delete the record.
    pub bytes: Option<Arc<[u8]>>,
}

/// What one durable turn writes: the instance's checkpoint (compare-and-set on
/// `expected`) and its side writes, applied together or not at all.
#[derive(Debug, Clone)]
pub struct TurnCommit {
    /// The checkpoint's record.
    pub key: StoreKey,
    /// The encoded checkpoint.
    pub bytes: Arc<[u8]>,
    /// The version the checkpoint must have (`None`: it must not exist).
    pub expected: Option<u64>,
    /// The side writes, each key at most once, all in the checkpoint's partition.
    pub side: Vec<SideWrite>,
}

impl TurnCommit {
    /// A commit of a checkpoint alone (what `put` does).
    pub fn checkpoint(key: StoreKey, bytes: Arc<[u8]>, expected: Option<u64>) -> Self {
        Self {
            key,
            bytes,
            expected,
            side: Vec::new(),
        }
    }
}

/// What a store can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-set found another version than the writer expected.
    #[error("version conflict: expected {expected:?}, found {actual:?}")]
    Conflict {
        /// The version the writer expected (`None`: the record must not exist).
        expected: Option<u64>,
        /// The version found (`None`: no record).
        actual: Option<u64>,
    },
    /// The store cannot be reached or did not answer; nothing was changed by this call.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something it should not hold.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    /// The write would pass one of its partition's storage limits: nothing was written.
    #[error("{0}")]
    OverLimit(OverLimit),
    /// The write's shard is held by another writer now (its fence epoch moved on, or
    /// this writer never took it): nothing was changed, and this writer must stop
    /// serving what lives there (cluster mode).
    #[error("fenced out of shard {shard}: another node owns it now")]
    Fenced {
        /// The shard.
        shard: u32,
    },
}

/// What a partition keeps in a store: every record's bytes (checkpoints, scoped storage
/// and whatever else the runtime stores for it; keys not counted) and their number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreUsage {
    /// Bytes of the records' values.
    pub bytes: u64,
    /// Records held.
    pub records: u64,
}

/// A signed change of a partition's usage: what the stores add up as records come and
/// go, before (or instead of) keeping it as a [`StoreUsage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UsageDelta {
    bytes: i64,
    records: i64,
}

impl UsageDelta {
    /// Counts one record going from `old` bytes to `new` (`None`: absent).
    pub(crate) fn record(&mut self, old: Option<usize>, new: Option<usize>) {
        let size = |b: Option<usize>| b.map_or((0, 0), |n| (n as i64, 1));
        let ((old_bytes, old_n), (new_bytes, new_n)) = (size(old), size(new));
        self.bytes += new_bytes - old_bytes;
        self.records += new_n - old_n;
    }

    /// `usage` after this change (never below zero).
    pub(crate) fn applied_to(self, usage: StoreUsage) -> StoreUsage {
        StoreUsage {
            bytes: usage.bytes.saturating_add_signed(self.bytes),
            records: usage.records.saturating_add_signed(self.records),
        }
    }
}

/// Which storage limit a write would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeLimit {
    /// The largest single record (`max_state_bytes`).
    StateBytes,
    /// All the partition's records together (`max_stored_bytes`).
    StoredBytes,
}

/// A write refused by a storage limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{}", self.describe())]
pub struct OverLimit {
    /// The limit.
    pub limit: SizeLimit,
    /// The limit's value, in bytes.
    pub max: u64,
    /// What the write would have made it: the record's size, or the partition's stored
    /// bytes after the write.
    pub would_be: u64,
}

impl OverLimit {
    fn describe(&self) -> String {
        match self.limit {
            SizeLimit::StateBytes => format!(
                "a record of {} bytes is larger than the partition's {}-byte limit on one state",
                self.would_be, self.max
            ),
            SizeLimit::StoredBytes => format!(
                "the write would make the partition store {} bytes, past its {}-byte limit",
                self.would_be, self.max
            ),
        }
    }
}

impl StoreError {
    /// Whether another writer owns the record (a version conflict) or its shard (a
    /// fence): the writer must stop serving it rather than retry.
    pub fn is_fence(&self) -> bool {
        matches!(self, Self::Conflict { .. } | Self::Fenced { .. })
    }
}

/// A checkpoint store. Every method is scoped by partition; none lists across partitions.
///
/// Implementations must be durable on acknowledgement: once `put` returns `Ok`, the record
/// survives a crash of the process.
pub trait CheckpointStore: Send + Sync + 'static {
    /// A short name for logs and errors (`memory`, `redb`, ...).
    fn kind(&self) -> &'static str;

    /// Reads one record.
    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Option<Record>, StoreError>>;

    /// Writes one record if its current version equals `expected` (`None`: it must not
    /// exist). Returns the new version. A stale writer gets [`StoreError::Conflict`].
    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        bytes: Arc<[u8]>,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Commits one turn atomically: if the checkpoint's compare-and-set holds, the
    /// checkpoint and every side write are applied (durable on `Ok`, as for `put`);
    /// otherwise nothing is. Returns the checkpoint's new version.
    ///
    /// The default supports turns without side writes only; stores that can apply
    /// several records in one transaction override it.
    fn commit<'a>(&'a self, turn: TurnCommit) -> BoxFuture<'a, Result<u64, StoreError>> {
        if turn.side.is_empty() {
            Box::pin(async move { self.put(&turn.key, turn.bytes, turn.expected).await })
        } else {
            Box::pin(std::future::ready(Err(StoreError::Unavailable(format!(
                "the {} store cannot commit storage writes with a turn",
                self.kind()
            )))))
        }
    }

    /// Deletes one record, if its version equals `expected` (`None`: whatever it is).
    /// Returns whether a record was deleted.
    fn delete<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Lists the keys and versions held for one manager in one partition, in key order.
    fn list<'a>(
        &'a self,
        partition: &'a Partition,
        manager: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(Key, u64)>, StoreError>>;

    /// Deletes every record of one partition (all managers). Returns how many.
    fn purge_partition<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// What `partition` keeps in the store, kept current by every write (never counted
    /// by scanning), or `None` when this store does not keep it (then no storage limit
    /// can be enforced on it). The stores of this crate and PostgreSQL's keep it.
    fn usage<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<Option<StoreUsage>, StoreError>> {
        let _ = partition;
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// Checks a compare-and-set: shared by every backend so they agree on the rule.
pub(crate) fn check_version(expected: Option<u64>, actual: Option<u64>) -> Result<u64, StoreError> {
    if expected == actual {
        Ok(actual.map_or(1, |v| v + 1))
    } else {
        Err(StoreError::Conflict { expected, actual })
    }
}
