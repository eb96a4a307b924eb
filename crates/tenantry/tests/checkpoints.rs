//! Hibernate and thaw on both backends, every thaw failure mode, and a store that is down.

mod common;

use common::*;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tenantry::checkpoint::{self, CheckpointError, CheckpointIdentity};
use tenantry::schemars::JsonSchema;
use tenantry::store::{CheckpointStore, MemoryStore, Record, RedbStore, StoreError, StoreKey};
use tenantry::telemetry::EventKind;
use tenantry::{
    Context, Error, Factory, Handler, HandlerError, Handlers, Identity, Key, ManagerConfig,
    Message, Partition, Runtime,
};
use tenantry_testing::OutageStore;

#[tokio::test]
async fn hibernate_and_thaw_round_trip_in_memory() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let h = m.get("a", &alpha).await.unwrap();
    h.call(Increment { by: 7 }).await.unwrap();
    m.stop("a", &alpha).await.unwrap();
    assert_eq!(h.call(Get).await.unwrap_err(), tenantry::CallError::Stopped);
    let h = m.get("a", &alpha).await.unwrap();
    assert_eq!(h.call(Get).await.unwrap(), 7);
    h.call(Increment { by: 1 }).await.unwrap();
    m.stop("a", &alpha).await.unwrap();
    let record = rt.store().get(h.identity()).await.unwrap().unwrap();
    assert_eq!(
        record.version, 2,
        "every hibernation advances the version by one"
    );
}

#[tokio::test]
async fn lifecycle_hooks_run_on_start_thaw_and_stop() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    assert_eq!(
        m.get("a", &alpha).await.unwrap().call(Label).await.unwrap(),
        "started"
    );
    m.stop("a", &alpha).await.unwrap();
    assert_eq!(
        m.get("a", &alpha).await.unwrap().call(Label).await.unwrap(),
        "started,stopped,thawed",
        "on_stop ran before the checkpoint, on_thaw after the thaw"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernate_and_thaw_round_trip_on_redb_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("checkpoints.redb");
    let alpha = p("alpha");
    let beta = p("beta");
    {
        let rt = Runtime::new(RedbStore::open(&path).unwrap());
        let m = rt
            .register::<Counter>("counters", ManagerConfig::default())
            .unwrap();
        m.get("a", &alpha)
            .await
            .unwrap()
            .call(Increment { by: 3 })
            .await
            .unwrap();
        m.get("a", &beta)
            .await
            .unwrap()
            .call(Increment { by: 30 })
            .await
            .unwrap();
        assert_eq!(rt.shutdown().await.stopped, 2);
    }
    {
        let rt = Runtime::new(RedbStore::open(&path).unwrap());
        let m = rt
            .register::<Counter>("counters", ManagerConfig::default())
            .unwrap();
        let a = m.get("a", &alpha).await.unwrap();
        assert_eq!(a.call(Increment { by: 1 }).await.unwrap(), 4);
        assert_eq!(
            m.get("a", &beta).await.unwrap().call(Get).await.unwrap(),
            30
        );
        rt.shutdown().await;
    }
    let store = RedbStore::open(&path).unwrap();
    let id = Identity::new(alpha.clone(), "counters", Key::new("a").unwrap());
    assert_eq!(store.get(&id).await.unwrap().unwrap().version, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_hibernations_to_redb_are_all_acknowledged_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.redb");
    {
        let rt = Runtime::new(RedbStore::open(&path).unwrap());
        let m = rt
            .register::<Counter>("counters", ManagerConfig::default())
            .unwrap();
        let alpha = p("alpha");
        for i in 0..500 {
            m.get(format!("k{i}"), &alpha)
                .await
                .unwrap()
                .tell(Increment { by: i })
                .unwrap();
        }
        let report = rt.shutdown().await;
        assert_eq!(report.stopped, 500);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }
    let store = RedbStore::open(&path).unwrap();
    let listed = store.list(&p("alpha"), "counters").await.unwrap();
    assert_eq!(listed.len(), 500);
    let rt = Runtime::new(store);
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    assert_eq!(
        m.get("k499", &p("alpha"))
            .await
            .unwrap()
            .call(Get)
            .await
            .unwrap(),
        499
    );
}

/// Puts raw bytes where alpha's `a` checkpoint lives and checks the thaw is refused
/// cleanly: typed cause, nothing started, nothing registered, bytes untouched.
async fn assert_thaw_refused(bytes: Vec<u8>, check: impl Fn(&CheckpointError) -> bool) {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let id = Identity::new(alpha.clone(), "counters", Key::new("a").unwrap());
    rt.store()
        .put(&id, bytes.clone().into(), None)
        .await
        .unwrap();
    let mut events = rt.subscribe();
    let err = m.get("a", &alpha).await.unwrap_err();
    match &err {
        Error::ThawFailed { identity, cause } => {
            assert_eq!(identity, &id);
            assert!(check(cause), "unexpected cause: {cause:?}");
        }
        other => panic!("expected ThawFailed, got {other:?}"),
    }
    assert!(m.lookup("a", &alpha).unwrap().is_none());
    assert_eq!(m.stats(&alpha).count, 0);
    let mut saw_thaw_failed = false;
    while let Some(Ok(e)) = events.try_recv() {
        match e.kind {
            EventKind::ThawFailed { .. } => saw_thaw_failed = true,
            EventKind::Started | EventKind::Thawed { .. } => panic!("something started: {e:?}"),
            _ => {}
        }
    }
    assert!(saw_thaw_failed, "a ThawFailed event names the failure");
    let after = rt.store().get(&id).await.unwrap().unwrap();
    assert_eq!(&*after.bytes, bytes.as_slice(), "stored bytes untouched");
    assert_eq!(after.version, 1);
    // The message names the cause.
    assert!(
        err.to_string()
            .contains("thaw of counters/a in alpha failed")
    );
}

fn encode_as(
    factory: &str,
    state_version: u32,
    partition: &Partition,
    key: &str,
    state: serde_json::Value,
) -> Vec<u8> {
    checkpoint::encode(
        CheckpointIdentity {
            factory,
            state_version,
            partition,
            key: &Key::new(key).unwrap(),
        },
        &state,
    )
    .unwrap()
}

#[tokio::test]
async fn corrupt_bytes_fail_the_thaw() {
    assert_thaw_refused(
        b"definitely not a checkpoint".to_vec(),
        |c| matches!(c, CheckpointError::Corrupt(m) if m.contains("magic")),
    )
    .await;
    let mut truncated = encode_as(
        "counter",
        1,
        &p("alpha"),
        "a",
        serde_json::json!({"count": 1, "label": ""}),
    );
    truncated.truncate(truncated.len() - 3);
    assert_thaw_refused(truncated, |c| matches!(c, CheckpointError::Corrupt(_))).await;
}

#[tokio::test]
async fn an_unknown_format_fails_the_thaw() {
    let mut bytes = b"TNCP".to_vec();
    bytes.push(9);
    bytes.extend_from_slice(b"{}");
    assert_thaw_refused(bytes, |c| {
        matches!(c, CheckpointError::UnknownFormat { found: 9 })
    })
    .await;
}

#[tokio::test]
async fn another_factorys_checkpoint_fails_the_thaw() {
    let bytes = encode_as(
        "invoice",
        1,
        &p("alpha"),
        "a",
        serde_json::json!({"count": 1, "label": ""}),
    );
    assert_thaw_refused(
        bytes,
        |c| matches!(c, CheckpointError::FactoryMismatch { found, .. } if found == "invoice"),
    )
    .await;
}

#[tokio::test]
async fn another_partitions_checkpoint_fails_the_thaw() {
    let bytes = encode_as(
        "counter",
        1,
        &p("beta"),
        "a",
        serde_json::json!({"count": 1, "label": ""}),
    );
    assert_thaw_refused(bytes, |c| {
        matches!(c, CheckpointError::PartitionMismatch { .. })
    })
    .await;
    let unpartitioned = encode_as(
        "counter",
        1,
        &Partition::unpartitioned(),
        "a",
        serde_json::json!({"count": 1, "label": ""}),
    );
    assert_thaw_refused(unpartitioned, |c| {
        matches!(c, CheckpointError::PartitionMismatch { .. })
    })
    .await;
}

#[tokio::test]
async fn another_keys_checkpoint_fails_the_thaw() {
    let bytes = encode_as(
        "counter",
        1,
        &p("alpha"),
        "b",
        serde_json::json!({"count": 1, "label": ""}),
    );
    assert_thaw_refused(bytes, |c| matches!(c, CheckpointError::KeyMismatch { .. })).await;
}

#[tokio::test]
async fn a_newer_state_version_fails_the_thaw() {
    let bytes = encode_as(
        "counter",
        7,
        &p("alpha"),
        "a",
        serde_json::json!({"count": 1, "label": ""}),
    );
    assert_thaw_refused(bytes, |c| {
        matches!(
            c,
            CheckpointError::StateVersionTooNew {
                found: 7,
                supported: 1
            }
        )
    })
    .await;
}

#[tokio::test]
async fn a_state_of_the_wrong_shape_fails_the_thaw() {
    let bytes = encode_as(
        "counter",
        1,
        &p("alpha"),
        "a",
        serde_json::json!({"count": "many"}),
    );
    assert_thaw_refused(bytes, |c| matches!(c, CheckpointError::State(_))).await;
}

#[derive(Serialize, Deserialize)]
struct CounterV2 {
    total: u64,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Total;
impl Message for Total {
    const NAME: &'static str = "total";
    type Reply = u64;
}

impl Factory for CounterV2 {
    const NAME: &'static str = "counter";
    const STATE_VERSION: u32 = 2;
    fn fresh(_: &Identity) -> Self {
        Self { total: 0 }
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Total>();
    }
    fn upgrade(from: u32, state: serde_json::Value) -> Result<serde_json::Value, String> {
        match from {
            1 => Ok(serde_json::json!({ "total": state["count"] })),
            other => Err(format!("no path from {other}")),
        }
    }
}
impl Handler<Total> for CounterV2 {
    async fn handle(&mut self, _: Total, _: &mut Context) -> Result<u64, HandlerError> {
        Ok(self.total)
    }
}

#[tokio::test]
async fn an_older_state_version_is_upgraded_on_thaw() {
    let store = MemoryStore::new();
    let alpha = p("alpha");
    {
        let rt = Runtime::new(store.clone());
        let m = rt
            .register::<Counter>("counters", ManagerConfig::default())
            .unwrap();
        m.get("a", &alpha)
            .await
            .unwrap()
            .call(Increment { by: 42 })
            .await
            .unwrap();
        m.stop("a", &alpha).await.unwrap();
    }
    let rt = Runtime::new(store);
    let m = rt
        .register::<CounterV2>("counters", ManagerConfig::default())
        .unwrap();
    assert_eq!(
        m.get("a", &alpha).await.unwrap().call(Total).await.unwrap(),
        42
    );
}

#[tokio::test]
async fn a_store_that_is_down_fails_the_get_instead_of_starting_fresh() {
    let store = OutageStore::new();
    let rt = Runtime::new(store.clone());
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    m.get("a", &alpha)
        .await
        .unwrap()
        .call(Increment { by: 5 })
        .await
        .unwrap();
    m.stop("a", &alpha).await.unwrap();

    store.set_down(true);
    let err = m.get("a", &alpha).await.unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::Unavailable(_))),
        "{err:?}"
    );
    assert!(m.lookup("a", &alpha).unwrap().is_none());

    store.set_down(false);
    assert_eq!(
        m.get("a", &alpha).await.unwrap().call(Get).await.unwrap(),
        5
    );
}

#[tokio::test]
async fn a_failed_hibernation_keeps_the_instance_live_and_loses_nothing() {
    let store = OutageStore::new();
    let rt = Runtime::new(store.clone());
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let h = m.get("a", &alpha).await.unwrap();
    h.call(Increment { by: 5 }).await.unwrap();

    store.set_down(true);
    let err = m.stop("a", &alpha).await.unwrap_err();
    assert!(matches!(err, Error::Store(StoreError::Unavailable(_))));
    // Still live, same incarnation, state intact, accepting calls.
    assert!(m.lookup("a", &alpha).unwrap().unwrap().same_instance(&h));
    assert_eq!(h.call(Increment { by: 1 }).await.unwrap(), 6);

    store.set_down(false);
    m.stop("a", &alpha).await.unwrap();
    assert_eq!(
        m.get("a", &alpha).await.unwrap().call(Get).await.unwrap(),
        6
    );
}

#[tokio::test]
async fn a_stale_writer_is_fenced_by_the_version() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let h = m.get("a", &alpha).await.unwrap();
    h.call(Increment { by: 1 }).await.unwrap();
    // Another writer (say, another node) writes the checkpoint first.
    let other = encode_as(
        "counter",
        1,
        &alpha,
        "a",
        serde_json::json!({"count": 99, "label": ""}),
    );
    rt.store()
        .put(h.identity(), other.into(), None)
        .await
        .unwrap();
    let err = m.stop("a", &alpha).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(StoreError::Conflict {
                expected: None,
                actual: Some(1)
            })
        ),
        "{err:?}"
    );
    // Fenced: the instance stopped without overwriting the newer checkpoint.
    assert!(m.lookup("a", &alpha).unwrap().is_none());
    assert_eq!(
        m.get("a", &alpha).await.unwrap().call(Get).await.unwrap(),
        99
    );
}

/// A store whose writes land but whose answers get lost, like a network that drops the
/// reply of a committed transaction.
#[derive(Clone, Default)]
struct LostAckStore {
    inner: MemoryStore,
}

impl CheckpointStore for LostAckStore {
    fn kind(&self) -> &'static str {
        "lost-ack"
    }
    fn get<'a>(&'a self, key: &'a StoreKey) -> BoxFuture<'a, Result<Option<Record>, StoreError>> {
        self.inner.get(key)
    }
    fn put<'a>(
        &'a self,
        key: &'a StoreKey,
        bytes: Arc<[u8]>,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            self.inner.put(key, bytes, expected).await?;
            Err(StoreError::Unavailable(
                "connection reset after commit".into(),
            ))
        })
    }
    fn delete<'a>(
        &'a self,
        key: &'a StoreKey,
        expected: Option<u64>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.delete(key, expected)
    }
    fn list<'a>(
        &'a self,
        partition: &'a Partition,
        manager: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(Key, u64)>, StoreError>> {
        self.inner.list(partition, manager)
    }
    fn purge_partition<'a>(
        &'a self,
        partition: &'a Partition,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.inner.purge_partition(partition)
    }
}

#[tokio::test]
async fn a_committed_write_whose_answer_was_lost_counts_as_written() {
    let rt = Runtime::new(LostAckStore::default());
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    m.get("a", &alpha)
        .await
        .unwrap()
        .call(Increment { by: 4 })
        .await
        .unwrap();
    m.stop("a", &alpha).await.unwrap();
    let h = m.get("a", &alpha).await.unwrap();
    assert_eq!(h.call(Increment { by: 1 }).await.unwrap(), 5);
    // The second hibernation expects version 1 and is not fenced out.
    m.stop("a", &alpha).await.unwrap();
    assert_eq!(
        m.get("a", &alpha).await.unwrap().call(Get).await.unwrap(),
        5
    );
}
