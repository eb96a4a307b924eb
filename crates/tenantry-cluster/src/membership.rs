//! Membership: which nodes of a cluster are alive, by leases no two clocks must agree on
//! (see the crate docs for the rule).
//!
//! A member runs two tasks: one renews its entry (compare-and-set on the revision it
//! wrote last), one reads the bucket and notes, on the local monotonic clock, when each
//! entry last changed. [`Membership::serving`] answers from the renewals, and
//! [`Membership::live`] from the observations.

use crate::ClusterError;
use crate::bucket::{self, checked_name, unavailable};
use async_nats::jetstream::kv;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The timing of leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipConfig {
    /// How long a renewal keeps a member alive.
    pub lease: Duration,
    /// Taken off a member's own lease and added to what others wait, for the time a
    /// renewal spends in flight and the drift between two monotonic clocks' rates.
    pub margin: Duration,
    /// How often a member renews its entry and reads the others'.
    pub renew_every: Duration,
}

impl Default for MembershipConfig {
    /// A 4 s lease with a 1 s margin, renewed every second: a member that stops renewing
    /// stops serving within 3 s of its last renewal, and the others count it dead 5 s
    /// after they last saw it change.
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(4),
            margin: Duration::from_secs(1),
            renew_every: Duration::from_secs(1),
        }
    }
}

impl MembershipConfig {
    /// Checks that two renewals fit in what a member may serve of its lease.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let serves = self.lease.checked_sub(self.margin);
        match serves {
            _ if self.margin.is_zero() || self.renew_every.is_zero() => Err(
                ClusterError::InvalidTiming("margin and renewal period must be positive".into()),
            ),
            Some(serves) if serves >= self.renew_every * 2 => Ok(()),
            _ => Err(ClusterError::InvalidTiming(format!(
                "a lease of {:?} less a margin of {:?} must hold two renewals every {:?}",
                self.lease, self.margin, self.renew_every
            ))),
        }
    }
}

/// What a member does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// It serves its shards.
    Serving,
    /// It is handing its shards off before leaving.
    Draining,
}

/// A member as its entry describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's name, unique in the cluster.
    pub node: String,
    /// Random per process start: a restarted node is a new incarnation.
    pub incarnation: u64,
    /// Where other nodes reach it.
    pub address: String,
    /// What it does.
    pub state: MemberState,
}

/// An entry as this node last saw it.
struct Seen {
    revision: u64,
    /// When this node saw the revision change (or first saw or heard of the entry).
    changed_at: Instant,
    /// `None` for a node only heard of (it owns shards) and not yet read.
    member: Option<Member>,
    /// Whether the last read found the entry (a node that left is kept until it ages
    /// out, so its name is not taken for dead the moment its entry goes).
    present: bool,
}

struct Shared {
    config: MembershipConfig,
    store: kv::Store,
    me: Mutex<Member>,
    /// The revision of this node's entry that it wrote last.
    revision: AtomicU64,
    /// Until when this node may serve (its own clock).
    serves_until: Mutex<Instant>,
    /// Someone else wrote this node's entry: it must not serve again.
    deposed: AtomicBool,
    /// How many times this node's lease ran out before a renewal restored it.
    lapses: AtomicU64,
    seen: RwLock<BTreeMap<String, Seen>>,
    /// When the last read of the bucket that succeeded began: a member is counted dead
    /// only on what reads showed, so a node whose reads fail or stall kills nobody.
    read_at: Mutex<Instant>,
}

/// This node's membership of a cluster. Dropping it stops renewing without removing the
/// entry (as a crash would: the others count the node dead after a lease); call
/// [`Membership::leave`] to leave cleanly.
pub struct Membership {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        lock(&self.tasks).iter().for_each(JoinHandle::abort);
    }
}

/// A random number per process start (std's hasher keys are random).
fn incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

impl Membership {
    /// Joins `cluster` as `node`, reachable at `address`. If an entry for `node` exists
    /// (an earlier incarnation that crashed), waits a full lease and a margin without
    /// seeing it change before taking it over; if it changes, another live node has the
    /// name: [`ClusterError::DuplicateNode`].
    pub async fn join(
        client: async_nats::Client,
        cluster: &str,
        node: &str,
        address: &str,
        config: MembershipConfig,
    ) -> Result<Self, ClusterError> {
        checked_name("node", node, 64)?;
        config.validate()?;
        let store = bucket::open(client, cluster, "members").await?;
        let me = Member {
            node: node.to_owned(),
            incarnation: incarnation(),
            address: address.to_owned(),
            state: MemberState::Serving,
        };
        let value = encode(&me)?;
        let sent = Instant::now();
        let (revision, sent) = match store.create(node, value.clone()).await {
            Ok(revision) => (revision, sent),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                take_over(&store, node, value, &config).await?
            }
            Err(e) => return Err(unavailable(e)),
        };
        let shared = Arc::new(Shared {
            config,
            store,
            me: Mutex::new(me),
            revision: AtomicU64::new(revision),
            serves_until: Mutex::new(sent + config.lease - config.margin),
            deposed: AtomicBool::new(false),
            lapses: AtomicU64::new(0),
            seen: RwLock::default(),
            read_at: Mutex::new(Instant::now()),
        });
        observe(&shared).await;
        let tasks = vec![
            tokio::spawn(renew_loop(shared.clone())),
            tokio::spawn(observe_loop(shared.clone())),
        ];
        tracing::info!(cluster, node, revision, "joined the cluster");
        Ok(Self {
            shared,
            tasks: Mutex::new(tasks),
        })
    }

    /// This node's entry.
    pub fn me(&self) -> Member {
        lock(&self.shared.me).clone()
    }

    /// Whether this node may serve now: its last renewal's lease (less the margin) has
    /// not run out on its own clock, and nobody else wrote its entry.
    pub fn serving(&self) -> bool {
        !self.shared.deposed.load(Ordering::Acquire)
            && Instant::now() < *lock(&self.shared.serves_until)
    }

    /// How many times this node's lease ran out and was renewed again: what a node
    /// served under an earlier count must be confirmed before it is served again.
    pub fn lapses(&self) -> u64 {
        self.shared.lapses.load(Ordering::Acquire)
    }

    /// Whether someone else wrote this node's entry (it will not serve again).
    pub fn deposed(&self) -> bool {
        self.shared.deposed.load(Ordering::Acquire)
    }

    /// The members this node counts alive, by name: those whose entry its reads saw
    /// change within a lease and a margin of its last successful read, and itself while
    /// it serves.
    pub fn live(&self) -> Vec<Member> {
        let dead_after = self.shared.config.lease + self.shared.config.margin;
        let read_at = *lock(&self.shared.read_at);
        let me = self.me();
        let mut live: BTreeMap<String, Member> = read(&self.shared.seen)
            .iter()
            .filter(|(node, s)| {
                **node != me.node
                    && s.present
                    && read_at.saturating_duration_since(s.changed_at) < dead_after
            })
            .filter_map(|(node, s)| Some((node.clone(), s.member.clone()?)))
            .collect();
        if self.serving() {
            live.insert(me.node.clone(), me);
        }
        live.into_values().collect()
    }

    /// Whether this node counts `node` dead: its entry has not changed for a lease and a
    /// margin across this node's successful reads (itself: once it stops serving). A
    /// node it has never read is alive from now on, until it ages out like any other:
    /// it may have joined and claimed shards since this node's last read.
    pub fn counts_dead(&self, node: &str) -> bool {
        if node == lock(&self.shared.me).node {
            return !self.serving();
        }
        let dead_after = self.shared.config.lease + self.shared.config.margin;
        let read_at = *lock(&self.shared.read_at);
        if let Some(s) = read(&self.shared.seen).get(node) {
            return read_at.saturating_duration_since(s.changed_at) >= dead_after;
        }
        let mut seen = self.shared.seen.write().unwrap_or_else(|e| e.into_inner());
        seen.entry(node.to_owned()).or_insert_with(|| Seen {
            revision: 0,
            changed_at: Instant::now(),
            member: None,
            present: false,
        });
        false
    }

    /// Marks this node as draining (written with its next renewal).
    pub fn drain(&self) {
        lock(&self.shared.me).state = MemberState::Draining;
    }

    /// Leaves cleanly: stops renewing and serving, and removes this node's entry (if it
    /// is still this node's), so the others see it gone at their next read.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        lock(&self.tasks).drain(..).for_each(|t| t.abort());
        // Serving ends with the renewals.
        *lock(&self.shared.serves_until) = Instant::now();
        let mut revision = self.shared.revision.load(Ordering::Acquire);
        let (node, incarnation) = {
            let me = lock(&self.shared.me);
            (me.node.clone(), me.incarnation)
        };
        for _ in 0..3 {
            match self
                .shared
                .store
                .delete_expect_revision(&node, Some(revision))
                .await
            {
                Ok(()) => return Ok(()),
                // A renewal on its way when the renewals stopped landed after all: the
                // entry is still this incarnation's, at a later revision.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    match self.shared.store.entry(&node).await.map_err(unavailable)? {
                        Some(entry)
                            if entry.operation == kv::Operation::Put
                                && serde_json::from_slice::<Member>(&entry.value)
                                    .is_ok_and(|m| m.incarnation == incarnation) =>
                        {
                            revision = entry.revision;
                        }
                        // Gone, or another writer's: nothing of this node's to remove.
                        _ => return Ok(()),
                    }
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(ClusterError::Unavailable(
            "this node's membership entry kept changing while it left".into(),
        ))
    }
}

fn encode(member: &Member) -> Result<bytes::Bytes, ClusterError> {
    serde_json::to_vec(member)
        .map(Into::into)
        .map_err(|e| ClusterError::Unavailable(format!("encoding the member entry: {e}")))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Takes over an existing entry for `node` once it stayed unchanged for a lease and a
/// margin; returns the new revision and when the winning write was sent.
async fn take_over(
    store: &kv::Store,
    node: &str,
    value: bytes::Bytes,
    config: &MembershipConfig,
) -> Result<(u64, Instant), ClusterError> {
    let revision_now = || async {
        store
            .entry(node)
            .await
            .map_err(unavailable)
            .map(|e| e.map(|e| e.revision))
    };
    let first = revision_now().await?;
    let quiet_until = Instant::now() + config.lease + config.margin;
    while Instant::now() < quiet_until {
        tokio::time::sleep(config.renew_every).await;
        if revision_now().await? != first {
            return Err(ClusterError::DuplicateNode(node.to_owned()));
        }
    }
    let sent = Instant::now();
    let written = match first {
        Some(revision) => store.update(node, value, revision).await,
        None => store.update(node, value, 0).await,
    };
    match written {
        Ok(revision) => Ok((revision, sent)),
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
            Err(ClusterError::DuplicateNode(node.to_owned()))
        }
        Err(e) => Err(unavailable(e)),
    }
}

/// Renews this node's entry every period. A renewal that fails leaves the lease to run
/// out; one that finds another revision than this node's deposes it.
async fn renew_loop(shared: Arc<Shared>) {
    let config = shared.config;
    let mut tick = tokio::time::interval(config.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let (node, value) = {
            let me = lock(&shared.me);
            (me.node.clone(), encode(&me))
        };
        let Ok(value) = value else { continue };
        let last = shared.revision.load(Ordering::Acquire);
        let sent = Instant::now();
        let renewed =
            tokio::time::timeout(config.renew_every, shared.store.update(&node, value, last)).await;
        match renewed {
            Ok(Ok(revision)) => {
                shared.revision.store(revision, Ordering::Release);
                let mut until = lock(&shared.serves_until);
                if sent >= *until {
                    // The lease had run out (a pause, a partition): what was served
                    // before must be checked again before it is served again.
                    shared.lapses.fetch_add(1, Ordering::AcqRel);
                }
                *until = (*until).max(sent + config.lease - config.margin);
            }
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // A renewal that timed out here may have landed: then the entry is still
                // this incarnation's, and the next renewal goes on from its revision.
                let incarnation = lock(&shared.me).incarnation;
                match shared.store.entry(&node).await {
                    Ok(Some(entry))
                        if entry.operation == kv::Operation::Put
                            && serde_json::from_slice::<Member>(&entry.value)
                                .is_ok_and(|m| m.incarnation == incarnation) =>
                    {
                        shared.revision.store(entry.revision, Ordering::Release);
                    }
                    Ok(_) => {
                        shared.deposed.store(true, Ordering::Release);
                        tracing::warn!(node, "another writer took this node's entry: deposed");
                        return;
                    }
                    Err(e) => tracing::warn!(node, error = %e, "reading this node's entry failed"),
                }
            }
            Ok(Err(e)) => tracing::warn!(node, error = %e, "membership renewal failed"),
            Err(_) => tracing::warn!(node, "membership renewal timed out"),
        }
    }
}

/// Reads the members every period.
async fn observe_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(shared.config.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        observe(&shared).await;
    }
}

/// One read of the bucket: an entry whose revision changed is noted as changed when the
/// read ended; an entry that is gone is forgotten. A read that fails or takes longer
/// than two periods changes nothing, not even the members' age: unchanged entries count
/// towards dead only across reads that succeeded.
async fn observe(shared: &Shared) {
    let began = Instant::now();
    let read = tokio::time::timeout(shared.config.renew_every * 2, read_entries(&shared.store));
    let Ok(Some(current)) = read.await else {
        tracing::debug!("reading the members failed or timed out");
        return;
    };
    note(shared, current);
    let mut read_at = lock(&shared.read_at);
    *read_at = (*read_at).max(began);
}

/// Every member entry in the bucket, with its revision; `None` if a read failed.
async fn read_entries(store: &kv::Store) -> Option<BTreeMap<String, (u64, Member)>> {
    let mut keys = store.keys().await.ok()?;
    let mut current = BTreeMap::new();
    while let Some(key) = keys.next().await {
        let key = key.ok()?;
        match store.entry(&key).await.ok()? {
            Some(entry) if entry.operation == kv::Operation::Put => {
                if let Ok(member) = serde_json::from_slice::<Member>(&entry.value) {
                    current.insert(key, (entry.revision, member));
                }
            }
            _ => {}
        }
    }
    Some(current)
}

/// Notes one read's entries (see [`observe`]). Entries that are gone are kept, absent,
/// until they are long dead.
fn note(shared: &Shared, current: BTreeMap<String, (u64, Member)>) {
    let now = Instant::now();
    let forget_after = (shared.config.lease + shared.config.margin) * 10;
    let mut seen = shared.seen.write().unwrap_or_else(|e| e.into_inner());
    seen.retain(|key, s| {
        s.present = current.contains_key(key);
        s.present || now.duration_since(s.changed_at) < forget_after
    });
    for (key, (revision, member)) in current {
        match seen.get_mut(&key) {
            Some(s) if s.revision == revision => {}
            Some(s) => {
                s.revision = revision;
                s.changed_at = now;
                s.member = Some(member);
            }
            None => {
                seen.insert(
                    key,
                    Seen {
                        revision,
                        changed_at: now,
                        member: Some(member),
                        present: true,
                    },
                );
            }
        }
    }
}
