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
//!
//! The same record holds the pinned tenants' own shards (see `pinning.rs`): each pin's
//! range is planned over the live members among its nodes, the shared shards over the
//! live members outside exclusive pins. Because pins, moves and owners change together
//! under one revision, a node that claims a shard has read every pin and move of that
//! revision before it serves anything.

use crate::ClusterError;
use crate::bucket::{self, unavailable};
use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use tenantry::cluster::{Pins, ShardCount, ShardId, ShardRange, plan};

/// The record's key in the bucket.
const OWNERS: &str = "owners";

/// How many times a change reads and writes again after losing a compare-and-set.
const ATTEMPTS: usize = 8;

/// The ownership record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The owner of each shared shard, by shard number.
    pub(crate) owners: Vec<Option<String>>,
    /// Pinned tenants, by partition name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) pins: BTreeMap<String, PinRecord>,
    /// Tenants whose placement is changing, by partition name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) moves: BTreeMap<String, MoveRecord>,
}

/// A pinned tenant's placement and the owners of its own shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PinRecord {
    /// The nodes its shards may live on.
    pub(crate) nodes: Vec<String>,
    /// Whether those nodes serve this tenant only (no shared shards).
    pub(crate) exclusive: bool,
    /// The first of its shards.
    pub(crate) first: u32,
    /// The owner of each of its shards.
    pub(crate) owners: Vec<Option<String>>,
    /// Unpinned: the tenant no longer routes here; kept until its move is done, so its
    /// owners count among those that must let go.
    #[serde(default)]
    pub(crate) removing: bool,
}

/// A tenant whose placement changes: the nodes that may still host its instances under
/// the old placement and have not said they let go of them, and the shards taken from
/// such nodes (counted dead) whose new owner has not raised the fence yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MoveRecord {
    pub(crate) waiting: BTreeSet<String>,
    #[serde(default)]
    pub(crate) fencing: BTreeSet<u32>,
}

impl Record {
    /// Every node that owns a shard, shared or pinned.
    pub(crate) fn owner_names(&self) -> BTreeSet<String> {
        let pinned = self.pins.values().flat_map(|p| p.owners.iter());
        self.owners
            .iter()
            .chain(pinned)
            .flatten()
            .cloned()
            .collect()
    }

    /// The owner slot of `shard`, shared or pinned.
    fn slot_mut(&mut self, shard: ShardId) -> Option<&mut Option<String>> {
        let s = shard.0 as usize;
        if s < self.owners.len() {
            return self.owners.get_mut(s);
        }
        self.pins.values_mut().find_map(|p| {
            let i = s.checked_sub(p.first as usize)?;
            p.owners.get_mut(i)
        })
    }

    /// The owner of every shard by shard number: shared, then the pins' ranges.
    pub(crate) fn flat(&self) -> Vec<Option<String>> {
        let end = self
            .pins
            .values()
            .map(|p| p.first as usize + p.owners.len())
            .chain([self.owners.len()])
            .max()
            .unwrap_or(0);
        let mut flat = self.owners.clone();
        flat.resize(end, None);
        for pin in self.pins.values() {
            for (i, owner) in pin.owners.iter().enumerate() {
                flat[pin.first as usize + i] = owner.clone();
            }
        }
        flat
    }

    /// The pins as nodes route by: the ranges of the pins in force, and the moves.
    pub(crate) fn view(&self) -> Pins {
        let mut pins = Pins::new();
        for (partition, pin) in self.pins.iter().filter(|(_, p)| !p.removing) {
            if let Some(count) = ShardCount::new(pin.owners.len() as u32) {
                let range = ShardRange {
                    first: pin.first,
                    count,
                };
                pins = pins.pin(partition, range);
            }
        }
        pins.with_moving(self.moves.keys())
    }

    /// Whether `shard` may hold identities of the tenant `partition`: a shared shard, or
    /// one of the tenant's own range.
    fn may_hold(&self, partition: &str, shard: ShardId) -> bool {
        let s = shard.0 as usize;
        s < self.owners.len()
            || self.pins.get(partition).is_some_and(|p| {
                s.checked_sub(p.first as usize)
                    .is_some_and(|i| i < p.owners.len())
            })
    }

    /// The shards `node` owns that may hold identities of `partition`.
    fn holds_any_of(&self, node: &str, partition: &str) -> bool {
        self.flat()
            .iter()
            .enumerate()
            .any(|(s, o)| o.as_deref() == Some(node) && self.may_hold(partition, ShardId(s as u32)))
    }

    /// Notes that `shard`, taken from `former` (counted dead), must be fenced by its new
    /// owner before the moves `former` holds up can end without it.
    fn taken_from(&mut self, shard: ShardId, former: &str) {
        let relevant: Vec<String> = self
            .moves
            .iter()
            .filter(|(p, m)| m.waiting.contains(former) && self.may_hold(p, shard))
            .map(|(p, _)| p.clone())
            .collect();
        for p in relevant {
            if let Some(m) = self.moves.get_mut(&p) {
                m.fencing.insert(shard.0);
            }
        }
    }

    /// Ends the moves no node holds up any more. A waiting node that owns no shard able
    /// to hold the tenant's identities has nothing left to let go of: it released them
    /// (after hibernating what lived there) or they were taken while it was counted
    /// dead, and a move also waits until the new owners of those have raised their
    /// fences. Returns whether the record changed.
    fn complete_moves(&mut self) -> bool {
        let mut changed = false;
        let partitions: Vec<String> = self.moves.keys().cloned().collect();
        for p in &partitions {
            let waiting = self.moves[p].waiting.clone();
            let still: BTreeSet<String> = waiting
                .into_iter()
                .filter(|n| self.holds_any_of(n, p))
                .collect();
            if let Some(m) = self.moves.get_mut(p) {
                changed |= m.waiting.len() != still.len();
                m.waiting = still;
            }
        }
        let done: Vec<String> = self
            .moves
            .iter()
            .filter(|(_, m)| m.waiting.is_empty() && m.fencing.is_empty())
            .map(|(p, _)| p.clone())
            .collect();
        for partition in done {
            self.moves.remove(&partition);
            if self.pins.get(&partition).is_some_and(|p| p.removing) {
                self.pins.remove(&partition);
            }
            changed = true;
        }
        changed
    }
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
    /// The pins to route by from now on.
    pub pins: Pins,
    /// Tenants whose placement changes and whose instances this node must let go of
    /// (hibernate) before it says so ([`Ownership::let_go`]).
    pub let_go: Vec<String>,
    /// Shards claimed from owners counted dead, with those owners.
    taken_from: Vec<(ShardId, String)>,
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
            pins: BTreeMap::new(),
            moves: BTreeMap::new(),
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

    /// The owner of every shard, by shard number: the shared shards, then the pinned
    /// tenants' ranges.
    pub async fn owners(&self) -> Result<Vec<Option<String>>, ClusterError> {
        Ok(self.read().await?.0.flat())
    }

    /// One round for node `me`, which counts `live` alive (`me` among them): claims the
    /// shards the plan gives it that no live member holds, and names those it must hand
    /// off. At most `max_moves` shards of each group (the shared shards, each pin's) are
    /// planned to move between live members.
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
    /// this node's last read) keeps its shards. The shared shards are planned over the
    /// members outside exclusive pins, each pin's shards over the members among its
    /// nodes; moves that no node holds up any more end.
    pub async fn round_with(
        &self,
        me: &str,
        members: &[String],
        is_dead: impl Fn(&str) -> bool,
        max_moves: usize,
    ) -> Result<Round, ClusterError> {
        self.change("a round", |record| {
            let completed = record.complete_moves();
            let exclusive: BTreeSet<&String> = record
                .pins
                .values()
                .filter(|p| p.exclusive && !p.removing)
                .flat_map(|p| &p.nodes)
                .collect();
            let shared: Vec<String> = members
                .iter()
                .filter(|m| !exclusive.contains(m))
                .cloned()
                .collect();
            let mut round = Round::default();
            let group = Group {
                me,
                is_dead: &is_dead,
                max_moves,
            };
            group.claim(&mut record.owners, 0, &shared, &mut round);
            if shared.is_empty() && !members.is_empty() {
                tracing::warn!(
                    "every live member is in an exclusive pin: no node serves the other tenants"
                );
            }
            for pin in record.pins.values_mut() {
                let mut on: Vec<String> = members
                    .iter()
                    .filter(|m| pin.nodes.contains(m))
                    .cloned()
                    .collect();
                if on.is_empty() && pin.removing {
                    // An unpin must end even if every pinned node is dead: the others take
                    // (and fence) its shards, so their dead owners hold the move up no longer.
                    on = shared.clone();
                }
                group.claim(&mut pin.owners, pin.first, &on, &mut round);
            }
            for (shard, former) in std::mem::take(&mut round.taken_from) {
                record.taken_from(shard, &former);
            }
            round.owned = owned_by(record, me);
            round.pins = record.view();
            round.let_go = record
                .moves
                .iter()
                .filter(|(_, m)| m.waiting.contains(me))
                .map(|(p, _)| p.clone())
                .collect();
            Ok((completed || !round.claimed.is_empty(), round))
        })
        .await
    }

    /// Gives up `shards` that `me` owns (after it stopped serving them), so their next
    /// owner can claim them. Shards `me` does not own are left alone.
    pub async fn release(&self, me: &str, shards: &[ShardId]) -> Result<(), ClusterError> {
        self.change("a release", |record| {
            let mut changed = false;
            for s in shards {
                if let Some(slot) = record.slot_mut(*s) {
                    if slot.as_deref() == Some(me) {
                        *slot = None;
                        changed = true;
                    }
                }
            }
            Ok((changed, ()))
        })
        .await
    }

    /// The shards the record gives `me`.
    pub async fn owned(&self, me: &str) -> Result<Vec<ShardId>, ClusterError> {
        Ok(owned_by(&self.read().await?.0, me))
    }

    /// The cluster's shard count.
    pub fn count(&self) -> ShardCount {
        self.count
    }

    /// Applies `f` to the record and writes it back if `f` says it changed it, by
    /// compare-and-set: on a lost race, reads again and applies `f` again. `what` names
    /// the change in errors.
    pub(crate) async fn change<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&mut Record) -> Result<(bool, T), ClusterError>,
    ) -> Result<T, ClusterError> {
        for _ in 0..ATTEMPTS {
            let (mut record, revision) = self.read().await?;
            let (changed, out) = f(&mut record)?;
            if !changed {
                return Ok(out);
            }
            match self.store.update(OWNERS, encode(&record)?, revision).await {
                Ok(_) => return Ok(out),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(ClusterError::Unavailable(format!(
            "the shard owners kept changing during {what}"
        )))
    }

    pub(crate) async fn read(&self) -> Result<(Record, u64), ClusterError> {
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

/// One round's planning of a group of shards (the shared ones, or a pin's) for `me`.
struct Group<'a, D> {
    me: &'a str,
    is_dead: &'a D,
    max_moves: usize,
}

impl<D: Fn(&str) -> bool> Group<'_, D> {
    /// Plans `owners` (numbered from `first`) over `members`: claims for `me` the shards
    /// the plan gives it that no live member holds, and notes those it must hand off.
    fn claim(
        &self,
        owners: &mut [Option<String>],
        first: u32,
        members: &[String],
        round: &mut Round,
    ) {
        // Owners this node counts dead hold nothing.
        let current: Vec<Option<String>> = owners
            .iter()
            .map(|o| o.clone().filter(|o| !(self.is_dead)(o)))
            .collect();
        let placement = plan(&current, members, self.max_moves);
        for (i, (now, next)) in current.iter().zip(&placement.owners).enumerate() {
            let shard = ShardId(first + i as u32);
            let mine_next = next.as_deref() == Some(self.me);
            match now.as_deref() {
                None if mine_next => {
                    if let Some(former) = owners[i].replace(self.me.to_owned()) {
                        round.taken_from.push((shard, former));
                    }
                    round.claimed.push(shard);
                }
                Some(owner) if owner == self.me && !mine_next => round.hand_off.push(shard),
                _ => {}
            }
        }
    }
}

fn owned_by(record: &Record, me: &str) -> Vec<ShardId> {
    record
        .flat()
        .iter()
        .enumerate()
        .filter(|(_, o)| o.as_deref() == Some(me))
        .map(|(s, _)| ShardId(s as u32))
        .collect()
}

pub(crate) fn encode(record: &Record) -> Result<bytes::Bytes, ClusterError> {
    serde_json::to_vec(record)
        .map(Into::into)
        .map_err(|e| ClusterError::Unavailable(format!("encoding the shard owners: {e}")))
}
