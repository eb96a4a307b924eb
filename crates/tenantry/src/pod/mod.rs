//! Pods: durable, partition-safe topologies of agents.
//!
//! A pod is an instance of a pods manager whose state is a [`Topology`]. Getting a pod
//! reconciles it: eager nodes and their prerequisites start in dependency waves, each node
//! a keyed instance `(pod factory, pod key, node name)` in its node manager and in the
//! pod's own partition, bound to its expected parent (its owner node, or the pod). Only
//! the topology is persisted; parent bindings are runtime state kept per partition in
//! [`lineage`] (kept by the managers).
//!
//! Declare a pod with [`PodFactory`], register it with [`crate::Runtime::register_pod`],
//! then use [`Pod::get`], [`Pod::ensure_node`], [`Pod::snapshot`] and
//! [`Pod::begin_mutation`].

pub(crate) mod core;
mod ops;
pub(crate) mod state;
pub mod topology;

pub use self::ops::{MutationReport, NodeSnapshot, NodeStatus, Pod, PodMutation, ReconcileReport};
pub use self::state::{PodManager, PodState};
pub use self::topology::{
    Activation, Link, LinkKind, NodeKind, NodeSpec, OnParentStop, Topology, TopologyBuilder,
    TopologyError,
};
pub use crate::manager::lineage::{self, Binding};

/// Declares a pod: its factory name and its topology.
pub trait PodFactory: Send + Sync + 'static {
    /// The pod factory's name, recorded in checkpoints and node keys.
    const NAME: &'static str;

    /// The declared topology. It must be deterministic: it is checked at registration and
    /// used for every fresh pod.
    fn topology() -> Result<Topology, TopologyError>;
}
