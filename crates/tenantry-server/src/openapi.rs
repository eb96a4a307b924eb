//! The OpenAPI 3.1 document: every route of the API, and one path per bus handler with
//! its params and reply JSON Schemas.
//!
//! The document is exact for its reader: every constraint the server enforces on a path,
//! query or body is stated (partition, manager, key, node and config-key patterns and
//! lengths, `timeout_ms`, the body limit, each handler's params), every status a route
//! can answer is declared, and the values a reader may use are listed where the server
//! knows them (a tenant key's own partition, the partitions where a factory route has an
//! instance, the managers and pod nodes). A reader sees only the routes it may call.

use crate::routes::{MAX_CONFIG_SEGMENT, MAX_CONFIG_SEGMENTS, MAX_HTTP_KEY_CHARS, MAX_TIMEOUT_MS};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use tenantry::MAX_PARTITION_LEN;
use tenantry::bus::{HandlerDescriptor, RouteKind};

/// Who reads the document, and what the server knows that makes it exact for them.
#[derive(Debug, Clone, Default)]
pub struct Reader {
    /// The admin key: admin routes are listed.
    pub admin: bool,
    /// The partitions the reader's tenant routes may name (`None`: any valid name, for a
    /// reader without a key).
    pub partitions: Option<Vec<String>>,
    /// For each component factory, the partitions where it has an active instance.
    pub factory_partitions: BTreeMap<String, Vec<String>>,
    /// For each component instance, its partition.
    pub instance_partitions: BTreeMap<String, String>,
    /// Keyed managers whose instances a tenant may stop.
    pub keyed_managers: Vec<String>,
    /// Pods managers.
    pub pod_managers: Vec<String>,
    /// The node names of the pods managers' topologies.
    pub pod_nodes: Vec<String>,
    /// Component factories a tenant's instances may be made of (onboarding).
    pub tenant_factories: Vec<String>,
    /// The request body limit, in bytes.
    pub body_limit: usize,
}

/// A name following the partition rules (partitions, managers, instance names).
fn name_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_PARTITION_LEN,
        "pattern": format!("^[A-Za-z0-9][A-Za-z0-9_-]{{0,{}}}$", MAX_PARTITION_LEN - 1)
    })
}

/// One of `values`, or any valid name when the server does not list them.
fn names(values: Option<&[String]>) -> Value {
    match values {
        Some(v) => json!({"type": "string", "enum": v}),
        None => name_schema(),
    }
}

fn key_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_HTTP_KEY_CHARS,
        "pattern": format!(
            "^[^\\[\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]{{0,{}}}$",
            MAX_HTTP_KEY_CHARS - 1
        )
    })
}

fn param(name: &str, location: &str, description: &str, required: bool, schema: Value) -> Value {
    json!({
        "name": name,
        "in": location,
        "required": required,
        "description": description,
        "schema": schema
    })
}

fn key_param(location: &str, description: &str) -> Value {
    param("key", location, description, true, key_schema())
}

fn timeout_param() -> Value {
    param(
        "timeout_ms",
        "query",
        "The call timeout in milliseconds (default: the manager's).",
        false,
        json!({"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_MS}),
    )
}

/// What each status means, for the declared responses.
fn status_text(status: u16) -> &'static str {
    match status {
        400 => {
            "A path, query or body the server refuses: malformed JSON, an invalid name, key or timeout."
        }
        401 => "No API key, or an unknown one.",
        403 => "The key may not use this route or partition.",
        404 => "No such route, tenant, handler, target, manager, instance, pod or node.",
        409 => {
            "A conflict with the current state (already onboarded, data retained, not failed, a version conflict)."
        }
        413 => {
            "The request body is over the limit, or a record the call would store is larger than the tenant's `max_state_bytes` (`state_too_large`: nothing of the turn was stored)."
        }
        422 => {
            "Params or body that decode but are refused: an invalid field, or the handler's own refusal (its code names why)."
        }
        429 => {
            "A mailbox is full, or a tenant limit refused the call (see Retry-After): `rate_limited` (its request rate), `concurrency_limited` (its calls in flight), `fair_share_exceeded` (the server is saturated and the tenant holds more than its weighted share), `instance_limit_reached` (the tenant's live agents are at its `max_instances` and none is idle enough to hibernate), `mailbox_full`, `too_many_streams` (event streams open at once)."
        }
        500 => "An internal error; the message names an error id to find in the server log.",
        503 => {
            "The store is unavailable, a turn could not be made durable (`not_durable`: the agent goes on from its last durable state), the instance is backing off after crashes (see Retry-After), or the server is shutting down."
        }
        504 => "The handler did not answer within the timeout.",
        507 => {
            "The call would store more than the tenant's `max_stored_bytes` (`storage_limit_exceeded`): nothing of it was stored; writes that shrink what the tenant stores still pass."
        }
        _ => "An error.",
    }
}

/// A 200 answering a stream of Server-Sent Events (`routes/events.rs`).
fn events_ok() -> Value {
    json!({"description": "Server-Sent Events, until the client or the server closes the stream: `runtime` messages whose data is an event as JSON ({partition, manager, key, at_ms, kind, detail}; kinds: started, thawed, hibernated, hibernate_failed, thaw_failed, stopped, idle_stopped, crashed, restarted, gave_up, hook_failed, pod_reconcile, node_ensure, service_changed, audit, effect_failed, message_dropped; and throttled, from the identity `_quota/<limit>`, at most once a second per tenant with {limit, retry_after_ms, refused}), and `dropped` messages ({\"dropped\": n}) when the reader fell behind by n events.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}}})
}

/// A 200 answering Prometheus text.
fn text_ok() -> Value {
    json!({"description": "Prometheus text.", "content": {"text/plain": {"schema": {"type": "string"}}}})
}

fn ok_response(result: Value) -> Value {
    json!({
        "description": "Success.",
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["ok", "result"],
            "properties": {"ok": {"const": true}, "result": result}
        }}}
    })
}

fn responses(ok: Value, errors: &[u16]) -> Value {
    let mut out = Map::new();
    out.insert("200".into(), ok);
    for status in errors {
        out.insert(
            status.to_string(),
            json!({
                "description": status_text(*status),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }),
        );
    }
    Value::Object(out)
}

/// Statuses of routes that take a tenant partition.
const TENANT_ERRORS: &[u16] = &[400, 401, 403, 404, 500];
/// Statuses of a handler call.
const INVOKE_ERRORS: &[u16] = &[400, 401, 403, 404, 409, 413, 422, 429, 500, 503, 504, 507];
/// Statuses of routes that start or stop instances.
const LIFECYCLE_ERRORS: &[u16] = &[400, 401, 403, 404, 409, 413, 422, 429, 500, 503, 507];

fn op(summary: &str, tag: &str, params: Vec<Value>, errors: &[u16], result: Value) -> Value {
    json!({
        "summary": summary,
        "tags": [tag],
        "parameters": params,
        "responses": responses(ok_response(result), errors)
    })
}

/// `op` with a JSON body of `schema` (at most the body limit). An empty body reads as
/// `{}`, so the body is required only when the schema requires properties.
fn with_body(mut operation: Value, schema: Value, limit: usize) -> Value {
    let required = schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    if let Some(map) = operation.as_object_mut() {
        map.insert(
            "requestBody".into(),
            json!({
                "required": required,
                "description": format!("JSON, at most {limit} bytes (413 over it)."),
                "x-tenantry-max-body-bytes": limit,
                "content": {"application/json": {"schema": schema}}
            }),
        );
    }
    operation
}

/// A handler schema made self-contained: schemars puts definitions under `$defs` and
/// refers to them as `#/$defs/..`; an `$id` makes those references resolve inside the
/// schema instead of against the OpenAPI document's root.
fn standalone(schema: &Value, route: &str, part: &str) -> Value {
    let mut s = schema.clone();
    if let Some(map) = s.as_object_mut() {
        if map.contains_key("$defs") {
            map.insert(
                "$id".into(),
                Value::String(format!("urn:tenantry:handler:{route}:{part}")),
            );
        }
    }
    s
}

fn tenant_routes(paths: &mut Map<String, Value>, r: &Reader) {
    let p = || {
        param(
            "partition",
            "path",
            "The tenant's partition.",
            true,
            names(r.partitions.as_deref()),
        )
    };
    let limit = r.body_limit;
    paths.insert(
        "/v1/partitions/{partition}/invoke/{handler}".into(),
        json!({"post": with_body(op(
            "Invoke a bus handler in the partition (the handler paths below give each one's schemas).",
            "partitions",
            vec![p(),
                 param("handler", "path", "`instance.runnable`, `factory.runnable` or `manager.handler`.", true,
                       json!({"type": "string", "minLength": 1})),
                 param("key", "query", "The key of a keyed instance.", false, key_schema()),
                 timeout_param()],
            INVOKE_ERRORS,
            json!({})), json!({"description": "The handler's params."}), limit)}),
    );
    paths.insert(
        "/v1/partitions/{partition}/usage".into(),
        json!({"get": op("The tenant's limits in force (config `limits`, then `tenants.<partition>.limits`), its calls in flight, the calls admitted and refused by each limit so far and its live agents, on this node, the bytes and records it stores, and its recent invoke calls over HTTP on this node (`recent_calls`: rate, p50, p99, errors).",
            "partitions", vec![p()], TENANT_ERRORS, usage_schema())}),
    );
    paths.insert(
        "/v1/whoami".into(),
        json!({"get": op("What the key is: `{\"kind\": \"admin\"}` or `{\"kind\": \"tenant\", \"partition\": name}` (the dashboard asks this first).",
            "partitions", vec![], &[401, 500],
            json!({"type": "object", "required": ["kind"], "properties": {
                "kind": {"enum": ["admin", "tenant"]}, "partition": {"type": "string"}}}))}),
    );
    paths.insert(
        "/v1/partitions/{partition}/events".into(),
        json!({"get": {
            "summary": "The tenant's runtime events, live (Server-Sent Events): activations, hibernations, thaws, crashes, restarts, give-ups, pod reconciles, effect failures, throttles. Never another tenant's; offboarding ends its streams. In cluster mode, the events of the instances on the node that serves the stream. At most 8 streams per tenant, 1,024 for all tenants and 16 on the admin key (429 `too_many_streams`).",
            "tags": ["partitions"],
            "parameters": [p()],
            "responses": responses(events_ok(), &[400, 401, 403, 404, 429, 500])}}),
    );
    paths.insert(
        "/v1/partitions/{partition}/handlers".into(),
        json!({"get": op("The handlers visible to the partition, with descriptions and JSON Schemas.",
            "partitions", vec![p()], TENANT_ERRORS, json!({"type": "array"}))}),
    );
    paths.insert(
        "/v1/partitions/{partition}/instances".into(),
        json!({"get": op("The partition's component instances and keyed instances (live or backing off), with their status; `pod` says whether a keyed one is a pod (its node tree: `GET .../pods/{manager}/{key}`).",
            "partitions", vec![p()], TENANT_ERRORS, json!({"type": "object"}))}),
    );
    paths.insert(
        "/v1/partitions/{partition}/instances/{manager}/{key}".into(),
        json!({"delete": op("Stop and hibernate a keyed instance.", "partitions",
            vec![p(), param("manager", "path", "The keyed manager.", true, names(Some(&r.keyed_managers))),
                 key_param("path", "The key.")],
            LIFECYCLE_ERRORS, json!({"type": "object"}))}),
    );
    paths.insert(
        "/v1/partitions/{partition}/metrics".into(),
        json!({"get": {
            "summary": "The partition's own Prometheus series (text).",
            "tags": ["partitions"],
            "parameters": [p()],
            "responses": responses(text_ok(), &[400, 401, 403, 404, 503])
        }}),
    );
    let pod_params = || {
        vec![
            p(),
            param(
                "manager",
                "path",
                "The pods manager.",
                true,
                names(Some(&r.pod_managers)),
            ),
            key_param("path", "The pod's key."),
        ]
    };
    paths.insert(
        "/v1/partitions/{partition}/pods/{manager}/{key}".into(),
        json!({
            "post": op("Get (or thaw) a pod and reconcile it; returns the report and the node snapshot.",
                "pods", pod_params(), LIFECYCLE_ERRORS, json!({"type": "object"})),
            "get": op("The node snapshot of a running pod (404 when it is not running).", "pods",
                pod_params(), TENANT_ERRORS, json!({"type": "object"}))
        }),
    );
    let mut node_params = pod_params();
    node_params.push(param(
        "node",
        "path",
        "The node's name.",
        true,
        json!({"type": "string", "enum": r.pod_nodes}),
    ));
    paths.insert(
        "/v1/partitions/{partition}/pods/{manager}/{key}/nodes/{node}".into(),
        json!({"post": op("Ensure a node of the pod runs.", "pods", node_params, LIFECYCLE_ERRORS,
            json!({"type": "object"}))}),
    );
}

/// What `/usage` answers: a tenant's limits, calls in flight, admitted and throttled,
/// live agents, stored bytes, and its recent calls over HTTP.
fn usage_schema() -> Value {
    json!({"type": "object", "properties": {
        "limits": {"type": "object", "properties": {
            "rate_per_sec": {"type": "number"}, "burst": {"type": "integer"},
            "concurrency": {"type": "integer"}, "weight": {"type": "integer"},
            "max_instances": {"type": "integer"}, "max_stored_bytes": {"type": "integer"},
            "max_state_bytes": {"type": "integer"}, "max_reply_bytes": {"type": "integer"}}},
        "in_flight": {"type": "integer"}, "admitted": {"type": "integer"},
        "throttled": {"type": "object", "properties": {
            "rate": {"type": "integer"}, "concurrency": {"type": "integer"},
            "fair_share": {"type": "integer"}, "instances": {"type": "integer"}}},
        "live_instances": {"type": "integer"},
        "stored": {"type": ["object", "null"], "properties": {
            "bytes": {"type": "integer"}, "records": {"type": "integer"}}},
        "recent_calls": {"type": "object",
            "description": "Its invoke calls over HTTP on this node in the last whole seconds (up to 10): the rate, the median and 99th percentile latency of those not throttled (null: none), and how many were answered with a 5xx (`errors`), another 4xx (`rejected`) or a 429 (`throttled`), or lost their client before the answer (`cancelled`). Requests refused before the call (a bad key, path or query, or a body over the limit or not UTF-8) are not counted; a call whose params do not decode, malformed JSON included, is counted as `rejected`.",
            "properties": {
                "window_secs": {"type": "integer"}, "calls": {"type": "integer"},
                "per_sec": {"type": "number"},
                "p50_ms": {"type": ["number", "null"]}, "p99_ms": {"type": ["number", "null"]},
                "errors": {"type": "integer"}, "rejected": {"type": "integer"},
                "throttled": {"type": "integer"}, "cancelled": {"type": "integer"}}}}})
}

fn admin_routes(paths: &mut Map<String, Value>, r: &Reader) {
    let admin_errors: &[u16] = &[401, 403, 500];
    let limit = r.body_limit;
    let instance = json!({
        "type": "object",
        "required": ["factory", "name"],
        "additionalProperties": false,
        "properties": {
            "factory": {"type": "string", "enum": r.tenant_factories},
            "name": name_schema(),
            "properties": {
                "type": ["object", "null"],
                "description": "The instance's properties; `target` is set to the tenant's partition.",
                "not": {"required": ["target"]}
            }
        }
    });
    paths.insert(
        "/v1/admin/partitions".into(),
        json!({
            "get": op("List tenants (admin).", "admin", vec![], admin_errors, json!({"type": "array"})),
            "post": with_body(op("Onboard a tenant (admin); the reply holds its API key, shown this once. A name offboarded without purge is refused (409) unless `restore` is true.",
                "admin", vec![], &[400, 401, 403, 404, 409, 413, 422, 500, 503],
                json!({"type": "object", "properties": {"partition": {"type": "string"}, "api_key": {"type": "string"}}})),
                json!({"type": "object", "required": ["partition"], "additionalProperties": false, "properties": {
                    "partition": name_schema(),
                    "config": {"type": ["object", "null"]},
                    "instances": {"type": "array", "maxItems": 64, "items": instance},
                    "restore": {"type": "boolean"}
                }}), limit)
        }),
    );
    let pin = json!({"type": "object", "properties": {
        "partition": {"type": "string"}, "nodes": {"type": "array", "items": {"type": "string"}},
        "exclusive": {"type": "boolean"}, "first_shard": {"type": "integer"}, "shards": {"type": "integer"},
        "owners": {"type": "array", "items": {"type": ["string", "null"]}},
        "state": {"type": "string", "enum": ["active", "moving", "removing"]},
        "waiting": {"type": "array", "items": {"type": "string"}}}});
    paths.insert(
        "/v1/admin/events".into(),
        json!({"get": {
            "summary": "Every tenant's runtime events on this node, live (Server-Sent Events; admin).",
            "tags": ["admin"],
            "responses": responses(events_ok(), &[401, 403, 429, 500])}}),
    );
    paths.insert(
        "/v1/admin/usage".into(),
        json!({"get": op("Every tenant's limits and usage on this node, by partition (admin).",
            "admin", vec![], admin_errors, json!({"type": "object", "additionalProperties": usage_schema()}))}),
    );
    paths.insert(
        "/v1/admin/cluster".into(),
        json!({"get": op("This cluster node (admin): the members it counts alive, the owner of every shard, the shards it serves with their fence epochs, and the pinned tenants. 404 when cluster mode is off.",
            "admin", vec![], &[401, 403, 404, 500, 503],
            json!({"type": "object", "properties": {
                "node": {"type": "string"}, "serving": {"type": "boolean"},
                "members": {"type": "array"}, "shards": {"type": "object"},
                "owners": {"type": "array", "items": {"type": ["string", "null"]}},
                "pins": {"type": "array", "items": pin.clone()}}}))}),
    );
    let partition = param(
        "partition",
        "path",
        "The tenant's partition.",
        true,
        name_schema(),
    );
    let placement = json!({"type": "object", "properties": {"partition": {"type": "string"}, "pinned": {"type": "boolean"},
        "pin": {"oneOf": [{"type": "null"}, pin]}}});
    paths.insert(
        "/v1/admin/partitions/{partition}/placement".into(),
        json!({
            "get": op("Where an onboarded tenant lives (admin): whether it is pinned, and its pin (cluster mode): its nodes, its own shards and their owners, and whether it is moving. Never pinned without cluster mode.",
                "admin", vec![partition.clone()], &[400, 401, 403, 404, 500, 503], placement.clone()),
            "put": with_body(op("Pin an onboarded tenant to nodes (admin, cluster mode): its instances then live only on the live nodes named, on shards of its own; `exclusive` keeps those nodes for it alone. A new pin moves the tenant: its calls wait a few seconds while every node lets go of its instances. Setting it again changes the nodes. 409 without cluster mode (`cluster_off`), while it is being unpinned, when no node named is live, or where exclusive pins would share a node or leave none for the others.",
                "admin", vec![partition.clone()], &[400, 401, 403, 404, 409, 413, 422, 500, 503], placement.clone()),
                json!({"type": "object", "required": ["nodes"], "additionalProperties": false, "properties": {
                    "nodes": {"type": "array", "minItems": 1, "maxItems": tenantry_cluster::MAX_PIN_NODES, "uniqueItems": true,
                              "items": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"}},
                    "exclusive": {"type": "boolean"},
                    "shards": {"type": ["integer", "null"], "minimum": 1, "maximum": tenantry_cluster::MAX_PIN_SHARDS}
                }}), limit),
            "delete": op("Unpin an onboarded tenant (admin): it moves back to the shared shards (its pin shows `removing` until then). A tenant not pinned stays as it is.",
                "admin", vec![partition], &[400, 401, 403, 404, 500, 503], placement)
        }),
    );
    paths.insert(
        "/v1/admin/partitions/{partition}".into(),
        json!({"delete": op("Offboard a tenant (admin). Its data stays (retained) unless `purge=true` deletes its checkpoints, storage, credentials and config; `purge=true` also clears the data an earlier offboarding retained.",
            "admin", vec![param("partition", "path", "The tenant's partition.", true, name_schema()),
                          param("purge", "query", "true to delete the tenant's data.", false, json!({"type": "boolean"}))],
            &[400, 401, 403, 404, 500, 503], json!({"type": "object"}))}),
    );
    let config_key = param(
        "key",
        "path",
        "The dotted key.",
        true,
        json!({
            "type": "string",
            "minLength": 1,
            "pattern": format!(
                "^[A-Za-z0-9_-]{{1,{MAX_CONFIG_SEGMENT}}}(\\.[A-Za-z0-9_-]{{1,{MAX_CONFIG_SEGMENT}}}){{0,{}}}$",
                MAX_CONFIG_SEGMENTS - 1
            )
        }),
    );
    paths.insert(
        "/v1/admin/config/{key}".into(),
        json!({
            "put": with_body(op("Write a config value by dotted key (admin). Limits are config: `limits` for every tenant, `tenants.<partition>.limits` for one (`rate_per_sec`, `burst`, `concurrency`, `weight`, `max_instances`, `max_stored_bytes`, `max_state_bytes`, `max_reply_bytes`); a write that would leave invalid limits is refused (422 `invalid_limits`).", "admin",
                vec![config_key.clone()], &[400, 401, 403, 413, 422, 500, 503], json!({"type": "object"})),
                json!({"description": "Any JSON value."}), limit),
            "get": op("Read a config value by dotted key (admin).", "admin",
                vec![config_key], &[400, 401, 403, 404, 500], json!({"type": "object"}))
        }),
    );
    paths.insert(
        "/v1/admin/instances/{name}/restart".into(),
        json!({"post": op("Start a failed or backing-off component instance now (admin).", "admin",
            vec![param("name", "path", "The instance name.", true, name_schema())],
            &[400, 401, 403, 404, 409, 422, 500, 503], json!({"type": "object"}))}),
    );
    paths.insert(
        "/v1/admin/partitions/{partition}/instances/{manager}/{key}/restart".into(),
        json!({"post": op("Start a keyed instance that gave up now, without waiting out its backoff (admin).", "admin",
            vec![param("partition", "path", "The tenant's partition.", true, names(r.partitions.as_deref())),
                 param("manager", "path", "The keyed manager.", true, names(Some(&r.keyed_managers))),
                 key_param("path", "The key.")],
            LIFECYCLE_ERRORS, json!({"type": "object"}))}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {"summary": "Prometheus metrics of every tenant (text); the admin key or the metrics token.",
            "tags": ["ops"],
            "responses": responses(text_ok(), &[401, 403, 503])}}),
    );
}

fn ops_routes(paths: &mut Map<String, Value>) {
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
    paths.insert(
        "/healthz".into(),
        json!({"get": {"summary": "Liveness.", "tags": ["ops"], "security": [],
            "responses": {"200": ok_response(json!({"type": "object"}))}}}),
    );
    paths.insert(
        "/readyz".into(),
        json!({"get": {"summary": "Readiness (503 while starting or shutting down).", "tags": ["ops"], "security": [],
            "responses": {"200": ok_response(json!({"type": "object"})),
                          "503": {"description": status_text(503), "content": error}}}}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"summary": "This document, for the key that reads it.", "tags": ["ops"], "security": [],
            "responses": {"200": {"description": "The OpenAPI document.",
                "content": {"application/json": {"schema": {"type": "object"}}}}}}}),
    );
}

/// The partitions a handler route may name for this reader.
fn handler_partitions(h: &HandlerDescriptor, r: &Reader) -> Value {
    let prefix = h.route.rsplit_once('.').map_or("", |(p, _)| p);
    let listed = match h.kind {
        RouteKind::Instance => r.instance_partitions.get(prefix).map(|p| vec![p.clone()]),
        RouteKind::Factory => r.factory_partitions.get(prefix).cloned(),
        RouteKind::Keyed => None,
    };
    match (listed, &r.partitions) {
        (Some(mut found), Some(reach)) => {
            found.retain(|p| reach.contains(p));
            names(Some(&found))
        }
        (_, reach) => names(reach.as_deref()),
    }
}

/// The document for `reader`, listing `handlers` (what it may call) as invoke paths.
pub fn document(handlers: &[HandlerDescriptor], reader: &Reader) -> Value {
    let mut paths = Map::new();
    tenant_routes(&mut paths, reader);
    if reader.admin {
        admin_routes(&mut paths, reader);
    }
    ops_routes(&mut paths);
    let mut seen = std::collections::BTreeSet::new();
    for h in handlers {
        if !seen.insert(h.route.clone()) {
            continue;
        }
        let mut params = vec![param(
            "partition",
            "path",
            "The tenant's partition.",
            true,
            handler_partitions(h, reader),
        )];
        if h.kind == RouteKind::Keyed {
            params.push(key_param("query", "The instance key."));
        }
        params.push(timeout_param());
        let mut operation = with_body(
            op(
                &format!(
                    "{} (replies over {} bytes of JSON are refused with 422 reply_too_large)",
                    h.description, h.max_reply_bytes
                ),
                "handlers",
                params,
                INVOKE_ERRORS,
                standalone(&h.reply_schema, &h.route, "reply"),
            ),
            standalone(&h.params_schema, &h.route, "params"),
            reader.body_limit,
        );
        if let Some(map) = operation.as_object_mut() {
            map.insert(
                "operationId".into(),
                Value::String(format!("invoke:{}", h.route)),
            );
            map.insert(
                "x-tenantry-max-reply-bytes".into(),
                json!(h.max_reply_bytes),
            );
        }
        paths.insert(
            format!("/v1/partitions/{{partition}}/invoke/{}", h.route),
            json!({ "post": operation }),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Tenantry",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A multi-tenant runtime for durable agents and components. Every answer is JSON: `{\"ok\": true, \"result\": ...}` or `{\"ok\": false, \"error\": {\"code\", \"message\"}}`."
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {
                "type": "object",
                "required": ["ok", "error"],
                "properties": {
                    "ok": {"const": false},
                    "error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}
                    }}
                }
            }}
        },
        "paths": paths
    })
}
