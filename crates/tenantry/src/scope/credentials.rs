//! Credentials: secrets kept per `(partition, instance scope)`, handed out as redacted
//! [`Secret`]s.

use crate::{Identity, Partition};
use dashmap::DashMap;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A secret value. Debug and Display print `***`; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Self(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

type Scope = (Partition, String);

/// The runtime's credential store. Only host code (and admin-granted instances, through
/// the credentials provider) writes to it; instances read their own scope.
#[derive(Default)]
pub struct CredentialVault {
    secrets: DashMap<Scope, BTreeMap<String, Secret>>,
}

impl CredentialVault {
    /// Sets secret `name` for the instance scope `scope` (`manager/key`, or
    /// `factory/instance`) of `partition`.
    pub fn set(&self, partition: &Partition, scope: &str, name: &str, value: Secret) {
        self.secrets
            .entry((partition.clone(), scope.to_owned()))
            .or_default()
            .insert(name.to_owned(), value);
    }

    /// Removes a secret; returns whether it existed.
    pub fn remove(&self, partition: &Partition, scope: &str, name: &str) -> bool {
        self.secrets
            .get_mut(&(partition.clone(), scope.to_owned()))
            .is_some_and(|mut m| m.remove(name).is_some())
    }

    /// The secret names of one scope (never the values).
    pub fn names(&self, partition: &Partition, scope: &str) -> Vec<String> {
        self.secrets
            .get(&(partition.clone(), scope.to_owned()))
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets every secret of one partition (offboarding).
    pub fn purge_partition(&self, partition: &Partition) {
        self.secrets.retain(|(p, _), _| p != partition);
    }

    fn get(&self, partition: &Partition, scope: &str, name: &str) -> Option<Secret> {
        self.secrets
            .get(&(partition.clone(), scope.to_owned()))
            .and_then(|m| m.get(name).cloned())
    }
}

/// An instance's view of its own credentials.
pub struct Credentials {
    vault: Arc<CredentialVault>,
    partition: Partition,
    scope: String,
}

impl Credentials {
    pub(crate) fn new(vault: Arc<CredentialVault>, identity: &Identity) -> Self {
        Self {
            vault,
            partition: identity.partition.clone(),
            scope: super::scope_name(identity),
        }
    }

    /// The secret `name` of this instance, if set.
    pub fn get(&self, name: &str) -> Option<Secret> {
        self.vault.get(&self.partition, &self.scope, name)
    }

    /// The names of this instance's secrets.
    pub fn names(&self) -> Vec<String> {
        self.vault.names(&self.partition, &self.scope)
    }
}
