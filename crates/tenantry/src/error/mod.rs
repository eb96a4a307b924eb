//! The runtime's typed errors.
//!
//! [`Error`] is what managers and the runtime return; [`CallError`] is what a call to an
//! instance returns; [`HandlerError`] is what application handlers return. None of them
//! carries another partition's names: an error names only what its caller asked for.

pub(crate) mod topology;

use crate::checkpoint::CheckpointError;
use crate::store::StoreError;
use crate::{Identity, KeyError, PartitionError};
use std::time::Duration;

/// An error returned by application code (a handler or a lifecycle hook).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{message}")]
pub struct HandlerError {
    /// A short machine-readable code (`handler_error` unless the handler sets one).
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// What kind of refusal it is (the gateway answers 422 or 409 by it).
    #[serde(default)]
    pub kind: RefusalKind,
}

/// What kind of refusal a [`HandlerError`] is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The request itself is wrong (the default; HTTP 422).
    #[default]
    Invalid,
    /// The request is fine but the state it meets refuses it: a missing setting, a full
    /// list (HTTP 409).
    Conflict,
    /// The caller may not do this (HTTP 403).
    Forbidden,
}

impl HandlerError {
    /// An error with the default code.
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_code("handler_error", message)
    }

    /// An error with a code of the handler's choosing.
    pub fn with_code(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            kind: RefusalKind::Invalid,
        }
    }

    /// A refusal of the caller: it may not do this (see [`RefusalKind::Forbidden`]).
    pub fn forbidden(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Forbidden,
            ..Self::with_code(code, message)
        }
    }

    /// A refusal by the state the request met, not by the request (see
    /// [`RefusalKind::Conflict`]).
    pub fn conflict(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: RefusalKind::Conflict,
            ..Self::with_code(code, message)
        }
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// Why a call or a tell to an instance failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The mailbox was full; nothing was queued.
    #[error("mailbox full ({capacity} messages waiting)")]
    MailboxFull {
        /// The mailbox capacity.
        capacity: usize,
    },
    /// No reply within the timeout. The message may still be handled later.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The instance stopped (or is stopping) before it handled the message.
    #[error("the instance has stopped")]
    Stopped,
    /// The handler panicked; the instance restarts from its last good state.
    #[error("handler {handler:?} panicked: {message}")]
    Panicked {
        /// The handler.
        handler: String,
        /// The panic message.
        message: String,
    },
    /// The handler returned an error.
    #[error("handler failed: {0}")]
    Handler(HandlerError),
    /// No handler of that name on this instance's factory.
    #[error("unknown handler {handler:?}")]
    UnknownHandler {
        /// The name asked for.
        handler: String,
    },
    /// The JSON params did not match the handler's params type.
    #[error("invalid params for {handler:?}: {message}")]
    InvalidParams {
        /// The handler.
        handler: String,
        /// What is wrong, naming the field where serde can.
        message: String,
    },
    /// Params given as JSON text ([`JsonParams::Text`](crate::JsonParams::Text)) are not
    /// JSON, or not JSON serde_json holds as a value (nesting past its recursion limit, a
    /// number out of `f64`'s range).
    #[error("malformed JSON params for {handler:?}: {message}")]
    MalformedParams {
        /// The handler: the runnable's name where an instance of this runtime decoded
        /// the params, the route as called where they were read for another node.
        handler: String,
        /// What is wrong, where in the text.
        message: String,
    },
    /// The JSON reply is larger than the manager allows one call to produce; it was not
    /// sent (the handler's work is done: only the answer is refused).
    #[error("the reply of {handler:?} is larger than the {limit}-byte limit")]
    ReplyTooLarge {
        /// The handler.
        handler: String,
        /// The limit, in bytes of encoded JSON.
        limit: usize,
    },
    /// The turn ran, but its changes could not be made durable (the store failed or
    /// refused the commit, or the state does not encode): the instance continues from its
    /// last durable state. (A networked store that failed to answer may still have applied
    /// the commit, as with any lost acknowledgement; the instance then finds the newer
    /// version on its next commit and stops, and its next activation thaws it.)
    #[error("the turn could not be made durable: {reason}")]
    NotDurable {
        /// Why.
        reason: String,
    },
    /// The turn ran, but what it would have stored passes a storage limit of its
    /// partition (`max_state_bytes`, `max_stored_bytes`): nothing of it was committed, and
    /// the instance continues from its last durable state.
    #[error("the turn was not committed: {0}")]
    OverLimit(crate::store::OverLimit),
    /// The reply could not be encoded as JSON.
    #[error("reply of {handler:?} does not encode: {message}")]
    ReplyEncoding {
        /// The handler.
        handler: String,
        /// The encoder's message.
        message: String,
    },
}

/// Something a component instance needs before it can start.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dependency {
    /// The named instance (active).
    Instance(String),
    /// An active instance of this factory, visible from the instance's partition.
    Factory(String),
    /// An active provider of this service contract, visible from the instance's partition.
    Service(String),
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Instance(name) => write!(f, "instance {name}"),
            Self::Factory(name) => write!(f, "an active instance of factory {name}"),
            Self::Service(contract) => write!(f, "an active provider of {contract}"),
        }
    }
}

impl Dependency {
    /// `a, b, c` as people read it.
    pub fn list(deps: &[Dependency]) -> String {
        deps.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Errors of managers and the runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The instance gave up after repeated crashes and waits out its backoff; it may
    /// start again after `retry_in`.
    #[error("{identity} gave up after repeated crashes; it may start again in {retry_in:?}")]
    BackingOff {
        /// The instance.
        identity: Identity,
        /// Consecutive failures.
        attempt: u32,
        /// How long until it may start again.
        retry_in: Duration,
    },
    /// This process does not serve the instance (cluster mode: another node owns its
    /// shard); it must be reached there.
    #[error("{0} is served by another node")]
    ServedElsewhere(Identity),
    /// A call from outside was refused by one of its partition's limits
    /// (`crate::quota`); it may be tried again after `throttled.retry_after`.
    #[error("{partition} is over its {} limit; retry in {} ms", throttled.limit.name(), throttled.retry_after_ms())]
    Throttled {
        /// The partition.
        partition: crate::Partition,
        /// The limit and when to retry.
        throttled: Throttled,
    },
    /// The instance is not failed or backing off, so there is nothing to restart.
    #[error("instance {0:?} has not failed")]
    NotFailed(String),
    /// A key was refused.
    #[error(transparent)]
    InvalidKey(#[from] KeyError),
    /// A partition name was refused.
    #[error(transparent)]
    InvalidPartition(#[from] PartitionError),
    /// A manager or factory name was refused.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// What was being named.
        what: &'static str,
        /// The refused name.
        name: String,
        /// The rule broken.
        reason: String,
    },
    /// A manager of that name is already registered.
    #[error("a manager named {0:?} is already registered")]
    DuplicateManager(String),
    /// No manager of that name (or not of that factory).
    #[error("no manager named {0:?}")]
    UnknownManager(String),
    /// No live instance with that identity.
    #[error("no live instance {0}")]
    NotFound(Identity),
    /// The stored checkpoint could not be used; nothing was started and the bytes were
    /// left untouched.
    #[error("thaw of {identity} failed: {cause}")]
    ThawFailed {
        /// The instance asked for.
        identity: Identity,
        /// Why.
        cause: CheckpointError,
    },
    /// A lifecycle hook failed or panicked while starting; nothing was registered.
    #[error("activation of {identity} failed: {reason}")]
    ActivationFailed {
        /// The instance asked for.
        identity: Identity,
        /// Why.
        reason: String,
    },
    /// The state could not be encoded into a checkpoint; nothing was written.
    #[error("state of {identity} does not encode: {reason}")]
    StateEncoding {
        /// The instance.
        identity: Identity,
        /// The encoder's message.
        reason: String,
    },
    /// A factory registered the same handler name twice.
    #[error("factory {factory:?} registers handler(s) {handlers:?} more than once")]
    DuplicateHandler {
        /// The factory.
        factory: &'static str,
        /// The names registered twice.
        handlers: Vec<&'static str>,
    },
    /// The checkpoint store failed (down, conflict, corrupt record).
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The instance crashed while stopping; it restarts under its policy, nothing was written.
    #[error("{0} crashed while stopping")]
    CrashedWhileStopping(Identity),
    /// A call to an instance failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// A pod topology (or a change to one) was refused.
    #[error("invalid topology: {0}")]
    Topology(topology::TopologyError),
    /// The pod has no node of that name.
    #[error("unknown node {0}")]
    UnknownNode(String),
    /// A node (or a prerequisite) failed to start.
    #[error("node {node} failed: {reason}")]
    NodeFailed {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// Another mutation of this pod is in progress.
    #[error("another mutation of pod {0} is in progress")]
    MutationInProgress(Identity),
    /// An initial state given as JSON does not decode into the factory's state type.
    #[error("initial state of {identity} does not decode: {reason}")]
    InvalidInitialState {
        /// The instance.
        identity: Identity,
        /// The decoder's message.
        reason: String,
    },
    /// A component factory of that name is already registered.
    #[error("a factory named {0:?} is already registered")]
    DuplicateFactory(String),
    /// No component factory of that name.
    #[error("no factory named {0:?}")]
    UnknownFactory(String),
    /// The instance name is taken (by an instance, a factory or a manager).
    #[error("the name {0:?} is taken")]
    NameTaken(String),
    /// No component instance of that name.
    #[error("no instance named {0:?}")]
    UnknownInstance(String),
    /// Properties are malformed.
    #[error("invalid properties: {0}")]
    InvalidProperties(String),
    /// Instances depend on each other in a circle.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    DependencyCycle(Vec<String>),
    /// A hot-added instance needs something that is not active.
    #[error("{instance} cannot start: missing {}", Dependency::list(.missing))]
    DependenciesNotActive {
        /// The instance.
        instance: String,
        /// What it needs.
        missing: Vec<Dependency>,
    },
    /// No provider of a required service any more.
    #[error("no provider of {0}")]
    ServiceGone(String),
    /// No route for a bus handler (for this caller).
    #[error("no handler {0}")]
    RouteNotFound(String),
    /// The caller may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The runtime is shutting down or gone.
    #[error("the runtime is shut down")]
    ShutDown,
    /// The node that served a forwarded call failed in a way this process has no
    /// variant for (cluster mode); the message is the far side's.
    #[error("the serving node failed: {0}")]
    Remote(String),
}

impl From<topology::TopologyError> for Error {
    fn from(e: topology::TopologyError) -> Self {
        Error::Topology(e)
    }
}

/// The limit a call was refused by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The partition's request rate.
    Rate,
    /// Its calls in flight.
    Concurrency,
    /// Its share of a saturated runtime.
    FairShare,
    /// Its live instances: at the cap, and none idle enough to hibernate.
    Instances,
}

impl Throttled {
    /// How long until a call may be admitted, in whole milliseconds, rounded up.
    pub fn retry_after_ms(&self) -> u128 {
        self.retry_after.as_nanos().div_ceil(1_000_000).max(1)
    }
}

impl Limit {
    /// The limit's name in answers and metrics (`rate`, `concurrency`, `fair_share`,
    /// `instances`).
    pub fn name(self) -> &'static str {
        match self {
            Limit::Rate => "rate",
            Limit::Concurrency => "concurrency",
            Limit::FairShare => "fair_share",
            Limit::Instances => "instances",
        }
    }
}

/// A call refused by a limit, and when trying again may succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// The limit.
    pub limit: Limit,
    /// How long until a call may be admitted (for the rate: exactly; otherwise a hint).
    pub retry_after: Duration,
}
