//! Runtime core figures, printed as `name: value unit` lines (the cost of the quota
//! checks among them, and of a call while a log subscriber records, with a span per turn
//! or with `tenantry::telemetry::fmt`'s lines).
//!
//! Run: `cargo bench -p tenantry --bench core`
//! (set `TENANTRY_BENCH_SCALE=0.1` for a quick smoke run).

use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tenantry::schemars::JsonSchema;
use tenantry::store::RedbStore;
use tenantry::telemetry::fmt;
use tenantry::{
    CallError, Context, Factory, Handler, HandlerError, Handlers, Identity, InstanceHandle, Key,
    ManagerConfig, Message, Partition, Runtime,
};
use tracing_subscriber::filter::FilterExt;
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Serialize, Deserialize, Default)]
struct Agent {
    count: u64,
    payload: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Bump;
impl Message for Bump {
    const NAME: &'static str = "bump";
    type Reply = u64;
}

impl Factory for Agent {
    const NAME: &'static str = "agent";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Bump>();
    }
}

impl Handler<Bump> for Agent {
    async fn handle(&mut self, _: Bump, _: &mut Context) -> Result<u64, HandlerError> {
        self.count += 1;
        Ok(self.count)
    }
}

fn scale(n: usize) -> usize {
    let s: f64 = std::env::var("TENANTRY_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * s) as usize).max(10)
}

fn report(name: &str, value: f64, unit: &str) {
    println!("{name}: {value:.1} {unit}");
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Median per-op nanoseconds over `batches` batches of `per_batch` ops.
async fn median_ns<F, Fut>(batches: usize, per_batch: usize, mut op: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(batches);
    for _ in 0..batches {
        let start = Instant::now();
        for _ in 0..per_batch {
            op().await;
        }
        samples.push(start.elapsed().as_nanos() as f64 / per_batch as f64);
    }
    median(samples)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

async fn memory_per_idle_instance() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Agent>("mem", ManagerConfig::default())
        .unwrap();
    let part = Partition::new("mem").unwrap();
    let n = scale(100_000);
    let keys: Vec<Key> = (0..n)
        .map(|i| Key::new(&format!("k{i}")).unwrap())
        .collect();
    // Warm the allocator and the directory shards, then measure a second population.
    let before = rss_bytes();
    let mut handles = Vec::with_capacity(n);
    for k in &keys {
        let h = m.get(k, &part).await.unwrap();
        handles.push(h);
    }
    drop(handles);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = rss_bytes();
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    let state = std::mem::size_of::<Agent>() as f64;
    report("memory_per_idle_instance", per, "bytes");
    report("memory_per_idle_instance_state_part", state, "bytes");
    rt.shutdown().await;
}

/// Runs this bench in a fresh process in `mode` (see `main`) and prints its lines: RSS
/// cannot tell a new population from memory freed by an earlier one, and a process has
/// one global log subscriber.
fn run_apart(mode: &str) {
    let out = std::process::Command::new(std::env::current_exe().expect("the bench binary"))
        .env(APART, mode)
        .output()
        .expect("the bench runs itself");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "the {mode} run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Set in the process [`run_apart`] starts, to its mode.
const APART: &str = "TENANTRY_BENCH_APART";

/// RSS per idle instance that handled one call (a log subscriber, if any, has seen its
/// turn), over a population of 50,000.
async fn memory_per_called_instance(name: &str) {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Agent>("called", ManagerConfig::default())
        .unwrap();
    let part = Partition::new("mem").unwrap();
    let n = scale(50_000);
    let keys: Vec<Key> = (0..n)
        .map(|i| Key::new(&format!("c{i}")).unwrap())
        .collect();
    let before = rss_bytes();
    for k in &keys {
        black_box(m.get(k, &part).await.unwrap().call(Bump).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per = rss_bytes().saturating_sub(before) as f64 / n as f64;
    report(name, per, "bytes");
    rt.shutdown().await;
}

/// Median nanoseconds of a typed call to `h`, a live instance.
async fn typed_call_ns(h: &InstanceHandle<Agent>) -> f64 {
    median_ns(scale(200), 1000, || async move {
        black_box(h.call(Bump).await.unwrap());
    })
    .await
}

async fn activations_and_calls() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Agent>("agents", ManagerConfig::default())
        .unwrap();
    let part = Partition::new("bench").unwrap();

    let n = scale(200_000);
    let keys: Vec<Key> = (0..n)
        .map(|i| Key::new(&format!("a{i}")).unwrap())
        .collect();
    let start = Instant::now();
    for k in &keys {
        black_box(m.get(k, &part).await.unwrap());
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    report(
        "fresh_activations_memory_store_1_caller",
        rate,
        "per_second",
    );

    // One caller per core, as a server's request tasks would be.
    let callers = 2;
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let m = m.clone();
            let part = part.clone();
            tokio::spawn(async move {
                for i in (c..n).step_by(callers) {
                    let k = Key::new(&format!("b{i}")).unwrap();
                    black_box(m.get(&k, &part).await.unwrap());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    report(
        "fresh_activations_memory_store_2_callers",
        rate,
        "per_second",
    );

    let key = keys[0].clone();
    let get_ns = median_ns(scale(200), 1000, || {
        let m = &m;
        let key = &key;
        let part = &part;
        async move {
            black_box(m.get(key, part).await.unwrap());
        }
    })
    .await;
    report("get_live_key_median", get_ns, "ns");

    let h = m.get(&key, &part).await.unwrap();
    report(
        "typed_call_round_trip_median",
        typed_call_ns(&h).await,
        "ns",
    );

    let json_ns = median_ns(scale(200), 1000, || {
        let h = &h;
        async move {
            black_box(h.call_json("bump", serde_json::Value::Null).await.unwrap());
        }
    })
    .await;
    report("json_call_round_trip_median", json_ns, "ns");

    let tells = scale(2_000_000);
    let before = h.call(Bump).await.unwrap();
    let start = Instant::now();
    let mut sent = 0;
    while sent < tells {
        match h.tell(Bump) {
            Ok(()) => sent += 1,
            Err(CallError::MailboxFull { .. }) => tokio::task::yield_now().await,
            Err(e) => panic!("{e}"),
        }
    }
    let after = h.call(Bump).await.unwrap();
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(after - before, tells as u64 + 1, "every tell was handled");
    report(
        "tell_throughput_one_instance",
        tells as f64 / elapsed,
        "per_second",
    );
    rt.shutdown().await;
}

/// How a service logs, at `info`, to a sink.
#[derive(Clone, Copy)]
enum Logging {
    /// `tracing_subscriber`'s fmt layer as it comes: every turn opens its span.
    SpanPerTurn,
    /// The fmt layer with `tenantry::telemetry::fmt`'s event format, the turns' spans
    /// refused.
    TurnFormat,
}

impl Logging {
    /// Installs the process's log subscriber.
    fn install(self) {
        let filter = || tracing_subscriber::EnvFilter::new("info");
        match self {
            Logging::SpanPerTurn => tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_ansi(false)
                .with_writer(std::io::sink)
                .init(),
            Logging::TurnFormat => {
                let layer = tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .event_format(fmt::TurnFormat::default())
                    .fmt_fields(fmt::PlainFields)
                    .with_writer(std::io::sink)
                    .with_filter(filter().and(fmt::without_turn_spans()));
                tracing_subscriber::registry().with(layer).init();
            }
        }
    }
}

/// The typed call of `activations_and_calls` with a log subscriber installed, as a
/// service runs. The subscriber is the process's from then on.
async fn calls_while_logging(logging: Logging) {
    logging.install();
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Agent>("agents", ManagerConfig::default())
        .unwrap();
    let h = m
        .get(
            &Key::new("logged").unwrap(),
            &Partition::new("bench").unwrap(),
        )
        .await
        .unwrap();
    let call_ns = typed_call_ns(&h).await;
    let name = match logging {
        Logging::SpanPerTurn => "typed_call_round_trip_logging_info_median",
        Logging::TurnFormat => "typed_call_round_trip_logging_info_turn_format_median",
    };
    report(name, call_ns, "ns");
    rt.shutdown().await;
}

async fn redb_hibernate_and_thaw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.redb");
    let n = scale(50_000);
    let part = Partition::new("bench").unwrap();
    let payload = "x".repeat(1000);
    {
        let rt = Runtime::new(RedbStore::open(&path).unwrap());
        let m = rt
            .register::<Agent>("agents", ManagerConfig::default())
            .unwrap();
        for i in 0..n {
            let initial = Agent {
                count: i as u64,
                payload: payload.clone(),
            };
            m.get_with(format!("k{i}"), &part, initial).await.unwrap();
        }
        let start = Instant::now();
        let (stopped, errors) = m.stop_all().await;
        let elapsed = start.elapsed().as_secs_f64();
        assert_eq!(stopped, n);
        assert!(errors.is_empty());
        report(
            "hibernations_redb_1kb_group_commit",
            n as f64 / elapsed,
            "per_second",
        );
        rt.shutdown().await;
    }
    let rt = Runtime::new(RedbStore::open(&path).unwrap());
    let m = rt
        .register::<Agent>("agents", ManagerConfig::default())
        .unwrap();
    let keys: Vec<Key> = (0..n)
        .map(|i| Key::new(&format!("k{i}")).unwrap())
        .collect();
    let start = Instant::now();
    let workers = 4;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let m = m.clone();
        let part = part.clone();
        let keys: Vec<Key> = keys.iter().skip(w).step_by(workers).cloned().collect();
        tasks.push(tokio::spawn(async move {
            for k in keys {
                black_box(m.get(&k, &part).await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    report("thaws_redb_1kb", n as f64 / elapsed, "per_second");
    rt.shutdown().await;
}

/// What the quota checks add to a call from outside (issue 16): admitting and releasing
/// one call of a partition without limits, and of one with a rate and a concurrency
/// limit (never reached), uncontended.
async fn quota_admission() {
    let rt = Runtime::builder().build();
    let quotas = rt.quotas().clone();
    let free = Partition::new("free").unwrap();
    let limited = Partition::new("limited").unwrap();
    rt.kernel()
        .config()
        .set(
            "tenants.limited.limits",
            serde_json::json!({"rate_per_sec": 1e9, "burst": 1_000_000, "concurrency": 1_000}),
        )
        .unwrap();
    for (name, p) in [
        ("quota_admit_no_limits", &free),
        ("quota_admit_rate_and_concurrency", &limited),
    ] {
        let ns = median_ns(scale(200), 10_000, || {
            black_box(quotas.admit(black_box(p)).is_ok());
            async {}
        })
        .await;
        report(name, ns, "ns");
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(mode) = std::env::var(APART) {
        rt.block_on(async {
            tokio::spawn(async move {
                match mode.as_str() {
                    "memory" => memory_per_called_instance("memory_per_idle_instance_called").await,
                    "memory_logging" => {
                        Logging::SpanPerTurn.install();
                        memory_per_called_instance("memory_per_idle_instance_called_logging_info")
                            .await;
                    }
                    "calls_turn_format" => calls_while_logging(Logging::TurnFormat).await,
                    other => panic!("no such mode: {other}"),
                }
            })
            .await
            .unwrap();
        });
        return;
    }
    run_apart("memory");
    run_apart("memory_logging");
    run_apart("calls_turn_format");
    // The driver runs as a task on a worker, like a real caller, not on the main thread.
    rt.block_on(async {
        tokio::spawn(async {
            memory_per_idle_instance().await;
            activations_and_calls().await;
            redb_hibernate_and_thaw().await;
            quota_admission().await;
            calls_while_logging(Logging::SpanPerTurn).await;
        })
        .await
        .unwrap();
    });
}
