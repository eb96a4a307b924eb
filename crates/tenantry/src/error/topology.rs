//! Why a pod topology is refused: the vocabulary of [`TopologyError`], kept in the base
//! layer so that [`Error`](crate::Error) can carry it without knowing pods.

use crate::KeyError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kind of a link.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// `from` starts only after `to` is running.
    DependsOn,
    /// `from` adopts `to`: `to`'s expected parent is `from`, not the pod.
    Owns,
}

/// Why a topology (or a change to one) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// A node name is not a valid key part.
    #[error("node name {name}: {error}")]
    InvalidNodeName {
        /// The name.
        name: String,
        /// The rule broken.
        error: KeyError,
    },
    /// Two nodes share a name.
    #[error("node {0} is declared twice")]
    DuplicateNode(String),
    /// A link names a node that does not exist.
    #[error("{kind:?} link {from} -> {to}: no node named {missing}")]
    UnknownEndpoint {
        /// The link's kind.
        kind: LinkKind,
        /// Its source.
        from: String,
        /// Its target.
        to: String,
        /// The endpoint that does not exist.
        missing: String,
    },
    /// A link from a node to itself.
    #[error("{kind:?} link from {node} to itself")]
    SelfLink {
        /// The link's kind.
        kind: LinkKind,
        /// The node.
        node: String,
    },
    /// A node with two owners.
    #[error("node {node} has two owners: {first} and {second}")]
    TwoOwners {
        /// The owned node.
        node: String,
        /// One owner.
        first: String,
        /// The other.
        second: String,
    },
    /// Ownership goes round in a circle.
    #[error("ownership cycle: {}", .0.join(" -> "))]
    OwnershipCycle(Vec<String>),
    /// Dependencies go round in a circle.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    DependencyCycle(Vec<String>),
    /// A nested pod contains the pod itself, at some depth.
    #[error("pod {pod} contains itself: {}", .path.join(" -> "))]
    ContainsItself {
        /// The pod factory.
        pod: String,
        /// The path of nested pod factories back to it.
        path: Vec<String>,
    },
    /// A node's manager is not registered.
    #[error("node {node}: no manager named {manager:?}")]
    UnknownManager {
        /// The node.
        node: String,
        /// The manager named.
        manager: String,
    },
    /// A node's manager manages another factory.
    #[error("node {node}: manager {manager:?} manages factory {actual:?}, not {expected:?}")]
    ManagerMismatch {
        /// The node.
        node: String,
        /// The manager named.
        manager: String,
        /// The node's factory.
        expected: String,
        /// The manager's factory.
        actual: String,
    },
    /// A pod node's manager is not a pods manager.
    #[error("node {node}: manager {manager:?} is not a pods manager")]
    NotAPodManager {
        /// The node.
        node: String,
        /// The manager named.
        manager: String,
    },
    /// No node of that name.
    #[error("no node named {0}")]
    UnknownNode(String),
}
