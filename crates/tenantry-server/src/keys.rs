//! API keys: generation, hashing, and the key ring that maps a key to who holds it.
//!
//! Keys are random 32-byte strings shown once; only their SHA-256 is kept (in settings,
//! in the tenant registry, and in memory). A key belongs to exactly one partition, or is
//! the admin key.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;
use tenantry::Partition;

/// Who a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The admin key: admin routes, and every partition's routes.
    Admin,
    /// A tenant key: its own partition's routes only.
    Tenant(Partition),
}

/// Why a key or hash was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
    /// A hash is not 64 hex digits.
    #[error("a key hash must be 64 hex digits")]
    BadHash,
}

/// A new random key: `<prefix>_` and 64 hex digits.
pub fn generate(prefix: &str) -> Result<String, KeyError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(format!("{prefix}_{}", hex(&bytes)))
}

/// The SHA-256 of a key.
pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The SHA-256 of a key, as hex.
pub fn hash_hex(key: &str) -> String {
    hex(&hash(key))
}

/// Parses a hex SHA-256.
pub fn parse_hash_hex(s: &str) -> Result<[u8; 32], KeyError> {
    let s = s.trim();
    if s.len() != 64 {
        return Err(KeyError::BadHash);
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = s.get(2 * i..2 * i + 2).ok_or(KeyError::BadHash)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| KeyError::BadHash)?;
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Key hashes and their holders.
pub struct KeyRing {
    admin: [u8; 32],
    /// Hashed with foldhash: the keys are SHA-256 digests, and only onboarding adds any.
    tenants: RwLock<HashMap<[u8; 32], Partition, foldhash::fast::RandomState>>,
}

impl KeyRing {
    /// A ring with only the admin key.
    pub fn new(admin_hash: [u8; 32]) -> Self {
        Self {
            admin: admin_hash,
            tenants: RwLock::new(HashMap::default()),
        }
    }

    /// Who holds `key`, if anyone.
    pub fn authenticate(&self, key: &str) -> Option<Principal> {
        let h = hash(key);
        if h == self.admin {
            return Some(Principal::Admin);
        }
        self.tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&h)
            .cloned()
            .map(Principal::Tenant)
    }

    /// Gives the key with hash `h` to `partition`. A hash held by another partition (or
    /// the admin hash) is refused, so a key never belongs to two holders.
    pub fn add(&self, h: [u8; 32], partition: &Partition) -> bool {
        if h == self.admin {
            return false;
        }
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        match tenants.get(&h) {
            Some(p) if p != partition => false,
            _ => {
                tenants.insert(h, partition.clone());
                true
            }
        }
    }

    /// Revokes every key of `partition`; returns how many.
    pub fn revoke_partition(&self, partition: &Partition) -> usize {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        let before = tenants.len();
        tenants.retain(|_, p| p != partition);
        before - tenants.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hash_and_resolve_to_one_holder() {
        let acme = Partition::new("acme").unwrap();
        let globex = Partition::new("globex").unwrap();
        let ring = KeyRing::new(hash("admin"));
        let k = generate("tk").unwrap();
        assert_eq!(k.len(), 3 + 64);
        assert!(ring.add(hash(&k), &acme));
        assert!(!ring.add(hash(&k), &globex));
        assert!(!ring.add(hash("admin"), &globex));
        assert_eq!(ring.authenticate(&k), Some(Principal::Tenant(acme.clone())));
        assert_eq!(ring.authenticate("admin"), Some(Principal::Admin));
        assert_eq!(ring.authenticate("nope"), None);
        assert_eq!(parse_hash_hex(&hash_hex(&k)).unwrap(), hash(&k));
        assert_eq!(ring.revoke_partition(&acme), 1);
        assert_eq!(ring.authenticate(&k), None);
    }
}
