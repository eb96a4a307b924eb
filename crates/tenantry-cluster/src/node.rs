//! A node's part in the cluster: its membership, the ownership rounds, and the fences of
//! the shards it serves.
//!
//! Every round period the node runs an ownership round over the members it counts alive.
//! It raises the fence epoch of every shard it claimed before serving it (so a former
//! owner's writes fail from then on), hands off the shards the plan moves away (the
//! application's hand-off stops serving them first, then the fence and the ownership
//! are released), and serves nothing while its own lease has run out.

use crate::{ClusterError, Membership, MembershipConfig, Ownership};
use futures::future::BoxFuture;
use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tenantry::cluster::{ShardCount, ShardId};
use tenantry::{Admission, Identity};
use tenantry_postgres::{PgStore, ShardOf};
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
}

impl Default for NodeConfig {
    /// Rounds every second, moving at most 64 shards (of 1,024) a round.
    fn default() -> Self {
        Self {
            membership: MembershipConfig::default(),
            round_every: Duration::from_secs(1),
            max_moves: 64,
        }
    }
}

/// This process as a node of a cluster.
pub struct ClusterNode {
    membership: Arc<Membership>,
    serving: Arc<RwLock<BTreeSet<ShardId>>>,
    task: JoinHandle<()>,
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ClusterNode {
    /// Joins `cluster` as `node` and starts the rounds. `store` is a fenced handle of the
    /// cluster's PostgreSQL store for this node (`PgStore::fenced`).
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        client: async_nats::Client,
        cluster: &str,
        node: &str,
        address: &str,
        count: ShardCount,
        store: PgStore,
        hand_off: HandOff,
        config: NodeConfig,
    ) -> Result<Self, ClusterError> {
        let ownership = Ownership::open(client.clone(), cluster, count).await?;
        let membership =
            Arc::new(Membership::join(client, cluster, node, address, config.membership).await?);
        let serving = Arc::new(RwLock::new(BTreeSet::new()));
        let rounds = Rounds {
            me: node.to_owned(),
            membership: membership.clone(),
            ownership,
            store,
            hand_off,
            serving: serving.clone(),
            config,
        };
        let task = tokio::spawn(rounds.run());
        Ok(Self {
            membership,
            serving,
            task,
        })
    }

    /// Whether this node serves `shard` now: it owns it, took its fence, and its lease
    /// holds.
    pub fn serves(&self, shard: ShardId) -> bool {
        self.membership.serving()
            && self
                .serving
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&shard)
    }

    /// The shards this node serves now.
    pub fn served(&self) -> Vec<ShardId> {
        if !self.membership.serving() {
            return Vec::new();
        }
        snapshot(&self.serving)
    }

    /// This node's membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// What the node's runtime may start (`Runtime::set_admission`): the identities
    /// whose shard (`shard_of`) this node serves now, and none while its lease has run
    /// out. Others get `ServedElsewhere`.
    pub fn admission(&self, shard_of: ShardOf) -> Admission {
        let (membership, serving) = (self.membership.clone(), self.serving.clone());
        Arc::new(move |identity: &Identity| {
            membership.serving()
                && serving
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(&shard_of(identity))
        })
    }
}

struct Rounds {
    me: String,
    membership: Arc<Membership>,
    ownership: Ownership,
    store: PgStore,
    hand_off: HandOff,
    serving: Arc<RwLock<BTreeSet<ShardId>>>,
    config: NodeConfig,
}

impl Rounds {
    async fn run(self) {
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
        let live: Vec<String> = self.membership.live().into_iter().map(|m| m.node).collect();
        let round = self
            .ownership
            .round(&self.me, &live, self.config.max_moves)
            .await?;
        // Serve what the record gives this node: raise the fence first.
        let served = self.served();
        let to_take = round
            .owned
            .iter()
            .filter(|s| !served.contains(s) && !round.hand_off.contains(s));
        for shard in to_take {
            match self.store.take_shard(*shard).await {
                Ok(_) => {
                    self.serving
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(*shard);
                }
                Err(e) => {
                    tracing::warn!(node = %self.me, %shard, error = %e, "taking a shard's fence failed")
                }
            }
        }
        // Shards the record no longer gives this node (taken while it was counted dead).
        let lost: Vec<ShardId> = self
            .served()
            .into_iter()
            .filter(|s| !round.owned.contains(s))
            .collect();
        self.stop_serving(lost).await;
        if !round.hand_off.is_empty() {
            self.stop_serving(round.hand_off.clone()).await;
            self.ownership.release(&self.me, &round.hand_off).await?;
        }
        Ok(())
    }

    fn served(&self) -> Vec<ShardId> {
        snapshot(&self.serving)
    }

    /// Hands `shards` off: the application stops serving them, then their fences go.
    async fn stop_serving(&self, shards: Vec<ShardId>) {
        if shards.is_empty() {
            return;
        }
        (self.hand_off)(shards.clone()).await;
        let mut serving = self.serving.write().unwrap_or_else(|e| e.into_inner());
        for shard in shards {
            serving.remove(&shard);
            let _ = self.store.release_shard(shard);
        }
    }
}

/// The shards in `serving` now.
fn snapshot(serving: &RwLock<BTreeSet<ShardId>>) -> Vec<ShardId> {
    let serving = serving.read().unwrap_or_else(|e| e.into_inner());
    serving.iter().copied().collect()
}
