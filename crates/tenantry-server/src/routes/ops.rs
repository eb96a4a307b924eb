//! Operational routes: health, readiness, Prometheus metrics, and the OpenAPI document.

use super::{ApiResult, admin_access, bearer, ok, path, principal, respond, tenant_access};
use crate::app::App;
use crate::error::ApiError;
use crate::keys::Principal;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use tenantry::Partition;
use tenantry::bus::RouteKind;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Response {
    ok(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 once booted and listening, 503 while shutting down.
pub async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.is_ready() {
        ok(json!({"status": "ready"}))
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "not ready").into_response()
    }
}

/// `GET /metrics`: Prometheus text of every tenant; the admin key or the metrics token.
pub async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    respond(metrics_access(&app, &headers).and_then(|()| prometheus_text(None)))
}

/// The admin key or the configured metrics token.
fn metrics_access(app: &App, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = bearer(headers)?;
    if app
        .settings
        .metrics_token
        .is_some_and(|h| h == crate::keys::hash(token))
    {
        return Ok(());
    }
    admin_access(app, headers)
}

/// `GET /v1/partitions/{partition}/metrics`: the same metrics, only the partition's own
/// series (those labelled `partition="<it>"`).
pub async fn tenant_metrics(
    State(app): State<Arc<App>>,
    params: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    respond((|| {
        let partition = path(params)?;
        let p = tenant_access(&app, &headers, &partition)?;
        prometheus_text(Some(&p))
    })())
}

/// The process's Prometheus text, whole or only one partition's series.
fn prometheus_text(only: Option<&Partition>) -> ApiResult {
    let handle = crate::telemetry::metrics_handle().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_metrics",
            "another metrics recorder is installed in this process",
        )
    })?;
    let text = handle.render();
    let text = match only.and_then(Partition::name) {
        Some(name) => crate::telemetry::only_partition(&text, name),
        None => text,
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response())
}

/// `GET /openapi.json`: the whole API with every handler's schemas. Without a key it
/// lists the generic routes (factory and keyed handlers); with a tenant key it adds that
/// tenant's instance routes; with the admin key, every route.
pub async fn openapi(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let handlers = match principal(&app, &headers) {
        Ok(Principal::Admin) => app.runtime.bus().handlers(),
        Ok(Principal::Tenant(p)) => app.runtime.bus_for(&p).handlers(),
        Err(_) => app
            .runtime
            .bus()
            .handlers()
            .into_iter()
            .filter(|h| h.kind != RouteKind::Instance)
            .collect(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(&handlers).to_string(),
    )
        .into_response()
}
