//! Admin routes (admin key only): list, onboard and offboard tenants; read and write
//! config; restart failed instances; in cluster mode, the cluster's state and the
//! tenants' pins.

use super::extract::{Admin, ApiPath, ApiQuery, JsonBody, Tenant};
use super::{ApiResult, decode, hosted_here, ok, parse_config_key, parse_key, parse_partition};
use crate::app::{App, OnboardRequest};
use crate::error::ApiError;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use std::sync::Arc;
use tenantry_cluster::{ClusterError, ClusterNode, PinRequest};

/// `GET /v1/admin/cluster`: this node, the members it counts alive, the owner of every
/// shard, the shards it serves with their fence epochs, and the pinned tenants (404
/// without cluster mode).
pub async fn cluster(State(app): State<Arc<App>>, _: Admin) -> ApiResult {
    let status = joined(&app)?.status().await.map_err(cluster_error)?;
    Ok(ok(status))
}

/// `GET /v1/admin/partitions/{partition}/placement`: where an onboarded tenant lives
/// ([`placed`]); never pinned without cluster mode.
pub async fn placement(
    State(app): State<Arc<App>>,
    _: Admin,
    ApiPath(partition): ApiPath<String>,
) -> ApiResult {
    let name = tenant_name(&app, &partition)?;
    let pin = match &app.cluster {
        None => None,
        Some(_) => joined(&app)?.pin_of(&name).await.map_err(cluster_error)?,
    };
    Ok(placed(&name, pin))
}

/// `PUT /v1/admin/partitions/{partition}/placement`: pins an onboarded tenant to the
/// nodes named (`{"nodes": [...], "exclusive": false, "shards": 32}`), or changes the
/// nodes of its pin (409 `cluster_off` without cluster mode).
pub async fn pin(
    State(app): State<Arc<App>>,
    _: Admin,
    ApiPath(partition): ApiPath<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let name = tenant_name(&app, &partition)?;
    let request: PinRequest = decode(body)?;
    if app.cluster.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cluster_off",
            "pins place a tenant on cluster nodes: this server runs without cluster mode",
        ));
    }
    let pin = joined(&app)?
        .pin(&name, &request)
        .await
        .map_err(cluster_error)?;
    Ok(placed(&name, Some(pin)))
}

/// `DELETE /v1/admin/partitions/{partition}/placement`: unpins an onboarded tenant (its
/// instances go back to the shared shards); a tenant not pinned stays as it is.
pub async fn unpin(
    State(app): State<Arc<App>>,
    _: Admin,
    ApiPath(partition): ApiPath<String>,
) -> ApiResult {
    let name = tenant_name(&app, &partition)?;
    let pin = match &app.cluster {
        None => None,
        Some(_) => match joined(&app)?.unpin(&name).await {
            Ok(pin) => Some(pin),
            Err(ClusterError::NotPinned(_)) => None,
            Err(e) => return Err(cluster_error(e)),
        },
    };
    Ok(placed(&name, pin))
}

/// A placement answer: `{"partition", "pinned", "pin"}` (the pin null unless pinned; an
/// unpinned tenant's pin shows `removing` until its move ends).
fn placed(name: &str, pin: Option<tenantry_cluster::TenantPin>) -> axum::response::Response {
    ok(json!({"partition": name, "pinned": pin.is_some(), "pin": pin}))
}

/// The name of the onboarded tenant a placement route names (404 for no tenant).
fn tenant_name(app: &App, partition: &str) -> Result<String, ApiError> {
    let partition = parse_partition(partition)?;
    if !app.is_tenant(&partition) {
        return Err(ApiError::not_found(format!("no tenant {partition}")));
    }
    Ok(partition.name().unwrap_or_default().to_owned())
}

/// This server's cluster node: 404 without cluster mode, 503 before it joined.
fn joined(app: &App) -> Result<&ClusterNode, ApiError> {
    let Some(cluster) = &app.cluster else {
        return Err(ApiError::not_found("cluster mode is off on this server"));
    };
    cluster.node().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "this node has not joined its cluster yet",
        )
    })
}

/// A cluster operation's failure as an answer.
fn cluster_error(e: ClusterError) -> ApiError {
    match e {
        ClusterError::InvalidName { .. } | ClusterError::InvalidPin(_) => {
            ApiError::unprocessable("invalid_pin", e.to_string())
        }
        ClusterError::PinConflict(_) => {
            ApiError::new(StatusCode::CONFLICT, "pin_refused", e.to_string())
        }
        ClusterError::NotPinned(_) => ApiError::not_found(e.to_string()),
        _ => {
            tracing::warn!(error = %e, "a cluster operation failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster_unavailable",
                "the cluster's records cannot be read or written now (the server log says why)",
            )
            .retry_after(1)
        }
    }
}

/// `GET /v1/admin/usage`: every tenant's limits and usage on this node, by partition.
pub async fn usage(State(app): State<Arc<App>>, _: Admin) -> ApiResult {
    let all: serde_json::Map<String, serde_json::Value> = app
        .runtime
        .quotas()
        .all_usage()
        .await?
        .into_iter()
        .map(|(p, usage)| (p.to_string(), super::tenant::usage_json(&app, &p, usage)))
        .collect();
    Ok(ok(all))
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
    ApiPath((_, manager, key)): ApiPath<(IgnoredAny, String, String)>,
) -> ApiResult {
    let p = tenant.partition;
    let key = parse_key(&key)?;
    let m = app.keyed_manager(&manager)?;
    hosted_here(
        &app,
        &tenantry::Identity::new(p.clone(), m.name(), key.clone()),
    )?;
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
