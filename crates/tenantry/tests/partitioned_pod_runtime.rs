//! The reference scenario: one workspace pod key in two tenant partitions.

mod common;

use common::p;
use common::pods::*;
use serde_json::json;
use tenantry::pod::NodeStatus;
use tenantry::{Identity, Key, Pod, Runtime};

#[tokio::test]
async fn workspace_pods_in_two_partitions_stay_apart_through_stop_and_thaw() {
    let rt = Runtime::in_memory();
    let _pods = workspace_runtime(&rt);
    let alpha = p("tenant_alpha");
    let beta = p("tenant_beta");

    let (pod_a, report_a) = Pod::get(&rt, "workspace_pods", "workspace-123", &alpha)
        .await
        .unwrap();
    let (pod_b, report_b) = Pod::get(&rt, "workspace_pods", "workspace-123", &beta)
        .await
        .unwrap();
    assert_eq!(report_a.completed, ["coordinator"]);
    assert_eq!(report_b.completed, ["coordinator"]);
    assert_ne!(pod_a.identity(), pod_b.identity(), "two pods");

    let workers = rt.manager::<Worker>("workspace_workers").unwrap();
    // Two coordinators, each in its own partition, under (pod factory, pod key, node).
    let coordinator_key = Key::tuple(["workspace", "workspace-123", "coordinator"]).unwrap();
    let reviewer_key = Key::tuple(["workspace", "workspace-123", "reviewer"]).unwrap();
    let ca = workers
        .lookup(&coordinator_key, &alpha)
        .unwrap()
        .expect("alpha coordinator");
    let cb = workers
        .lookup(&coordinator_key, &beta)
        .unwrap()
        .expect("beta coordinator");
    assert!(!ca.same_instance(&cb));
    assert_eq!(ca.identity().partition, alpha);
    assert_eq!(cb.identity().partition, beta);
    // Each coordinator's parent binding names its own tenant's pod.
    let bound_a = rt.binding(ca.identity()).unwrap().parent.unwrap();
    let bound_b = rt.binding(cb.identity()).unwrap().parent.unwrap();
    assert_eq!(&bound_a, pod_a.identity());
    assert_eq!(&bound_b, pod_b.identity());
    assert_eq!(bound_a.partition, alpha);
    assert_eq!(bound_b.partition, beta);

    // Reviewers start in neither.
    assert!(workers.lookup(&reviewer_key, &alpha).unwrap().is_none());
    assert!(workers.lookup(&reviewer_key, &beta).unwrap().is_none());

    // ensure_node in alpha starts alpha's reviewer only, adopted by alpha's coordinator.
    let reviewer = pod_a.ensure_node("reviewer").await.unwrap();
    assert_eq!(reviewer.identity().partition, alpha);
    assert!(workers.lookup(&reviewer_key, &beta).unwrap().is_none());
    assert!(pod_b.lookup_node("reviewer").unwrap().is_none());
    let reviewer_parent = rt.binding(reviewer.identity()).unwrap().parent.unwrap();
    assert_eq!(&reviewer_parent, ca.identity());
    reviewer
        .call_json_dyn("note", json!({"text": "looks good"}), None)
        .await
        .unwrap();

    let beta_before: Vec<_> = pod_b.snapshot().unwrap();

    // Stop alpha's pod, get it again: same topology, children re-adopted.
    let topology_before = pod_a.topology();
    rt.manager_dyn("workspace_pods")
        .unwrap()
        .stop_dyn(Key::new("workspace-123").unwrap(), &alpha)
        .await
        .unwrap();
    assert!(
        Pod::lookup(&rt, "workspace_pods", "workspace-123", &alpha)
            .await
            .unwrap()
            .is_none()
    );
    // The children continued as orphans that remember their former parent (partition included).
    let orphan = rt.binding(ca.identity()).unwrap();
    assert_eq!(orphan.parent, None);
    assert_eq!(
        orphan.former_parent.as_ref().map(|p| &p.partition),
        Some(&alpha)
    );

    let (pod_a2, report) = Pod::get(&rt, "workspace_pods", "workspace-123", &alpha)
        .await
        .unwrap();
    assert!(report.is_complete());
    assert_eq!(*pod_a2.topology(), *topology_before);
    let snapshot = pod_a2.snapshot().unwrap();
    for node in &snapshot {
        assert_eq!(node.status, NodeStatus::Adopted, "{node:?}");
        assert_eq!(node.expected_parent.partition, alpha);
    }
    // The same reviewer incarnation survived, with its notes.
    let reviewer_again = pod_a2.lookup_node("reviewer").unwrap().unwrap();
    assert_eq!(
        reviewer_again
            .call_json_dyn("note", json!({"text": "second"}), None)
            .await
            .unwrap(),
        json!(2)
    );

    // Beta is unchanged.
    assert_eq!(pod_b.snapshot().unwrap(), beta_before);
    let beta_pod_id = Identity::new(
        beta.clone(),
        "workspace_pods",
        Key::new("workspace-123").unwrap(),
    );
    assert_eq!(pod_b.identity(), &beta_pod_id);
    assert!(workers.lookup(&reviewer_key, &beta).unwrap().is_none());
}
