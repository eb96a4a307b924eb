//! What cluster operations fail with.

/// A cluster operation's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// A cluster or node name breaks the naming rule.
    #[error("invalid {what} name {name:?}: use 1 to {max} of a-z, 0-9, '-' and '_'")]
    InvalidName {
        /// `cluster` or `node`.
        what: &'static str,
        /// The name refused.
        name: String,
        /// The longest name allowed.
        max: usize,
    },
    /// The timing settings cannot keep the lease promise.
    #[error("invalid membership timing: {0}")]
    InvalidTiming(String),
    /// NATS (or its JetStream) could not be reached or refused an operation.
    #[error("NATS unavailable: {0}")]
    Unavailable(String),
    /// The cluster was created with another shard count (fixed for its life).
    #[error("cluster {cluster:?} has {found} shards, not {asked}")]
    ShardCount {
        /// The cluster.
        cluster: String,
        /// Its shard count.
        found: usize,
        /// The count asked for.
        asked: u32,
    },
    /// Another live node has this node's name.
    #[error("node {0:?} is already a live member of the cluster")]
    DuplicateNode(String),
    /// A pin request is malformed (its nodes, its shard count, the partition).
    #[error("invalid pin: {0}")]
    InvalidPin(String),
    /// A pin cannot be set now or this way (the tenant is moving, no node named is
    /// live, exclusive pins would overlap, the pins' shards would run out).
    #[error("pin refused: {0}")]
    PinConflict(String),
    /// The tenant is not pinned.
    #[error("{0} is not pinned")]
    NotPinned(String),
}
