//! The tenant boundary: a validated partition id.
//!
//! Every instance, checkpoint, event and metric carries exactly one [`Partition`].
//! A named partition is a short printable id (`acme`, `tenant_alpha`); the
//! [`Partition::unpartitioned`] value is distinct from every named partition and is never a
//! wildcard: it equals only itself.

use std::fmt;
use std::sync::Arc;

/// The longest partition name accepted, in bytes.
pub const MAX_PARTITION_LEN: usize = 64;

/// A tenant or workspace id, or the distinct "unpartitioned" value.
///
/// Cloning is cheap (one reference count). Equality, hashing and ordering compare the
/// name; the unpartitioned value sorts first and equals only itself.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Partition(Option<Arc<str>>);

/// Why a partition name was refused; each variant names the rule broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    /// The name was empty.
    #[error("invalid partition name: it is empty (use Partition::unpartitioned() for no tenant)")]
    Empty,
    /// The name was longer than [`MAX_PARTITION_LEN`] bytes.
    #[error("invalid partition name: {len} bytes is longer than the {max}-byte limit")]
    TooLong {
        /// Length of the refused name in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name held a character outside `A-Z a-z 0-9 _ -`.
    #[error(
        "invalid partition name: character {ch:?} at byte {at} is not allowed \
         (only ASCII letters, digits, '_' and '-'; no separators, spaces or path characters)"
    )]
    BadChar {
        /// The refused character.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name started with `-` or `_`, which read as flags or hidden names.
    #[error("invalid partition name: it must start with an ASCII letter or digit")]
    BadStart,
}

impl Partition {
    /// Validates `name` and makes a named partition.
    pub fn new(name: &str) -> Result<Self, PartitionError> {
        check_name(name)?;
        Ok(Self(Some(Arc::from(name))))
    }

    /// The distinct "no tenant" value. It matches only itself, never a named partition.
    pub const fn unpartitioned() -> Self {
        Self(None)
    }

    /// Whether this is the unpartitioned value.
    pub fn is_unpartitioned(&self) -> bool {
        self.0.is_none()
    }

    /// The name, or `None` for the unpartitioned value.
    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The form used in storage keys and metric labels: the name, or `""` when
    /// unpartitioned (no valid name is empty, so the two never collide).
    pub fn as_storage_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// Inverse of [`Partition::as_storage_str`].
    pub fn from_storage_str(s: &str) -> Result<Self, PartitionError> {
        if s.is_empty() {
            Ok(Self::unpartitioned())
        } else {
            Self::new(s)
        }
    }
}

/// The naming rule shared by partitions and managers.
pub(crate) fn check_name(name: &str) -> Result<(), PartitionError> {
    if name.is_empty() {
        return Err(PartitionError::Empty);
    }
    if name.len() > MAX_PARTITION_LEN {
        return Err(PartitionError::TooLong {
            len: name.len(),
            max: MAX_PARTITION_LEN,
        });
    }
    for (at, ch) in name.char_indices() {
        if !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-') {
            return Err(PartitionError::BadChar { ch, at });
        }
    }
    if name.starts_with(['-', '_']) {
        return Err(PartitionError::BadStart);
    }
    Ok(())
}

impl std::str::FromStr for Partition {
    type Err = PartitionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for Partition {
    type Error = PartitionError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(name) => f.write_str(name),
            None => f.write_str("(unpartitioned)"),
        }
    }
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(name) => write!(f, "Partition({name:?})"),
            None => f.write_str("Partition::unpartitioned"),
        }
    }
}

impl serde::Serialize for Partition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(name) => s.serialize_some(&**name),
            None => s.serialize_none(),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Partition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name: Option<String> = serde::Deserialize::deserialize(d)?;
        match name {
            None => Ok(Self::unpartitioned()),
            Some(name) => Self::new(&name).map_err(serde::de::Error::custom),
        }
    }
}
