//! Shard fences (cluster mode): a node writes a shard's records only while it holds the
//! shard's current epoch; once another node took the shard, the former owner's puts,
//! turn commits and deletes fail with `Fenced` and change nothing, even when they race
//! the take. Skipped when TENANTRY_TEST_POSTGRES_URL is not set.

mod common;

use common::*;
use std::sync::Arc;
use tenantry::cluster::{RoutingKey, ShardCount, ShardId, shard_of};
use tenantry::store::{CheckpointStore, SideWrite, StoreError, StoreKey, TurnCommit};
use tenantry::{Identity, Key, Partition};
use tenantry_postgres::{PgStore, ShardOf};

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

#[tokio::test]
async fn a_node_writes_only_shards_it_took_and_not_after_another_took_them() {
    let Some(db) = TestDb::new("fence") else {
        return;
    };
    let (plain, a, b) = nodes(&db, "c1").await;
    let k = id("cart-1");
    // Not taken: refused, nothing written.
    let refused = a.put(&k, bytes("a0"), None).await;
    assert_eq!(
        refused,
        Err(StoreError::Fenced {
            shard: shard("cart-1").0
        })
    );
    assert_eq!(plain.get(&k).await.unwrap(), None);

    assert_eq!(a.take_shard(shard("cart-1")).await.unwrap(), 1);
    assert_eq!(a.put(&k, bytes("a1"), None).await, Ok(1));
    assert_eq!(
        a.shard_fence(shard("cart-1")).await.unwrap(),
        Some((1, "node-a".to_owned()))
    );

    // B takes the shard: A's writes are out from now on, B's go in.
    assert_eq!(b.take_shard(shard("cart-1")).await.unwrap(), 2);
    let stale = a.put(&k, bytes("a2"), Some(1)).await;
    assert_eq!(
        stale,
        Err(StoreError::Fenced {
            shard: shard("cart-1").0
        })
    );
    let stale_turn = a
        .commit(TurnCommit {
            side: vec![SideWrite {
                key: id("cart-1-storage"),
                bytes: Some(bytes("side")),
            }],
            ..TurnCommit::checkpoint(k.clone(), bytes("a3"), Some(1))
        })
        .await;
    assert!(matches!(stale_turn, Err(StoreError::Fenced { .. })));
    assert_eq!(
        a.delete(&k, None).await,
        Err(StoreError::Fenced {
            shard: shard("cart-1").0
        })
    );
    let record = plain.get(&k).await.unwrap().unwrap();
    assert_eq!((record.version, &*record.bytes), (1, &b"a1"[..]));
    assert_eq!(plain.get(&id("cart-1-storage")).await.unwrap(), None);

    assert_eq!(b.put(&k, bytes("b1"), Some(1)).await, Ok(2));
    assert!(b.delete(&k, Some(2)).await.unwrap());
    assert_eq!(
        b.shard_fence(shard("cart-1")).await.unwrap(),
        Some((2, "node-b".to_owned()))
    );

    // A release stops a node's own writes; unfenced handles and other clusters are
    // not concerned.
    b.release_shard(shard("cart-1")).unwrap();
    assert!(matches!(
        b.put(&k, bytes("b2"), None).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(plain.put(&k, bytes("plain"), None).await, Ok(1));
    let other = plain.fenced("c2", "node-a", by_key());
    assert_eq!(other.take_shard(shard("cart-1")).await.unwrap(), 1);
    assert!(matches!(
        plain.take_shard(ShardId(0)).await,
        Err(StoreError::Unavailable(_))
    ));
    drop_schema(&db.url, &db.schema).await;
}

#[tokio::test]
async fn in_a_batch_only_the_fenced_out_puts_fail() {
    let Some(db) = TestDb::new("fence_batch") else {
        return;
    };
    let (plain, a, b) = nodes(&db, "c1").await;
    // Keys on two different shards.
    let first = "k-0".to_owned();
    let second = (1..100)
        .map(|i| format!("k-{i}"))
        .find(|k| shard(k) != shard(&first))
        .unwrap();
    for s in [shard(&first), shard(&second)] {
        a.take_shard(s).await.unwrap();
    }
    b.take_shard(shard(&second)).await.unwrap();
    // Both puts go to the writer together; only the second shard moved away.
    let (k1, k2) = (id(&first), id(&second));
    let (one, two) = tokio::join!(a.put(&k1, bytes("x"), None), a.put(&k2, bytes("y"), None));
    assert_eq!(one, Ok(1));
    assert_eq!(
        two,
        Err(StoreError::Fenced {
            shard: shard(&second).0
        })
    );
    assert_eq!(plain.get(&id(&second)).await.unwrap(), None);
    drop_schema(&db.url, &db.schema).await;
}

#[tokio::test]
async fn writes_racing_a_take_either_land_before_it_or_not_at_all() {
    let Some(db) = TestDb::new("fence_race") else {
        return;
    };
    let (plain, a, b) = nodes(&db, "c1").await;
    let s = shard("race");
    a.take_shard(s).await.unwrap();
    // A writes as fast as it can while B takes the shard: every write A saw succeed has
    // a version below B's first write, and none lands after it.
    let writer = {
        let a = a.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut version = None;
            for i in 0..400 {
                match a.put(&id("race"), bytes(&format!("a{i}")), version).await {
                    Ok(v) => {
                        version = Some(v);
                        acked.push(v);
                    }
                    Err(StoreError::Fenced { .. }) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            acked
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    b.take_shard(s).await.unwrap();
    let after_take = plain.get(&id("race")).await.unwrap().map(|r| r.version);
    let acked = writer.await.unwrap();
    // Nothing A wrote is newer than what was there when B's take returned.
    assert_eq!(acked.last().copied(), after_take);
    let current = plain.get(&id("race")).await.unwrap().unwrap();
    assert_eq!(
        Some(current.version),
        after_take,
        "no write landed after the take"
    );
    let next = b.put(&id("race"), bytes("b"), Some(current.version)).await;
    assert_eq!(next, Ok(current.version + 1));
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
