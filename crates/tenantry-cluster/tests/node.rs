//! Nodes end to end on NATS and PostgreSQL (TENANTRY_TEST_NATS_URL and
//! TENANTRY_TEST_POSTGRES_URL; skipped, saying so, without them): a joining node gets
//! its share after the owner hands it off; a node that dies loses its shards to the
//! survivor within a lease, a margin and a few rounds, and its store handle (still
//! running, as a paused process would be) can no longer write.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry::cluster::{Routing, RoutingKey, ShardCount, ShardId, ShardMap, shard_of};
use tenantry::store::{CheckpointStore, StoreError, StoreKey};
use tenantry::{Identity, Key, Partition};
use tenantry_cluster::{
    ClusterError, ClusterNode, HandOff, Join, MembershipConfig, NodeConfig, PinRequest, PinState,
};
use tenantry_postgres::{PgOptions, PgStore, ShardOf};
use tokio::time::Instant;

const SHARDS: u32 = 8;

struct Env {
    client: async_nats::Client,
    pg_url: String,
    schema: String,
    cluster: String,
}

async fn env(tag: &str) -> Option<Env> {
    let (nats, pg_url) = tenantry_testing::cluster_services()?;
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let id = h.finish() & 0xffff_ffff;
    Some(Env {
        client: async_nats::connect(nats).await.expect("NATS answers"),
        pg_url,
        schema: format!("tenantry_test_node_{tag}_{id:x}"),
        cluster: format!("n{tag}{id:x}"),
    })
}

impl Env {
    async fn store(&self) -> PgStore {
        PgStore::connect(&self.pg_url, PgOptions::with_schema(self.schema.clone()))
            .await
            .expect("PostgreSQL answers")
    }

    async fn clean(self) {
        drop_buckets(&self.client, &self.cluster).await;
        let _ = PgStore::drop_schema(&self.pg_url, &self.schema).await;
    }
}

fn count() -> ShardCount {
    ShardCount::new(SHARDS).unwrap()
}

fn by_key() -> ShardOf {
    Arc::new(|k: &StoreKey| Some(shard(k)))
}

/// The map of a node whose manager `manager` routes by key (as `by_key` does).
fn map_by_key(manager: &str) -> Arc<ShardMap> {
    Arc::new(ShardMap::new(count()).route(manager, Routing::Key))
}

fn shard(k: &StoreKey) -> ShardId {
    shard_of(&k.partition, RoutingKey::Key(k.key.encoded()), count())
}

fn config() -> NodeConfig {
    NodeConfig {
        membership: MembershipConfig {
            lease: Duration::from_millis(1600),
            margin: Duration::from_millis(400),
            renew_every: Duration::from_millis(400),
        },
        round_every: Duration::from_millis(200),
        max_moves: SHARDS as usize,
        settle: Duration::from_millis(400),
    }
}

/// A hand-off that records what it was asked to stop serving.
fn recorder() -> (HandOff, Arc<Mutex<Vec<ShardId>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let hand_off: HandOff = Arc::new(move |shards| {
        log.lock().unwrap().extend(shards);
        Box::pin(async {})
    });
    (hand_off, seen)
}

/// Node `name` on its own fenced handle of `store` (returned too: clones share the
/// epochs the node takes).
async fn node(env: &Env, store: &PgStore, name: &str, hand_off: HandOff) -> (ClusterNode, PgStore) {
    let fenced = store.fenced(&env.cluster, name, by_key());
    (start(env, &fenced, name, hand_off).await, fenced)
}

/// How node `name` joins the test cluster.
fn join(env: &Env, name: &str) -> Join {
    Join {
        client: env.client.clone(),
        cluster: env.cluster.clone(),
        node: name.to_owned(),
        address: "127.0.0.1:0".to_owned(),
        count: count(),
        config: config(),
    }
}

/// Starts node `name` writing through `fenced`.
async fn start(env: &Env, fenced: &PgStore, name: &str, hand_off: HandOff) -> ClusterNode {
    ClusterNode::start(join(env, name), fenced.clone(), hand_off)
        .await
        .expect("the node starts")
}

fn id(key: &str) -> Identity {
    Identity::new(
        Partition::new("acme").unwrap(),
        "carts",
        Key::new(key).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_gets_its_share_after_the_owner_hands_it_off() {
    let Some(env) = env("join").await else { return };
    let store = env.store().await;
    let (a_off, a_handed) = recorder();
    let (a, _) = node(&env, &store, "a", a_off).await;
    eventually("a serves every shard", Duration::from_secs(5), || {
        a.served().len() == SHARDS as usize
    })
    .await;
    let (b_off, _) = recorder();
    let (b, _) = node(&env, &store, "b", b_off).await;
    eventually("a and b share the shards", Duration::from_secs(8), || {
        a.served().len() == 4 && b.served().len() == 4
    })
    .await;
    let handed = a_handed.lock().unwrap().clone();
    assert_eq!(
        handed.len(),
        4,
        "a stopped serving what it handed off: {handed:?}"
    );
    assert!(handed.iter().all(|s| b.serves(*s) && !a.serves(*s)));
    // Each node's runtime may start exactly the identities of the shards it serves.
    let (admits_a, admits_b) = (
        a.admission(map_by_key("carts")),
        b.admission(map_by_key("carts")),
    );
    for i in 0..20 {
        let key = id(&format!("cart-{i}"));
        let shard = shard(&key);
        assert_eq!(
            (admits_a(&key), admits_b(&key)),
            (a.serves(shard), b.serves(shard))
        );
        assert_ne!(
            admits_a(&key),
            admits_b(&key),
            "{key}: exactly one node admits it"
        );
    }
    drop((a, b));
    env.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_shards_move_to_the_survivor_and_its_stale_writes_are_fenced() {
    let Some(env) = env("kill").await else { return };
    let store = env.store().await;
    let (off, _) = recorder();
    let (a, a_store) = node(&env, &store, "a", off.clone()).await;
    let (b, b_store) = node(&env, &store, "b", off).await;
    eventually("a and b share the shards", Duration::from_secs(8), || {
        a.served().len() == 4 && b.served().len() == 4
    })
    .await;
    // A key on one of a's shards, written through a's fenced handle; b cannot write it.
    let key = (0..100)
        .map(|i| id(&format!("cart-{i}")))
        .find(|k| a.serves(shard(k)))
        .unwrap();
    let shard = shard(&key);
    assert_eq!(a_store.put(&key, Arc::from(&b"a"[..]), None).await, Ok(1));
    assert!(matches!(
        b_store.put(&key, Arc::from(&b"b"[..]), Some(1)).await,
        Err(StoreError::Fenced { .. })
    ));

    // a dies; its writer goes on, as a paused or partitioned process would.
    let died = Instant::now();
    drop(a);
    eventually("b serves every shard", Duration::from_secs(10), || {
        b.served().len() == SHARDS as usize
    })
    .await;
    let failover = died.elapsed();
    let c = config().membership;
    assert!(
        failover >= c.lease + c.margin - c.renew_every,
        "{failover:?}"
    );
    let stale = a_store.put(&key, Arc::from(&b"a2"[..]), Some(1)).await;
    assert_eq!(stale, Err(StoreError::Fenced { shard: shard.0 }));
    let record = store.get(&key).await.unwrap().unwrap();
    assert_eq!(&*record.bytes, b"a", "nothing after the take");
    assert_eq!(
        b_store.put(&key, Arc::from(&b"b"[..]), Some(1)).await,
        Ok(2)
    );
    drop(b);
    env.clean().await;
}

/// A durable counter, for agents that move between nodes.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Tally {
    count: u64,
}

#[derive(serde::Serialize, serde::Deserialize, tenantry::schemars::JsonSchema)]
#[schemars(crate = "tenantry::schemars")]
struct Add;
impl tenantry::Message for Add {
    const NAME: &'static str = "add";
    type Reply = u64;
}

impl tenantry::Factory for Tally {
    const NAME: &'static str = "tally";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut tenantry::Handlers<Self>) {
        h.add::<Add>();
    }
}

impl tenantry::Handler<Add> for Tally {
    async fn handle(
        &mut self,
        _: Add,
        _: &mut tenantry::Context,
    ) -> Result<u64, tenantry::HandlerError> {
        self.count += 1;
        Ok(self.count)
    }
}

/// A node running a runtime of its own (`ClusterNode::serve`): the runtime starts only
/// what the node serves, forwards the rest, and a hand-off hibernates what lives on the
/// shards handed off.
async fn node_with_runtime(
    env: &Env,
    store: &PgStore,
    name: &str,
) -> (ClusterNode, tenantry::Manager<Tally>, tenantry::Runtime) {
    let map = map_by_key("tallies");
    let fenced = store.fenced(&env.cluster, name, tenantry_cluster::shard_of(&map));
    let rt = tenantry::Runtime::builder().store(fenced.clone()).build();
    let durable = tenantry::ManagerConfig::default().durability(tenantry::Durability::EveryTurn);
    let tallies = rt.register::<Tally>("tallies", durable).unwrap();
    let node = ClusterNode::serve(join(env, name), fenced, &rt, map)
        .await
        .expect("the node starts");
    (node, tallies, rt)
}

/// `tallies.add` on `key` through `bus`.
async fn add(bus: &tenantry::Bus, key: &str) -> Result<u64, tenantry::Error> {
    let reply = bus
        .invoke(
            "tallies.add",
            serde_json::Value::Null,
            tenantry::Invoke::default().key(Key::new(key).unwrap()),
        )
        .await?;
    Ok(reply.as_u64().expect("a count"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_of_handed_off_shards_thaw_on_the_new_owner_from_their_last_durable_state() {
    let Some(env) = env("thaw").await else { return };
    let store = env.store().await;
    let acme = Partition::new("acme").unwrap();
    let (a, tallies_a, _rt_a) = node_with_runtime(&env, &store, "a").await;
    eventually("a serves every shard", Duration::from_secs(5), || {
        a.served().len() == SHARDS as usize
    })
    .await;
    let keys: Vec<String> = (0..16).map(|i| format!("t{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let h = tallies_a.get(key.as_str(), &acme).await.unwrap();
        for _ in 0..=i {
            h.call(Add).await.unwrap();
        }
    }
    let (b, tallies_b, _rt_b) = node_with_runtime(&env, &store, "b").await;
    eventually("a and b share the shards", Duration::from_secs(8), || {
        a.served().len() == 4 && b.served().len() == 4
    })
    .await;
    let mut moved = 0;
    for (i, key) in keys.iter().enumerate() {
        let shard = shard(&Identity::new(
            acme.clone(),
            "tallies",
            Key::new(key.as_str()).unwrap(),
        ));
        if !b.serves(shard) {
            continue;
        }
        moved += 1;
        // a refuses it now; b thaws it with every acknowledged turn.
        assert!(matches!(
            tallies_a.get(key.as_str(), &acme).await,
            Err(tenantry::Error::ServedElsewhere(_))
        ));
        let h = tallies_b.get(key.as_str(), &acme).await.unwrap();
        assert_eq!(h.call(Add).await.unwrap(), i as u64 + 2, "{key}");
    }
    assert!(moved > 0, "some agents moved");
    drop((a, b));
    env.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_the_owner_from_either_node_and_a_leaving_node_loses_none() {
    let Some(env) = env("fwd").await else { return };
    let store = env.store().await;
    let (acme, globex) = (
        Partition::new("acme").unwrap(),
        Partition::new("globex").unwrap(),
    );
    let (a, tallies_a, rt_a) = node_with_runtime(&env, &store, "a").await;
    let (b, tallies_b, rt_b) = node_with_runtime(&env, &store, "b").await;
    eventually("a and b share the shards", Duration::from_secs(10), || {
        a.served().len() == 4 && b.served().len() == 4
    })
    .await;
    let keys: Vec<String> = (0..16).map(|i| format!("k{i}")).collect();
    let (on_a, on_b) = (rt_a.bus_for(&acme), rt_b.bus_for(&acme));
    for key in &keys {
        assert_eq!(add(&on_a, key).await.unwrap(), 1, "{key} through a");
        assert_eq!(add(&on_b, key).await.unwrap(), 2, "{key} through b");
        // One live instance, on the owner only.
        let shard = shard(&Identity::new(
            acme.clone(),
            "tallies",
            Key::new(key.as_str()).unwrap(),
        ));
        let (live_a, live_b) = (
            tallies_a.lookup(key.as_str(), &acme).unwrap().is_some(),
            tallies_b.lookup(key.as_str(), &acme).unwrap().is_some(),
        );
        assert_eq!(
            (live_a, live_b),
            (a.serves(shard), b.serves(shard)),
            "{key}"
        );
    }
    // Host code's calls travel on the host subjects and work from either node.
    let host_add = |rt: &tenantry::Runtime| {
        let bus = rt.bus();
        let opts = tenantry::Invoke::target(&acme).key(Key::new("h0").unwrap());
        async move {
            bus.invoke("tallies.add", serde_json::Value::Null, opts)
                .await
        }
    };
    assert_eq!(host_add(&rt_a).await.unwrap(), 1);
    assert_eq!(host_add(&rt_b).await.unwrap(), 2);
    // Another tenant's caller on either node reaches its own instances only.
    assert_eq!(add(&rt_b.bus_for(&globex), "k0").await.unwrap(), 1);
    assert_eq!(add(&rt_a.bus_for(&globex), "k0").await.unwrap(), 2);

    // A caller that names another partition than its subject is refused by the owner.
    let identity = Identity::new(acme.clone(), "tallies", Key::new("k1").unwrap());
    let owner = if a.serves(shard(&identity)) { "a" } else { "b" };
    // So is one that claims host authority on a tenant's subject (NATS permissions can
    // confine a tenant gateway to those; only full nodes publish on the host subjects).
    let subject = tenantry_cluster::call_subject(&env.cluster, owner, &acme, false);
    for caller in [
        serde_json::json!({"tenant": "globex"}),
        serde_json::json!("host"),
    ] {
        let forged = serde_json::json!({
            "id": "forged", "handler": "tallies.add", "params": null,
            "identity": identity, "caller": caller, "timeout_ms": 1000
        });
        let answer = env
            .client
            .request(subject.clone(), serde_json::to_vec(&forged).unwrap().into())
            .await
            .expect("the owner answers");
        let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
        assert_eq!(answer["err"]["kind"], "forbidden", "{caller}: {answer}");
    }

    // b leaves while callers on a keep calling every key: nothing fails, nothing is lost.
    let caller = tokio::spawn({
        let (on_a, keys) = (on_a.clone(), keys.clone());
        async move {
            let mut last = vec![2u64; keys.len()];
            for _round in 0..20 {
                for (i, key) in keys.iter().enumerate() {
                    let n = add(&on_a, key)
                        .await
                        .unwrap_or_else(|e| panic!("{key}: {e}"));
                    assert_eq!(n, last[i] + 1, "{key}: every acknowledged add counted once");
                    last[i] = n;
                }
            }
            last
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.leave().await.expect("b leaves cleanly");
    eventually("a serves every shard", Duration::from_secs(10), || {
        a.served().len() == SHARDS as usize
    })
    .await;
    let last = caller.await.expect("no call failed");
    assert!(last.iter().all(|n| *n == 22), "{last:?}");
    // b's runtime, still up, forwards to a now.
    assert_eq!(add(&on_b, "k3").await.unwrap(), 23);
    assert_eq!(tallies_b.lookup("k3", &acme).unwrap().map(|_| ()), None);
    drop(a);
    env.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_on_one_node_reach_the_partitions_subscribers_on_the_others() {
    let Some(env) = env("ev").await else { return };
    let store = env.store().await;
    let (acme, globex) = (
        Partition::new("acme").unwrap(),
        Partition::new("globex").unwrap(),
    );
    let (a, _tallies_a, rt_a) = node_with_runtime(&env, &store, "a").await;
    let (b, _tallies_b, rt_b) = node_with_runtime(&env, &store, "b").await;
    let mut acme_on_b = rt_b.bus_for(&acme).subscribe("orders.*").unwrap();
    let mut globex_on_b = rt_b.bus_for(&globex).subscribe("orders.*").unwrap();
    let mut acme_on_a = rt_a.bus_for(&acme).subscribe("orders.*").unwrap();
    // The subscriptions of NATS settle in a moment; publish until b hears one.
    let publisher = rt_a.bus_for(&acme);
    let mut published = 0;
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            publisher
                .publish("orders.created", serde_json::json!({"id": 1}))
                .unwrap();
            published += 1;
            if let Ok(Some(e)) =
                tokio::time::timeout(Duration::from_millis(100), acme_on_b.recv()).await
            {
                return e;
            }
        }
    })
    .await
    .expect("b's acme subscriber hears a's event");
    assert_eq!(heard.topic, "orders.created");
    assert_eq!(heard.payload, serde_json::json!({"id": 1}));
    // The publisher's own node delivers it once, not again from NATS.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut on_a = 0;
    while acme_on_a.try_recv().is_some() {
        on_a += 1;
    }
    let mut on_b = 1;
    while acme_on_b.try_recv().is_some() {
        on_b += 1;
    }
    assert_eq!(
        on_a, published,
        "the publisher's node delivers each event once"
    );
    assert!(on_b <= published, "b delivers each event at most once");
    assert!(
        globex_on_b.try_recv().is_none(),
        "another tenant hears nothing"
    );
    drop((a, b));
    env.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_tenant_lives_only_on_its_nodes_and_keeps_its_state_through_pin_and_unpin() {
    let Some(env) = env("pin").await else { return };
    let store = env.store().await;
    let (acme, globex) = (
        Partition::new("acme").unwrap(),
        Partition::new("globex").unwrap(),
    );
    let (a, tallies_a, rt_a) = node_with_runtime(&env, &store, "a").await;
    let (b, tallies_b, rt_b) = node_with_runtime(&env, &store, "b").await;
    let (c, tallies_c, rt_c) = node_with_runtime(&env, &store, "c").await;
    eventually(
        "a, b and c share the shards",
        Duration::from_secs(10),
        || {
            [&a, &b, &c].iter().map(|n| n.served().len()).sum::<usize>() == SHARDS as usize
                && [&a, &b, &c].iter().all(|n| !n.served().is_empty())
        },
    )
    .await;
    let keys: Vec<String> = (0..12).map(|i| format!("k{i}")).collect();
    for key in &keys {
        assert_eq!(add(&rt_a.bus_for(&acme), key).await.unwrap(), 1);
        assert_eq!(add(&rt_b.bus_for(&globex), key).await.unwrap(), 1);
    }
    let live_on = |key: &str, p: &Partition| {
        [&tallies_a, &tallies_b, &tallies_c]
            .iter()
            .map(|t| t.lookup(key, p).unwrap().is_some())
            .collect::<Vec<_>>()
    };

    // Pin acme to c alone, exclusively, on 4 shards of its own.
    let request = PinRequest {
        nodes: vec!["c".into()],
        exclusive: true,
        shards: Some(4),
    };
    let pin = a.pin("acme", &request).await.unwrap();
    assert_eq!(pin.state, PinState::Moving);
    assert_eq!((pin.first_shard, pin.shards), (SHARDS, 4));
    // Refused: another shard count, a node nobody runs, an overlap with the exclusive
    // pin, and a bad name.
    for (partition, nodes, exclusive, shards) in [
        ("acme", vec!["c"], true, Some(8)),
        ("globex", vec!["nobody"], false, None),
        ("globex", vec!["c"], false, None),
    ] {
        let request = PinRequest {
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            exclusive,
            shards,
        };
        let refused = b.pin(partition, &request).await;
        assert!(
            matches!(refused, Err(ClusterError::PinConflict(_))),
            "{partition} {nodes:?}: {refused:?}"
        );
    }
    let bad = PinRequest {
        nodes: vec!["C!".into()],
        exclusive: false,
        shards: None,
    };
    assert!(matches!(
        b.pin("globex", &bad).await,
        Err(ClusterError::InvalidName { .. })
    ));
    // Calls made while it moves wait for the new placement, and nothing is lost.
    assert_eq!(add(&rt_b.bus_for(&acme), "k0").await.unwrap(), 2);
    eventually("acme's move ends", Duration::from_secs(10), || {
        futures_now(a.pin_of("acme")).is_some_and(|p| p.state == PinState::Active)
    })
    .await;
    eventually(
        "c serves acme's shards and nothing shared",
        Duration::from_secs(10),
        || {
            let served = c.served();
            served.len() == 4 && served.iter().all(|s| s.0 >= SHARDS)
        },
    )
    .await;
    for (i, key) in keys.iter().enumerate() {
        let expected = if i == 0 { 3 } else { 2 };
        assert_eq!(
            add(&rt_a.bus_for(&acme), key).await.unwrap(),
            expected,
            "{key}"
        );
        assert_eq!(
            live_on(key, &acme),
            [false, false, true],
            "{key} lives on c only"
        );
        assert_eq!(add(&rt_c.bus_for(&globex), key).await.unwrap(), 2, "{key}");
        assert!(!live_on(key, &globex)[2], "{key}: no globex agent on c");
    }

    // Unpinned, acme goes back to the shared shards with its state.
    let unpinned = b.unpin("acme").await.unwrap();
    assert_eq!(unpinned.state, PinState::Removing);
    eventually("acme's unpin ends", Duration::from_secs(10), || {
        futures_now(a.pin_of("acme")).is_none()
    })
    .await;
    for (i, key) in keys.iter().enumerate() {
        let expected = if i == 0 { 4 } else { 3 };
        assert_eq!(
            add(&rt_c.bus_for(&acme), key).await.unwrap(),
            expected,
            "{key}"
        );
        let live = live_on(key, &acme);
        assert_eq!(live.iter().filter(|l| **l).count(), 1, "{key}: {live:?}");
    }
    assert!(matches!(
        a.unpin("acme").await,
        Err(ClusterError::NotPinned(_))
    ));
    drop((a, b, c));
    env.clean().await;
}

/// Runs `future` to its end from synchronous test code on the multi-thread runtime.
fn futures_now<T>(future: impl std::future::Future<Output = Result<T, ClusterError>>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
        .expect("the ownership record answers")
}
