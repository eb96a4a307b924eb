//! Telemetry: every event and metric carries the partition, manager and key.

mod common;

use common::*;
use metrics::{
    Counter as MetricCounter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tenantry::telemetry::{EventKind, Outcome, StopReason, metric};
use tenantry::{ManagerConfig, Runtime};

/// A recorder that keeps counter values by name and labels.
#[derive(Default, Clone)]
struct Recorded {
    counters: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
}

fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

struct Cell(Arc<AtomicU64>);
impl metrics::CounterFn for Cell {
    fn increment(&self, v: u64) {
        self.0.fetch_add(v, Ordering::SeqCst);
    }
    fn absolute(&self, v: u64) {
        self.0.store(v, Ordering::SeqCst);
    }
}

impl Recorder for Recorded {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> MetricCounter {
        let cell = self
            .counters
            .lock()
            .unwrap()
            .entry(render(key))
            .or_default()
            .clone();
        MetricCounter::from_arc(Arc::new(Cell(cell)))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

impl Recorded {
    fn get(&self, rendered: &str) -> u64 {
        self.counters
            .lock()
            .unwrap()
            .get(rendered)
            .map_or(0, |c| c.load(Ordering::SeqCst))
    }
}

#[tokio::test]
async fn events_and_metrics_carry_partition_manager_and_key() {
    let recorded = Recorded::default();
    metrics::set_global_recorder(recorded.clone()).expect("the only recorder of this test binary");

    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let mut events = rt.subscribe();
    let alpha = p("alpha");
    let beta = p("beta");
    let h = m.get("a", &alpha).await.unwrap();
    h.call(Increment { by: 1 }).await.unwrap();
    let _ = h.call(Fail { reason: "x".into() }).await;
    m.get("a", &beta)
        .await
        .unwrap()
        .call(Increment { by: 1 })
        .await
        .unwrap();
    m.stop("a", &alpha).await.unwrap();
    m.get("a", &alpha).await.unwrap();

    let mut seen = Vec::new();
    while let Some(Ok(e)) = events.try_recv() {
        assert_eq!(&*e.manager, "counters");
        assert_eq!(e.key.encoded(), "a");
        seen.push((e.partition.to_string(), e.kind.clone()));
    }
    let kinds_in = |part: &str| -> Vec<String> {
        seen.iter()
            .filter(|(p, _)| p == part)
            .map(|(_, k)| match k {
                EventKind::Started => "started".to_string(),
                EventKind::Thawed { .. } => "thawed".to_string(),
                EventKind::Hibernated { .. } => "hibernated".to_string(),
                EventKind::Stopped {
                    reason: StopReason::Requested,
                } => "stopped".to_string(),
                EventKind::HandlerFinished {
                    handler, outcome, ..
                } => format!("{handler}:{}", outcome.as_str()),
                other => format!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(
        kinds_in("alpha"),
        [
            "started",
            "increment:ok",
            "fail:error",
            "hibernated",
            "stopped",
            "thawed"
        ]
    );
    assert_eq!(kinds_in("beta"), ["started", "increment:ok"]);
    assert!(seen.iter().any(|(_, k)| matches!(k, EventKind::HandlerFinished { outcome: Outcome::Ok, duration, .. } if duration.as_nanos() > 0)));

    assert_eq!(
        recorded.get(&format!(
            "{}{{handler=increment,manager=counters,outcome=ok,partition=alpha}}",
            metric::HANDLER_CALLS
        )),
        1
    );
    assert_eq!(
        recorded.get(&format!(
            "{}{{handler=fail,manager=counters,outcome=error,partition=alpha}}",
            metric::HANDLER_CALLS
        )),
        1
    );
    assert_eq!(
        recorded.get(&format!(
            "{}{{handler=increment,manager=counters,outcome=ok,partition=beta}}",
            metric::HANDLER_CALLS
        )),
        1
    );
    assert_eq!(
        recorded.get(&format!(
            "{}{{manager=counters,mode=thawed,partition=alpha}}",
            metric::ACTIVATIONS
        )),
        1
    );
    assert_eq!(
        recorded.get(&format!(
            "{}{{manager=counters,outcome=ok,partition=alpha}}",
            metric::HIBERNATIONS
        )),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_subscriber_gets_its_events_only_and_lags_by_its_own_alone() {
    let rt = Runtime::builder().event_capacity(16).build();
    let counters = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let (acme, globex) = (
        tenantry::Partition::new("acme").unwrap(),
        tenantry::Partition::new("globex").unwrap(),
    );
    let mut own = rt.subscribe_partition(&acme);
    // Far more of globex's events than a buffer holds: acme's subscriber sees none of
    // them and does not fall behind for them.
    for i in 0..40 {
        counters.get(format!("g{i}"), &globex).await.unwrap();
    }
    assert!(
        own.try_recv().is_none(),
        "nothing of globex's reached acme's stream"
    );
    counters.get("a1", &acme).await.unwrap();
    let event = own.recv().await.unwrap();
    assert_eq!(event.partition, acme);
    assert!(matches!(event.kind, EventKind::Started), "{:?}", event.kind);
    // Its own events past its buffer: it lags by them, and says how many it missed.
    for i in 0..40 {
        counters.get(format!("a{i}x"), &acme).await.unwrap();
    }
    match own.recv().await {
        Err(tenantry::telemetry::RecvError::Lagged(n)) => assert!(n >= 40 - 16, "{n}"),
        other => panic!("expected a lag, got {other:?}"),
    }
    while let Some(next) = own.try_recv() {
        assert_eq!(next.unwrap().partition, acme);
    }
}
