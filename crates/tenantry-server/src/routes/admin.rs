//! Admin routes (admin key only): list, onboard and offboard tenants; read and write
//! config.

use super::{
    ApiResult, admin_access, decode, json_body, ok, parse_config_key, parse_key, path, query,
    respond, tenant_access,
};
use crate::app::{App, OnboardRequest};
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// `GET /v1/admin/partitions`.
pub async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(e) = admin_access(&app, &headers) {
        return respond(Err(e));
    }
    ok(app.tenants().await)
}

/// `POST /v1/admin/partitions`: onboards a tenant; the reply carries its new API key,
/// shown this once.
pub async fn onboard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(onboard_inner(&app, &headers, body).await)
}

async fn onboard_inner(
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    admin_access(app, headers)?;
    let req: OnboardRequest = decode(json_body(body)?)?;
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
    params: Result<Path<String>, PathRejection>,
    q: Result<Query<OffboardQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    respond(offboard_inner(&app, params, q, &headers).await)
}

async fn offboard_inner(
    app: &App,
    params: Result<Path<String>, PathRejection>,
    q: Result<Query<OffboardQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> ApiResult {
    admin_access(app, headers)?;
    let partition = path(params)?;
    let q = query(q)?;
    Ok(ok(app.offboard(&partition, q.purge).await?))
}

/// `PUT /v1/admin/config/{dotted.key}` with a JSON value as body: a reactive config write.
pub async fn set_config(
    State(app): State<Arc<App>>,
    params: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(set_inner(&app, params, &headers, body).await)
}

async fn set_inner(
    app: &App,
    params: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    admin_access(app, headers)?;
    let key = path(params)?;
    parse_config_key(&key)?;
    let value = json_body(body)?;
    app.set_config(&key, value.clone()).await?;
    Ok(ok(json!({"key": key, "value": value})))
}

/// `GET /v1/admin/config/{dotted.key}`.
pub async fn get_config(
    State(app): State<Arc<App>>,
    params: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    respond((|| -> ApiResult {
        admin_access(&app, &headers)?;
        let key = path(params)?;
        parse_config_key(&key)?;
        let value = app
            .get_config(&key)?
            .ok_or_else(|| ApiError::not_found(format!("no config key {key:?}")))?;
        Ok(ok(json!({"key": key, "value": value})))
    })())
}

/// `POST /v1/admin/instances/{name}/restart`: starts a failed or backing-off component
/// instance now.
pub async fn restart_component(
    State(app): State<Arc<App>>,
    params: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    respond(restart_component_inner(&app, params, &headers).await)
}

async fn restart_component_inner(
    app: &App,
    params: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
) -> ApiResult {
    admin_access(app, headers)?;
    let name = path(params)?;
    app.runtime.kernel().restart(&name).await?;
    let status = app.runtime.kernel().instance(&name).map(|i| i.status);
    Ok(ok(json!({"instance": name, "status": status})))
}

/// `POST /v1/admin/partitions/{partition}/instances/{manager}/{key}/restart`: starts a
/// keyed agent that gave up now, without waiting out its backoff.
pub async fn restart_agent(
    State(app): State<Arc<App>>,
    params: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    respond(restart_agent_inner(&app, params, &headers).await)
}

async fn restart_agent_inner(
    app: &App,
    params: Result<Path<(String, String, String)>, PathRejection>,
    headers: &HeaderMap,
) -> ApiResult {
    let (partition, manager, key) = path(params)?;
    let p = tenant_access(app, headers, &partition)?;
    admin_access(app, headers)?;
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
