//! Structurally scoped credentials and storage.
//!
//! An instance reaches credentials and storage only through views the runtime builds from
//! its own identity: `(partition, manager or factory, key or instance name)`. Two
//! instances of one factory never share a scope, and no method takes a partition or a
//! scope name, so a tenant's code has no way to name another tenant's scope.

mod credentials;
pub(crate) mod journal;
pub(crate) mod storage;

pub use credentials::{CredentialVault, Credentials, Secret};
pub use storage::{Storage, StorageError};

use crate::Identity;

/// The scope name of an instance inside its partition: `manager/key`. Manager and factory
/// names cannot contain `/`, so the first `/` always splits it unambiguously.
pub(crate) fn scope_name(identity: &Identity) -> String {
    format!("{}/{}", identity.manager, identity.key.encoded())
}
