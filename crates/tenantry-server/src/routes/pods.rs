//! Pod routes: get and reconcile a pod, read its node snapshot, ensure a node.

use super::extract::{ApiPath, Tenant};
use super::{ApiResult, hosted_here, ok, parse_key};
use crate::app::App;
use crate::error::ApiError;
use axum::extract::State;
use serde::de::IgnoredAny;
use serde_json::json;
use std::sync::Arc;
use tenantry::Pod;

/// `POST /v1/partitions/{partition}/pods/{manager}/{key}`: gets (or thaws) the pod and
/// reconciles it; returns the reconcile report and the node snapshot.
pub async fn get_pod(
    State(app): State<Arc<App>>,
    tenant: Tenant,
    ApiPath((_, manager, key)): ApiPath<(IgnoredAny, String, String)>,
) -> ApiResult {
    let p = tenant.partition;
    let key = parse_key(&key)?;
    let (pod, report) = Pod::get(&app.runtime, &manager, key, &p).await?;
    Ok(ok(json!({
        "pod": pod.identity(),
        "topology_version": pod.topology().version,
        "report": report,
        "nodes": pod.snapshot()?,
    })))
}

/// `GET /v1/partitions/{partition}/pods/{manager}/{key}`: the node snapshot of a running
/// pod (404 when it is not running; `POST` starts it).
pub async fn snapshot(
    State(app): State<Arc<App>>,
    tenant: Tenant,
    ApiPath((_, manager, key)): ApiPath<(IgnoredAny, String, String)>,
) -> ApiResult {
    let key = parse_key(&key)?;
    let identity = tenantry::Identity::new(tenant.partition.clone(), manager.as_str(), key.clone());
    hosted_here(&app, &identity)?;
    let pod = Pod::lookup(&app.runtime, &manager, key.clone(), &tenant.partition)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("pod {key} of {manager} is not running")))?;
    Ok(ok(json!({
        "pod": pod.identity(),
        "topology_version": pod.topology().version,
        "nodes": pod.snapshot()?,
    })))
}

/// `POST /v1/partitions/{partition}/pods/{manager}/{key}/nodes/{node}`: gets the pod and
/// ensures one node (and its prerequisites) runs.
pub async fn ensure_node(
    State(app): State<Arc<App>>,
    tenant: Tenant,
    ApiPath((_, manager, key, node)): ApiPath<(IgnoredAny, String, String, String)>,
) -> ApiResult {
    let p = tenant.partition;
    let key = parse_key(&key)?;
    let (pod, _) = Pod::get(&app.runtime, &manager, key, &p).await?;
    let instance = pod.ensure_node(node.as_str()).await?;
    Ok(ok(json!({
        "node": node,
        "instance": instance.identity(),
        "nodes": pod.snapshot()?,
    })))
}
