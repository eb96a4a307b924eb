//! The side-by-side scenario with signalpy-kernel 0.4.0, shared by the `signalpy` bench
//! (the system allocator) and `signalpy_mimalloc` (mimalloc, the allocator the `tenantry`
//! server binary ships). See `signalpy.rs` for what it measures.

use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;
use tenantry::{Bus, Invoke, Partition, Runtime};
use tenantry_demo::QueryResult;

const BATCHES: usize = 200;
const ROUNDS: usize = 5;

/// `TENANTRY_BENCH_SCALE` (e.g. 0.01) shrinks the batches for a quick or profiled run.
fn batches() -> usize {
    let scale: f64 = std::env::var("TENANTRY_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    ((BATCHES as f64 * scale).ceil() as usize).max(1)
}
const PER_BATCH: usize = 200;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn per_op_median<F, Fut>(mut op: F) -> f64
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(BATCHES);
    let mut i = 0;
    for _ in 0..batches() {
        let start = Instant::now();
        for _ in 0..PER_BATCH {
            op(i).await;
            i += 1;
        }
        samples.push(start.elapsed().as_nanos() as f64 / PER_BATCH as f64);
    }
    median(samples)
}

/// The reply form a figure asks for: a JSON value (`Bus::invoke`), the handler's own
/// reply type (`Bus::invoke_as`) or JSON text (`Bus::invoke_raw`).
trait Form: Sized {
    async fn query(bus: &Bus, handler: &str, params: Value, opts: Invoke) -> Self;
    fn db_url(&self) -> Cow<'_, str>;
}

impl Form for Value {
    async fn query(bus: &Bus, handler: &str, params: Value, opts: Invoke) -> Self {
        bus.invoke(handler, params, opts).await.expect("invoke")
    }

    fn db_url(&self) -> Cow<'_, str> {
        Cow::Borrowed(self["db_url"].as_str().unwrap_or_default())
    }
}

impl Form for QueryResult {
    async fn query(bus: &Bus, handler: &str, params: Value, opts: Invoke) -> Self {
        bus.invoke_as(handler, params, opts)
            .await
            .expect("typed invoke")
    }

    fn db_url(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.db_url)
    }
}

impl Form for Box<RawValue> {
    async fn query(bus: &Bus, handler: &str, params: Value, opts: Invoke) -> Self {
        bus.invoke_raw(handler, params, opts)
            .await
            .expect("raw invoke")
    }

    /// Read from the text (only the config figure reads it, as the other forms' do).
    fn db_url(&self) -> Cow<'_, str> {
        #[derive(serde::Deserialize)]
        struct DbUrl<'a> {
            #[serde(borrow)]
            db_url: Cow<'a, str>,
        }
        serde_json::from_str::<DbUrl>(self.get())
            .map(|r| r.db_url)
            .unwrap_or_default()
    }
}

/// The three figures in the reply form `R`, in ns: exact, routed, config write then
/// routed query.
async fn scenario<R: Form>(rt: &Runtime, bus: &Bus) -> [f64; 3] {
    let params = json!({"sql": "select * from orders", "limit": 3});
    let globex = Invoke::target(&Partition::new("globex").expect("partition"));
    let exact = per_op_median(|_| {
        let params = params.clone();
        async move {
            let reply = R::query(bus, "tenant-db-acme.query", params, Invoke::default());
            black_box(reply.await);
        }
    })
    .await;
    let routed = per_op_median(|_| {
        let (params, target) = (params.clone(), globex.clone());
        async move {
            black_box(R::query(bus, "tenant-db.query", params, target).await);
        }
    })
    .await;
    let config = rt.kernel().config().clone();
    let migrate = per_op_median(|i| {
        let url = format!("postgres://db-new.prod/{i}");
        let (params, target, config) = (params.clone(), globex.clone(), config.clone());
        async move {
            config
                .set("tenants.globex.db_url", json!(url))
                .expect("config write");
            let reply = R::query(bus, "tenant-db.query", params, target).await;
            assert_eq!(reply.db_url(), url, "the query saw the write");
        }
    })
    .await;
    [exact, routed, migrate]
}

/// Every reply form's figures: JSON values first, then typed replies, then JSON text.
async fn all_forms(rt: &Runtime, bus: &Bus) -> [f64; FIGURES] {
    let [exact, routed, config] = scenario::<Value>(rt, bus).await;
    let [exact_as, routed_as, config_as] = scenario::<QueryResult>(rt, bus).await;
    let [exact_raw, routed_raw, config_raw] = scenario::<Box<RawValue>>(rt, bus).await;
    [
        exact, routed, config, exact_as, routed_as, config_as, exact_raw, routed_raw, config_raw,
    ]
}

const FIGURES: usize = 9;

/// Each figure's name, and the name of signalpy's figure it is set beside.
const NAMES: [(&str, &str); FIGURES] = [
    ("invoke_exact", "invoke_exact"),
    ("invoke_routed", "invoke_routed"),
    (
        "config_write_then_routed_query",
        "config_write_then_routed_query",
    ),
    ("invoke_as_exact", "invoke_exact"),
    ("invoke_as_routed", "invoke_routed"),
    (
        "config_write_then_routed_invoke_as",
        "config_write_then_routed_query",
    ),
    ("invoke_raw_exact", "invoke_exact"),
    ("invoke_raw_routed", "invoke_routed"),
    (
        "config_write_then_routed_invoke_raw",
        "config_write_then_routed_query",
    ),
];

/// Runs the Python original if it can; its `name: value unit` lines by name.
fn signalpy() -> Option<BTreeMap<String, f64>> {
    let script = std::env::var("SIGNALPY_BENCH").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/bench/signalpy_bench.py"
        )
        .to_owned()
    });
    if !std::path::Path::new(&script).exists() {
        eprintln!("signalpy figures skipped: no {script}");
        return None;
    }
    let out = std::process::Command::new("python3")
        .arg(&script)
        .output()
        .ok()
        .filter(|o| o.status.success());
    let Some(out) = out else {
        eprintln!(
            "signalpy figures skipped: it did not run (pip install signalpy-kernel==0.4.0 pydantic)"
        );
        return None;
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    Some(
        text.lines()
            .filter_map(|l| {
                let (name, rest) = l.split_once(": ")?;
                Some((name.to_owned(), rest.split(' ').next()?.parse().ok()?))
            })
            .collect(),
    )
}

/// Runs the scenario and prints its lines, each name ending in `suffix` (the allocator's
/// mark), then signalpy's and the ratios.
pub fn run(suffix: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (runtime, bus) = rt.block_on(async {
        let runtime = Runtime::in_memory();
        tenantry_demo::install(&runtime).await.expect("demo");
        let bus = runtime.bus();
        (runtime, bus)
    });
    let (mut tasks, mut mains) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        tasks.push(rt.block_on({
            let (runtime, bus) = (runtime.clone(), bus.clone());
            async move {
                tokio::spawn(async move { all_forms(&runtime, &bus).await })
                    .await
                    .expect("task")
            }
        }));
        mains.push(rt.block_on(all_forms(&runtime, &bus)));
    }
    let round_median = |rounds: &[[f64; FIGURES]]| -> [f64; FIGURES] {
        std::array::from_fn(|i| median(rounds.iter().map(|r| r[i]).collect()))
    };
    let (from_task, from_main) = (round_median(&tasks), round_median(&mains));
    for (i, (name, _)) in NAMES.iter().enumerate() {
        println!("tenantry_{name}_task{suffix}: {:.0} ns", from_task[i]);
        println!("tenantry_{name}_main{suffix}: {:.0} ns", from_main[i]);
    }
    if let Some(peer) = signalpy() {
        for (i, (name, theirs)) in NAMES.iter().enumerate() {
            if let Some(theirs) = peer.get(&format!("signalpy_{theirs}")) {
                println!("ratio_{name}_task{suffix}: {:.2} x", theirs / from_task[i]);
                println!("ratio_{name}_main{suffix}: {:.2} x", theirs / from_main[i]);
            }
        }
    }
    rt.block_on(runtime.shutdown());
}
