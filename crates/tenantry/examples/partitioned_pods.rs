//! Partitioned pods: one workspace pod key in two tenants.
//!
//! A `workspace` pod with an eager `coordinator` and a lazy `reviewer` (owned by the
//! coordinator), both hosted by a shared `workspace_workers` manager. The same pod key in
//! `tenant_alpha` and `tenant_beta` gives two pods with two child trees; ensuring the
//! reviewer in alpha starts it there only; stopping alpha's pod and getting it again
//! restores its topology and re-adopts its children, while beta is untouched.
//!
//! Run: `cargo run --example partitioned_pods`

use serde::{Deserialize, Serialize};
use tenantry::pod::{NodeSpec, Topology, TopologyError};
use tenantry::schemars::JsonSchema;
use tenantry::store::RedbStore;
use tenantry::{
    Context, Factory, Handler, HandlerError, Handlers, Identity, ManagerConfig, Message, Partition,
    Pod, PodFactory, Runtime,
};

#[derive(Serialize, Deserialize, Default)]
struct Worker {
    notes: Vec<String>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Note {
    text: String,
}
impl Message for Note {
    const NAME: &'static str = "note";
    const DESCRIPTION: &'static str = "Records a note; returns how many there are.";
    type Reply = usize;
}

impl Factory for Worker {
    const NAME: &'static str = "worker";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Note>();
    }
}

impl Handler<Note> for Worker {
    async fn handle(&mut self, m: Note, _: &mut Context) -> Result<usize, HandlerError> {
        self.notes.push(m.text);
        Ok(self.notes.len())
    }
}

struct WorkspacePod;
impl PodFactory for WorkspacePod {
    const NAME: &'static str = "workspace";
    fn topology() -> Result<Topology, TopologyError> {
        Topology::builder("workspace")
            .node(NodeSpec::agent::<Worker>("coordinator", "workspace_workers").eager())
            .node(NodeSpec::agent::<Worker>("reviewer", "workspace_workers"))
            .owns("coordinator", "reviewer")
            .build()
    }
}

fn show(label: &str, pod: &Pod) -> anyhow::Result<()> {
    println!("{label} {}:", pod.identity());
    for node in pod.snapshot()? {
        println!(
            "  {:<12} {:<18} key={} parent={}",
            node.name,
            format!("{:?}", node.status),
            node.key,
            node.actual_parent
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::new(RedbStore::open(dir.path().join("pods.redb"))?);
    runtime.register::<Worker>("workspace_workers", ManagerConfig::default())?;
    runtime.register_pod::<WorkspacePod>("workspace_pods", ManagerConfig::default())?;

    let alpha = Partition::new("tenant_alpha")?;
    let beta = Partition::new("tenant_beta")?;

    let (pod_a, report) = Pod::get(&runtime, "workspace_pods", "workspace-123", &alpha).await?;
    println!(
        "reconcile in {alpha}: waves {:?}, completed {:?}",
        report.waves, report.completed
    );
    let (pod_b, report) = Pod::get(&runtime, "workspace_pods", "workspace-123", &beta).await?;
    println!(
        "reconcile in {beta}: waves {:?}, completed {:?}",
        report.waves, report.completed
    );
    show("alpha", &pod_a)?;
    show("beta", &pod_b)?;

    let reviewer = pod_a.ensure_node("reviewer").await?;
    reviewer
        .call_json_dyn("note", serde_json::json!({"text": "ship it"}), None)
        .await?;
    println!("ensured reviewer in alpha: {}", reviewer.identity());
    println!(
        "reviewer in beta: {:?}",
        pod_b
            .lookup_node("reviewer")?
            .map(|r| r.identity().to_string())
    );

    runtime
        .manager_dyn("workspace_pods")
        .ok_or_else(|| anyhow::anyhow!("pods manager missing"))?
        .stop_dyn(tenantry::Key::new("workspace-123")?, &alpha)
        .await?;
    println!("stopped alpha's pod (topology hibernated; children continue as orphans)");
    let (pod_a, report) = Pod::get(&runtime, "workspace_pods", "workspace-123", &alpha).await?;
    println!(
        "thawed alpha's pod: topology v{}, completed {:?}",
        pod_a.topology().version,
        report.completed
    );
    show("alpha", &pod_a)?;
    show("beta (untouched)", &pod_b)?;
    runtime.shutdown().await;
    Ok(())
}
