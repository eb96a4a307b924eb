//! Instances: factories, handlers, mailboxes, handles and contexts.
//!
//! An instance is one factory state and a bounded mailbox, run by one actor that handles
//! one letter at a time: in a task of its own while it has mail, by the caller itself
//! while it is idle (see [`runner`]). Applications implement [`Factory`], one [`Message`] type
//! per handler, and [`Handler`] for each.

pub(crate) mod cell;
pub(crate) mod context;
pub(crate) mod envelope;
pub(crate) mod factory;
pub(crate) mod handlers;
pub(crate) mod host;
mod json_params;
pub(crate) mod mailbox;
mod objects_only;
pub(crate) mod runner;
mod unknown_fields;

pub use cell::{AnyInstance, InstanceHandle, KeepAlive};
pub use context::Context;
pub use factory::{Factory, Handler, Message};
pub use handlers::{HandlerFn, HandlerInfo, Handlers, SyncHandlerFn};
pub use json_params::JsonParams;
