//! The demo's agents: a durable `worker` and the `workspace` pod that hosts two of them.
//!
//! A `workspace` pod has an eager `coordinator` that owns a lazy `reviewer`, both keyed
//! instances of the `worker` factory in the `workspace_workers` manager; the pods manager
//! is `workspace_pods`. Workers are also reachable on their own through the bus as keyed
//! routes (`workspace_workers.note` with `?key=...`), which is what the server's
//! durability tests and the SIGTERM test write through.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tenantry::params::{Bounded, BoundedText};
use tenantry::pod::{NodeSpec, Topology, TopologyError};
use tenantry::{Context, Factory, Handler, HandlerError, Handlers, Identity, Message, PodFactory};

/// The manager that hosts workers (pod nodes and stand-alone keyed workers).
pub const WORKERS_MANAGER: &str = "workspace_workers";
/// The pods manager of `workspace` pods.
pub const PODS_MANAGER: &str = "workspace_pods";

/// A worker agent: a durable list of notes.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Worker {
    notes: Vec<String>,
}

/// Params of `note`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Note {
    /// The text to record (at most 1,000 characters).
    pub text: BoundedText<MAX_NOTE_CHARS>,
}

/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 1_000;
/// The most notes one worker keeps; a note past it is refused.
pub const MAX_NOTES: usize = 256;

impl Message for Note {
    const NAME: &'static str = "note";
    const DESCRIPTION: &'static str =
        "Records a note (a worker keeps at most 256); returns how many notes there are.";
    type Reply = usize;
}

/// Params of `notes` (none).
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Notes {}

impl Message for Notes {
    const NAME: &'static str = "notes";
    const READ_ONLY: bool = true;
    const DESCRIPTION: &'static str = "Lists the notes recorded so far.";
    type Reply = Vec<String>;
}

/// Params of `work`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Work {
    /// How long the work takes, in milliseconds (at most 1,000).
    pub millis: Bounded<0, MAX_WORK_MILLIS>,
}

impl Message for Work {
    const NAME: &'static str = "work";
    const DESCRIPTION: &'static str =
        "Works for `millis` milliseconds (holding the worker's turn); returns the millis.";
    type Reply = u64;
}

/// The longest `work` accepted, in milliseconds.
pub const MAX_WORK_MILLIS: u64 = 1_000;

impl Factory for Worker {
    const NAME: &'static str = "worker";

    fn fresh(_: &Identity) -> Self {
        Self::default()
    }

    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Note>();
        h.add::<Notes>();
        h.add::<Work>();
    }
}

impl Handler<Note> for Worker {
    async fn handle(&mut self, m: Note, _: &mut Context) -> Result<usize, HandlerError> {
        if self.notes.len() >= MAX_NOTES {
            return Err(HandlerError::conflict(
                "notes_full",
                format!("this worker keeps at most {MAX_NOTES} notes"),
            ));
        }
        self.notes.push(m.text.into_string());
        Ok(self.notes.len())
    }
}

impl Handler<Notes> for Worker {
    async fn handle(&mut self, _: Notes, _: &mut Context) -> Result<Vec<String>, HandlerError> {
        Ok(self.notes.clone())
    }
}

impl Handler<Work> for Worker {
    async fn handle(&mut self, m: Work, _: &mut Context) -> Result<u64, HandlerError> {
        tokio::time::sleep(Duration::from_millis(m.millis.get())).await;
        Ok(m.millis.get())
    }
}

/// The `workspace` pod: an eager `coordinator` owning a lazy `reviewer`.
pub struct WorkspacePod;

impl PodFactory for WorkspacePod {
    const NAME: &'static str = "workspace";

    fn topology() -> Result<Topology, TopologyError> {
        Topology::builder("workspace")
            .node(NodeSpec::agent::<Worker>("coordinator", WORKERS_MANAGER).eager())
            .node(NodeSpec::agent::<Worker>("reviewer", WORKERS_MANAGER))
            .owns("coordinator", "reviewer")
            .build()
    }
}
