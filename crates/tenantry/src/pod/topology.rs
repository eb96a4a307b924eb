//! Pod topologies: nodes, links, and the structural rules they must keep.
//!
//! A topology is declared data: nodes (a name, agent or nested pod, the node manager that
//! hosts it, eager or lazy activation, optional initial state and metadata, what to do when
//! its parent stops) and links (`depends_on` for start order, `owns` for adoption). It is
//! checked when declared: names, endpoints, self links, single owners, no ownership or
//! dependency cycles. Checks that need the runtime (managers, nested pods) live in
//! `core.rs`.

pub use crate::error::topology::{LinkKind, TopologyError};
use crate::instance::factory::Factory;
pub use crate::manager::lineage::OnParentStop;
use crate::{Key, KeyPart};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What a node is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A keyed agent instance.
    Agent,
    /// A nested pod, reconciled when it starts.
    Pod,
}

/// When a node starts.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// With the pod, on every reconcile.
    Eager,
    /// On `ensure_node` only.
    #[default]
    Lazy,
}

/// One node of a topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeSpec {
    /// The node's name: a string or a structured name.
    #[schemars(with = "serde_json::Value")]
    pub name: KeyPart,
    /// Agent or nested pod.
    pub kind: NodeKind,
    /// The factory of the node's instances.
    pub factory: String,
    /// The manager that hosts the node.
    pub manager: String,
    /// Eager or lazy (default lazy).
    #[serde(default)]
    pub activation: Activation,
    /// The state a fresh node starts with (JSON of the factory's state type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_state: Option<serde_json::Value>,
    /// Free-form metadata; changing it is not a structural change.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, serde_json::Value>,
    /// What the node does when its parent stops (default: continue as an orphan).
    #[serde(default)]
    pub on_parent_stop: OnParentStop,
}

impl NodeSpec {
    /// A node of any kind, by names (for topologies built from data).
    pub fn new(
        kind: NodeKind,
        name: impl Into<KeyPart>,
        factory: impl Into<String>,
        manager: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            factory: factory.into(),
            manager: manager.into(),
            activation: Activation::Lazy,
            initial_state: None,
            metadata: BTreeMap::new(),
            on_parent_stop: OnParentStop::Continue,
        }
    }

    /// An agent node of factory `F`, hosted by `manager`.
    pub fn agent<F: Factory>(name: impl Into<KeyPart>, manager: impl Into<String>) -> Self {
        Self::new(NodeKind::Agent, name, F::NAME, manager)
    }

    /// A nested pod node of pod factory `P`, hosted by the pods manager `manager`.
    pub fn pod<P: super::PodFactory>(name: impl Into<KeyPart>, manager: impl Into<String>) -> Self {
        Self::new(NodeKind::Pod, name, P::NAME, manager)
    }

    /// Starts with the pod.
    pub fn eager(mut self) -> Self {
        self.activation = Activation::Eager;
        self
    }

    /// Starts on `ensure_node` only (the default).
    pub fn lazy(mut self) -> Self {
        self.activation = Activation::Lazy;
        self
    }

    /// The state a fresh node starts with.
    pub fn initial_state(mut self, state: serde_json::Value) -> Self {
        self.initial_state = Some(state);
        self
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    /// Sets what the node does when its parent stops.
    pub fn on_parent_stop(mut self, policy: OnParentStop) -> Self {
        self.on_parent_stop = policy;
        self
    }

    /// The fields whose change is a structural change.
    fn structure(&self) -> (String, NodeKind, &str, &str, Activation, OnParentStop) {
        (
            node_label(&self.name),
            self.kind,
            &self.factory,
            &self.manager,
            self.activation,
            self.on_parent_stop,
        )
    }
}

/// A link between two nodes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct Link {
    /// depends_on or owns.
    pub kind: LinkKind,
    /// The dependent, or the owner.
    #[schemars(with = "serde_json::Value")]
    pub from: KeyPart,
    /// The prerequisite, or the owned node.
    #[schemars(with = "serde_json::Value")]
    pub to: KeyPart,
}

/// A pod's durable topology.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Topology {
    /// The topology's name.
    pub name: String,
    /// Advances by one on every structural change.
    pub version: u64,
    /// The nodes, in declaration order.
    pub nodes: Vec<NodeSpec>,
    /// The links.
    pub links: Vec<Link>,
}

/// A node name as people read it: the string, or the compact structured form.
pub fn node_label(name: &KeyPart) -> String {
    match name {
        KeyPart::Str(s) => s.clone(),
        tuple => Key::tuple([tuple.clone()])
            .map(|k| {
                k.encoded()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()
            })
            .unwrap_or_else(|_| format!("{tuple:?}")),
    }
}

/// Builds a [`Topology`]; `build` checks it.
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    name: String,
    nodes: Vec<NodeSpec>,
    links: Vec<Link>,
}

impl TopologyBuilder {
    /// Adds a node.
    pub fn node(mut self, node: NodeSpec) -> Self {
        self.nodes.push(node);
        self
    }

    /// `from` starts only after `to`.
    pub fn depends_on(mut self, from: impl Into<KeyPart>, to: impl Into<KeyPart>) -> Self {
        self.links.push(Link {
            kind: LinkKind::DependsOn,
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// `owner` adopts `owned`.
    pub fn owns(mut self, owner: impl Into<KeyPart>, owned: impl Into<KeyPart>) -> Self {
        self.links.push(Link {
            kind: LinkKind::Owns,
            from: owner.into(),
            to: owned.into(),
        });
        self
    }

    /// Checks the structure and builds the topology (version 1).
    pub fn build(self) -> Result<Topology, TopologyError> {
        let topology = Topology {
            name: self.name,
            version: 1,
            nodes: self.nodes,
            links: self.links,
        };
        topology.validate()?;
        Ok(topology)
    }
}

impl Topology {
    /// Starts a topology named `name`.
    pub fn builder(name: impl Into<String>) -> TopologyBuilder {
        TopologyBuilder {
            name: name.into(),
            nodes: Vec::new(),
            links: Vec::new(),
        }
    }

    /// A topology without nodes.
    pub fn empty(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: 1,
            nodes: Vec::new(),
            links: Vec::new(),
        }
    }

    /// The node named `name`.
    pub fn node(&self, name: &KeyPart) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| &n.name == name)
    }

    /// The owner of `name`, if some node owns it.
    pub fn owner_of(&self, name: &KeyPart) -> Option<&KeyPart> {
        self.links
            .iter()
            .find(|l| l.kind == LinkKind::Owns && &l.to == name)
            .map(|l| &l.from)
    }

    /// The direct prerequisites of `name`.
    pub fn prerequisites(&self, name: &KeyPart) -> impl Iterator<Item = &KeyPart> {
        self.links
            .iter()
            .filter(move |l| l.kind == LinkKind::DependsOn && &l.from == name)
            .map(|l| &l.to)
    }

    /// Whether `other` differs in structure (nodes, kinds, managers, activation, policies,
    /// links), as opposed to metadata or initial states only.
    pub fn structurally_differs(&self, other: &Topology) -> bool {
        let nodes = |t: &Topology| -> BTreeSet<_> {
            t.nodes
                .iter()
                .map(|n| {
                    let (a, b, c, d, e, f) = n.structure();
                    (a, b, c.to_owned(), d.to_owned(), e, f)
                })
                .collect()
        };
        let links = |t: &Topology| -> BTreeSet<_> { t.links.iter().cloned().collect() };
        nodes(self) != nodes(other) || links(self) != links(other)
    }

    /// Checks names, endpoints, self links, single owners and the absence of cycles.
    pub fn validate(&self) -> Result<(), TopologyError> {
        let mut seen = BTreeSet::new();
        for node in &self.nodes {
            Key::tuple([KeyPart::from("pod"), node.name.clone()]).map_err(|error| {
                TopologyError::InvalidNodeName {
                    name: node_label(&node.name),
                    error,
                }
            })?;
            if !seen.insert(node_label(&node.name)) {
                return Err(TopologyError::DuplicateNode(node_label(&node.name)));
            }
        }
        let exists = |n: &KeyPart| self.nodes.iter().any(|x| &x.name == n);
        let mut owners: HashMap<String, String> = HashMap::new();
        for link in &self.links {
            for end in [&link.from, &link.to] {
                if !exists(end) {
                    return Err(TopologyError::UnknownEndpoint {
                        kind: link.kind,
                        from: node_label(&link.from),
                        to: node_label(&link.to),
                        missing: node_label(end),
                    });
                }
            }
            if link.from == link.to {
                return Err(TopologyError::SelfLink {
                    kind: link.kind,
                    node: node_label(&link.from),
                });
            }
            if link.kind == LinkKind::Owns {
                let owned = node_label(&link.to);
                let owner = node_label(&link.from);
                if let Some(first) = owners.get(&owned) {
                    if first != &owner {
                        return Err(TopologyError::TwoOwners {
                            node: owned,
                            first: first.clone(),
                            second: owner,
                        });
                    }
                }
                owners.insert(owned, owner);
            }
        }
        if let Some(cycle) = find_cycle(self, LinkKind::Owns) {
            return Err(TopologyError::OwnershipCycle(cycle));
        }
        if let Some(cycle) = find_cycle(self, LinkKind::DependsOn) {
            return Err(TopologyError::DependencyCycle(cycle));
        }
        Ok(())
    }

    /// Splits `targets` plus their transitive prerequisites into start waves: every node
    /// comes after all of its prerequisites. Assumes a validated (acyclic) topology.
    pub fn waves(&self, targets: &[KeyPart]) -> Vec<Vec<KeyPart>> {
        let mut needed: BTreeSet<String> = BTreeSet::new();
        let mut stack: Vec<&KeyPart> = targets.iter().collect();
        let mut by_label: BTreeMap<String, &KeyPart> = BTreeMap::new();
        while let Some(n) = stack.pop() {
            if needed.insert(node_label(n)) {
                by_label.insert(node_label(n), n);
                stack.extend(self.prerequisites(n));
            }
        }
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut waves = Vec::new();
        // Keep declaration order inside a wave.
        let order: Vec<&NodeSpec> = self
            .nodes
            .iter()
            .filter(|n| needed.contains(&node_label(&n.name)))
            .collect();
        while done.len() < order.len() {
            let wave: Vec<KeyPart> = order
                .iter()
                .filter(|n| !done.contains(&node_label(&n.name)))
                .filter(|n| {
                    self.prerequisites(&n.name)
                        .all(|p| done.contains(&node_label(p)))
                })
                .map(|n| n.name.clone())
                .collect();
            if wave.is_empty() {
                break; // only on a cyclic topology, which validation refuses
            }
            done.extend(wave.iter().map(node_label));
            waves.push(wave);
        }
        waves
    }
}

fn find_cycle(topology: &Topology, kind: LinkKind) -> Option<Vec<String>> {
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in topology.links.iter().filter(|l| l.kind == kind) {
        edges
            .entry(node_label(&l.from))
            .or_default()
            .push(node_label(&l.to));
    }
    crate::cycles::find_cycle(&edges)
}
