//! The store conformance suite (`tenantry-testing`) against PostgreSQL: one
//! test per promise, each on a fresh schema. Skipped when TENANTRY_TEST_POSTGRES_URL is
//! not set.

mod common;

use common::TestDb;
use tenantry_testing as conformance;

macro_rules! conformance_tests {
    ($($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let Some(db) = TestDb::new("conf") else { return };
                let store = db.store_arc().await;
                let result = conformance::$check(store).await;
                if let Err(e) = result {
                    panic!("postgres store: {}: {e}", stringify!($check));
                }
            }
        )*
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
async fn every_check_of_the_suite_passes_in_one_run() {
    let Some(db) = TestDb::new("all") else { return };
    assert_eq!(conformance::CHECKS.len(), 10, "one test above per check");
    // Each check wants an empty store: give each a schema of its own.
    let mut schemas = Vec::new();
    let result = conformance::run_all(|| {
        let schema = common::fresh_schema("all");
        schemas.push(schema.clone());
        let url = db.url.clone();
        let options = tenantry_postgres::PgOptions {
            schema,
            ..db.options()
        };
        async move {
            tenantry_postgres::PgStore::connect(&url, options)
                .await
                .map(|s| {
                    std::sync::Arc::new(s) as std::sync::Arc<dyn tenantry::store::CheckpointStore>
                })
                .map_err(|e| e.to_string())
        }
    })
    .await;
    for schema in &schemas {
        common::drop_schema(&db.url, schema).await;
    }
    result.unwrap_or_else(|e| panic!("{e}"));
}
