//! An in-memory checkpoint store: fast, shared-nothing between runtimes, lost on exit.

use super::{
    CheckpointStore, Record, StoreError, StoreKey, StoreUsage, TurnCommit, UsageDelta,
    check_version,
};
use crate::{Key, Partition};
use dashmap::DashMap;
use futures::future::{BoxFuture, FutureExt, ready};
use std::sync::Arc;

/// A checkpoint store held in memory; for tests, benchmarks and ephemeral runtimes.
#[derive(Default, Clone)]
pub struct MemoryStore {
    records: Arc<DashMap<StoreKey, Record>>,
    /// Each partition's usage, changed with every record: signed, so that two writers
    /// of one key counting in either order still sum right.
    usage: Arc<DashMap<Partition, UsageDelta>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records held, all partitions together (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn account(&self, partition: &Partition, old: Option<usize>, new: Option<usize>) {
        self.usage
            .entry(partition.clone())
            .or_default()
            .record(old, new);
    }

    fn put_now(
        &self,
        key: &StoreKey,
        bytes: Arc<[u8]>,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let len = bytes.len();
        match self.records.entry(key.clone()) {
            dashmap::Entry::Occupied(mut e) => check_version(expected, Some(e.get().version))
                .inspect(|&version| {
                    let old = e.insert(Record { version, bytes });
                    self.account(&key.partition, Some(old.bytes.len()), Some(len));
                }),
            dashmap::Entry::Vacant(e) => check_version(expected, None).inspect(|&version| {
                e.insert(Record { version, bytes });
                self.account(&key.partition, None, Some(len));
            }),
        }
    }

    /// Writes (or with `None` deletes) a record whatever its version.
    fn overwrite(&self, key: StoreKey, bytes: Option<Arc<[u8]>>) {
        let partition = key.partition.clone();
        let new = bytes.as_ref().map(|b| b.len());
        let old = match bytes {
            Some(bytes) => match self.records.entry(key) {
                dashmap::Entry::Occupied(mut e) => {
                    let version = e.get().version + 1;
                    Some(e.insert(Record { version, bytes }).bytes.len())
                }
                dashmap::Entry::Vacant(e) => {
                    e.insert(Record { version: 1, bytes });
                    None
                }
            },
            None => self.records.remove(&key).map(|(_, r)| r.bytes.len()),
        };
        self.account(&partition, old, new);
    }
}

impl CheckpointStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        ready(Ok(self.records.get(key).map(|r| r.clone()))).boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        bytes: Arc<[u8]>,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        ready(self.put_now(key, bytes, expected)).boxed()
    }

    fn commit<'a>(&'a self, turn: TurnCommit) -> BoxFuture<'a, Result<u64, StoreError>> {
        // Nothing here outlives the process, so "atomic" only has to mean all or nothing:
        // the checkpoint's compare-and-set decides, and side writes cannot fail.
        let result = self
            .put_now(&turn.key, turn.bytes, turn.expected)
            .inspect(|_| {
                for side in turn.side {
                    self.overwrite(side.key, side.bytes);
                }
            });
        ready(result).boxed()
    }

    fn delete<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = match self.records.get(key).map(|r| r.version) {
            None => Ok(false),
            Some(actual) if expected.is_some_and(|e| e != actual) => Err(StoreError::Conflict {
                expected,
                actual: Some(actual),
            }),
            Some(actual) => match self.records.remove_if(key, |_, r| r.version == actual) {
                Some((_, old)) => {
                    self.account(&key.partition, Some(old.bytes.len()), None);
                    Ok(true)
                }
                None => Ok(false),
            },
        };
        ready(result).boxed()
    }

    fn list<'a>(
        &'a self,
        partition: &'a Partition,
        manager: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(Key, u64)>, StoreError>> {
        let mut keys: Vec<(Key, u64)> = self
            .records
            .iter()
            .filter(|e| &e.key().partition == partition && &*e.key().manager == manager)
            .map(|e| (e.key().key.clone(), e.value().version))
            .collect();
        keys.sort();
        ready(Ok(keys)).boxed()
    }

    fn purge_partition<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        let mut removed = 0u64;
        self.records.retain(|k, r| {
            let keep = &k.partition != partition;
            if !keep {
                removed += 1;
                self.account(partition, Some(r.bytes.len()), None);
            }
            keep
        });
        ready(Ok(removed)).boxed()
    }

    fn usage<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<Option<StoreUsage>, StoreError>> {
        let delta = self.usage.get(partition).map(|d| *d).unwrap_or_default();
        ready(Ok(Some(delta.applied_to(StoreUsage::default())))).boxed()
    }
}
