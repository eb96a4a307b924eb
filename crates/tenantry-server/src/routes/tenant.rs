//! Partition routes: invoke a handler, list handlers and instances, stop an instance.

use super::extract::{ApiPath, ApiQuery, JsonText, Tenant};
use super::{ApiResult, hosted_here, ok, parse_key, parse_timeout};
use crate::app::App;
use axum::extract::State;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use std::sync::Arc;
use tenantry::kernel::InstanceStatus;
use tenantry::quota::Usage;
use tenantry::{Invoke, JsonParams};

/// Query parameters of `invoke`.
#[derive(Debug, Default, Deserialize)]
pub struct InvokeQuery {
    /// The key of a keyed instance.
    key: Option<String>,
    /// A call timeout in milliseconds (default: the manager's).
    timeout_ms: Option<u64>,
}

/// `POST /v1/partitions/{partition}/invoke/{handler}`.
pub async fn invoke(
    State(app): State<Arc<App>>,
    tenant: Tenant,
    ApiPath((_, handler)): ApiPath<(IgnoredAny, String)>,
    ApiQuery(q): ApiQuery<InvokeQuery>,
    body: JsonText,
) -> ApiResult {
    invoke_checked(&app, tenant, &handler, q, body).await
}

/// [`invoke`] once the caller is checked and the request read: the router's route and
/// the one matched before it ([`super::prematched`]) both answer here.
pub(super) async fn invoke_checked(
    app: &App,
    tenant: Tenant,
    handler: &str,
    q: InvokeQuery,
    body: JsonText,
) -> ApiResult {
    let params = body.params()?;
    let p = tenant.partition;
    // Counted as cancelled if the client goes away first (the request is dropped).
    let counted = app.count_call(&p);
    let answer = invoke_on(app, &p, handler, q, params).await;
    counted.answered(
        answer
            .as_ref()
            .map_or_else(|e| e.status, |r| r.status())
            .as_u16(),
    );
    answer
}

/// [`invoke`] once its request is read.
async fn invoke_on(
    app: &App,
    p: &tenantry::Partition,
    handler: &str,
    q: InvokeQuery,
    params: JsonParams<'_>,
) -> ApiResult {
    // Connection tasks queue their calls: measured, running turns on them cost the
    // gateway requests per second (see BENCHMARKS.md, "HTTP server").
    let mut opts = Invoke::target(p).queued();
    opts.timeout = parse_timeout(q.timeout_ms)?;
    if let Some(k) = q.key.as_deref() {
        let key = parse_key(k)?;
        opts = opts.key(key);
    }
    // The params go in as the client wrote them, the reply goes out as the instance
    // encoded it: neither is built as a JSON value here.
    let result = app
        .runtime
        .bus_for(p)
        .invoke_raw(handler, params, opts)
        .await?;
    Ok(ok(&*result))
}

/// `GET /v1/partitions/{partition}/usage`: the tenant's limits in force, its calls in
/// flight, the calls admitted and refused (by limit) so far, and its recent invoke calls
/// over HTTP (rate, latency, errors), on this node.
pub async fn usage(State(app): State<Arc<App>>, tenant: Tenant) -> ApiResult {
    let usage = app.runtime.quotas().usage(&tenant.partition).await?;
    Ok(ok(usage_json(&app, &tenant.partition, usage)))
}

/// A tenant's usage as `/usage` answers it: the runtime's count, and its recent calls
/// over HTTP on this node.
pub fn usage_json(app: &App, partition: &tenantry::Partition, usage: Usage) -> Value {
    let mut json = json!(usage);
    if let Some(fields) = json.as_object_mut() {
        fields.insert("recent_calls".into(), json!(app.traffic.recent(partition)));
    }
    json
}

/// `GET /v1/partitions/{partition}/handlers`.
pub async fn handlers(State(app): State<Arc<App>>, tenant: Tenant) -> ApiResult {
    Ok(ok(app.runtime.bus_for(&tenant.partition).handlers()))
}

/// `GET /v1/partitions/{partition}/instances`: component instances with their status,
/// and the partition's keyed instances, live or backing off after giving up. Why an
/// instance failed may hold internal text (a panic's): only the admin key sees it.
pub async fn instances(State(app): State<Arc<App>>, tenant: Tenant) -> ApiResult {
    {
        let admin = tenant.is_admin();
        let p = tenant.partition;
        let components: Vec<_> = app
            .runtime
            .kernel()
            .instances()
            .into_iter()
            .filter(|i| i.partition == p)
            .map(|i| {
                let status = status_json(&i.status, admin);
                json!({"name": i.name, "factory": i.factory, "status": status})
            })
            .collect();
        let mut keyed = Vec::new();
        let pods = app.runtime.pod_manager_names();
        for name in app.runtime.manager_names() {
            if app.is_component_manager(&name) {
                continue;
            }
            let pod = pods.contains(&name);
            if let Some(m) = app.runtime.manager_dyn(&name) {
                for key in m.stats_dyn(&p).keys {
                    keyed.push(json!({
                        "manager": name, "factory": m.factory(), "key": key, "pod": pod,
                        "status": {"state": "active"},
                    }));
                }
                for (key, failure) in m.failures_dyn(&p) {
                    let status = status_json(&InstanceStatus::backing_off(&failure), admin);
                    keyed.push(json!({
                        "manager": name, "factory": m.factory(), "key": key, "pod": pod,
                        "status": status,
                    }));
                }
            }
        }
        Ok(ok(json!({"components": components, "keyed": keyed})))
    }
}

/// A status as the listing shows it: why it failed only for the admin.
fn status_json(status: &InstanceStatus, admin: bool) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if !admin {
        let hidden = json!("see the server log (admin)");
        match status {
            InstanceStatus::Failed(_) => v["reason"] = hidden,
            InstanceStatus::BackingOff { .. } => v["reason"]["error"] = hidden,
            _ => {}
        }
    }
    v
}

/// `DELETE /v1/partitions/{partition}/instances/{manager}/{key}`: stops and hibernates a
/// keyed instance (component instances are managed through the admin API).
pub async fn stop_instance(
    State(app): State<Arc<App>>,
    tenant: Tenant,
    ApiPath((_, manager, key)): ApiPath<(IgnoredAny, String, String)>,
) -> ApiResult {
    let key = parse_key(&key)?;
    let m = app.keyed_manager(&manager)?;
    let identity = tenantry::Identity::new(tenant.partition.clone(), m.name(), key.clone());
    hosted_here(&app, &identity)?;
    m.stop_dyn(key.clone(), &tenant.partition).await?;
    Ok(ok(json!({"manager": manager, "key": key, "stopped": true})))
}
