//! The cluster's JetStream key-value buckets: their names, opening them, and the error
//! of a NATS operation that failed.

use crate::ClusterError;
use async_nats::jetstream::{self, kv};

/// `tenantry_<cluster>_<what>`: a cluster's bucket for `what` (`members`, `shards`).
pub(crate) fn name(cluster: &str, what: &str) -> String {
    format!("tenantry_{cluster}_{what}")
}

/// Opens (creating if needed) `cluster`'s bucket for `what`, keeping only each key's
/// last value. Creating an existing bucket with the same settings is a no-op, so nodes
/// starting together agree.
pub(crate) async fn open(
    client: async_nats::Client,
    cluster: &str,
    what: &str,
) -> Result<kv::Store, ClusterError> {
    checked_name("cluster", cluster, 32)?;
    jetstream::new(client)
        .create_key_value(kv::Config {
            bucket: name(cluster, what),
            history: 1,
            ..Default::default()
        })
        .await
        .map_err(unavailable)
}

/// A NATS operation's failure.
pub(crate) fn unavailable(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(e.to_string())
}

/// `name` if it is 1 to `max` characters of a-z, 0-9, '-' and '_' (valid in bucket
/// names, keys and subjects alike).
pub(crate) fn checked_name(what: &'static str, name: &str, max: usize) -> Result<(), ClusterError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::InvalidName {
            what,
            name: name.to_owned(),
            max,
        })
    }
}
