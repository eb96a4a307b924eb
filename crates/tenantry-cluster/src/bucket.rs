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
///
/// A failed creation is tried again twice, 50 and 100 ms later: the NATS server can fail
/// one transiently (seen: its streams directory removed by a concurrent deletion of
/// another bucket, error 10077), and a node should not fail to start over it.
pub(crate) async fn open(
    client: async_nats::Client,
    cluster: &str,
    what: &str,
) -> Result<kv::Store, ClusterError> {
    checked_name("cluster", cluster, 32)?;
    let js = jetstream::new(client);
    let config = || kv::Config {
        bucket: name(cluster, what),
        history: 1,
        ..Default::default()
    };
    let mut pause = std::time::Duration::from_millis(50);
    for _ in 0..2 {
        match js.create_key_value(config()).await {
            Ok(store) => return Ok(store),
            Err(e) => {
                tracing::warn!(cluster, bucket = what, error = %e, "bucket creation failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
    js.create_key_value(config()).await.map_err(unavailable)
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
