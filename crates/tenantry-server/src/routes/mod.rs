//! The HTTP API: the router, authentication, and the helpers every route shares.
//!
//! Partition routes take a tenant key of that partition (or the admin key) as
//! `Authorization: Bearer <key>`; admin routes take the admin key. Checks run in this
//! order: the key (401), the partition name (400), the key's right to it (403), then the
//! request itself.

mod admin;
pub mod events;
pub mod extract;
mod ops;
mod pods;
mod prematched;
mod tenant;
mod ui;

use crate::app::App;
use crate::error::ApiError;
use crate::keys::Principal;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Serialize;
use std::any::Any;
use std::convert::Infallible;
use std::sync::Arc;
use tenantry::{Key, Partition};
use tower::Service;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

/// The gateway's service: requests in, responses out, never an error (every failure is
/// a response in the envelope). A clone shares the routes: the server clones it per
/// request, the cluster's relays per relayed request.
pub trait Gateway:
    Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + 'static
{
}

impl<S> Gateway for S where
    S: Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + 'static
{
}

/// The whole API over `app`: the routes under the middleware, with the invoke route
/// matched before the others ([`prematched`]).
pub fn gateway(app: Arc<App>) -> impl Gateway {
    let body_limit = app.settings.limits.body_limit;
    let routes = Router::new()
        // Answered before the router when its path is plain (`prematched.rs`): a layer
        // for this route goes around the whole gateway, not here.
        .route(prematched::ROUTE, post(tenant::invoke))
        .route("/v1/partitions/{partition}/handlers", get(tenant::handlers))
        .route("/v1/partitions/{partition}/usage", get(tenant::usage))
        .route("/v1/admin/usage", get(admin::usage))
        .route("/v1/partitions/{partition}/events", get(events::tenant))
        .route("/v1/admin/events", get(events::admin))
        .route(
            "/v1/partitions/{partition}/instances",
            get(tenant::instances),
        )
        .route("/v1/admin/cluster", get(admin::cluster))
        .route(
            "/v1/admin/partitions",
            get(admin::list).post(admin::onboard),
        )
        .route(
            "/v1/admin/partitions/{partition}",
            axum::routing::delete(admin::offboard),
        )
        .route(
            "/v1/admin/partitions/{partition}/placement",
            get(admin::placement).put(admin::pin).delete(admin::unpin),
        )
        .route(
            "/v1/admin/instances/{name}/restart",
            post(admin::restart_component),
        )
        .route(
            "/v1/admin/config/{key}",
            put(admin::set_config).get(admin::get_config),
        )
        .merge(instance_routes(&app))
        .route("/openapi.json", get(ops::openapi))
        .route("/metrics", get(ops::metrics))
        .route(
            "/v1/partitions/{partition}/metrics",
            get(ops::tenant_metrics),
        )
        .route("/healthz", get(ops::healthz))
        .route("/ui", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/style.css", get(ui::style))
        .route("/v1/whoami", get(ui::whoami))
        .route("/readyz", get(ops::readyz))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .with_state(app.clone());
    // The middleware wraps the router once: `Router::layer` would wrap every route in
    // each layer, and each request would then clone and box a route's service per layer.
    // Nor is the stack put behind another router: that router's fallback would clone and
    // box it for every request. Outermost first; the first only turns the trace layer's
    // body back into axum's.
    tower::ServiceBuilder::new()
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|payload: Box<dyn Any + Send>| {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            ApiError::hidden(StatusCode::INTERNAL_SERVER_ERROR, "panicked", text).into_response()
        }))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::map_response(envelope_errors))
        .service(prematched::InvokeFirst::new(app, routes))
}

/// The routes that act on a keyed instance or pod itself rather than call it: in
/// cluster mode, a node that does not host it relays the request to the one that does
/// (`relay.rs`).
fn instance_routes(app: &Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route(
            "/v1/partitions/{partition}/instances/{manager}/{key}",
            axum::routing::delete(tenant::stop_instance),
        )
        .route(
            "/v1/partitions/{partition}/pods/{manager}/{key}",
            post(pods::get_pod).get(pods::snapshot),
        )
        .route(
            "/v1/partitions/{partition}/pods/{manager}/{key}/nodes/{node}",
            post(pods::ensure_node),
        )
        .route(
            "/v1/admin/partitions/{partition}/instances/{manager}/{key}/restart",
            post(admin::restart_agent),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::relay::relay_elsewhere,
        ))
}

/// Backstop: an error answer the framework made itself (a rejection, a method not
/// allowed) is rewritten into the JSON envelope, so every answer is one.
async fn envelope_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let reason = status.canonical_reason().unwrap_or("error");
    let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
    let mut answer = ApiError::new(status, &code, reason).into_response();
    // Keep what the framework said about the answer (Allow, Retry-After, ...).
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().append(name.clone(), value.clone());
        }
    }
    answer
}

/// `{"ok": true, "result": ...}` with status 200; the result is written into the
/// envelope where it goes (an instance's reply, JSON text already, is copied once).
pub fn ok<T: Serialize>(result: T) -> Response {
    const OPEN: &[u8] = br#"{"ok":true,"result":"#;
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(OPEN);
    match serde_json::to_writer(&mut body, &result) {
        Ok(()) => {
            body.push(b'}');
            json_response(StatusCode::OK, body)
        }
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// A response of `status` whose body is `body`, as `application/json`.
pub fn json_response(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A route's outcome: a response either way.
pub type ApiResult = Result<Response, ApiError>;

/// Who holds the bearer key of the request (401 without a known key).
pub fn principal(app: &App, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let key = bearer(headers)?;
    app.keys
        .authenticate(key)
        .ok_or_else(|| ApiError::unauthorized("unknown API key"))
}

/// The bearer key of the request (401 when there is none).
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <key>`"))?;
    let text = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let key = text
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <key>`"))?;
    Ok(key)
}

/// Cluster mode: `identity` is hosted on another node (503 `served_elsewhere`, which the
/// relay turns into that node's answer), rather than "not live here".
pub fn hosted_here(app: &App, identity: &tenantry::Identity) -> Result<(), ApiError> {
    match &app.cluster {
        Some(cluster) if !cluster.serves(identity) => {
            Err(tenantry::Error::ServedElsewhere(identity.clone()).into())
        }
        _ => Ok(()),
    }
}

/// A partition name from a path (400 when invalid).
pub fn parse_partition(name: &str) -> Result<Partition, ApiError> {
    Partition::new(name).map_err(|e| ApiError::bad_request("invalid_partition", e.to_string()))
}

/// The longest key taken over HTTP, in characters (at most 4 bytes each: within the
/// library's byte limit).
pub const MAX_HTTP_KEY_CHARS: usize = 256;

/// The longest call timeout a request may ask for, in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 60_000;

/// An instance key from a path or query: a plain string key of 1 to 256 characters with
/// no control characters, not starting with `[` (structured keys are the library's; the
/// HTTP API states its keys exactly in its OpenAPI document).
pub fn parse_key(s: &str) -> Result<Key, ApiError> {
    let chars = s.chars().count();
    if chars > MAX_HTTP_KEY_CHARS {
        return Err(ApiError::bad_request(
            "invalid_key",
            format!(
                "invalid key: {chars} characters is longer than the {MAX_HTTP_KEY_CHARS}-character limit"
            ),
        ));
    }
    Key::new(s).map_err(|e| ApiError::bad_request("invalid_key", e.to_string()))
}

/// A call timeout from a query (400 outside 1 to 60,000 ms).
pub fn parse_timeout(ms: Option<u64>) -> Result<Option<std::time::Duration>, ApiError> {
    match ms {
        None => Ok(None),
        Some(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => {
            Ok(Some(std::time::Duration::from_millis(ms)))
        }
        Some(ms) => Err(ApiError::bad_request(
            "invalid_timeout",
            format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}, not {ms}"),
        )),
    }
}

/// The longest config key segment, and the most segments, taken over HTTP.
pub const MAX_CONFIG_SEGMENT: usize = 64;
/// See [`MAX_CONFIG_SEGMENT`].
pub const MAX_CONFIG_SEGMENTS: usize = 16;

/// A dotted config key from a path: 1 to 16 segments of 1 to 64 of `A-Z a-z 0-9 _ -`.
pub fn parse_config_key(key: &str) -> Result<&str, ApiError> {
    let segments: Vec<&str> = key.split('.').collect();
    let valid = segments.len() <= MAX_CONFIG_SEGMENTS
        && segments.iter().all(|s| {
            (1..=MAX_CONFIG_SEGMENT).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if valid {
        Ok(key)
    } else {
        Err(ApiError::bad_request(
            "invalid_config_key",
            format!(
                "invalid config key {key:?}: 1 to {MAX_CONFIG_SEGMENTS} dot-separated segments \
                 of 1 to {MAX_CONFIG_SEGMENT} ASCII letters, digits, '_' or '-'"
            ),
        ))
    }
}

/// Decodes a JSON value into a request type: 422 naming what is wrong.
pub fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_json::from_value(value)
        .map_err(|e| ApiError::unprocessable("invalid_body", e.to_string()))
}
