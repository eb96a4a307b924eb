//! Pod figures, printed as `name: value unit` lines.
//!
//! Run: `cargo bench -p tenantry --bench pods`

use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::time::Instant;
use tenantry::pod::{NodeSpec, Topology, TopologyError};
use tenantry::schemars::JsonSchema;
use tenantry::{
    Context, Factory, Handler, HandlerError, Handlers, Identity, ManagerConfig, Message, Partition,
    PodFactory, Runtime,
};

#[derive(Serialize, Deserialize, Default)]
struct Worker {
    n: u64,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Ping;
impl Message for Ping {
    const NAME: &'static str = "ping";
    type Reply = u64;
}

impl Factory for Worker {
    const NAME: &'static str = "worker";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Ping>();
    }
}

impl Handler<Ping> for Worker {
    async fn handle(&mut self, _: Ping, _: &mut Context) -> Result<u64, HandlerError> {
        self.n += 1;
        Ok(self.n)
    }
}

struct BigPod;
impl PodFactory for BigPod {
    const NAME: &'static str = "big";
    fn topology() -> Result<Topology, TopologyError> {
        (0..1000)
            .fold(Topology::builder("big"), |t, i| {
                t.node(NodeSpec::agent::<Worker>(format!("n{i}"), "workers").eager())
            })
            .node(NodeSpec::agent::<Worker>("lazy", "workers"))
            .build()
    }
}

fn report(name: &str, value: f64, unit: &str) {
    println!("{name}: {value:.1} {unit}");
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

async fn run() {
    let rt = Runtime::in_memory();
    rt.register::<Worker>("workers", ManagerConfig::default())
        .unwrap();
    let pods = rt
        .register_pod::<BigPod>("big_pods", ManagerConfig::default())
        .unwrap();

    let mut gets = Vec::new();
    let mut thaws = Vec::new();
    for round in 0..5 {
        let part = Partition::new(&format!("t{round}")).unwrap();
        let start = Instant::now();
        let (_, r) = pods.get("b", &part).await.unwrap();
        gets.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.completed.len(), 1000);
        pods.stop("b", &part).await.unwrap();
        let start = Instant::now();
        let (_, r) = pods.get("b", &part).await.unwrap();
        thaws.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.completed.len(), 1000);
    }
    report("pod_get_reconcile_1000_eager_nodes", median(gets), "ms");
    report("pod_stop_and_get_again_1000_nodes", median(thaws), "ms");

    let part = Partition::new("t0").unwrap();
    let (pod, _) = pods.get("b", &part).await.unwrap();
    pod.ensure_node("lazy").await.unwrap();
    let mut samples = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        for _ in 0..1000 {
            black_box(pod.ensure_node("n500").await.unwrap());
        }
        samples.push(start.elapsed().as_nanos() as f64 / 1000.0);
    }
    report("ensure_node_running_median", median(samples), "ns");
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
