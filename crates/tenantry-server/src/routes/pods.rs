//! Pod routes: get and reconcile a pod, read its node snapshot, ensure a node.

use super::{ApiResult, ok, parse_key, path, respond, tenant_access};
use crate::app::App;
use crate::error::ApiError;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;
use tenantry::Pod;

/// `POST /v1/partitions/{partition}/pods/{manager}/{key}`: gets (or thaws) the pod and
/// reconciles it; returns the reconcile report and the node snapshot.
pub async fn get_pod(
    State(app): State<Arc<App>>,
    params: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    respond(get_inner(&app, params, &headers).await)
}

async fn get_inner(
    app: &App,
    params: Result<Path<(String, String, String)>, PathRejection>,
    headers: &HeaderMap,
) -> ApiResult {
    let (partition, manager, key) = path(params)?;
    let p = tenant_access(app, headers, &partition)?;
    let key = parse_key(&key)?;
    app.check_instance_limit(&manager, &key, &p)?;
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
    params: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    respond(snapshot_inner(&app, params, &headers).await)
}

async fn snapshot_inner(
    app: &App,
    params: Result<Path<(String, String, String)>, PathRejection>,
    headers: &HeaderMap,
) -> ApiResult {
    let (partition, manager, key) = path(params)?;
    let p = tenant_access(app, headers, &partition)?;
    let key = parse_key(&key)?;
    let pod = Pod::lookup(&app.runtime, &manager, key.clone(), &p)
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
    params: Result<Path<(String, String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    respond(ensure_inner(&app, params, &headers).await)
}

async fn ensure_inner(
    app: &App,
    params: Result<Path<(String, String, String, String)>, PathRejection>,
    headers: &HeaderMap,
) -> ApiResult {
    let (partition, manager, key, node) = path(params)?;
    let p = tenant_access(app, headers, &partition)?;
    let key = parse_key(&key)?;
    app.check_instance_limit(&manager, &key, &p)?;
    let (pod, _) = Pod::get(&app.runtime, &manager, key, &p).await?;
    let instance = pod.ensure_node(node.as_str()).await?;
    Ok(ok(json!({
        "node": node,
        "instance": instance.identity(),
        "nodes": pod.snapshot()?,
    })))
}
