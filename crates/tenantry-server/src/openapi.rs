//! The OpenAPI 3.1 document: every route of the API, and one path per bus handler with
//! its params and reply JSON Schemas.

use serde_json::{Map, Value, json};
use tenantry::bus::{HandlerDescriptor, RouteKind};

fn param(name: &str, location: &str, description: &str, required: bool) -> Value {
    json!({
        "name": name,
        "in": location,
        "required": required,
        "description": description,
        "schema": {"type": "string"}
    })
}

fn ok_response(result: Value, description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["ok", "result"],
            "properties": {"ok": {"const": true}, "result": result}
        }}}
    })
}

fn errors() -> Value {
    json!({
        "description": "An error: 400 malformed JSON or partition name, 401 missing or unknown key, \
            403 another partition's key or a tenant key on an admin route, 404 unknown handler, \
            target or instance, 409 conflict, 413 body over the limit, 422 invalid params, \
            429 mailbox full or limit reached, 503 store unavailable, 504 handler timeout",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn op(summary: &str, tags: &str, params: Vec<Value>, body: Option<Value>, result: Value) -> Value {
    let mut o = json!({
        "summary": summary,
        "tags": [tags],
        "parameters": params,
        "responses": {"200": ok_response(result, "success"), "default": errors()}
    });
    if let (Some(body), Some(map)) = (body, o.as_object_mut()) {
        map.insert(
            "requestBody".into(),
            json!({"content": {"application/json": {"schema": body}}}),
        );
    }
    o
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

/// The document, listing `handlers` (what the reader may call) as invoke paths.
pub fn document(handlers: &[HandlerDescriptor]) -> Value {
    let p = || param("partition", "path", "The tenant's partition.", true);
    let any = json!({});
    let mut paths = Map::new();
    paths.insert(
        "/v1/partitions/{partition}/invoke/{handler}".into(),
        json!({"post": op(
            "Invoke a bus handler in the partition (the handler paths below give each one's schemas).",
            "partitions",
            vec![p(), param("handler", "path", "`instance.runnable`, `factory.runnable` or `manager.handler`.", true),
                 param("key", "query", "The key of a keyed instance.", false),
                 param("timeout_ms", "query", "The call timeout in milliseconds.", false)],
            Some(json!({"description": "The handler's params."})),
            any.clone())}),
    );
    paths.insert(
        "/v1/partitions/{partition}/handlers".into(),
        json!({"get": op("The handlers visible to the partition, with descriptions and JSON Schemas.",
            "partitions", vec![p()], None, json!({"type": "array"}))}),
    );
    paths.insert(
        "/v1/partitions/{partition}/instances".into(),
        json!({"get": op("The partition's component instances and live keyed instances.",
            "partitions", vec![p()], None, json!({"type": "object"}))}),
    );
    paths.insert(
        "/v1/partitions/{partition}/instances/{manager}/{key}".into(),
        json!({"delete": op("Stop and hibernate a keyed instance.", "partitions",
            vec![p(), param("manager", "path", "The manager.", true), param("key", "path", "The key.", true)],
            None, json!({"type": "object"}))}),
    );
    let pod_params = || {
        vec![
            p(),
            param("manager", "path", "The pods manager.", true),
            param("key", "path", "The pod's key.", true),
        ]
    };
    paths.insert(
        "/v1/partitions/{partition}/pods/{manager}/{key}".into(),
        json!({
            "post": op("Get (or thaw) a pod and reconcile it; returns the report and the node snapshot.",
                "pods", pod_params(), None, json!({"type": "object"})),
            "get": op("The node snapshot of a running pod.", "pods", pod_params(), None, json!({"type": "object"}))
        }),
    );
    let mut node_params = pod_params();
    node_params.push(param("node", "path", "The node's name.", true));
    paths.insert(
        "/v1/partitions/{partition}/pods/{manager}/{key}/nodes/{node}".into(),
        json!({"post": op("Ensure a node of the pod runs.", "pods", node_params, None, json!({"type": "object"}))}),
    );
    paths.insert(
        "/v1/admin/partitions".into(),
        json!({
            "get": op("List tenants (admin).", "admin", vec![], None, json!({"type": "array"})),
            "post": op("Onboard a tenant (admin); the reply holds its API key, shown this once.", "admin", vec![],
                Some(json!({"type": "object", "required": ["partition"], "properties": {
                    "partition": {"type": "string"},
                    "config": {"type": "object"},
                    "instances": {"type": "array", "items": {"type": "object", "required": ["factory", "name"],
                        "properties": {"factory": {"type": "string"}, "name": {"type": "string"}, "properties": {"type": "object"}}}}
                }})),
                json!({"type": "object", "properties": {"partition": {"type": "string"}, "api_key": {"type": "string"}}}))
        }),
    );
    paths.insert(
        "/v1/admin/partitions/{partition}".into(),
        json!({"delete": op("Offboard a tenant (admin); `purge=true` also deletes its checkpoints, storage, credentials and config.",
            "admin", vec![p(), param("purge", "query", "true to delete the tenant's data.", false)], None, json!({"type": "object"}))}),
    );
    paths.insert(
        "/v1/admin/config/{key}".into(),
        json!({
            "put": op("Write a config value by dotted key (admin).", "admin",
                vec![param("key", "path", "The dotted key.", true)], Some(json!({"description": "Any JSON value."})), json!({"type": "object"})),
            "get": op("Read a config value by dotted key (admin).", "admin",
                vec![param("key", "path", "The dotted key.", true)], None, json!({"type": "object"}))
        }),
    );
    for (route, summary) in [
        ("/healthz", "Liveness."),
        (
            "/readyz",
            "Readiness (503 while starting or shutting down).",
        ),
        ("/metrics", "Prometheus metrics (text)."),
        ("/openapi.json", "This document."),
    ] {
        paths.insert(
            route.into(),
            json!({"get": {"summary": summary, "tags": ["ops"], "security": [],
                "responses": {"200": {"description": "success"}}}}),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for h in handlers {
        if !seen.insert(h.route.clone()) {
            continue;
        }
        let mut params = vec![p()];
        if h.kind == RouteKind::Keyed {
            params.push(param("key", "query", "The instance key.", true));
        }
        params.push(param(
            "timeout_ms",
            "query",
            "The call timeout in milliseconds.",
            false,
        ));
        let mut operation = op(
            &h.description,
            "handlers",
            params,
            Some(standalone(&h.params_schema, &h.route, "params")),
            standalone(&h.reply_schema, &h.route, "reply"),
        );
        if let Some(map) = operation.as_object_mut() {
            map.insert(
                "operationId".into(),
                Value::String(format!("invoke:{}", h.route)),
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
            "description": "A multi-tenant runtime for durable agents and components."
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
