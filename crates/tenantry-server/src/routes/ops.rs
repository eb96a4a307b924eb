//! Operational routes: health, readiness, Prometheus metrics, and the OpenAPI document.

use super::extract::{MetricsReader, Tenant};
use super::{ApiResult, ok, principal};
use crate::app::App;
use crate::error::ApiError;
use crate::keys::Principal;
use crate::openapi::Reader;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tenantry::Partition;
use tenantry::bus::RouteKind;
use tenantry::kernel::InstanceStatus;
use tenantry::pod::topology::node_label;

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
pub async fn metrics(State(app): State<Arc<App>>, _: MetricsReader) -> ApiResult {
    usage_gauges(&app).await;
    prometheus_text(None)
}

/// `GET /v1/partitions/{partition}/metrics`: the same metrics, only the partition's own
/// series (those labelled `partition="<it>"`).
pub async fn tenant_metrics(State(app): State<Arc<App>>, tenant: Tenant) -> ApiResult {
    usage_gauges(&app).await;
    prometheus_text(Some(&tenant.partition))
}

/// Sets the usage gauges (calls in flight and bytes stored, by partition, or all together
/// under `*` when metrics carry no partition) to what they are now, so a scrape reads
/// them current without every call and write keeping a gauge up to date. A store that
/// cannot be read leaves the gauges as they were.
async fn usage_gauges(app: &App) {
    let Ok(usage) = app.runtime.quotas().all_usage().await else {
        return;
    };
    let stored = |u: &tenantry::quota::Usage| u.stored.map_or(0.0, |s| s.bytes as f64);
    if app.settings.metric_partition_labels {
        for (partition, usage) in usage {
            let label = partition.to_string();
            metrics::gauge!("tenantry_calls_in_flight", "partition" => label.clone())
                .set(f64::from(usage.in_flight));
            metrics::gauge!("tenantry_stored_bytes", "partition" => label).set(stored(&usage));
        }
    } else {
        let all: u32 = usage.iter().map(|(_, u)| u.in_flight).sum();
        let bytes: f64 = usage.iter().map(|(_, u)| stored(u)).sum();
        metrics::gauge!("tenantry_calls_in_flight", "partition" => "*").set(f64::from(all));
        metrics::gauge!("tenantry_stored_bytes", "partition" => "*").set(bytes);
    }
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

/// `GET /openapi.json`: the whole API with every handler's schemas, exact for the key
/// that reads it. Without a key it lists the generic routes (factory and keyed handlers,
/// any valid partition name); with a tenant key, that tenant's partition and routes; with
/// the admin key, every route and the active tenants.
pub async fn openapi(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let who = principal(&app, &headers).ok();
    let handlers = match &who {
        Some(Principal::Admin) => app.runtime.bus().handlers(),
        Some(Principal::Tenant(p)) => app.runtime.bus_for(p).handlers(),
        None => app
            .runtime
            .bus()
            .handlers()
            .into_iter()
            .filter(|h| h.kind != RouteKind::Instance)
            .collect(),
    };
    let reader = reader(&app, who.as_ref());
    super::json_response(
        StatusCode::OK,
        crate::openapi::document(&handlers, &reader).to_string(),
    )
}

/// What the document may list for `who`.
fn reader(app: &App, who: Option<&Principal>) -> Reader {
    // A tenant key's partition is fixed; the admin's tenants change while it works, so
    // its document states the name rules only (404 names no tenant).
    let partitions = match who {
        Some(Principal::Tenant(p)) => Some(p.name().map(str::to_owned).into_iter().collect()),
        _ => None,
    };
    let mut factory_partitions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut instance_partitions = BTreeMap::new();
    for i in app.runtime.kernel().instances() {
        let Some(p) = i.partition.name() else {
            continue;
        };
        if i.status == InstanceStatus::Active {
            factory_partitions
                .entry(i.factory.clone())
                .or_default()
                .push(p.to_owned());
        }
        instance_partitions.insert(i.name.clone(), p.to_owned());
    }
    let pod_managers = app.runtime.pod_manager_names();
    let mut pod_nodes: Vec<String> = pod_managers
        .iter()
        .filter_map(|m| app.runtime.pod_topology(m))
        .flat_map(|t| t.nodes.into_iter().map(|n| node_label(&n.name)))
        .collect();
    pod_nodes.sort();
    pod_nodes.dedup();
    Reader {
        admin: matches!(who, Some(Principal::Admin)),
        partitions,
        factory_partitions,
        instance_partitions,
        keyed_managers: app
            .runtime
            .manager_names()
            .into_iter()
            .filter(|m| !app.is_component_manager(m))
            .collect(),
        pod_managers,
        pod_nodes,
        tenant_factories: app
            .tenant_factories()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        body_limit: app.settings.limits.body_limit,
    }
}
