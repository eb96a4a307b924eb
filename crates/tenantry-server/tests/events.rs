//! The live event streams over HTTP (Server-Sent Events): a tenant's stream carries its
//! own runtime events and no trace of another tenant's, the admin's carries everyone's;
//! keys are checked as on every route; open streams are bounded (429
//! `too_many_streams`); and shutdown ends open streams instead of waiting on them.

mod common;

use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// An open event stream: its status, and its lines as they come.
struct Stream {
    status: u16,
    content_type: String,
    reader: BufReader<TcpStream>,
}

async fn open(addr: SocketAddr, path: &str, key: Option<&str>) -> Stream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let head =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{auth}\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(tcp);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut content_type = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.unwrap();
        if line.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-type")
        {
            content_type = v.trim().to_owned();
        }
    }
    Stream {
        status,
        content_type,
        reader,
    }
}

impl Stream {
    /// Whether the response ends (its last chunk, or the connection closes) within `wait`.
    async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let mut line = String::new();
        loop {
            line.clear();
            match tokio::time::timeout_at(deadline, self.reader.read_line(&mut line)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) if line == "0\r\n" => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The `runtime` events that arrive within `wait`, until `enough` says so; every raw
    /// line read is kept in `raw`.
    async fn events_until(
        &mut self,
        wait: Duration,
        raw: &mut String,
        enough: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        let mut line = String::new();
        while !enough(&events) {
            line.clear();
            match tokio::time::timeout_at(deadline, self.reader.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
            raw.push_str(&line);
            // Chunked framing lines (sizes) are not SSE lines; data lines are.
            if let Some(data) = line.trim_end().strip_prefix("data: ") {
                events.push(serde_json::from_str(data).unwrap());
            }
        }
        events
    }
}

fn note(worker: &str, p: &str) -> String {
    format!("/v1/partitions/{p}/invoke/workspace_workers.note?key={worker}")
}

fn has(events: &[Value], partition: &str, kind: &str) -> bool {
    events
        .iter()
        .any(|e| e["partition"] == partition && e["kind"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_streams_its_own_events_only_and_the_admin_everyones() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let mut own = open(server.addr, "/v1/partitions/acme/events", Some(ACME)).await;
    assert_eq!(own.status, 200);
    assert!(
        own.content_type.starts_with("text/event-stream"),
        "{}",
        own.content_type
    );
    let mut all = open(server.addr, "/v1/admin/events", Some(ADMIN)).await;
    assert_eq!(all.status, 200);

    for (p, key) in [("globex", GLOBEX), ("acme", ACME), ("globex", GLOBEX)] {
        let r = c
            .post(&note("streamed", p), Some(key), &json!({"text": "x"}))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = c
        .delete(
            "/v1/partitions/globex/instances/workspace_workers/streamed",
            Some(GLOBEX),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let mut raw = String::new();
    let seen = own
        .events_until(Duration::from_secs(5), &mut raw, |e| {
            has(e, "acme", "started")
        })
        .await;
    assert!(has(&seen, "acme", "started"), "{raw}");
    for event in &seen {
        assert_eq!(event["partition"], "acme", "{event}");
        assert_eq!(event["manager"], "workspace_workers");
        assert!(event["at_ms"].as_u64().unwrap() > 0);
    }
    // Give globex's hibernation time to have happened, then look again: nothing of it.
    let more = own
        .events_until(Duration::from_millis(500), &mut raw, |_| false)
        .await;
    assert!(more.iter().all(|e| e["partition"] == "acme"), "{raw}");
    assert!(
        !raw.contains("globex"),
        "a tenant's stream held another's: {raw}"
    );

    let mut raw = String::new();
    let seen = all
        .events_until(Duration::from_secs(5), &mut raw, |e| {
            has(e, "acme", "started")
                && has(e, "globex", "started")
                && has(e, "globex", "hibernated")
        })
        .await;
    assert!(has(&seen, "globex", "hibernated"), "{raw}");
    assert!(has(&seen, "acme", "started"), "{raw}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_throttles_reach_its_stream_as_one_event_with_the_limit_and_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let mut own = open(server.addr, "/v1/partitions/acme/events", Some(ACME)).await;
    let mut other = open(server.addr, "/v1/partitions/globex/events", Some(GLOBEX)).await;
    let r = c
        .put(
            "/v1/admin/config/tenants.acme.limits",
            Some(ADMIN),
            &json!({"rate_per_sec": 0.1, "burst": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut refused = 0;
    let started = std::time::Instant::now();
    for _ in 0..5 {
        let r = c
            .post(&note("w", "acme"), Some(ACME), &json!({"text": "x"}))
            .await;
        refused += usize::from(r.status == 429);
    }
    assert_eq!(refused, 4);
    let refusals_took = started.elapsed();
    let mut raw = String::new();
    let seen = own
        .events_until(Duration::from_secs(5), &mut raw, |e| {
            has(e, "acme", "throttled")
        })
        .await;
    let throttled: Vec<_> = seen.iter().filter(|e| e["kind"] == "throttled").collect();
    assert!(!throttled.is_empty(), "{raw}");
    let first = throttled[0];
    assert_eq!(
        (&first["manager"], &first["key"]),
        (&json!("_quota"), &json!("rate"))
    );
    assert_eq!(first["detail"]["limit"], "rate");
    assert_eq!(first["detail"]["refused"], 1);
    assert!(first["detail"]["retry_after_ms"].as_u64().unwrap() > 0);
    // One event per second the refusals spanned (a second's edge may fall among them).
    let more = own
        .events_until(Duration::from_millis(300), &mut raw, |_| false)
        .await;
    let count = throttled.len() + more.iter().filter(|e| e["kind"] == "throttled").count();
    assert!(count <= refusals_took.as_secs() as usize + 2, "{raw}");
    let mut raw = String::new();
    let globex = other
        .events_until(Duration::from_millis(300), &mut raw, |_| false)
        .await;
    assert!(globex.is_empty(), "{raw}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_check_keys_are_bounded_per_tenant_and_end_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let addr = server.addr;
    let c = Client { addr };
    for (path, key, status) in [
        ("/v1/partitions/acme/events", None, 401),
        ("/v1/partitions/acme/events", Some(GLOBEX), 403),
        ("/v1/admin/events", Some(ACME), 403),
        ("/v1/partitions/nobody/events", Some(ADMIN), 404),
    ] {
        let r = c.get(path, key).await;
        assert_eq!(r.status, status, "{path} with {key:?}: {}", r.text());
        assert_eq!(r.json()["ok"], false);
    }
    let mut open_streams = Vec::new();
    for i in 0..8 {
        let s = open(addr, "/v1/partitions/acme/events", Some(ACME)).await;
        assert_eq!(s.status, 200, "stream {i}");
        open_streams.push(s);
    }
    let r = c.get("/v1/partitions/acme/events", Some(ACME)).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (429, "too_many_streams"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    // Another tenant has its own budget, and the admin looking at acme has its own.
    let globex = open(addr, "/v1/partitions/globex/events", Some(GLOBEX)).await;
    assert_eq!(globex.status, 200);
    open_streams.push(globex);
    let admin = open(addr, "/v1/partitions/acme/events", Some(ADMIN)).await;
    assert_eq!(admin.status, 200, "the admin's streams are not acme's");
    open_streams.push(admin);

    // Open streams do not hold the shutdown up.
    let began = std::time::Instant::now();
    let summary = server.shutdown().await;
    assert!(summary.drained, "the open streams held the drain up");
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_a_tenant_ends_its_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(settings(dir.path(), None)).await;
    let c = Client { addr: server.addr };
    let r = c
        .post(
            "/v1/admin/partitions",
            Some(ADMIN),
            &json!({"partition": "hooli"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let key = r.json()["result"]["api_key"].as_str().unwrap().to_owned();
    let mut hooli = open(server.addr, "/v1/partitions/hooli/events", Some(&key)).await;
    assert_eq!(hooli.status, 200);
    let mut acme = open(server.addr, "/v1/partitions/acme/events", Some(ACME)).await;
    let r = c
        .delete("/v1/admin/partitions/hooli?purge=true", Some(ADMIN))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        hooli.ends_within(Duration::from_secs(5)).await,
        "a revoked key's stream went on"
    );
    assert!(
        !acme.ends_within(Duration::from_millis(300)).await,
        "another tenant's stream ended"
    );
    server.shutdown().await;
}
