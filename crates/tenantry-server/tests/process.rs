//! End-to-end tests of the `tenantry` binary: SIGTERM under load loses no acknowledged
//! write, restart on the same data directory keeps state, and the process's switches
//! (metric partition labels) take effect.

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[tokio::test]
async fn sigterm_during_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let proc = spawn_binary(dir.path(), &[]).await;
    let c = proc.client();
    assert_eq!(c.get("/readyz", None).await.status, 200);

    // 16 writers, each appending numbered notes to its own worker as fast as it can.
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..16 {
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = 0u64;
            for i in 1..=100_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = serde_json::to_vec(&json!({"text": format!("{i}")})).unwrap();
                let path = format!("/v1/partitions/acme/invoke/workspace_workers.note?key=w{w}");
                match request(c.addr, "POST", &path, Some(ACME), Some(&body)).await {
                    Ok(r) if r.status == 200 => {
                        assert_eq!(r.json()["result"], i, "notes are appended in order");
                        acked = i;
                    }
                    // Refused or cut off while shutting down: not acknowledged.
                    _ => break,
                }
            }
            (w, acked)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = proc.terminate().await;
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "exit status {status:?}");
    let mut acked = BTreeMap::new();
    for w in writers {
        let (w, n) = w.await.unwrap();
        acked.insert(w, n);
    }
    assert!(acked.values().sum::<u64>() > 16, "the load ran: {acked:?}");

    let proc = spawn_binary(dir.path(), &[]).await;
    let c = proc.client();
    for (w, n) in &acked {
        let r = c
            .invoke(
                "acme",
                "workspace_workers.notes",
                &format!("?key=w{w}"),
                ACME,
                &json!({}),
            )
            .await;
        let notes: Vec<String> = serde_json::from_value(r.json()["result"].clone()).unwrap();
        assert!(
            notes.len() as u64 >= *n,
            "worker {w}: {} notes kept, {n} acknowledged",
            notes.len()
        );
        for (i, note) in notes.iter().enumerate() {
            assert_eq!(note, &(i + 1).to_string(), "worker {w}: notes in order");
        }
    }
    assert!(proc.terminate().await.success());
}

#[tokio::test]
async fn restart_keeps_tenants_and_metrics_labels_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let proc = spawn_binary(dir.path(), &[]).await;
    let c = proc.client();
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "umbrella", "config": {"db_url": "pg://u"},
            "instances": [{"factory": "tenant-db", "name": "tenant-db-umbrella"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let key = r.json()["result"]["api_key"].as_str().unwrap().to_owned();
    let r = c
        .invoke(
            "umbrella",
            "workspace_workers.note",
            "?key=k",
            &key,
            &json!({"text": "kept"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(proc.terminate().await.success());

    let proc = spawn_binary(
        dir.path(),
        &[("TENANTRY_METRICS_PARTITION_LABELS", "false")],
    )
    .await;
    let c = proc.client();
    let v = c
        .invoke(
            "umbrella",
            "workspace_workers.notes",
            "?key=k",
            &key,
            &json!({}),
        )
        .await
        .json();
    assert_eq!(v["result"], json!(["kept"]));
    let v = c
        .invoke(
            "umbrella",
            "tenant-db.query",
            "",
            &key,
            &json!({"sql": "x"}),
        )
        .await
        .json();
    assert_eq!(v["result"]["db_url"], "pg://u");
    let m = c.get("/metrics", Some(ADMIN)).await.text();
    assert!(m.contains("partition=\"*\""), "{m}");
    assert!(
        !m.contains("partition=\"umbrella\"") && !m.contains("partition=\"acme\""),
        "{m}"
    );
    assert!(proc.terminate().await.success());
}
