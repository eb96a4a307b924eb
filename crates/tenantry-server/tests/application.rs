//! An application of one's own, served by the same gateway: its agents are routed,
//! documented, onboarded, checkpointed and kept across a restart, and nothing of the demo
//! is there.

mod common;

#[path = "../examples/shop/agents.rs"]
mod shop;

use common::*;
use serde_json::json;
use tenantry_server::start_application;

const SHOP: &str = r#"
[[tenants]]
name = "hooli"
# sha256("hooli-key")
api_keys_sha256 = ["HOOLI_HASH"]

[managers.carts]
idle_timeout_secs = 60
"#;

fn shop_settings(dir: &std::path::Path) -> tenantry_server::Settings {
    let file = SHOP.replace("HOOLI_HASH", &tenantry_server::keys::hash_hex("hooli-key"));
    settings(dir, Some(&file))
}

#[tokio::test]
async fn a_user_application_is_served_routed_documented_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_application(&shop::application(), shop_settings(dir.path()), None)
        .await
        .unwrap();
    let c = Client { addr: server.addr };
    let add = |tenant: &'static str, key: String, sku: &'static str| async move {
        c.invoke(
            tenant,
            "carts.add",
            "?key=alice",
            &key,
            &json!({"sku": sku, "qty": 1}),
        )
        .await
    };
    assert_eq!(
        add("hooli", "hooli-key".into(), "tea").await.json()["result"],
        1
    );
    assert_eq!(
        add("hooli", "hooli-key".into(), "milk").await.json()["result"],
        2
    );
    let r = c
        .invoke(
            "hooli",
            "ledgers.debit",
            "?key=acct",
            "hooli-key",
            &json!({"cents": 5}),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "insufficient_funds"));
    let r = c
        .invoke(
            "hooli",
            "ledgers.credit",
            "?key=acct",
            "hooli-key",
            &json!({"cents": 500}),
        )
        .await;
    assert_eq!(r.json()["result"], 500);

    // Its routes are documented from its own handlers; the demo's are not there.
    let doc = c.get("/openapi.json", Some("hooli-key")).await.json();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/partitions/{partition}/invoke/carts.add"));
    assert!(paths.contains_key("/v1/partitions/{partition}/invoke/ledgers.debit"));
    assert!(!doc.to_string().contains("tenant-db") && !doc.to_string().contains("workspace"));
    let add_op = &paths["/v1/partitions/{partition}/invoke/carts.add"]["post"];
    let body = &add_op["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["properties"]["qty"]["maximum"], 99);

    // The admin onboards a tenant of its own; tenants stay apart.
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "initrode"}),
        )
        .await;
    let key = r.json()["result"]["api_key"].as_str().unwrap().to_owned();
    assert_eq!(
        add("initrode", key.clone(), "coffee").await.json()["result"],
        1
    );
    let lines = c
        .invoke("initrode", "carts.lines", "?key=alice", &key, &json!({}))
        .await
        .json();
    assert_eq!(lines["result"], json!([{"sku": "coffee", "qty": 1}]));
    // Onboarding makes instances of the application's factories only.
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "x", "instances": [{"factory": "tenant-db", "name": "t-x"}]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    server.shutdown().await;

    // A restart on the same data keeps the tenants, their keys and their agents' state.
    let server = start_application(&shop::application(), shop_settings(dir.path()), None)
        .await
        .unwrap();
    let c = Client { addr: server.addr };
    let lines = c
        .invoke(
            "hooli",
            "carts.lines",
            "?key=alice",
            "hooli-key",
            &json!({}),
        )
        .await
        .json();
    assert_eq!(
        lines["result"],
        json!([{"sku": "tea", "qty": 1}, {"sku": "milk", "qty": 1}])
    );
    let lines = c
        .invoke("initrode", "carts.lines", "?key=alice", &key, &json!({}))
        .await;
    assert_eq!(lines.json()["result"], json!([{"sku": "coffee", "qty": 1}]));
    server.shutdown().await;
}

#[tokio::test]
async fn settings_for_a_manager_the_application_lacks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(
        dir.path(),
        Some("[managers.workspace_workers]\nmailbox_capacity = 4\n"),
    );
    let e = start_application(&shop::application(), s, None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no such manager") && e.contains("carts, ledgers"),
        "{e}"
    );
}
