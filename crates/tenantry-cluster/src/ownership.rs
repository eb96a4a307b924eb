//! Shard ownership: who owns each shard, as one record in a JetStream key-value bucket
//! (`tenantry_<cluster>_shards`, key `owners`), changed only by compare-and-set on its
//! revision.
//!
//! A node reconciles in rounds ([`Ownership::round`]): it reads the record, plans with
//! [`tenantry::cluster::plan`] over the members it counts alive (shards of members it
//! counts dead have no owner), and writes back the shards the plan gives it that nobody
//! alive holds. It never takes a shard from a live owner: the plan names the shards the
//! owner must hand off, the owner stops serving them and releases them
//! ([`Ownership::release`]), and the new owner claims them in its next round. Two nodes
//! writing at once cannot both win: the loser reads again and plans again. The claimer
//! then raises the shard's fence epoch in the store before serving it, which is what
//! makes a former owner that did not notice harmless.

use crate::ClusterError;
use crate::bucket::{self, unavailable};
use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use tenantry::cluster::{ShardCount, ShardId, plan};

/// The record's key in the bucket.
const OWNERS: &str = "owners";

/// How many times a round reads and writes again after losing a compare-and-set.
const ATTEMPTS: usize = 8;

/// The ownership record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// The owner of each shard, by shard number.
    owners: Vec<Option<String>>,
}

/// What a round changed for the node that ran it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    /// Shards this node claimed: raise their fence epoch, then serve them.
    pub claimed: Vec<ShardId>,
    /// Shards this node owns that the plan gives to another: stop serving them, then
    /// [`Ownership::release`] them.
    pub hand_off: Vec<ShardId>,
    /// Every shard this node owns after the round.
    pub owned: Vec<ShardId>,
}

/// A cluster's shard ownership record (clones share the bucket).
#[derive(Clone)]
pub struct Ownership {
    store: kv::Store,
    count: ShardCount,
}

impl Ownership {
    /// Opens `cluster`'s record, creating it with `count` shards if the cluster is new.
    /// The shard count is the cluster's for life: another one is refused.
    pub async fn open(
        client: async_nats::Client,
        cluster: &str,
        count: ShardCount,
    ) -> Result<Self, ClusterError> {
        let store = bucket::open(client, cluster, "shards").await?;
        let fresh = Record {
            owners: vec![None; count.get() as usize],
        };
        match store.create(OWNERS, encode(&fresh)?).await {
            Ok(_) => {}
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => return Err(unavailable(e)),
        }
        let this = Self { store, count };
        let (record, _) = this.read().await?;
        if record.owners.len() != count.get() as usize {
            return Err(ClusterError::ShardCount {
                cluster: cluster.to_owned(),
                found: record.owners.len(),
                asked: count.get(),
            });
        }
        Ok(this)
    }

    /// The owner of every shard, by shard number.
    pub async fn owners(&self) -> Result<Vec<Option<String>>, ClusterError> {
        Ok(self.read().await?.0.owners)
    }

    /// One round for node `me`, which counts `live` alive (`me` among them): claims the
    /// shards the plan gives it that no live member holds, and names those it must hand
    /// off. At most `max_moves` shards are planned to move between live members.
    pub async fn round(
        &self,
        me: &str,
        live: &[String],
        max_moves: usize,
    ) -> Result<Round, ClusterError> {
        self.round_with(
            me,
            live,
            |owner| !live.contains(&owner.to_owned()),
            max_moves,
        )
        .await
    }

    /// [`Ownership::round`], planning over `members` but freeing only the shards of the
    /// owners `is_dead` names: an owner this node has not heard of yet (it joined since
    /// this node's last read) keeps its shards.
    pub async fn round_with(
        &self,
        me: &str,
        members: &[String],
        is_dead: impl Fn(&str) -> bool,
        max_moves: usize,
    ) -> Result<Round, ClusterError> {
        let live = members;
        for _ in 0..ATTEMPTS {
            let (mut record, revision) = self.read().await?;
            // Owners this node counts dead hold nothing.
            let current: Vec<Option<String>> = record
                .owners
                .iter()
                .map(|o| o.clone().filter(|o| !is_dead(o)))
                .collect();
            let placement = plan(&current, live, max_moves);
            let mut round = Round::default();
            for (shard, (now, next)) in current.iter().zip(&placement.owners).enumerate() {
                let shard_id = ShardId(shard as u32);
                let mine_next = next.as_deref() == Some(me);
                match now.as_deref() {
                    None if mine_next => {
                        record.owners[shard] = Some(me.to_owned());
                        round.claimed.push(shard_id);
                    }
                    Some(owner) if owner == me && !mine_next => round.hand_off.push(shard_id),
                    _ => {}
                }
            }
            round.owned = owned_by(&record, me);
            if round.claimed.is_empty() {
                return Ok(round);
            }
            match self.store.update(OWNERS, encode(&record)?, revision).await {
                Ok(_) => return Ok(round),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(ClusterError::Unavailable(
            "the shard owners kept changing during a round".into(),
        ))
    }

    /// Gives up `shards` that `me` owns (after it stopped serving them), so their next
    /// owner can claim them. Shards `me` does not own are left alone.
    pub async fn release(&self, me: &str, shards: &[ShardId]) -> Result<(), ClusterError> {
        for _ in 0..ATTEMPTS {
            let (mut record, revision) = self.read().await?;
            let mut changed = false;
            for s in shards {
                if let Some(slot) = record.owners.get_mut(s.0 as usize) {
                    if slot.as_deref() == Some(me) {
                        *slot = None;
                        changed = true;
                    }
                }
            }
            if !changed {
                return Ok(());
            }
            match self.store.update(OWNERS, encode(&record)?, revision).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(ClusterError::Unavailable(
            "the shard owners kept changing during a release".into(),
        ))
    }

    /// The shards the record gives `me`.
    pub async fn owned(&self, me: &str) -> Result<Vec<ShardId>, ClusterError> {
        Ok(owned_by(&self.read().await?.0, me))
    }

    /// The cluster's shard count.
    pub fn count(&self) -> ShardCount {
        self.count
    }

    async fn read(&self) -> Result<(Record, u64), ClusterError> {
        let entry = self
            .store
            .entry(OWNERS)
            .await
            .map_err(unavailable)?
            .filter(|e| e.operation == kv::Operation::Put)
            .ok_or_else(|| ClusterError::Unavailable("the shard owners record is gone".into()))?;
        let record: Record = serde_json::from_slice(&entry.value)
            .map_err(|e| ClusterError::Unavailable(format!("the shard owners record: {e}")))?;
        Ok((record, entry.revision))
    }
}

fn owned_by(record: &Record, me: &str) -> Vec<ShardId> {
    record
        .owners
        .iter()
        .enumerate()
        .filter(|(_, o)| o.as_deref() == Some(me))
        .map(|(s, _)| ShardId(s as u32))
        .collect()
}

fn encode(record: &Record) -> Result<bytes::Bytes, ClusterError> {
    serde_json::to_vec(record)
        .map(Into::into)
        .map_err(|e| ClusterError::Unavailable(format!("encoding the shard owners: {e}")))
}
