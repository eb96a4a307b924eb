//! The store conformance suite (`tenantry-testing`) against the memory store and
//! the redb store: one test per promise per backend, each on a fresh store.

use std::sync::Arc;
use tenantry::store::{CheckpointStore, MemoryStore, RedbStore};
use tenantry_testing as conformance;

/// A fresh redb store in its own temporary directory, kept alive as long as the store.
struct TempRedb {
    store: Arc<dyn CheckpointStore>,
    _dir: tempfile::TempDir,
}

fn temp_redb() -> TempRedb {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = RedbStore::open(dir.path().join("conformance.redb")).expect("open redb");
    TempRedb {
        store: Arc::new(store),
        _dir: dir,
    }
}

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
                    if let Err(e) = conformance::$check(store).await {
                        panic!("memory store: {}: {e}", stringify!($check));
                    }
                }
            )*
        }

        mod redb {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let temp = temp_redb();
                    if let Err(e) = conformance::$check(temp.store.clone()).await {
                        panic!("redb store: {}: {e}", stringify!($check));
                    }
                }
            )*
        }
    };
}

conformance_tests!(
    put_get_delete_round_trip_bytes_and_versions,
    compare_and_set_refuses_duplicate_stale_and_wrong_version_writes,
    partitions_isolate_get_list_delete_and_purge,
    large_states_of_several_mib_round_trip,
    thousands_of_keys_list_in_key_order,
    concurrent_writers_to_one_key_have_exactly_one_winner_per_version,
    structured_keys_round_trip_and_list_back_equal,
    corrupt_or_foreign_bytes_fail_the_thaw_without_panics,
    turn_commits_apply_side_writes_with_the_checkpoint_or_not_at_all,
    usage_follows_every_write_of_its_partition_and_no_other,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_covers_every_listed_check_on_the_memory_store() {
    assert_eq!(conformance::CHECKS.len(), 10, "one test above per check");
    conformance::run_all(|| async { Ok(Arc::new(MemoryStore::new()) as Arc<dyn CheckpointStore>) })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_data_written_by_the_suite_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("reopen.redb");
    {
        let store: Arc<dyn CheckpointStore> = Arc::new(RedbStore::open(&path).expect("open"));
        conformance::structured_keys_round_trip_and_list_back_equal(store)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let store = RedbStore::open(&path).expect("reopen");
    let listed = store
        .list(
            &tenantry::Partition::new("tuples").expect("partition"),
            "tuples",
        )
        .await
        .expect("list");
    assert_eq!(listed.len(), 9, "every structured key is still there");
}

#[tokio::test]
async fn the_builtin_stores_keep_usage_and_redb_counts_a_file_from_before_it_once() {
    let p = tenantry::Partition::new("acme").unwrap();
    let memory: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let temp = temp_redb();
    for store in [memory, temp.store.clone()] {
        assert_eq!(
            store.usage(&p).await.unwrap(),
            Some(tenantry::store::StoreUsage::default()),
            "{} keeps usage",
            store.kind()
        );
    }

    // A file written before the usage table: two records of acme, one of globex.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.redb");
    {
        let table: ::redb::TableDefinition<(&str, &str, &str), &[u8]> =
            ::redb::TableDefinition::new("checkpoints");
        let db = ::redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(table).unwrap();
            let record = |n: usize| [1u64.to_le_bytes().as_slice(), &vec![b'x'; n]].concat();
            t.insert(("acme", "agents", "a"), record(10).as_slice())
                .unwrap();
            t.insert(("acme", "agents", "b"), record(5).as_slice())
                .unwrap();
            t.insert(("globex", "agents", "a"), record(7).as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let store = RedbStore::open(&path).unwrap();
    assert_eq!(
        store.usage(&p).await.unwrap(),
        Some(tenantry::store::StoreUsage {
            bytes: 15,
            records: 2
        })
    );
    drop(store);
    // Counted once: reopening reads the table, and writes keep it current.
    let store = RedbStore::open(&path).unwrap();
    let id = tenantry::Identity::new(p.clone(), "agents", tenantry::Key::new("c").unwrap());
    store.put(&id, Arc::from(&b"abc"[..]), None).await.unwrap();
    assert_eq!(
        store.usage(&p).await.unwrap(),
        Some(tenantry::store::StoreUsage {
            bytes: 18,
            records: 3
        })
    );
}
