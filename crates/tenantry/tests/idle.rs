//! Idle hibernation: the timeout, keep-alive owners (attach, detach, owner exit) and touch.
//! Runs on tokio's paused clock, so the timings are exact and the tests fast.

mod common;

use common::*;
use std::time::Duration;
use tenantry::telemetry::EventKind;
use tenantry::{ManagerConfig, Runtime};

fn runtime_with_idle(ms: u64) -> (Runtime, tenantry::Manager<Counter>) {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>(
            "counters",
            ManagerConfig::default().idle_timeout(Duration::from_millis(ms)),
        )
        .unwrap();
    (rt, m)
}

async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

#[tokio::test(start_paused = true)]
async fn idle_instances_hibernate_after_the_timeout_and_thaw_on_next_get() {
    let (rt, m) = runtime_with_idle(1000);
    let alpha = p("alpha");
    let mut events = rt.subscribe();
    let h = m.get("a", &alpha).await.unwrap();
    h.call(Increment { by: 2 }).await.unwrap();
    sleep_ms(600).await;
    h.call(Increment { by: 1 }).await.unwrap(); // activity resets the clock
    sleep_ms(600).await;
    assert!(
        m.lookup("a", &alpha).unwrap().is_some(),
        "not idle for the whole timeout yet"
    );
    sleep_ms(1000).await;
    assert!(
        m.lookup("a", &alpha).unwrap().is_none(),
        "hibernated after being idle"
    );
    let mut idle_stopped = false;
    while let Some(Ok(e)) = events.try_recv() {
        if let EventKind::IdleStopped { idle_for } = e.kind {
            assert!(idle_for >= Duration::from_millis(1000));
            assert_eq!(e.partition, alpha);
            idle_stopped = true;
        }
    }
    assert!(idle_stopped);
    assert_eq!(
        m.get("a", &alpha).await.unwrap().call(Get).await.unwrap(),
        3
    );
}

#[tokio::test(start_paused = true)]
async fn idle_hibernation_is_off_by_default() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    m.get("a", &p("alpha")).await.unwrap();
    sleep_ms(3_600_000).await;
    assert!(m.lookup("a", &p("alpha")).unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn an_attached_owner_keeps_the_instance_alive_until_it_detaches() {
    let (_rt, m) = runtime_with_idle(1000);
    let alpha = p("alpha");
    m.get("a", &alpha).await.unwrap();
    let owner = m.attach("a", &alpha).unwrap();
    sleep_ms(5000).await;
    assert!(
        m.lookup("a", &alpha).unwrap().is_some(),
        "an owner keeps it alive"
    );
    owner.detach();
    sleep_ms(600).await;
    assert!(
        m.lookup("a", &alpha).unwrap().is_some(),
        "the idle clock restarts at detach"
    );
    sleep_ms(1000).await;
    assert!(m.lookup("a", &alpha).unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn an_owner_that_goes_away_counts_as_a_detach() {
    let (_rt, m) = runtime_with_idle(1000);
    let alpha = p("alpha");
    let h = m.get("a", &alpha).await.unwrap();
    let guard = m.attach("a", &alpha).unwrap();
    let owner_task = tokio::spawn(async move {
        let _held = guard;
        tokio::time::sleep(Duration::from_millis(3000)).await;
        // The task ends here, and with it the keep-alive.
    });
    sleep_ms(2000).await;
    assert_eq!(h.owners(), 1);
    owner_task.await.unwrap();
    assert_eq!(h.owners(), 0);
    sleep_ms(1500).await;
    assert!(m.lookup("a", &alpha).unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn touch_resets_the_idle_timer() {
    let (_rt, m) = runtime_with_idle(1000);
    let alpha = p("alpha");
    m.get("a", &alpha).await.unwrap();
    for _ in 0..5 {
        sleep_ms(700).await;
        m.touch("a", &alpha).unwrap();
    }
    assert!(m.lookup("a", &alpha).unwrap().is_some());
    sleep_ms(1500).await;
    assert!(m.lookup("a", &alpha).unwrap().is_none());
    assert!(matches!(
        m.touch("a", &alpha),
        Err(tenantry::Error::NotFound(_))
    ));
    assert!(matches!(
        m.attach("a", &alpha),
        Err(tenantry::Error::NotFound(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn keep_alives_held_by_an_instance_last_as_long_as_it_does() {
    let (_rt, m) = runtime_with_idle(1000);
    let alpha = p("alpha");
    let parent = m.get("parent", &alpha).await.unwrap();
    let child_partition = parent
        .call(Adopt {
            key: "child".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        child_partition.as_deref(),
        Some("alpha"),
        "the child runs in the parent's partition"
    );
    assert!(m.lookup("child", &p("beta")).unwrap().is_none());
    sleep_ms(1500).await;
    assert!(
        m.lookup("parent", &alpha).unwrap().is_none(),
        "the parent idled out"
    );
    assert!(
        m.lookup("child", &alpha).unwrap().is_some(),
        "the child's clock restarted when the parent let go"
    );
    sleep_ms(1000).await;
    assert!(m.lookup("child", &alpha).unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_turn_longer_than_the_timeout_and_letters_behind_it_keep_the_instance_live() {
    let (_rt, m) = runtime_with_idle(1000);
    let alpha = p("alpha");
    let h = m.get("a", &alpha).await.unwrap();
    let long = tokio::spawn({
        let h = h.clone();
        async move { h.call(Sleep { millis: 3000 }).await }
    });
    sleep_ms(10).await;
    // Queued behind the long turn, while the sweeper looks several times.
    let behind = h.call(Increment { by: 1 });
    let (long, behind) = (long.await.unwrap(), behind.await);
    long.unwrap();
    assert_eq!(behind.unwrap(), 1);
    assert!(
        m.lookup("a", &alpha).unwrap().is_some(),
        "busy until its last turn ended"
    );
    sleep_ms(1500).await;
    assert!(m.lookup("a", &alpha).unwrap().is_none(), "then idle");
}
