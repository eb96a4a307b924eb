//! Crash safety of the PostgreSQL store: a child process hibernates instances as fast as
//! it can and prints every acknowledged checkpoint; the test kills it with SIGKILL at a
//! random moment, reconnects, and checks that every acknowledged checkpoint is there,
//! thaws, and is intact. Skipped when TENANTRY_TEST_POSTGRES_URL is not set.
//!
//! The child is this very test binary, re-run with only the ignored
//! `crash_child_hibernates_until_killed` test selected and the schema in
//! `TENANTRY_CRASH_PG_SCHEMA`, so no extra binary has to be built first.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry::store::CheckpointStore;
use tenantry_postgres::{PgOptions, PgStore};
use tenantry_testing::crash;

const CHILD_ENV: &str = "TENANTRY_CRASH_PG_SCHEMA";
const CHILD_TEST: &str = "crash_child_hibernates_until_killed";
const TURNS_CHILD_TEST: &str = "crash_child_runs_durable_turns_until_killed";

#[test]
#[ignore = "the child process of the crash tests; run by them, not on its own"]
fn crash_child_hibernates_until_killed() {
    run_child(|store| crash::hibernate_until_killed(store, std::io::stdout(), 8, 16));
}

#[test]
#[ignore = "the child process of the crash tests; run by them, not on its own"]
fn crash_child_runs_durable_turns_until_killed() {
    run_child(|store| crash::turns_until_killed(store, std::io::stdout(), 16, 8));
}

/// Runs a crash writer on the schema the parent named; does nothing unless started by a
/// crash test.
fn run_child<Fut>(writer: impl FnOnce(Arc<dyn CheckpointStore>) -> Fut)
where
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let (Ok(schema), Ok(url)) = (std::env::var(CHILD_ENV), std::env::var(common::URL_VAR)) else {
        return;
    };
    let url = with_application_name(&url, &application_name(&schema));
    crash::child_main(async move {
        let store = PgStore::connect(&url, PgOptions::with_schema(schema))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        writer(Arc::new(store)).await
    });
}

/// The application name the child's connections carry, so the parent can wait for them.
fn application_name(schema: &str) -> String {
    format!("crash-{schema}")
}

fn with_application_name(url: &str, name: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

/// A killed client's backends may still be finishing a commit. Waits until the server has
/// no connection of the child left (at most 10 s), so what we read back is final.
async fn wait_for_child_backends(url: &str, schema: &str) {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let left: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(application_name(schema))
                .fetch_one(&mut conn)
                .await;
        if matches!(left, Ok(0) | Err(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = conn.close().await;
}

#[test]
fn every_checkpoint_acknowledged_before_a_sigkill_survives_in_postgres() {
    kill_and_verify("crash", CHILD_TEST, false);
}

#[test]
fn every_turn_acknowledged_before_a_sigkill_survives_in_postgres_with_its_storage_writes() {
    kill_and_verify("turns", TURNS_CHILD_TEST, true);
}

/// Three rounds of: run the child until a random SIGKILL, then check everything it
/// acknowledged (as hibernations, or as durable turns).
fn kill_and_verify(name: &str, child_test: &str, durable_turns: bool) {
    let Some(db) = common::TestDb::new(name) else {
        return;
    };
    let mut acknowledged: BTreeMap<String, u64> = BTreeMap::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Create the schema first, so the child only connects.
    rt.block_on(async { drop(db.store().await) });
    for round in 1..=3 {
        let acked = crash::run_child_and_kill(child_test, (CHILD_ENV, &db.schema))
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(!acked.is_empty(), "round {round}: nothing acknowledged");
        crash::merge_acks(&mut acknowledged, acked);
        let total: u64 = acknowledged.values().sum();
        rt.block_on(async {
            wait_for_child_backends(&db.url, &db.schema).await;
            let store: Arc<dyn CheckpointStore> = Arc::new(db.store().await);
            let verified = if durable_turns {
                crash::verify_durable_turns(store, &acknowledged).await
            } else {
                crash::verify_acknowledged(store, &acknowledged).await
            };
            verified.unwrap_or_else(|e| panic!("round {round} ({total} acknowledged): {e}"));
        });
        eprintln!(
            "round {round}: {} keys, {total} acknowledgements verified",
            acknowledged.len()
        );
    }
}
