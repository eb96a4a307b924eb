//! The tenant registry: what was onboarded and offboarded at runtime, kept durable.
//!
//! It lives in the checkpoint store itself (redb or PostgreSQL), as one record under a
//! reserved identity (`_gateway/tenants`, unpartitioned; `_` cannot start a manager name,
//! so no instance can collide with it). Writes are compare-and-set on the record's
//! version, like every checkpoint. Runtime config writes (`PUT /v1/admin/config/..`) are
//! kept here too, so a restart replays them.

use crate::settings::TenantSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tenantry::store::{CheckpointStore, StoreError};
use tenantry::{Identity, Key, Partition};

/// The registry's contents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryDoc {
    /// Tenants onboarded at runtime, by partition name.
    pub onboarded: BTreeMap<String, TenantSpec>,
    /// Tenants of the settings that were offboarded at runtime.
    pub offboarded: BTreeSet<String>,
    /// Config writes made at runtime, by dotted key.
    pub config_writes: BTreeMap<String, Value>,
    /// Partitions offboarded without purge: their data is still in the store, and a new
    /// tenant of that name takes it over only when asked to (`restore`).
    pub retained: BTreeSet<String>,
}

/// The registry, with the version it was read at.
pub struct Registry {
    store: Arc<dyn CheckpointStore>,
    version: Option<u64>,
    /// The contents.
    pub doc: RegistryDoc,
}

fn identity() -> Result<Identity, StoreError> {
    let key = Key::new("tenants").map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Identity::new(Partition::unpartitioned(), "_gateway", key))
}

impl Registry {
    /// Reads the registry (empty if never written).
    pub async fn load(store: Arc<dyn CheckpointStore>) -> Result<Self, StoreError> {
        let id = identity()?;
        let (version, doc) = match store.get(&id).await? {
            None => (None, RegistryDoc::default()),
            Some(record) => (
                Some(record.version),
                serde_json::from_slice(&record.bytes)
                    .map_err(|e| StoreError::Corrupt(format!("tenant registry: {e}")))?,
            ),
        };
        Ok(Self {
            store,
            version,
            doc,
        })
    }

    /// Reads the registry again; whether it changed since it was read or written here.
    pub async fn reload(&mut self) -> Result<bool, StoreError> {
        let fresh = Self::load(self.store.clone()).await?;
        if fresh.version == self.version {
            return Ok(false);
        }
        self.version = fresh.version;
        self.doc = fresh.doc;
        Ok(true)
    }

    /// Writes `doc` (compare-and-set on the version read); on success it becomes the
    /// registry's contents.
    pub async fn save(&mut self, doc: RegistryDoc) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(&doc)
            .map_err(|e| StoreError::Corrupt(format!("tenant registry: {e}")))?;
        let version = self
            .store
            .put(&identity()?, Arc::from(bytes), self.version)
            .await?;
        self.version = Some(version);
        self.doc = doc;
        Ok(())
    }
}
