//! Shard fences (cluster mode): the fence checks of the conformance suite
//! (`tenantry_testing::fences`: a node writes a shard's records only while it holds the
//! shard's current epoch; once another node took the shard, the former owner's puts,
//! turn commits and deletes fail with `Fenced` and change nothing, even when they race
//! the take), then what is PostgreSQL's own: fences per cluster, recorded holders, and an
//! instance whose commit is fenced out. Skipped when TENANTRY_TEST_POSTGRES_URL is not set.

mod common;

use common::*;
use futures::future::BoxFuture;
use std::sync::Arc;
use tenantry::cluster::{RoutingKey, ShardCount, ShardId, shard_of};
use tenantry::store::{CheckpointStore, StoreError, StoreKey};
use tenantry::{Identity, Key, Partition};
use tenantry_postgres::{PgStore, ShardOf};
use tenantry_testing::fences::{self, FenceRig, FencedNode};

const SHARDS: u32 = 8;

fn id(key: &str) -> Identity {
    Identity::new(
        Partition::new("acme").unwrap(),
        "carts",
        Key::new(key).unwrap(),
    )
}

fn by_key() -> ShardOf {
    let count = ShardCount::new(SHARDS).unwrap();
    Arc::new(move |k: &StoreKey| {
        Some(shard_of(
            &k.partition,
            RoutingKey::Key(k.key.encoded()),
            count,
        ))
    })
}

fn shard(key: &str) -> ShardId {
    by_key()(&id(key)).expect("every record has a shard")
}

fn bytes(text: &str) -> Arc<[u8]> {
    Arc::from(text.as_bytes())
}

async fn nodes(db: &TestDb, cluster: &str) -> (PgStore, PgStore, PgStore) {
    let store = db.store().await;
    let a = store.fenced(cluster, "node-a", by_key());
    let b = store.fenced(cluster, "node-b", by_key());
    (store, a, b)
}

/// A fenced node of the suite's rig: a fenced handle of the test store.
struct Node(PgStore);

impl FencedNode for Node {
    fn store(&self) -> Arc<dyn CheckpointStore> {
        Arc::new(self.0.clone())
    }
    fn take(&self, shard: ShardId) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.0.take_shard(shard))
    }
    fn release(&self, shard: ShardId) -> Result<(), StoreError> {
        self.0.release_shard(shard)
    }
}

fn suite_shards() -> ShardOf {
    Arc::new(fences::shard_of_record)
}

macro_rules! fence_conformance {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(db) = TestDb::new("fence") else { return };
                let plain = db.store().await;
                let rig = FenceRig {
                    plain: Arc::new(plain.clone()),
                    a: Arc::new(Node(plain.fenced("c1", "node-a", suite_shards()))),
                    b: Arc::new(Node(plain.fenced("c1", "node-b", suite_shards()))),
                };
                if let Err(e) = fences::$check(rig).await {
                    panic!("postgres store: {}: {e}", stringify!($check));
                }
            }
        )*
    };
}

fence_conformance!(
    a_node_writes_only_shards_it_holds_and_not_after_another_took_them,
    in_a_batch_only_the_fenced_out_writes_fail,
    writes_racing_a_take_land_before_it_or_not_at_all,
);

#[test]
fn every_fence_check_of_the_suite_has_a_test_above() {
    assert_eq!(fences::FENCE_CHECKS.len(), 3);
}

#[tokio::test]
async fn fences_are_per_cluster_and_recorded_and_plain_handles_take_none() {
    let Some(db) = TestDb::new("fence_store") else {
        return;
    };
    let (plain, a, b) = nodes(&db, "c1").await;
    let s = shard("cart-1");
    assert_eq!(a.take_shard(s).await.unwrap(), 1);
    assert_eq!(
        a.shard_fence(s).await.unwrap(),
        Some((1, "node-a".to_owned()))
    );
    assert_eq!(b.take_shard(s).await.unwrap(), 2);
    assert_eq!(
        b.shard_fence(s).await.unwrap(),
        Some((2, "node-b".to_owned()))
    );
    // Another cluster's fences are its own; an unfenced handle writes and takes nothing.
    let other = plain.fenced("c2", "node-a", by_key());
    assert_eq!(other.take_shard(s).await.unwrap(), 1);
    assert_eq!(plain.put(&id("cart-1"), bytes("plain"), None).await, Ok(1));
    assert!(matches!(
        plain.take_shard(ShardId(0)).await,
        Err(StoreError::Unavailable(_))
    ));
    drop_schema(&db.url, &db.schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_commit_is_fenced_out_leaves_and_its_caller_is_told() {
    let Some(db) = TestDb::new("fence_actor") else {
        return;
    };
    let (plain, a, b) = nodes(&db, "c1").await;
    let rt = tenantry::Runtime::builder().store(a.clone()).build();
    let config = tenantry::ManagerConfig::default().durability(tenantry::Durability::EveryTurn);
    let counters = rt.register::<Counter>("counters", config).unwrap();
    let acme = Partition::new("acme").unwrap();
    a.take_shard(shard("k1")).await.unwrap();
    let h = counters.get("k1", &acme).await.unwrap();
    assert_eq!(h.call(Increment).await.unwrap(), 1);

    // Node B takes the shard: A's next durable turn cannot commit, so A's instance is
    // not served any more and its caller hears why.
    b.take_shard(shard("k1")).await.unwrap();
    let e = h.call(Increment).await.unwrap_err();
    assert!(
        matches!(&e, tenantry::CallError::NotDurable { reason } if reason.contains("fenced")),
        "{e}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.is_alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "the fenced instance left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // What B finds is A's last committed state, nothing after.
    let key = Identity::new(acme, "counters", Key::new("k1").unwrap());
    let stored = plain.get(&key).await.unwrap().unwrap();
    let committed = stored.version;
    assert!(
        b.put(&key, stored.bytes.clone(), Some(committed))
            .await
            .is_ok()
    );
    rt.shutdown().await;
}
