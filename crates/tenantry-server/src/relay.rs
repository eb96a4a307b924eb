//! Cluster mode: gateway requests that act on an agent or a pod another node hosts (the
//! pod routes, stopping an instance, restarting an agent) are relayed to that node.
//!
//! Handler calls reach their owner through the bus's forwarder; these routes act on the
//! runtime's instances directly, so the gateway relays the request itself. Such a route
//! on a node that does not host the identity answers `served_elsewhere` and names the
//! identity in a response extension (never in the body). [`relay_elsewhere`], layered
//! on those routes only, then looks up the identity's owner and sends it the request
//! (method, path and query, the `Authorization` and `Content-Type` headers, the body) on
//! `tenantry.<cluster>.http.<owner>.<partition>`, NATS request-reply. The owner
//! ([`serve_relays`]) checks that the path names the subject's partition, runs the
//! request through its own gateway, marked [`Relayed`] so that it never travels on, and
//! answers with the status, the body and the headers a client needs. The owner
//! authenticates the key again: a relay grants nothing a direct request would not.
//! When the owner cannot be reached (it is changing, or gone), the first answer stands:
//! 503 `served_elsewhere` with `Retry-After: 1`.

use crate::App;
use crate::cluster::ClusterPart;
use crate::error::ApiError;
use crate::routes::Gateway;
use crate::routes::extract::read_body;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tenantry::Identity;
use tenantry_cluster::async_nats::{self, HeaderMap as NatsHeaders};
use tower::ServiceExt;

/// Marks a request relayed from another node: it is answered here, never relayed again.
#[derive(Debug, Clone, Copy)]
pub struct Relayed;

/// The identity a `served_elsewhere` answer was about (a response extension).
#[derive(Debug, Clone)]
pub struct Elsewhere(pub Identity);

/// How long a relayed request may take on its owner (a pod's reconcile may be slow).
const RELAY_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer relayed back.
const MAX_RELAYED_ANSWER: usize = 8 << 20;
/// How many owners a relay tries (the record is read again between them).
const ATTEMPTS: usize = 3;

const METHOD: &str = "Tenantry-Method";
const URI: &str = "Tenantry-Uri";
const STATUS: &str = "Tenantry-Status";
/// The request headers a relay carries.
const REQUEST_HEADERS: [HeaderName; 2] = [header::AUTHORIZATION, header::CONTENT_TYPE];
/// The answer headers a relay carries back.
const ANSWER_HEADERS: [HeaderName; 2] = [header::CONTENT_TYPE, header::RETRY_AFTER];

/// Middleware for the routes that act on an instance: runs the route, and when it
/// answers `served_elsewhere` about an identity (and the request was not relayed
/// already), answers with the owner's response instead.
pub async fn relay_elsewhere(
    State(app): State<Arc<App>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(cluster) = app.cluster.as_ref() else {
        return next.run(request).await;
    };
    if request.extensions().get::<Relayed>().is_some() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match read_body(body, app.settings.limits.body_limit).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let (method, uri, headers) = (
        parts.method.clone(),
        parts.uri.clone(),
        parts.headers.clone(),
    );
    let answer = next
        .run(Request::from_parts(parts, Body::from(body.clone())))
        .await;
    let Some(Elsewhere(identity)) = answer.extensions().get::<Elsewhere>().cloned() else {
        return answer;
    };
    match relay(cluster, &identity, &method, &uri, &headers, body).await {
        Some(relayed) => relayed,
        None => answer,
    }
}

/// Sends the request to `identity`'s owner; its answer, or `None` when no owner other
/// than this node answered.
async fn relay(
    cluster: &ClusterPart,
    identity: &Identity,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Option<Response> {
    let (client, node) = (cluster.client()?, cluster.node()?);
    let mut nats_headers = NatsHeaders::new();
    nats_headers.insert(METHOD, method.as_str());
    nats_headers.insert(URI, uri.to_string().as_str());
    for name in REQUEST_HEADERS {
        if let Some(value) = headers.get(&name).and_then(|v| v.to_str().ok()) {
            nats_headers.insert(name.as_str(), value);
        }
    }
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let owner = match node.owner_of(identity).await {
            Ok(Some(owner)) if owner != node.name() => owner,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the shard owners for a relay failed");
                continue;
            }
        };
        let subject =
            tenantry_cluster::relay_subject(&cluster.settings.name, &owner, &identity.partition);
        let request = async_nats::Request::new()
            .headers(nats_headers.clone())
            .payload(body.clone())
            .timeout(Some(RELAY_TIMEOUT));
        match client.send_request(subject, request).await {
            // The owner changed meanwhile: ask the next one.
            Ok(message) if elsewhere(&message) => continue,
            Ok(message) => return Some(answer_of(&message)),
            Err(e) => tracing::debug!(error = %e, %owner, "a relay found no answer"),
        }
    }
    None
}

const ELSEWHERE: &str = "Tenantry-Elsewhere";

/// Whether a relay's reply says that its node does not host the identity either.
fn elsewhere(message: &async_nats::Message) -> bool {
    message
        .headers
        .as_ref()
        .is_some_and(|h| h.get(ELSEWHERE).is_some())
}

/// The HTTP answer a relay's reply carries.
fn answer_of(message: &async_nats::Message) -> Response {
    let headers = message.headers.as_ref();
    let get = |name: &str| headers.and_then(|h| h.get(name)).map(|v| v.as_str());
    let Some(status) = get(STATUS)
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
    else {
        return ApiError::new(
            StatusCode::BAD_GATEWAY,
            "relay_failed",
            "the node that hosts the instance gave no answer",
        )
        .into_response();
    };
    let mut answer = (status, Body::from(message.payload.clone())).into_response();
    for name in ANSWER_HEADERS {
        if let Some(value) = get(name.as_str()).and_then(|v| HeaderValue::from_str(v).ok()) {
            answer.headers_mut().insert(name, value);
        }
    }
    answer
}

/// Answers the requests other nodes relay to this one, through `gateway` (this server's
/// own), until the returned task is aborted.
pub async fn serve_relays(
    cluster: &ClusterPart,
    gateway: impl Gateway,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let client = cluster
        .client()
        .ok_or_else(|| anyhow::anyhow!("the node has not joined"))?;
    let subject = format!(
        "tenantry.{}.http.{}.*",
        cluster.settings.name, cluster.settings.node
    );
    let mut requests = client.subscribe(subject).await?;
    Ok(tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let (client, gateway) = (client.clone(), gateway.clone());
            tokio::spawn(async move {
                let Some(reply_to) = message.reply.clone() else {
                    return;
                };
                let (headers, payload) = answer_relayed(gateway, &message).await;
                if let Err(e) = client
                    .publish_with_headers(reply_to, headers, payload)
                    .await
                {
                    tracing::warn!(error = %e, "answering a relayed request failed");
                }
            });
        }
    }))
}

/// Runs one relayed request through `gateway`: the reply's headers and payload.
async fn answer_relayed(
    gateway: impl Gateway,
    message: &async_nats::Message,
) -> (NatsHeaders, Bytes) {
    let response = match relayed_request(message) {
        Ok(request) => match gateway.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Err(e) => e.into_response(),
    };
    let mut headers = NatsHeaders::new();
    headers.insert(STATUS, response.status().as_str());
    for name in ANSWER_HEADERS {
        if let Some(value) = response.headers().get(&name).and_then(|v| v.to_str().ok()) {
            headers.insert(name.as_str(), value);
        }
    }
    if response.extensions().get::<Elsewhere>().is_some() {
        headers.insert(ELSEWHERE, "1");
    }
    let body = axum::body::to_bytes(response.into_body(), MAX_RELAYED_ANSWER)
        .await
        .unwrap_or_else(|_| {
            Bytes::from_static(br#"{"ok":false,"error":{"code":"relay_failed","message":"the answer is too large to relay"}}"#)
        });
    (headers, body)
}

/// The HTTP request a relay carries, checked: its path must name the partition of the
/// subject it came on (`tenantry.<cluster>.http.<node>.<partition>`).
fn relayed_request(message: &async_nats::Message) -> Result<Request, ApiError> {
    let bad = || ApiError::bad_request("bad_relay", "a relayed request is malformed");
    let headers = message.headers.as_ref().ok_or_else(bad)?;
    let method: Method = headers
        .get(METHOD)
        .and_then(|m| m.as_str().parse().ok())
        .ok_or_else(bad)?;
    let uri: Uri = headers
        .get(URI)
        .and_then(|u| u.as_str().parse().ok())
        .ok_or_else(bad)?;
    let subject_partition = message.subject.rsplit('.').next().unwrap_or_default();
    if path_partition(uri.path()) != Some(subject_partition) {
        return Err(ApiError::forbidden(
            "a relayed request names another partition than its subject",
        ));
    }
    let mut request = Request::builder().method(method).uri(uri);
    for name in REQUEST_HEADERS {
        if let Some(value) = headers.get(name.as_str()) {
            request = request.header(name, value.as_str());
        }
    }
    let mut request = request
        .body(Body::from(message.payload.clone()))
        .map_err(|_| bad())?;
    request.extensions_mut().insert(Relayed);
    Ok(request)
}

/// The partition a route's path names: the segment after `partitions/`.
fn path_partition(path: &str) -> Option<&str> {
    let mut segments = path.split('/');
    segments.find(|s| *s == "partitions")?;
    segments.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partition_of_a_relayed_path_is_the_segment_after_partitions() {
        for (path, partition) in [
            ("/v1/partitions/acme/pods/workspace_pods/w1", Some("acme")),
            (
                "/v1/admin/partitions/globex/instances/m/k/restart",
                Some("globex"),
            ),
            ("/v1/partitions", None),
            ("/v1/admin/cluster", None),
        ] {
            assert_eq!(path_partition(path), partition, "{path}");
        }
    }

    #[test]
    fn a_relayed_request_naming_another_partition_than_its_subject_is_refused() {
        let mut headers = NatsHeaders::new();
        headers.insert(METHOD, "GET");
        headers.insert(URI, "/v1/partitions/globex/pods/workspace_pods/w1");
        headers.insert(header::AUTHORIZATION.as_str(), "Bearer key");
        let message = |subject: &str| async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: Bytes::new(),
            headers: Some(headers.clone()),
            status: None,
            description: None,
            length: 0,
        };
        let refused = relayed_request(&message("tenantry.c.http.n1.acme")).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        let request = relayed_request(&message("tenantry.c.http.n1.globex")).unwrap();
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.headers()[header::AUTHORIZATION], "Bearer key");
        assert!(request.extensions().get::<Relayed>().is_some());
        let mut bare = message("tenantry.c.http.n1.globex");
        bare.headers = None;
        assert_eq!(
            relayed_request(&bare).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
