//! The pod as a factory: its persisted state (the topology) and its typed manager.

use super::PodFactory;
use super::core::PodCore;
use super::ops::{Pod, ReconcileReport};
use super::topology::Topology;
use crate::instance::factory::{Factory, Handler, Message};
use crate::instance::handlers::Handlers;
use crate::{
    Context, Error, HandlerError, Identity, IntoKey, Key, KeyError, KeyPart, Manager, Partition,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

/// The state of a pod instance: its topology, nothing else (never runtime handles).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PodState<P> {
    topology: Topology,
    #[serde(skip)]
    _pod: PhantomData<fn() -> P>,
}

/// What the runtime caches of a live pod: its topology, indexed, and whether it is being
/// mutated.
pub(crate) struct LivePod {
    factory: String,
    pod: Identity,
    view: RwLock<Arc<PodView>>,
    pub(crate) mutating: AtomicBool,
}

/// A topology with every node's identity and expected parent worked out once.
pub(crate) struct PodView {
    pub(crate) topology: Arc<Topology>,
    pub(crate) nodes: HashMap<KeyPart, NodeEntry>,
}

/// One node's place in its pod's partition.
pub(crate) struct NodeEntry {
    /// Index of the node's spec in the topology.
    pub(crate) spec: usize,
    /// `(pod partition, node manager, (pod factory, pod key, node name))`.
    pub(crate) child: Identity,
    /// Its owner node, or the pod.
    pub(crate) expected_parent: Identity,
}

/// The key of node `name` of pod `pod`: `(pod factory, pod key, node name)`.
pub(crate) fn node_key(pod_factory: &str, pod: &Identity, name: &KeyPart) -> Result<Key, KeyError> {
    Key::tuple([
        KeyPart::from(pod_factory),
        KeyPart::from(&pod.key),
        name.clone(),
    ])
}

impl PodView {
    fn build(factory: &str, pod: &Identity, topology: Topology) -> Self {
        let child = |spec: &super::NodeSpec| {
            node_key(factory, pod, &spec.name)
                .ok()
                .map(|key| Identity::new(pod.partition.clone(), spec.manager.as_str(), key))
        };
        let mut nodes = HashMap::with_capacity(topology.nodes.len());
        for (index, spec) in topology.nodes.iter().enumerate() {
            // Validated topologies always give valid keys; a node that did not is skipped.
            let Some(identity) = child(spec) else {
                continue;
            };
            let expected_parent = topology
                .owner_of(&spec.name)
                .and_then(|o| topology.node(o))
                .and_then(child)
                .unwrap_or_else(|| pod.clone());
            nodes.insert(
                spec.name.clone(),
                NodeEntry {
                    spec: index,
                    child: identity,
                    expected_parent,
                },
            );
        }
        Self {
            topology: Arc::new(topology),
            nodes,
        }
    }
}

impl LivePod {
    pub(crate) fn new(factory: &str, pod: Identity, topology: Topology) -> Self {
        let view = PodView::build(factory, &pod, topology);
        Self {
            factory: factory.to_owned(),
            pod,
            view: RwLock::new(Arc::new(view)),
            mutating: AtomicBool::new(false),
        }
    }

    pub(crate) fn view(&self) -> Arc<PodView> {
        self.view.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn topology(&self) -> Arc<Topology> {
        self.view().topology.clone()
    }

    pub(crate) fn set_topology(&self, topology: Topology) {
        let view = PodView::build(&self.factory, &self.pod, topology);
        *self.view.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(view);
    }
}

/// Returns the pod's topology.
#[derive(Serialize, Deserialize, JsonSchema)]
pub(crate) struct GetTopology;
impl Message for GetTopology {
    const NAME: &'static str = "topology";
    const DESCRIPTION: &'static str = "Returns the pod's topology.";
    type Reply = Topology;
}

/// The params of [`SetTopology`], borrowed for encoding.
#[derive(Serialize)]
pub(crate) struct SetTopologyParams<'a> {
    pub(crate) topology: &'a Topology,
}

/// Replaces the pod's topology (used by a committed mutation).
#[derive(Serialize, Deserialize, JsonSchema)]
pub(crate) struct SetTopology {
    pub(crate) topology: Topology,
}
impl Message for SetTopology {
    const NAME: &'static str = "set_topology";
    const DESCRIPTION: &'static str = "Replaces the pod's topology (pod mutations use this).";
    type Reply = u64;
}

fn install(ctx: &Context, factory: &str, topology: &Topology) {
    if let Ok(core) = ctx.part::<Arc<PodCore>>() {
        core.live.insert(
            ctx.identity().clone(),
            Arc::new(LivePod::new(
                factory,
                ctx.identity().clone(),
                topology.clone(),
            )),
        );
    }
}

impl<P: PodFactory> Factory for PodState<P> {
    const NAME: &'static str = P::NAME;

    fn fresh(_: &Identity) -> Self {
        Self {
            // Registration checked that the declaration builds, and it is deterministic.
            topology: P::topology().unwrap_or_else(|_| Topology::empty(P::NAME)),
            _pod: PhantomData,
        }
    }

    fn handlers(h: &mut Handlers<Self>) {
        h.add::<GetTopology>().add::<SetTopology>();
    }

    async fn on_start(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        install(ctx, P::NAME, &self.topology);
        Ok(())
    }

    async fn on_thaw(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        install(ctx, P::NAME, &self.topology);
        Ok(())
    }

    async fn on_stop(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        if let Ok(core) = ctx.part::<Arc<PodCore>>() {
            core.live.remove(ctx.identity());
        }
        Ok(())
    }
}

impl<P: PodFactory> Handler<GetTopology> for PodState<P> {
    async fn handle(&mut self, _: GetTopology, _: &mut Context) -> Result<Topology, HandlerError> {
        Ok(self.topology.clone())
    }
}

impl<P: PodFactory> Handler<SetTopology> for PodState<P> {
    async fn handle(&mut self, m: SetTopology, ctx: &mut Context) -> Result<u64, HandlerError> {
        self.topology = m.topology;
        if let Ok(core) = ctx.part::<Arc<PodCore>>() {
            match core.live.get(ctx.identity()) {
                Some(live) => live.set_topology(self.topology.clone()),
                None => install(ctx, P::NAME, &self.topology),
            }
        }
        Ok(self.topology.version)
    }
}

/// A registered pods manager for pod factory `P`.
pub struct PodManager<P: PodFactory> {
    pub(crate) manager: Manager<PodState<P>>,
    pub(crate) core: Arc<PodCore>,
}

impl<P: PodFactory> Clone for PodManager<P> {
    fn clone(&self) -> Self {
        Self {
            manager: self.manager.clone(),
            core: self.core.clone(),
        }
    }
}

impl<P: PodFactory> PodManager<P> {
    /// The manager's name.
    pub fn name(&self) -> &str {
        self.manager.name()
    }

    /// The underlying instance manager (stats, stop, idle settings).
    pub fn manager(&self) -> &Manager<PodState<P>> {
        &self.manager
    }

    /// Gets or thaws the pod `key` in `partition` and reconciles it.
    pub async fn get(
        &self,
        key: impl IntoKey,
        partition: &Partition,
    ) -> Result<(Pod, ReconcileReport), Error> {
        Pod::get_in(self.core.clone(), self.manager.name(), key, partition).await
    }

    /// Hibernates the pod (its topology); its children follow their parent-stop policy.
    pub async fn stop(&self, key: impl IntoKey, partition: &Partition) -> Result<(), Error> {
        self.manager.stop(key, partition).await
    }
}
