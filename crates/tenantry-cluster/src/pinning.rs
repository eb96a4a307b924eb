//! Per-tenant pins in the ownership record: placing a tenant on chosen nodes.
//!
//! Pinning a tenant gives it a range of shards of its own (numbered after the shared
//! shards and any other pin's), which rounds place only on the live members among its
//! nodes; an exclusive pin also keeps those nodes free of every other tenant. Changing
//! the nodes of a pin moves its shards by the usual hand-off. Pinning or unpinning moves
//! the tenant's identities between the shared shards and its range, so it starts a
//! *move*: every node that owns a shard at that moment must let go of the tenant's
//! instances (hibernate them, under the fences of the placement they were activated
//! under) and say so ([`Ownership::let_go`]) before any node serves the tenant again.
//! Nodes that claim shards later read the move in the same record first. A node counted
//! dead holds nothing up once the shards it had that could hold the tenant are taken and
//! their new owners have raised the fences ([`Ownership::fenced`]): its writes fail. Calls
//! for the tenant meanwhile wait (they are refused as served elsewhere and retried within
//! their deadline), for a few rounds; longer when a node must first be counted dead.
//!
//! The record's format is new with pins: every node of a cluster must run a version
//! that knows them before a tenant is pinned (an older node would write the record back
//! without them).

use crate::ClusterError;
use crate::bucket::checked_name;
use crate::ownership::{MoveRecord, Ownership, PinRecord, Record};
use serde::{Deserialize, Serialize};
use tenantry::cluster::{Pins, ShardId};

/// The most nodes one pin names.
pub const MAX_PIN_NODES: usize = 64;
/// The shards a pinned tenant gets unless it asks for another number.
pub const DEFAULT_PIN_SHARDS: u32 = 32;
/// The most shards one pinned tenant may have.
pub const MAX_PIN_SHARDS: u32 = 1024;
/// The most shards all pins together may have.
const MAX_PINNED_SHARDS: u32 = 16_384;
/// The largest the ownership record may grow to, every shard owned by a node with the
/// longest name (NATS refuses messages over 1 MiB by default).
const MAX_RECORD_BYTES: usize = 768 << 10;

/// What a pin asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    /// The nodes the tenant's instances may live on (1 to [`MAX_PIN_NODES`]); at least
    /// one must be a live member when the pin is set.
    pub nodes: Vec<String>,
    /// Whether those nodes serve this tenant only: they hand their shared shards off,
    /// and no other pin may name them.
    #[serde(default)]
    pub exclusive: bool,
    /// How many shards the tenant gets (1 to [`MAX_PIN_SHARDS`]; default
    /// [`DEFAULT_PIN_SHARDS`]); fixed while it stays pinned.
    #[serde(default)]
    pub shards: Option<u32>,
}

/// Where a pin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinState {
    /// In force: the tenant is served on its nodes.
    Active,
    /// Just set: the nodes are letting go of the tenant's instances.
    Moving,
    /// Being removed: the nodes are letting go; then the tenant routes to the shared
    /// shards again.
    Removing,
}

/// A pinned tenant, as the admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantPin {
    /// The tenant's partition.
    pub partition: String,
    /// The nodes it may live on.
    pub nodes: Vec<String>,
    /// Whether those nodes serve it only.
    pub exclusive: bool,
    /// Its first shard.
    pub first_shard: u32,
    /// How many shards it has.
    pub shards: u32,
    /// The owner of each of its shards.
    pub owners: Vec<Option<String>>,
    /// Where the pin stands.
    pub state: PinState,
    /// The nodes that have yet to let go of its instances (while it moves).
    pub waiting: Vec<String>,
}

impl Ownership {
    /// Pins `partition` (a tenant's partition name) as `request` says, `live` being the
    /// members counted alive and serving: a new pin starts a move; a pin already set
    /// changes its nodes (its shards follow by hand-off; also while it moves, so a move
    /// held up by dead pinned nodes can end). Refused while the tenant is being
    /// unpinned, when no node named is live, where exclusive pins would overlap or leave
    /// no live node for the other tenants, and when the record would grow too large.
    pub async fn pin(
        &self,
        partition: &str,
        request: &PinRequest,
        live: &[String],
    ) -> Result<TenantPin, ClusterError> {
        let shards = checked(partition, request, live)?;
        let shared = self.count().get();
        self.change("a pin", |record| {
            check_exclusive(record, partition, request, live)?;
            match record.pins.get_mut(partition) {
                Some(pin) if pin.removing => return Err(moving(partition)),
                Some(pin) => {
                    if request
                        .shards
                        .is_some_and(|n| n as usize != pin.owners.len())
                    {
                        return Err(ClusterError::PinConflict(format!(
                            "{partition} has {} shards; unpin it to change that",
                            pin.owners.len()
                        )));
                    }
                    pin.nodes = request.nodes.clone();
                    pin.exclusive = request.exclusive;
                }
                None => {
                    let first = free_range(record, shared, shards)?;
                    check_size(record, shards, live, request)?;
                    let waiting = record.owner_names();
                    record.pins.insert(
                        partition.to_owned(),
                        PinRecord {
                            nodes: request.nodes.clone(),
                            exclusive: request.exclusive,
                            first,
                            owners: vec![None; shards as usize],
                            removing: false,
                        },
                    );
                    start_move(record, partition, waiting);
                }
            }
            Ok((true, described(record, partition)?))
        })
        .await
    }

    /// Unpins `partition`: starts the move of its identities back to the shared shards.
    /// While its pin is still moving in, the same move turns back (every node that may
    /// have let go under either placement lets go again). Unpinning a tenant being
    /// unpinned changes nothing.
    pub async fn unpin(&self, partition: &str) -> Result<TenantPin, ClusterError> {
        self.change("an unpin", |record| {
            let mut waiting = record.owner_names();
            let Some(pin) = record.pins.get_mut(partition) else {
                return Err(ClusterError::NotPinned(partition.to_owned()));
            };
            if pin.removing {
                return Ok((false, described(record, partition)?));
            }
            pin.removing = true;
            let fencing = match record.moves.remove(partition) {
                Some(earlier) => {
                    waiting.extend(earlier.waiting);
                    earlier.fencing
                }
                None => Default::default(),
            };
            start_move(record, partition, waiting);
            if let Some(m) = record.moves.get_mut(partition) {
                m.fencing = fencing;
            }
            Ok((true, described(record, partition)?))
        })
        .await
    }

    /// Says that `me` raised the fences of `shards` (taken from nodes counted dead), so
    /// the moves that waited for them may end.
    pub async fn fenced(&self, shards: &[ShardId]) -> Result<(), ClusterError> {
        self.change("noting fences", |record| {
            let mut changed = false;
            for m in record.moves.values_mut() {
                for s in shards {
                    changed |= m.fencing.remove(&s.0);
                }
            }
            Ok((changed, ()))
        })
        .await
    }

    /// The owner of every shard and the pins, from one read of the record.
    pub async fn snapshot(&self) -> Result<(Vec<Option<String>>, Vec<TenantPin>), ClusterError> {
        let (record, _) = self.read().await?;
        let pins = record.pins.keys().filter_map(|p| describe(&record, p));
        Ok((record.flat(), pins.collect()))
    }

    /// The pins as nodes route by, as the record has them now.
    pub async fn view(&self) -> Result<Pins, ClusterError> {
        Ok(self.read().await?.0.view())
    }

    /// The pin of `partition`, if it is pinned.
    pub async fn pin_of(&self, partition: &str) -> Result<Option<TenantPin>, ClusterError> {
        Ok(describe(&self.read().await?.0, partition))
    }

    /// Says that `me` let go of every instance of the tenants `partitions`, whose
    /// placement is changing.
    pub async fn let_go(&self, me: &str, partitions: &[String]) -> Result<(), ClusterError> {
        self.change("letting go", |record| {
            let mut changed = false;
            for p in partitions {
                if let Some(m) = record.moves.get_mut(p) {
                    changed |= m.waiting.remove(me);
                }
            }
            Ok((changed, ()))
        })
        .await
    }
}

/// Refuses a malformed request; the shard count it asks for.
fn checked(partition: &str, request: &PinRequest, live: &[String]) -> Result<u32, ClusterError> {
    let invalid = |why: String| Err(ClusterError::InvalidPin(why));
    if tenantry::Partition::new(partition).is_err() {
        return invalid(format!("{partition:?} is not a partition name"));
    }
    if request.nodes.is_empty() || request.nodes.len() > MAX_PIN_NODES {
        return invalid(format!("name 1 to {MAX_PIN_NODES} nodes"));
    }
    for node in &request.nodes {
        checked_name("node", node, 64)?;
    }
    let mut unique = request.nodes.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != request.nodes.len() {
        return invalid("a node is named twice".into());
    }
    let shards = request.shards.unwrap_or(DEFAULT_PIN_SHARDS);
    if !(1..=MAX_PIN_SHARDS).contains(&shards) {
        return invalid(format!("shards must be 1 to {MAX_PIN_SHARDS}"));
    }
    if !request.nodes.iter().any(|n| live.contains(n)) {
        return Err(ClusterError::PinConflict(format!(
            "none of {:?} is a live member: the tenant would be served nowhere",
            request.nodes
        )));
    }
    Ok(shards)
}

/// Refuses a pin whose nodes another tenant's exclusive pin holds, an exclusive pin
/// naming nodes another pin names, and exclusive pins that would leave no live node for
/// the other tenants.
fn check_exclusive(
    record: &Record,
    partition: &str,
    request: &PinRequest,
    live: &[String],
) -> Result<(), ClusterError> {
    let mut exclusive: std::collections::BTreeSet<&String> = record
        .pins
        .iter()
        .filter(|(p, pin)| *p != partition && pin.exclusive && !pin.removing)
        .flat_map(|(_, pin)| &pin.nodes)
        .collect();
    if request.exclusive {
        exclusive.extend(&request.nodes);
    }
    if !live.iter().any(|m| !exclusive.contains(m)) {
        return Err(ClusterError::PinConflict(
            "exclusive pins would leave no live node for the other tenants".into(),
        ));
    }
    for (other, pin) in record.pins.iter().filter(|(p, _)| *p != partition) {
        let shared: Vec<&String> = request
            .nodes
            .iter()
            .filter(|n| pin.nodes.contains(n))
            .collect();
        if !shared.is_empty() && (pin.exclusive || request.exclusive) {
            return Err(ClusterError::PinConflict(format!(
                "{shared:?} also serve {other}, and an exclusive pin shares no node"
            )));
        }
    }
    Ok(())
}

/// The first shard of a free range of `len` shards after the `shared` ones.
fn free_range(record: &Record, shared: u32, len: u32) -> Result<u32, ClusterError> {
    let mut taken: Vec<(u32, u32)> = record
        .pins
        .values()
        .map(|p| (p.first, p.first + p.owners.len() as u32))
        .collect();
    taken.sort_unstable();
    let mut first = shared;
    for (start, end) in taken {
        if first + len <= start {
            break;
        }
        first = first.max(end);
    }
    if first + len > shared + MAX_PINNED_SHARDS {
        return Err(ClusterError::PinConflict(format!(
            "all pins together may hold {MAX_PINNED_SHARDS} shards"
        )));
    }
    Ok(first)
}

/// Refuses a new pin of `shards` shards if the record, every shard owned by a node with
/// the longest name among `live` and the pin's, could outgrow what NATS carries.
fn check_size(
    record: &Record,
    shards: u32,
    live: &[String],
    request: &PinRequest,
) -> Result<(), ClusterError> {
    let longest = live
        .iter()
        .chain(&request.nodes)
        .chain(record.pins.values().flat_map(|p| &p.nodes))
        .map(String::len)
        .max()
        .unwrap_or(0);
    let slots = record.flat().len() + shards as usize;
    let nodes: usize = record
        .pins
        .values()
        .map(|p| p.nodes.iter().map(|n| n.len() + 3).sum::<usize>() + 128)
        .sum();
    let worst = slots * (longest + 3) + nodes + request.nodes.len() * (longest + 3) + 4096;
    if worst > MAX_RECORD_BYTES {
        return Err(ClusterError::PinConflict(format!(
            "the shard owners record could grow past {MAX_RECORD_BYTES} bytes; pin fewer shards"
        )));
    }
    Ok(())
}

fn start_move(record: &mut Record, partition: &str, waiting: std::collections::BTreeSet<String>) {
    record.moves.insert(
        partition.to_owned(),
        MoveRecord {
            waiting,
            fencing: Default::default(),
        },
    );
}

fn moving(partition: &str) -> ClusterError {
    ClusterError::PinConflict(format!(
        "the placement of {partition} is changing; try again in a few seconds"
    ))
}

/// `partition`'s pin, which the change just set.
fn described(record: &Record, partition: &str) -> Result<TenantPin, ClusterError> {
    describe(record, partition).ok_or_else(|| ClusterError::NotPinned(partition.to_owned()))
}

/// `partition`'s pin as the admin sees it.
fn describe(record: &Record, partition: &str) -> Option<TenantPin> {
    let pin = record.pins.get(partition)?;
    let waiting = record.moves.get(partition);
    let state = match (pin.removing, waiting) {
        (true, _) => PinState::Removing,
        (false, Some(_)) => PinState::Moving,
        (false, None) => PinState::Active,
    };
    Some(TenantPin {
        partition: partition.to_owned(),
        nodes: pin.nodes.clone(),
        exclusive: pin.exclusive,
        first_shard: pin.first,
        shards: pin.owners.len() as u32,
        owners: pin.owners.clone(),
        state,
        waiting: waiting
            .map(|m| m.waiting.iter().cloned().collect())
            .unwrap_or_default(),
    })
}
