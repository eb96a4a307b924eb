//! Hardening: what a hostile tenant or a careless client sends cannot take the process
//! down, leak internal text, reach metrics it should not, write where no tenant lives,
//! or inherit another tenant's data; and every answer is the JSON envelope.

mod common;

use common::*;
use serde_json::json;

const QUERY: &str = "tenant-db.query";

/// Onboards a tenant with the admin key.
async fn onboard(c: Client, body: serde_json::Value) -> Resp {
    c.post("/v1/admin/partitions", Some(ADMIN), &body).await
}

/// The API key an onboarding answered.
fn api_key(r: &Resp) -> String {
    r.json()["result"]["api_key"].as_str().unwrap().to_owned()
}

/// The notes of worker `n` in `tenant`.
async fn notes(c: Client, tenant: &str, key: &str) -> serde_json::Value {
    c.invoke(tenant, "workspace_workers.notes", "?key=n", key, &json!({}))
        .await
        .json()["result"]
        .clone()
}

#[tokio::test]
async fn oversized_numbers_are_refused_naming_the_field_and_the_process_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    for (body, field) in [
        (json!({"sql": "x", "limit": 1_099_511_627_776u64}), "limit"),
        (json!({"sql": "x", "limit": 1_000_000}), "limit"),
        (json!({"sql": "x", "limit": 0}), "limit"),
        (json!({"sql": "x".repeat(5000)}), "sql"),
    ] {
        let r = c.invoke("acme", QUERY, "", ACME, &body).await;
        assert_eq!(r.status, 422, "{}", r.text());
        assert_eq!(r.code(), "invalid_params");
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(field), "{message}");
    }
    // Params are an object, as the schema says: an array is not read field by field.
    let r = c
        .invoke("acme", QUERY, "", ACME, &json!(["select", 3]))
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (422, "invalid_params"),
        "{}",
        r.text()
    );
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("expected struct"), "{message}");
    // The largest request allowed answers a bounded reply.
    let r = c
        .invoke("acme", QUERY, "", ACME, &json!({"sql": "x", "limit": 100}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["result"]["rows"].as_array().unwrap().len(), 100);
    // A worker's numbers and texts are bounded too.
    let r = c
        .invoke(
            "acme",
            "workspace_workers.work",
            "?key=w",
            ACME,
            &json!({"millis": 10_001}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = c
        .invoke(
            "acme",
            "workspace_workers.note",
            "?key=w",
            ACME,
            &json!({"text": "é".repeat(1001)}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("text"), "{}", r.text());
    assert_eq!(c.get("/healthz", None).await.status, 200);
    server.shutdown().await;
}

/// `POST` of `body` to acme's query with `Transfer-Encoding: chunked`, in chunks of
/// `chunk` bytes.
async fn post_chunked(addr: std::net::SocketAddr, body: &[u8], chunk: usize) -> Resp {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/partitions/acme/invoke/{QUERY} HTTP/1.1\r\nHost: {addr}\r\n\
         Connection: close\r\nAuthorization: Bearer {ACME}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body.chunks(chunk) {
        let framed = [format!("{:x}\r\n", piece.len()).as_bytes(), piece, b"\r\n"].concat();
        // The server may answer (413) and close before the last chunk.
        if stream.write_all(&framed).await.is_err() {
            break;
        }
        stream.flush().await.unwrap();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    read_response(stream).await.unwrap()
}

#[tokio::test]
async fn a_body_in_many_chunks_is_read_whole_and_refused_once_past_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let body = br#"{"sql": "select * from orders", "limit": 2}"#;
    let r = post_chunked(server.addr, body, 5).await;
    let (status, answer) = (r.status, r.text());
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains(r#""sql":"select * from orders""#),
        "{answer}"
    );
    assert!(
        answer.contains("acme-row-2") && !answer.contains("acme-row-3"),
        "{answer}"
    );

    // Over the 1 MiB default in 64 KiB chunks: 413 in the envelope, and the server lives.
    let big = format!(r#"{{"sql": "{}"}}"#, "x".repeat((1 << 20) + 16));
    let r = post_chunked(server.addr, big.as_bytes(), 64 << 10).await;
    let (status, answer) = (r.status, r.text());
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");
    let r = post_chunked(server.addr, body, 1).await;
    let (status, answer) = (r.status, r.text());
    assert_eq!(status, 200, "{answer}");
    server.shutdown().await;
}

#[tokio::test]
async fn every_answer_is_the_json_envelope_405_and_404_included() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let r = request(
        server.addr,
        "PUT",
        "/v1/partitions/acme/handlers",
        Some(ACME),
        Some(b"{}"),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.code(), "method_not_allowed");
    assert!(
        r.header("allow").is_some_and(|a| a.contains("GET")),
        "{r:?}"
    );
    for (method, path) in [
        ("DELETE", "/healthz"),
        ("PATCH", "/v1/admin/partitions"),
        ("GET", "/v1/partitions/acme/invoke/tenant-db.query"),
    ] {
        let r = request(server.addr, method, path, Some(ACME), None)
            .await
            .unwrap();
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.code(), "method_not_allowed");
    }
    let r = c.get("/no/such/path", None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "not_found");
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_need_the_admin_key_or_the_metrics_token_and_tenants_see_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), None);
    s.metrics_token = Some(tenantry_server::keys::hash("scraper-token"));
    let server = start(s).await;
    let c = Client { addr: server.addr };
    for (tenant, key) in [("acme", ACME), ("globex", GLOBEX)] {
        let r = c.invoke(tenant, QUERY, "", key, &json!({"sql": "x"})).await;
        assert_eq!(r.status, 200);
    }
    let r = c.get("/metrics", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "unauthorized");
    let r = c.get("/metrics", Some(ACME)).await;
    assert_eq!(r.status, 403);
    for key in [ADMIN, "scraper-token"] {
        let r = c.get("/metrics", Some(key)).await;
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(text.contains("partition=\"acme\"") && text.contains("partition=\"globex\""));
    }
    let r = c.get("/v1/partitions/acme/metrics", Some(ACME)).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("tenantry_handler_calls_total"), "{text}");
    assert!(text.contains("partition=\"acme\""), "{text}");
    assert!(!text.contains("globex"), "{text}");
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.contains("partition=\"acme\"")),
        "{text}"
    );
    let r = c.get("/v1/partitions/globex/metrics", Some(ACME)).await;
    assert_eq!(r.status, 403);
    server.shutdown().await;
}

#[tokio::test]
async fn the_admin_key_reaches_active_tenants_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    // A write into a partition nobody onboarded is refused...
    let r = c
        .invoke(
            "umbrella",
            "workspace_workers.note",
            "?key=n",
            ADMIN,
            &json!({"text": "planted"}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    for path in [
        "/v1/partitions/umbrella/handlers",
        "/v1/partitions/umbrella/instances",
    ] {
        assert_eq!(c.get(path, Some(ADMIN)).await.status, 404, "{path}");
    }
    let r = c
        .post(
            "/v1/partitions/umbrella/pods/workspace_pods/p",
            Some(ADMIN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    // ...so a tenant onboarded later under that name finds nothing planted.
    let r = onboard(c, json!({"partition": "umbrella"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(notes(c, "umbrella", &api_key(&r)).await, json!([]));
    // The admin key reaches it now; a tenant key still gets the same 403 for any
    // partition but its own, existing or not.
    assert_eq!(
        c.get("/v1/partitions/umbrella/handlers", Some(ADMIN))
            .await
            .status,
        200
    );
    for p in ["umbrella", "nobody"] {
        let r = c
            .get(&format!("/v1/partitions/{p}/handlers"), Some(ACME))
            .await;
        assert_eq!(r.status, 403);
        assert_eq!(
            r.json()["error"]["message"],
            format!("this key may not access partition {p:?}")
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn retained_data_is_taken_over_only_on_request_and_purging_it_frees_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let r = onboard(c, json!({"partition": "hooli"})).await;
    let key = api_key(&r);
    c.invoke(
        "hooli",
        "workspace_workers.note",
        "?key=n",
        &key,
        &json!({"text": "old"}),
    )
    .await;
    let r = c.delete("/v1/admin/partitions/hooli", Some(ADMIN)).await;
    assert_eq!(r.json()["result"]["retained"], true);
    // Re-onboarding does not inherit silently.
    let r = onboard(c, json!({"partition": "hooli"})).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.code(), "conflict");
    // Offboarding again without purge: nothing active, nothing to do.
    let r = c.delete("/v1/admin/partitions/hooli", Some(ADMIN)).await;
    assert_eq!(r.status, 404);
    // Purging the retained data frees the name: the next tenant starts empty.
    let r = c
        .delete("/v1/admin/partitions/hooli?purge=true", Some(ADMIN))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["result"]["purged_records"].as_u64().unwrap() >= 1);
    let r = onboard(c, json!({"partition": "hooli"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(notes(c, "hooli", &api_key(&r)).await, json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn the_admin_restarts_failed_instances_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let r = c
        .post(
            "/v1/admin/instances/tenant-db-acme/restart",
            Some(ADMIN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let r = c
        .post(
            "/v1/admin/instances/no-such/restart",
            Some(ADMIN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = c
        .post(
            "/v1/admin/instances/tenant-db-acme/restart",
            Some(ACME),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = c
        .post(
            "/v1/admin/partitions/acme/instances/workspace_workers/w/restart",
            Some(ADMIN),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    let v = c
        .get("/v1/partitions/acme/instances", Some(ACME))
        .await
        .json();
    assert_eq!(v["result"]["components"][0]["status"]["state"], "active");
    server.shutdown().await;
}

#[tokio::test]
async fn the_openapi_document_states_what_the_server_enforces() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let doc = c.get("/openapi.json", Some(ACME)).await.json();
    let paths = doc["paths"].as_object().unwrap();
    // A tenant's document: its own partition only, its own routes only.
    for (path, item) in paths {
        assert!(
            !path.starts_with("/v1/admin") && path != "/metrics",
            "{path}"
        );
        assert!(!path.contains("mysql-db"), "{path}: globex's component");
        for op in item.as_object().unwrap().values() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["name"] == "partition" {
                    assert_eq!(
                        p["schema"],
                        json!({"type": "string", "enum": ["acme"]}),
                        "{path}"
                    );
                }
            }
        }
    }
    let invoke = &paths["/v1/partitions/{partition}/invoke/workspace_workers.note"]["post"];
    let params = invoke["parameters"].as_array().unwrap();
    let key = params.iter().find(|p| p["name"] == "key").unwrap();
    assert_eq!(key["required"], true);
    assert_eq!(key["schema"]["maxLength"], 256);
    let timeout = params.iter().find(|p| p["name"] == "timeout_ms").unwrap();
    assert_eq!(timeout["schema"]["maximum"], 60_000);
    for status in [
        "400", "401", "403", "404", "409", "413", "422", "429", "500", "503", "504",
    ] {
        assert!(invoke["responses"][status].is_object(), "{status} declared");
    }
    assert_eq!(invoke["requestBody"]["x-tenantry-max-body-bytes"], 1 << 20);
    assert_eq!(invoke["x-tenantry-max-reply-bytes"], 1 << 20);
    let body = &invoke["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["properties"]["text"]["maxLength"], 1000);
    assert_eq!(body["additionalProperties"], false);
    // The admin's document has the admin routes.
    let admin = c.get("/openapi.json", Some(ADMIN)).await.json();
    assert!(admin["paths"]["/v1/admin/partitions"]["post"].is_object());
    assert!(admin["paths"]["/v1/admin/instances/{name}/restart"]["post"].is_object());

    // What the document states, the server enforces.
    let note = |query: String| async move {
        c.invoke(
            "acme",
            "workspace_workers.note",
            &query,
            ACME,
            &json!({"text": "x"}),
        )
        .await
    };
    for (query, code) in [
        ("?key=k&timeout_ms=0".to_owned(), "invalid_timeout"),
        ("?key=k&timeout_ms=60001".to_owned(), "invalid_timeout"),
        (format!("?key={}", "k".repeat(257)), "invalid_key"),
        ("?key=%5B%22a%22%5D".to_owned(), "invalid_key"),
    ] {
        let r = note(query.clone()).await;
        assert_eq!((r.status, r.code()), (400, code.to_owned()), "{query}");
    }
    assert_eq!(note(format!("?key={}", "k".repeat(256))).await.status, 200);
    let r = c.get("/v1/admin/config/a..b", Some(ADMIN)).await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_config_key"));
    // Onboarding makes tenants of application factories only, never a shared provider.
    let r = onboard(
        c,
        json!({"partition": "hooli", "instances": [{"factory": "config", "name": "cfg-hooli"}]}),
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (422, "invalid_instance"));
    // A handler refused by state (no db_url for a tenant) is a 409, not a 422.
    let r = onboard(
        c,
        json!({"partition": "hooli", "instances": [{"factory": "tenant-db", "name": "tdb-hooli"}]}),
    )
    .await;
    let key = api_key(&r);
    let r = c
        .invoke("hooli", QUERY, "", &key, &json!({"sql": "x"}))
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "no_db_url"));
    server.shutdown().await;
}

#[tokio::test]
async fn invoke_params_that_are_not_json_answer_400_and_json_that_does_not_fit_answers_422() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let query = format!("/v1/partitions/acme/invoke/{QUERY}");
    let note = "/v1/partitions/acme/invoke/workspace_workers.note?key=n";
    let deep = |inner: &str| format!("{}{inner}{}", "[".repeat(200), "]".repeat(200));
    let not_json: Vec<Vec<u8>> = vec![
        b"{\"sql\": ".to_vec(),
        b"{\"sql\": \"x\"} trailing".to_vec(),
        b"{\"sql\": \"\xff\"}".to_vec(),
        deep("").into_bytes(),
        br#"{"sql": "x", "limit": 1e400}"#.to_vec(),
        br#"{"text": 1e400}"#.to_vec(),
    ];
    // The component's query refuses unknown fields and the agent's note is a typed
    // message: both read their params straight from the body's text.
    for path in [query.as_str(), note] {
        for body in &not_json {
            let r = c.post_raw(path, Some(ACME), body).await;
            let shown = String::from_utf8_lossy(body);
            assert_eq!(
                (r.status, r.code().as_str()),
                (400, "invalid_json"),
                "{path} {shown}: {}",
                r.text()
            );
            assert!(
                r.json()["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("malformed JSON body: ")),
                "{}",
                r.text()
            );
        }
    }
    // A strict handler holds what it would skip as a value, so nesting past the limit
    // inside an unknown field is malformed too.
    let nested_unknown = format!(r#"{{"sql": "x", "extra": {}}}"#, deep("1"));
    let r = c
        .post_raw(&query, Some(ACME), nested_unknown.as_bytes())
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "invalid_json"),
        "{}",
        r.text()
    );
    // JSON that does not fit the params: 422, naming the field.
    for (path, body, field) in [
        (query.as_str(), r#"{"sql": 3}"#, "sql"),
        (query.as_str(), r#"{"sql": "x", "extra": 1}"#, "extra"),
        (query.as_str(), r#"["select", 3]"#, "struct"),
        (note, r#"{"text": ["a"]}"#, "text"),
    ] {
        let r = c.post_raw(path, Some(ACME), body.as_bytes()).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (422, "invalid_params"),
            "{body}"
        );
        assert!(r.text().contains(field), "{body}: {}", r.text());
    }
    // Valid text, with escapes and duplicate keys (the last one counts, as in a value),
    // and an empty body as `{}`.
    let r = c
        .post_raw(
            &query,
            Some(ACME),
            br#"{"sql": "sel\u0065ct \"x\"", "limit": 9, "limit": 2}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["sql"], json!("select \"x\""));
    assert_eq!(r.json()["result"]["rows"].as_array().map(Vec::len), Some(2));
    let r = c
        .post_raw(
            "/v1/partitions/acme/invoke/workspace_workers.notes?key=n",
            Some(ACME),
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let summary = server.shutdown().await;
    assert_eq!(summary.failed, 0);
}
