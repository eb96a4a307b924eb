//! Membership over the NATS server named by TENANTRY_TEST_NATS_URL (skipped, saying so,
//! when it is not set): members see each other; a member that stops renewing stops
//! serving before the others count it dead; a clean leave is seen at the next read; a
//! live name cannot be taken twice, and a member whose entry someone else wrote is
//! deposed.

mod common;

use common::*;
use std::time::Duration;
use tenantry_cluster::{ClusterError, MemberState, Membership, MembershipConfig};
use tokio::time::Instant;

/// A cluster name no other run uses.
fn cluster(tag: &str) -> String {
    unique(&format!("t{tag}"))
}

/// Short leases, so the tests take seconds; long enough that a renewal or a read held up
/// by a loaded 2-core machine (every test binary of the workspace, and the NATS server,
/// sharing it) does not count a live member dead: 2.4 s leases still lost a member once
/// in a full workspace run, so a stalled NATS write gets 2.7 s before it counts.
fn quick() -> MembershipConfig {
    MembershipConfig {
        lease: Duration::from_millis(3600),
        margin: Duration::from_millis(900),
        renew_every: Duration::from_millis(900),
    }
}

fn names(m: &Membership) -> Vec<String> {
    m.live().into_iter().map(|m| m.node).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_each_other_and_a_silent_one_stops_serving_before_it_is_counted_dead() {
    let Some(client) = client().await else { return };
    let c = cluster("see");
    let a = Membership::join(client.clone(), &c, "a", "10.0.0.1:7000", quick())
        .await
        .unwrap();
    let b = Membership::join(client.clone(), &c, "b", "10.0.0.2:7000", quick())
        .await
        .unwrap();
    assert!(a.serving() && b.serving());
    eventually("a sees both", Duration::from_secs(3), || {
        names(&a) == ["a", "b"]
    })
    .await;
    eventually("b sees both", Duration::from_secs(3), || {
        names(&b) == ["a", "b"]
    })
    .await;
    assert_eq!(a.me().address, "10.0.0.1:7000");
    // Still both after several leases: renewals keep them alive.
    tokio::time::sleep(quick().lease * 2).await;
    assert_eq!(names(&a), ["a", "b"]);
    assert!(b.serving());

    // B goes silent (as a crash or a pause would leave it): from its last renewal it
    // serves at most lease - margin; A counts it dead only after lease + margin.
    assert!(b.serving());
    let silent_at = Instant::now();
    drop(b);
    // At the latest, A noticed B's last renewal a period after it and counts it dead at
    // the first read, one a period, that begins a lease and a margin after that: 6.3 s
    // here. A read that fails or is slow (up to two periods, as on a loaded NATS) does
    // not count, so the wait allows for two such reads: 9.9 s.
    let config = quick();
    let latest = config.lease + config.margin + config.renew_every * 6;
    let dead_after = eventually("a counts b dead", latest, || names(&a) == ["a"]).await;
    assert!(
        silent_at.elapsed() >= config.lease + config.margin - config.renew_every,
        "counted dead after {dead_after:?}, before a lease and a margin could pass"
    );
    a.leave().await.unwrap();
    drop_buckets(&client, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_cannot_renew_stops_serving_within_its_lease() {
    let Some(client) = client().await else { return };
    let c = cluster("cut");
    // Its own connection, closed under it: renewals fail, the lease runs out.
    let own = client_for_one().await;
    let m = Membership::join(own.clone(), &c, "cut", "x", quick())
        .await
        .unwrap();
    assert!(m.serving());
    own.drain().await.unwrap();
    let config = quick();
    let stopped = eventually("stops serving", config.lease * 2, || !m.serving()).await;
    assert!(
        stopped <= config.lease - config.margin + config.renew_every,
        "{stopped:?}"
    );
    assert!(!m.deposed());
    drop(m);
    drop_buckets(&client, &c).await;
}

async fn client_for_one() -> async_nats::Client {
    async_nats::connect(std::env::var(NATS_VAR).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_leave_is_seen_at_once_and_a_drain_is_published() {
    let Some(client) = client().await else { return };
    let c = cluster("leave");
    let a = Membership::join(client.clone(), &c, "a", "x", quick())
        .await
        .unwrap();
    let b = Membership::join(client.clone(), &c, "b", "y", quick())
        .await
        .unwrap();
    eventually("a sees b", Duration::from_secs(3), || {
        names(&a) == ["a", "b"]
    })
    .await;
    b.drain();
    eventually("a sees b draining", Duration::from_secs(3), || {
        a.live()
            .iter()
            .any(|m| m.node == "b" && m.state == MemberState::Draining)
    })
    .await;
    b.leave().await.unwrap();
    let gone = eventually("a sees b gone", Duration::from_secs(3), || {
        names(&a) == ["a"]
    })
    .await;
    assert!(
        gone < quick().lease,
        "a leave is not waited out like a crash: {gone:?}"
    );
    a.leave().await.unwrap();
    drop_buckets(&client, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_name_cannot_join_twice_and_an_overwritten_member_is_deposed() {
    let Some(client) = client().await else { return };
    let c = cluster("dup");
    let first = Membership::join(client.clone(), &c, "n", "x", quick())
        .await
        .unwrap();
    let second = Membership::join(client.clone(), &c, "n", "y", quick()).await;
    assert!(
        matches!(second, Err(ClusterError::DuplicateNode(ref n)) if n == "n"),
        "{:?}",
        second.err()
    );
    assert!(first.serving());
    // Someone writes n's entry behind its back: n stops serving at its next renewal.
    let js = async_nats::jetstream::new(client.clone());
    let kv = js
        .get_key_value(format!("tenantry_{c}_members"))
        .await
        .unwrap();
    kv.put("n", "{}".into()).await.unwrap();
    eventually("deposed", Duration::from_secs(3), || {
        first.deposed() && !first.serving()
    })
    .await;
    drop(first);
    drop_buckets(&client, &c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_members_name_is_taken_over_after_a_quiet_lease() {
    let Some(client) = client().await else { return };
    let c = cluster("again");
    let before = Membership::join(client.clone(), &c, "n", "x", quick())
        .await
        .unwrap();
    let incarnation = before.me().incarnation;
    drop(before);
    let started = Instant::now();
    let after = Membership::join(client.clone(), &c, "n", "x", quick())
        .await
        .unwrap();
    let config = quick();
    assert!(started.elapsed() >= config.lease + config.margin);
    assert!(after.serving());
    assert_ne!(after.me().incarnation, incarnation);
    after.leave().await.unwrap();
    drop_buckets(&client, &c).await;
}

#[tokio::test]
async fn bad_names_and_timings_are_refused_before_connecting_to_anything() {
    let Some(client) = client().await else { return };
    for (cluster, node) in [
        ("", "a"),
        ("UP", "a"),
        ("c", "a.b"),
        ("c", ""),
        ("c", &"x".repeat(65)),
    ] {
        let r = Membership::join(client.clone(), cluster, node, "x", quick()).await;
        assert!(
            matches!(r, Err(ClusterError::InvalidName { .. })),
            "{cluster:?} {node:?}"
        );
    }
    // Two renewals of 1.5 s do not fit in 3.6 s less 0.9 s.
    let tight = MembershipConfig {
        renew_every: Duration::from_millis(1500),
        ..quick()
    };
    assert!(matches!(
        tight.validate(),
        Err(ClusterError::InvalidTiming(_))
    ));
    assert!(MembershipConfig::default().validate().is_ok());
}
