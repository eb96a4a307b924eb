//! Durable turns (`Durability::EveryTurn`): a reply means the turn's state and storage
//! writes are in the store; failed turns commit nothing; a failed commit is reported and
//! the instance goes on from what is durable.
//!
//! "After a crash" is played by a second runtime over the same store while the first is
//! never stopped: what the second sees is only what reached the store.

mod common;

use common::{p, quiet_panics};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tenantry::schemars::JsonSchema;
use tenantry::store::{CheckpointStore, MemoryStore};
use tenantry::telemetry::{EventKind, Outcome};
use tenantry::{
    CallError, Context, Durability, Error, Factory, Handler, HandlerError, Handlers, Identity,
    Invoke, Key, Manager, ManagerConfig, Message, Runtime,
};
use tenantry_testing::OutageStore;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    entries: Vec<u64>,
}

/// Appends `id`; with `note`, also writes `note` to storage key `last` in the same turn.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Append {
    id: u64,
    note: Option<String>,
}
impl Message for Append {
    const NAME: &'static str = "append";
    type Reply = usize;
}

/// Appends and writes storage, then fails (`panic`: panics instead).
#[derive(Serialize, Deserialize, JsonSchema)]
struct AppendThenFail {
    id: u64,
    panic: bool,
}
impl Message for AppendThenFail {
    const NAME: &'static str = "append_then_fail";
    type Reply = ();
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Entries;
impl Message for Entries {
    const NAME: &'static str = "entries";
    type Reply = Vec<u64>;
}

/// Reads storage key `last` and lists the storage keys.
#[derive(Serialize, Deserialize, JsonSchema)]
struct ReadStorage;
impl Message for ReadStorage {
    const NAME: &'static str = "read_storage";
    type Reply = (Option<String>, Vec<String>);
}

impl Factory for Ledger {
    const NAME: &'static str = "ledger";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Append>()
            .add::<AppendThenFail>()
            .add::<Entries>()
            .add::<ReadStorage>();
    }
}

fn refused(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::new(e.to_string())
}

impl Handler<Append> for Ledger {
    async fn handle(&mut self, m: Append, ctx: &mut Context) -> Result<usize, HandlerError> {
        self.entries.push(m.id);
        if let Some(note) = m.note {
            let storage = ctx.storage().map_err(refused)?;
            storage.put("last", note.clone()).await.map_err(refused)?;
            // A turn reads its own write.
            let read = storage.get("last").await.map_err(refused)?;
            assert_eq!(read.as_deref(), Some(note.as_bytes()));
        }
        Ok(self.entries.len())
    }
}

impl Handler<AppendThenFail> for Ledger {
    async fn handle(&mut self, m: AppendThenFail, ctx: &mut Context) -> Result<(), HandlerError> {
        self.entries.push(m.id);
        let storage = ctx.storage().map_err(refused)?;
        storage.put("last", "doomed").await.map_err(refused)?;
        storage.put("doomed", "x").await.map_err(refused)?;
        if m.panic {
            panic!("the handler panicked after writing");
        }
        Err(HandlerError::new("refused after writing"))
    }
}

impl Handler<Entries> for Ledger {
    async fn handle(&mut self, _: Entries, _: &mut Context) -> Result<Vec<u64>, HandlerError> {
        Ok(self.entries.clone())
    }
}

impl Handler<ReadStorage> for Ledger {
    async fn handle(
        &mut self,
        _: ReadStorage,
        ctx: &mut Context,
    ) -> Result<(Option<String>, Vec<String>), HandlerError> {
        let storage = ctx.storage().map_err(refused)?;
        let last = storage.get("last").await.map_err(refused)?;
        let keys = storage.keys().await.map_err(refused)?;
        Ok((last.map(|b| String::from_utf8_lossy(&b).into_owned()), keys))
    }
}

/// A store whose commits take `delay_ms`: commits are really in flight while further
/// letters run, as on redb or PostgreSQL.
fn slow_store(delay_ms: u64) -> Arc<dyn CheckpointStore> {
    Arc::new(OutageStore::with_commit_delay(
        std::time::Duration::from_millis(delay_ms),
    ))
}

fn durable() -> ManagerConfig {
    ManagerConfig::default().durability(Durability::EveryTurn)
}

fn ledgers(store: Arc<dyn CheckpointStore>, config: ManagerConfig) -> (Runtime, Manager<Ledger>) {
    let rt = Runtime::builder().store_arc(store).build();
    let m = rt.register::<Ledger>("ledgers", config).unwrap();
    (rt, m)
}

/// What a fresh runtime over `store` finds for ledger `key`: entries and storage.
async fn after_crash(
    store: Arc<dyn CheckpointStore>,
    key: &str,
) -> (Vec<u64>, (Option<String>, Vec<String>)) {
    let (rt, m) = ledgers(store, ManagerConfig::default());
    let h = m.get(key, &p("acme")).await.unwrap();
    let found = (
        h.call(Entries).await.unwrap(),
        h.call(ReadStorage).await.unwrap(),
    );
    drop(rt);
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_turn_and_its_storage_write_are_in_the_store_without_hibernating() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let (_rt, m) = ledgers(store.clone(), durable());
    let h = m.get("a", &p("acme")).await.unwrap();
    for id in 1..=3 {
        let note = Some(format!("note {id}"));
        assert_eq!(h.call(Append { id, note }).await.unwrap(), id as usize);
    }
    let (entries, (last, keys)) = after_crash(store, "a").await;
    assert_eq!(entries, vec![1, 2, 3], "every acknowledged turn is durable");
    assert_eq!(last.as_deref(), Some("note 3"), "with its storage write");
    assert_eq!(keys, vec!["last".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_hibernate_keeps_turns_in_memory_until_the_instance_stops() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let (_rt, m) = ledgers(store.clone(), ManagerConfig::default());
    let h = m.get("a", &p("acme")).await.unwrap();
    h.call(Append { id: 1, note: None }).await.unwrap();
    assert!(
        store.get(h.identity()).await.unwrap().is_none(),
        "the library default writes nothing before hibernation"
    );
    m.stop("a", &p("acme")).await.unwrap();
    assert_eq!(after_crash(store, "a").await.0, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_changes_nothing_writes_nothing() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let (_rt, m) = ledgers(store.clone(), durable());
    let h = m.get("a", &p("acme")).await.unwrap();
    h.call(Entries).await.unwrap();
    assert!(
        store.get(h.identity()).await.unwrap().is_none(),
        "a read-only turn on a fresh instance stores nothing"
    );
    h.call(Append { id: 1, note: None }).await.unwrap();
    let version = store.get(h.identity()).await.unwrap().unwrap().version;
    for _ in 0..20 {
        h.call(Entries).await.unwrap();
        h.call(ReadStorage).await.unwrap();
    }
    assert_eq!(
        store.get(h.identity()).await.unwrap().unwrap().version,
        version,
        "read-only turns leave the version alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_panicked_turn_commits_nothing_and_the_instance_goes_on_from_durable_state() {
    quiet_panics();
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let (_rt, m) = ledgers(store.clone(), durable());
    let h = m.get("a", &p("acme")).await.unwrap();
    let note = Some("kept".to_owned());
    h.call(Append { id: 1, note }).await.unwrap();
    let version = store.get(h.identity()).await.unwrap().unwrap().version;

    let err = h
        .call(AppendThenFail {
            id: 2,
            panic: false,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Handler(_)), "{err:?}");
    assert_eq!(
        h.call(Entries).await.unwrap(),
        vec![1],
        "a failed turn's state change is rolled back"
    );
    assert_eq!(
        h.call(ReadStorage).await.unwrap(),
        (Some("kept".to_owned()), vec!["last".to_owned()]),
        "and its storage writes are dropped"
    );

    let err = h
        .call(AppendThenFail { id: 3, panic: true })
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Panicked { .. }), "{err:?}");
    assert_eq!(h.call(Entries).await.unwrap(), vec![1]);
    assert_eq!(
        store.get(h.identity()).await.unwrap().unwrap().version,
        version,
        "neither failed turn wrote"
    );
    let (entries, storage) = after_crash(store, "a").await;
    assert_eq!(entries, vec![1]);
    assert_eq!(storage, (Some("kept".to_owned()), vec!["last".to_owned()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_answers_not_durable_and_the_instance_rolls_back_to_its_durable_state() {
    let outage = OutageStore::new();
    let store: Arc<dyn CheckpointStore> = Arc::new(outage.clone());
    let (_rt, m) = ledgers(store.clone(), durable());
    let h = m.get("a", &p("acme")).await.unwrap();
    h.call(Append { id: 1, note: None }).await.unwrap();
    outage.set_down(true);
    let err = h.call(Append { id: 2, note: None }).await.unwrap_err();
    assert!(matches!(err, CallError::NotDurable { .. }), "{err:?}");
    assert_eq!(
        h.call(Entries).await.unwrap(),
        vec![1],
        "the turn that was not made durable is rolled back, and reads go on while the store is down"
    );
    outage.set_down(false);
    h.call(Append { id: 3, note: None }).await.unwrap();
    assert_eq!(after_crash(store, "a").await.0, vec![1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_bus_call_of_a_durable_turn_is_answered_once_committed_or_not_durable() {
    let outage = OutageStore::new();
    let store: Arc<dyn CheckpointStore> = Arc::new(outage.clone());
    let (rt, _m) = ledgers(store.clone(), durable());
    let bus = rt.bus();
    let opts = || Invoke::target(&p("acme")).key(Key::new("a").unwrap());
    let append = |id: u64| json!({"id": id, "note": null});
    let count: usize = bus
        .invoke_as("ledgers.append", append(1), opts())
        .await
        .unwrap();
    assert_eq!(count, 1);
    outage.set_down(true);
    let failed = bus
        .invoke_as::<usize>("ledgers.append", append(2), opts())
        .await;
    assert!(
        matches!(failed, Err(Error::Call(CallError::NotDurable { .. }))),
        "{failed:?}"
    );
    outage.set_down(false);
    let entries: Vec<u64> = bus
        .invoke_as("ledgers.entries", json!(null), opts())
        .await
        .unwrap();
    assert_eq!(
        entries,
        vec![1],
        "the turn that was not made durable was rolled back"
    );
    assert_eq!(
        after_crash(store, "a").await.0,
        vec![1],
        "the answered turn is durable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_the_store_is_down_restarts_from_the_last_commit_without_the_store() {
    quiet_panics();
    let outage = OutageStore::new();
    let store: Arc<dyn CheckpointStore> = Arc::new(outage.clone());
    let (_rt, m) = ledgers(store, durable());
    let h = m.get("a", &p("acme")).await.unwrap();
    h.call(Append { id: 1, note: None }).await.unwrap();
    outage.set_down(true);
    let err = h
        .call(AppendThenFail { id: 2, panic: true })
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Panicked { .. }), "{err:?}");
    assert_eq!(
        h.call(Entries).await.unwrap(),
        vec![1],
        "restarted from the state it committed, with the store still down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_turn_counts_as_handled_once_committed_and_as_an_error_if_not() {
    let outage = OutageStore::new();
    let store: Arc<dyn CheckpointStore> = Arc::new(outage.clone());
    let (rt, m) = ledgers(store.clone(), durable());
    let mut events = rt.subscribe();
    let h = m.get("a", &p("acme")).await.unwrap();
    h.call(Append { id: 1, note: None }).await.unwrap();
    outage.set_down(true);
    h.call(Append { id: 2, note: None }).await.unwrap_err();
    outage.set_down(false);
    // A tell: no reply; it counts as handled once committed.
    h.tell(Append { id: 3, note: None }).unwrap();
    h.call(Entries).await.unwrap();
    let mut finished = Vec::new();
    while let Some(Ok(e)) = events.try_recv() {
        if let EventKind::HandlerFinished {
            handler, outcome, ..
        } = e.kind
        {
            if handler == "append" {
                finished.push(outcome);
            }
        }
    }
    assert_eq!(
        finished,
        [Outcome::Ok, Outcome::Error, Outcome::Ok],
        "the turn whose commit failed counts as an error, not as handled"
    );
    assert_eq!(after_crash(store, "a").await.0, vec![1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_queued_behind_a_commit_in_flight_is_answered_when_it_lands() {
    let (_rt, m) = ledgers(
        slow_store(50),
        durable().call_timeout(std::time::Duration::from_secs(2)),
    );
    let h = m.get("a", &p("acme")).await.unwrap();
    let (appended, entries) = tokio::join!(h.call(Append { id: 1, note: None }), async {
        // Queued while the append's commit is in flight.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        h.call(Entries).await
    });
    assert_eq!(appended.unwrap(), 1);
    assert_eq!(entries.unwrap(), vec![1]);
}

/// An agent whose start hook stamps it with a number, and whose stop hook writes storage.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Stamped {
    stamp: Option<u64>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct ReadStamp;
impl Message for ReadStamp {
    const NAME: &'static str = "read_stamp";
    const READ_ONLY: bool = true;
    type Reply = Option<u64>;
}

static STAMPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Factory for Stamped {
    const NAME: &'static str = "stamped";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<ReadStamp>();
    }
    async fn on_start(&mut self, _: &mut Context) -> Result<(), HandlerError> {
        self.stamp = Some(STAMPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        Ok(())
    }
    async fn on_stop(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        let storage = ctx.storage().map_err(refused)?;
        storage
            .put("goodbye", "written by on_stop")
            .await
            .map_err(refused)?;
        Ok(())
    }
}

impl Handler<ReadStamp> for Stamped {
    async fn handle(&mut self, _: ReadStamp, _: &mut Context) -> Result<Option<u64>, HandlerError> {
        Ok(self.stamp)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_start_hook_did_is_committed_before_a_reply_shows_it_and_on_stop_writes_with_the_checkpoint()
 {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let rt = Runtime::builder().store_arc(store.clone()).build();
    let m = rt.register::<Stamped>("stamped", durable()).unwrap();
    let h = m.get("s", &p("acme")).await.unwrap();
    let stamp = h.call(ReadStamp).await.unwrap();
    assert!(stamp.is_some());
    // After a crash, the stamp the caller saw is there.
    assert_eq!(
        stamp_after_crash(store.clone()).await,
        stamp,
        "a reply showed the stamp, so it was committed first"
    );

    m.stop("s", &p("acme")).await.unwrap();
    let goodbye = Identity::new(
        p("acme"),
        "storage/stamped/s",
        tenantry::Key::tuple(["goodbye"]).unwrap(),
    );
    let record = store.get(&goodbye).await.unwrap();
    assert_eq!(
        record.map(|r| r.bytes.to_vec()),
        Some(b"written by on_stop".to_vec()),
        "on_stop's storage write is committed with the final checkpoint"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_hook_change_whose_commit_failed_is_kept_and_committed_before_any_reply_shows_it() {
    let outage = OutageStore::new();
    let store: Arc<dyn CheckpointStore> = Arc::new(outage.clone());
    let rt = Runtime::builder().store_arc(store.clone()).build();
    let m = rt.register::<Stamped>("stamped", durable()).unwrap();
    let h = m.get("s", &p("acme")).await.unwrap();
    outage.set_down(true);
    for _ in 0..3 {
        let err = h.call(ReadStamp).await.unwrap_err();
        assert!(
            matches!(err, CallError::NotDurable { .. }),
            "no reply shows the stamp before it is stored: {err:?}"
        );
    }
    outage.set_down(false);
    let stamp = h.call(ReadStamp).await.unwrap();
    assert!(
        stamp.is_some(),
        "the start hook's stamp is kept, not rolled away"
    );
    assert_eq!(stamp_after_crash(store).await, stamp);
}

/// The stamp a fresh runtime over `store` finds for stamped agent `s`.
async fn stamp_after_crash(store: Arc<dyn CheckpointStore>) -> Option<u64> {
    let rt = Runtime::builder().store_arc(store).build();
    let m = rt
        .register::<Stamped>("stamped", ManagerConfig::default())
        .unwrap();
    let h = m.get("s", &p("acme")).await.unwrap();
    h.call(ReadStamp).await.unwrap()
}

/// An agent whose state has no order of its own (a `HashMap`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally {
    counts: std::collections::HashMap<String, u64>,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Count {
    word: String,
    fail: bool,
}
impl Message for Count {
    const NAME: &'static str = "count";
    type Reply = u64;
}

/// Reads the total (not declared read-only: its turns take the change check).
#[derive(Serialize, Deserialize, JsonSchema)]
struct Total;
impl Message for Total {
    const NAME: &'static str = "total";
    type Reply = u64;
}

impl Factory for Tally {
    const NAME: &'static str = "tally";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Count>().add::<Total>();
    }
}

impl Handler<Count> for Tally {
    async fn handle(&mut self, m: Count, _: &mut Context) -> Result<u64, HandlerError> {
        let n = self.counts.entry(m.word).or_default();
        *n += 1;
        let n = *n;
        if m.fail {
            return Err(HandlerError::new("refused after counting"));
        }
        Ok(n)
    }
}

impl Handler<Total> for Tally {
    async fn handle(&mut self, _: Total, _: &mut Context) -> Result<u64, HandlerError> {
        Ok(self.counts.values().sum())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_state_without_order_is_not_taken_for_a_change() {
    let outage = OutageStore::new();
    let store: Arc<dyn CheckpointStore> = Arc::new(outage.clone());
    let rt = Runtime::builder().store_arc(store).build();
    let m = rt.register::<Tally>("tallies", durable()).unwrap();
    let h = m.get("t", &p("acme")).await.unwrap();
    for i in 0..64 {
        let word = format!("w{i}");
        h.call(Count { word, fail: false }).await.unwrap();
    }
    let failed = Count {
        word: "w0".into(),
        fail: true,
    };
    h.call(failed).await.unwrap_err();
    // Rolled back by decoding: the map's order may differ, its content does not. A read
    // must not look like a change, so it needs no store.
    outage.set_down(true);
    for _ in 0..5 {
        assert_eq!(h.call(Total).await.unwrap(), 64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_refused_for_its_version_fences_the_instance_out() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let (_rt, m) = ledgers(store.clone(), durable());
    let h = m.get("a", &p("acme")).await.unwrap();
    h.call(Append { id: 1, note: None }).await.unwrap();
    // Another activation (elsewhere) writes the record.
    let (other_rt, other) = ledgers(store.clone(), durable());
    let o = other.get("a", &p("acme")).await.unwrap();
    o.call(Append { id: 9, note: None }).await.unwrap();
    drop(other_rt);

    let err = h.call(Append { id: 2, note: None }).await.unwrap_err();
    assert!(matches!(err, CallError::NotDurable { .. }), "{err:?}");
    let h = m.get("a", &p("acme")).await.unwrap();
    assert_eq!(
        h.call(Entries).await.unwrap(),
        vec![1, 9],
        "the fenced incarnation stopped; the next one thaws what the other wrote"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_of_one_agent_find_every_acknowledged_id_once_in_acknowledged_order() {
    const CALLERS: u64 = 64;
    const EACH: u64 = 25;
    // Commits that take a while: letters run while one is in flight.
    let store = slow_store(1);
    let (_rt, m) = ledgers(store.clone(), durable());
    let callers = (0..CALLERS).map(|c| {
        let m = m.clone();
        tokio::spawn(async move {
            let h = m.get("hot", &p("acme")).await.unwrap();
            let mut acked = Vec::new();
            for i in 0..EACH {
                let id = c * 1000 + i;
                h.call(Append { id, note: None }).await.unwrap();
                acked.push(id);
                // A read behind a commit in flight is answered once it lands, and sees
                // what this caller was told.
                let seen = h.call(Entries).await.unwrap();
                assert!(seen.contains(&id));
            }
            acked
        })
    });
    let acked: Vec<Vec<u64>> = futures::future::join_all(callers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let (entries, _) = after_crash(store, "hot").await;
    assert_eq!(entries.len() as u64, CALLERS * EACH);
    assert_eq!(
        entries.iter().collect::<BTreeSet<_>>().len(),
        entries.len(),
        "no id twice"
    );
    let position: BTreeMap<u64, usize> =
        entries.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    for ids in acked {
        let at: Vec<usize> = ids.iter().map(|id| position[id]).collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "a caller's ids are stored in the order they were acknowledged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_instances_hibernate_and_thaw_as_before() {
    let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
    let (rt, m) = ledgers(store.clone(), durable());
    let h = m.get("a", &p("acme")).await.unwrap();
    h.call(Entries).await.unwrap();
    m.stop("a", &p("acme")).await.unwrap();
    assert!(
        store.get(h.identity()).await.unwrap().is_some(),
        "a stop stores even an unchanged instance, as hibernation always did"
    );
    let h = m.get("a", &p("acme")).await.unwrap();
    h.call(Append { id: 5, note: None }).await.unwrap();
    let report = rt.shutdown().await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(after_crash(store, "a").await.0, vec![5]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// One step of a caller's session with a durable ledger.
    #[derive(Debug, Clone)]
    enum Step {
        /// Append (with a storage write when `note`).
        Append { note: bool },
        /// Append and write storage, then fail or panic.
        Fail { panic: bool },
        /// Take the store down or bring it back.
        Store { down: bool },
        /// Hibernate the ledger (may fail while the store is down).
        Stop,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => any::<bool>().prop_map(|note| Step::Append { note }),
            2 => any::<bool>().prop_map(|panic| Step::Fail { panic }),
            2 => any::<bool>().prop_map(|down| Step::Store { down }),
            1 => Just(Step::Stop),
        ]
    }

    /// Whatever happens, the store holds exactly the appends that were acknowledged, in
    /// order, with the storage note of the last acknowledged noted append; and the live
    /// ledger agrees with the store.
    async fn session(steps: Vec<Step>) -> Result<(), TestCaseError> {
        let outage = OutageStore::new();
        let store: Arc<dyn CheckpointStore> = Arc::new(outage.clone());
        // The property is about what is stored, not the restart bound: without one, a
        // give-up racing the check at the end cannot stop the instance under it.
        let mut config = durable();
        config.restart = tenantry::RestartPolicy {
            max_restarts: u32::MAX,
            window: std::time::Duration::from_secs(60),
        };
        let (_rt, m) = ledgers(store.clone(), config);
        let acme = p("acme");
        let mut acked: Vec<u64> = Vec::new();
        let mut last_note: Option<String> = None;
        for (i, step) in steps.into_iter().enumerate() {
            let id = i as u64;
            // While the store is down a thaw fails; that is not an acknowledgement.
            let Ok(h) = m.get("a", &acme).await else {
                continue;
            };
            match step {
                Step::Append { note } => {
                    let note = note.then(|| format!("note {id}"));
                    if h.call(Append {
                        id,
                        note: note.clone(),
                    })
                    .await
                    .is_ok()
                    {
                        acked.push(id);
                        if note.is_some() {
                            last_note = note;
                        }
                    }
                }
                Step::Fail { panic } => {
                    let result = h.call(AppendThenFail { id, panic }).await;
                    prop_assert!(result.is_err(), "a failing turn answered Ok");
                }
                Step::Store { down } => outage.set_down(down),
                Step::Stop => {
                    let _ = m.stop("a", &acme).await;
                }
            }
        }
        outage.set_down(false);
        let (entries, (note, _)) = after_crash(store, "a").await;
        prop_assert_eq!(
            &entries,
            &acked,
            "the store holds exactly the acknowledged appends"
        );
        prop_assert_eq!(note, last_note, "and the last acknowledged note");
        // A crash while the store was down may have made it give up: start it now.
        let h = m
            .retry_now("a", &acme)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let live = h
            .call(Entries)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(live, acked, "the live ledger agrees with the store");
        Ok(())
    }

    /// Found by the property below: four panics (the last two while the store is down)
    /// once made the instance give up right as the final check ran.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn panics_past_the_default_restart_bound_do_not_undo_acknowledged_turns() {
        quiet_panics();
        let fail = |panic| Step::Fail { panic };
        let append = |note| Step::Append { note };
        let steps = vec![
            append(false),
            Step::Stop,
            fail(false),
            append(false),
            fail(false),
            append(false),
            fail(true),
            fail(true),
            append(true),
            Step::Store { down: true },
            fail(true),
            fail(true),
        ];
        session(steps).await.unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_store_holds_exactly_the_acknowledged_turns(steps in prop::collection::vec(step(), 1..30)) {
            quiet_panics();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(session(steps))?;
        }
    }
}
