//! The identity of an instance: `(partition, manager, key)`.
//!
//! The same triple names the live instance in its manager's directory and its checkpoint
//! in the store, so the partition is part of both by construction.

use crate::{Key, Partition};
use std::fmt;
use std::sync::Arc;

/// Who an instance is. Never two live instances with one identity.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Identity {
    /// The owning partition.
    pub partition: Partition,
    /// The manager (or, for components, the factory) that hosts it.
    pub manager: Arc<str>,
    /// The key (or component instance name).
    pub key: Key,
}

impl Identity {
    /// Builds an identity.
    pub fn new(partition: Partition, manager: impl Into<Arc<str>>, key: Key) -> Self {
        Self {
            partition,
            manager: manager.into(),
            key,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} in {}", self.manager, self.key, self.partition)
    }
}
