//! Admin routes (admin key only): list, onboard and offboard tenants; read and write
//! config; restart failed instances.

use super::extract::{Admin, ApiPath, ApiQuery, JsonBody, Tenant};
use super::{ApiResult, decode, ok, parse_config_key, parse_key};
use crate::app::{App, OnboardRequest};
use crate::error::ApiError;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// `GET /v1/admin/cluster`: this node, the members it counts alive, the owner of every
/// shard, and the shards it serves with their fence epochs (404 without cluster mode).
pub async fn cluster(State(app): State<Arc<App>>, _: Admin) -> ApiResult {
    let Some(cluster) = &app.cluster else {
        return Err(ApiError::not_found("cluster mode is off on this server"));
    };
    match cluster.status().await {
        Ok(Some(status)) => Ok(ok(status)),
        Ok(None) => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "this node has not joined its cluster yet",
        )),
        Err(e) => Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "cluster_unavailable",
            e.to_string(),
        )),
    }
}

/// `GET /v1/admin/partitions`.
pub async fn list(State(app): State<Arc<App>>, _: Admin) -> ApiResult {
    Ok(ok(app.tenants().await))
}

/// `POST /v1/admin/partitions`: onboards a tenant; the reply carries its new API key,
/// shown this once.
pub async fn onboard(State(app): State<Arc<App>>, _: Admin, JsonBody(body): JsonBody) -> ApiResult {
    let req: OnboardRequest = decode(body)?;
    Ok(ok(app.onboard(req).await?))
}

/// Query of `offboard`.
#[derive(Debug, Default, Deserialize)]
pub struct OffboardQuery {
    /// Also delete checkpoints, storage, credentials and config.
    #[serde(default)]
    purge: bool,
}

/// `DELETE /v1/admin/partitions/{partition}[?purge=true]`.
pub async fn offboard(
    State(app): State<Arc<App>>,
    _: Admin,
    ApiPath(partition): ApiPath<String>,
    ApiQuery(q): ApiQuery<OffboardQuery>,
) -> ApiResult {
    Ok(ok(app.offboard(&partition, q.purge).await?))
}

/// `PUT /v1/admin/config/{dotted.key}` with a JSON value as body: a reactive config write.
pub async fn set_config(
    State(app): State<Arc<App>>,
    _: Admin,
    ApiPath(key): ApiPath<String>,
    JsonBody(value): JsonBody,
) -> ApiResult {
    parse_config_key(&key)?;
    app.set_config(&key, value.clone()).await?;
    Ok(ok(json!({"key": key, "value": value})))
}

/// `GET /v1/admin/config/{dotted.key}`.
pub async fn get_config(
    State(app): State<Arc<App>>,
    _: Admin,
    ApiPath(key): ApiPath<String>,
) -> ApiResult {
    parse_config_key(&key)?;
    let value = app
        .get_config(&key)?
        .ok_or_else(|| ApiError::not_found(format!("no config key {key:?}")))?;
    Ok(ok(json!({"key": key, "value": value})))
}

/// `POST /v1/admin/instances/{name}/restart`: starts a failed or backing-off component
/// instance now.
pub async fn restart_component(
    State(app): State<Arc<App>>,
    _: Admin,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    app.runtime.kernel().restart(&name).await?;
    let status = app.runtime.kernel().instance(&name).map(|i| i.status);
    Ok(ok(json!({"instance": name, "status": status})))
}

/// `POST /v1/admin/partitions/{partition}/instances/{manager}/{key}/restart`: starts a
/// keyed agent that gave up now, without waiting out its backoff.
pub async fn restart_agent(
    State(app): State<Arc<App>>,
    tenant: Tenant,
    _: Admin,
    ApiPath((_, manager, key)): ApiPath<(String, String, String)>,
) -> ApiResult {
    let p = tenant.partition;
    let key = parse_key(&key)?;
    let m = app.keyed_manager(&manager)?;
    if !m.clear_failure_dyn(&key, &p) {
        return Err(ApiError::conflict(format!(
            "{manager}/{key} has not failed in this partition"
        )));
    }
    m.get_dyn(key.clone(), &p).await?;
    Ok(ok(
        json!({"manager": manager, "key": key, "restarted": true}),
    ))
}
