//! PostgreSQL store figures, measured through the runtime, printed as `name: value unit`.
//!
//! Run: `cargo bench -p tenantry-postgres --bench pg` against a local server
//! (`TENANTRY_BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//! `TENANTRY_BENCH_SCALE=0.1` scales the population down for a quick smoke run. The
//! benchmark works in a fresh schema and drops it at the end.

use serde::{Deserialize, Serialize};
use sqlx::Connection;
use std::hash::{BuildHasher, Hasher};
use std::hint::black_box;
use std::time::Instant;
use tenantry::schemars::JsonSchema;
use tenantry::{
    Context, Factory, Handler, HandlerError, Handlers, Identity, Key, ManagerConfig, Message,
    Partition, Runtime,
};
use tenantry_postgres::{PgOptions, PgStore};

#[derive(Serialize, Deserialize, Default)]
struct Agent {
    count: u64,
    payload: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "tenantry::schemars")]
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

async fn hibernate_and_thaw(url: &str, schema: &str) {
    let n = scale(50_000);
    let part = Partition::new("bench").unwrap();
    let payload = "x".repeat(1000);
    let options = PgOptions::with_schema(schema);
    {
        let store = PgStore::connect(url, options.clone()).await.unwrap();
        let rt = Runtime::new(store);
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
        assert!(errors.is_empty(), "{:?}", errors.first());
        report(
            "hibernations_postgres_1kb_batched",
            n as f64 / elapsed,
            "per_second",
        );
        rt.shutdown().await;
    }
    // A new store and runtime: nothing cached, every get reads PostgreSQL.
    let store = PgStore::connect(url, options).await.unwrap();
    let rt = Runtime::new(store);
    let m = rt
        .register::<Agent>("agents", ManagerConfig::default())
        .unwrap();
    let keys: Vec<Key> = (0..n)
        .map(|i| Key::new(&format!("k{i}")).unwrap())
        .collect();
    let workers = 64;
    let start = Instant::now();
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
    report("thaws_postgres_1kb", n as f64 / elapsed, "per_second");
    rt.shutdown().await;
}

fn main() {
    let url = std::env::var("TENANTRY_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let suffix = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let schema = format!("tenantry_bench_{suffix:016x}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The driver runs as a task on a worker, like a real caller, not on the main thread.
    rt.block_on(async move {
        let (u, s) = (url.clone(), schema.clone());
        let outcome = tokio::spawn(async move { hibernate_and_thaw(&u, &s).await }).await;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&mut conn)
            .await
            .unwrap();
        outcome.unwrap();
    });
}
