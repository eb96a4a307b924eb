//! Instance managers: get-or-start, lookup, stop, stats, and partition isolation.

mod common;

use common::*;
use std::sync::Arc;
use tenantry::{Error, Key, ManagerConfig, Partition, Runtime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_gets_of_one_key_yield_one_instance() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let m = m.clone();
        let alpha = alpha.clone();
        tasks.push(tokio::spawn(async move {
            let h = m.get("shared", &alpha).await.unwrap();
            h.call(Increment { by: 1 }).await.unwrap();
            h
        }));
    }
    let mut handles = Vec::new();
    for t in tasks {
        handles.push(t.await.unwrap());
    }
    assert!(handles.iter().all(|h| h.same_instance(&handles[0])));
    assert_eq!(handles[0].call(Get).await.unwrap(), 1000);
    assert_eq!(m.stats(&alpha).count, 1);
}

#[tokio::test]
async fn lookup_never_starts_an_instance() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    assert!(m.lookup("a", &alpha).unwrap().is_none());
    assert_eq!(m.stats(&alpha).count, 0);
    let h = m.get("a", &alpha).await.unwrap();
    assert!(m.lookup("a", &alpha).unwrap().unwrap().same_instance(&h));
}

#[tokio::test]
async fn stop_of_an_unknown_key_is_not_found() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let err = m.stop("ghost", &p("alpha")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(id) if id.key.encoded() == "ghost"));
}

#[tokio::test]
async fn the_same_key_in_two_partitions_and_unpartitioned_is_three_instances() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let (alpha, beta, none) = (p("alpha"), p("beta"), Partition::unpartitioned());
    let a = m.get("k", &alpha).await.unwrap();
    let b = m.get("k", &beta).await.unwrap();
    let n = m.get("k", &none).await.unwrap();
    a.call(Increment { by: 1 }).await.unwrap();
    b.call(Increment { by: 10 }).await.unwrap();
    n.call(Increment { by: 100 }).await.unwrap();
    assert!(!a.same_instance(&b) && !a.same_instance(&n) && !b.same_instance(&n));

    // stats sees only its own partition.
    for (part, handle) in [(&alpha, &a), (&beta, &b), (&none, &n)] {
        let stats = m.stats(part);
        assert_eq!(stats.count, 1);
        assert_eq!(stats.keys, vec![Key::new("k").unwrap()]);
        assert_eq!(&handle.identity().partition, part);
    }
    m.get("only-alpha", &alpha).await.unwrap();
    assert_eq!(m.stats(&alpha).count, 2);
    assert_eq!(m.stats(&beta).count, 1);

    // stop in alpha leaves beta and unpartitioned running, and writes alpha's checkpoint only.
    m.stop("k", &alpha).await.unwrap();
    assert!(m.lookup("k", &alpha).unwrap().is_none());
    assert!(m.lookup("k", &beta).unwrap().is_some());
    assert!(m.lookup("k", &none).unwrap().is_some());
    assert_eq!(rt.store().list(&alpha, "counters").await.unwrap().len(), 1);
    assert!(rt.store().list(&beta, "counters").await.unwrap().is_empty());
    assert!(rt.store().list(&none, "counters").await.unwrap().is_empty());

    // thaw in alpha restores alpha's count only.
    m.stop("k", &beta).await.unwrap();
    m.stop("k", &none).await.unwrap();
    assert_eq!(
        m.get("k", &alpha).await.unwrap().call(Get).await.unwrap(),
        1
    );
    assert_eq!(
        m.get("k", &beta).await.unwrap().call(Get).await.unwrap(),
        10
    );
    assert_eq!(
        m.get("k", &none).await.unwrap().call(Get).await.unwrap(),
        100
    );
}

#[tokio::test]
async fn structured_keys_are_distinct_from_strings_and_round_trip() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let tuple = Key::tuple(["workspace", "workspace-123", "reviewer"]).unwrap();
    let h = m.get(&tuple, &alpha).await.unwrap();
    h.call(Increment { by: 4 }).await.unwrap();
    let via_tuple = m
        .get(("workspace", "workspace-123", "reviewer"), &alpha)
        .await
        .unwrap();
    assert!(via_tuple.same_instance(&h));
    m.stop(&tuple, &alpha).await.unwrap();
    let listed = rt.store().list(&alpha, "counters").await.unwrap();
    assert_eq!(listed[0].0, tuple);
    assert_eq!(
        m.get(&tuple, &alpha)
            .await
            .unwrap()
            .call(Get)
            .await
            .unwrap(),
        4
    );
}

#[tokio::test]
async fn invalid_keys_and_names_are_typed_errors() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    assert!(matches!(
        m.get("", &p("alpha")).await,
        Err(Error::InvalidKey(_))
    ));
    assert!(matches!(
        m.get("[x", &p("alpha")).await,
        Err(Error::InvalidKey(_))
    ));
    assert!(matches!(
        rt.register::<Counter>("counters", ManagerConfig::default()),
        Err(Error::DuplicateManager(_))
    ));
    assert!(matches!(
        rt.register::<Counter>("bad/name", ManagerConfig::default()),
        Err(Error::InvalidName { .. })
    ));
    assert!(rt.manager::<Counter>("counters").is_ok());
    assert!(matches!(
        rt.manager::<Counter>("nope"),
        Err(Error::UnknownManager(_))
    ));
}

#[tokio::test]
async fn two_runtimes_share_nothing() {
    let one = Runtime::in_memory();
    let two = Runtime::in_memory();
    let m1 = one
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let m2 = two
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    m1.get("k", &alpha)
        .await
        .unwrap()
        .call(Increment { by: 1 })
        .await
        .unwrap();
    assert!(m2.lookup("k", &alpha).unwrap().is_none());
    m1.stop("k", &alpha).await.unwrap();
    assert!(
        two.store()
            .list(&alpha, "counters")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_during_a_stop_wait_and_thaw_the_new_checkpoint() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let h = m.get("k", &alpha).await.unwrap();
    for _ in 0..50 {
        h.tell(Increment { by: 1 }).unwrap();
    }
    let stopper = {
        let m = m.clone();
        let alpha = alpha.clone();
        tokio::spawn(async move { m.stop("k", &alpha).await })
    };
    let getters: Vec<_> = (0..20)
        .map(|_| {
            let m = m.clone();
            let alpha = alpha.clone();
            tokio::spawn(async move { m.get("k", &alpha).await.unwrap() })
        })
        .collect();
    stopper.await.unwrap().unwrap();
    let mut seen = Vec::new();
    for g in getters {
        seen.push(g.await.unwrap());
    }
    // Whatever incarnation each getter got, the count was never lost.
    let live = m.get("k", &alpha).await.unwrap();
    assert_eq!(live.call(Get).await.unwrap(), 50);
    let stats = m.stats(&alpha);
    assert_eq!(stats.count, 1);
    let _ = Arc::new(seen);
}

#[tokio::test]
async fn shutdown_hibernates_everything_and_refuses_new_activations() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("counters", ManagerConfig::default())
        .unwrap();
    for part in ["alpha", "beta"] {
        for key in ["a", "b", "c"] {
            m.get(key, &p(part))
                .await
                .unwrap()
                .call(Increment { by: 2 })
                .await
                .unwrap();
        }
    }
    let report = rt.shutdown().await;
    assert_eq!(report.stopped, 6);
    assert!(report.errors.is_empty());
    assert_eq!(
        rt.store().list(&p("beta"), "counters").await.unwrap().len(),
        3
    );
    assert!(matches!(
        m.get("a", &p("alpha")).await,
        Err(Error::ShutDown)
    ));
}

#[tokio::test]
async fn gets_the_admission_refuses_fail_for_new_and_live_instances_alike() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("admitted", ManagerConfig::default())
        .unwrap();
    let acme = p("acme");
    let not_x: tenantry::Admission =
        std::sync::Arc::new(|id: &tenantry::Identity| !id.key.encoded().starts_with('x'));
    rt.set_admission(Some(not_x));
    match m.get("x1", &acme).await {
        Err(tenantry::Error::ServedElsewhere(id)) => {
            assert_eq!(
                (id.key.encoded(), id.partition.clone()),
                ("x1", acme.clone())
            );
        }
        other => panic!("expected ServedElsewhere, got {other:?}"),
    }
    assert!(m.lookup("x1", &acme).unwrap().is_none(), "nothing started");
    let y = m.get("y1", &acme).await.unwrap();
    // A live instance is refused too (a node past its lease answers for nothing)...
    rt.set_admission(Some(std::sync::Arc::new(|_: &tenantry::Identity| false)));
    assert!(matches!(
        m.get("y1", &acme).await,
        Err(tenantry::Error::ServedElsewhere(_))
    ));
    // ... though it stays live until the node hands it off, and serves again when
    // admitted again.
    assert!(m.lookup("y1", &acme).unwrap().unwrap().same_instance(&y));
    rt.set_admission(None);
    assert!(m.get("y1", &acme).await.unwrap().same_instance(&y));
    m.stop("y1", &acme).await.unwrap();
    rt.set_admission(None);
    assert!(m.get("x1", &acme).await.is_ok());
}

#[tokio::test]
async fn stop_where_hibernates_exactly_the_matching_instances_across_partitions() {
    let rt = Runtime::in_memory();
    let m = rt
        .register::<Counter>("picked", ManagerConfig::default())
        .unwrap();
    for (key, partition) in [("x1", "acme"), ("x2", "globex"), ("y1", "acme")] {
        let h = m.get(key, &p(partition)).await.unwrap();
        h.call(Increment { by: 2 }).await.unwrap();
    }
    let report = rt
        .stop_where(&|id: &tenantry::Identity| id.key.encoded().starts_with('x'))
        .await;
    assert_eq!((report.stopped, report.errors.len()), (2, 0));
    assert!(m.lookup("x1", &p("acme")).unwrap().is_none());
    assert!(m.lookup("x2", &p("globex")).unwrap().is_none());
    assert!(m.lookup("y1", &p("acme")).unwrap().is_some());
    // Hibernated, not lost.
    let thawed = m.get("x1", &p("acme")).await.unwrap();
    assert_eq!(thawed.call(Get).await.unwrap(), 2);
}
