//! Three `tenantry serve --cluster` processes on the local NATS and PostgreSQL
//! (TENANTRY_TEST_NATS_URL and TENANTRY_TEST_POSTGRES_URL; skipped, saying so, without
//! them), each test in a cluster and schema of its own, removed afterwards.
//!
//! Eight writers append unique ids to 1,000 keyed agents through random nodes while a
//! node is killed with SIGKILL, paused with SIGSTOP past its lease, or every node is
//! restarted in turn; then every id a node acknowledged must be in its agent exactly
//! once, in the order of acknowledgement. Two nodes hosting one agent at once would
//! break that (the second host's appends would start from another list, or be lost).

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tenantry_testing::random_below;

const NODES: usize = 3;
const WRITERS: usize = 8;
const AGENTS: usize = 1_000;

/// One cluster of test processes.
struct Cluster {
    name: String,
    schema: String,
    pg_url: String,
    nats_url: String,
    dir: tempfile::TempDir,
    procs: Vec<Option<Proc>>,
    /// The addresses writers may use now.
    up: Arc<RwLock<Vec<SocketAddr>>>,
}

impl Cluster {
    /// Starts `NODES` nodes and waits until they share the shards; `None` when the
    /// services are not configured.
    async fn start(tag: &str) -> Option<Self> {
        let (nats_url, pg_url) = tenantry_testing::cluster_services()?;
        let id = random_below(u64::MAX) & 0xffff_ffff;
        let mut cluster = Self {
            name: format!("t{tag}{id:x}"),
            schema: format!("tenantry_test_cluster_{tag}_{id:x}"),
            pg_url,
            nats_url,
            dir: tempfile::tempdir().unwrap(),
            procs: Vec::new(),
            up: Arc::default(),
        };
        for n in 0..NODES {
            let proc = cluster.spawn(n).await;
            cluster.procs.push(Some(proc));
        }
        cluster.refresh_up();
        cluster.wait_stable().await;
        Some(cluster)
    }

    fn node(n: usize) -> String {
        format!("n{n}")
    }

    async fn spawn(&self, n: usize) -> Proc {
        let node = Self::node(n);
        let data = self.dir.path().join(&node);
        spawn_binary(
            &data,
            &[
                ("TENANTRY_POSTGRES_URL", self.pg_url.as_str()),
                ("TENANTRY_POSTGRES_SCHEMA", self.schema.as_str()),
                ("TENANTRY_CLUSTER", self.nats_url.as_str()),
                ("TENANTRY_CLUSTER_NAME", self.name.as_str()),
                ("TENANTRY_NODE", node.as_str()),
            ],
        )
        .await
    }

    fn refresh_up(&self) {
        *self.up.write().unwrap() = self.procs.iter().flatten().map(|p| p.addr).collect();
    }

    fn addr(&self, n: usize) -> SocketAddr {
        self.procs[n].as_ref().expect("node is up").addr
    }

    /// One request to node `n`, which must answer.
    async fn request(
        &self,
        n: usize,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&[u8]>,
    ) -> Resp {
        request(self.addr(n), method, path, key, body)
            .await
            .unwrap_or_else(|e| panic!("n{n} does not answer {method} {path}: {e}"))
    }

    /// Onboards `partition` through node `n`; its new API key.
    async fn onboard(&self, n: usize, partition: &str) -> String {
        let body = serde_json::to_vec(&json!({ "partition": partition })).unwrap();
        let r = self
            .request(n, "POST", "/v1/admin/partitions", Some(ADMIN), Some(&body))
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["result"]["api_key"].as_str().unwrap().to_owned()
    }

    /// What node `n` says of the cluster.
    async fn status(&self, n: usize) -> Option<Value> {
        let r = request(self.addr(n), "GET", "/v1/admin/cluster", Some(ADMIN), None)
            .await
            .ok()?;
        (r.status == 200).then(|| r.json()["result"].clone())
    }

    /// Waits until every running node counts the same members and every shard has a
    /// running owner that serves it.
    async fn wait_stable(&self) {
        let running: Vec<usize> = (0..NODES).filter(|n| self.procs[*n].is_some()).collect();
        let names: HashSet<String> = running.iter().map(|n| Self::node(*n)).collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut stable = true;
            let mut served = 0;
            for n in &running {
                let Some(s) = self.status(*n).await else {
                    stable = false;
                    break;
                };
                let members: HashSet<String> = s["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["node"].as_str().unwrap().to_owned())
                    .collect();
                let owners = s["owners"].as_array().unwrap();
                stable &= members == names
                    && owners
                        .iter()
                        .all(|o| o.as_str().is_some_and(|o| names.contains(o)));
                let shards = s["shards"].as_object().unwrap();
                served += shards.len();
                stable &= !shards.is_empty();
                if !stable {
                    break;
                }
                if n == running.last().unwrap() {
                    stable &= served == owners.len();
                }
            }
            if stable {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not settle in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn pid(&self, n: usize) -> String {
        self.procs[n]
            .as_ref()
            .unwrap()
            .child
            .id()
            .unwrap()
            .to_string()
    }

    fn signal(&self, n: usize, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid(n)])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    async fn kill(&mut self, n: usize) {
        let mut proc = self.procs[n].take().unwrap();
        self.up.write().unwrap().retain(|a| *a != proc.addr);
        proc.child.start_kill().expect("SIGKILL");
        let _ = proc.child.wait().await;
    }

    async fn clean(mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.child.start_kill();
            let _ = p.child.wait().await;
        }
        if let Ok(client) = tenantry_cluster::async_nats::connect(&self.nats_url).await {
            let js = tenantry_cluster::async_nats::jetstream::new(client);
            for what in ["members", "shards"] {
                let _ = js
                    .delete_key_value(format!("tenantry_{}_{what}", self.name))
                    .await;
            }
        }
        let _ = tenantry_postgres::PgStore::drop_schema(&self.pg_url, &self.schema).await;
    }
}

/// What the writers saw.
#[derive(Default)]
struct Load {
    sent: Vec<Sent>,
    /// Answers other than 200, by status and code.
    refused: BTreeMap<String, usize>,
}

/// Writer `w`: appends `w-i` to agent `(i * WRITERS + w) % AGENTS` through a random
/// running node, until `stop`. A connection that fails is not an answer: the write is
/// not acknowledged and the writer goes on.
async fn writer(w: usize, up: Arc<RwLock<Vec<SocketAddr>>>, stop: Arc<AtomicBool>) -> Load {
    let mut load = Load::default();
    for i in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let addr = {
            let up = up.read().unwrap();
            up[random_below(up.len() as u64) as usize]
        };
        let agent = format!("a{}", (i * WRITERS + w) % AGENTS);
        let id = format!("{w}-{i}");
        let body = serde_json::to_vec(&json!({ "text": id })).unwrap();
        let path = format!("/v1/partitions/acme/invoke/workspace_workers.note?key={agent}");
        let sent = Instant::now();
        let answer = request(addr, "POST", &path, Some(ACME), Some(&body)).await;
        let acked = match &answer {
            Ok(r) if r.status == 200 => Some(Instant::now()),
            Ok(r) => {
                let code = serde_json::from_slice::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                *load
                    .refused
                    .entry(format!("{} {code}", r.status))
                    .or_default() += 1;
                None
            }
            Err(_) => None,
        };
        load.sent.push(Sent {
            id,
            agent,
            sent,
            acked,
        });
    }
    load
}

/// The writers, running.
struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Load>>,
}

impl Writers {
    /// Starts `WRITERS` writers over the running nodes of `cluster`.
    fn start(cluster: &Cluster) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..WRITERS)
            .map(|w| tokio::spawn(writer(w, cluster.up.clone(), stop.clone())))
            .collect();
        Self { stop, tasks }
    }

    /// Stops them and gathers what they saw.
    async fn finish(self) -> Load {
        self.stop.store(true, Ordering::Relaxed);
        let mut load = Load::default();
        for w in self.tasks {
            let l = w.await.unwrap();
            load.sent.extend(l.sent);
            for (k, v) in l.refused {
                *load.refused.entry(k).or_default() += v;
            }
        }
        load
    }
}

/// Every acknowledged id is in its agent exactly once, in acknowledgement order, and the
/// agents hold nothing nobody sent; asked through node `via`.
async fn verify(cluster: &Cluster, via: usize, load: &Load) -> usize {
    verify_agents(cluster.addr(via), "cluster", &load.sent).await
}

fn acked(load: &Load) -> usize {
    load.sent.iter().filter(|s| s.acked.is_some()).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_write_and_its_agents_move() {
    let Some(mut cluster) = Cluster::start("kill").await else {
        return;
    };
    let victim = random_below(NODES as u64) as usize;
    let survivor = (victim + 1) % NODES;
    let writers = Writers::start(&cluster);
    tokio::time::sleep(Duration::from_millis(1_500 + random_below(1_000))).await;
    cluster.kill(victim).await;
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let load = writers.finish().await;
    let after = load
        .sent
        .iter()
        .filter(|s| {
            s.acked
                .is_some_and(|a| a > killed_at + Duration::from_secs(8))
        })
        .count();
    eprintln!(
        "kill: {} sent, {} acknowledged, {after} in the last 2 s, refused {:?}",
        load.sent.len(),
        acked(&load),
        load.refused
    );
    // A floor that says the load ran, not how fast: on 2 busy cores three nodes and
    // PostgreSQL acknowledged 977 writes in one CI run (about 80 a second), where the
    // floor of 1,000 failed it. Speed is measured by the cluster bench, not here.
    assert!(acked(&load) > 300, "the load ran");
    assert!(after > 0, "the survivors answer for every agent again");
    let checked = verify(&cluster, survivor, &load).await;
    assert_eq!(checked, acked(&load));

    // A tenant's key is confined on a node that does not own the tenant's agents too.
    let on = cluster.addr(survivor);
    let cross = request(
        on,
        "POST",
        "/v1/partitions/globex/invoke/workspace_workers.notes?key=a1",
        Some(ACME),
        Some(b"{}"),
    )
    .await
    .unwrap();
    assert_eq!(cross.status, 403, "{}", cross.text());
    let globex = request(
        on,
        "POST",
        "/v1/partitions/globex/invoke/workspace_workers.notes?key=a1",
        Some(GLOBEX),
        Some(b"{}"),
    )
    .await
    .unwrap();
    assert_eq!(globex.json()["result"], json!([]), "globex's a1 is its own");
    cluster.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_lease_lands_no_write_and_loses_none() {
    let Some(cluster) = Cluster::start("pause").await else {
        return;
    };
    let paused = random_below(NODES as u64) as usize;
    let survivor = (paused + 1) % NODES;
    let writers = Writers::start(&cluster);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    // Writers still send to it: those requests wait in its socket.
    cluster.signal(paused, "-STOP");
    // The default lease is 3 s: well past it, the others have taken its shards.
    tokio::time::sleep(Duration::from_secs(8)).await;
    cluster.signal(paused, "-CONT");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let load = writers.finish().await;
    eprintln!(
        "pause: {} sent, {} acknowledged, refused {:?}",
        load.sent.len(),
        acked(&load),
        load.refused
    );
    // Every writer soon waits on the paused node for the whole pause: the load runs for
    // about five of those thirteen seconds (debug builds, other tests beside it).
    assert!(acked(&load) > 200, "the load ran");
    let checked = verify(&cluster, survivor, &load).await;
    assert_eq!(checked, acked(&load));
    // The paused node rejoins and serves again.
    cluster.wait_stable().await;
    cluster.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_answers_every_request_with_success() {
    let Some(mut cluster) = Cluster::start("roll").await else {
        return;
    };
    let writers = Writers::start(&cluster);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 0..NODES {
        // Writers stop choosing it first, as a load balancer draining it would.
        let proc = cluster.procs[n].take().unwrap();
        cluster.up.write().unwrap().retain(|a| *a != proc.addr);
        assert!(proc.terminate().await.success(), "n{n} exits cleanly");
        cluster.procs[n] = Some(cluster.spawn(n).await);
        cluster.refresh_up();
        cluster.wait_stable().await;
    }
    let load = writers.finish().await;
    eprintln!(
        "rolling restart: {} sent, {} acknowledged, refused {:?}",
        load.sent.len(),
        acked(&load),
        load.refused
    );
    assert!(
        load.refused.is_empty(),
        "non-2xx answers: {:?}",
        load.refused
    );
    let checked = verify(&cluster, 0, &load).await;
    assert_eq!(checked, acked(&load));
    cluster.clean().await;
}

/// Retries `check` against the cluster until it holds, at most five seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_config_and_offboarding_on_one_node_reach_every_node() {
    let Some(cluster) = Cluster::start("reg").await else {
        return;
    };
    let key = cluster.onboard(0, "hooli").await;
    let note = "/v1/partitions/hooli/invoke/workspace_workers.note?key=x";
    for n in 1..NODES {
        eventually(&format!("n{n} serves the new tenant"), || async {
            let r = cluster
                .request(n, "POST", note, Some(&key), Some(br#"{"text": "hi"}"#))
                .await;
            r.status == 200
        })
        .await;
    }
    let set = cluster
        .request(
            1,
            "PUT",
            "/v1/admin/config/tenants.hooli.plan",
            Some(ADMIN),
            Some(br#""gold""#),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    eventually("n2 reads the config written on n1", || async {
        let r = cluster
            .request(
                2,
                "GET",
                "/v1/admin/config/tenants.hooli.plan",
                Some(ADMIN),
                None,
            )
            .await;
        r.status == 200 && r.json()["result"]["value"] == json!("gold")
    })
    .await;
    // Routes that act on an agent or a pod itself reach its node from any node: the
    // others relay them.
    let shard = tenantry::cluster::shard_of(
        &tenantry::Partition::new("hooli").unwrap(),
        tenantry::cluster::RoutingKey::Pod("x"),
        tenantry::cluster::ShardCount::new(1024).unwrap(),
    );
    let owners = cluster.status(0).await.unwrap()["owners"].clone();
    let owner = owners[shard.0 as usize].as_str().unwrap()[1..]
        .parse::<usize>()
        .unwrap();
    let (other, third) = ((owner + 1) % NODES, (owner + 2) % NODES);
    let stop = "/v1/partitions/hooli/instances/workspace_workers/x";
    let stopped = cluster
        .request(other, "DELETE", stop, Some(&key), None)
        .await;
    assert_eq!(
        stopped.status,
        200,
        "relayed from n{other}: {}",
        stopped.text()
    );
    assert_eq!(stopped.json()["result"]["stopped"], true);
    let again = cluster
        .request(owner, "DELETE", stop, Some(&key), None)
        .await;
    assert_eq!(again.status, 404, "stopped on its node: {}", again.text());
    let pod = "/v1/partitions/hooli/pods/workspace_pods/x";
    let r = cluster
        .request(other, "POST", pod, Some(&key), Some(b"{}"))
        .await;
    assert_eq!(r.status, 200, "pod started through n{other}: {}", r.text());
    let r = cluster
        .request(
            third,
            "POST",
            &format!("{pod}/nodes/reviewer"),
            Some(&key),
            Some(b"{}"),
        )
        .await;
    assert_eq!(r.status, 200, "node ensured through n{third}: {}", r.text());
    for n in 0..NODES {
        let r = cluster.request(n, "GET", pod, Some(&key), None).await;
        assert_eq!(r.status, 200, "snapshot through n{n}: {}", r.text());
        assert_eq!(
            r.json()["result"]["nodes"][1]["status"],
            "adopted",
            "through n{n}"
        );
    }
    // Another tenant's key is refused where it arrives; nothing is relayed for it.
    let r = cluster.request(other, "GET", pod, Some(ACME), None).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let restart = "/v1/admin/partitions/hooli/instances/workspace_workers/x/restart";
    let r = cluster
        .request(other, "POST", restart, Some(ADMIN), None)
        .await;
    assert_eq!(r.status, 409, "not failed, said by its node: {}", r.text());

    // Offboarding with purge on n2: every node has retired the tenant when it answers,
    // and its data is gone.
    let gone = cluster
        .request(
            2,
            "DELETE",
            "/v1/admin/partitions/hooli?purge=true",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(gone.status, 200, "{}", gone.text());
    for n in 0..NODES {
        let r = cluster
            .request(n, "POST", note, Some(&key), Some(br#"{"text": "late"}"#))
            .await;
        assert_eq!(
            r.status, 401,
            "n{n} refuses the purged tenant's key at once"
        );
    }
    let key = cluster.onboard(1, "hooli").await;
    let notes = "/v1/partitions/hooli/invoke/workspace_workers.notes?key=x";
    eventually(
        "n0 serves the tenant onboarded again, with nothing of the old one",
        || async {
            let r = cluster
                .request(0, "POST", notes, Some(&key), Some(b"{}"))
                .await;
            r.status == 200 && r.json()["result"] == json!([])
        },
    )
    .await;
    cluster.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_with_the_same_keys_stay_apart_through_every_node() {
    let Some(cluster) = Cluster::start("iso").await else {
        return;
    };
    let path = |p: &str, handler: &str| {
        format!("/v1/partitions/{p}/invoke/workspace_workers.{handler}?key=shared")
    };
    // Each tenant writes through every node: some of them own its agent, some forward.
    for n in 0..NODES {
        for (p, key, text) in [("acme", ACME, "a"), ("globex", GLOBEX, "g")] {
            let body = serde_json::to_vec(&json!({ "text": format!("{text}{n}") })).unwrap();
            let r = cluster
                .request(n, "POST", &path(p, "note"), Some(key), Some(&body))
                .await;
            assert_eq!(r.status, 200, "{p} through n{n}: {}", r.text());
        }
    }
    for n in 0..NODES {
        for (p, key, expected) in [
            ("acme", ACME, json!(["a0", "a1", "a2"])),
            ("globex", GLOBEX, json!(["g0", "g1", "g2"])),
            ("initech", INITECH, json!([])),
        ] {
            let r = cluster
                .request(n, "POST", &path(p, "notes"), Some(key), Some(b"{}"))
                .await;
            assert_eq!(r.json()["result"], expected, "{p}'s notes through n{n}");
        }
        // A key of one tenant on another's partition: 403 on every node, naming no one.
        let r = cluster
            .request(n, "POST", &path("globex", "notes"), Some(ACME), Some(b"{}"))
            .await;
        assert_eq!(r.status, 403, "through n{n}: {}", r.text());
        assert!(!r.text().contains("acme"), "{}", r.text());
    }

    // Pinned to n2 alone, exclusively, acme keeps its notes and stays apart on every node.
    let placement = "/v1/admin/partitions/acme/placement";
    let pin = |nodes: &[&str]| {
        serde_json::to_vec(&json!({"nodes": nodes, "exclusive": true, "shards": 8})).unwrap()
    };
    let r = cluster
        .request(0, "PUT", placement, Some(ADMIN), Some(&pin(&["n2"])))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["pin"]["state"], "moving");
    let first = r.json()["result"]["pin"]["first_shard"].as_u64().unwrap();
    assert_eq!(first, 1024, "after the shared shards");
    for (path, body, status) in [
        // While it moves (and in any case: its shard count is fixed while pinned).
        (
            placement,
            br#"{"nodes": ["n1"], "shards": 16}"#.to_vec(),
            409,
        ),
        ("/v1/admin/partitions/nobody/placement", pin(&["n2"]), 404),
        ("/v1/admin/partitions/globex/placement", pin(&["n9"]), 409),
        ("/v1/admin/partitions/globex/placement", pin(&["n2"]), 409),
        (
            "/v1/admin/partitions/globex/placement",
            br#"{"nodes": []}"#.to_vec(),
            422,
        ),
        (
            "/v1/admin/partitions/globex/placement",
            br#"{"nodes": ["N!"]}"#.to_vec(),
            422,
        ),
    ] {
        let r = cluster
            .request(1, "PUT", path, Some(ADMIN), Some(&body))
            .await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }
    let r = cluster.request(1, "GET", placement, Some(ACME), None).await;
    assert_eq!(r.status, 403, "a tenant key cannot see placements");
    settle(&cluster, "acme's pin is in force", |s| {
        s["pins"][0]["state"] == "active"
            && s["pins"][0]["owners"]
                .as_array()
                .unwrap()
                .iter()
                .all(|o| o == "n2")
    })
    .await;
    let on_n2 = cluster.status(2).await.unwrap();
    let shards: Vec<u64> = on_n2["shards"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect();
    assert!(
        shards.iter().all(|s| (first..first + 8).contains(s)),
        "n2 serves acme only: {shards:?}"
    );
    for n in 0..NODES {
        let r = cluster
            .request(n, "POST", &path("acme", "notes"), Some(ACME), Some(b"{}"))
            .await;
        assert_eq!(
            r.json()["result"],
            json!(["a0", "a1", "a2"]),
            "acme's notes through n{n}"
        );
        let r = cluster
            .request(
                n,
                "POST",
                &path("globex", "notes"),
                Some(GLOBEX),
                Some(b"{}"),
            )
            .await;
        assert_eq!(
            r.json()["result"],
            json!(["g0", "g1", "g2"]),
            "globex's notes through n{n}"
        );
        let r = cluster
            .request(n, "POST", &path("globex", "notes"), Some(ACME), Some(b"{}"))
            .await;
        assert_eq!(r.status, 403, "through n{n}: {}", r.text());
    }
    // Unpinned, it goes back to the shared shards, notes and all.
    let r = cluster
        .request(2, "DELETE", placement, Some(ADMIN), None)
        .await;
    assert_eq!(
        (r.status, &r.json()["result"]["pin"]["state"]),
        (200, &json!("removing")),
        "{}",
        r.text()
    );
    settle(&cluster, "acme's pin is gone", |s| s["pins"] == json!([])).await;
    let r = cluster
        .request(0, "GET", placement, Some(ADMIN), None)
        .await;
    assert_eq!(r.json()["result"]["pinned"], false, "{}", r.text());
    let r = cluster
        .request(
            1,
            "POST",
            &path("acme", "note"),
            Some(ACME),
            Some(br#"{"text": "back"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = cluster
        .request(0, "POST", &path("acme", "notes"), Some(ACME), Some(b"{}"))
        .await;
    assert_eq!(r.json()["result"], json!(["a0", "a1", "a2", "back"]));
    cluster.clean().await;
}

/// Waits until node 0's view of the cluster satisfies `check`, at most 20 seconds.
async fn settle(cluster: &Cluster, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.status(0).await.is_some_and(|s| check(&s)) {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
