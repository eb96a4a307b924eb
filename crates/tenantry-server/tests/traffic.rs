//! A tenant's recent calls over HTTP, as `/usage` reports them for the dashboard: the
//! rate, the latency percentiles and the failed calls by kind, counted for that tenant
//! only, over whole seconds, and forgotten at offboarding.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

async fn recent_calls(c: &Client, p: &str, key: &str) -> Value {
    let r = c.get(&format!("/v1/partitions/{p}/usage"), Some(key)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["result"]["recent_calls"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_calls_count_one_tenants_answers_by_kind_with_their_latency() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let before = recent_calls(&c, "acme", ACME).await;
    assert_eq!(before["calls"], 0);
    assert_eq!(before["p99_ms"], Value::Null);

    let sql = json!({"sql": "select 1"});
    for _ in 0..20 {
        let r = c.invoke("acme", "tenant-db.query", "", ACME, &sql).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // 404: no such handler; 504: the handler outlived the call's timeout.
    let r = c.invoke("acme", "tenant-db.nope", "", ACME, &sql).await;
    assert_eq!(r.status, 404);
    let r = c
        .invoke(
            "acme",
            "workspace_workers.work",
            "?key=slow&timeout_ms=50",
            ACME,
            &json!({"millis": 300}),
        )
        .await;
    assert_eq!(r.status, 504);

    // Counted once their second is whole.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let acme = recent_calls(&c, "acme", ACME).await;
    assert_eq!(acme["calls"], 22, "{acme}");
    assert_eq!((&acme["errors"], &acme["rejected"]), (&json!(1), &json!(1)));
    assert!(acme["per_sec"].as_f64().unwrap() > 0.0, "{acme}");
    let (p50, p99) = (
        acme["p50_ms"].as_f64().unwrap(),
        acme["p99_ms"].as_f64().unwrap(),
    );
    // The timed-out call waited 50 ms: it is the slowest of 22, so above the p99's rank.
    assert!(p50 > 0.0 && p50 <= p99 && p99 >= 50.0, "{acme}");
    // Another tenant made none, and the admin's listing says the same.
    assert_eq!(recent_calls(&c, "globex", GLOBEX).await["calls"], 0);
    let all = c.get("/v1/admin/usage", Some(ADMIN)).await.json();
    assert_eq!(all["result"]["acme"]["recent_calls"]["calls"], 22);
    assert_eq!(all["result"]["globex"]["recent_calls"]["calls"], 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_forgets_a_tenants_calls() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let key = c
        .onboard(
            &json!({"partition": "hooli", "config": {"db_url": "postgres://db/hooli"},
            "instances": [{"factory": "tenant-db", "name": "tenant-db-hooli"}]}),
        )
        .await;
    let sql = json!({"sql": "select 1"});
    for _ in 0..3 {
        assert_eq!(
            c.invoke("hooli", "tenant-db.query", "", &key, &sql)
                .await
                .status,
            200
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(recent_calls(&c, "hooli", &key).await["calls"], 3);
    let off = c.delete("/v1/admin/partitions/hooli", Some(ADMIN)).await;
    assert_eq!(off.status, 200, "{}", off.text());
    let key = c
        .onboard(&json!({"partition": "hooli", "restore": true}))
        .await;
    assert_eq!(recent_calls(&c, "hooli", &key).await["calls"], 0);
    server.shutdown().await;
}
