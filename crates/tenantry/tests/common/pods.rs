//! A worker agent and a workspace pod shared by the pod tests.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use tenantry::pod::{NodeSpec, Topology, TopologyError};
use tenantry::schemars::JsonSchema;
use tenantry::{
    Context, Factory, Handler, HandlerError, Handlers, Identity, ManagerConfig, Message,
    PodFactory, Runtime,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Worker {
    pub notes: Vec<String>,
    pub fail_start: bool,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    pub text: String,
}
impl Message for Note {
    const NAME: &'static str = "note";
    type Reply = usize;
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Whoami;
impl Message for Whoami {
    const NAME: &'static str = "whoami";
    type Reply = String;
}

impl Factory for Worker {
    const NAME: &'static str = "worker";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Note>().add::<Whoami>();
    }
    async fn on_start(&mut self, _: &mut Context) -> Result<(), HandlerError> {
        if self.fail_start {
            return Err("refusing to start".into());
        }
        Ok(())
    }
}

impl Handler<Note> for Worker {
    async fn handle(&mut self, m: Note, _: &mut Context) -> Result<usize, HandlerError> {
        self.notes.push(m.text);
        Ok(self.notes.len())
    }
}

impl Handler<Whoami> for Worker {
    async fn handle(&mut self, _: Whoami, ctx: &mut Context) -> Result<String, HandlerError> {
        Ok(ctx.identity().to_string())
    }
}

/// The reference pod: an eager coordinator that owns a lazy reviewer.
pub struct WorkspacePod;
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

/// Registers the worker and workspace managers on `rt`.
pub fn workspace_runtime(rt: &Runtime) -> tenantry::PodManager<WorkspacePod> {
    rt.register::<Worker>("workspace_workers", ManagerConfig::default())
        .expect("workers manager");
    rt.register_pod::<WorkspacePod>("workspace_pods", ManagerConfig::default())
        .expect("pods manager")
}
