//! Nodes end to end on NATS and PostgreSQL (TENANTRY_TEST_NATS_URL and
//! TENANTRY_TEST_POSTGRES_URL; skipped, saying so, without them): a joining node gets
//! its share after the owner hands it off; a node that dies loses its shards to the
//! survivor within a lease, a margin and a few rounds, and its store handle (still
//! running, as a paused process would be) can no longer write.

mod common;

use common::*;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantry::cluster::{RoutingKey, ShardCount, ShardId, shard_of};
use tenantry::store::{CheckpointStore, StoreError, StoreKey};
use tenantry::{Identity, Key, Partition};
use tenantry_cluster::{ClusterNode, HandOff, MembershipConfig, NodeConfig};
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
    let (Ok(nats), Ok(pg_url)) = (
        std::env::var("TENANTRY_TEST_NATS_URL"),
        std::env::var("TENANTRY_TEST_POSTGRES_URL"),
    ) else {
        eprintln!(
            "skipped: TENANTRY_TEST_NATS_URL and TENANTRY_TEST_POSTGRES_URL are not both set"
        );
        return None;
    };
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
    Arc::new(|k: &StoreKey| shard_of(&k.partition, RoutingKey::Key(k.key.encoded()), count()))
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
    let node = ClusterNode::start(
        env.client.clone(),
        &env.cluster,
        name,
        "127.0.0.1:0",
        count(),
        fenced.clone(),
        hand_off,
        config(),
    )
    .await
    .expect("the node starts");
    (node, fenced)
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
    let (admits_a, admits_b) = (a.admission(by_key()), b.admission(by_key()));
    for i in 0..20 {
        let key = id(&format!("cart-{i}"));
        let shard = by_key()(&key);
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
        .find(|k| a.serves(by_key()(k)))
        .unwrap();
    let shard = by_key()(&key);
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
