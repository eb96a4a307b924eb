//! What an application writes: a factory (its state type), its messages and handlers.

use crate::{Context, HandlerError, Identity};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;

use super::handlers::Handlers;

/// A factory: the type of an instance's state, with its lifecycle hooks and handlers.
///
/// The state is what hibernation persists, so it must be serializable and must not hold
/// runtime handles. Each live instance owns one value of this type and handles one
/// message at a time.
pub trait Factory: Serialize + DeserializeOwned + Send + 'static {
    /// The factory's name, recorded in every checkpoint. Unique per runtime.
    const NAME: &'static str;

    /// The version of the state layout. Raise it when the layout changes and teach
    /// [`Factory::upgrade`] to migrate older checkpoints.
    const STATE_VERSION: u32 = 1;

    /// The state of a fresh instance (no checkpoint, no initial state given).
    fn fresh(identity: &Identity) -> Self;

    /// Registers the handlers reachable by name (for JSON calls, the bus and discovery).
    fn handlers(handlers: &mut Handlers<Self>);

    /// Migrates a checkpointed state written at `from_version` to the current layout.
    /// The default refuses, which fails the thaw with a clear error.
    fn upgrade(from_version: u32, state: serde_json::Value) -> Result<serde_json::Value, String> {
        let _ = state;
        Err(format!(
            "factory {:?} has no upgrade from state version {from_version} to {}",
            Self::NAME,
            Self::STATE_VERSION
        ))
    }

    /// What an effect registered with [`Context::effect`] receives as its state. The
    /// default is the factory value itself.
    fn effect_target(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }

    /// Runs once when the instance starts without a checkpoint. An error or panic fails
    /// the activation; nothing is registered.
    fn on_start(
        &mut self,
        ctx: &mut Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs once when the instance starts from a checkpoint.
    fn on_thaw(
        &mut self,
        ctx: &mut Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs before the final checkpoint of a clean stop. An error is reported as an event
    /// and the stop goes on; a panic aborts the stop without writing.
    fn on_stop(
        &mut self,
        ctx: &mut Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }
}

/// A message: typed params with a name, a description and a reply type.
pub trait Message: Serialize + DeserializeOwned + JsonSchema + Send + 'static {
    /// The handler name (`increment`), unique per factory.
    const NAME: &'static str;
    /// What the handler does, served with its schema.
    const DESCRIPTION: &'static str = "";
    /// Declares that the handler never changes the state (default false). Under
    /// [`Durability::EveryTurn`](crate::Durability::EveryTurn), such a turn skips the
    /// change check (one encoding of the state per turn), so reads cost what they cost
    /// without durability. A change such a handler makes anyway is not committed by its
    /// turn: it becomes durable with the next committed turn or at hibernation. (Debug
    /// builds still check every turn: they log a warning and commit the change.) Storage
    /// writes are committed as usual.
    const READ_ONLY: bool = false;
    /// The reply type.
    type Reply: Serialize + JsonSchema + Send + 'static;
}

/// A factory's handler for one message type.
pub trait Handler<M: Message>: Factory {
    /// Handles one message in the instance's own turn.
    fn handle(
        &mut self,
        msg: M,
        ctx: &mut Context,
    ) -> impl Future<Output = Result<M::Reply, HandlerError>> + Send;
}
