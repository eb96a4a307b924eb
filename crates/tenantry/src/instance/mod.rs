//! Instances: factories, handlers, mailboxes, handles and contexts.
//!
//! An instance is one tokio task owning one factory state and a bounded mailbox; it
//! handles one letter at a time. Applications implement [`Factory`], one [`Message`] type
//! per handler, and [`Handler`] for each.

pub(crate) mod cell;
pub(crate) mod context;
pub(crate) mod envelope;
pub(crate) mod factory;
pub(crate) mod handlers;
pub(crate) mod host;
pub(crate) mod mailbox;

pub use cell::{AnyInstance, InstanceHandle, KeepAlive};
pub use context::Context;
pub use factory::{Factory, Handler, Message};
pub use handlers::{HandlerFn, HandlerInfo, Handlers};
