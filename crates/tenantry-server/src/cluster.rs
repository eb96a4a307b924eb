//! Cluster mode in the server: the node this process runs as.
//!
//! The runtime writes through a fenced handle of the PostgreSQL store, whose records map
//! to shards by the application's keyed managers ([`ShardMap`]: each manager routes by
//! its `[managers.<name>] routing`, `pod` by default); component instances and the
//! gateway's own records belong to no shard, so every node serves them. Once the server
//! listens it joins the cluster ([`ClusterPart::join`]): from then on its runtime admits
//! only the shards it serves and forwards the other calls to their owners. At shutdown
//! it hands every shard off before the runtime hibernates what is left
//! ([`ClusterPart::leave`]).
//!
//! The tenant registry (onboardings, offboardings, admin config writes) is one record in
//! the store that every node reads at start. A node that changes it announces it on
//! `tenantry.<cluster>.registry`; every node then reads it again and applies what
//! changed ([`App::sync_registry`](crate::App::sync_registry)), and reads it every few
//! seconds anyway, in case an announcement was missed. Before a purge deletes a tenant's
//! data, the node asks every other member to apply the registry and waits for their
//! answers ([`ClusterPart::sync_everywhere`]), so no node still serving the tenant
//! writes after the delete.

use crate::application::Application;
use crate::settings::{ClusterSettings, ManagerSection};
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tenantry::Runtime;
use tenantry::cluster::{Routing, ShardMap};
use tenantry_cluster::{ClusterNode, Join, MembershipConfig, NodeConfig, shard_of};
use tenantry_postgres::PgStore;

/// This server as a cluster node.
pub struct ClusterPart {
    /// The resolved `[cluster]` settings.
    pub settings: ClusterSettings,
    store: PgStore,
    map: Arc<ShardMap>,
    node: OnceLock<ClusterNode>,
    client: OnceLock<tenantry_cluster::async_nats::Client>,
    /// Answers the gateway requests other nodes relay here (`relay.rs`).
    relays: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// How long a purge waits for the other nodes to apply the registry.
const SYNC_WAIT: Duration = Duration::from_secs(5);

/// How often a node reads the tenant registry again without an announcement.
const REGISTRY_EVERY: Duration = Duration::from_secs(5);

impl ClusterPart {
    /// The fenced store handle of this node over `store`, sharding the application's
    /// keyed managers as their sections say.
    pub fn new(
        settings: ClusterSettings,
        store: &PgStore,
        application: &Application,
        sections: &BTreeMap<String, ManagerSection>,
    ) -> Self {
        let mut map = ShardMap::new(settings.shards);
        for manager in application.keyed_managers() {
            let routing = sections
                .get(manager)
                .and_then(|s| s.routing)
                .unwrap_or(Routing::Pod);
            map = map.route(manager, routing);
        }
        let map = Arc::new(map);
        let store = store.fenced(&settings.name, &settings.node, shard_of(&map));
        Self {
            settings,
            store,
            map,
            node: OnceLock::new(),
            client: OnceLock::new(),
            relays: std::sync::Mutex::default(),
        }
    }

    /// The store the runtime writes through.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// Joins the cluster, reachable at `address`, and runs `runtime` as the node.
    pub async fn join(&self, runtime: &Runtime, address: &str) -> anyhow::Result<()> {
        let s = &self.settings;
        let client = tenantry_cluster::async_nats::connect(&s.nats_url)
            .await
            .with_context(|| format!("connecting to NATS at {}", s.nats_url))?;
        let quarter = s.lease / 4;
        let config = NodeConfig {
            membership: MembershipConfig {
                lease: s.lease,
                margin: quarter,
                renew_every: quarter,
            },
            round_every: quarter.max(Duration::from_millis(100)),
            settle: quarter * 2,
            ..NodeConfig::default()
        };
        let _ = self.client.set(client.clone());
        let join = Join {
            client,
            cluster: s.name.clone(),
            node: s.node.clone(),
            address: address.to_owned(),
            count: s.shards,
            config,
        };
        let node = ClusterNode::serve(join, self.store.clone(), runtime, self.map.clone())
            .await
            .with_context(|| format!("joining cluster {:?} as {:?}", s.name, s.node))?;
        let _ = self.node.set(node);
        Ok(())
    }

    fn registry_subject(&self) -> String {
        format!("tenantry.{}.registry", self.settings.name)
    }

    /// Tells the other nodes that the tenant registry changed.
    pub fn announce_registry(&self) {
        if let Some(client) = self.client.get() {
            let (client, subject) = (client.clone(), self.registry_subject());
            tokio::spawn(async move {
                if let Err(e) = client.publish(subject, Default::default()).await {
                    tracing::warn!(error = %e, "announcing a registry change failed; the others read it within seconds anyway");
                }
            });
        }
    }

    /// Keeps `app` up to the tenant registry: on every announcement, and every few
    /// seconds. Ends with the app.
    pub async fn follow_registry(&self, app: std::sync::Weak<crate::App>) -> anyhow::Result<()> {
        let client = self
            .client
            .get()
            .context("the node has not joined")?
            .clone();
        let mut announced = client.subscribe(self.registry_subject()).await?;
        let mut asked = client
            .subscribe(self.sync_subject(&self.settings.node))
            .await?;
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut every = tokio::time::interval(REGISTRY_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let reply_to = tokio::select! {
                    message = announced.next() => match message {
                        Some(_) => None,
                        None => return,
                    },
                    message = asked.next() => match message {
                        Some(m) => m.reply,
                        None => return,
                    },
                    _ = every.tick() => None,
                };
                let Some(app) = app.upgrade() else { return };
                if let Err(e) = app.sync_registry().await {
                    tracing::warn!(error = %e, "reading the tenant registry failed");
                    continue;
                }
                if let Some(reply_to) = reply_to {
                    let _ = client.publish(reply_to, Default::default()).await;
                }
            }
        });
        Ok(())
    }

    fn sync_subject(&self, node: &str) -> String {
        format!("tenantry.{}.registry.sync.{node}", self.settings.name)
    }

    /// Asks every other live member to apply the tenant registry now, and waits for
    /// their answers (a few seconds at most): before a purge, so that no node still
    /// serving the tenant writes after its data is deleted. Returns the members that did
    /// not answer (dead, or cut off from NATS: their lease runs out).
    pub async fn sync_everywhere(&self) -> Vec<String> {
        let (Some(client), Some(node)) = (self.client.get(), self.node.get()) else {
            return Vec::new();
        };
        let others: Vec<String> = node
            .membership()
            .live()
            .into_iter()
            .map(|m| m.node)
            .filter(|n| *n != self.settings.node)
            .collect();
        let asks = others.iter().map(|other| {
            let request = tenantry_cluster::async_nats::Request::new().timeout(Some(SYNC_WAIT));
            let subject = self.sync_subject(other);
            async move { client.send_request(subject, request).await.is_ok() }
        });
        let answered = futures::future::join_all(asks).await;
        others
            .into_iter()
            .zip(answered)
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| n)
            .collect()
    }

    /// Whether this node serves `identity` now (what no shard owns, always).
    pub fn serves(&self, identity: &tenantry::Identity) -> bool {
        match self.node.get() {
            Some(node) => node.admits(identity),
            None => self.map.shard(identity).is_none(),
        }
    }

    /// The node, once it joined.
    pub fn node(&self) -> Option<&ClusterNode> {
        self.node.get()
    }

    /// The NATS connection, once the node joined.
    pub fn client(&self) -> Option<tenantry_cluster::async_nats::Client> {
        self.client.get().cloned()
    }

    /// Answers the gateway requests other nodes relay here through `gateway` (this
    /// server's), until the node leaves.
    pub async fn serve_relays(&self, gateway: impl crate::routes::Gateway) -> anyhow::Result<()> {
        let task = crate::relay::serve_relays(self, gateway).await?;
        if let Some(old) = self
            .relays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task)
        {
            old.abort();
        }
        Ok(())
    }

    /// Whether the node's lease holds (it may serve); false before it joined.
    pub fn serving(&self) -> bool {
        self.node.get().is_some_and(|n| n.membership().serving())
    }

    /// Hands every shard off and leaves the cluster (shutdown).
    pub async fn leave(&self) {
        // The relay task holds the gateway (and so the app): it ends with the node.
        if let Some(relays) = self.relays.lock().unwrap_or_else(|e| e.into_inner()).take() {
            relays.abort();
        }
        if let Some(node) = self.node.get() {
            if let Err(e) = node.leave().await {
                tracing::warn!(error = %e, "leaving the cluster cleanly failed; the others take over after a lease");
            }
        }
    }
}
