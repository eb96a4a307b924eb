//! A node's part in the cluster: its membership, the ownership rounds, and the fences of
//! the shards it serves.
//!
//! Every round period the node runs an ownership round over the members it counts alive
//! and serving (a draining member gets nothing). It raises the fence epoch of every
//! shard it claimed before serving it (so a former owner's writes fail from then on),
//! hands off the shards the plan moves away (it stops admitting and answering calls for
//! them, the application's hand-off hibernates what lives there, then the fence and the
//! ownership are released), and serves nothing while its own lease has run out.
//!
//! [`ClusterNode::serve`] runs a [`Runtime`] as the node: the runtime admits only the
//! identities of the served shards, forwards the others' calls to their owners, answers
//! the calls forwarded here, and hibernates a shard's instances when it is handed off.
//!
//! Each round also brings the node's [`ShardMap`] up to the pins of the record it read,
//! before it serves what it claimed: a tenant whose placement changes is refused at
//! once, the node hibernates its instances of it while the fences they were activated
//! under still hold, then routes by the new pins and says it let go (see `pinning.rs`).

use crate::forward::{CallServer, Forwarder};
use crate::{
    ClusterError, MemberState, Membership, MembershipConfig, Ownership, PinRequest, Round,
    TenantPin,
};
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tenantry::cluster::{ShardCount, ShardId, ShardMap};
use tenantry::{Admission, Identity, Runtime};
use tenantry_postgres::{PgStore, ShardOf};
use tokio::time::Instant;

use tokio::task::JoinHandle;

/// Stops serving the given shards (hibernates what lives there), before the node gives
/// them up.
pub type HandOff = Arc<dyn Fn(Vec<ShardId>) -> BoxFuture<'static, ()> + Send + Sync>;

/// A node's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeConfig {
    /// The membership leases.
    pub membership: MembershipConfig,
    /// How often the node runs an ownership round.
    pub round_every: Duration,
    /// The most shards a round moves between live members.
    pub max_moves: usize,
    /// How long the members a node counts alive must stay the same before its rounds
    /// move shards between them (a flapping member causes no hand-off storm). Shards
    /// nobody live owns are claimed at once.
    pub settle: Duration,
}

impl Default for NodeConfig {
    /// Rounds every second, moving at most 64 shards (of 1,024) a round once the members
    /// stayed the same for two seconds.
    fn default() -> Self {
        Self {
            membership: MembershipConfig::default(),
            round_every: Duration::from_secs(1),
            max_moves: 64,
            settle: Duration::from_secs(2),
        }
    }
}

/// How long a leaving node keeps turning calls back after it gave its shards up (the
/// calls on their way to it then find the new owners).
const LEAVE_GRACE: Duration = Duration::from_secs(1);
/// How long a leaving node then waits for the calls it took to be answered.
const LEAVE_ANSWERS_WAIT: Duration = Duration::from_secs(10);

/// The shards a node serves, with the fence epoch it took for each.
type Served = Arc<RwLock<BTreeMap<ShardId, Held>>>;

/// A shard a node serves: the fence epoch it took, and the lease it confirmed it under
/// ([`Membership::lapses`]): once the lease ran out, the shard is not served again until
/// a round has read the owners afresh.
#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: u64,
    lease: u64,
}

/// Whether `shard` is served now: held, confirmed under the current lease, which holds.
fn admits(
    membership: &Membership,
    serving: &RwLock<BTreeMap<ShardId, Held>>,
    shard: ShardId,
) -> bool {
    membership.serving()
        && read(serving)
            .get(&shard)
            .is_some_and(|h| h.lease == membership.lapses())
}

/// This process as a node of a cluster.
pub struct ClusterNode {
    me: String,
    /// Relays bus events between the nodes (nodes that run a runtime).
    _events: Option<crate::events::Relaying>,
    rounds: Arc<Rounds>,
    task: JoinHandle<()>,
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where a node is and what it holds, for an admin view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// This node's name.
    pub node: String,
    /// Whether its lease holds (it may serve).
    pub serving: bool,
    /// The members it counts alive.
    pub members: Vec<crate::Member>,
    /// The shards it serves and the fence epoch it took for each.
    pub shards: BTreeMap<u32, u64>,
    /// The owner of every shard, as the ownership record names it (shard number order:
    /// the shared shards, then the pinned tenants' ranges).
    pub owners: Vec<Option<String>>,
    /// The pinned tenants.
    pub pins: Vec<TenantPin>,
}

/// What a node joins, as whom, and how it runs: what [`ClusterNode::start`] and
/// [`ClusterNode::serve`] share.
#[derive(Clone)]
pub struct Join {
    /// The NATS connection.
    pub client: async_nats::Client,
    /// The cluster's name (its buckets and subjects).
    pub cluster: String,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// Where other nodes and operators reach it (its HTTP address).
    pub address: String,
    /// The cluster's shard count, fixed when it is created.
    pub count: ShardCount,
    /// Leases and rounds.
    pub config: NodeConfig,
}

impl ClusterNode {
    /// Joins and starts the rounds. `store` is a fenced handle of the cluster's
    /// PostgreSQL store for this node (`PgStore::fenced`); `hand_off` stops serving
    /// shards before the node gives them up.
    pub async fn start(
        join: Join,
        store: PgStore,
        hand_off: HandOff,
    ) -> Result<Self, ClusterError> {
        let rounds = Self::launch(join, store, hand_off, None).await?;
        Ok(Self::run(rounds, None))
    }

    /// Opens the ownership record and joins the membership: the rounds to run.
    async fn launch(
        join: Join,
        store: PgStore,
        hand_off: HandOff,
        hosted: Option<Hosted>,
    ) -> Result<Arc<Rounds>, ClusterError> {
        let Join {
            client,
            cluster,
            node,
            address,
            count,
            config,
        } = join;
        let ownership = Ownership::open(client.clone(), &cluster, count).await?;
        let membership =
            Membership::join(client, &cluster, &node, &address, config.membership).await?;
        Ok(Arc::new(Rounds {
            me: node,
            membership: Arc::new(membership),
            ownership,
            store,
            hand_off,
            hosted,
            calls: std::sync::OnceLock::new(),
            serving: Arc::default(),
            config,
            members: Mutex::new((Vec::new(), Instant::now())),
        }))
    }

    /// Starts the rounds.
    fn run(rounds: Arc<Rounds>, events: Option<crate::events::Relaying>) -> Self {
        let task = tokio::spawn(rounds.clone().run());
        Self {
            me: rounds.me.clone(),
            _events: events,
            rounds,
            task,
        }
    }

    /// Runs `runtime` as a node: joins as [`ClusterNode::start`] does, then the runtime
    /// admits only the identities of the shards this node serves (by `map`, which
    /// `store`'s fences must use too: see [`shard_of`]), forwards calls for the others
    /// to their owners over NATS, answers the calls forwarded here, relays bus events to
    /// and from the other nodes, hibernates the instances of a shard when it is handed
    /// off, and keeps `map` up to the cluster's pins. `store` must be the runtime's store.
    pub async fn serve(
        join: Join,
        store: PgStore,
        runtime: &Runtime,
        map: Arc<ShardMap>,
    ) -> Result<Self, ClusterError> {
        let shard_of = shard_of(&map);
        let hand_off: HandOff = {
            let (runtime, shard_of) = (runtime.clone(), shard_of.clone());
            Arc::new(move |shards: Vec<ShardId>| {
                let (runtime, shard_of) = (runtime.clone(), shard_of.clone());
                Box::pin(async move {
                    let report = runtime
                        .stop_where(&|id: &Identity| {
                            shard_of(id).is_some_and(|s| shards.contains(&s))
                        })
                        .await;
                    for e in report.errors {
                        tracing::warn!(error = %e, "hibernating a handed-off instance failed");
                    }
                })
            })
        };
        let (client, cluster, node) =
            (join.client.clone(), join.cluster.clone(), join.node.clone());
        // Nothing sharded is served until the node has joined and knows its shards.
        let refuse_sharded = shard_of.clone();
        runtime.set_admission(Some(Arc::new(move |id: &Identity| {
            refuse_sharded(id).is_none()
        })));
        let hosted = Hosted {
            runtime: runtime.clone(),
            map: map.clone(),
        };
        let rounds = Self::launch(join, store, hand_off, Some(hosted)).await?;
        // Forward by the pins in force from the start, not only after the first round.
        map.set_pins(rounds.ownership.view().await?);
        runtime.set_admission(Some(admission(&rounds, map)));
        // Only then take calls: a process that failed to join (a duplicate name) never
        // answers another node's calls.
        let calls = CallServer::start(client.clone(), &cluster, &node, runtime.clone()).await?;
        let _ = rounds.calls.set(calls);
        let ownership = rounds.ownership.clone();
        runtime.add_transport(Forwarder::new(
            client.clone(),
            &cluster,
            shard_of,
            ownership,
        ));
        let events = crate::events::relay(client, &cluster, &node, runtime).await?;
        Ok(Self::run(rounds, Some(events)))
    }

    /// Whether this node serves `shard` now: it owns it, took its fence, and its lease
    /// holds.
    pub fn serves(&self, shard: ShardId) -> bool {
        admits(&self.rounds.membership, &self.rounds.serving, shard)
    }

    /// Whether this node's runtime admits `identity` now (what its admission answers);
    /// false on a node that runs no runtime.
    pub fn admits(&self, identity: &Identity) -> bool {
        match &self.rounds.hosted {
            Some(hosted) => admits_identity(
                &self.rounds.membership,
                &self.rounds.serving,
                &hosted.map,
                identity,
            ),
            None => false,
        }
    }

    /// The shards this node serves now.
    pub fn served(&self) -> Vec<ShardId> {
        if !self.rounds.membership.serving() {
            return Vec::new();
        }
        self.rounds.served()
    }

    /// This node's membership.
    pub fn membership(&self) -> &Membership {
        &self.rounds.membership
    }

    /// What the node's runtime may serve (`Runtime::set_admission`): the identities
    /// whose shard (by `map`) this node serves now, none of a tenant whose placement is
    /// changing, and none at all while its lease has run out (others get
    /// `ServedElsewhere`); identities of no shard always.
    pub fn admission(&self, map: Arc<ShardMap>) -> Admission {
        admission(&self.rounds, map)
    }

    /// Pins the tenant `partition` as `request` says (see [`Ownership::pin`]); the
    /// members this node counts alive and serving decide whether a named node is live.
    pub async fn pin(
        &self,
        partition: &str,
        request: &PinRequest,
    ) -> Result<TenantPin, ClusterError> {
        let live = serving_members(&self.rounds.membership);
        self.rounds.ownership.pin(partition, request, &live).await
    }

    /// Unpins the tenant `partition` (see [`Ownership::unpin`]).
    pub async fn unpin(&self, partition: &str) -> Result<TenantPin, ClusterError> {
        self.rounds.ownership.unpin(partition).await
    }

    /// The pin of the tenant `partition`, if it is pinned.
    pub async fn pin_of(&self, partition: &str) -> Result<Option<TenantPin>, ClusterError> {
        self.rounds.ownership.pin_of(partition).await
    }

    /// The node the ownership record names as the owner of `identity`'s shard, read
    /// afresh; `None` for an identity of no shard, one whose shard has no owner now, and
    /// on a node that runs no runtime.
    pub async fn owner_of(&self, identity: &Identity) -> Result<Option<String>, ClusterError> {
        let Some(shard) = self
            .rounds
            .hosted
            .as_ref()
            .and_then(|h| h.map.shard(identity))
        else {
            return Ok(None);
        };
        let owners = self.rounds.ownership.owners().await?;
        Ok(owners.get(shard.0 as usize).cloned().flatten())
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.me
    }

    /// Members, owners and this node's shards with their epochs.
    pub async fn status(&self) -> Result<NodeStatus, ClusterError> {
        let (owners, pins) = self.rounds.ownership.snapshot().await?;
        let shards = read(&self.rounds.serving)
            .iter()
            .map(|(s, h)| (s.0, h.epoch))
            .collect();
        Ok(NodeStatus {
            node: self.me.clone(),
            serving: self.rounds.membership.serving(),
            members: self.rounds.membership.live(),
            shards,
            owners,
            pins,
        })
    }

    /// Leaves the cluster cleanly (SIGTERM, a rolling restart): stops the rounds, marks
    /// the node draining, hands every shard off (calls for them go to the next owner,
    /// which claims them once this node is gone), and removes its membership.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        self.task.abort();
        let rounds = &self.rounds;
        rounds.membership.drain();
        let served = rounds.served();
        rounds.stop_serving(served.clone()).await;
        // Release what the record gives this node; if it cannot be read, what it served.
        let released = match rounds.ownership.owned(&rounds.me).await {
            Ok(owned) => rounds.ownership.release(&rounds.me, &owned).await,
            Err(e) => rounds
                .ownership
                .release(&rounds.me, &served)
                .await
                .and(Err(e)),
        };
        let left = rounds.membership.leave().await;
        if let Some(calls) = rounds.calls.get() {
            calls.stop(LEAVE_GRACE, LEAVE_ANSWERS_WAIT).await;
        }
        released.and(left)
    }
}

/// The function a fenced store handle maps records to shards by, for a node that routes
/// by `map` (`PgStore::fenced`).
pub fn shard_of(map: &Arc<ShardMap>) -> ShardOf {
    let map = map.clone();
    Arc::new(move |identity| map.shard(identity))
}

fn admission(rounds: &Arc<Rounds>, map: Arc<ShardMap>) -> Admission {
    let (membership, serving) = (rounds.membership.clone(), rounds.serving.clone());
    Arc::new(move |identity: &Identity| admits_identity(&membership, &serving, &map, identity))
}

/// Whether `identity` is served now: what no shard owns (components, the host's
/// records) always; otherwise its shard is served and its tenant is not moving.
fn admits_identity(
    membership: &Membership,
    serving: &RwLock<BTreeMap<ShardId, Held>>,
    map: &ShardMap,
    identity: &Identity,
) -> bool {
    match map.shard(identity) {
        None => true,
        Some(shard) => admits(membership, serving, shard) && !map.is_moving(&identity.partition),
    }
}

/// The members `membership` counts alive and serving (a draining member gets nothing).
fn serving_members(membership: &Membership) -> Vec<String> {
    membership
        .live()
        .into_iter()
        .filter(|m| m.state == MemberState::Serving)
        .map(|m| m.node)
        .collect()
}

/// The runtime a node runs, and the map it routes by.
struct Hosted {
    runtime: Runtime,
    map: Arc<ShardMap>,
}

impl Hosted {
    /// Hibernates the live sharded instances of the tenants `partitions`; whether all
    /// of them did (a pass found none left, and none failed).
    async fn hibernate_tenants(&self, partitions: &[String]) -> bool {
        if partitions.is_empty() {
            return true;
        }
        let map = &self.map;
        let of_them = |id: &Identity| {
            id.partition
                .name()
                .is_some_and(|p| partitions.iter().any(|q| q == p))
                && map.shard(id).is_some()
        };
        // An activation admitted just before the tenant was refused may finish after a
        // pass: a later pass finds it.
        for _ in 0..3 {
            let report = self.runtime.stop_where(&of_them).await;
            let failed = !report.errors.is_empty();
            for e in report.errors {
                tracing::warn!(error = %e, "hibernating an instance of a tenant whose placement changed failed");
            }
            if failed {
                return false;
            }
            if report.stopped == 0 {
                return true;
            }
        }
        false
    }
}

struct Rounds {
    me: String,
    membership: Arc<Membership>,
    ownership: Ownership,
    store: PgStore,
    hand_off: HandOff,
    /// The runtime and its map (nodes that run a runtime).
    hosted: Option<Hosted>,
    /// Answers the calls forwarded to this node (nodes that run a runtime).
    calls: std::sync::OnceLock<Arc<CallServer>>,
    serving: Served,
    config: NodeConfig,
    /// The members the last round planned over, and since when they were the same.
    members: Mutex<(Vec<String>, Instant)>,
}

impl Rounds {
    async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.round_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.round().await {
                tracing::warn!(node = %self.me, error = %e, "ownership round failed");
            }
        }
    }

    async fn round(&self) -> Result<(), ClusterError> {
        if !self.membership.serving() {
            // Out of lease (or deposed): serve nothing, write nothing.
            self.stop_serving(self.served()).await;
            return Ok(());
        }
        let lease = self.membership.lapses();
        // A draining member is handing its shards off: it gets none.
        let live = serving_members(&self.membership);
        let round = self
            .ownership
            .round_with(
                &self.me,
                &live,
                |owner| self.membership.counts_dead(owner),
                self.moves_now(&live),
            )
            .await?;
        if !round.claimed.is_empty() || !round.hand_off.is_empty() {
            tracing::debug!(node = %self.me, ?live, claimed = ?round.claimed, hand_off = ?round.hand_off, "ownership round");
        }
        // Route by the record's pins before serving anything it gives this node.
        self.follow_pins(&round).await;
        // Serve what the record gives this node: raise the fence first.
        // A shard claimed now is taken again even if this node still serves it from
        // before (a pin's range freed and given out again between two rounds).
        let served = self.served();
        let to_take = round.owned.iter().filter(|s| {
            (!served.contains(s) || round.claimed.contains(s)) && !round.hand_off.contains(s)
        });
        let mut taken = Vec::new();
        for shard in to_take {
            // A node paused since the round began must not raise an epoch late.
            if !self.membership.serving() {
                break;
            }
            match self.store.take_shard(*shard).await {
                Ok(epoch) => {
                    self.start_serving(*shard, epoch, lease);
                    taken.push(*shard);
                }
                Err(e) => {
                    tracing::warn!(node = %self.me, %shard, error = %e, "taking a shard's fence failed")
                }
            }
        }
        // Moves that wait for the fences of shards taken from nodes counted dead.
        if !taken.is_empty() && !round.pins.moving_tenants().is_empty() {
            if let Err(e) = self.ownership.fenced(&taken).await {
                tracing::warn!(node = %self.me, error = %e, "noting raised fences failed; moves waiting for them wait a round longer");
            }
        }
        // What the record, read under this lease, still gives this node is confirmed.
        {
            let mut serving = write(&self.serving);
            for shard in &round.owned {
                if let Some(held) = serving.get_mut(shard) {
                    held.lease = lease;
                }
            }
        }
        // Shards the record no longer gives this node (taken while it was counted dead).
        let lost: Vec<ShardId> = self
            .served()
            .into_iter()
            .filter(|s| !round.owned.contains(s))
            .collect();
        // A pin's range that was removed is not a loss.
        let in_force = |s: &ShardId| {
            s.0 < self.ownership.count().get()
                || round
                    .pins
                    .ranges()
                    .values()
                    .any(|r| (r.first..r.first + r.count.get()).contains(&s.0))
        };
        if lost.iter().any(in_force) {
            tracing::warn!(node = %self.me, ?lost, "shards taken while this node was counted dead");
        }
        self.stop_serving(lost).await;
        if !round.hand_off.is_empty() {
            self.stop_serving(round.hand_off.clone()).await;
            self.ownership.release(&self.me, &round.hand_off).await?;
        }
        Ok(())
    }

    fn served(&self) -> Vec<ShardId> {
        read(&self.serving).keys().copied().collect()
    }

    /// Brings the map up to `round`'s pins: refuses the tenants that move, hibernates
    /// this node's instances of those it must let go of (while the fences they were
    /// activated under hold), switches the map, hibernates what is left of tenants whose
    /// range changed without this node (it was counted dead: their writes are fenced),
    /// and says it let go.
    ///
    /// When an instance it must let go of does not hibernate, the node keeps the old
    /// ranges (and refuses the tenant) and says nothing: the next round tries again.
    /// A node that runs no runtime ([`ClusterNode::start`]) hosts nothing and says at
    /// once that it let go.
    async fn follow_pins(&self, round: &Round) {
        if let Some(hosted) = &self.hosted {
            let now = hosted.map.pins();
            if *now != round.pins || !round.let_go.is_empty() {
                let changed = now.changed(&round.pins);
                let refused = (*now)
                    .clone()
                    .with_moving(round.pins.moving_tenants())
                    .with_moving(&changed);
                hosted.map.set_pins(refused);
                if !hosted.hibernate_tenants(&round.let_go).await {
                    tracing::warn!(node = %self.me, tenants = ?round.let_go, "instances of moving tenants did not all hibernate; trying again next round");
                    return;
                }
                hosted.map.set_pins(round.pins.clone());
                let leftovers: Vec<String> = changed
                    .into_iter()
                    .filter(|p| !round.let_go.contains(p))
                    .collect();
                // Their writes meet the new shards' fences: failures are expected.
                hosted.hibernate_tenants(&leftovers).await;
            }
        }
        if !round.let_go.is_empty() {
            if let Err(e) = self.ownership.let_go(&self.me, &round.let_go).await {
                tracing::warn!(node = %self.me, error = %e, "saying this node let go of moving tenants failed; the next round says it again");
            }
        }
    }

    /// How many shards this round may move between `live` members: none until they
    /// have stayed the same for the settle time.
    fn moves_now(&self, live: &[String]) -> usize {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if members.0 != live {
            *members = (live.to_vec(), Instant::now());
        }
        if members.1.elapsed() >= self.config.settle {
            self.config.max_moves
        } else {
            0
        }
    }

    /// Serves `shard`, whose fence this node took at `epoch`: admits its identities (the
    /// calls forwarded for them are admitted with them).
    fn start_serving(&self, shard: ShardId, epoch: u64, lease: u64) {
        write(&self.serving).insert(shard, Held { epoch, lease });
    }

    /// Hands `shards` off: the node stops admitting calls for them (forwarded ones are
    /// turned back), the application hibernates what lives there (still under the
    /// fence), then the fences go.
    async fn stop_serving(&self, shards: Vec<ShardId>) {
        if shards.is_empty() {
            return;
        }
        {
            let mut serving = write(&self.serving);
            for shard in &shards {
                serving.remove(shard);
            }
        }
        (self.hand_off)(shards.clone()).await;
        for shard in shards {
            let _ = self.store.release_shard(shard);
        }
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
