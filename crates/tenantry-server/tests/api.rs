//! End-to-end tests of every route and every error status, over real HTTP against
//! servers started in-process on ephemeral ports with temporary data directories.

mod common;

use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tenantry_testing::OutageStore;

const QUERY: &str = "tenant-db.query";

#[tokio::test]
async fn every_route_answers_for_the_demo_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };

    assert_eq!(c.get("/healthz", None).await.status, 200);
    assert_eq!(
        c.get("/readyz", None).await.json()["result"]["status"],
        "ready"
    );

    // invoke: factory + target, routed to the tenant's own instance and config
    let r = c
        .invoke(
            "acme",
            QUERY,
            "",
            ACME,
            &json!({"sql": "select 1", "limit": 2}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["result"]["instance"], "tenant-db-acme");
    assert_eq!(v["result"]["db_url"], "postgres://db1.prod/acme");
    assert_eq!(
        v["result"]["rows"],
        json!(["pg:acme-row-1", "pg:acme-row-2"])
    );
    let v = c
        .invoke("globex", "mysql-db.query", "", GLOBEX, &json!({"sql": "x"}))
        .await
        .json();
    assert_eq!(v["result"]["instance"], "mysql-db-globex");

    // handlers: own routes only, with schemas
    let v = c
        .get("/v1/partitions/acme/handlers", Some(ACME))
        .await
        .json();
    let routes: Vec<&str> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["route"].as_str().unwrap())
        .collect();
    assert!(routes.contains(&"tenant-db-acme.query"), "{routes:?}");
    assert!(routes.contains(&QUERY));
    assert!(routes.contains(&"workspace_workers.note"));
    assert!(
        !routes
            .iter()
            .any(|r| r.contains("globex") || r.contains("initech") || r.starts_with("mysql-db")),
        "{routes:?}"
    );
    let query = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["route"] == QUERY)
        .unwrap();
    assert!(
        query["params_schema"]["properties"]["sql"].is_object(),
        "{query}"
    );
    assert!(!query["description"].as_str().unwrap().is_empty());

    // keyed invoke, instances, stop
    let r = c
        .invoke(
            "acme",
            "workspace_workers.note",
            "?key=k1",
            ACME,
            &json!({"text": "a"}),
        )
        .await;
    assert_eq!(r.json()["result"], 1);
    let v = c
        .get("/v1/partitions/acme/instances", Some(ACME))
        .await
        .json();
    assert_eq!(v["result"]["components"][0]["name"], "tenant-db-acme");
    assert_eq!(v["result"]["components"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["result"]["keyed"],
        json!([{"manager": "workspace_workers", "factory": "worker", "key": "k1",
                "pod": false, "status": {"state": "active"}}])
    );
    let r = c
        .delete(
            "/v1/partitions/acme/instances/workspace_workers/k1",
            Some(ACME),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = c
        .get("/v1/partitions/acme/instances", Some(ACME))
        .await
        .json();
    assert_eq!(v["result"]["keyed"], json!([]));
    // hibernated, then thawed on the next call with its state
    let r = c
        .invoke(
            "acme",
            "workspace_workers.note",
            "?key=k1",
            ACME,
            &json!({"text": "b"}),
        )
        .await;
    assert_eq!(r.json()["result"], 2);

    // pods: get + reconcile, snapshot, ensure node
    let r = c
        .post(
            "/v1/partitions/acme/pods/workspace_pods/w1",
            Some(ACME),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["report"]["completed"], json!(["coordinator"]));
    let v = c
        .get("/v1/partitions/acme/pods/workspace_pods/w1", Some(ACME))
        .await
        .json();
    let nodes = v["result"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[1]["name"], "reviewer");
    assert_eq!(nodes[1]["status"], "stopped");
    let r = c
        .post(
            "/v1/partitions/acme/pods/workspace_pods/w1/nodes/reviewer",
            Some(ACME),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["nodes"][1]["status"], "adopted");

    // admin: list tenants, config read and write (reactive: the next query sees it)
    let v = c.get("/v1/admin/partitions", Some(ADMIN)).await.json();
    let names: Vec<&str> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["partition"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "globex", "initech"]);
    let r = c
        .put(
            "/v1/admin/config/tenants.acme.db_url",
            Some(ADMIN),
            &json!("postgres://new/acme"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = c
        .get("/v1/admin/config/tenants.acme.db_url", Some(ADMIN))
        .await
        .json();
    assert_eq!(v["result"]["value"], "postgres://new/acme");
    let v = c
        .invoke("acme", QUERY, "", ACME, &json!({"sql": "x"}))
        .await
        .json();
    assert_eq!(v["result"]["db_url"], "postgres://new/acme");
    let v = c
        .invoke("globex", QUERY, "", GLOBEX, &json!({"sql": "x"}))
        .await
        .json();
    assert_eq!(v["result"]["db_url"], "postgres://db2.prod/globex");

    // openapi: public doc names no tenant; a tenant's doc adds only its own instance routes
    let doc = c.get("/openapi.json", None).await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        !paths.contains_key("/v1/admin/partitions"),
        "only the admin's lists admin routes"
    );
    assert!(paths.contains_key("/v1/partitions/{partition}/pods/{manager}/{key}/nodes/{node}"));
    let q = &paths["/v1/partitions/{partition}/invoke/tenant-db.query"]["post"];
    assert!(
        q["requestBody"]["content"]["application/json"]["schema"]["properties"]["sql"].is_object(),
        "{q}"
    );
    let text = doc.to_string();
    assert!(
        !text.contains("acme") && !text.contains("globex"),
        "public doc names a tenant"
    );
    let doc = c.get("/openapi.json", Some(ACME)).await.text();
    assert!(doc.contains("tenant-db-acme.query") && !doc.contains("globex"));

    // metrics: Prometheus text with partition labels, for the admin
    let m = c.get("/metrics", Some(ADMIN)).await;
    assert_eq!(m.status, 200);
    assert!(
        m.text().contains("tenantry_handler_calls_total"),
        "{}",
        m.text()
    );
    assert!(m.text().contains("partition=\"acme\""));
    // Handler durations are a histogram with the configured buckets (which add up across
    // nodes), not a summary of quantiles.
    let text = m.text();
    let durations: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tenantry_handler_duration_seconds"))
        .filter(|l| l.contains("partition=\"acme\"") && l.contains("handler=\"query\""))
        .collect();
    assert!(
        !durations.is_empty() && durations.iter().all(|l| !l.contains("quantile=")),
        "{durations:?}"
    );
    let bounds: Vec<f64> = durations
        .iter()
        .filter(|l| l.starts_with("tenantry_handler_duration_seconds_bucket{"))
        .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
        .map(|le| {
            if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            }
        })
        .collect();
    let mut expected = tenantry_server::telemetry::HANDLER_SECONDS_BUCKETS.to_vec();
    expected.push(f64::INFINITY);
    assert_eq!(bounds, expected, "{durations:?}");

    let summary = server.shutdown().await;
    assert!(summary.drained);
    assert_eq!(summary.failed, 0);
}

/// A path the router matches to the invoke route but the route matched before the router
/// declines (a percent-escaped segment), so each case is answered once by each.
fn escaped(path: &str, at: &str) -> String {
    let i = path.find(at).expect("the part to escape is in the path");
    let byte = path.as_bytes()[i];
    format!("{}%{byte:02X}{}", &path[..i], &path[i + 1..])
}

#[tokio::test]
async fn invoke_answers_alike_before_the_router_and_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    const ACME_QUERY: &str = "/v1/partitions/acme/invoke/tenant-db.query";
    let query = br#"{"sql": "select 1", "limit": 2}"#.as_slice();
    let big = vec![b' '; 2 * 1024 * 1024];
    // (path, the part escaped for the router, key, body, status expected)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [u8], u16);
    let cases: [Case; 13] = [
        (ACME_QUERY, "-db", Some(ACME), query, 200),
        (ACME_QUERY, "acme", Some(ACME), query, 200),
        (
            "/v1/partitions/acme/invoke/tenant-db.query?timeout_ms=500",
            "-db",
            Some(ACME),
            query,
            200,
        ),
        (ACME_QUERY, "acme", Some(ADMIN), query, 200),
        (ACME_QUERY, "-db", None, query, 401),
        (ACME_QUERY, "-db", Some("no-such-key"), query, 401),
        (ACME_QUERY, "acme", Some(GLOBEX), query, 403),
        (
            "/v1/partitions/Not!Valid/invoke/tenant-db.query",
            "Not",
            Some(ACME),
            query,
            400,
        ),
        (
            "/v1/partitions/nobody/invoke/tenant-db.query",
            "nobody",
            Some(ADMIN),
            query,
            404,
        ),
        (
            "/v1/partitions/acme/invoke/tenant-db.query?timeout_ms=0",
            "-db",
            Some(ACME),
            query,
            400,
        ),
        (ACME_QUERY, "-db", Some(ACME), b"{not json", 400),
        (
            "/v1/partitions/acme/invoke/no-such.handler",
            "-such",
            Some(ACME),
            query,
            404,
        ),
        (ACME_QUERY, "-db", Some(ACME), &big, 413),
    ];
    for (path, at, key, body, status) in cases {
        let before = c.post_raw(path, key, body).await;
        let through = c.post_raw(&escaped(path, at), key, body).await;
        assert_eq!(before.status, status, "{path}: {}", before.text());
        assert_eq!(
            (through.status, through.json()),
            (before.status, before.json()),
            "{path} answered alike with {at:?} escaped"
        );
    }
    // What is not a plain invoke request is the router's, and answered as before.
    for unrouted in [
        "/v1/partitions/acme/invoke/tenant-db.query/",
        "/v1/partitions/acme/x/invoke/tenant-db.query",
    ] {
        let r = c.post_raw(unrouted, Some(ACME), query).await;
        assert_eq!(r.status, 404, "{unrouted}: {}", r.text());
    }
    let r = c
        .post_raw("/v1/partitions//invoke/tenant-db.query", Some(ACME), query)
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_partition".to_owned()));
    let r = c
        .get("/v1/partitions/acme/invoke/tenant-db.query", Some(ACME))
        .await;
    assert_eq!((r.status, r.code()), (405, "method_not_allowed".to_owned()));
    server.shutdown().await;
}

#[tokio::test]
async fn errors_have_the_documented_statuses_and_leak_no_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let url = |p: &str, h: &str| format!("/v1/partitions/{p}/invoke/{h}");

    // 400 malformed JSON, invalid partition name
    let r = c
        .post_raw(&url("acme", QUERY), Some(ACME), b"{\"sql\": ")
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_json"));
    let r = c
        .post(&url("-acme", QUERY), Some(ACME), &json!({"sql": "x"}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_partition"));
    let r = c
        .post(&url("acme", QUERY), Some(ACME), &json!({"sql": "x"}))
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .invoke(
            "acme",
            "workspace_workers.note",
            "?key=%5Bbad",
            ACME,
            &json!({"text": "x"}),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_key"));

    // 401 missing or unknown key (checked before anything else)
    let r = c
        .post(&url("acme", QUERY), None, &json!({"sql": "x"}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    let r = c
        .post(&url("acme", QUERY), Some("nope"), &json!({"sql": "x"}))
        .await;
    assert_eq!(r.status, 401);
    let r = c.get("/v1/admin/partitions", None).await;
    assert_eq!(r.status, 401);

    // 403 another partition's key; a tenant key on admin routes. Never says whose key it is.
    for path in [
        url("globex", QUERY),
        "/v1/partitions/globex/handlers".into(),
    ] {
        let r = c.post(&path, Some(ACME), &json!({"sql": "x"})).await;
        let r = if r.status == 405 {
            c.get(&path, Some(ACME)).await
        } else {
            r
        };
        assert_eq!((r.status, r.code().as_str()), (403, "forbidden"), "{path}");
        assert!(!r.text().contains("acme"), "{}", r.text());
    }
    let r = c.get("/v1/partitions/umbrella/instances", Some(ACME)).await;
    assert_eq!(r.status, 403);
    assert!(!r.text().contains("acme"));
    let r = c.get("/v1/admin/partitions", Some(ACME)).await;
    assert_eq!(r.status, 403);
    let r = c
        .put(
            "/v1/admin/config/tenants.globex.db_url",
            Some(ACME),
            &json!("x"),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        c.invoke("globex", QUERY, "", GLOBEX, &json!({"sql": "x"}))
            .await
            .json()["result"]["db_url"],
        "postgres://db2.prod/globex"
    );

    // Pins are cluster mode's: a single process pins nobody (409 to pin, unpinning
    // changes nothing), and a tenant key sees no placement.
    let placement = "/v1/admin/partitions/acme/placement";
    let pin = json!({"nodes": ["n0"]});
    let r = c.put(placement, Some(ADMIN), &pin).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (409, "cluster_off"),
        "{}",
        r.text()
    );
    let r = c.get(placement, Some(ADMIN)).await;
    assert_eq!(
        r.json()["result"],
        json!({"partition": "acme", "pinned": false, "pin": null})
    );
    let r = c
        .get("/v1/admin/partitions/nobody/placement", Some(ADMIN))
        .await;
    assert_eq!(r.status, 404);
    let r = c.delete(placement, Some(ADMIN)).await;
    assert_eq!(
        r.json()["result"],
        json!({"partition": "acme", "pinned": false, "pin": null})
    );
    assert_eq!(
        c.delete("/v1/admin/partitions/nobody/placement", Some(ADMIN))
            .await
            .status,
        404
    );
    assert_eq!(c.put(placement, Some(ACME), &pin).await.status, 403);
    assert_eq!(c.get(placement, Some(ACME)).await.status, 403);

    // 404 unknown handler, another tenant's target or instance, unknown instance, node, pod
    let r = c
        .invoke("acme", "tenant-db.nope", "", ACME, &json!({}))
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = c.invoke("acme", "nothing.here", "", ACME, &json!({})).await;
    assert_eq!(r.status, 404);
    let r = c
        .invoke("acme", "mysql-db.query", "", ACME, &json!({"sql": "x"}))
        .await;
    assert_eq!(
        r.status, 404,
        "acme has no mysql-db; globex's is not reachable"
    );
    assert!(!r.text().contains("globex"));
    let r = c
        .invoke(
            "acme",
            "tenant-db-globex.query",
            "",
            ACME,
            &json!({"sql": "x"}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(!r.text().contains("globex") || r.text().contains("tenant-db-globex.query"));
    let r = c
        .invoke("acme", "workspace_workers.nope", "?key=k", ACME, &json!({}))
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .delete(
            "/v1/partitions/acme/instances/workspace_workers/never",
            Some(ACME),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = c
        .delete(
            "/v1/partitions/acme/instances/tenant-db/tenant-db-acme",
            Some(ACME),
        )
        .await;
    assert_eq!(
        r.status, 404,
        "components are not stopped through tenant routes"
    );
    let r = c
        .get("/v1/partitions/acme/pods/workspace_pods/none", Some(ACME))
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .post(
            "/v1/partitions/acme/pods/workspace_workers/w",
            Some(ACME),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404, "not a pods manager: {}", r.text());
    let r = c
        .post(
            "/v1/partitions/acme/pods/workspace_pods/w/nodes/ghost",
            Some(ACME),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(c.get("/v1/nowhere", None).await.status, 404);
    let r = c.delete("/v1/admin/partitions/umbrella", Some(ADMIN)).await;
    assert_eq!(r.status, 404);

    // 409 conflicts: onboarding a tenant twice, an instance name taken
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "acme"}),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"));
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "umbrella", "instances": [{"factory": "tenant-db", "name": "tenant-db-acme"}]}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    // nothing of the failed onboarding remains
    let v = c.get("/v1/admin/partitions", Some(ADMIN)).await.json();
    assert_eq!(v["result"].as_array().unwrap().len(), 3);

    // 413 over the 1 MiB default
    let big = format!("{{\"sql\": \"{}\"}}", "x".repeat((1 << 20) + 16));
    let r = c
        .post_raw(&url("acme", QUERY), Some(ACME), big.as_bytes())
        .await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));

    // 422 params that fail the schema, naming the field
    let r = c
        .invoke("acme", QUERY, "", ACME, &json!({"limit": 2}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_params"));
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sql"),
        "{}",
        r.text()
    );
    let r = c
        .invoke(
            "acme",
            QUERY,
            "",
            ACME,
            &json!({"sql": "x", "limit": "two"}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.text().contains("limit"), "{}", r.text());
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "x", "instances": [{"name": "n"}]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());

    // 504 handler timeout
    let r = c
        .invoke(
            "acme",
            "workspace_workers.work",
            "?key=slow&timeout_ms=50",
            ACME,
            &json!({"millis": 400}),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (504, "timeout"));

    server.shutdown().await;
}

const LIMITS: &str = r#"
demo = true
[limits]
max_live_instances_per_partition = 3
[managers.workspace_workers]
mailbox_capacity = 1
"#;

#[tokio::test]
async fn full_mailboxes_answer_429_and_the_instance_cap_hibernates_to_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), Some(LIMITS))).await;
    let c = Client { addr: server.addr };
    let work = |ms: u64| json!({"millis": ms});
    // One letter runs, one waits in the mailbox (capacity 1), the third is refused.
    let busy = tokio::spawn(async move {
        c.invoke("acme", "workspace_workers.work", "?key=w", ACME, &work(600))
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let queued = tokio::spawn(async move {
        c.invoke("acme", "workspace_workers.work", "?key=w", ACME, &work(1))
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let r = c
        .invoke("acme", "workspace_workers.work", "?key=w", ACME, &work(1))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (429, "mailbox_full"),
        "{}",
        r.text()
    );
    assert_eq!(busy.await.unwrap().status, 200);
    assert_eq!(queued.await.unwrap().status, 200);

    // At most 3 live agents per partition (`[limits]`, every tenant's default
    // `max_instances`): w plus two more; a fourth key makes room by hibernating the least
    // recently used, an existing one still answers with its notes, and another tenant has
    // its own budget.
    for k in ["a", "b"] {
        let r = c
            .invoke(
                "acme",
                "workspace_workers.note",
                &format!("?key={k}"),
                ACME,
                &json!({"text": "x"}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let r = c
        .invoke(
            "acme",
            "workspace_workers.note",
            "?key=d",
            ACME,
            &json!({"text": "x"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let usage = c.get("/v1/partitions/acme/usage", Some(ACME)).await.json();
    assert_eq!(usage["result"]["live_instances"], 3, "{usage}");
    assert_eq!(usage["result"]["limits"]["max_instances"], 3, "{usage}");
    let r = c
        .invoke(
            "acme",
            "workspace_workers.note",
            "?key=a",
            ACME,
            &json!({"text": "y"}),
        )
        .await;
    assert_eq!(r.json()["result"], 2);
    let r = c
        .invoke(
            "globex",
            "workspace_workers.note",
            "?key=d",
            GLOBEX,
            &json!({"text": "x"}),
        )
        .await;
    assert_eq!(r.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn an_unavailable_store_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let outage = OutageStore::new();
    let store = Arc::new(outage.clone());
    let server = start_with_store(settings(dir.path(), None), store).await;
    let c = Client { addr: server.addr };
    outage.set_down(true);
    // A new keyed instance must read its checkpoint first: the store is down.
    let r = c
        .invoke(
            "acme",
            "workspace_workers.note",
            "?key=n",
            ACME,
            &json!({"text": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "store_unavailable"),
        "{}",
        r.text()
    );
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "umbrella"}),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    // Components need no store.
    assert_eq!(
        c.invoke("acme", QUERY, "", ACME, &json!({"sql": "x"}))
            .await
            .status,
        200
    );
    outage.set_down(false);
    let r = c
        .invoke(
            "acme",
            "workspace_workers.note",
            "?key=n",
            ACME,
            &json!({"text": "x"}),
        )
        .await;
    assert_eq!(r.status, 200);
    server.shutdown().await;
}

#[tokio::test]
async fn two_tenants_with_the_same_keys_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    for (p, key, text) in [
        ("acme", ACME, "a1"),
        ("globex", GLOBEX, "g1"),
        ("acme", ACME, "a2"),
    ] {
        let r = c
            .invoke(
                p,
                "workspace_workers.note",
                "?key=shared",
                key,
                &json!({"text": text}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let notes = |p: &'static str, key: &'static str| async move {
        c.invoke(p, "workspace_workers.notes", "?key=shared", key, &json!({}))
            .await
            .json()["result"]
            .clone()
    };
    assert_eq!(notes("acme", ACME).await, json!(["a1", "a2"]));
    assert_eq!(notes("globex", GLOBEX).await, json!(["g1"]));
    assert_eq!(notes("initech", INITECH).await, json!([]));

    // The same pod key in two tenants: two pods, two child trees.
    for (p, key) in [("acme", ACME), ("globex", GLOBEX)] {
        let r = c
            .post(
                &format!("/v1/partitions/{p}/pods/workspace_pods/ws"),
                Some(key),
                &json!({}),
            )
            .await;
        assert_eq!(r.json()["result"]["pod"]["partition"], p);
    }
    let r = c
        .post(
            "/v1/partitions/acme/pods/workspace_pods/ws/nodes/reviewer",
            Some(ACME),
            &json!({}),
        )
        .await;
    assert_eq!(r.json()["result"]["instance"]["partition"], "acme");
    let v = c
        .get("/v1/partitions/globex/pods/workspace_pods/ws", Some(GLOBEX))
        .await
        .json();
    assert_eq!(
        v["result"]["nodes"][1]["status"], "stopped",
        "globex's reviewer untouched"
    );
    // Stopping acme's instance leaves globex's running.
    let r = c
        .delete(
            "/v1/partitions/acme/instances/workspace_workers/shared",
            Some(ACME),
        )
        .await;
    assert_eq!(r.status, 200);
    let keyed = |v: Value| {
        v["result"]["keyed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["key"] == "shared")
    };
    assert!(!keyed(
        c.get("/v1/partitions/acme/instances", Some(ACME))
            .await
            .json()
    ));
    assert!(keyed(
        c.get("/v1/partitions/globex/instances", Some(GLOBEX))
            .await
            .json()
    ));
    server.shutdown().await;
}

/// Restarts race an instance's first turn (its effect's first run, on a worker) against
/// the server's own start-up: every restart must find the saved config already in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_restarted_with_saved_config_never_sees_the_value_it_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let saved = json!("postgres://moved/acme");
    let r = c
        .put("/v1/admin/config/tenants.acme.db_url", Some(ADMIN), &saved)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    server.shutdown().await;
    for restart in 0..8 {
        let server = start(settings(dir.path(), None)).await;
        let c = Client { addr: server.addr };
        let v = c
            .invoke("acme", "tenant-db.status", "", ACME, &json!({}))
            .await
            .json();
        assert_eq!(
            (&v["result"]["connected_to"], &v["result"]["reconnects"]),
            (&saved, &json!(0)),
            "restart {restart}: connected to the saved URL first, never to the one it replaced: {v}"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn onboarding_offboarding_and_restart_keep_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let onboard = json!({
        "partition": "umbrella",
        "config": {"db_url": "postgres://db7.prod/umbrella"},
        "instances": [{"factory": "tenant-db", "name": "tenant-db-umbrella", "properties": {}}]
    });
    let r = c.post("/v1/admin/partitions", Some(ADMIN), &onboard).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["result"]["partition"], "umbrella");
    let key = v["result"]["api_key"].as_str().unwrap().to_owned();
    let v = c
        .invoke("umbrella", QUERY, "", &key, &json!({"sql": "x"}))
        .await
        .json();
    assert_eq!(v["result"]["instance"], "tenant-db-umbrella");
    assert_eq!(v["result"]["db_url"], "postgres://db7.prod/umbrella");
    assert_eq!(
        c.invoke("umbrella", QUERY, "", ACME, &json!({"sql": "x"}))
            .await
            .status,
        403
    );
    assert_eq!(
        c.invoke("acme", QUERY, "", &key, &json!({"sql": "x"}))
            .await
            .status,
        403
    );
    let r = c
        .invoke(
            "umbrella",
            "workspace_workers.note",
            "?key=n",
            &key,
            &json!({"text": "u1"}),
        )
        .await;
    assert_eq!(r.json()["result"], 1);
    // An instance aimed at another tenant is refused.
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "hooli", "instances": [{"factory": "tenant-db", "name": "tdb-hooli", "properties": {"target": "acme"}}]}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());

    // Offboard a settings tenant (initech) and write config and state, then restart.
    let r = c.delete("/v1/admin/partitions/initech", Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["result"]["removed_instances"],
        json!(["tenant-db-initech"])
    );
    assert_eq!(
        c.invoke("initech", QUERY, "", INITECH, &json!({"sql": "x"}))
            .await
            .status,
        401
    );
    let r = c
        .put(
            "/v1/admin/config/tenants.acme.db_url",
            Some(ADMIN),
            &json!("postgres://moved/acme"),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .invoke(
            "acme",
            "workspace_workers.note",
            "?key=n",
            ACME,
            &json!({"text": "a1"}),
        )
        .await;
    assert_eq!(r.json()["result"], 1);
    let r = c
        .post(
            "/v1/partitions/acme/pods/workspace_pods/ws/nodes/reviewer",
            Some(ACME),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let summary = server.shutdown().await;
    assert!(summary.hibernated >= 4, "{summary:?}");

    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let v = c
        .invoke("umbrella", QUERY, "", &key, &json!({"sql": "x"}))
        .await
        .json();
    assert_eq!(v["result"]["db_url"], "postgres://db7.prod/umbrella", "{v}");
    let v = c
        .invoke(
            "umbrella",
            "workspace_workers.notes",
            "?key=n",
            &key,
            &json!({}),
        )
        .await
        .json();
    assert_eq!(v["result"], json!(["u1"]));
    let v = c
        .invoke(
            "acme",
            "workspace_workers.notes",
            "?key=n",
            ACME,
            &json!({}),
        )
        .await
        .json();
    assert_eq!(v["result"], json!(["a1"]));
    let v = c
        .invoke("acme", QUERY, "", ACME, &json!({"sql": "x"}))
        .await
        .json();
    assert_eq!(v["result"]["db_url"], "postgres://moved/acme");
    assert_eq!(
        c.invoke("initech", QUERY, "", INITECH, &json!({"sql": "x"}))
            .await
            .status,
        401
    );
    let v = c.get("/v1/admin/partitions", Some(ADMIN)).await.json();
    let names: Vec<&str> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["partition"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acme", "globex", "umbrella"]);
    let v = c
        .post(
            "/v1/partitions/acme/pods/workspace_pods/ws",
            Some(ACME),
            &json!({}),
        )
        .await
        .json();
    assert_eq!(v["result"]["topology_version"], 1);

    // Offboard without purge keeps the data: onboarding again under that name is refused
    // unless it asks to restore, and then thaws it (with a new key).
    let r = c.delete("/v1/admin/partitions/umbrella", Some(ADMIN)).await;
    assert_eq!(r.json()["result"]["purged"], false);
    assert_eq!(r.json()["result"]["retained"], true);
    assert_eq!(
        c.invoke("umbrella", QUERY, "", &key, &json!({"sql": "x"}))
            .await
            .status,
        401
    );
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "umbrella"}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("restore"), "{}", r.text());
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "umbrella", "restore": true}),
        )
        .await;
    let key2 = r.json()["result"]["api_key"].as_str().unwrap().to_owned();
    assert_ne!(key, key2);
    assert_eq!(
        c.invoke("umbrella", QUERY, "", &key, &json!({"sql": "x"}))
            .await
            .status,
        401
    );
    let v = c
        .invoke(
            "umbrella",
            "workspace_workers.notes",
            "?key=n",
            &key2,
            &json!({}),
        )
        .await
        .json();
    assert_eq!(v["result"], json!(["u1"]));
    // Offboard with purge deletes it: onboarding again starts fresh.
    let r = c
        .delete("/v1/admin/partitions/umbrella?purge=true", Some(ADMIN))
        .await;
    let v = r.json();
    assert_eq!(v["result"]["purged"], true);
    assert!(v["result"]["purged_records"].as_u64().unwrap() >= 1, "{v}");
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "umbrella"}),
        )
        .await;
    let key3 = r.json()["result"]["api_key"].as_str().unwrap().to_owned();
    let v = c
        .invoke(
            "umbrella",
            "workspace_workers.notes",
            "?key=n",
            &key3,
            &json!({}),
        )
        .await
        .json();
    assert_eq!(v["result"], json!([]));
    // acme untouched by all of it
    let v = c
        .invoke(
            "acme",
            "workspace_workers.notes",
            "?key=n",
            ACME,
            &json!({}),
        )
        .await
        .json();
    assert_eq!(v["result"], json!(["a1"]));
    server.shutdown().await;
}

#[tokio::test]
async fn the_example_config_file_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), Some(include_str!("../tenantry.example.toml")));
    s.store = tenantry_server::settings::StoreChoice::Redb(dir.path().join("c.redb"));
    s.admin_key = tenantry_server::settings::AdminKey::Hashed(tenantry_server::keys::hash("admin"));
    let server = start(s).await;
    let c = Client { addr: server.addr };
    let v = c
        .invoke("hooli", QUERY, "", "secret", &json!({"sql": "x"}))
        .await
        .json();
    assert_eq!(v["result"]["db_url"], "postgres://db5.prod/hooli", "{v}");
    assert_eq!(
        c.get("/v1/admin/partitions", Some("admin")).await.status,
        200
    );
    assert_eq!(
        c.invoke("acme", QUERY, "", ACME, &json!({"sql": "x"}))
            .await
            .status,
        401
    );
    server.shutdown().await;
}
