//! Durable-turn figures of the library, printed as `name: value unit` lines, each
//! `EveryTurn` figure beside its `OnHibernate` counterpart (same run, same machine).
//!
//! - `turns_per_second_<store>_<n>_agents_64_callers_<mode>`: 64 tasks on the runtime
//!   each call a writing handler (1 KB state, one field changed per turn) on agents taken
//!   in turn from `n`, as fast as replies come (3 s measured after 0.5 s warm-up).
//! - `durable_turn_p99_redb_at_half_rate`: the same 1,000-agent load on redb, open loop
//!   at half the measured `EveryTurn` rate; latency counted from each call's scheduled
//!   time, so a stall is not hidden by the callers waiting.
//! - `read_only_turn_*` and `read_only_turn_ratio_*`: one task's sequential calls of a
//!   handler that changes nothing, declared read-only or not, against `OnHibernate`.
//! - `change_check_<size>`: the cost of deciding whether a turn changed the state
//!   (encode the checkpoint into a reused buffer and compare), for 1 KB and 100 KB.
//!
//! PostgreSQL figures run when `TENANTRY_TEST_POSTGRES_URL` is set (a scratch schema,
//! dropped afterwards). Run: `cargo bench -p tenantry-server --bench durable`.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tenantry::checkpoint::{self, CheckpointIdentity};
use tenantry::schemars::JsonSchema;
use tenantry::store::{CheckpointStore, RedbStore};
use tenantry::{
    Context, Durability, Factory, Handler, HandlerError, Handlers, Identity, Key, Manager,
    ManagerConfig, Message, Partition, Runtime,
};
use tenantry_postgres::{PgOptions, PgStore};

const CALLERS: usize = 64;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(3);

/// An agent with a state of about `size` bytes.
#[derive(Serialize, Deserialize, Default)]
struct Doc {
    turns: u64,
    body: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Touch;
impl Message for Touch {
    const NAME: &'static str = "touch";
    type Reply = u64;
}

/// A read-only handler declared so ([`Message::READ_ONLY`]).
#[derive(Serialize, Deserialize, JsonSchema)]
struct Peek;
impl Message for Peek {
    const NAME: &'static str = "peek";
    const READ_ONLY: bool = true;
    type Reply = u64;
}

/// The same read-only handler, undeclared: its turns pay the change check.
#[derive(Serialize, Deserialize, JsonSchema)]
struct PeekUndeclared;
impl Message for PeekUndeclared {
    const NAME: &'static str = "peek_undeclared";
    type Reply = u64;
}

impl Factory for Doc {
    const NAME: &'static str = "doc";
    fn fresh(_: &Identity) -> Self {
        Self {
            turns: 0,
            body: "x".repeat(1000),
        }
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Touch>().add::<Peek>().add::<PeekUndeclared>();
    }
}

impl Handler<Touch> for Doc {
    async fn handle(&mut self, _: Touch, _: &mut Context) -> Result<u64, HandlerError> {
        self.turns += 1;
        Ok(self.turns)
    }
}

impl Handler<Peek> for Doc {
    async fn handle(&mut self, _: Peek, _: &mut Context) -> Result<u64, HandlerError> {
        Ok(self.turns)
    }
}

impl Handler<PeekUndeclared> for Doc {
    async fn handle(&mut self, _: PeekUndeclared, _: &mut Context) -> Result<u64, HandlerError> {
        Ok(self.turns)
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn report(name: &str, value: f64, unit: &str) {
    println!("{name}: {value:.1} {unit}");
}

fn mode_name(d: Durability) -> &'static str {
    match d {
        Durability::EveryTurn => "every_turn",
        Durability::OnHibernate => "on_hibernate",
    }
}

fn docs(store: Arc<dyn CheckpointStore>, durability: Durability) -> Res<(Runtime, Manager<Doc>)> {
    let rt = Runtime::builder().store_arc(store).build();
    let m = rt.register::<Doc>("docs", ManagerConfig::default().durability(durability))?;
    Ok((rt, m))
}

/// Closed loop: 64 callers as fast as replies come, over `agents` agents. Turns/s.
async fn closed_loop(m: &Manager<Doc>, agents: usize) -> Res<f64> {
    let p = Partition::new("bench")?;
    let keys: Arc<Vec<Key>> = Arc::new(
        (0..agents)
            .map(|i| Key::new(&format!("d{i}")).expect("key"))
            .collect(),
    );
    for k in keys.iter() {
        m.get(k.clone(), &p).await?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (from, to) = (start + WARMUP, start + WARMUP + MEASURE);
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| {
            let (m, p, keys, done) = (m.clone(), p.clone(), keys.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = c;
                loop {
                    let now = Instant::now();
                    if now >= to {
                        return Ok::<_, String>(());
                    }
                    let k = keys[i % keys.len()].clone();
                    i += CALLERS;
                    let h = m.get(k, &p).await.map_err(|e| e.to_string())?;
                    h.call(Touch).await.map_err(|e| e.to_string())?;
                    if now >= from && Instant::now() <= to {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / MEASURE.as_secs_f64())
}

/// Open loop at `rate` turns/s over `agents` agents; p99 latency in ms, counted from each
/// call's scheduled start.
async fn open_loop_p99(m: &Manager<Doc>, agents: usize, rate: f64) -> Res<f64> {
    let p = Partition::new("bench")?;
    let per_caller = Duration::from_secs_f64(CALLERS as f64 / rate);
    let start = Instant::now() + Duration::from_millis(10);
    let (from, to) = (start + WARMUP, start + WARMUP + MEASURE);
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| {
            let (m, p) = (m.clone(), p.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let offset = per_caller.mul_f64(c as f64 / CALLERS as f64);
                let mut n = 0u32;
                loop {
                    let due = start + offset + per_caller * n;
                    if due >= to {
                        return Ok::<_, String>(latencies);
                    }
                    tokio::time::sleep_until(due.into()).await;
                    let k = format!("d{}", ((n as usize) * CALLERS + c) % agents);
                    let h = m.get(k, &p).await.map_err(|e| e.to_string())?;
                    h.call(Touch).await.map_err(|e| e.to_string())?;
                    if due >= from {
                        latencies.push(due.elapsed().as_secs_f64() * 1e3);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok(all.get(all.len() * 99 / 100).copied().unwrap_or(f64::NAN))
}

/// One caller's sequential read-only calls (`declared`: of the handler declared
/// read-only), from a task on the runtime: ns per call (median of 5 runs).
async fn read_only(m: &Manager<Doc>, declared: bool) -> Res<f64> {
    let p = Partition::new("bench")?;
    let h = m.get("reader", &p).await?;
    h.call(Touch).await?;
    let task = tokio::spawn(async move {
        let mut runs = Vec::new();
        for _ in 0..5 {
            let n = 50_000;
            let t = Instant::now();
            for _ in 0..n {
                let turns = if declared {
                    h.call(Peek).await
                } else {
                    h.call(PeekUndeclared).await
                };
                std::hint::black_box(turns.map_err(|e| e.to_string())?);
            }
            runs.push(t.elapsed().as_nanos() as f64 / n as f64);
        }
        runs.sort_by(f64::total_cmp);
        Ok::<_, String>(runs[runs.len() / 2])
    });
    Ok(task.await??)
}

/// One writer's sequential 1 KB puts to the store: (p50, p99) in ms. What one commit
/// costs, for reading the latency figures.
async fn commit_latency(store: &dyn CheckpointStore) -> Res<(f64, f64)> {
    let id = Identity::new(Partition::new("bench")?, "probe", Key::new("p")?);
    let bytes: Arc<[u8]> = vec![7u8; 1000].into();
    let mut version = None;
    let mut samples = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        version = Some(store.put(&id, bytes.clone(), version).await?);
        samples.push(t.elapsed().as_secs_f64() * 1e3);
    }
    samples.sort_by(f64::total_cmp);
    Ok((
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    ))
}

/// What the change check costs for a state of `size` bytes: µs per check.
fn change_check(size: usize) -> Res<f64> {
    let p = Partition::new("bench")?;
    let key = Key::new("d1")?;
    let id = CheckpointIdentity {
        factory: "doc",
        state_version: 1,
        partition: &p,
        key: &key,
    };
    let doc = Doc {
        turns: 7,
        body: "x".repeat(size),
    };
    let last = checkpoint::encode(id, &doc)?;
    let mut scratch = Vec::with_capacity(last.len());
    let n = (20_000_000 / size.max(1)).clamp(200, 200_000);
    let t = Instant::now();
    let mut same = 0usize;
    for _ in 0..n {
        checkpoint::encode_into(id, &doc, &mut scratch)?;
        same += usize::from(std::hint::black_box(&scratch) == &last);
    }
    assert_eq!(same, n);
    Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
}

/// Turns/s at 1,000 agents and at one agent, both modes, on the store `open` makes.
async fn throughput(
    label: &str,
    open: &mut dyn FnMut() -> futures::future::BoxFuture<'static, Res<Arc<dyn CheckpointStore>>>,
) -> Res<f64> {
    let mut every_turn_rate = 0.0;
    for durability in [Durability::EveryTurn, Durability::OnHibernate] {
        for agents in [1000, 1] {
            let (rt, m) = docs(open().await?, durability)?;
            let rate = closed_loop(&m, agents).await?;
            drop(rt.shutdown().await);
            if durability == Durability::EveryTurn && agents == 1000 {
                every_turn_rate = rate;
            }
            report(
                &format!(
                    "turns_per_second_{label}_{agents}_agents_64_callers_{}",
                    mode_name(durability)
                ),
                rate,
                "per_second",
            );
        }
    }
    Ok(every_turn_rate)
}

async fn run() -> Res<()> {
    for size in [1_000, 100_000] {
        report(
            &format!("change_check_{}kb", size / 1000),
            change_check(size)?,
            "us",
        );
    }

    let dir = tempfile::tempdir()?;
    let mut n = 0;
    let mut open_redb = || -> futures::future::BoxFuture<'static, Res<Arc<dyn CheckpointStore>>> {
        n += 1;
        let path = dir.path().join(format!("bench-{n}.redb"));
        Box::pin(async move { Ok(Arc::new(RedbStore::open(path)?) as Arc<dyn CheckpointStore>) })
    };
    let (p50, p99) = commit_latency(&*open_redb().await?).await?;
    report("redb_commit_latency_p50", p50, "ms");
    report("redb_commit_latency_p99", p99, "ms");
    let rate = throughput("redb", &mut open_redb).await?;

    let (rt, m) = docs(open_redb().await?, Durability::EveryTurn)?;
    let p99 = open_loop_p99(&m, 1000, rate / 2.0).await?;
    drop(rt.shutdown().await);
    report("durable_turn_p99_redb_at_half_rate", p99, "ms");

    // Interleaved, best of three rounds each, so drift on a busy machine hits all alike.
    let mut best = [f64::MAX; 3];
    for _ in 0..3 {
        let runs = [
            (Durability::OnHibernate, true),
            (Durability::EveryTurn, true),
            (Durability::EveryTurn, false),
        ];
        for (slot, (durability, declared)) in runs.into_iter().enumerate() {
            let (rt, m) = docs(open_redb().await?, durability)?;
            let ns = read_only(&m, declared).await?;
            drop(rt.shutdown().await);
            best[slot] = best[slot].min(ns);
        }
    }
    report("read_only_turn_on_hibernate", best[0], "ns");
    report("read_only_turn_every_turn_declared", best[1], "ns");
    report("read_only_turn_every_turn_undeclared", best[2], "ns");
    println!("read_only_turn_ratio_declared: {:.2} x", best[1] / best[0]);
    println!(
        "read_only_turn_ratio_undeclared: {:.2} x",
        best[2] / best[0]
    );

    if let Ok(url) = std::env::var("TENANTRY_TEST_POSTGRES_URL") {
        let schema = format!("tenantry_bench_{}", std::process::id());
        let store = PgStore::connect(&url, PgOptions::with_schema(schema.clone())).await?;
        let mut open_pg =
            || -> futures::future::BoxFuture<'static, Res<Arc<dyn CheckpointStore>>> {
                let store = store.clone();
                Box::pin(async move { Ok(Arc::new(store) as Arc<dyn CheckpointStore>) })
            };
        let partition = Partition::new("bench")?;
        let result = throughput("postgres", &mut open_pg).await;
        let _ = store.purge_partition(&partition).await;
        store.close().await;
        PgStore::drop_schema(&url, &schema).await?;
        result?;
    } else {
        eprintln!("PostgreSQL figures skipped: TENANTRY_TEST_POSTGRES_URL is not set");
    }
    Ok(())
}

fn main() -> Res<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
