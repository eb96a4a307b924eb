//! Tenant limits over HTTP: the demo limits `initech`; limits written through the admin
//! config API apply to the next call, and past its burst a tenant gets 429
//! `rate_limited` with `Retry-After` while the others go on; invalid limits are refused
//! with 422; a tenant sees its own usage only, the admin everyone's, and the metrics
//! count the throttles. What a tenant holds is limited too: live agents (the least
//! recently used hibernate, keeping their notes), stored bytes (507), the largest state
//! (413) and reply (422), each with its own code; stored bytes are counted from the first
//! write to the purge.

mod common;

use common::*;
use serde_json::json;

const QUERY: &str = "/invoke/tenant-db.query";

fn query(p: &str) -> String {
    format!("/v1/partitions/{p}{QUERY}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_throttle_their_tenant_only_change_live_and_show_in_usage_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let sql = json!({"sql": "select 1"});

    // The demo limits initech (1,000 calls/s, bursts of 200); the others have none.
    let usage = |p: &'static str, key: &'static str| {
        let c = &c;
        async move {
            c.get(&format!("/v1/partitions/{p}/usage"), Some(key))
                .await
                .json()["result"]
                .clone()
        }
    };
    assert_eq!(
        usage("initech", INITECH).await["limits"],
        json!({"rate_per_sec": 1000.0, "burst": 200})
    );
    assert_eq!(usage("acme", ACME).await["limits"], json!({}));

    // Limits are config, applied on the next call: three calls, then 429.
    let limits = "/v1/admin/config/tenants.initech.limits";
    let r = c
        .put(
            limits,
            Some(ADMIN),
            &json!({"rate_per_sec": 0.5, "burst": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..3 {
        assert_eq!(
            c.post(&query("initech"), Some(INITECH), &sql).await.status,
            200
        );
    }
    let refused = c.post(&query("initech"), Some(INITECH), &sql).await;
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (429, "rate_limited"),
        "{}",
        refused.text()
    );
    assert_eq!(refused.header("retry-after"), Some("2"), "a call every 2 s");
    for _ in 0..20 {
        let r = c.post(&query("acme"), Some(ACME), &sql).await;
        assert_eq!(r.status, 200, "acme is not held by initech's limit");
    }
    let initech = usage("initech", INITECH).await;
    assert_eq!(initech["admitted"], 3);
    assert_eq!(
        initech["throttled"],
        json!({"rate": 1, "concurrency": 0, "fair_share": 0, "instances": 0})
    );
    assert_eq!(initech["in_flight"], 0);
    // Another tenant's usage is not a tenant's to see; the admin sees everyone's.
    let r = c.get("/v1/partitions/acme/usage", Some(INITECH)).await;
    assert_eq!(r.status, 403);
    let all = c.get("/v1/admin/usage", Some(ADMIN)).await.json();
    assert_eq!(all["result"]["acme"]["admitted"], 20);
    assert_eq!(all["result"]["initech"]["throttled"]["rate"], 1);
    let r = c
        .put(
            &format!("{limits}.rate_per_sec"),
            Some(ADMIN),
            &json!(100000),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        c.post(&query("initech"), Some(INITECH), &sql).await.status,
        200
    );
    for (key, value) in [
        ("tenants.initech.limits.burst", json!(0)),
        ("tenants.initech.limits", json!({"rate": 5})),
        ("limits", json!({"concurrency": -1})),
        ("tenants.initech", json!({"limits": "fast"})),
    ] {
        let r = c
            .put(&format!("/v1/admin/config/{key}"), Some(ADMIN), &value)
            .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (422, "invalid_limits"),
            "{key}: {}",
            r.text()
        );
    }
    assert_eq!(
        c.post(&query("initech"), Some(INITECH), &sql).await.status,
        200
    );
    // Onboarding with invalid limits is refused too.
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "hooli", "config": {"limits": {"weight": 0}}}),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_limits"));

    let metrics = c.get("/metrics", Some(ADMIN)).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tenantry_throttled_total")
                && l.contains(r#"partition="initech""#)
                && l.contains(r#"limit="rate""#)),
        "{metrics}"
    );
    assert!(metrics.contains("tenantry_calls_in_flight"), "{metrics}");
    server.shutdown().await;
}

fn invoke(handler: &str, key: &str) -> String {
    format!("/v1/partitions/hooli/invoke/workspace_workers.{handler}?key={key}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_tenant_holds_is_limited_with_a_code_per_limit_and_counted_until_the_purge() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let onboard = |limits: serde_json::Value| {
        let c = &c;
        async move {
            let r = c
                .post(
                    "/v1/admin/partitions",
                    Some(ADMIN),
                    &json!({"partition": "hooli", "config": {"limits": limits}}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["result"]["api_key"].as_str().unwrap().to_owned()
        }
    };
    let key = onboard(json!({"max_instances": 2})).await;
    let usage = || {
        let (c, key) = (&c, &key);
        async move {
            let r = c.get("/v1/partitions/hooli/usage", Some(key)).await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["result"].clone()
        }
    };
    let note = |worker: &'static str, text: String| {
        let (c, key) = (&c, &key);
        async move {
            c.post(&invoke("note", worker), Some(key), &json!({ "text": text }))
                .await
        }
    };
    let set = |limits: serde_json::Value| {
        let c = &c;
        async move {
            let r = c
                .put(
                    "/v1/admin/config/tenants.hooli.limits",
                    Some(ADMIN),
                    &limits,
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };

    // Live agents: at the cap of 2, the least recently used hibernates to make room.
    for (i, worker) in ["w1", "w2", "w3"].into_iter().enumerate() {
        let r = note(worker, format!("note {i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let u = usage().await;
    assert_eq!(u["live_instances"], 2, "{u}");
    assert_eq!(u["throttled"]["instances"], 0);
    let r = c.post(&invoke("notes", "w1"), Some(&key), &json!({})).await;
    assert_eq!(
        r.json()["result"],
        json!(["note 0"]),
        "hibernation kept w1's note"
    );
    let stored = u["stored"]["bytes"].as_u64().unwrap();
    assert!(stored > 0, "three durable workers are stored: {u}");

    // The largest state: 413 state_too_large, and the worker keeps what it had.
    set(json!({"max_state_bytes": 600})).await;
    assert_eq!(
        note("w1", "a".repeat(300)).await.status,
        200,
        "under the limit"
    );
    let r = note("w1", "b".repeat(400)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (413, "state_too_large"),
        "{}",
        r.text()
    );
    let r = c.post(&invoke("notes", "w1"), Some(&key), &json!({})).await;
    assert_eq!(r.json()["result"].as_array().unwrap().len(), 2);

    // Stored bytes: 507 storage_limit_exceeded past them; nothing of the call is stored.
    let before = usage().await["stored"]["bytes"].as_u64().unwrap();
    set(json!({"max_stored_bytes": before + 100})).await;
    assert_eq!(
        note("w2", "c".repeat(50)).await.status,
        200,
        "under the limit"
    );
    let r = note("w2", "d".repeat(500)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (507, "storage_limit_exceeded"),
        "{}",
        r.text()
    );
    let after = usage().await["stored"]["bytes"].as_u64().unwrap();
    assert!(
        after <= before + 100,
        "{after} stored past {}",
        before + 100
    );

    // The largest reply: 422 reply_too_large.
    set(json!({"max_reply_bytes": 20})).await;
    let r = c.post(&invoke("notes", "w1"), Some(&key), &json!({})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (422, "reply_too_large"),
        "{}",
        r.text()
    );

    // Refused activation: both live agents are busy working, none may hibernate.
    set(json!({"max_instances": 1})).await;
    let busy = {
        let (c, key) = (c, key.clone());
        tokio::spawn(async move {
            c.post(&invoke("work", "w1"), Some(&key), &json!({"millis": 800}))
                .await
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = c.post(&invoke("notes", "w9"), Some(&key), &json!({})).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (429, "instance_limit_reached"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(busy.await.unwrap().status, 200);
    assert_eq!(usage().await["throttled"]["instances"], 1);
    let metrics = c.get("/metrics", Some(ADMIN)).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tenantry_stored_bytes") && l.contains(r#"partition="hooli""#)),
        "{metrics}"
    );

    // Offboarded with purge, then onboarded again: nothing is stored any more.
    let r = c
        .delete("/v1/admin/partitions/hooli?purge=true", Some(ADMIN))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let key = onboard(json!({})).await;
    let r = c.get("/v1/partitions/hooli/usage", Some(&key)).await;
    assert_eq!(
        r.json()["result"]["stored"],
        json!({"bytes": 0, "records": 0}),
        "{}",
        r.text()
    );
    server.shutdown().await;
}
