//! Operational routes: health, readiness, Prometheus metrics, and the OpenAPI document.

use super::{ok, principal};
use crate::app::App;
use crate::error::ApiError;
use crate::keys::Principal;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
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

/// `GET /metrics`: Prometheus text.
pub async fn metrics() -> Response {
    match crate::telemetry::metrics_handle() {
        Some(handle) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_metrics",
            "another metrics recorder is installed in this process",
        )
        .into_response(),
    }
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
