//! Shared helpers of the server tests: a small HTTP/1.1 client over a raw TCP socket
//! (no client library to compile), and servers started in-process or as the binary.

#![allow(dead_code)]

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry::store::CheckpointStore;
use tenantry_server::settings::{AdminKey, FileConfig, Overrides, Settings};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The admin key the tests use.
pub const ADMIN: &str = "test-admin-key";
/// The demo tenants' keys.
pub const ACME: &str = "demo-acme-key";
pub const GLOBEX: &str = "demo-globex-key";
pub const INITECH: &str = "demo-initech-key";

/// A response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The error code of an error body.
    pub fn code(&self) -> String {
        let v = self.json();
        assert_eq!(v["ok"], false, "{v}");
        v["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&[u8]>,
) -> std::io::Result<Resp> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    let body = body.unwrap_or(b"");
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    // A server may answer (413) before reading the whole body; ignore a reset here.
    let _ = stream.write_all(body).await;
    read_response(stream).await
}

/// The answer on `stream`, read to its end (the request asked to close).
pub async fn read_response(stream: TcpStream) -> std::io::Result<Resp> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut raw = Vec::new();
    reader.read_to_end(&mut raw).await?;
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(&raw) } else { raw };
    Ok(Resp {
        status,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(pos) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..pos]).unwrap_or("0").trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = pos + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
}

/// A client bound to one server address.
#[derive(Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
}

impl Client {
    pub async fn get(&self, path: &str, key: Option<&str>) -> Resp {
        request(self.addr, "GET", path, key, None).await.unwrap()
    }
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Resp {
        let b = serde_json::to_vec(body).unwrap();
        request(self.addr, "POST", path, key, Some(&b))
            .await
            .unwrap()
    }
    pub async fn post_raw(&self, path: &str, key: Option<&str>, body: &[u8]) -> Resp {
        request(self.addr, "POST", path, key, Some(body))
            .await
            .unwrap()
    }
    pub async fn put(&self, path: &str, key: Option<&str>, body: &Value) -> Resp {
        let b = serde_json::to_vec(body).unwrap();
        request(self.addr, "PUT", path, key, Some(&b))
            .await
            .unwrap()
    }
    pub async fn delete(&self, path: &str, key: Option<&str>) -> Resp {
        request(self.addr, "DELETE", path, key, None).await.unwrap()
    }
    /// Onboards a tenant as the admin (`body` as `POST /v1/admin/partitions` takes it);
    /// its new API key.
    pub async fn onboard(&self, body: &Value) -> String {
        let r = self.post("/v1/admin/partitions", Some(ADMIN), body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["result"]["api_key"].as_str().unwrap().to_owned()
    }
    /// `POST /v1/partitions/{p}/invoke/{handler}{query}`.
    pub async fn invoke(
        &self,
        p: &str,
        handler: &str,
        query: &str,
        key: &str,
        params: &Value,
    ) -> Resp {
        self.post(
            &format!("/v1/partitions/{p}/invoke/{handler}{query}"),
            Some(key),
            params,
        )
        .await
    }
}

/// Settings for a test server: an ephemeral port, `data_dir`, the admin key, and the
/// demo application (or `file`, a TOML config).
pub fn settings(data_dir: &Path, file: Option<&str>) -> Settings {
    let file: Option<FileConfig> =
        file.map(|t| tenantry_server::settings::parse_toml(t).expect("test config parses"));
    let mut s = Settings::from_parts(
        Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.to_owned()),
            ..Overrides::default()
        },
        |_| None,
        file,
    )
    .expect("settings");
    s.admin_key = AdminKey::Plain(ADMIN.into());
    s
}

/// Starts a server in-process.
pub async fn start(settings: Settings) -> tenantry_server::Server {
    tenantry_server::start(settings, None)
        .await
        .expect("server starts")
}

/// Starts a server in-process over a given store.
pub async fn start_with_store(
    settings: Settings,
    store: Arc<dyn CheckpointStore>,
) -> tenantry_server::Server {
    tenantry_server::start(settings, Some(store))
        .await
        .expect("server starts")
}

/// The built binary, serving on an ephemeral port with `data_dir`.
pub struct Proc {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
}

/// Spawns `tenantry serve` and waits for its `listening on` line.
pub async fn spawn_binary(data_dir: &Path, extra_env: &[(&str, &str)]) -> Proc {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("TENANTRY_ADMIN_KEY", ADMIN)
        .env("RUST_LOG", "warn")
        .env_remove("TENANTRY_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn tenantry");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .expect("server prints its address in time")
            .expect("read stdout")
            .expect("server exited before listening");
        if let Some(rest) = line.strip_prefix("tenantry listening on http://") {
            break rest.trim().parse().expect("address");
        }
    };
    // Drain the rest of stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Proc { child, addr }
}

impl Proc {
    pub fn client(&self) -> Client {
        Client { addr: self.addr }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits within 30 s")
            .expect("wait")
    }
}

/// An id a writer sent to a keyed agent: when, and when it was acknowledged (200).
pub struct Sent {
    pub id: String,
    pub agent: String,
    pub sent: Instant,
    pub acked: Option<Instant>,
}

/// What `agent` holds (`notes`) against what was sent to it: every acknowledged id
/// exactly once, in acknowledgement order (if A was acknowledged before B was sent, A
/// comes first), and nothing nobody sent. Returns the acknowledged ids checked.
pub fn check_notes(context: &str, agent: &str, notes: &[String], sent: &[&Sent]) -> usize {
    let mut position = std::collections::HashMap::new();
    for (i, note) in notes.iter().enumerate() {
        assert!(
            position.insert(note.as_str(), i).is_none(),
            "{context}: {agent} holds {note} twice"
        );
    }
    let sent_here: std::collections::HashSet<&str> = sent.iter().map(|s| s.id.as_str()).collect();
    for note in notes {
        assert!(
            sent_here.contains(note.as_str()),
            "{context}: {agent} holds {note}, which nobody sent it"
        );
    }
    let mut checked = 0;
    for a in sent {
        let Some(acked) = a.acked else { continue };
        let Some(&pa) = position.get(a.id.as_str()) else {
            panic!(
                "{context}: {} was acknowledged by {agent} and is gone",
                a.id
            );
        };
        checked += 1;
        for b in sent.iter().filter(|b| b.sent > acked) {
            if let Some(&pb) = position.get(b.id.as_str()) {
                assert!(
                    pa < pb,
                    "{context}: {agent} holds {} after {}, but {} was acknowledged before {} was sent",
                    a.id,
                    b.id,
                    a.id,
                    b.id
                );
            }
        }
    }
    checked
}

/// Checks every agent written in `sent` through the server at `addr` (see
/// [`check_notes`]); the acknowledged ids checked.
pub async fn verify_agents(addr: SocketAddr, context: &str, sent: &[Sent]) -> usize {
    let mut by_agent: std::collections::BTreeMap<&str, Vec<&Sent>> = Default::default();
    for s in sent {
        by_agent.entry(&s.agent).or_default().push(s);
    }
    let mut checked = 0;
    for (agent, ids) in by_agent {
        let path = format!("/v1/partitions/acme/invoke/workspace_workers.notes?key={agent}");
        let r = request(addr, "POST", &path, Some(ACME), Some(b"{}"))
            .await
            .expect("the server answers");
        assert_eq!(r.status, 200, "{context}: notes of {agent}: {}", r.text());
        let notes: Vec<String> = serde_json::from_value(r.json()["result"].clone()).unwrap();
        checked += check_notes(context, agent, &notes, &ids);
    }
    checked
}
