//! Noisy neighbour (issue 16): the demo server on loopback, where tenant A (`initech`,
//! limited by the demo to 1,000 calls/s with bursts of 200) floods
//! `POST .../invoke/tenant-db.query` from 64 keep-alive connections paced to 4x its
//! limit, while tenant C (`acme`, no limit) sends a steady light load (one connection,
//! a call every 2 ms).
//!
//! - `noisy_c_p99_alone` and `noisy_c_p99_during_flood` (ms): C's p99 latency over 5 s
//!   without A, then over 5 s of A's flood (after a second of each to warm up; C runs on
//!   a thread of its own, A's 64 connections on another);
//!   `noisy_c_p99_ratio`: the second over the first;
//! - `noisy_a_admitted_over_limit`: A's 200s a second during the flood over its limit;
//!   `noisy_a_refused_per_second`: its 429s a second.
//!
//! Run: `cargo bench -p tenantry-server --bench noisy`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[allow(dead_code)]
#[path = "support/conn.rs"]
mod conn;
use conn::Conn;
#[path = "support/spawn.rs"]
mod spawn;

const FLOOD_CONNECTIONS: u64 = 64;
/// A's limit in the demo, and its flood: four times that.
const A_LIMIT: f64 = 1000.0;
const FLOOD_PER_SECOND: f64 = 4.0 * A_LIMIT;
const C_EVERY: Duration = Duration::from_millis(2);
const WARMUP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(5);

/// The demo query of `tenant`, with its key.
fn query(addr: SocketAddr, tenant: &str) -> Vec<u8> {
    let body = r#"{"sql": "select * from orders", "limit": 3}"#;
    format!(
        "POST /v1/partitions/{tenant}/invoke/tenant-db.query HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer demo-{tenant}-key\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
    )
    .into_bytes()
}

async fn connect(addr: SocketAddr) -> Res<Conn> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(Conn {
        stream,
        buf: Vec::with_capacity(4096),
    })
}

/// C's steady load for `warmup + measure`: its p99 latency over the measured part, ms.
async fn light_load(addr: SocketAddr) -> Res<f64> {
    let mut conn = connect(addr).await?;
    let request = query(addr, "acme");
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut next = start;
    while next < start + WARMUP + MEASURE {
        tokio::time::sleep_until(next.into()).await;
        let t = Instant::now();
        let status = conn.roundtrip(&request).await?;
        if status != 200 {
            return Err(format!("C got {status}").into());
        }
        if t >= start + WARMUP {
            latencies.push(t.elapsed());
        }
        next += C_EVERY;
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    Ok(p99.as_secs_f64() * 1e3)
}

/// [`light_load`] on a thread of its own: C's latency is the server's, not the wait of
/// its task behind the flood's on the generator's thread.
fn light_load_apart(addr: SocketAddr) -> Res<f64> {
    let p99 = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(light_load(addr))
            .map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "C's thread panicked")??;
    Ok(p99)
}

/// A's counts of 200s and 429s while measuring.
#[derive(Default)]
struct Flood {
    admitted: AtomicU64,
    refused: AtomicU64,
    measuring: AtomicBool,
}

/// A's flood until `stop`: connection `c` sends its `k`-th request at
/// `(k × 64 + c) / FLOOD_PER_SECOND` seconds from the start.
async fn flood(addr: SocketAddr, counts: Arc<Flood>, stop: Arc<AtomicBool>) -> Result<(), String> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..FLOOD_CONNECTIONS {
        let (counts, stop) = (counts.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(addr).await.map_err(|e| e.to_string())?;
            let request = query(addr, "initech");
            for k in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let due = (k * FLOOD_CONNECTIONS + c) as f64 / FLOOD_PER_SECOND;
                tokio::time::sleep_until((start + Duration::from_secs_f64(due)).into()).await;
                let status = conn.roundtrip(&request).await.map_err(|e| e.to_string())?;
                if counts.measuring.load(Ordering::Relaxed) {
                    match status {
                        200 => counts.admitted.fetch_add(1, Ordering::Relaxed),
                        429 => counts.refused.fetch_add(1, Ordering::Relaxed),
                        other => return Err(format!("A got {other}")),
                    };
                }
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

fn main() -> Res<()> {
    // One thread for the load generator: the server gets the rest of the machine.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let (child, addr) = spawn::spawn_with(&dir.path().join("data"), None).await?;
        let alone = light_load_apart(addr)?;

        let (counts, stop) = (Arc::new(Flood::default()), Arc::new(AtomicBool::new(false)));
        let flooding = tokio::spawn(flood(addr, counts.clone(), stop.clone()));
        // C's warm-up is the flood's too; then both are measured over the same window.
        let measuring = {
            let counts = counts.clone();
            tokio::spawn(async move {
                tokio::time::sleep(WARMUP).await;
                counts.measuring.store(true, Ordering::Relaxed);
                tokio::time::sleep(MEASURE).await;
                counts.measuring.store(false, Ordering::Relaxed);
            })
        };
        let during = light_load_apart(addr)?;
        measuring.await?;
        stop.store(true, Ordering::Relaxed);
        flooding.await??;
        let seconds = MEASURE.as_secs_f64();
        let admitted = counts.admitted.load(Ordering::Relaxed) as f64 / seconds;
        let refused = counts.refused.load(Ordering::Relaxed) as f64 / seconds;
        drop(child);
        println!("noisy_c_p99_alone: {alone:.3} ms");
        println!("noisy_c_p99_during_flood: {during:.3} ms");
        println!("noisy_c_p99_ratio: {:.2} x", during / alone);
        println!("noisy_a_admitted_over_limit: {:.3} x", admitted / A_LIMIT);
        println!("noisy_a_refused_per_second: {refused:.0} per_second");
        Ok(())
    })
}
