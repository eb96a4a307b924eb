//! Shared by the cluster tests: the NATS server from the environment, names no other run
//! uses, waiting for a condition, and removing a test cluster's buckets.
#![allow(dead_code)]

use std::time::Duration;
use tokio::time::Instant;

/// The variable naming the test NATS server.
pub const NATS_VAR: &str = "TENANTRY_TEST_NATS_URL";

/// A client of the test NATS server, or `None` after saying plainly that the test is
/// skipped.
pub async fn client() -> Option<async_nats::Client> {
    let Ok(url) = std::env::var(NATS_VAR) else {
        eprintln!("skipped: {NATS_VAR} is not set");
        return None;
    };
    Some(
        async_nats::connect(url)
            .await
            .expect("the test NATS server answers"),
    )
}

/// A name no other run uses: `tag` and a random suffix.
pub fn unique(tag: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{tag}{:x}", h.finish() & 0xffff_ffff)
}

/// Removes every bucket of `cluster`.
pub async fn drop_buckets(client: &async_nats::Client, cluster: &str) {
    let js = async_nats::jetstream::new(client.clone());
    for what in ["members", "shards"] {
        let _ = js
            .delete_key_value(format!("tenantry_{cluster}_{what}"))
            .await;
    }
}

/// Waits until `check` holds, at most `limit`; how long it took.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < limit || check(),
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    start.elapsed()
}
