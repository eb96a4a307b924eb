//! Operating a pod: get and reconcile, ensure and look up nodes, snapshots, mutations.
//!
//! Everything here works in the pod's own partition: node keys are derived from the pod's
//! identity and node managers are asked for that partition only, so no operation on a pod
//! can start, find or touch a node of another tenant.

use super::core::PodCore;
use super::state::{LivePod, NodeEntry, PodView, node_key};
use super::topology::{Activation, NodeKind, NodeSpec, Topology, node_label};
use crate::instance::cell::AnyInstance;
use crate::instance::envelope::encoding_failed;
use crate::telemetry::{EventKind, PodPhase};
use crate::{Error, Identity, IntoKey, Key, KeyPart, Partition};
use futures::future::{BoxFuture, join_all};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// What a reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// The nodes asked for (the eager nodes, or the node being ensured).
    pub requested: Vec<String>,
    /// The nodes running and bound after the reconcile, in start order.
    pub completed: Vec<String>,
    /// The nodes that failed, with the reason.
    pub failed: Vec<(String, String)>,
    /// The nodes not tried because an earlier wave failed.
    pub pending: Vec<String>,
    /// The start waves: each ran concurrently, in order.
    pub waves: Vec<Vec<String>>,
}

impl ReconcileReport {
    /// Whether every requested node and prerequisite is running.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.pending.is_empty()
    }
}

/// A node's state relative to its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Running and bound to its expected parent.
    Adopted,
    /// Running but bound to no parent (never adopted, or orphaned).
    RunningUnadopted,
    /// Running and bound to some other parent.
    BoundElsewhere,
    /// Not running.
    Stopped,
}

/// One node as a snapshot sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSnapshot {
    /// The node's name.
    pub name: String,
    /// Its instance key in its node manager.
    pub key: Key,
    /// Its node manager.
    pub manager: String,
    /// Agent or pod.
    pub kind: NodeKind,
    /// Its status.
    pub status: NodeStatus,
    /// The parent it should have (its owner node, or the pod).
    pub expected_parent: Identity,
    /// The parent it has, if bound.
    pub actual_parent: Option<Identity>,
    /// The parent it had before it was orphaned, if any.
    pub former_parent: Option<Identity>,
}

/// What a committed mutation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MutationReport {
    /// The topology version after the mutation.
    pub version: u64,
    /// Whether the version advanced (a structural change).
    pub structural: bool,
    /// The nodes removed (and stopped).
    pub removed: Vec<String>,
    /// The reconcile run after the change (starts added eager nodes).
    pub reconcile: ReconcileReport,
}

/// A live pod. Cheap to clone.
#[derive(Clone)]
pub struct Pod {
    core: Arc<PodCore>,
    identity: Arc<Identity>,
    instance: Arc<dyn AnyInstance>,
    live: Arc<LivePod>,
}

impl std::fmt::Debug for Pod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pod({})", self.identity)
    }
}

impl Pod {
    /// [`Pod::get`] in the pods layer of one runtime.
    pub(crate) async fn get_in(
        core: Arc<PodCore>,
        pods_manager: &str,
        key: impl IntoKey,
        partition: &Partition,
    ) -> Result<(Pod, ReconcileReport), Error> {
        get_boxed(
            core,
            pods_manager.to_owned(),
            key.into_key()?,
            partition.clone(),
        )
        .await
    }

    /// [`Pod::lookup`] in the pods layer of one runtime.
    pub(crate) async fn lookup_in(
        core: Arc<PodCore>,
        pods_manager: &str,
        key: impl IntoKey,
        partition: &Partition,
    ) -> Result<Option<Pod>, Error> {
        let manager = core.pod_manager(pods_manager)?;
        let key = key.into_key()?;
        match manager.lookup_dyn(&key, partition) {
            Some(instance) => Ok(Some(Pod::attach(core, instance).await?)),
            None => Ok(None),
        }
    }

    async fn attach(core: Arc<PodCore>, instance: Arc<dyn AnyInstance>) -> Result<Pod, Error> {
        let identity = Arc::new(instance.identity().clone());
        let cached = core.live.get(&*identity).map(|l| l.value().clone());
        let live = match cached {
            Some(live) => live,
            None => {
                // Installed by the pod's start hook; refetch if it was dropped (a stop
                // that failed to hibernate and reopened).
                let value = instance
                    .call_json_dyn("topology", serde_json::Value::Null, None)
                    .await?;
                let topology: Topology = serde_json::from_value(value)
                    .map_err(|e| Error::Call(encoding_failed("topology", e)))?;
                let live = Arc::new(LivePod::new(
                    instance.factory(),
                    (*identity).clone(),
                    topology,
                ));
                core.live.insert((*identity).clone(), live.clone());
                live
            }
        };
        Ok(Pod {
            core,
            identity,
            instance,
            live,
        })
    }

    /// The pod's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The pod's partition.
    pub fn partition(&self) -> &Partition {
        &self.identity.partition
    }

    /// The pod's current topology.
    pub fn topology(&self) -> Arc<Topology> {
        self.live.topology()
    }

    /// The pod instance itself.
    pub fn instance(&self) -> &Arc<dyn AnyInstance> {
        &self.instance
    }

    fn factory(&self) -> &'static str {
        self.instance.factory()
    }

    fn node_identity(&self, spec: &NodeSpec) -> Result<Identity, Error> {
        Ok(Identity::new(
            self.identity.partition.clone(),
            spec.manager.as_str(),
            node_key(self.factory(), &self.identity, &spec.name)?,
        ))
    }

    /// A node's child identity and expected parent, from the indexed view.
    fn entry<'v>(view: &'v PodView, name: &KeyPart) -> Result<&'v NodeEntry, Error> {
        view.nodes
            .get(name)
            .ok_or_else(|| Error::UnknownNode(node_label(name)))
    }

    /// Reconciles the pod again: starts eager nodes (and prerequisites) that are not
    /// running and re-adopts running children.
    pub async fn reconcile(&self) -> ReconcileReport {
        let view = self.live.view();
        let eager: Vec<KeyPart> = view
            .topology
            .nodes
            .iter()
            .filter(|n| n.activation == Activation::Eager)
            .map(|n| n.name.clone())
            .collect();
        let started = Instant::now();
        self.emit(EventKind::PodReconcile {
            phase: PodPhase::Start,
            duration: None,
            requested: eager.len(),
            completed: 0,
            failed: 0,
            pending: 0,
        });
        let (report, _) = self.start_nodes(&view, &eager).await;
        self.readopt_survivors(&view, &report);
        self.emit(EventKind::PodReconcile {
            phase: if report.is_complete() {
                PodPhase::Stop
            } else {
                PodPhase::Exception
            },
            duration: Some(started.elapsed()),
            requested: report.requested.len(),
            completed: report.completed.len(),
            failed: report.failed.len(),
            pending: report.pending.len(),
        });
        report
    }

    fn emit(&self, kind: EventKind) {
        self.core.shared.telemetry.emit(&self.identity, kind);
    }

    /// Binds running nodes that the waves did not touch (lazy children that survived).
    fn readopt_survivors(&self, view: &PodView, report: &ReconcileReport) {
        let touched: BTreeSet<&String> = report.waves.iter().flatten().collect();
        for spec in &view.topology.nodes {
            if touched.contains(&node_label(&spec.name)) {
                continue;
            }
            let Some(entry) = view.nodes.get(&spec.name) else {
                continue;
            };
            if self.running(&entry.child).is_some() {
                self.core.shared.lineage.bind(
                    &entry.child,
                    &entry.expected_parent,
                    spec.on_parent_stop,
                );
            }
        }
    }

    /// The running instance of `child`, if any.
    fn running(&self, child: &Identity) -> Option<Arc<dyn AnyInstance>> {
        self.core
            .manager_dyn(&child.manager)
            .and_then(|m| m.lookup_dyn(&child.key, &child.partition))
    }

    /// Starts `targets` and their prerequisites in waves; stops at the first wave with a
    /// failure and reports the rest as pending.
    async fn start_nodes(
        &self,
        view: &PodView,
        targets: &[KeyPart],
    ) -> (ReconcileReport, BTreeMap<String, Arc<dyn AnyInstance>>) {
        let waves = view.topology.waves(targets);
        let mut report = ReconcileReport {
            requested: targets.iter().map(node_label).collect(),
            waves: waves
                .iter()
                .map(|w| w.iter().map(node_label).collect())
                .collect(),
            ..Default::default()
        };
        let mut started = BTreeMap::new();
        for (i, wave) in waves.iter().enumerate() {
            let results = join_all(wave.iter().map(|n| self.start_node(view, n))).await;
            for (name, result) in wave.iter().zip(results) {
                match result {
                    Ok(instance) => {
                        report.completed.push(node_label(name));
                        started.insert(node_label(name), instance);
                    }
                    Err(e) => report.failed.push((node_label(name), e.to_string())),
                }
            }
            if !report.failed.is_empty() {
                report.pending = waves[i + 1..].iter().flatten().map(node_label).collect();
                break;
            }
        }
        (report, started)
    }

    /// Starts (or finds) one node and binds it to its expected parent.
    async fn start_node(
        &self,
        view: &PodView,
        name: &KeyPart,
    ) -> Result<Arc<dyn AnyInstance>, Error> {
        let entry = Self::entry(view, name)?;
        let spec = &view.topology.nodes[entry.spec];
        let child = &entry.child;
        let manager = self
            .core
            .manager_dyn(&spec.manager)
            .ok_or_else(|| Error::UnknownManager(spec.manager.clone()))?;
        let instance = match spec.kind {
            NodeKind::Agent => {
                manager
                    .get_json_dyn(
                        child.key.clone(),
                        &child.partition,
                        spec.initial_state.clone(),
                    )
                    .await?
            }
            NodeKind::Pod => {
                let (nested, nested_report) = get_boxed(
                    self.core.clone(),
                    spec.manager.clone(),
                    child.key.clone(),
                    child.partition.clone(),
                )
                .await?;
                if !nested_report.is_complete() {
                    return Err(Error::NodeFailed {
                        node: node_label(name),
                        reason: format!(
                            "nested pod reconcile incomplete: failed {:?}, pending {:?}",
                            nested_report.failed, nested_report.pending
                        ),
                    });
                }
                nested.instance
            }
        };
        self.core
            .shared
            .lineage
            .bind(child, &entry.expected_parent, spec.on_parent_stop);
        Ok(instance)
    }

    /// Starts a lazy node and its prerequisites, idempotently, and returns it.
    /// `UnknownNode` for a name the topology does not have.
    pub async fn ensure_node(
        &self,
        name: impl Into<KeyPart>,
    ) -> Result<Arc<dyn AnyInstance>, Error> {
        let name = name.into();
        let view = self.live.view();
        let entry = Self::entry(&view, &name)?;
        // Fast path: running and adopted by its expected parent.
        if let Some(instance) = self.running(&entry.child) {
            if self
                .core
                .shared
                .lineage
                .is_bound_to(&entry.child, &entry.expected_parent)
            {
                return Ok(instance);
            }
        }
        let started_at = Instant::now();
        let label = node_label(&name);
        self.emit(EventKind::NodeEnsure {
            node: label.clone(),
            phase: PodPhase::Start,
            duration: None,
        });
        let (report, mut started) = self.start_nodes(&view, std::slice::from_ref(&name)).await;
        let outcome = match started.remove(&label) {
            Some(instance) => Ok(instance),
            None => Err(Error::NodeFailed {
                node: label.clone(),
                reason: match report.failed.first() {
                    Some((n, reason)) if n == &label => reason.clone(),
                    Some((n, reason)) => format!("prerequisite {n} failed: {reason}"),
                    None => "not started".to_owned(),
                },
            }),
        };
        self.emit(EventKind::NodeEnsure {
            node: label,
            phase: if outcome.is_ok() {
                PodPhase::Stop
            } else {
                PodPhase::Exception
            },
            duration: Some(started_at.elapsed()),
        });
        outcome
    }

    /// The running node `name`, or `None`. `UnknownNode` for a name the topology lacks.
    pub fn lookup_node(
        &self,
        name: impl Into<KeyPart>,
    ) -> Result<Option<Arc<dyn AnyInstance>>, Error> {
        let view = self.live.view();
        let entry = Self::entry(&view, &name.into())?;
        Ok(self.running(&entry.child))
    }

    /// Every node with its key, status, expected and actual parent.
    pub fn snapshot(&self) -> Result<Vec<NodeSnapshot>, Error> {
        let view = self.live.view();
        view.topology
            .nodes
            .iter()
            .map(|spec| {
                let entry = Self::entry(&view, &spec.name)?;
                let running = self.running(&entry.child).is_some();
                let binding = self.core.shared.lineage.binding(&entry.child);
                let actual_parent = binding.as_ref().and_then(|b| b.parent.clone());
                let status = match (&actual_parent, running) {
                    (_, false) => NodeStatus::Stopped,
                    (None, true) => NodeStatus::RunningUnadopted,
                    (Some(p), true) if p == &entry.expected_parent => NodeStatus::Adopted,
                    (Some(_), true) => NodeStatus::BoundElsewhere,
                };
                Ok(NodeSnapshot {
                    name: node_label(&spec.name),
                    key: entry.child.key.clone(),
                    manager: spec.manager.clone(),
                    kind: spec.kind,
                    status,
                    expected_parent: entry.expected_parent.clone(),
                    actual_parent,
                    former_parent: binding.and_then(|b| b.former_parent),
                })
            })
            .collect()
    }

    /// Starts a mutation. Only one mutation of a pod runs at a time: a second one is
    /// refused with `MutationInProgress` until the first is committed or dropped.
    pub fn begin_mutation(&self) -> Result<PodMutation, Error> {
        if self.live.mutating.swap(true, Ordering::AcqRel) {
            return Err(Error::MutationInProgress((*self.identity).clone()));
        }
        Ok(PodMutation {
            pod: self.clone(),
            draft: (*self.live.topology()).clone(),
        })
    }
}

fn get_boxed(
    core: Arc<PodCore>,
    pods_manager: String,
    key: Key,
    partition: Partition,
) -> BoxFuture<'static, Result<(Pod, ReconcileReport), Error>> {
    Box::pin(async move {
        let manager = core.pod_manager(&pods_manager)?;
        let instance = manager.get_dyn(key, &partition).await?;
        let pod = Pod::attach(core, instance).await?;
        let report = pod.reconcile().await;
        Ok((pod, report))
    })
}

/// A pending change to a pod's topology; commit it, or drop it to abandon it.
pub struct PodMutation {
    pod: Pod,
    draft: Topology,
}

impl Drop for PodMutation {
    fn drop(&mut self) {
        self.pod.live.mutating.store(false, Ordering::Release);
    }
}

impl PodMutation {
    /// The draft topology.
    pub fn draft(&self) -> &Topology {
        &self.draft
    }

    /// Adds a node.
    pub fn add_node(&mut self, node: NodeSpec) -> &mut Self {
        self.draft.nodes.push(node);
        self
    }

    /// Removes a node and every link that names it.
    pub fn remove_node(&mut self, name: impl Into<KeyPart>) -> &mut Self {
        let name = name.into();
        self.draft.nodes.retain(|n| n.name != name);
        self.draft.links.retain(|l| l.from != name && l.to != name);
        self
    }

    /// Adds a `depends_on` link.
    pub fn depends_on(&mut self, from: impl Into<KeyPart>, to: impl Into<KeyPart>) -> &mut Self {
        self.draft.links.push(super::Link {
            kind: super::LinkKind::DependsOn,
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Adds an `owns` link.
    pub fn owns(&mut self, owner: impl Into<KeyPart>, owned: impl Into<KeyPart>) -> &mut Self {
        self.draft.links.push(super::Link {
            kind: super::LinkKind::Owns,
            from: owner.into(),
            to: owned.into(),
        });
        self
    }

    /// Replaces a node's metadata entry (not a structural change).
    pub fn set_meta(
        &mut self,
        name: impl Into<KeyPart>,
        key: impl Into<String>,
        value: serde_json::Value,
    ) -> &mut Self {
        let name = name.into();
        if let Some(node) = self.draft.nodes.iter_mut().find(|n| n.name == name) {
            node.metadata.insert(key.into(), value);
        }
        self
    }

    /// Checks and applies the change: persists the topology (advancing its version on a
    /// structural change only), stops removed nodes, and reconciles.
    pub async fn commit(mut self) -> Result<MutationReport, Error> {
        let pod = self.pod.clone();
        let current = pod.live.topology();
        let mut next = std::mem::replace(&mut self.draft, Topology::empty(""));
        next.version = current.version;
        next.validate()?;
        pod.core
            .check_topology(pod.factory(), &pod.identity.manager, &next)?;
        let structural = current.structurally_differs(&next);
        if structural {
            next.version = current.version + 1;
        }
        let removed: Vec<NodeSpec> = current
            .nodes
            .iter()
            .filter(|n| next.node(&n.name).is_none())
            .cloned()
            .collect();
        let topology_json =
            serde_json::to_value(super::state::SetTopologyParams { topology: &next }).map_err(
                |e| Error::StateEncoding {
                    identity: (*pod.identity).clone(),
                    reason: e.to_string(),
                },
            )?;
        pod.instance
            .call_json_dyn("set_topology", topology_json, None)
            .await?;
        for spec in &removed {
            let child = pod.node_identity(spec)?;
            pod.core.shared.lineage.unbind(&child);
            if let Some(manager) = pod.core.manager_dyn(&spec.manager) {
                match manager.stop_dyn(child.key.clone(), &child.partition).await {
                    Ok(()) | Err(Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let reconcile = pod.reconcile().await;
        Ok(MutationReport {
            version: next.version,
            structural,
            removed: removed.iter().map(|n| node_label(&n.name)).collect(),
            reconcile,
        })
    }
}
