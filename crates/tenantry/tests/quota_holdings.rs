//! Limits on what a partition holds, through the public API: live keyed instances (the
//! least recently used idle ones hibernate at the cap, keeping their state; activation is
//! refused only when none can), stored bytes and the largest record (refused writes store
//! nothing; usage stays exact across hibernation, thaw, delete and purge), and the
//! largest reply of a call from outside. Each limit under, at and over, and changed live.

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tenantry::quota::Limit;
use tenantry::schemars::JsonSchema;
use tenantry::store::{CheckpointStore, MemoryStore, OverLimit, SizeLimit};
use tenantry::{
    CallError, Context, Durability, Error, Factory, Handler, HandlerError, Handlers, Identity,
    Invoke, Key, ManagerConfig, Message, Partition, Runtime,
};

/// A note: its text is its state; `stash` writes storage.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Note {
    text: String,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Write {
    text: String,
}
impl Message for Write {
    const NAME: &'static str = "write";
    type Reply = usize;
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Read;
impl Message for Read {
    const NAME: &'static str = "read";
    type Reply = String;
}

/// Writes `size` bytes to storage key `key` (0: deletes it); replies with the storage
/// error's text, if any.
#[derive(Serialize, Deserialize, JsonSchema)]
struct Stash {
    key: String,
    size: usize,
}
impl Message for Stash {
    const NAME: &'static str = "stash";
    type Reply = Option<String>;
}

impl Factory for Note {
    const NAME: &'static str = "note";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Write>().add::<Read>().add::<Stash>();
    }
}

impl Handler<Write> for Note {
    async fn handle(&mut self, m: Write, _: &mut Context) -> Result<usize, HandlerError> {
        self.text = m.text;
        Ok(self.text.len())
    }
}

impl Handler<Read> for Note {
    async fn handle(&mut self, _: Read, _: &mut Context) -> Result<String, HandlerError> {
        Ok(self.text.clone())
    }
}

impl Handler<Stash> for Note {
    async fn handle(
        &mut self,
        m: Stash,
        ctx: &mut Context,
    ) -> Result<Option<String>, HandlerError> {
        let storage = ctx
            .storage()
            .map_err(|e| HandlerError::new(e.to_string()))?;
        let result = if m.size == 0 {
            storage.delete(&m.key).await.map(drop)
        } else {
            storage.put(&m.key, vec![b's'; m.size]).await
        };
        Ok(result.err().map(|e| e.to_string()))
    }
}

fn acme() -> Partition {
    Partition::new("acme").unwrap()
}

fn runtime_over(store: Arc<dyn CheckpointStore>, durability: Durability) -> Runtime {
    let rt = Runtime::builder().store_arc(store).build();
    rt.register::<Note>("notes", ManagerConfig::default().durability(durability))
        .unwrap();
    rt
}

fn set_limits(rt: &Runtime, limits: serde_json::Value) {
    rt.kernel()
        .config()
        .set("tenants.acme.limits", limits)
        .unwrap();
}

async fn call(
    rt: &Runtime,
    p: &Partition,
    handler: &str,
    key: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, Error> {
    rt.bus_for(p)
        .invoke(
            &format!("notes.{handler}"),
            params,
            Invoke::default().key(Key::new(key).unwrap()),
        )
        .await
}

async fn write(rt: &Runtime, key: &str, text: &str) -> Result<serde_json::Value, Error> {
    call(rt, &acme(), "write", key, json!({ "text": text })).await
}

async fn read(rt: &Runtime, key: &str) -> String {
    let text = call(rt, &acme(), "read", key, json!(null)).await.unwrap();
    text.as_str().unwrap().to_owned()
}

/// Agent `agent` stores `size` bytes under its storage key `name` (0: deletes it).
async fn stash(
    rt: &Runtime,
    agent: &str,
    name: &str,
    size: usize,
) -> Result<serde_json::Value, Error> {
    call(
        rt,
        &acme(),
        "stash",
        agent,
        json!({ "key": name, "size": size }),
    )
    .await
}

async fn stored_bytes(rt: &Runtime) -> u64 {
    let usage = rt.quotas().usage(&acme()).await.unwrap();
    usage.stored.expect("the memory store keeps usage").bytes
}

fn live(rt: &Runtime) -> Vec<String> {
    let stats = rt.manager::<Note>("notes").unwrap().stats(&acme());
    stats.keys.iter().map(|k| k.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_instance_cap_the_least_recently_used_idle_instance_hibernates_with_its_state() {
    let rt = runtime_over(Arc::new(MemoryStore::new()), Durability::OnHibernate);
    set_limits(&rt, json!({"max_instances": 3}));
    for key in ["a", "b", "c"] {
        write(&rt, key, &format!("note {key}")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // At the cap, not over it: a is used again, so b is now the least recently used.
    write(&rt, "a", "note a, again").await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(live(&rt), ["a", "b", "c"]);

    write(&rt, "d", "note d").await.unwrap();
    assert_eq!(
        live(&rt),
        ["a", "c", "d"],
        "b, used least recently, made room"
    );
    let usage = rt.quotas().usage(&acme()).await.unwrap();
    assert_eq!(usage.live_instances, 3);
    assert_eq!(
        usage.throttled.instances, 0,
        "room was made, nothing refused"
    );
    // Hibernation kept b's note: it thaws (making room again) with it.
    assert_eq!(read(&rt, "b").await, "note b");
    assert_eq!(live(&rt).len(), 3);

    // Another partition is not held by acme's cap.
    let globex = Partition::new("globex").unwrap();
    for key in ["a", "b", "c", "d", "e"] {
        call(&rt, &globex, "write", key, json!({"text": "x"}))
            .await
            .unwrap();
    }
    assert_eq!(rt.manager::<Note>("notes").unwrap().stats(&globex).count, 5);

    // A raised cap applies to the next activation: nothing hibernates.
    set_limits(&rt, json!({"max_instances": 5}));
    write(&rt, "e", "note e").await.unwrap();
    write(&rt, "f", "note f").await.unwrap();
    assert_eq!(live(&rt).len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_is_refused_only_when_no_live_instance_can_hibernate() {
    let rt = runtime_over(Arc::new(MemoryStore::new()), Durability::OnHibernate);
    set_limits(&rt, json!({"max_instances": 2}));
    write(&rt, "a", "kept").await.unwrap();
    write(&rt, "b", "kept").await.unwrap();
    // Both held by keep-alive owners: neither may hibernate.
    let notes = rt.manager::<Note>("notes").unwrap();
    let holds = [
        notes.attach("a", &acme()).unwrap(),
        notes.attach("b", &acme()).unwrap(),
    ];
    match write(&rt, "c", "refused").await {
        Err(Error::Throttled { throttled, .. }) => {
            assert_eq!(throttled.limit, Limit::Instances);
            assert!(throttled.retry_after > Duration::ZERO);
        }
        other => panic!("expected the instance limit, got {other:?}"),
    }
    let usage = rt.quotas().usage(&acme()).await.unwrap();
    assert_eq!((usage.live_instances, usage.throttled.instances), (2, 1));
    // Let one go: the next activation makes room.
    drop(holds);
    write(&rt, "c", "made room").await.unwrap();
    assert_eq!(live(&rt).len(), 2);
    assert_eq!(read(&rt, "c").await, "made room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_state_is_refused_whole_and_the_instance_keeps_its_last_durable_state() {
    let rt = runtime_over(Arc::new(MemoryStore::new()), Durability::EveryTurn);
    set_limits(&rt, json!({"max_state_bytes": 200}));
    // Under and at the limit (the checkpoint holds the state and a small envelope).
    write(&rt, "a", &"u".repeat(100)).await.unwrap();
    let refused = write(&rt, "a", &"o".repeat(300)).await.unwrap_err();
    match &refused {
        Error::Call(CallError::OverLimit(OverLimit {
            limit: SizeLimit::StateBytes,
            max: 200,
            would_be,
        })) => assert!(*would_be > 300, "{refused}"),
        other => panic!("expected the state limit, got {other:?}"),
    }
    assert_eq!(
        read(&rt, "a").await,
        "u".repeat(100),
        "the last durable state"
    );
    // A storage value is a record too: the turn that writes it is not committed.
    let refused = stash(&rt, "a", "big", 201).await;
    assert!(
        matches!(
            &refused,
            Err(Error::Call(CallError::OverLimit(OverLimit {
                limit: SizeLimit::StateBytes,
                would_be: 201,
                ..
            })))
        ),
        "{refused:?}"
    );
    let fits = stash(&rt, "a", "small", 100).await.unwrap();
    assert_eq!(fits, json!(null));
    // Lifted live: the next turn commits.
    set_limits(&rt, json!(null));
    write(&rt, "a", &"o".repeat(300)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_bytes_are_limited_and_counted_across_hibernation_thaw_delete_and_purge() {
    let store = Arc::new(MemoryStore::new());
    let rt = runtime_over(store.clone(), Durability::EveryTurn);
    let notes = rt.manager::<Note>("notes").unwrap();
    write(&rt, "a", &"a".repeat(1000)).await.unwrap();
    let one_note = stored_bytes(&rt).await;
    assert!(one_note > 1000, "a checkpoint holds the note: {one_note}");
    // Hibernation and thaw change nothing stored.
    notes.stop("a", &acme()).await.unwrap();
    assert_eq!(stored_bytes(&rt).await, one_note);
    assert_eq!(read(&rt, "a").await.len(), 1000);
    assert_eq!(stored_bytes(&rt).await, one_note);

    // Room for about two notes: a second lands, a third does not.
    set_limits(&rt, json!({"max_stored_bytes": 2 * one_note + 100}));
    write(&rt, "b", &"b".repeat(1000)).await.unwrap();
    let two_notes = stored_bytes(&rt).await;
    match write(&rt, "c", &"c".repeat(1000)).await {
        Err(Error::Call(CallError::OverLimit(over))) => {
            assert_eq!(over.limit, SizeLimit::StoredBytes);
            assert!(over.would_be > over.max);
        }
        other => panic!("expected the storage limit, got {other:?}"),
    }
    assert_eq!(
        stored_bytes(&rt).await,
        two_notes,
        "the refused turn stored nothing"
    );
    // Over the limit, writes that shrink still pass, and make room.
    write(&rt, "a", "short").await.unwrap();
    assert!(stored_bytes(&rt).await < two_notes);
    write(&rt, "c", &"c".repeat(500)).await.unwrap();
    // Storage counts too, and a delete frees its bytes.
    let before = stored_bytes(&rt).await;
    let refused = stash(&rt, "c", "k", 5000).await.unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Call(CallError::OverLimit(OverLimit {
                limit: SizeLimit::StoredBytes,
                ..
            }))
        ),
        "{refused:?}"
    );
    assert_eq!(stored_bytes(&rt).await, before);
    set_limits(&rt, json!(null));
    stash(&rt, "c", "k", 5000).await.unwrap();
    assert!(stored_bytes(&rt).await >= before + 5000);
    stash(&rt, "c", "k", 0).await.unwrap();
    assert_eq!(stored_bytes(&rt).await, before);

    // Offboarding with purge: every record goes, and usage with it.
    rt.stop_partition(&acme()).await;
    store.purge_partition(&acme()).await.unwrap();
    let usage = rt.quotas().usage(&acme()).await.unwrap();
    assert_eq!(usage.stored.map(|s| (s.bytes, s.records)), Some((0, 0)));
    assert_eq!(usage.live_instances, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hibernation_past_the_limits_is_stored_and_counted_and_then_storage_is_refused() {
    let rt = runtime_over(Arc::new(MemoryStore::new()), Durability::OnHibernate);
    set_limits(
        &rt,
        json!({"max_stored_bytes": 100, "max_state_bytes": 100}),
    );
    // Callers were told of this note before it was stored: hibernation must not lose it.
    write(&rt, "a", &"a".repeat(500)).await.unwrap();
    let notes = rt.manager::<Note>("notes").unwrap();
    notes.stop("a", &acme()).await.unwrap();
    assert!(stored_bytes(&rt).await > 500, "counted");
    assert_eq!(read(&rt, "a").await.len(), 500, "kept");
    // Over its limit now, the partition's storage writes are refused until it shrinks.
    let refused = stash(&rt, "a", "k", 1).await.unwrap();
    assert!(
        refused
            .as_str()
            .unwrap_or("")
            .contains("past its 100-byte limit"),
        "{refused}"
    );
    write(&rt, "a", "").await.unwrap();
    notes.stop("a", &acme()).await.unwrap();
    let small = stored_bytes(&rt).await;
    assert!(small < 100, "{small}");
    set_limits(&rt, json!({"max_stored_bytes": small + 100}));
    // Its storage writes reach the store at once, so the handler meets the refusal.
    let refused = stash(&rt, "a", "k", 101).await.unwrap();
    assert!(
        refused
            .as_str()
            .unwrap_or("")
            .contains(&format!("past its {}-byte limit", small + 100)),
        "{refused}"
    );
    let fits = stash(&rt, "a", "k", 100).await.unwrap();
    assert_eq!(fits, json!(null), "at the limit");
    assert_eq!(stored_bytes(&rt).await, small + 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_reply_of_a_call_from_outside_is_refused_and_host_calls_are_not_held() {
    let rt = runtime_over(Arc::new(MemoryStore::new()), Durability::OnHibernate);
    write(&rt, "a", &"r".repeat(100)).await.unwrap();
    // At the limit: the reply is the JSON string, 102 bytes with its quotes.
    set_limits(&rt, json!({"max_reply_bytes": 102}));
    assert_eq!(read(&rt, "a").await.len(), 100);
    set_limits(&rt, json!({"max_reply_bytes": 101}));
    match call(&rt, &acme(), "read", "a", json!(null)).await {
        Err(Error::Call(CallError::ReplyTooLarge { limit, .. })) => assert_eq!(limit, 101),
        other => panic!("expected the reply limit, got {other:?}"),
    }
    // The same reply as JSON text, as the gateway asks for it.
    let raw = rt
        .bus_for(&acme())
        .invoke_raw(
            "notes.read",
            json!(null),
            Invoke::default().key(Key::new("a").unwrap()),
        )
        .await;
    assert!(
        matches!(raw, Err(Error::Call(CallError::ReplyTooLarge { .. }))),
        "{raw:?}"
    );
    // A typed call from outside takes the reply as JSON, to measure it.
    let typed = rt
        .bus_for(&acme())
        .invoke_as::<String>(
            "notes.read",
            json!(null),
            Invoke::default().key(Key::new("a").unwrap()),
        )
        .await;
    assert!(
        matches!(typed, Err(Error::Call(CallError::ReplyTooLarge { .. }))),
        "{typed:?}"
    );
    // Host code is not a call from outside.
    let host = rt
        .bus()
        .invoke(
            "notes.read",
            json!(null),
            Invoke::target(&acme()).key(Key::new("a").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(host.as_str().unwrap().len(), 100);
    let typed = rt
        .bus()
        .invoke_as::<String>(
            "notes.read",
            json!(null),
            Invoke::target(&acme()).key(Key::new("a").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(typed.len(), 100);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Writes through a partition capped at `cap` live instances: the cap holds after
    /// every call, and every note reads back as last written, however often it was
    /// hibernated to make room.
    async fn writes_under_a_cap(cap: u32, ops: Vec<(u8, u16)>) -> Result<(), TestCaseError> {
        let rt = runtime_over(Arc::new(MemoryStore::new()), Durability::OnHibernate);
        set_limits(&rt, json!({ "max_instances": cap }));
        let mut last = std::collections::BTreeMap::new();
        for (key, value) in ops {
            let key = format!("k{key}");
            let text = value.to_string();
            write(&rt, &key, &text)
                .await
                .map_err(|e| TestCaseError::fail(format!("write {key}: {e}")))?;
            last.insert(key, text);
            let usage = rt.quotas().usage(&acme()).await.unwrap();
            prop_assert!(
                usage.live_instances <= cap,
                "{} live over a cap of {cap}",
                usage.live_instances
            );
            prop_assert_eq!(live(&rt).len() as u32, usage.live_instances);
        }
        for (key, text) in last {
            prop_assert_eq!(read(&rt, &key).await, text);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn the_instance_cap_holds_and_no_hibernation_loses_a_note(
            cap in 1u32..5,
            ops in proptest::collection::vec((0u8..8, any::<u16>()), 1..40),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(writes_under_a_cap(cap, ops))?;
        }
    }
}

/// An agent whose `on_stop` reaches another agent of its manager: the key being
/// activated when it is asked to make room.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Caller {
    pings: u64,
}

#[derive(Serialize, Deserialize, JsonSchema)]
struct Ping;
impl Message for Ping {
    const NAME: &'static str = "ping";
    type Reply = u64;
}

impl Factory for Caller {
    const NAME: &'static str = "caller";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Ping>();
    }
    async fn on_stop(&mut self, ctx: &mut Context) -> Result<(), HandlerError> {
        if ctx.identity().key.to_string() != "late" {
            // May be refused (no room yet): the stop goes on either way.
            let _ = ctx.get::<Caller>("callers", "late").await;
        }
        Ok(())
    }
}

impl Handler<Ping> for Caller {
    async fn handle(&mut self, _: Ping, _: &mut Context) -> Result<u64, HandlerError> {
        self.pings += 1;
        Ok(self.pings)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn making_room_never_waits_on_the_key_being_activated() {
    let rt = Runtime::builder().build();
    rt.register::<Caller>("callers", ManagerConfig::default())
        .unwrap();
    set_limits(&rt, json!({"max_instances": 1}));
    let ping = |key: &'static str| {
        let bus = rt.bus_for(&acme());
        async move {
            bus.invoke(
                "callers.ping",
                json!(null),
                Invoke::default().key(Key::new(key).unwrap()),
            )
            .await
        }
    };
    ping("early").await.unwrap();
    // "early" makes room for "late", and its on_stop reaches "late" meanwhile.
    let late = tokio::time::timeout(Duration::from_secs(5), ping("late"))
        .await
        .expect("making room for a key must not wait on that key");
    assert_eq!(late.unwrap(), json!(1));
    let stats = rt.manager::<Caller>("callers").unwrap().stats(&acme());
    assert_eq!(
        stats.keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
        ["late"]
    );
}
