//! Tenant limits over HTTP: the demo limits `initech`; limits written through the admin
//! config API apply to the next call, and past its burst a tenant gets 429
//! `rate_limited` with `Retry-After` while the others go on; invalid limits are refused
//! with 422; a tenant sees its own usage only, the admin everyone's, and the metrics
//! count the throttles.

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
        json!({"rate": 1, "concurrency": 0, "fair_share": 0})
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
