//! Per-tenant limits through the public API: a partition's rate and concurrency limits
//! refuse its calls from outside (naming the limit and when to retry) and nobody else's;
//! config writes apply to the next call; calls between instances and host code's calls
//! are never metered; a saturated runtime holds each partition to its weighted share.

mod common;

use common::Counter;
use serde_json::json;
use std::time::Duration;
use tenantry::quota::{Limit, Throttled};
use tenantry::telemetry::EventKind;
use tenantry::{Error, Invoke, ManagerConfig, Partition, Runtime};

fn runtime() -> Runtime {
    let rt = Runtime::builder().build();
    rt.register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    rt
}

async fn increment(rt: &Runtime, p: &Partition, key: &str) -> Result<(), Error> {
    rt.bus_for(p)
        .invoke(
            "counters.increment",
            json!({"by": 1}),
            Invoke::default().key(tenantry::Key::new(key).unwrap()),
        )
        .await
        .map(|_| ())
}

fn throttled(result: Result<(), Error>) -> Option<Throttled> {
    match result {
        Err(Error::Throttled { throttled, .. }) => Some(throttled),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_refuses_its_partitions_calls_only_and_follows_config_writes() {
    let rt = runtime();
    let (acme, globex) = (
        Partition::new("acme").unwrap(),
        Partition::new("globex").unwrap(),
    );
    let config = rt.kernel().config().clone();
    config
        .set(
            "tenants.acme.limits",
            json!({"rate_per_sec": 2, "burst": 3}),
        )
        .unwrap();
    for i in 0..3 {
        increment(&rt, &acme, "k")
            .await
            .unwrap_or_else(|e| panic!("burst call {i}: {e}"));
    }
    let refused = throttled(increment(&rt, &acme, "k").await).expect("over the burst");
    assert_eq!(refused.limit, Limit::Rate);
    assert!(
        refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_millis(500),
        "{refused:?}"
    );
    // Another partition, and host code, are not held by acme's limit.
    for _ in 0..20 {
        increment(&rt, &globex, "k").await.unwrap();
        rt.bus()
            .invoke(
                "counters.increment",
                json!({"by": 1}),
                Invoke::target(&acme).key(tenantry::Key::new("host").unwrap()),
            )
            .await
            .unwrap();
    }
    // A write applies to the next call.
    config
        .set("tenants.acme.limits.rate_per_sec", json!(1_000_000))
        .unwrap();
    config
        .set("tenants.acme.limits.burst", json!(1_000_000))
        .unwrap();
    for _ in 0..50 {
        increment(&rt, &acme, "k").await.unwrap();
    }
    // Defaults apply to every partition without limits of its own.
    config
        .set("limits", json!({"rate_per_sec": 1, "burst": 1}))
        .unwrap();
    increment(&rt, &globex, "k2").await.unwrap();
    assert_eq!(
        throttled(increment(&rt, &globex, "k2").await).map(|t| t.limit),
        Some(Limit::Rate)
    );
    let usage = rt.quotas().usage(&acme).await.unwrap();
    assert_eq!(usage.throttled.rate, 1);
    assert_eq!(usage.admitted, 53);
    assert_eq!(usage.limits.rate_per_sec, Some(1_000_000.0));
    assert_eq!(usage.in_flight, 0);
    // Invalid limits leave the ones in force.
    config
        .set("tenants.acme.limits", json!({"burst": 0}))
        .unwrap();
    assert_eq!(
        rt.quotas().usage(&acme).await.unwrap().limits.rate_per_sec,
        Some(1_000_000.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_told_as_one_throttle_event_a_second_to_their_partition_only() {
    let rt = runtime();
    let (acme, globex) = (
        Partition::new("acme").unwrap(),
        Partition::new("globex").unwrap(),
    );
    let mut acme_events = rt.subscribe_partition(&acme);
    let mut globex_events = rt.subscribe_partition(&globex);
    rt.kernel()
        .config()
        .set(
            "tenants.acme.limits",
            json!({"rate_per_sec": 0.1, "burst": 1}),
        )
        .unwrap();
    increment(&rt, &acme, "k").await.unwrap();
    let throttle_events = |events: &mut tenantry::telemetry::EventStream| {
        let mut seen = Vec::new();
        while let Some(event) = events.try_recv() {
            let event = event.unwrap();
            if let EventKind::Throttled { throttled, refused } = &event.kind {
                seen.push((
                    event.partition.clone(),
                    event.manager.to_string(),
                    throttled.limit,
                    *refused,
                ));
            }
        }
        seen
    };
    // Refusals within one second are one event; a refusal in the next second is another,
    // counting every refusal before it.
    let started = std::time::Instant::now();
    for _ in 0..50 {
        assert!(throttled(increment(&rt, &acme, "k").await).is_some());
    }
    let first = throttle_events(&mut acme_events);
    // One event per second the refusals spanned (a second's edge may fall among them).
    let seconds_spanned = started.elapsed().as_secs() as usize + 2;
    assert!(
        !first.is_empty() && first.len() <= seconds_spanned,
        "{first:?}"
    );
    assert_eq!(
        first[0],
        (acme.clone(), "_quota".to_owned(), Limit::Rate, 1)
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(throttled(increment(&rt, &acme, "k").await).is_some());
    let next = throttle_events(&mut acme_events);
    assert_eq!(next.len(), 1, "{next:?}");
    assert!(next[0].3 > 50, "the count so far: {next:?}");
    assert!(throttle_events(&mut globex_events).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_counts_calls_in_flight_and_frees_their_places_when_they_end() {
    let rt = runtime();
    let acme = Partition::new("acme").unwrap();
    rt.kernel()
        .config()
        .set("tenants.acme.limits", json!({"concurrency": 2}))
        .unwrap();
    let slow = |key: &'static str| {
        let bus = rt.bus_for(&acme);
        tokio::spawn(async move {
            bus.invoke(
                "counters.sleep",
                json!({"millis": 300}),
                Invoke::default().key(tenantry::Key::new(key).unwrap()),
            )
            .await
        })
    };
    let (a, b) = (slow("a"), slow("b"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rt.quotas().usage(&acme).await.unwrap().in_flight, 2);
    assert_eq!(
        throttled(increment(&rt, &acme, "c").await).map(|t| t.limit),
        Some(Limit::Concurrency)
    );
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();
    increment(&rt, &acme, "c").await.unwrap();
    assert_eq!(rt.quotas().usage(&acme).await.unwrap().in_flight, 0);
}

#[test]
fn a_saturated_runtime_holds_each_partition_to_its_weighted_share() {
    let rt = runtime();
    let quotas = rt.quotas();
    let (acme, globex, initech) = (
        Partition::new("acme").unwrap(),
        Partition::new("globex").unwrap(),
        Partition::new("initech").unwrap(),
    );
    rt.kernel()
        .config()
        .set("tenants.globex.limits", json!({"weight": 3}))
        .unwrap();
    quotas.set_capacity(Some(8));
    // Alone, acme may take the whole capacity, and more is its own excess.
    let mut held: Vec<_> = (0..8).map(|_| quotas.admit(&acme).unwrap()).collect();
    let over = quotas.admit(&acme).unwrap_err();
    assert_eq!(over.limit, Limit::FairShare);
    // Others still get in while under their share: globex (weight 3) up to 8 × 3/4.
    for i in 0..6 {
        held.push(
            quotas
                .admit(&globex)
                .unwrap_or_else(|e| panic!("globex {i}: {e:?}")),
        );
    }
    std::thread::sleep(Duration::from_millis(2));
    assert_eq!(quotas.admit(&globex).unwrap_err().limit, Limit::FairShare);
    assert_eq!(quotas.admit(&acme).unwrap_err().limit, Limit::FairShare);
    held.push(quotas.admit(&initech).unwrap());
    // Below capacity again, nobody is held to a share.
    held.clear();
    let _more: Vec<_> = (0..8).map(|_| quotas.admit(&acme).unwrap()).collect();
    let usage = futures::executor::block_on(quotas.usage(&acme)).unwrap();
    assert_eq!(usage.throttled.fair_share, 2);
}
