//! Storage: an opaque key-value space per instance, backed by the runtime's store.
//!
//! Records live in the checkpoint store under the instance's own partition and a
//! manager name `storage/<manager>/<key>` that no real manager can have (manager names
//! hold no `/`), so storage never collides with checkpoints or with another instance.
//! Keys are opaque strings: no path semantics, so no traversal.

use crate::store::{CheckpointStore, StoreError};
use crate::{Identity, Key, KeyPart};
use std::sync::Arc;

/// Why a storage operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The key is empty, too long or holds control characters.
    #[error("invalid storage key: {0}")]
    InvalidKey(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An instance's own storage.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn CheckpointStore>,
    identity: Identity,
}

const WRITE_ATTEMPTS: usize = 8;

impl Storage {
    pub(crate) fn new(store: Arc<dyn CheckpointStore>, owner: &Identity) -> Self {
        Self {
            store,
            identity: Identity::new(
                owner.partition.clone(),
                format!("storage/{}", super::scope_name(owner)),
                // Replaced per call; a placeholder that is always valid.
                Key::tuple(["-"]).unwrap_or_else(|_| owner.key.clone()),
            ),
        }
    }

    fn at(&self, key: &str) -> Result<Identity, StorageError> {
        let key = Key::tuple([KeyPart::from(key)])
            .map_err(|e| StorageError::InvalidKey(e.to_string()))?;
        Ok(Identity {
            key,
            ..self.identity.clone()
        })
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let id = self.at(key)?;
        Ok(self.store.get(&id).await?.map(|r| r.bytes.to_vec()))
    }

    /// Writes `key` (last writer wins; concurrent writers retry on version conflicts).
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), StorageError> {
        let id = self.at(key)?;
        let bytes: Arc<[u8]> = value.into().into();
        let mut last = None;
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.store.get(&id).await?.map(|r| r.version);
            match self.store.put(&id, bytes.clone(), current).await {
                Ok(_) => return Ok(()),
                Err(e @ StoreError::Conflict { .. }) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .unwrap_or_else(|| StoreError::Unavailable("write kept conflicting".into()))
            .into())
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, StorageError> {
        let id = self.at(key)?;
        Ok(self.store.delete(&id, None).await?)
    }

    /// The keys held, in order.
    pub async fn keys(&self) -> Result<Vec<String>, StorageError> {
        let listed = self
            .store
            .list(&self.identity.partition, &self.identity.manager)
            .await?;
        Ok(listed
            .into_iter()
            .filter_map(|(k, _)| match k.parts().into_iter().next() {
                Some(KeyPart::Str(s)) => Some(s),
                _ => None,
            })
            .collect())
    }
}
