//! Pods: topology checks, reconcile waves and failures, nodes, nesting, adoption,
//! mutation, persistence, telemetry, and a 1,000-node pod.

mod common;

use common::p;
use common::pods::*;
use serde_json::json;
use tenantry::pod::{NodeSpec, NodeStatus, OnParentStop, Topology, TopologyError};
use tenantry::telemetry::{EventKind, PodPhase};
use tenantry::{Error, Key, KeyPart, ManagerConfig, Pod, PodFactory, Runtime};

fn worker(name: impl Into<KeyPart>) -> NodeSpec {
    NodeSpec::agent::<Worker>(name, "workers")
}

fn runtime() -> Runtime {
    let rt = Runtime::in_memory();
    rt.register::<Worker>("workers", ManagerConfig::default())
        .unwrap();
    rt
}

#[test]
fn invalid_topologies_are_rejected_when_declared() {
    let err = |t: Result<Topology, TopologyError>| t.unwrap_err();
    assert!(matches!(
        err(Topology::builder("t").node(worker("a")).owns("a", "ghost").build()),
        TopologyError::UnknownEndpoint { missing, .. } if missing == "ghost"
    ));
    assert!(matches!(
        err(Topology::builder("t")
            .node(worker("a"))
            .depends_on("a", "a")
            .build()),
        TopologyError::SelfLink { .. }
    ));
    assert!(matches!(
        err(Topology::builder("t").node(worker("a")).node(worker("b")).node(worker("c")).owns("a", "c").owns("b", "c").build()),
        TopologyError::TwoOwners { node, .. } if node == "c"
    ));
    assert!(matches!(
        err(Topology::builder("t")
            .node(worker("a"))
            .node(worker("b"))
            .owns("a", "b")
            .owns("b", "a")
            .build()),
        TopologyError::TwoOwners { .. } | TopologyError::OwnershipCycle(_)
    ));
    assert!(matches!(
        err(Topology::builder("t").node(worker("a")).node(worker("b")).node(worker("c"))
            .owns("a", "b").owns("b", "c").owns("c", "a").build()),
        TopologyError::OwnershipCycle(cycle) if cycle.len() == 4
    ));
    assert!(matches!(
        err(Topology::builder("t")
            .node(worker("a"))
            .node(worker("b"))
            .depends_on("a", "b")
            .depends_on("b", "a")
            .build()),
        TopologyError::DependencyCycle(_)
    ));
    assert!(matches!(
        err(Topology::builder("t")
            .node(worker("a"))
            .node(worker("a"))
            .build()),
        TopologyError::DuplicateNode(_)
    ));
    assert!(matches!(
        err(Topology::builder("t").node(worker("")).build()),
        TopologyError::InvalidNodeName { .. }
    ));
}

struct BadManagerPod;
impl PodFactory for BadManagerPod {
    const NAME: &'static str = "bad_manager";
    fn topology() -> Result<Topology, TopologyError> {
        Topology::builder("bad")
            .node(NodeSpec::new(
                tenantry::pod::NodeKind::Agent,
                "a",
                "invoice",
                "workers",
            ))
            .build()
    }
}

struct MissingManagerPod;
impl PodFactory for MissingManagerPod {
    const NAME: &'static str = "missing_manager";
    fn topology() -> Result<Topology, TopologyError> {
        Topology::builder("m")
            .node(NodeSpec::agent::<Worker>("a", "nowhere"))
            .build()
    }
}

struct SelfPod;
impl PodFactory for SelfPod {
    const NAME: &'static str = "self_pod";
    fn topology() -> Result<Topology, TopologyError> {
        Topology::builder("s")
            .node(NodeSpec::pod::<SelfPod>("me", "self_pods"))
            .build()
    }
}

#[test]
fn topologies_that_do_not_fit_the_runtime_are_rejected_at_registration() {
    let rt = runtime();
    assert!(matches!(
        rt.register_pod::<BadManagerPod>("bad", ManagerConfig::default()),
        Err(Error::Topology(TopologyError::ManagerMismatch { actual, expected, .. })) if actual == "worker" && expected == "invoice"
    ));
    assert!(matches!(
        rt.register_pod::<MissingManagerPod>("missing", ManagerConfig::default()),
        Err(Error::Topology(TopologyError::UnknownManager { .. }))
    ));
    assert!(matches!(
        rt.register_pod::<SelfPod>("self_pods", ManagerConfig::default()),
        Err(Error::Topology(TopologyError::ContainsItself { .. }))
    ));
    // Nothing half-registered.
    assert!(rt.manager_dyn("bad").is_none());
}

struct ChainPod;
impl PodFactory for ChainPod {
    const NAME: &'static str = "chain";
    fn topology() -> Result<Topology, TopologyError> {
        Topology::builder("chain")
            .node(worker("a").eager())
            .node(worker("b"))
            .node(worker("c"))
            .node(worker("d").eager())
            .node(worker("lazy_top"))
            .depends_on("a", "b")
            .depends_on("b", "c")
            .depends_on("lazy_top", "a")
            .build()
    }
}

#[tokio::test]
async fn eager_nodes_and_prerequisites_start_in_dependency_waves() {
    let rt = runtime();
    rt.register_pod::<ChainPod>("chains", ManagerConfig::default())
        .unwrap();
    let (pod, report) = Pod::get(&rt, "chains", "c1", &p("alpha")).await.unwrap();
    assert_eq!(report.requested, ["a", "d"]);
    assert_eq!(report.waves, vec![vec!["c", "d"], vec!["b"], vec!["a"]]);
    assert_eq!(report.completed, ["c", "d", "b", "a"]);
    assert!(report.is_complete());
    // Reconcile again is idempotent: same instances.
    let a1 = pod.lookup_node("a").unwrap().unwrap();
    let again = pod.reconcile().await;
    assert!(again.is_complete());
    let a2 = pod.lookup_node("a").unwrap().unwrap();
    assert_eq!(a1.identity(), a2.identity());
    assert_eq!(
        rt.manager::<Worker>("workers")
            .unwrap()
            .stats(&p("alpha"))
            .count,
        4
    );
    // A lazy node's prerequisites are already up; ensure starts only it.
    assert!(pod.lookup_node("lazy_top").unwrap().is_none());
    pod.ensure_node("lazy_top").await.unwrap();
    assert!(pod.lookup_node("lazy_top").unwrap().is_some());
}

#[tokio::test]
async fn ensure_node_is_idempotent_and_refuses_unknown_names() {
    let rt = Runtime::in_memory();
    workspace_runtime(&rt);
    let (pod, _) = Pod::get(&rt, "workspace_pods", "w", &p("alpha"))
        .await
        .unwrap();
    let first = pod.ensure_node("reviewer").await.unwrap();
    first
        .call_json_dyn("note", json!({"text": "x"}), None)
        .await
        .unwrap();
    let second = pod.ensure_node("reviewer").await.unwrap();
    assert_eq!(
        second
            .call_json_dyn("note", json!({"text": "y"}), None)
            .await
            .unwrap(),
        json!(2),
        "same instance"
    );
    assert!(matches!(pod.ensure_node("ghost").await, Err(Error::UnknownNode(n)) if n == "ghost"));
    assert!(matches!(
        pod.lookup_node("ghost"),
        Err(Error::UnknownNode(_))
    ));
}

struct FailingPod;
impl PodFactory for FailingPod {
    const NAME: &'static str = "failing";
    fn topology() -> Result<Topology, TopologyError> {
        Topology::builder("failing")
            .node(worker("ok").eager())
            .node(
                worker("broken")
                    .eager()
                    .initial_state(json!({"notes": [], "fail_start": true})),
            )
            .node(worker("after").eager())
            .depends_on("after", "broken")
            .build()
    }
}

#[tokio::test]
async fn a_failed_reconcile_reports_failures_and_pending_nodes_and_keeps_the_pod() {
    let rt = runtime();
    rt.register_pod::<FailingPod>("failing_pods", ManagerConfig::default())
        .unwrap();
    let mut events = rt.subscribe();
    let alpha = p("alpha");
    let (pod, report) = Pod::get(&rt, "failing_pods", "f", &alpha).await.unwrap();
    assert_eq!(report.completed, ["ok"]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, "broken");
    assert!(
        report.failed[0].1.contains("refusing to start"),
        "{:?}",
        report.failed
    );
    assert_eq!(report.pending, ["after"]);
    assert!(!report.is_complete());
    // The pod is alive and says why.
    assert!(
        Pod::lookup(&rt, "failing_pods", "f", &alpha)
            .await
            .unwrap()
            .is_some()
    );
    let err = pod.ensure_node("after").await.unwrap_err();
    assert!(
        matches!(&err, Error::NodeFailed { node, reason } if node == "after" && reason.contains("broken")),
        "{err}"
    );
    let mut exception = false;
    while let Some(Ok(e)) = events.try_recv() {
        if let EventKind::PodReconcile {
            phase: PodPhase::Exception,
            failed,
            pending,
            duration,
            ..
        } = e.kind
        {
            assert_eq!(e.partition, alpha);
            assert_eq!((failed, pending), (1, 1));
            assert!(duration.is_some());
            exception = true;
        }
    }
    assert!(exception);
}

struct TeamPod;
impl PodFactory for TeamPod {
    const NAME: &'static str = "team";
    fn topology() -> Result<Topology, TopologyError> {
        Topology::builder("team")
            .node(worker("lead").eager())
            .node(worker(KeyPart::Tuple(vec!["review".into(), "1".into()])))
            .build()
    }
}

struct OrgPod;
impl PodFactory for OrgPod {
    const NAME: &'static str = "org";
    fn topology() -> Result<Topology, TopologyError> {
        Topology::builder("org")
            .node(NodeSpec::pod::<TeamPod>("editorial", "teams").eager())
            .node(NodeSpec::pod::<TeamPod>("planning", "teams"))
            .build()
    }
}

#[tokio::test]
async fn nested_pods_inherit_the_partition_in_two_tenants() {
    let rt = runtime();
    rt.register_pod::<TeamPod>("teams", ManagerConfig::default())
        .unwrap();
    rt.register_pod::<OrgPod>("orgs", ManagerConfig::default())
        .unwrap();
    let workers = rt.manager::<Worker>("workers").unwrap();
    let (alpha, beta) = (p("alpha"), p("beta"));
    let (org_a, ra) = Pod::get(&rt, "orgs", "acme", &alpha).await.unwrap();
    let (_org_b, rb) = Pod::get(&rt, "orgs", "acme", &beta).await.unwrap();
    assert!(ra.is_complete() && rb.is_complete());
    // The nested team pod's key is (org, acme, editorial); its lead is keyed under it.
    let team_key = Key::tuple(["org", "acme", "editorial"]).unwrap();
    let lead_key = Key::tuple([
        KeyPart::from("team"),
        KeyPart::from(&team_key),
        KeyPart::from("lead"),
    ])
    .unwrap();
    let lead_a = workers
        .lookup(&lead_key, &alpha)
        .unwrap()
        .expect("alpha's nested lead");
    let lead_b = workers
        .lookup(&lead_key, &beta)
        .unwrap()
        .expect("beta's nested lead");
    assert!(!lead_a.same_instance(&lead_b));
    let team_a = Pod::lookup(&rt, "teams", &team_key, &alpha)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(team_a.partition(), &alpha);
    assert_eq!(
        rt.binding(team_a.identity()).unwrap().parent.as_ref(),
        Some(org_a.identity())
    );
    assert_eq!(
        rt.binding(lead_a.identity()).unwrap().parent.as_ref(),
        Some(team_a.identity())
    );
    // Lazy nested pod: planning starts in alpha only.
    org_a.ensure_node("planning").await.unwrap();
    let planning = Key::tuple(["org", "acme", "planning"]).unwrap();
    assert!(
        Pod::lookup(&rt, "teams", &planning, &alpha)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Pod::lookup(&rt, "teams", &planning, &beta)
            .await
            .unwrap()
            .is_none()
    );
    // A structured node name works like a string one.
    let review = team_a
        .ensure_node(KeyPart::Tuple(vec!["review".into(), "1".into()]))
        .await
        .unwrap();
    assert_eq!(review.identity().partition, alpha);
    let snap = team_a.snapshot().unwrap();
    assert!(
        snap.iter()
            .any(|n| n.name == r#""review","1""# && n.status == NodeStatus::Adopted),
        "{snap:?}"
    );

    // A mutation cannot make a nested pod contain its parent at any depth.
    let mut m = team_a.begin_mutation().unwrap();
    m.add_node(NodeSpec::pod::<OrgPod>("loop", "orgs"));
    let err = m.commit().await.unwrap_err();
    assert!(
        matches!(&err, Error::Topology(TopologyError::ContainsItself { path, .. }) if path == &["team", "org", "team"]),
        "{err}"
    );
}

#[tokio::test]
async fn adoption_by_child_id_resolves_only_in_the_parents_partition() {
    let rt = runtime();
    let workers = rt.manager::<Worker>("workers").unwrap();
    let (alpha, beta) = (p("alpha"), p("beta"));
    let parent = workers.get("parent", &alpha).await.unwrap();
    let beta_child = workers.get("child", &beta).await.unwrap();
    let err = rt
        .adopt(
            parent.identity(),
            "workers",
            "child",
            OnParentStop::Continue,
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(id) if id.partition == alpha));
    assert!(rt.binding(beta_child.identity()).is_none());
    // The explicit escape hatch can do it.
    rt.adopt_across_partitions_unchecked(parent.identity(), &beta_child, OnParentStop::Continue);
    assert_eq!(
        rt.binding(beta_child.identity()).unwrap().parent.as_ref(),
        Some(parent.identity())
    );
    // In-partition adoption works.
    workers.get("child", &alpha).await.unwrap();
    rt.adopt(parent.identity(), "workers", "child", OnParentStop::Stop)
        .unwrap();
}

struct StrictPod;
impl PodFactory for StrictPod {
    const NAME: &'static str = "strict";
    fn topology() -> Result<Topology, TopologyError> {
        Topology::builder("strict")
            .node(worker("stays").eager())
            .node(worker("goes").eager().on_parent_stop(OnParentStop::Stop))
            .build()
    }
}

#[tokio::test]
async fn children_follow_their_policy_when_the_pod_stops() {
    let rt = runtime();
    let pods = rt
        .register_pod::<StrictPod>("strict_pods", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let (pod, _) = pods.get("s", &alpha).await.unwrap();
    let goes = pod.lookup_node("goes").unwrap().unwrap();
    goes.call_json_dyn("note", json!({"text": "keep me"}), None)
        .await
        .unwrap();
    let goes_id = goes.identity().clone();
    pods.stop("s", &alpha).await.unwrap();
    let workers = rt.manager::<Worker>("workers").unwrap();
    assert!(
        workers.lookup(&goes_id.key, &alpha).unwrap().is_none(),
        "stopped with its parent"
    );
    assert!(
        rt.store().get(&goes_id).await.unwrap().is_some(),
        "and hibernated"
    );
    let stays = Key::tuple(["strict", "s", "stays"]).unwrap();
    assert!(
        workers.lookup(&stays, &alpha).unwrap().is_some(),
        "continued as an orphan"
    );
    // Thaw brings back the stopped eager node with its state and re-adopts both.
    let (pod, report) = pods.get("s", &alpha).await.unwrap();
    assert!(report.is_complete());
    assert!(
        pod.snapshot()
            .unwrap()
            .iter()
            .all(|n| n.status == NodeStatus::Adopted)
    );
    let goes = pod.lookup_node("goes").unwrap().unwrap();
    assert_eq!(
        goes.call_json_dyn("note", json!({"text": "again"}), None)
            .await
            .unwrap(),
        json!(2)
    );
}

#[tokio::test]
async fn mutations_version_structural_changes_only_and_refuse_concurrency() {
    let rt = Runtime::in_memory();
    workspace_runtime(&rt);
    let alpha = p("alpha");
    let (pod, _) = Pod::get(&rt, "workspace_pods", "w", &alpha).await.unwrap();
    assert_eq!(pod.topology().version, 1);

    let mut m = pod.begin_mutation().unwrap();
    assert!(
        matches!(pod.begin_mutation(), Err(Error::MutationInProgress(_))),
        "a second concurrent mutation is refused"
    );
    m.add_node(NodeSpec::agent::<Worker>("auditor", "workspace_workers").eager())
        .owns("coordinator", "auditor");
    let report = m.commit().await.unwrap();
    assert_eq!(report.version, 2);
    assert!(report.structural);
    assert!(report.reconcile.completed.contains(&"auditor".to_string()));
    assert!(pod.lookup_node("auditor").unwrap().is_some());

    // Metadata only: no version bump.
    let mut m = pod.begin_mutation().unwrap();
    m.set_meta("auditor", "owner", json!("sec-team"));
    let report = m.commit().await.unwrap();
    assert_eq!(report.version, 2);
    assert!(!report.structural);
    assert_eq!(
        pod.topology().node(&"auditor".into()).unwrap().metadata["owner"],
        json!("sec-team")
    );

    // An invalid change is refused and changes nothing.
    let mut m = pod.begin_mutation().unwrap();
    m.owns("auditor", "reviewer");
    assert!(matches!(
        m.commit().await,
        Err(Error::Topology(TopologyError::TwoOwners { .. }))
    ));
    assert_eq!(pod.topology().version, 2);

    // Removing a node stops it.
    let auditor = pod
        .lookup_node("auditor")
        .unwrap()
        .unwrap()
        .identity()
        .clone();
    let mut m = pod.begin_mutation().unwrap();
    m.remove_node("auditor");
    let report = m.commit().await.unwrap();
    assert_eq!(report.removed, ["auditor"]);
    assert_eq!(report.version, 3);
    let workers = rt.manager::<Worker>("workspace_workers").unwrap();
    assert!(workers.lookup(&auditor.key, &alpha).unwrap().is_none());
    assert!(matches!(
        pod.lookup_node("auditor"),
        Err(Error::UnknownNode(_))
    ));

    // The mutated topology is what hibernates and thaws.
    rt.manager_dyn("workspace_pods")
        .unwrap()
        .stop_dyn(Key::new("w").unwrap(), &alpha)
        .await
        .unwrap();
    let (pod, _) = Pod::get(&rt, "workspace_pods", "w", &alpha).await.unwrap();
    assert_eq!(pod.topology().version, 3);
}

struct BigPod;
impl PodFactory for BigPod {
    const NAME: &'static str = "big";
    fn topology() -> Result<Topology, TopologyError> {
        (0..1000)
            .fold(Topology::builder("big"), |t, i| {
                t.node(worker(format!("n{i}")).eager())
            })
            .build()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_node_pod_reconciles_and_thaws() {
    let rt = runtime();
    let pods = rt
        .register_pod::<BigPod>("big_pods", ManagerConfig::default())
        .unwrap();
    let alpha = p("alpha");
    let (_, report) = pods.get("b", &alpha).await.unwrap();
    assert_eq!(report.completed.len(), 1000);
    assert_eq!(
        rt.manager::<Worker>("workers").unwrap().stats(&alpha).count,
        1000
    );
    pods.stop("b", &alpha).await.unwrap();
    let (pod, report) = pods.get("b", &alpha).await.unwrap();
    assert_eq!(report.completed.len(), 1000);
    assert!(
        pod.snapshot()
            .unwrap()
            .iter()
            .all(|n| n.status == NodeStatus::Adopted)
    );
    assert_eq!(
        rt.manager::<Worker>("workers")
            .unwrap()
            .stats(&p("beta"))
            .count,
        0
    );
}
