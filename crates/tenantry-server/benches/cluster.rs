//! Cluster mode figures (issue 15), printed as `name: value unit`.
//!
//! - `forwarded_call_p50` / `forwarded_call_p99`: two nodes in this process (a runtime
//!   each, `ClusterNode::serve`, a NATS connection each), sequential calls from a task
//!   through node B's bus to durable agents node A owns, over NATS on loopback. The
//!   handler reads its state (no commit), so the figure is the forwarding's.
//! - `local_call_single_process` / `local_call_cluster` / `local_call_overhead`: the same
//!   call on node A to its own agents, against a runtime without cluster mode over the
//!   same store: the cost of the admission check every keyed call pays in cluster mode.
//! - `failover_median` / `failover_max`: three release `tenantry serve --cluster`
//!   processes; each round SIGKILLs one and times, through the survivors, until every one
//!   of 300 agents answers again (the dead node's among them; each probe with a 2 s
//!   `timeout_ms`, tried again until it answers); a new node then replaces the dead one.
//!
//! Run: `cargo bench -p tenantry-server --bench cluster` with NATS (JetStream) and
//! PostgreSQL at `TENANTRY_BENCH_NATS_URL` (default `127.0.0.1:4222`) and
//! `TENANTRY_BENCH_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`). It
//! works in a cluster and a schema of its own and removes both.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantry::cluster::{Routing, ShardCount, ShardMap};
use tenantry::schemars::JsonSchema;
use tenantry::{
    Bus, Context, Durability, Factory, Handler, HandlerError, Handlers, Identity, Invoke, Key,
    ManagerConfig, Message, Partition, Runtime,
};
use tenantry_cluster::{ClusterNode, Join, MembershipConfig, NodeConfig};
use tenantry_postgres::{PgOptions, PgStore};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[path = "support/conn.rs"]
mod conn;
use conn::Conn;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SHARDS: u32 = 1024;

fn report(name: &str, value: f64, unit: &str) {
    println!("{name}: {value:.2} {unit}");
}

#[derive(Serialize, Deserialize, Default)]
struct Tally {
    count: u64,
}

#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "tenantry::schemars")]
struct Get;
impl Message for Get {
    const NAME: &'static str = "get";
    type Reply = u64;
}

impl Factory for Tally {
    const NAME: &'static str = "tally";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Get>();
    }
}

impl Handler<Get> for Tally {
    async fn handle(&mut self, _: Get, _: &mut Context) -> Result<u64, HandlerError> {
        Ok(self.count)
    }
}

/// What the benchmark runs against.
struct Env {
    nats: String,
    pg: String,
    schema: String,
    cluster: String,
}

fn shard_map() -> Arc<ShardMap> {
    Arc::new(
        ShardMap::new(ShardCount::new(SHARDS).expect("a count")).route("tallies", Routing::Key),
    )
}

fn node_config() -> NodeConfig {
    let quarter = Duration::from_millis(750);
    NodeConfig {
        membership: MembershipConfig {
            lease: Duration::from_secs(3),
            margin: quarter,
            renew_every: quarter,
        },
        round_every: quarter,
        ..NodeConfig::default()
    }
}

/// Node `name` in this process: its runtime, over its own NATS connection.
async fn node(env: &Env, store: &PgStore, name: &str) -> Res<(ClusterNode, Runtime)> {
    let map = shard_map();
    let fenced = store.fenced(&env.cluster, name, tenantry_cluster::shard_of(&map));
    let rt = Runtime::builder().store(fenced.clone()).build();
    rt.register::<Tally>(
        "tallies",
        ManagerConfig::default().durability(Durability::EveryTurn),
    )?;
    let client = tenantry_cluster::async_nats::connect(&env.nats).await?;
    let join = Join {
        client,
        cluster: env.cluster.clone(),
        node: name.to_owned(),
        address: "in-process".to_owned(),
        count: ShardCount::new(SHARDS).ok_or("count")?,
        config: node_config(),
    };
    let node = ClusterNode::serve(join, fenced, &rt, map).await?;
    Ok((node, rt))
}

async fn get(bus: &Bus, key: &Key) -> Res<()> {
    bus.invoke(
        "tallies.get",
        serde_json::Value::Null,
        Invoke::default().key(key.clone()),
    )
    .await?;
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Mean time of `n` calls to `keys` in turn through `bus`.
async fn mean_call(bus: &Bus, keys: &[Key], n: usize) -> Res<Duration> {
    let start = Instant::now();
    for i in 0..n {
        get(bus, &keys[i % keys.len()]).await?;
    }
    Ok(start.elapsed() / n as u32)
}

async fn in_process(env: &Env) -> Res<()> {
    let store = PgStore::connect(&env.pg, PgOptions::with_schema(env.schema.clone())).await?;
    let (a, rt_a) = node(env, &store, "a").await?;
    let (b, rt_b) = node(env, &store, "b").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Settled: each serves its half, so no shard moves while the calls are timed.
    let half = SHARDS as usize / 2;
    while a.served().len() != half || b.served().len() != half {
        if Instant::now() > deadline {
            return Err("the two nodes did not share the shards in 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acme = Partition::new("acme")?;
    let map = shard_map();
    let on_a: Vec<Key> = (0..)
        .map(|i| Key::new(&format!("k{i}")).expect("a key"))
        .filter(|k| {
            map.shard(&Identity::new(acme.clone(), "tallies", k.clone()))
                .is_some_and(|s| a.serves(s))
        })
        .take(64)
        .collect();
    let (bus_a, bus_b) = (rt_a.bus_for(&acme), rt_b.bus_for(&acme));
    for k in &on_a {
        get(&bus_b, k).await?;
    }
    let mut lat = Vec::with_capacity(5_000);
    for i in 0..5_000 {
        let t = Instant::now();
        get(&bus_b, &on_a[i % on_a.len()]).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    report(
        "forwarded_call_p50",
        percentile(&lat, 0.5).as_secs_f64() * 1e6,
        "us",
    );
    report(
        "forwarded_call_p99",
        percentile(&lat, 0.99).as_secs_f64() * 1e6,
        "us",
    );

    // The same calls on the owner, against a runtime without cluster mode.
    let single = Runtime::builder().store(store.clone()).build();
    single.register::<Tally>(
        "tallies",
        ManagerConfig::default().durability(Durability::EveryTurn),
    )?;
    let bus_single = single.bus_for(&acme);
    let (mut best_single, mut best_cluster) = (Duration::MAX, Duration::MAX);
    for _ in 0..5 {
        best_single = best_single.min(mean_call(&bus_single, &on_a, 100_000).await?);
        best_cluster = best_cluster.min(mean_call(&bus_a, &on_a, 100_000).await?);
    }
    report(
        "local_call_single_process",
        best_single.as_secs_f64() * 1e9,
        "ns",
    );
    report("local_call_cluster", best_cluster.as_secs_f64() * 1e9, "ns");
    report(
        "local_call_overhead",
        best_cluster.as_secs_f64() / best_single.as_secs_f64(),
        "x",
    );
    drop(single);
    let _ = (a.leave().await, b.leave().await);
    Ok(())
}

/// A `tenantry serve --cluster` process.
struct Proc {
    child: Child,
    addr: SocketAddr,
}

async fn spawn(env: &Env, node: &str, data: &std::path::Path) -> Res<Proc> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.join(node))
        .env("RUST_LOG", "error")
        .env("TENANTRY_ADMIN_KEY", "bench-admin")
        .env("TENANTRY_POSTGRES_URL", &env.pg)
        .env("TENANTRY_POSTGRES_SCHEMA", &env.schema)
        .env("TENANTRY_CLUSTER", &env.nats)
        .env("TENANTRY_CLUSTER_NAME", format!("{}p", env.cluster))
        .env("TENANTRY_NODE", node)
        .env_remove("TENANTRY_CONFIG")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let addr = loop {
        let line = lines.next_line().await?.ok_or("server exited")?;
        if let Some(rest) = line.strip_prefix("tenantry listening on http://") {
            break rest.trim().parse()?;
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Proc { child, addr })
}

/// One request on a fresh connection: its status and body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: &str,
) -> Res<(u16, Vec<u8>)> {
    let mut c = Conn::open(addr).await?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let status = c.roundtrip(req.as_bytes()).await?;
    Ok((status, c.body().to_vec()))
}

/// Waits until every process counts `procs.len()` members and together they serve every
/// shard.
async fn settled(procs: &[Proc]) -> Res<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut served = 0;
        let mut agree = true;
        for p in procs {
            let (status, body) =
                request(p.addr, "GET", "/v1/admin/cluster", "bench-admin", "").await?;
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let r = &v["result"];
            agree &= status == 200
                && r["members"].as_array().map(Vec::len) == Some(procs.len())
                && r["owners"]
                    .as_array()
                    .is_some_and(|o| o.iter().all(|x| x.is_string()));
            served += r["shards"].as_object().map_or(0, |s| s.len());
        }
        if agree && served == SHARDS as usize {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the cluster did not settle in 90 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const AGENTS: usize = 300;

fn note_path(agent: usize, handler: &str) -> String {
    format!("/v1/partitions/acme/invoke/workspace_workers.{handler}?key=f{agent}")
}

async fn failover(env: &Env) -> Res<()> {
    let data = std::env::temp_dir().join(format!("tenantry-bench-{}", env.cluster));
    let mut procs = Vec::new();
    for n in 0..3 {
        procs.push(spawn(env, &format!("n{n}"), &data).await?);
    }
    settled(&procs).await?;
    for agent in 0..AGENTS {
        let (status, _) = request(
            procs[0].addr,
            "POST",
            &note_path(agent, "note"),
            "demo-acme-key",
            r#"{"text":"x"}"#,
        )
        .await?;
        if status != 200 {
            return Err(format!("writing f{agent}: {status}").into());
        }
    }
    let mut times = Vec::new();
    for round in 0..5 {
        let victim = round % procs.len();
        let mut dead = procs.remove(victim);
        dead.child.start_kill()?;
        let killed = Instant::now();
        dead.child.wait().await?;
        let survivors: Vec<SocketAddr> = procs.iter().map(|p| p.addr).collect();
        let checks: Vec<_> = (0..8)
            .map(|w| {
                let survivors = survivors.clone();
                tokio::spawn(async move {
                    let mut last = Duration::ZERO;
                    for agent in (w..AGENTS).step_by(8) {
                        loop {
                            let via = survivors[agent % survivors.len()];
                            // A client's own timeout: a probe lost with the dead node
                            // is tried again, not waited on for the 10 s deadline.
                            let answer = request(
                                via,
                                "POST",
                                &format!("{}&timeout_ms=2000", note_path(agent, "notes")),
                                "demo-acme-key",
                                "{}",
                            )
                            .await;
                            if matches!(answer, Ok((200, _))) {
                                break;
                            }
                        }
                        last = last.max(killed.elapsed());
                    }
                    last
                })
            })
            .collect();
        let mut worst = Duration::ZERO;
        for c in checks {
            worst = worst.max(c.await?);
        }
        times.push(worst.as_secs_f64());
        eprintln!(
            "round {round}: every agent answers {:.2} s after SIGKILL",
            worst.as_secs_f64()
        );
        procs.insert(victim, spawn(env, &format!("n{}", 3 + round), &data).await?);
        settled(&procs).await?;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    report("failover_median", times[times.len() / 2], "s");
    report("failover_max", times[times.len() - 1], "s");
    for mut p in procs {
        let _ = p.child.start_kill();
        let _ = p.child.wait().await;
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

async fn clean(env: &Env) {
    if let Ok(client) = tenantry_cluster::async_nats::connect(&env.nats).await {
        let js = tenantry_cluster::async_nats::jetstream::new(client);
        for cluster in [env.cluster.clone(), format!("{}p", env.cluster)] {
            for what in ["members", "shards"] {
                let _ = js
                    .delete_key_value(format!("tenantry_{cluster}_{what}"))
                    .await;
            }
        }
    }
    let _ = PgStore::drop_schema(&env.pg, &env.schema).await;
}

fn main() -> Res<()> {
    let id = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish() & 0xffff_ffff
    };
    let env = Env {
        nats: std::env::var("TENANTRY_BENCH_NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into()),
        pg: std::env::var("TENANTRY_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        schema: format!("tenantry_bench_cluster_{id:x}"),
        cluster: format!("bench{id:x}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(async {
        in_process(&env).await?;
        failover(&env).await
    });
    rt.block_on(clean(&env));
    outcome
}
