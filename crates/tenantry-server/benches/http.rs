//! HTTP benchmark of the `tenantry` binary on loopback.
//!
//! - `server_start_to_ready_empty_data_dir`: from spawning `tenantry serve` on an empty
//!   data directory to the first `200` from `/readyz` (median of 5).
//! - `invoke_requests_per_second` and `invoke_p99_latency`: 64 keep-alive connections
//!   from one load-generator thread against
//!   `POST /v1/partitions/acme/invoke/tenant-db.query` (the demo app), 1 s warm-up then
//!   5 s measured. The server and the generator share the machine's cores.
//! - `healthz_requests_per_second`: the same 64 connections on `GET /healthz`, the
//!   gateway's floor; `invoke_over_healthz`: the query's rate over it, the median of five
//!   back-to-back pairs of 1 s windows (healthz, then query), so that the machine's drift
//!   between two long runs does not decide the ratio.
//! - `healthz_server_cpu_per_request` and `invoke_server_cpu_per_request`: the server
//!   process's CPU time (user and system, from `/proc/<pid>/stat`; not printed where
//!   there is no procfs) over the requests it answered in those two runs, warm-up
//!   included: what a request costs the server, which the load generator sharing its
//!   cores does not blur as much as it blurs requests per second. It reads the spawned
//!   process, so `TENANTRY_BENCH_BIN` must be the server itself (or a script that
//!   `exec`s it).
//! - `note_requests_per_second_<mode>` and `note_p99_latency_<mode>`: the same 64
//!   connections writing: `POST .../invoke/workspace_workers.note?key=...` over keyed
//!   workers taken in turn: 2,000 with the server's default `every_turn` durability (each
//!   200 is a committed turn), and 8,000 with `on_hibernate` set in a config file (a
//!   worker keeps at most 256 notes, and that mode writes 600,000 in 6 s on a quiet
//!   machine).
//!
//! Run: `cargo bench -p tenantry-server --bench http` (`TENANTRY_BENCH_BIN=path/to/tenantry`
//! measures another build of the server with the same load).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::process::Child;

const CONNECTIONS: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

type Res<T> = Result<T, Box<dyn std::error::Error>>;

// `body` serves the cluster benchmark only.
#[allow(dead_code)]
#[path = "support/conn.rs"]
mod conn;
use conn::Conn;
#[path = "support/spawn.rs"]
mod spawn;
use spawn::spawn_with;

async fn spawn(data_dir: &std::path::Path) -> Res<(Child, SocketAddr)> {
    spawn_with(data_dir, None).await
}

async fn stop(mut child: Child) -> Res<()> {
    if let Some(pid) = child.id() {
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
    }
    child.wait().await?;
    Ok(())
}

async fn ready(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let mut c = Conn {
        stream,
        buf: Vec::new(),
    };
    let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    matches!(c.roundtrip(req.as_bytes()).await, Ok(200))
}

async fn start_to_ready() -> Res<f64> {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let t0 = Instant::now();
        let (child, addr) = spawn(&data).await?;
        while !ready(addr).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(t0.elapsed().as_secs_f64() * 1e3);
        stop(child).await?;
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

/// A POST of `body` to `path` with the demo tenant `acme`'s key.
fn post(addr: SocketAddr, path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer demo-acme-key\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
    )
    .into_bytes()
}

/// The query request (every connection sends the same).
fn query(addr: SocketAddr) -> Arc<[Vec<u8>]> {
    let request = post(
        addr,
        "/v1/partitions/acme/invoke/tenant-db.query",
        r#"{"sql": "select * from orders", "limit": 3}"#,
    );
    Arc::from(vec![request])
}

/// The floor of the gateway: `GET /healthz` (no auth, no body, no routing).
fn healthz(addr: SocketAddr) -> Arc<[Vec<u8>]> {
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    Arc::from(vec![request])
}

/// The query's rate over healthz's: the median of five pairs of short windows.
async fn invoke_over_healthz(addr: SocketAddr) -> Res<f64> {
    let window = |requests| {
        load_window(
            addr,
            requests,
            Duration::from_millis(250),
            Duration::from_secs(1),
        )
    };
    let mut ratios = Vec::new();
    for _ in 0..5 {
        let floor = window(healthz(addr)).await?.rps;
        let invoke = window(query(addr)).await?.rps;
        ratios.push(invoke / floor);
    }
    ratios.sort_by(f64::total_cmp);
    Ok(ratios[ratios.len() / 2])
}

/// Keyed workers the writing load spreads over (each keeps at most 256 notes).
const NOTE_AGENTS: usize = 2_000;
/// The workers of the `on_hibernate` run: enough that none fills up (256 notes each).
const NOTE_AGENTS_ON_HIBERNATE: usize = 8_000;

/// The writing load: connection `c` sends note requests to workers `c`, `c + 64`, ...
async fn note_load(addr: SocketAddr, agents: usize) -> Res<(f64, f64)> {
    let requests: Arc<[Vec<u8>]> = (0..agents)
        .map(|k| {
            post(
                addr,
                &format!("/v1/partitions/acme/invoke/workspace_workers.note?key=bench-{k}"),
                r#"{"text": "a note of about forty bytes, to be kept"}"#,
            )
        })
        .collect();
    load_cycling(addr, requests).await
}

/// 64 keep-alive connections, connection `c` sending `requests[c]`, `requests[c + 64]`,
/// ... in turn; every answer must be 200. Requests per second and p99 latency (ms).
async fn load_cycling(addr: SocketAddr, requests: Arc<[Vec<u8>]>) -> Res<(f64, f64)> {
    let load = load_window(addr, requests, WARMUP, MEASURE).await?;
    Ok((load.rps, load.p99_ms))
}

/// [`load_cycling`], with the server's CPU time per answered request (µs) when the
/// platform tells a process's CPU time.
async fn load_cycling_cpu(
    addr: SocketAddr,
    requests: Arc<[Vec<u8>]>,
    server: u32,
) -> Res<(f64, f64, Option<f64>)> {
    let before = cpu_time(server);
    let load = load_window(addr, requests, WARMUP, MEASURE).await?;
    let per_request = match (before, cpu_time(server)) {
        (Some(before), Some(after)) if load.answered > 0 => {
            Some((after - before).as_secs_f64() * 1e6 / load.answered as f64)
        }
        _ => None,
    };
    Ok((load.rps, load.p99_ms, per_request))
}

/// Process `pid`'s CPU time so far, user and system, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count fields after its `)`.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    // Clock ticks: USER_HZ, 100 on every Linux architecture this runs on.
    Some(Duration::from_millis((user + system) * 10))
}

/// What a load window measured.
struct Load {
    /// Requests answered per second in the measured window.
    rps: f64,
    /// Their 99th percentile latency.
    p99_ms: f64,
    /// Requests answered in all, warm-up included.
    answered: usize,
}

/// [`load_cycling`] with its own warm-up and measured window.
async fn load_window(
    addr: SocketAddr,
    requests: Arc<[Vec<u8>]>,
    warmup: Duration,
    measure: Duration,
) -> Res<Load> {
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let requests = requests.clone();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let mut conn = Conn {
                stream,
                buf: Vec::with_capacity(4096),
            };
            let mut latencies: Vec<u32> = Vec::with_capacity(200_000);
            let mut answered = 0;
            let mut i = c;
            loop {
                let t = Instant::now();
                if t >= end {
                    break;
                }
                let request = &requests[i % requests.len()];
                i += CONNECTIONS;
                let status = conn.roundtrip(request).await.map_err(|e| e.to_string())?;
                if status != 200 {
                    return Err(format!("status {status}"));
                }
                answered += 1;
                if t >= measure_from {
                    latencies.push(t.elapsed().as_micros() as u32);
                }
            }
            Ok::<_, String>((latencies, answered))
        }));
    }
    let (mut all, mut answered) = (Vec::new(), 0);
    for t in tasks {
        let (latencies, n) = t.await??;
        all.extend(latencies);
        answered += n;
    }
    all.sort_unstable();
    Ok(Load {
        rps: all.len() as f64 / measure.as_secs_f64(),
        p99_ms: all
            .get(all.len() * 99 / 100)
            .map_or(f64::NAN, |us| *us as f64 / 1e3),
        answered,
    })
}

fn main() -> Res<()> {
    // One thread for the load generator: the server gets the rest of the machine.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ready_ms = start_to_ready().await?;
        let dir = tempfile::tempdir()?;
        let (child, addr) = spawn(&dir.path().join("data")).await?;
        let server = child.id().ok_or("the server exited")?;
        let (healthz_rps, _, healthz_cpu) = load_cycling_cpu(addr, healthz(addr), server).await?;
        let (rps, p99, invoke_cpu) = load_cycling_cpu(addr, query(addr), server).await?;
        let ratio = invoke_over_healthz(addr).await?;
        let (note_rps, note_p99) = note_load(addr, NOTE_AGENTS).await?;
        stop(child).await?;
        println!("invoke_requests_per_second: {rps:.0} per_second");
        println!("invoke_p99_latency: {p99:.2} ms");
        println!("healthz_requests_per_second: {healthz_rps:.0} per_second");
        println!("invoke_over_healthz: {ratio:.2} x");
        match (healthz_cpu, invoke_cpu) {
            (Some(healthz), Some(invoke)) => {
                println!("healthz_server_cpu_per_request: {healthz:.2} us");
                println!("invoke_server_cpu_per_request: {invoke:.2} us");
            }
            _ => eprintln!("server CPU per request skipped: no /proc/<pid>/stat here"),
        }
        println!("note_requests_per_second_every_turn: {note_rps:.0} per_second");
        println!("note_p99_latency_every_turn: {note_p99:.2} ms");

        let dir = tempfile::tempdir()?;
        let config = dir.path().join("tenantry.toml");
        std::fs::write(
            &config,
            "demo = true\n[managers.workspace_workers]\ndurability = \"on_hibernate\"\n",
        )?;
        let (child, addr) = spawn_with(&dir.path().join("data"), Some(&config)).await?;
        let (note_rps, note_p99) = note_load(addr, NOTE_AGENTS_ON_HIBERNATE).await?;
        stop(child).await?;
        println!("note_requests_per_second_on_hibernate: {note_rps:.0} per_second");
        println!("note_p99_latency_on_hibernate: {note_p99:.2} ms");
        println!("server_start_to_ready_empty_data_dir: {ready_ms:.1} ms");
        Ok(())
    })
}
