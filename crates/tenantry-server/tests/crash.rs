//! SIGKILL through the server: 16 writers append unique ids to 200 keyed agents over HTTP,
//! the `tenantry` process is killed with SIGKILL at a random moment, restarted on the same
//! store, and every id whose request was answered 200 must be there, exactly once, in the
//! order it was acknowledged: if id A was acknowledged before id B was sent, A comes
//! first. Several rounds per store, each checking every round so far. On redb (the
//! default) and on PostgreSQL (skipped when `TENANTRY_TEST_POSTGRES_URL` is not set).

mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const WRITERS: usize = 16;
const AGENTS: usize = 200;
const ROUNDS: usize = 3;

use tenantry_testing::random_below;

/// Writer `w` of round `round`: appends `round-w-i` to the agents in turn, until the
/// server stops answering.
async fn writer(
    addr: std::net::SocketAddr,
    round: usize,
    w: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Sent> {
    let mut out = Vec::new();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let agent = format!("r{round}-a{}", (i * WRITERS + w) % AGENTS);
        let id = format!("{round}-{w}-{i}");
        let body = serde_json::to_vec(&json!({ "text": id })).unwrap();
        let path = format!("/v1/partitions/acme/invoke/workspace_workers.note?key={agent}");
        let sent = Instant::now();
        let answer = request(addr, "POST", &path, Some(ACME), Some(&body)).await;
        let acked = matches!(&answer, Ok(r) if r.status == 200).then(Instant::now);
        let refused = !matches!(&answer, Ok(r) if r.status == 200);
        out.push(Sent {
            id,
            agent,
            sent,
            acked,
        });
        if refused {
            break;
        }
    }
    out
}

/// Checks every agent written so far against what was sent to it.
async fn verify(c: Client, sent: &[Sent], round: usize) {
    let checked = verify_agents(c.addr, &format!("round {round}"), sent).await;
    eprintln!("round {round}: {checked} acknowledged ids verified");
}

/// Rounds of: start the server, load it, SIGKILL it at a random moment; restart and
/// verify every round so far.
async fn kill_rounds(extra_env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let mut sent: Vec<Sent> = Vec::new();
    for round in 1..=ROUNDS {
        let mut proc = spawn_binary(dir.path(), extra_env).await;
        let addr = proc.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(addr, round, w, stop.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(300 + random_below(900))).await;
        proc.child.start_kill().expect("SIGKILL");
        let _ = proc.child.wait().await;
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            sent.extend(w.await.unwrap());
        }
        let acked = sent.iter().filter(|s| s.acked.is_some()).count();
        assert!(
            acked > WRITERS,
            "round {round}: the load ran ({acked} acked)"
        );

        let proc = spawn_binary(dir.path(), extra_env).await;
        verify(proc.client(), &sent, round).await;
        assert!(proc.terminate().await.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write_on_redb() {
    kill_rounds(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write_on_postgres() {
    let url = match std::env::var("TENANTRY_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            eprintln!("skipped: TENANTRY_TEST_POSTGRES_URL is not set");
            return;
        }
    };
    let schema = format!("tenantry_test_crash_{:016x}", random_below(u64::MAX));
    kill_rounds(&[
        ("TENANTRY_POSTGRES_URL", url.as_str()),
        ("TENANTRY_POSTGRES_SCHEMA", schema.as_str()),
    ])
    .await;
    if let Err(e) = tenantry_postgres::PgStore::drop_schema(&url, &schema).await {
        eprintln!("could not drop test schema {schema}: {e}");
    }
}
