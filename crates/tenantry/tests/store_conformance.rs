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
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_covers_every_listed_check_on_the_memory_store() {
    assert_eq!(conformance::CHECKS.len(), 9, "one test above per check");
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
