//! Crash safety of the redb store: a child process hibernates instances as fast as it can
//! and prints every acknowledged checkpoint; the test kills it with SIGKILL at a random
//! moment, reopens the store, and checks that every acknowledged checkpoint is there,
//! thaws, and is intact.
//!
//! The child is this very test binary, re-run with only the ignored
//! `crash_child_hibernates_until_killed` test selected and the store path in
//! `TENANTRY_CRASH_REDB_PATH`, so no extra binary has to be built first.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;
use tenantry::store::conformance::crash;
use tenantry::store::{CheckpointStore, RedbStore};

const CHILD_ENV: &str = "TENANTRY_CRASH_REDB_PATH";
const CHILD_TEST: &str = "crash_child_hibernates_until_killed";

/// The child's body: does nothing unless started by the crash test.
#[test]
#[ignore = "the child process of the crash tests; run by them, not on its own"]
fn crash_child_hibernates_until_killed() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(async move {
        let store = RedbStore::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        crash::hibernate_until_killed(Arc::new(store), std::io::stdout(), 8, 16).await
    });
    if let Err(e) = result {
        eprintln!("crash writer failed: {e}");
        std::process::exit(3);
    }
}

fn random_below(n: u64) -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % n.max(1)
}

/// Runs the child on `path` until it has acknowledged some hibernations, kills it with
/// SIGKILL after a random delay, and returns the highest acknowledged count per key.
fn run_child_and_kill(path: &Path) -> BTreeMap<String, u64> {
    let exe = std::env::current_exe().expect("test binary path");
    let mut child = Command::new(exe)
        .args([
            CHILD_TEST,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the crash writer");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acked: BTreeMap<String, u64> = BTreeMap::new();
        let mut lines = BufReader::new(stdout);
        let mut line = Vec::new();
        // A line cut short by the kill has no newline and acknowledges nothing.
        while lines.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            if line.ends_with(b"\n") {
                if let Some((key, count)) = crash::parse_ack(&String::from_utf8_lossy(&line)) {
                    let slot = acked.entry(key).or_default();
                    *slot = (*slot).max(count);
                    let _ = tx.send(());
                }
            }
            line.clear();
        }
        acked
    });
    // Wait for the first acknowledgement, then let it run for a random while.
    let first = rx.recv_timeout(Duration::from_secs(20));
    if first.is_err() {
        let _ = child.kill();
        let _ = child.wait();
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        panic!("the crash writer acknowledged nothing within 20 s; stderr:\n{err}");
    }
    std::thread::sleep(Duration::from_millis(100 + random_below(900)));
    if let Ok(Some(status)) = child.try_wait() {
        let mut err = String::new();
        let _ = stderr.read_to_string(&mut err);
        panic!("the crash writer exited by itself ({status}); stderr:\n{err}");
    }
    child.kill().expect("SIGKILL the crash writer");
    let _ = child.wait();
    reader.join().expect("stdout reader")
}

#[test]
fn every_checkpoint_acknowledged_before_a_sigkill_survives_in_redb() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("crash.redb");
    let mut acknowledged: BTreeMap<String, u64> = BTreeMap::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    for round in 1..=3 {
        let acked = run_child_and_kill(&path);
        assert!(!acked.is_empty(), "round {round}: nothing acknowledged");
        for (key, count) in acked {
            let slot = acknowledged.entry(key).or_default();
            *slot = (*slot).max(count);
        }
        let total: u64 = acknowledged.values().sum();
        rt.block_on(async {
            let store: Arc<dyn CheckpointStore> =
                Arc::new(RedbStore::open(&path).expect("reopen after the kill"));
            crash::verify_acknowledged(store, &acknowledged)
                .await
                .unwrap_or_else(|e| panic!("round {round} ({total} acknowledged): {e}"));
        });
        eprintln!(
            "round {round}: {} keys, {total} acknowledged hibernations verified",
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
