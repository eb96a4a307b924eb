//! Turns run by their callers: a call to an idle instance runs on the caller's thread,
//! and every promise of the actor model still holds when such turns interleave with
//! queued ones from many tasks — one turn at a time, each sender's letters in the order
//! sent, each accepted letter run exactly once, a turn never cut in half by a caller that
//! gave up, panics contained.

mod common;

use common::{p, quiet_panics};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tenantry::schemars::JsonSchema;
use tenantry::{
    CallError, Context, Durability, Factory, Handler, HandlerError, Handlers, Identity, Manager,
    ManagerConfig, Message, RestartPolicy, Runtime,
};

/// What the turns of one instance did, kept outside the instances (a restart after a
/// panic must not lose it): `(sender, seq)` per begin and end of a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Begin(u32, u64),
    End(u32, u64),
}

fn journal() -> &'static Mutex<HashMap<String, Vec<Event>>> {
    static J: OnceLock<Mutex<HashMap<String, Vec<Event>>>> = OnceLock::new();
    J.get_or_init(Default::default)
}

/// Instances inside a turn right now (by key): a second turn entering is an overlap.
fn in_turn() -> &'static Mutex<HashMap<String, Arc<AtomicBool>>> {
    static T: OnceLock<Mutex<HashMap<String, Arc<AtomicBool>>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

fn log(key: &str, e: Event) {
    journal()
        .lock()
        .unwrap()
        .entry(key.to_owned())
        .or_default()
        .push(e);
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Probe {
    turns: u64,
}

impl Factory for Probe {
    const NAME: &'static str = "probe";
    fn fresh(_: &Identity) -> Self {
        Self::default()
    }
    fn handlers(h: &mut Handlers<Self>) {
        h.add::<Record>()
            .add::<Relay>()
            .add::<WhereAmI>()
            .add::<Unencodable>()
            .add::<Flavor>();
    }
}

/// A turn of `sender`'s letter number `seq`; `awaits` times it gives way mid-turn; with
/// `panic` it panics at its end.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Record {
    sender: u32,
    seq: u64,
    awaits: u8,
    panic: bool,
}
impl Message for Record {
    const NAME: &'static str = "record";
    type Reply = u64;
}

impl Handler<Record> for Probe {
    async fn handle(&mut self, m: Record, ctx: &mut Context) -> Result<u64, HandlerError> {
        let key = ctx.key().to_string();
        let flag = in_turn()
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .clone();
        assert!(
            !flag.swap(true, Ordering::SeqCst),
            "two turns of {key} at once"
        );
        log(&key, Event::Begin(m.sender, m.seq));
        for _ in 0..m.awaits {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        self.turns += 1;
        log(&key, Event::End(m.sender, m.seq));
        flag.store(false, Ordering::SeqCst);
        if m.panic {
            panic!("boom: planned");
        }
        Ok(self.turns)
    }
}

/// Calls `record` on instance `to` from inside this instance's turn (a nested call).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct Relay {
    to: String,
    record: Record,
}
impl Message for Relay {
    const NAME: &'static str = "relay";
    type Reply = u64;
}

impl Handler<Relay> for Probe {
    async fn handle(&mut self, m: Relay, ctx: &mut Context) -> Result<u64, HandlerError> {
        let target = ctx
            .get::<Probe>("probes", m.to.as_str())
            .await
            .map_err(|e| HandlerError::new(e.to_string()))?;
        target
            .call(m.record)
            .await
            .map_err(|e| HandlerError::new(e.to_string()))
    }
}

/// The thread running the turn.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct WhereAmI;
impl Message for WhereAmI {
    const NAME: &'static str = "where_am_i";
    type Reply = String;
}

impl Handler<WhereAmI> for Probe {
    async fn handle(&mut self, _: WhereAmI, _: &mut Context) -> Result<String, HandlerError> {
        Ok(format!("{:?}", std::thread::current().id()))
    }
}

/// A reply whose encoding panics (a bug in user code outside the handler).
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Unencodable;
impl Message for Unencodable {
    const NAME: &'static str = "unencodable";
    type Reply = Grenade;
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Grenade;
impl Serialize for Grenade {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("boom: a reply that cannot be encoded")
    }
}

impl Handler<Unencodable> for Probe {
    async fn handle(&mut self, _: Unencodable, _: &mut Context) -> Result<Grenade, HandlerError> {
        Ok(Grenade)
    }
}

/// The flavor of the tokio runtime the turn runs in.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Flavor;
impl Message for Flavor {
    const NAME: &'static str = "flavor";
    type Reply = String;
}

impl Handler<Flavor> for Probe {
    async fn handle(&mut self, _: Flavor, _: &mut Context) -> Result<String, HandlerError> {
        Ok(format!(
            "{:?}",
            tokio::runtime::Handle::current().runtime_flavor()
        ))
    }
}

fn probes(durability: Durability) -> (Runtime, Manager<Probe>) {
    let rt = Runtime::in_memory();
    let config = ManagerConfig::default()
        .durability(durability)
        .restart(RestartPolicy {
            max_restarts: 10_000,
            window: Duration::from_secs(60),
        });
    let m = rt.register::<Probe>("probes", config).unwrap();
    (rt, m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_an_idle_instance_runs_on_the_callers_thread() {
    let (_rt, m) = probes(Durability::OnHibernate);
    let h = m.get("a", &p("acme")).await.unwrap();
    for _ in 0..50 {
        let here = format!("{:?}", std::thread::current().id());
        assert_eq!(h.call(WhereAmI).await.unwrap(), here);
    }
    // From a plain thread inside the runtime's context, too.
    let handle = tokio::runtime::Handle::current();
    let h2 = h.clone();
    let (here, there) = std::thread::spawn(move || {
        let here = format!("{:?}", std::thread::current().id());
        (here, handle.block_on(h2.call(WhereAmI)).unwrap())
    })
    .join()
    .unwrap();
    assert_eq!(here, there);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_invoke_runs_in_the_instances_task_not_on_the_calling_thread() {
    let (rt, m) = probes(Durability::OnHibernate);
    m.get("q", &p("acme")).await.unwrap();
    let bus = rt.bus();
    let handle = tokio::runtime::Handle::current();
    let (here, in_place, queued) = std::thread::spawn(move || {
        let here = format!("{:?}", std::thread::current().id());
        let opts = tenantry::Invoke::target(&p("acme")).key(tenantry::Key::new("q").unwrap());
        let call = |opts| {
            let reply =
                handle.block_on(bus.invoke("probes.where_am_i", serde_json::json!(null), opts));
            reply.unwrap().as_str().unwrap().to_owned()
        };
        (here, call(opts.clone()), call(opts.queued()))
    })
    .join()
    .unwrap();
    assert_eq!(in_place, here, "by default the caller runs the turn");
    assert_ne!(queued, here, "a queued call runs on a worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_that_waits_finishes_after_its_caller_gave_up() {
    let (_rt, m) = probes(Durability::OnHibernate);
    let key = format!("gave-up-{}", next_id());
    let h = m.get(key.as_str(), &p("acme")).await.unwrap();
    let slow = Record {
        sender: 1,
        seq: 1,
        awaits: 50,
        panic: false,
    };
    let r = h.call_with_timeout(slow, Duration::from_millis(1)).await;
    assert!(matches!(r, Err(CallError::Timeout(_))), "{r:?}");
    // The next letter queues behind the turn in flight and sees it whole.
    let next = Record {
        sender: 1,
        seq: 2,
        awaits: 0,
        panic: false,
    };
    assert_eq!(h.call(next).await.unwrap(), 2, "the first turn counted");
    let events = journal().lock().unwrap()[&key].clone();
    assert_eq!(
        events,
        vec![
            Event::Begin(1, 1),
            Event::End(1, 1),
            Event::Begin(1, 2),
            Event::End(1, 2)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_future_that_ran_in_place_still_answered_nobody_and_lost_nothing() {
    let (_rt, m) = probes(Durability::OnHibernate);
    let key = format!("dropped-{}", next_id());
    let h = m.get(key.as_str(), &p("acme")).await.unwrap();
    // Polled once (the turn starts in place and must wait), then dropped.
    let call = h.call(Record {
        sender: 1,
        seq: 1,
        awaits: 5,
        panic: false,
    });
    let _ = tokio::time::timeout(Duration::from_micros(1), call).await;
    let last = Record {
        sender: 1,
        seq: 2,
        awaits: 0,
        panic: false,
    };
    assert_eq!(h.call(last).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_panics_while_encoding_is_an_error_and_the_instance_goes_on() {
    quiet_panics();
    let (rt, m) = probes(Durability::OnHibernate);
    let h = m.get("grenade", &p("acme")).await.unwrap();
    for _ in 0..3 {
        let r = h.call_json("unencodable", serde_json::json!(null)).await;
        assert!(
            matches!(&r, Err(CallError::ReplyEncoding { message, .. }) if message.contains("boom")),
            "{r:?}"
        );
        assert!(h.call(WhereAmI).await.is_ok(), "the instance still answers");
        // The same as JSON text (what the gateway asks for).
        let opts = tenantry::Invoke::target(&p("acme")).key(tenantry::Key::new("grenade").unwrap());
        let r = rt
            .bus()
            .invoke_raw("probes.unencodable", serde_json::json!(null), opts)
            .await;
        assert!(
            matches!(&r, Err(tenantry::Error::Call(CallError::ReplyEncoding { message, .. })) if message.contains("boom")),
            "{r:?}"
        );
        assert!(h.call(WhereAmI).await.is_ok(), "the instance still answers");
    }
}

#[test]
fn a_turn_run_in_place_runs_in_its_instances_runtime_not_the_callers() {
    let home = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_rt, m) = home.block_on(async { probes(Durability::OnHibernate) });
    let h = home.block_on(m.get("flavor", &p("acme"))).unwrap();
    // A caller on a runtime of its own (a current-thread one, as a sync bridge would
    // build), calling an idle instance: the turn runs here, in the instance's runtime.
    let away = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let flavor = away.block_on(h.call(Flavor)).unwrap();
    assert_eq!(flavor, "MultiThread");
}

fn next_id() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One send of a sender.
#[derive(Debug, Clone)]
enum Send {
    /// A call (runs in place when the instance is idle).
    Call { awaits: u8, panic: bool },
    /// A tell (always queued).
    Tell { awaits: u8 },
    /// A call through another instance's turn.
    Relay { via: usize },
    /// A call with a timeout too short for a waiting turn.
    Impatient,
}

fn send() -> impl Strategy<Value = Send> {
    prop_oneof![
        4 => (0u8..3, prop::bool::weighted(0.1)).prop_map(|(awaits, panic)| Send::Call { awaits, panic }),
        2 => (0u8..2).prop_map(|awaits| Send::Tell { awaits }),
        1 => (0usize..3).prop_map(|via| Send::Relay { via }),
        1 => Just(Send::Impatient),
    ]
}

/// Four senders (three tasks and one plain thread), each sending to three instances.
fn plan() -> impl Strategy<Value = Vec<Vec<(usize, Send)>>> {
    prop::collection::vec(prop::collection::vec((0usize..3, send()), 1..25), 4)
}

/// Runs one sender's sends in order; returns the seqs it expects per instance.
async fn run_sender(
    m: Manager<Probe>,
    keys: Vec<String>,
    relays: Vec<String>,
    sender: u32,
    sends: Vec<(usize, Send)>,
) -> BTreeMap<usize, Vec<u64>> {
    let acme = p("acme");
    let mut expected: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for (seq, (to, send)) in sends.into_iter().enumerate() {
        let seq = seq as u64;
        let h = m.get(keys[to].as_str(), &acme).await.unwrap();
        let record = |awaits, panic| Record {
            sender,
            seq,
            awaits,
            panic,
        };
        match send {
            Send::Call { awaits, panic } => {
                let r = h.call(record(awaits, panic)).await;
                assert_eq!(r.is_ok(), !panic, "{r:?}");
            }
            Send::Tell { awaits } => h.tell(record(awaits, false)).unwrap(),
            Send::Relay { via } => {
                let relay = m.get(relays[via].as_str(), &acme).await.unwrap();
                let r = relay
                    .call(Relay {
                        to: keys[to].clone(),
                        record: record(0, false),
                    })
                    .await;
                r.unwrap();
            }
            Send::Impatient => {
                let _ = h
                    .call_with_timeout(record(2, false), Duration::from_micros(50))
                    .await;
            }
        }
        expected.entry(to).or_default().push(seq);
    }
    // A last call per instance: mailbox order makes it run after every tell above.
    for (to, key) in keys.iter().enumerate() {
        let h = m.get(key.as_str(), &acme).await.unwrap();
        let seq = u64::MAX - to as u64;
        h.call(Record {
            sender,
            seq,
            awaits: 0,
            panic: false,
        })
        .await
        .unwrap();
        expected.entry(to).or_default().push(seq);
    }
    expected
}

async fn session(
    durability: Durability,
    plan: Vec<Vec<(usize, Send)>>,
) -> Result<(), TestCaseError> {
    let (_rt, m) = probes(durability);
    let case = next_id();
    let keys: Vec<String> = (0..3).map(|i| format!("case{case}-i{i}")).collect();
    let relays: Vec<String> = (0..3).map(|i| format!("case{case}-relay{i}")).collect();
    let mut tasks = Vec::new();
    let mut plan = plan.into_iter().enumerate();
    let (outside_sender, outside_sends) = plan.next().unwrap();
    for (sender, sends) in plan {
        tasks.push(tokio::spawn(run_sender(
            m.clone(),
            keys.clone(),
            relays.clone(),
            sender as u32,
            sends,
        )));
    }
    let outside = {
        let (m, keys, relays) = (m.clone(), keys.clone(), relays.clone());
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            handle.block_on(run_sender(
                m,
                keys,
                relays,
                outside_sender as u32,
                outside_sends,
            ))
        })
    };
    let mut expected = vec![(outside_sender as u32, outside.join().unwrap())];
    for (i, t) in tasks.into_iter().enumerate() {
        expected.push(((i + 1) as u32, t.await.unwrap()));
    }
    let journal = journal().lock().unwrap();
    for (to, key) in keys.iter().enumerate() {
        let events = journal.get(key).cloned().unwrap_or_default();
        // One turn at a time: begins and ends alternate, each end closing its begin.
        for pair in events.chunks(2) {
            let [Event::Begin(s, q), Event::End(s2, q2)] = pair else {
                return Err(TestCaseError::fail(format!(
                    "{key}: turns interleaved: {pair:?}"
                )));
            };
            prop_assert_eq!((s, q), (s2, q2), "{}: a turn was cut", key);
        }
        // Each sender's letters ran exactly once each, in the order sent.
        for (sender, per_instance) in &expected {
            let ran: Vec<u64> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Begin(s, q) if s == sender => Some(*q),
                    _ => None,
                })
                .collect();
            let sent = per_instance.get(&to).cloned().unwrap_or_default();
            prop_assert_eq!(&ran, &sent, "{} sender {}", key, sender);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn inline_and_queued_turns_keep_order_count_and_exclusion(
        plan in plan(),
        durable in any::<bool>(),
    ) {
        quiet_panics();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let durability = if durable { Durability::EveryTurn } else { Durability::OnHibernate };
        rt.block_on(session(durability, plan))?;
    }
}
