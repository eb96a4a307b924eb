//! The metering store: the runtime's store, with each partition's byte limits checked
//! before a write reaches it.
//!
//! What is refused is what has not been acknowledged yet: a durable turn's commit (its
//! checkpoint and side writes) and a scoped storage value. A checkpoint written with
//! `put` is an instance hibernating with changes its callers were told of already
//! (`OnHibernate`): it is counted, never refused, since refusing it would lose them.
//!
//! Every record a refusable write carries must fit the partition's `max_state_bytes`. When the partition has a
//! `max_stored_bytes`, the write's growth (each record's new size less its stored size)
//! is added to the usage the store keeps, and a write that grows the partition past its
//! limit is refused; writes that shrink it always pass, so a tenant over its limit can
//! always make room. Partitions without byte limits pay one table lookup per write.
//!
//! Writes checked at the same moment are not serialized against each other: together
//! they may pass the limit by at most their own sizes (each bounded by
//! `max_state_bytes`), and the next write sees the sum.

use super::{ByteLimits, Quotas};
use crate::scope::storage::is_storage;
use crate::store::{
    CheckpointStore, OverLimit, Record, SizeLimit, StoreError, StoreKey, StoreUsage, TurnCommit,
};
use crate::{Key, Partition};
use futures::future::BoxFuture;
use std::sync::Arc;

/// A store that checks each partition's byte limits before writing to `inner`.
pub(crate) struct Metered {
    inner: Arc<dyn CheckpointStore>,
    quotas: Arc<Quotas>,
}

impl Metered {
    pub(crate) fn new(inner: Arc<dyn CheckpointStore>, quotas: Arc<Quotas>) -> Self {
        Self { inner, quotas }
    }

    /// Refuses `turn` if one of its records, or the partition's growth, passes a limit.
    async fn check(&self, turn: &TurnCommit) -> Result<(), StoreError> {
        let partition = &turn.key.partition;
        let ByteLimits { stored, state } = self.quotas.byte_limits(partition);
        let records = || {
            std::iter::once((&turn.key, Some(turn.bytes.len()))).chain(
                turn.side
                    .iter()
                    .map(|s| (&s.key, s.bytes.as_ref().map(|b| b.len()))),
            )
        };
        if let Some(max) = state
            && let Some(largest) = records().filter_map(|(_, len)| len).max()
            && largest as u64 > max
        {
            return Err(StoreError::OverLimit(OverLimit {
                limit: SizeLimit::StateBytes,
                max,
                would_be: largest as u64,
            }));
        }
        let Some(max) = stored else {
            return Ok(());
        };
        let Some(StoreUsage { bytes: used, .. }) = self.inner.usage(partition).await? else {
            return Ok(());
        };
        let (mut added, mut freed) = (0u64, 0u64);
        for (key, len) in records() {
            // A checkpoint that must not exist yet replaces nothing.
            let replaced = if std::ptr::eq(key, &turn.key) && turn.expected.is_none() {
                0
            } else {
                self.inner
                    .get(key)
                    .await?
                    .map_or(0, |r| r.bytes.len() as u64)
            };
            added += len.unwrap_or(0) as u64;
            freed += replaced;
        }
        let would_be = (used + added).saturating_sub(freed);
        if added > freed && would_be > max {
            return Err(StoreError::OverLimit(OverLimit {
                limit: SizeLimit::StoredBytes,
                max,
                would_be,
            }));
        }
        Ok(())
    }
}

impl CheckpointStore for Metered {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        self.inner.get(key)
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        bytes: Arc<[u8]>,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            if !is_storage(key) {
                return self.inner.put(key, bytes, expected).await;
            }
            let turn = TurnCommit::checkpoint(key.clone(), bytes, expected);
            self.check(&turn).await?;
            self.inner.put(key, turn.bytes, expected).await
        })
    }

    fn commit<'a>(&'a self, turn: TurnCommit) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            self.check(&turn).await?;
            self.inner.commit(turn).await
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.delete(key, expected)
    }

    fn list<'a>(
        &'a self,
        partition: &'a Partition,
        manager: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(Key, u64)>, StoreError>> {
        self.inner.list(partition, manager)
    }

    fn purge_partition<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.inner.purge_partition(partition)
    }

    fn usage<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<Option<StoreUsage>, StoreError>> {
        self.inner.usage(partition)
    }
}
