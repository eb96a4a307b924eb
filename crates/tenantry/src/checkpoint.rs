//! The checkpoint format: what a hibernated instance looks like on disk.
//!
//! Layout: the magic bytes `TNCP`, one format byte (currently 1), then a JSON object with
//! the factory name, the factory's state version, the partition, the key and the state.
//! Never runtime handles. Decoding checks every identity field against what the caller
//! expects, so a checkpoint of another factory, partition or key is refused, not used.

use crate::{Key, Partition};
use serde::{Deserialize, Serialize};

/// The magic prefix of every checkpoint.
pub const MAGIC: &[u8; 4] = b"TNCP";
/// The format version written by this build.
pub const FORMAT_VERSION: u8 = 1;

/// Why a checkpoint could not be used; nothing is started and the bytes stay untouched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a Tenantry checkpoint, or damaged.
    #[error("corrupt checkpoint: {0}")]
    Corrupt(String),
    /// A format this build cannot read.
    #[error("unknown checkpoint format {found} (this build reads format {FORMAT_VERSION})")]
    UnknownFormat {
        /// The format byte found.
        found: u8,
    },
    /// The checkpoint belongs to another factory.
    #[error("checkpoint belongs to factory {found:?}, not {expected:?}")]
    FactoryMismatch {
        /// The factory asked for.
        expected: String,
        /// The factory recorded.
        found: String,
    },
    /// The checkpoint records another partition than the one it was read from.
    #[error("checkpoint records partition {found}, not {expected}")]
    PartitionMismatch {
        /// The partition asked for.
        expected: Partition,
        /// The partition recorded.
        found: Partition,
    },
    /// The checkpoint records another key than the one it was read from.
    #[error("checkpoint records key {found}, not {expected}")]
    KeyMismatch {
        /// The key asked for.
        expected: Key,
        /// The key recorded.
        found: Key,
    },
    /// The state was written by a newer version of the factory.
    #[error("checkpoint state version {found} is newer than this factory's {supported}")]
    StateVersionTooNew {
        /// The version recorded.
        found: u32,
        /// The factory's current version.
        supported: u32,
    },
    /// The factory's upgrade from an older state version failed.
    #[error("upgrading state from version {from} failed: {reason}")]
    UpgradeFailed {
        /// The version recorded.
        from: u32,
        /// Why the upgrade failed.
        reason: String,
    },
    /// The state did not decode into the factory's state type.
    #[error("checkpoint state does not decode: {0}")]
    State(String),
    /// The state could not be encoded.
    #[error("state does not encode: {0}")]
    Encode(String),
}

#[derive(Serialize)]
struct Out<'a, S> {
    factory: &'a str,
    state_version: u32,
    partition: &'a Partition,
    key: &'a Key,
    state: &'a S,
}

#[derive(Deserialize)]
struct In<'a> {
    #[serde(borrow)]
    factory: std::borrow::Cow<'a, str>,
    state_version: u32,
    partition: Partition,
    key: Key,
    #[serde(borrow)]
    state: &'a serde_json::value::RawValue,
}

/// The identity a checkpoint is written for and checked against.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointIdentity<'a> {
    /// The factory name.
    pub factory: &'a str,
    /// The factory's current state version.
    pub state_version: u32,
    /// The owning partition.
    pub partition: &'a Partition,
    /// The instance key.
    pub key: &'a Key,
}

/// Encodes a checkpoint of `state`.
pub fn encode<S: Serialize>(
    id: CheckpointIdentity<'_>,
    state: &S,
) -> Result<Vec<u8>, CheckpointError> {
    let mut out = Vec::with_capacity(256);
    encode_into(id, state, &mut out)?;
    Ok(out)
}

/// Encodes a checkpoint of `state` into `out` (cleared first), reusing its capacity.
pub fn encode_into<S: Serialize>(
    id: CheckpointIdentity<'_>,
    state: &S,
    out: &mut Vec<u8>,
) -> Result<(), CheckpointError> {
    out.clear();
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    serde_json::to_writer(
        &mut *out,
        &Out {
            factory: id.factory,
            state_version: id.state_version,
            partition: id.partition,
            key: id.key,
            state,
        },
    )
    .map_err(|e| CheckpointError::Encode(e.to_string()))
}

/// A checked checkpoint whose state is still raw JSON, with the version it was written at.
#[derive(Debug)]
pub struct Decoded<'a> {
    /// The factory state version the state was written with.
    pub state_version: u32,
    /// The raw state JSON.
    pub state: &'a str,
}

/// Decodes and checks a checkpoint against the identity it was read for.
pub fn decode<'a>(
    bytes: &'a [u8],
    id: CheckpointIdentity<'_>,
) -> Result<Decoded<'a>, CheckpointError> {
    let body = match bytes {
        [m0, m1, m2, m3, format, body @ ..] if [*m0, *m1, *m2, *m3] == *MAGIC => {
            if *format != FORMAT_VERSION {
                return Err(CheckpointError::UnknownFormat { found: *format });
            }
            body
        }
        _ => {
            return Err(CheckpointError::Corrupt(
                "not a Tenantry checkpoint (bad magic bytes)".into(),
            ));
        }
    };
    let parsed: In<'a> =
        serde_json::from_slice(body).map_err(|e| CheckpointError::Corrupt(e.to_string()))?;
    if parsed.factory != id.factory {
        return Err(CheckpointError::FactoryMismatch {
            expected: id.factory.to_owned(),
            found: parsed.factory.into_owned(),
        });
    }
    if &parsed.partition != id.partition {
        return Err(CheckpointError::PartitionMismatch {
            expected: id.partition.clone(),
            found: parsed.partition,
        });
    }
    if &parsed.key != id.key {
        return Err(CheckpointError::KeyMismatch {
            expected: id.key.clone(),
            found: parsed.key,
        });
    }
    if parsed.state_version > id.state_version {
        return Err(CheckpointError::StateVersionTooNew {
            found: parsed.state_version,
            supported: id.state_version,
        });
    }
    Ok(Decoded {
        state_version: parsed.state_version,
        state: parsed.state.get(),
    })
}
