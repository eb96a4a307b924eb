//! Crash safety of the redb store: a child process hibernates instances (or runs durable
//! turns that also write storage) as fast as it can and prints every acknowledgement; the
//! test kills it with SIGKILL at a random moment, reopens the store, and checks that
//! everything acknowledged is there, thaws, and is intact (for turns: state and storage
//! written together).
//!
//! The child is this very test binary, re-run with only one of the ignored `crash_child_*`
//! tests selected and the store path in `TENANTRY_CRASH_REDB_PATH`, so no extra binary
//! has to be built first.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use tenantry::store::{CheckpointStore, RedbStore};
use tenantry_testing::crash;

const CHILD_ENV: &str = "TENANTRY_CRASH_REDB_PATH";
const CHILD_TEST: &str = "crash_child_hibernates_until_killed";
const TURNS_CHILD_TEST: &str = "crash_child_runs_durable_turns_until_killed";

/// Runs a crash writer on the store the parent named; does nothing unless started by a
/// crash test.
fn run_child<Fut>(writer: impl FnOnce(Arc<dyn CheckpointStore>) -> Fut)
where
    Fut: Future<Output = Result<(), String>>,
{
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    crash::child_main(async move {
        let store = RedbStore::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        writer(Arc::new(store)).await
    });
}

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

#[test]
fn every_turn_acknowledged_before_a_sigkill_survives_in_redb_with_its_storage_writes() {
    kill_and_verify(TURNS_CHILD_TEST, true);
}

#[test]
fn every_checkpoint_acknowledged_before_a_sigkill_survives_in_redb() {
    kill_and_verify(CHILD_TEST, false);
}

/// Three rounds of: run the child until a random SIGKILL, then check everything it
/// acknowledged (as hibernations, or as durable turns).
fn kill_and_verify(child_test: &str, durable_turns: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.redb");
    let mut acknowledged: BTreeMap<String, u64> = BTreeMap::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    for round in 1..=3 {
        let acked = crash::run_child_and_kill(
            child_test,
            (CHILD_ENV, path.to_str().expect("utf-8 temp path")),
        )
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(!acked.is_empty(), "round {round}: nothing acknowledged");
        crash::merge_acks(&mut acknowledged, acked);
        let total: u64 = acknowledged.values().sum();
        rt.block_on(async {
            let store: Arc<dyn CheckpointStore> =
                Arc::new(RedbStore::open(&path).expect("reopen after the kill"));
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

#[test]
fn acknowledgement_lines_parse_and_other_output_does_not() {
    // (A line cut short by the kill could still parse, so the reader above drops lines
    // without a newline before parsing.)
    assert_eq!(
        crash::parse_ack("ack w1-k2 17\n"),
        Some(("w1-k2".into(), 17))
    );
    assert_eq!(crash::parse_ack("running 1 test"), None);
    assert_eq!(crash::parse_ack("ack w1-k2"), None);
    assert_eq!(crash::parse_ack("ack w1-k2 x"), None);
}
