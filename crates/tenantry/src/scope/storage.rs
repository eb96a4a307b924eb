//! Storage: an opaque key-value space per instance, backed by the runtime's store.
//!
//! Records live in the checkpoint store under the instance's own partition and a
//! manager name `storage/<manager>/<key>` that no real manager can have (manager names
//! hold no `/`), so storage never collides with checkpoints or with another instance.
//! Keys are opaque strings: no path semantics, so no traversal.
//!
//! In a durable (`EveryTurn`) instance, a handle made during a turn writes into the
//! instance's journal instead: the writes are committed with the turn's state, or not at
//! all if the turn fails. A handle kept past its turn (in a spawned task) writes to the
//! store directly, as in any other instance.

use super::journal::{Journal, Journaled};
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
    /// A durable instance's journal, and the turn this handle was made in.
    journal: Option<(Arc<Journal>, Option<u64>)>,
}

const WRITE_ATTEMPTS: usize = 8;

/// Whether `record` is a storage value (not a checkpoint).
pub(crate) fn is_storage(record: &Identity) -> bool {
    record.manager.starts_with("storage/")
}

impl Storage {
    pub(crate) fn new(
        store: Arc<dyn CheckpointStore>,
        owner: &Identity,
        journal: Option<&Arc<Journal>>,
    ) -> Self {
        Self {
            journal: journal.map(|j| (j.clone(), j.open_turn())),
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

    /// Records a write in the turn's journal; false when it must go to the store.
    fn journaled(&self, id: &Identity, bytes: Option<Arc<[u8]>>) -> bool {
        match &self.journal {
            Some((journal, Some(turn))) => journal.write(*turn, id.clone(), bytes),
            _ => false,
        }
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let id = self.at(key)?;
        if let Some((journal, turn)) = &self.journal
            && let Journaled::Known(bytes) = journal.read(*turn, &id)
        {
            return Ok(bytes.map(|b| b.to_vec()));
        }
        Ok(self.store.get(&id).await?.map(|r| r.bytes.to_vec()))
    }

    /// Writes `key` (last writer wins; concurrent writers retry on version conflicts).
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<(), StorageError> {
        let id = self.at(key)?;
        let bytes: Arc<[u8]> = value.into().into();
        if self.journaled(&id, Some(bytes.clone())) {
            return Ok(());
        }
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
        if self
            .journal
            .as_ref()
            .is_some_and(|(_, turn)| turn.is_some())
        {
            let existed = self.get(key).await?.is_some();
            if self.journaled(&id, None) {
                return Ok(existed);
            }
        }
        Ok(self.store.delete(&id, None).await?)
    }

    /// The keys held, in order.
    pub async fn keys(&self) -> Result<Vec<String>, StorageError> {
        let listed = self
            .store
            .list(&self.identity.partition, &self.identity.manager)
            .await?;
        // By encoded key: the order the store lists in.
        let mut keys: std::collections::BTreeMap<String, Key> = listed
            .into_iter()
            .map(|(k, _)| (k.encoded().to_owned(), k))
            .collect();
        if let Some((journal, turn)) = &self.journal {
            for (id, exists) in journal.listed(*turn, &self.identity.manager) {
                let encoded = id.key.encoded().to_owned();
                if exists {
                    keys.insert(encoded, id.key);
                } else {
                    keys.remove(&encoded);
                }
            }
        }
        Ok(keys
            .into_values()
            .filter_map(|k| match k.parts().into_iter().next() {
                Some(KeyPart::Str(s)) => Some(s),
                _ => None,
            })
            .collect())
    }
}
