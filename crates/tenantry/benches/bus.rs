//! Bus and kernel figures, printed as `name: value unit` lines.
//!
//! Run: `cargo bench -p tenantry --bench bus`

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::hint::black_box;
use std::time::Instant;
use tenantry::component::{Component, Runnables};
use tenantry::schemars::JsonSchema;
use tenantry::{
    Context, Factory, Handler, HandlerError, Handlers, Identity, Invoke, Key, ManagerConfig,
    Message, Partition, Runtime,
};

#[derive(Serialize, Deserialize, Default)]
struct Counter {
    n: u64,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Bump {
    by: u64,
}
impl Message for Bump {
    const NAME: &'static str = "bump";
    type Reply = u64;
}

impl Factory for Counter {
    const NAME: &'static str = "counter";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Bump>();
    }
}

impl Handler<Bump> for Counter {
    async fn handle(&mut self, m: Bump, _: &mut Context) -> Result<u64, HandlerError> {
        self.n += m.by;
        Ok(self.n)
    }
}

/// A component whose runnable does nothing but echo, to measure the bus itself.
struct Echo;

#[derive(Serialize, Deserialize, JsonSchema)]
struct Ping {
    seq: u64,
}

impl Component for Echo {
    const FACTORY: &'static str = "echo";
    fn create(_: &Context) -> Result<Self, HandlerError> {
        Ok(Self)
    }
    fn runnables(r: &mut Runnables<'_, Self>) {
        r.runnable("ping", "Echoes the params.", |_, _, p: Ping| Ok(p));
    }
}

fn report(name: &str, value: f64, unit: &str) {
    println!("{name}: {value:.1} {unit}");
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

async fn per_op_median<F, Fut>(mut op: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        for _ in 0..500 {
            op().await;
        }
        samples.push(start.elapsed().as_nanos() as f64 / 500.0);
    }
    median(samples)
}

async fn run() {
    let rt = Runtime::in_memory();
    tenantry_demo::install(&rt).await.unwrap();
    rt.register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let bus = rt.bus();
    let acme = Partition::new("acme").unwrap();
    rt.kernel().register::<Echo>().unwrap();
    rt.kernel()
        .hot_add("echo", "echo-acme", json!({"target": "acme"}))
        .await
        .unwrap();
    let ping = json!({"seq": 7});

    let exact = per_op_median(|| {
        let (bus, params) = (&bus, ping.clone());
        async move {
            black_box(
                bus.invoke("echo-acme.ping", params, Invoke::default())
                    .await
                    .unwrap(),
            );
        }
    })
    .await;
    report("bus_invoke_exact_handler_median", exact, "ns");

    let target = Invoke::target(&acme);
    let routed = per_op_median(|| {
        let (bus, params, target) = (&bus, ping.clone(), target.clone());
        async move {
            black_box(bus.invoke("echo.ping", params, target).await.unwrap());
        }
    })
    .await;
    report("bus_invoke_factory_target_median", routed, "ns");

    let params = json!({"sql": "select 1", "limit": 1});
    let exact = per_op_median(|| {
        let (bus, params) = (&bus, params.clone());
        async move {
            black_box(
                bus.invoke("tenant-db-acme.query", params, Invoke::default())
                    .await
                    .unwrap(),
            );
        }
    })
    .await;
    report("tenant_db_query_exact_median", exact, "ns");

    let target = Invoke::target(&acme);
    let routed = per_op_median(|| {
        let (bus, params, target) = (&bus, params.clone(), target.clone());
        async move {
            black_box(bus.invoke("tenant-db.query", params, target).await.unwrap());
        }
    })
    .await;
    report("tenant_db_query_factory_target_median", routed, "ns");

    // One instance, 64 callers at once (what the HTTP gateway does to a hot component).
    let callers = 64;
    let per_caller = 2_000;
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (bus, params) = (bus.clone(), params.clone());
            tokio::spawn(async move {
                for _ in 0..per_caller {
                    let reply =
                        bus.invoke("tenant-db-acme.query", params.clone(), Invoke::default());
                    black_box(reply.await.unwrap());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (callers * per_caller) as f64 / start.elapsed().as_secs_f64();
    report(
        "tenant_db_query_one_instance_64_callers",
        rate,
        "per_second",
    );

    let keyed_opts = Invoke::target(&acme).key(Key::new("visits").unwrap());
    bus.invoke("counters.bump", json!({"by": 1}), keyed_opts.clone())
        .await
        .unwrap();
    let keyed = per_op_median(|| {
        let (bus, opts) = (&bus, keyed_opts.clone());
        async move {
            black_box(
                bus.invoke("counters.bump", json!({"by": 1}), opts)
                    .await
                    .unwrap(),
            );
        }
    })
    .await;
    report("bus_invoke_keyed_live_median", keyed, "ns");

    let kernel = rt.kernel();
    let mut samples = Vec::new();
    for i in 0..2000 {
        let name = format!("tenant-db-t{i}");
        let props = json!({"target": format!("t{i}")});
        let start = Instant::now();
        kernel.hot_add("tenant-db", &name, props).await.unwrap();
        samples.push(start.elapsed().as_nanos() as f64 / 1000.0);
    }
    report("hot_add_component_median", median(samples), "us");
    rt.shutdown().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { tokio::spawn(run()).await.unwrap() });
}
