//! Test support for Tenantry, kept out of the product crates: the conformance suite every
//! [`CheckpointStore`] must pass, the crash-writer harness ([`crash`]), a store that
//! can be switched off ([`OutageStore`]), log output captured in memory ([`LogLines`]) and a factory whose handlers log
//! ([`speakers`]), and the import-graph checks that keep a crate's
//! layers pointing down ([`imports`]).
//!
//! One set of checks, run alike against the memory, redb and PostgreSQL stores (and any
//! other backend), so that every store keeps the same promises: round trips, compare-and-set
//! conflicts, partition isolation of get, list, delete and purge, large states, many keys
//! listed in key order, one winner per version among concurrent writers, structured keys,
//! and foreign or corrupt bytes that fail a thaw cleanly instead of panicking. Stores
//! that fence writes per shard (cluster mode) also pass the checks of [`fences`].
//!
//! Each check is an `async fn(Arc<dyn CheckpointStore>) -> Result<(), String>` that wants a
//! fresh, empty store of its own and returns a message naming what broke. [`CHECKS`] lists
//! them by name, and [`run_all`] runs every one against stores from a factory. Checks spawn
//! tokio tasks, so they must run inside a multi-thread tokio runtime.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use std::sync::Arc;
//! use tenantry::store::{CheckpointStore, MemoryStore};
//! use tenantry_testing as conformance;
//! conformance::run_all(|| async { Ok(Arc::new(MemoryStore::new()) as Arc<dyn CheckpointStore>) })
//!     .await
//! # }
//! ```

pub mod imports;
mod log_lines;
pub mod speakers;

pub use log_lines::LogLines;

use futures::future::{BoxFuture, FutureExt};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use tenantry::checkpoint::{self, CheckpointError, CheckpointIdentity};
use tenantry::store::{
    CheckpointStore, Record, SideWrite, StoreError, StoreKey, StoreUsage, TurnCommit,
};
use tenantry::{
    Context, Error, Factory, Handler, HandlerError, Handlers, Identity, Key, KeyPart,
    ManagerConfig, Message, Partition, Runtime,
};

/// What every check returns: `Err` names the broken promise.
pub type CheckResult = Result<(), String>;

/// One named conformance check.
#[derive(Clone, Copy)]
pub struct Check {
    /// The check's name (its function's name).
    pub name: &'static str,
    /// Runs the check against a fresh, empty store.
    pub run: fn(Arc<dyn CheckpointStore>) -> BoxFuture<'static, CheckResult>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("name", &self.name).finish()
    }
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Every check of the suite, in the order [`run_all`] runs them.
        pub const CHECKS: &[Check] = &[$(Check {
            name: stringify!($name),
            run: |store| $name(store).boxed(),
        }),*];
    };
}

checks!(
    put_get_delete_round_trip_bytes_and_versions,
    compare_and_set_refuses_duplicate_stale_and_wrong_version_writes,
    partitions_isolate_get_list_delete_and_purge,
    large_states_of_several_mib_round_trip,
    thousands_of_keys_list_in_key_order,
    concurrent_writers_to_one_key_have_exactly_one_winner_per_version,
    structured_keys_round_trip_and_list_back_equal,
    corrupt_or_foreign_bytes_fail_the_thaw_without_panics,
    turn_commits_apply_side_writes_with_the_checkpoint_or_not_at_all,
    usage_follows_every_write_of_its_partition_and_no_other,
);

/// Runs every check of [`CHECKS`], each against a fresh store from `fresh_store`, and
/// returns the first failure, prefixed with the check's name.
pub async fn run_all<F, Fut>(mut fresh_store: F) -> CheckResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Arc<dyn CheckpointStore>, String>>,
{
    for check in CHECKS {
        let store = fresh_store()
            .await
            .map_err(|e| format!("{}: no store: {e}", check.name))?;
        (check.run)(store)
            .await
            .map_err(|e| format!("{}: {e}", check.name))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Helpers.

macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($msg:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!("{}: got {:?}, expected {:?}", format!($($msg)+), left, right));
        }
    }};
}

fn partition(name: &str) -> Result<Partition, String> {
    Partition::new(name).map_err(|e| format!("partition {name:?}: {e}"))
}

pub mod fences;

fn key(s: &str) -> Result<Key, String> {
    Key::new(s).map_err(|e| format!("key {s:?}: {e}"))
}

fn id(p: &Partition, manager: &str, k: &Key) -> StoreKey {
    Identity::new(p.clone(), manager, k.clone())
}

fn bytes(b: impl AsRef<[u8]>) -> Arc<[u8]> {
    Arc::from(b.as_ref())
}

/// Deterministic pseudo-random bytes (xorshift), so large states are not trivially
/// compressible and a mix-up of two of them shows.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn show(e: &StoreError) -> String {
    format!("{e:?}")
}

async fn put(
    store: &dyn CheckpointStore,
    k: &StoreKey,
    b: impl AsRef<[u8]>,
    expected: Option<u64>,
) -> Result<u64, String> {
    store
        .put(k, bytes(b), expected)
        .await
        .map_err(|e| format!("put {k} (expected {expected:?}) failed: {}", show(&e)))
}

async fn get(store: &dyn CheckpointStore, k: &StoreKey) -> Result<Option<Record>, String> {
    store
        .get(k)
        .await
        .map_err(|e| format!("get {k} failed: {}", show(&e)))
}

async fn get_some(store: &dyn CheckpointStore, k: &StoreKey) -> Result<Record, String> {
    get(store, k)
        .await?
        .ok_or_else(|| format!("get {k}: the record is missing"))
}

async fn expect_record(
    store: &dyn CheckpointStore,
    k: &StoreKey,
    version: u64,
    b: &[u8],
) -> CheckResult {
    let record = get_some(store, k).await?;
    ensure_eq!(record.version, version, "version of {k}");
    ensure!(
        &*record.bytes == b,
        "bytes of {k}: got {} bytes, expected {} bytes (contents differ)",
        record.bytes.len(),
        b.len()
    );
    Ok(())
}

async fn list(
    store: &dyn CheckpointStore,
    p: &Partition,
    manager: &str,
) -> Result<Vec<(Key, u64)>, String> {
    store
        .list(p, manager)
        .await
        .map_err(|e| format!("list {manager} in {p} failed: {}", show(&e)))
}

async fn delete(
    store: &dyn CheckpointStore,
    k: &StoreKey,
    expected: Option<u64>,
) -> Result<bool, String> {
    store
        .delete(k, expected)
        .await
        .map_err(|e| format!("delete {k} (expected {expected:?}) failed: {}", show(&e)))
}

async fn purge(store: &dyn CheckpointStore, p: &Partition) -> Result<u64, String> {
    store
        .purge_partition(p)
        .await
        .map_err(|e| format!("purge of {p} failed: {}", show(&e)))
}

fn expect_conflict<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, StoreError>,
    expected: Option<u64>,
    actual: Option<u64>,
) -> CheckResult {
    match result {
        Err(StoreError::Conflict {
            expected: e,
            actual: a,
        }) if e == expected && a == actual => Ok(()),
        other => Err(format!(
            "{what}: got {other:?}, expected Conflict {{ expected: {expected:?}, actual: {actual:?} }}"
        )),
    }
}

// ---------------------------------------------------------------------------------------
// The checks.

/// Puts, gets, lists and deletes one record through its whole life: versions start at 1,
/// advance by one per write, restart at 1 after a delete, and bytes come back exactly
/// (empty and all 256 byte values included), in a named partition and unpartitioned.
pub async fn put_get_delete_round_trip_bytes_and_versions(
    store: Arc<dyn CheckpointStore>,
) -> CheckResult {
    let store = &*store;
    for p in [partition("alpha")?, Partition::unpartitioned()] {
        let a = id(&p, "rt", &key("a")?);
        ensure!(
            get(store, &a).await?.is_none(),
            "a fresh store holds {a} already"
        );
        ensure_eq!(put(store, &a, b"one", None).await?, 1, "first put of {a}");
        expect_record(store, &a, 1, b"one").await?;
        ensure_eq!(
            put(store, &a, b"two", Some(1)).await?,
            2,
            "second put of {a}"
        );
        expect_record(store, &a, 2, b"two").await?;
        ensure_eq!(
            list(store, &p, "rt").await?,
            vec![(key("a")?, 2)],
            "list of rt in {p}"
        );

        let empty = id(&p, "rt", &key("empty")?);
        ensure_eq!(put(store, &empty, b"", None).await?, 1, "put of {empty}");
        expect_record(store, &empty, 1, b"").await?;

        let all: Vec<u8> = (0..=255u8).rev().collect();
        let binary = id(&p, "rt", &key("binary")?);
        ensure_eq!(put(store, &binary, &all, None).await?, 1, "put of {binary}");
        expect_record(store, &binary, 1, &all).await?;

        ensure!(
            delete(store, &a, Some(2)).await?,
            "delete of {a} at its version deleted nothing"
        );
        ensure!(
            get(store, &a).await?.is_none(),
            "{a} is still there after its delete"
        );
        ensure!(
            !delete(store, &a, None).await?,
            "a second delete of {a} reported a deletion"
        );
        ensure!(
            !delete(store, &a, Some(2)).await?,
            "a delete of the missing {a} with a version reported a deletion"
        );
        ensure_eq!(
            put(store, &a, b"again", None).await?,
            1,
            "a record recreated after its delete starts at version 1"
        );
        expect_record(store, &a, 1, b"again").await?;
        ensure!(
            delete(store, &a, None).await?,
            "an unconditional delete of {a} deleted nothing"
        );
        ensure_eq!(
            list(store, &p, "rt").await?,
            vec![(key("binary")?, 1), (key("empty")?, 1)],
            "list of rt in {p} after the deletes"
        );
    }
    Ok(())
}

/// Compare-and-set: creating twice, writing at a stale or a future version, writing at a
/// version to a missing record, and deleting at a wrong version all fail with `Conflict`
/// naming both versions, and leave the stored record untouched.
pub async fn compare_and_set_refuses_duplicate_stale_and_wrong_version_writes(
    store: Arc<dyn CheckpointStore>,
) -> CheckResult {
    let store = &*store;
    let p = partition("alpha")?;
    let a = id(&p, "cas", &key("a")?);
    ensure_eq!(put(store, &a, b"first", None).await?, 1, "create of {a}");
    expect_conflict(
        "creating an existing record",
        store.put(&a, bytes(b"second"), None).await,
        None,
        Some(1),
    )?;
    expect_record(store, &a, 1, b"first").await?;
    ensure_eq!(
        put(store, &a, b"second", Some(1)).await?,
        2,
        "update of {a}"
    );
    expect_conflict(
        "writing at a stale version",
        store.put(&a, bytes(b"stale"), Some(1)).await,
        Some(1),
        Some(2),
    )?;
    expect_conflict(
        "writing at a future version",
        store.put(&a, bytes(b"future"), Some(3)).await,
        Some(3),
        Some(2),
    )?;
    expect_record(store, &a, 2, b"second").await?;

    let missing = id(&p, "cas", &key("missing")?);
    expect_conflict(
        "writing at a version to a missing record",
        store.put(&missing, bytes(b"x"), Some(1)).await,
        Some(1),
        None,
    )?;
    ensure!(
        get(store, &missing).await?.is_none(),
        "a refused write created {missing}"
    );

    expect_conflict(
        "deleting at a stale version",
        store.delete(&a, Some(1)).await,
        Some(1),
        Some(2),
    )?;
    expect_record(store, &a, 2, b"second").await?;
    ensure!(
        delete(store, &a, Some(2)).await?,
        "delete of {a} at its version deleted nothing"
    );
    expect_conflict(
        "writing at the version of a deleted record",
        store.put(&a, bytes(b"late"), Some(2)).await,
        Some(2),
        None,
    )?;
    ensure!(
        get(store, &a).await?.is_none(),
        "a refused write recreated {a}"
    );
    Ok(())
}

/// The same manager and key in several partitions (named, prefix-sharing, unpartitioned)
/// are separate records: get, list, delete and purge of one never see or touch another,
/// and neither does a manager whose name shares a prefix.
pub async fn partitions_isolate_get_list_delete_and_purge(
    store: Arc<dyn CheckpointStore>,
) -> CheckResult {
    let store = &*store;
    let alpha = partition("alpha")?;
    let alpha2 = partition("alpha2")?;
    let beta = partition("beta")?;
    let gamma = partition("gamma")?;
    let none = Partition::unpartitioned();
    let all = [&alpha, &alpha2, &beta, &none];
    let (k, shared) = (key("k")?, key("shared")?);
    let tag = |p: &Partition, m: &str, k: &Key| format!("{}|{m}|{k}", p.as_storage_str());

    for p in all {
        for (m, k) in [("iso", &k), ("iso", &shared), ("iso2", &k)] {
            ensure_eq!(
                put(store, &id(p, m, k), tag(p, m, k), None).await?,
                1,
                "create of {m}/{k} in {p}"
            );
        }
    }
    for p in all {
        for (m, k) in [("iso", &k), ("iso", &shared), ("iso2", &k)] {
            expect_record(store, &id(p, m, k), 1, tag(p, m, k).as_bytes()).await?;
        }
        ensure_eq!(
            list(store, p, "iso").await?,
            vec![(k.clone(), 1), (shared.clone(), 1)],
            "list of iso in {p}"
        );
        ensure_eq!(
            list(store, p, "iso2").await?,
            vec![(k.clone(), 1)],
            "list of iso2 in {p}"
        );
    }
    ensure_eq!(
        list(store, &gamma, "iso").await?,
        vec![],
        "list in an empty partition"
    );
    ensure_eq!(
        list(store, &alpha, "is").await?,
        vec![],
        "list of a manager whose name is a prefix of another"
    );

    // Delete in alpha: only alpha's record goes.
    ensure!(
        delete(store, &id(&alpha, "iso", &k), None).await?,
        "delete of iso/k in alpha deleted nothing"
    );
    ensure!(
        get(store, &id(&alpha, "iso", &k)).await?.is_none(),
        "iso/k in alpha survived its delete"
    );
    for p in [&alpha2, &beta, &none] {
        expect_record(store, &id(p, "iso", &k), 1, tag(p, "iso", &k).as_bytes()).await?;
    }
    ensure!(
        !delete(store, &id(&gamma, "iso", &k), None).await?,
        "a delete in an empty partition reported a deletion"
    );

    // Purge beta: all its managers, nothing else.
    ensure_eq!(purge(store, &beta).await?, 3, "records purged from beta");
    for m in ["iso", "iso2"] {
        ensure_eq!(
            list(store, &beta, m).await?,
            vec![],
            "list of {m} in purged beta"
        );
    }
    ensure!(
        get(store, &id(&beta, "iso", &shared)).await?.is_none(),
        "a record of beta survived its purge"
    );
    for p in [&alpha2, &none] {
        for (m, k) in [("iso", &k), ("iso", &shared), ("iso2", &k)] {
            expect_record(store, &id(p, m, k), 1, tag(p, m, k).as_bytes()).await?;
        }
    }
    ensure_eq!(
        list(store, &alpha, "iso").await?,
        vec![(shared.clone(), 1)],
        "list of iso in alpha after beta's purge"
    );
    ensure_eq!(
        purge(store, &gamma).await?,
        0,
        "records purged from an empty partition"
    );

    // Purge alpha: alpha2 (same prefix) and unpartitioned stay.
    ensure_eq!(purge(store, &alpha).await?, 2, "records purged from alpha");
    for p in [&alpha2, &none] {
        ensure_eq!(
            list(store, p, "iso").await?.len(),
            2,
            "records of iso in {p} after alpha's purge"
        );
    }

    // Purge unpartitioned: named partitions stay.
    ensure_eq!(
        purge(store, &none).await?,
        3,
        "records purged from the unpartitioned partition"
    );
    ensure_eq!(
        list(store, &none, "iso").await?,
        vec![],
        "list of iso unpartitioned after its purge"
    );
    for (m, k) in [("iso", &k), ("iso", &shared), ("iso2", &k)] {
        expect_record(store, &id(&alpha2, m, k), 1, tag(&alpha2, m, k).as_bytes()).await?;
    }
    Ok(())
}

/// States of several MiB are written, read back byte for byte, replaced and deleted, and
/// a small neighbour record is not disturbed.
pub async fn large_states_of_several_mib_round_trip(
    store: Arc<dyn CheckpointStore>,
) -> CheckResult {
    let store = &*store;
    let p = partition("big")?;
    let small = id(&p, "large", &key("small")?);
    put(store, &small, b"small", None).await?;
    let three = noise(3 << 20, 3);
    let six = noise((6 << 20) + 1, 6);
    let five = noise(5 << 20, 5);
    let a = id(&p, "large", &key("a")?);
    let b = id(&p, "large", &key("b")?);
    ensure_eq!(put(store, &a, &three, None).await?, 1, "put of 3 MiB");
    ensure_eq!(put(store, &b, &six, None).await?, 1, "put of 6 MiB");
    expect_record(store, &a, 1, &three).await?;
    expect_record(store, &b, 1, &six).await?;
    ensure_eq!(
        put(store, &a, &five, Some(1)).await?,
        2,
        "replace of 3 MiB by 5 MiB"
    );
    expect_record(store, &a, 2, &five).await?;
    expect_record(store, &b, 1, &six).await?;
    expect_record(store, &small, 1, b"small").await?;
    ensure_eq!(
        list(store, &p, "large").await?,
        vec![(key("a")?, 2), (key("b")?, 1), (key("small")?, 1)],
        "list of large states"
    );
    ensure!(
        delete(store, &b, Some(1)).await?,
        "delete of 6 MiB deleted nothing"
    );
    expect_record(store, &small, 1, b"small").await?;
    Ok(())
}

/// Thousands of keys written concurrently all land, and `list` returns them in key order
/// (byte order of the encoded key, not a locale's), with their versions.
pub async fn thousands_of_keys_list_in_key_order(store: Arc<dyn CheckpointStore>) -> CheckResult {
    let p = partition("many")?;
    let mut keys: Vec<Key> = (0..3000)
        .map(|i| key(&format!("k{:05}", (i * 7919) % 3000)))
        .collect::<Result<_, _>>()?;
    // Keys whose byte order differs from a dictionary order.
    for s in [
        "B", "a", "a-b", "ab", "a b", "Z", "z", "~", "é", "日本", "0", "a.b",
    ] {
        keys.push(key(s)?);
    }
    keys.push(Key::tuple(["x", "y"]).map_err(|e| e.to_string())?);
    keys.push(Key::tuple(["X"]).map_err(|e| e.to_string())?);

    for chunk in keys.chunks(500) {
        let writes = chunk.iter().map(|k| {
            let store = store.clone();
            let k = id(&p, "many", k);
            tokio::spawn(async move { put(&*store, &k, k.key.encoded(), None).await })
        });
        for result in futures::future::join_all(writes).await {
            let version = result.map_err(|e| format!("writer task failed: {e}"))??;
            ensure_eq!(version, 1, "version of a new key");
        }
    }
    let mut expected: Vec<(Key, u64)> = keys.iter().map(|k| (k.clone(), 1)).collect();
    expected.sort();
    let listed = list(&*store, &p, "many").await?;
    ensure_eq!(listed.len(), expected.len(), "number of keys listed");
    for (i, (got, want)) in listed.iter().zip(&expected).enumerate() {
        ensure_eq!(got, want, "listed key #{i}");
    }

    // Update every tenth key; the list shows the new versions, in the same order.
    for (k, v) in expected.iter_mut().step_by(10) {
        let at = id(&p, "many", k);
        *v = put(&*store, &at, b"updated", Some(1)).await?;
    }
    ensure_eq!(
        list(&*store, &p, "many").await?,
        expected,
        "list after updates"
    );
    for k in keys.iter().step_by(97) {
        let at = id(&p, "many", k);
        let record = get_some(&*store, &at).await?;
        ensure!(
            &*record.bytes == k.encoded().as_bytes() || &*record.bytes == b"updated",
            "bytes of {at} are another key's"
        );
    }
    Ok(())
}

/// Many writers racing at the same expected version on one key: exactly one wins each
/// version, every other gets `Conflict` naming the winner's version, and the stored bytes
/// are the winner's. Also for creators racing on a missing key.
pub async fn concurrent_writers_to_one_key_have_exactly_one_winner_per_version(
    store: Arc<dyn CheckpointStore>,
) -> CheckResult {
    const WRITERS: usize = 8;
    const ROUNDS: u64 = 25;
    let p = partition("race")?;
    let target = id(&p, "race", &key("contested")?);
    let mut last_winner = Vec::new();
    for round in 0..ROUNDS {
        let expected = (round > 0).then_some(round);
        let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let writers = (0..WRITERS).map(|w| {
            let store = store.clone();
            let target = target.clone();
            let barrier = barrier.clone();
            let payload = format!("writer {w} round {round}").into_bytes();
            tokio::spawn(async move {
                barrier.wait().await;
                let result = store.put(&target, bytes(&payload), expected).await;
                (payload, result)
            })
        });
        let mut winners = Vec::new();
        for joined in futures::future::join_all(writers).await {
            let (payload, result) = joined.map_err(|e| format!("writer task failed: {e}"))?;
            match result {
                Ok(version) => {
                    ensure_eq!(version, round + 1, "the winner's version in round {round}");
                    winners.push(payload);
                }
                Err(e) => expect_conflict(
                    &format!("a losing writer in round {round}"),
                    Err::<(), _>(e),
                    expected,
                    Some(round + 1),
                )?,
            }
        }
        ensure_eq!(winners.len(), 1, "number of winners in round {round}");
        last_winner = winners.swap_remove(0);
        expect_record(&*store, &target, round + 1, &last_winner).await?;
    }
    expect_record(&*store, &target, ROUNDS, &last_winner).await
}

/// A turn's commit applies its side writes (puts and deletes) together with its
/// checkpoint when the compare-and-set holds, and none of them when it does not; many
/// turns committed at once each get their own outcome.
pub async fn turn_commits_apply_side_writes_with_the_checkpoint_or_not_at_all(
    store: Arc<dyn CheckpointStore>,
) -> CheckResult {
    let p = partition("turns")?;
    let owner = id(&p, "agents", &key("a1")?);
    let side_a = id(&p, "storage/agents/a1", &key("a")?);
    let side_b = id(&p, "storage/agents/a1", &key("b")?);
    let commit = |expected, state: &str, side: Vec<SideWrite>| TurnCommit {
        key: owner.clone(),
        bytes: bytes(state),
        expected,
        side,
    };
    let write = |k: &StoreKey, v: Option<&str>| SideWrite {
        key: k.clone(),
        bytes: v.map(bytes),
    };
    let first = commit(
        None,
        "s1",
        vec![write(&side_a, Some("a1")), write(&side_b, Some("b1"))],
    );
    let v = store
        .commit(first)
        .await
        .map_err(|e| format!("first commit: {}", show(&e)))?;
    ensure_eq!(v, 1, "version after the first commit");
    expect_record(&*store, &owner, 1, b"s1").await?;
    expect_record(&*store, &side_a, 1, b"a1").await?;
    expect_record(&*store, &side_b, 1, b"b1").await?;

    // A stale turn: nothing of it lands.
    let stale = commit(
        None,
        "stale",
        vec![write(&side_a, Some("stale")), write(&side_b, None)],
    );
    expect_conflict("a stale turn", store.commit(stale).await, None, Some(1))?;
    expect_record(&*store, &owner, 1, b"s1").await?;
    expect_record(&*store, &side_a, 1, b"a1").await?;
    expect_record(&*store, &side_b, 1, b"b1").await?;

    // An update and a delete in one turn.
    let second = commit(
        Some(1),
        "s2",
        vec![write(&side_a, Some("a2")), write(&side_b, None)],
    );
    let v = store
        .commit(second)
        .await
        .map_err(|e| format!("second commit: {}", show(&e)))?;
    ensure_eq!(v, 2, "version after the second commit");
    expect_record(&*store, &owner, 2, b"s2").await?;
    expect_record(&*store, &side_a, 2, b"a2").await?;
    ensure!(
        get(&*store, &side_b).await?.is_none(),
        "a side record deleted by a committed turn is still there"
    );

    // Many owners at once, half of them stale: each gets its own outcome.
    let owners: Vec<StoreKey> = (0..32)
        .map(|i| key(&format!("o{i}")).map(|k| id(&p, "agents", &k)))
        .collect::<Result<_, _>>()?;
    for o in owners.iter().step_by(2) {
        store
            .put(o, bytes("seed"), None)
            .await
            .map_err(|e| format!("seed {o}: {}", show(&e)))?;
    }
    let turns = owners.iter().enumerate().map(|(i, o)| {
        let store = store.clone();
        let side = id(&p, &format!("storage/agents/o{i}"), &o.key);
        let turn = TurnCommit {
            key: o.clone(),
            bytes: bytes(format!("turn {i}")),
            // Every owner is committed as new: the seeded (even) ones lose.
            expected: None,
            side: vec![SideWrite {
                key: side.clone(),
                bytes: Some(bytes(format!("side {i}"))),
            }],
        };
        async move { (i, side, store.commit(turn).await) }
    });
    for (i, side, result) in futures::future::join_all(turns).await {
        let landed = get(&*store, &side).await?.is_some();
        if i % 2 == 0 {
            expect_conflict(&format!("stale turn {i}"), result, None, Some(1))?;
            ensure!(!landed, "the side write of stale turn {i} landed");
        } else {
            ensure_eq!(
                result.map_err(|e| show(&e))?,
                1,
                "version of fresh turn {i}"
            );
            ensure!(landed, "the side write of committed turn {i} is missing");
        }
    }
    Ok(())
}

/// A partition's usage (bytes and records) follows every put, overwrite, side write,
/// delete and purge of its own records, ignores refused writes, and never moves with
/// another partition's. A store that keeps no usage (`usage` is `None`) passes.
pub async fn usage_follows_every_write_of_its_partition_and_no_other(
    store: Arc<dyn CheckpointStore>,
) -> CheckResult {
    let (p, q) = (partition("metered")?, partition("neighbour")?);
    let usage = |p: Partition| {
        let store = store.clone();
        async move {
            store
                .usage(&p)
                .await
                .map_err(|e| format!("usage of {p}: {}", show(&e)))
        }
    };
    if usage(p.clone()).await?.is_none() {
        return Ok(());
    }
    let expect = |bytes, records, what: &'static str| {
        let p = p.clone();
        async move {
            ensure_eq!(
                usage(p).await?,
                Some(StoreUsage { bytes, records }),
                "usage after {what}"
            );
            Ok::<(), String>(())
        }
    };
    expect(0, 0, "nothing").await?;
    let (a, b, c) = (
        id(&p, "agents", &key("a")?),
        id(&p, "agents", &key("b")?),
        id(&p, "agents", &key("c")?),
    );
    let side = id(&p, "storage/agents/c", &key("s")?);
    put(&*store, &a, b"0123456789", None).await?;
    expect(10, 1, "a first put").await?;
    put(&*store, &a, b"0123", Some(1)).await?;
    expect(4, 1, "an overwrite that shrinks").await?;
    put(&*store, &b, b"bbbbbb", None).await?;
    expect(10, 2, "a second record").await?;
    let turn = |expected, side_bytes: Option<&str>| TurnCommit {
        key: c.clone(),
        bytes: bytes("ccc"),
        expected,
        side: vec![
            SideWrite {
                key: side.clone(),
                bytes: side_bytes.map(bytes),
            },
            SideWrite {
                key: b.clone(),
                bytes: None,
            },
        ],
    };
    store
        .commit(turn(None, Some("sssss")))
        .await
        .map_err(|e| format!("turn: {}", show(&e)))?;
    expect(12, 3, "a turn with a side put and a side delete").await?;
    ensure!(
        store.commit(turn(None, Some("x"))).await.is_err(),
        "a stale turn was committed"
    );
    ensure!(
        store
            .put(&a, bytes("far too many bytes"), Some(7))
            .await
            .is_err(),
        "a put with a wrong version landed"
    );
    expect(12, 3, "refused writes").await?;
    let other = id(&q, "agents", &key("a")?);
    put(&*store, &other, &[7u8; 100], None).await?;
    expect(12, 3, "another partition's put").await?;
    ensure!(
        store
            .delete(&a, None)
            .await
            .map_err(|e| format!("delete: {}", show(&e)))?,
        "the delete found nothing"
    );
    expect(8, 2, "a delete").await?;
    store
        .purge_partition(&p)
        .await
        .map_err(|e| format!("purge: {}", show(&e)))?;
    expect(0, 0, "a purge").await?;
    ensure_eq!(
        usage(q).await?,
        Some(StoreUsage {
            bytes: 100,
            records: 1
        }),
        "the neighbour's usage after the purge"
    );
    Ok(())
}

/// Structured (tuple) keys, nested and with quotes, commas and non-ASCII text, are
/// distinct from look-alike string keys, round trip, and list back equal to the originals.
pub async fn structured_keys_round_trip_and_list_back_equal(
    store: Arc<dyn CheckpointStore>,
) -> CheckResult {
    let store = &*store;
    let p = partition("tuples")?;
    let tuple = |parts: Vec<KeyPart>| Key::tuple(parts).map_err(|e| e.to_string());
    let s = |x: &str| KeyPart::Str(x.to_owned());
    let keys = vec![
        tuple(vec![s("pod"), s("p1"), s("node")])?,
        tuple(vec![s("a"), KeyPart::Tuple(vec![s("b"), s("c")])])?,
        tuple(vec![s("he said \"hi\""), s("back\\slash"), s("a,b")])?,
        tuple(vec![s("ü"), s("日本")])?,
        tuple(vec![s("a")])?,
        tuple(vec![s("a"), s("b")])?,
        key("a")?,
        key("a,b")?,
        key("\"a\"")?,
    ];
    for (i, k) in keys.iter().enumerate() {
        ensure_eq!(
            put(store, &id(&p, "tuples", k), format!("#{i}"), None).await?,
            1,
            "create of {k}"
        );
    }
    for (i, k) in keys.iter().enumerate() {
        expect_record(store, &id(&p, "tuples", k), 1, format!("#{i}").as_bytes()).await?;
    }
    let mut expected: Vec<(Key, u64)> = keys.iter().map(|k| (k.clone(), 1)).collect();
    expected.sort();
    let listed = list(store, &p, "tuples").await?;
    ensure_eq!(listed, expected, "listed structured keys");
    for ((got, _), (want, _)) in listed.iter().zip(&expected) {
        ensure_eq!(got.parts(), want.parts(), "parts of listed key {want}");
        ensure_eq!(got.is_tuple(), want.is_tuple(), "kind of listed key {want}");
    }
    Ok(())
}

/// The state of the probe factory used by the thaw check.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Probe {
    value: u64,
}

/// Reads a probe's value.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
struct ReadValue;

impl Message for ReadValue {
    const NAME: &'static str = "read_value";
    type Reply = u64;
}

impl Factory for Probe {
    const NAME: &'static str = "conformance_probe";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<ReadValue>();
    }
}

impl Handler<ReadValue> for Probe {
    async fn handle(&mut self, _: ReadValue, _: &mut Context) -> Result<u64, HandlerError> {
        Ok(self.value)
    }
}

fn probe_checkpoint(
    factory: &str,
    p: &Partition,
    k: &Key,
    state: serde_json::Value,
) -> Result<Vec<u8>, String> {
    checkpoint::encode(
        CheckpointIdentity {
            factory,
            state_version: Probe::STATE_VERSION,
            partition: p,
            key: k,
        },
        &state,
    )
    .map_err(|e| format!("encoding a test checkpoint: {e}"))
}

/// Foreign or damaged bytes put in the store (garbage, empty, invalid UTF-8, truncated,
/// an unknown format, another factory's, partition's or key's checkpoint, a state of the
/// wrong shape) fail a `get` through a runtime manager with `Error::ThawFailed`: nothing
/// starts and the stored bytes stay as they were. A valid checkpoint put the same way
/// thaws, and the runtime's own hibernation then advances its version.
pub async fn corrupt_or_foreign_bytes_fail_the_thaw_without_panics(
    store: Arc<dyn CheckpointStore>,
) -> CheckResult {
    let p = partition("alpha")?;
    let manager = "probes";
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"definitely not a checkpoint".to_vec()),
        ("empty", Vec::new()),
        ("binary", (0..=255u8).rev().cycle().take(4096).collect()),
        ("bad_format", b"TNCP\x09{}".to_vec()),
        ("magic_only", b"TNCP".to_vec()),
    ];
    let good = |k: &str, value: u64| -> Result<Vec<u8>, String> {
        probe_checkpoint(
            Probe::NAME,
            &p,
            &key(k)?,
            serde_json::json!({ "value": value }),
        )
    };
    let mut truncated = good("truncated", 1)?;
    truncated.truncate(truncated.len() - 3);
    cases.push(("truncated", truncated));
    cases.push((
        "foreign_factory",
        probe_checkpoint(
            "some_other_factory",
            &p,
            &key("foreign_factory")?,
            serde_json::json!({ "value": 1 }),
        )?,
    ));
    cases.push((
        "foreign_partition",
        probe_checkpoint(
            Probe::NAME,
            &partition("beta")?,
            &key("foreign_partition")?,
            serde_json::json!({ "value": 1 }),
        )?,
    ));
    cases.push((
        "foreign_key",
        probe_checkpoint(
            Probe::NAME,
            &p,
            &key("someone_else")?,
            serde_json::json!({ "value": 1 }),
        )?,
    ));
    cases.push((
        "wrong_shape",
        probe_checkpoint(
            Probe::NAME,
            &p,
            &key("wrong_shape")?,
            serde_json::json!({ "value": "many" }),
        )?,
    ));
    for (k, b) in &cases {
        put(&*store, &id(&p, manager, &key(k)?), b, None).await?;
    }
    put(
        &*store,
        &id(&p, manager, &key("good")?),
        good("good", 41)?,
        None,
    )
    .await?;

    let rt = Runtime::builder().store_arc(store.clone()).build();
    let result = thaw_cases(&rt, &*store, &p, manager, &cases).await;
    rt.shutdown().await;
    result?;
    expect_record(
        &*store,
        &id(&p, manager, &key("good")?),
        2,
        &good("good", 41)?,
    )
    .await
    .map_err(|e| format!("after the good probe's hibernation: {e}"))
}

async fn thaw_cases(
    rt: &Runtime,
    store: &dyn CheckpointStore,
    p: &Partition,
    manager: &str,
    cases: &[(&str, Vec<u8>)],
) -> CheckResult {
    let probes = rt
        .register::<Probe>(manager, ManagerConfig::default())
        .map_err(|e| format!("registering the probe manager: {e}"))?;
    for (k, b) in cases {
        let at = id(p, manager, &key(k)?);
        match probes.get(*k, p).await {
            Err(Error::ThawFailed { identity, cause }) => {
                ensure_eq!(identity, at, "identity named by the failed thaw of {k}");
                if *k == "foreign_factory" {
                    ensure!(
                        matches!(cause, CheckpointError::FactoryMismatch { .. }),
                        "{k}: cause {cause:?}"
                    );
                }
            }
            Err(other) => return Err(format!("get of {k}: expected ThawFailed, got {other:?}")),
            Ok(_) => return Err(format!("get of {k}: the foreign bytes thawed into a probe")),
        }
        let live = probes
            .lookup(*k, p)
            .map_err(|e| format!("lookup of {k}: {e}"))?;
        ensure!(live.is_none(), "{k}: a probe is live after a failed thaw");
        expect_record(store, &at, 1, b)
            .await
            .map_err(|e| format!("after the failed thaw of {k}: {e}"))?;
    }
    ensure_eq!(
        probes.stats(p).count,
        0,
        "live probes after the failed thaws"
    );
    let good = probes
        .get("good", p)
        .await
        .map_err(|e| format!("get of a valid checkpoint: {e}"))?;
    let value = good
        .call(ReadValue)
        .await
        .map_err(|e| format!("call to the thawed probe: {e}"))?;
    ensure_eq!(value, 41, "value of the thawed probe");
    probes
        .stop("good", p)
        .await
        .map_err(|e| format!("hibernation of the thawed probe: {e}"))
}

/// The NATS (with JetStream) and PostgreSQL servers of the cluster tests, from
/// `TENANTRY_TEST_NATS_URL` and `TENANTRY_TEST_POSTGRES_URL`; `None`, after saying
/// plainly that the test is skipped, unless both are set.
pub fn cluster_services() -> Option<(String, String)> {
    match (
        std::env::var("TENANTRY_TEST_NATS_URL"),
        std::env::var("TENANTRY_TEST_POSTGRES_URL"),
    ) {
        (Ok(nats), Ok(pg)) => Some((nats, pg)),
        _ => {
            eprintln!(
                "skipped: TENANTRY_TEST_NATS_URL and TENANTRY_TEST_POSTGRES_URL are not both set"
            );
            None
        }
    }
}

/// A random number below `n` (at least 1), for random moments and names; std's hasher
/// keys are random, so no extra dependency.
pub fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % n.max(1)
}

/// Helpers for crash-safety tests: a child process runs [`crash::hibernate_until_killed`]
/// (or [`crash::turns_until_killed`]) and prints one acknowledgement line per durable
/// hibernation (or per acknowledged durable turn); the parent kills it with SIGKILL,
/// collects the lines with [`crash::parse_ack`], reopens the store and runs
/// [`crash::verify_acknowledged`] (or [`crash::verify_durable_turns`]). Spawning and
/// killing the process is the test's part.
pub mod crash {
    use super::{CheckResult, id, partition};
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use tenantry::store::CheckpointStore;
    use tenantry::{
        Context, Durability, Factory, Handler, HandlerError, Handlers, Identity, Key,
        ManagerConfig, Message, Runtime,
    };

    /// The partition the crash writer hibernates into.
    pub const PARTITION: &str = "crash";
    /// The manager the crash writer hibernates through.
    pub const MANAGER: &str = "crash";

    /// A counter whose state carries a payload derived from its key, so that a torn or
    /// mixed-up record shows.
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    struct Crashy {
        count: u64,
        payload: String,
    }

    fn payload_for(key: &str) -> String {
        key.repeat(1024 / key.len().max(1) + 1)
    }

    /// Adds one to the count (and fills the payload on first use); replies the count.
    /// With `stored`, the turn also writes the new count to the instance's storage.
    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    struct Bump {
        key: String,
        #[serde(default)]
        stored: bool,
    }

    /// The storage key a stored bump writes.
    const STORED_COUNT: &str = "count";
    impl Message for Bump {
        const NAME: &'static str = "bump";
        type Reply = u64;
    }

    /// Replies the count, and whether the payload is the one of `key`.
    #[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
    struct Inspect {
        key: String,
    }
    impl Message for Inspect {
        const NAME: &'static str = "inspect";
        /// The count, whether the payload is the key's, the count in storage.
        type Reply = (u64, bool, Option<u64>);
    }

    impl Factory for Crashy {
        const NAME: &'static str = "crash_counter";
        fn fresh(_: &Identity) -> Self {
            Self::default()
        }
        fn handlers(h: &mut Handlers<Self>) {
            h.add::<Bump>().add::<Inspect>();
        }
    }

    impl Handler<Bump> for Crashy {
        async fn handle(&mut self, m: Bump, ctx: &mut Context) -> Result<u64, HandlerError> {
            if self.payload.is_empty() {
                self.payload = payload_for(&m.key);
            }
            self.count += 1;
            if m.stored {
                ctx.storage()
                    .map_err(|e| HandlerError::new(e.to_string()))?
                    .put(STORED_COUNT, self.count.to_string())
                    .await
                    .map_err(|e| HandlerError::new(e.to_string()))?;
            }
            Ok(self.count)
        }
    }

    impl Handler<Inspect> for Crashy {
        async fn handle(
            &mut self,
            m: Inspect,
            ctx: &mut Context,
        ) -> Result<(u64, bool, Option<u64>), HandlerError> {
            let stored = ctx
                .storage()
                .map_err(|e| HandlerError::new(e.to_string()))?
                .get(STORED_COUNT)
                .await
                .map_err(|e| HandlerError::new(e.to_string()))?
                .and_then(|b| String::from_utf8(b).ok()?.parse().ok());
            Ok((self.count, self.payload == payload_for(&m.key), stored))
        }
    }

    /// Runs this test binary again as the crash writer (only the ignored test
    /// `child_test`, with `env` set), lets it acknowledge hibernations for a random
    /// while, kills it with SIGKILL, and returns the highest acknowledged count per key.
    /// A line cut short by the kill acknowledges nothing.
    pub fn run_child_and_kill(
        child_test: &str,
        env: (&str, &str),
    ) -> Result<BTreeMap<String, u64>, String> {
        use std::io::{BufRead, BufReader, Read};
        use std::process::{Command, Stdio};
        use std::time::Duration;

        let exe = std::env::current_exe().map_err(|e| format!("test binary path: {e}"))?;
        let mut child = Command::new(exe)
            .args([
                child_test,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(env.0, env.1)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the crash writer: {e}"))?;
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err("the crash writer has no pipes".into());
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acked: BTreeMap<String, u64> = BTreeMap::new();
            let mut lines = BufReader::new(stdout);
            let mut line = Vec::new();
            while lines.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.ends_with(b"\n") {
                    if let Some((key, count)) = parse_ack(&String::from_utf8_lossy(&line)) {
                        let slot = acked.entry(key).or_default();
                        *slot = (*slot).max(count);
                        let _ = tx.send(());
                    }
                }
                line.clear();
            }
            acked
        });
        let mut stderr_text = || {
            let mut err = String::new();
            let _ = stderr.read_to_string(&mut err);
            err
        };
        // Wait for the first acknowledgement, then let it run for a random while.
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the crash writer acknowledged nothing within 20 s; stderr:\n{}",
                stderr_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(100 + super::random_below(900)));
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the crash writer exited by itself ({status}); stderr:\n{}",
                stderr_text()
            ));
        }
        child
            .kill()
            .map_err(|e| format!("SIGKILL the crash writer: {e}"))?;
        let _ = child.wait();
        reader
            .join()
            .map_err(|_| "the stdout reader panicked".to_string())
    }

    /// Folds one round's acknowledgements into the running maximum per key.
    pub fn merge_acks(into: &mut BTreeMap<String, u64>, round: BTreeMap<String, u64>) {
        for (key, count) in round {
            let slot = into.entry(key).or_default();
            *slot = (*slot).max(count);
        }
    }

    /// Hibernates instances into `store` as fast as it can, forever: `writers` tasks, each
    /// cycling over `keys_per_writer` keys of its own (thaw, bump, stop). After each
    /// hibernation the store acknowledged it writes `ack <key> <count>` to `out` and
    /// flushes. Returns only on a failure, which it describes.
    pub async fn hibernate_until_killed<W: Write + Send + 'static>(
        store: Arc<dyn CheckpointStore>,
        out: W,
        writers: usize,
        keys_per_writer: usize,
    ) -> CheckResult {
        until_killed(store, out, writers, keys_per_writer, false).await
    }

    /// Runs durable turns against `store` as fast as it can, forever: an `EveryTurn`
    /// manager, `writers` tasks, each bumping `keys_per_writer` keys of its own in turn;
    /// each bump also writes the new count to the instance's storage in the same turn.
    /// Instances are never stopped, so nothing reaches the store but the turns' commits.
    /// After each acknowledged bump it writes `ack <key> <count>` to `out` and flushes.
    /// Returns only on a failure, which it describes.
    pub async fn turns_until_killed<W: Write + Send + 'static>(
        store: Arc<dyn CheckpointStore>,
        out: W,
        writers: usize,
        keys_per_writer: usize,
    ) -> CheckResult {
        until_killed(store, out, writers, keys_per_writer, true).await
    }

    /// The body of both writers: bump (storing the count, for `turns`) and hibernate (not
    /// for `turns`), acknowledge, forever.
    async fn until_killed<W: Write + Send + 'static>(
        store: Arc<dyn CheckpointStore>,
        out: W,
        writers: usize,
        keys_per_writer: usize,
        turns: bool,
    ) -> CheckResult {
        let rt = Runtime::builder().store_arc(store).build();
        let durability = if turns {
            Durability::EveryTurn
        } else {
            Durability::OnHibernate
        };
        let m = rt
            .register::<Crashy>(MANAGER, ManagerConfig::default().durability(durability))
            .map_err(|e| format!("register: {e}"))?;
        let p = partition(PARTITION)?;
        let out = Arc::new(Mutex::new(out));
        let tasks = (0..writers.max(1)).map(|w| {
            let (m, p, out) = (m.clone(), p.clone(), out.clone());
            tokio::spawn(async move {
                let keys: Vec<String> = (0..keys_per_writer.max(1))
                    .map(|i| format!("w{w}-k{i}"))
                    .collect();
                loop {
                    for key in &keys {
                        let h = m
                            .get(key.as_str(), &p)
                            .await
                            .map_err(|e| format!("get {key}: {e}"))?;
                        let bump = Bump {
                            key: key.clone(),
                            stored: turns,
                        };
                        let count = h.call(bump).await.map_err(|e| format!("bump {key}: {e}"))?;
                        if !turns {
                            m.stop(key.as_str(), &p)
                                .await
                                .map_err(|e| format!("hibernate {key}: {e}"))?;
                        }
                        let mut out = out.lock().map_err(|_| "output lock poisoned".to_owned())?;
                        writeln!(out, "ack {key} {count}")
                            .and_then(|()| out.flush())
                            .map_err(|e| format!("write ack: {e}"))?;
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), String>(())
            })
        });
        let results = futures::future::join_all(tasks).await;
        for r in results {
            r.map_err(|e| format!("writer task: {e}"))??;
        }
        Err("the writers stopped".into())
    }

    /// The body of a crash-writer child process: runs `writer` on a 2-worker runtime and
    /// exits with status 3 (after printing why) if it fails.
    pub fn child_main(writer: impl Future<Output = CheckResult>) {
        let result = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))
            .and_then(|rt| rt.block_on(writer));
        if let Err(e) = result {
            eprintln!("crash writer failed: {e}");
            std::process::exit(3);
        }
    }

    /// Parses one acknowledgement line (`ack <key> <count>`); other lines give `None`.
    pub fn parse_ack(line: &str) -> Option<(String, u64)> {
        let mut parts = line.trim_end().split(' ');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("ack"), Some(key), Some(count), None) => {
                Some((key.to_owned(), count.parse().ok()?))
            }
            _ => None,
        }
    }

    /// Checks that every acknowledged hibernation survived: each key's record is there,
    /// thaws through a runtime, holds at least the acknowledged count and its own payload,
    /// and has a version at least its count (one write per bump, more after earlier
    /// verifications). Every other record of the partition must thaw too. The thawed
    /// instances are hibernated again before this returns.
    pub async fn verify_acknowledged(
        store: Arc<dyn CheckpointStore>,
        acknowledged: &BTreeMap<String, u64>,
    ) -> CheckResult {
        verify(store, acknowledged, false).await
    }

    /// Checks what [`turns_until_killed`] left: as [`verify_acknowledged`], and each
    /// instance's stored count (written in the same turns) equals its state's count, so
    /// no turn landed half. Several turns may share a commit, so versions are not checked
    /// against counts.
    pub async fn verify_durable_turns(
        store: Arc<dyn CheckpointStore>,
        acknowledged: &BTreeMap<String, u64>,
    ) -> CheckResult {
        verify(store, acknowledged, true).await
    }

    async fn verify(
        store: Arc<dyn CheckpointStore>,
        acknowledged: &BTreeMap<String, u64>,
        durable_turns: bool,
    ) -> CheckResult {
        let rt = Runtime::builder().store_arc(store.clone()).build();
        let result = verify_with(&rt, &*store, acknowledged, durable_turns).await;
        let report = rt.shutdown().await;
        result?;
        match report.errors.first() {
            Some(e) => Err(format!("hibernating the verified instances: {e}")),
            None => Ok(()),
        }
    }

    async fn verify_with(
        rt: &Runtime,
        store: &dyn CheckpointStore,
        acknowledged: &BTreeMap<String, u64>,
        durable_turns: bool,
    ) -> CheckResult {
        let m = rt
            .register::<Crashy>(MANAGER, ManagerConfig::default())
            .map_err(|e| format!("register: {e}"))?;
        let p = partition(PARTITION)?;
        let listed = store
            .list(&p, MANAGER)
            .await
            .map_err(|e| format!("list after the crash: {e}"))?;
        let listed: BTreeMap<Key, u64> = listed.into_iter().collect();
        for (key, &acked) in acknowledged {
            let k = Key::new(key).map_err(|e| format!("acknowledged key {key:?}: {e}"))?;
            if !listed.contains_key(&k) {
                return Err(format!(
                    "{key} was acknowledged at count {acked} but is not in the store"
                ));
            }
        }
        for (k, &version) in &listed {
            let key = k.encoded().to_owned();
            let at = id(&p, MANAGER, k);
            let record = store
                .get(&at)
                .await
                .map_err(|e| format!("get {key}: {e}"))?
                .ok_or_else(|| format!("{key} is listed but has no record"))?;
            if record.version != version {
                return Err(format!(
                    "{key}: listed at version {version}, read at {}",
                    record.version
                ));
            }
            let h = m
                .get(k, &p)
                .await
                .map_err(|e| format!("thaw of {key} after the crash: {e}"))?;
            let (count, payload_ok, stored) = h
                .call(Inspect { key: key.clone() })
                .await
                .map_err(|e| format!("inspect {key}: {e}"))?;
            let acked = acknowledged.get(&key).copied().unwrap_or(0);
            if count < acked {
                return Err(format!(
                    "{key}: the store holds count {count}, but count {acked} was acknowledged"
                ));
            }
            if !payload_ok {
                return Err(format!("{key}: the payload is not the one written"));
            }
            if durable_turns {
                if stored != Some(count) {
                    return Err(format!(
                        "{key}: the state holds count {count} but its storage {stored:?}: \
                         a turn landed half"
                    ));
                }
            } else if version < count {
                return Err(format!(
                    "{key}: version {version} is below its count {count}"
                ));
            }
        }
        Ok(())
    }
}

/// A memory store that can be switched off, to play a database that is down: while down,
/// every operation fails with [`StoreError::Unavailable`] and changes nothing. Its commits
/// can also be made to take a while ([`OutageStore::with_commit_delay`]), as they do on
/// a real database, so letters run while a commit is in flight.
#[derive(Clone, Default)]
pub struct OutageStore {
    inner: tenantry::store::MemoryStore,
    down: Arc<std::sync::atomic::AtomicBool>,
    commit_delay: std::time::Duration,
}

impl OutageStore {
    /// A store that is up.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that is up and takes `delay` over every commit (and put).
    pub fn with_commit_delay(delay: std::time::Duration) -> Self {
        Self {
            commit_delay: delay,
            ..Self::default()
        }
    }

    /// Takes the store down (`true`) or brings it back (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError::Unavailable("the store is switched off".into()))
        } else {
            Ok(())
        }
    }
}

impl CheckpointStore for OutageStore {
    fn kind(&self) -> &'static str {
        "outage"
    }

    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.get(key).await
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        bytes: Arc<[u8]>,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.commit(TurnCommit::checkpoint(key.clone(), bytes, expected))
    }

    fn commit<'a>(&'a self, turn: TurnCommit) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            if !self.commit_delay.is_zero() {
                tokio::time::sleep(self.commit_delay).await;
            }
            self.check()?;
            self.inner.commit(turn).await
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.delete(key, expected).await
        })
    }

    fn list<'a>(
        &'a self,
        partition: &'a Partition,
        manager: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(Key, u64)>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.list(partition, manager).await
        })
    }

    fn purge_partition<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.purge_partition(partition).await
        })
    }

    fn usage<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<Option<StoreUsage>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.usage(partition).await
        })
    }
}
