//! Extractors: who calls and on what, checked in one place, and the request's parts with
//! rejections that answer in the JSON envelope.
//!
//! [`Tenant`] holds the order every partition route answers in: the key (401), the
//! partition name (400), the key's right to it (403; the admin key reaches active tenants
//! only, 404 elsewhere). [`Admin`] holds it for admin routes (401, then 403). Put them
//! first among a handler's arguments so their answers come before any other.

use super::{bearer, parse_partition, principal};
use crate::app::App;
use crate::error::ApiError;
use crate::keys::Principal;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tenantry::{JsonParams, Partition};

/// A partition route's scope: the partition named in the path, which the key may use.
pub struct Tenant {
    /// The partition.
    pub partition: Partition,
    /// Who holds the key.
    pub principal: Principal,
}

impl FromRequestParts<Arc<App>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let who = principal(app, &parts.headers)?;
        let params = RawPathParams::from_request_parts(parts, app)
            .await
            .map_err(|e| ApiError::bad_request("bad_request", e.body_text()))?;
        let name = params
            .iter()
            .find(|(k, _)| *k == "partition")
            .map(|(_, v)| v)
            .ok_or_else(|| ApiError::bad_request("bad_request", "no partition in the path"))?;
        Self::of(app, who, name)
    }
}

impl Tenant {
    /// Whether the admin key made the request.
    pub fn is_admin(&self) -> bool {
        matches!(self.principal, Principal::Admin)
    }

    /// The scope of a request on partition `name` by `who` (the bearer key's holder,
    /// [`principal`]).
    pub fn of(app: &App, who: Principal, name: &str) -> Result<Self, ApiError> {
        let partition = match &who {
            // Its own partition: the name was checked when the key was given to it, and
            // the key's partition is shared rather than parsed and allocated again.
            Principal::Tenant(own) if own.name() == Some(name) => own.clone(),
            // Says nothing of which partition the key does belong to.
            Principal::Tenant(_) => {
                parse_partition(name)?;
                return Err(ApiError::forbidden(format!(
                    "this key may not access partition {name:?}"
                )));
            }
            Principal::Admin => {
                let partition = parse_partition(name)?;
                // A write into a partition nobody onboarded would wait there for whoever
                // is onboarded under that name.
                if !app.is_tenant(&partition) {
                    return Err(ApiError::not_found(format!("no active tenant {name:?}")));
                }
                partition
            }
        };
        Ok(Self {
            partition,
            principal: who,
        })
    }
}

/// The admin key (401 without a known key, 403 for a tenant key).
pub struct Admin;

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        match principal(app, &parts.headers)? {
            Principal::Admin => Ok(Self),
            Principal::Tenant(_) => Err(ApiError::forbidden("this route needs the admin key")),
        }
    }
}

/// The admin key or the metrics token.
pub struct MetricsReader;

impl FromRequestParts<Arc<App>> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let token = bearer(&parts.headers)?;
        if app
            .settings
            .metrics_token
            .is_some_and(|h| h == crate::keys::hash(token))
        {
            return Ok(Self);
        }
        Admin::from_request_parts(parts, app).await.map(|_| Self)
    }
}

/// Path parameters (400 when they do not parse). Routes under a partition skip its
/// parameter (`IgnoredAny`): [`Tenant`] reads it, without copying it.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<App>> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, app)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|e| ApiError::bad_request("bad_request", e.body_text()))
    }
}

/// Query parameters (400 when they do not parse).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<Arc<App>> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &Arc<App>) -> Result<Self, ApiError> {
        Self::of(&parts.uri)
    }
}

impl<T: DeserializeOwned> ApiQuery<T> {
    /// The query parameters of `uri`.
    pub fn of(uri: &Uri) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(uri)
            .map(|Query(v)| Self(v))
            .map_err(|e| ApiError::bad_request("bad_request", e.body_text()))
    }
}

/// The request body as JSON: empty means `{}`; 413 over the limit; 400 when malformed.
pub struct JsonBody(pub serde_json::Value);

impl FromRequest<Arc<App>> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let bytes = read_body(req.into_body(), app.settings.limits.body_limit).await?;
        if is_blank(&bytes) {
            return Ok(Self(no_params()));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(ApiError::malformed_json)
    }
}

/// The request body as a call's params, JSON text not yet parsed: the handler decodes its
/// params type straight from it, and text that is not JSON comes back from the call as
/// [`CallError::MalformedParams`](tenantry::CallError::MalformedParams) (400, as
/// [`JsonBody`] answers). 413 over the limit.
pub struct JsonText(Bytes);

impl FromRequest<Arc<App>> for JsonText {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        Self::read(req.into_body(), app).await
    }
}

impl JsonText {
    /// Reads `body` whole, within the server's body limit.
    pub async fn read(body: Body, app: &App) -> Result<Self, ApiError> {
        read_body(body, app.settings.limits.body_limit)
            .await
            .map(Self)
    }

    /// The params: the text, or `{}` for an empty body; 400 if the body is not UTF-8.
    pub fn params(&self) -> Result<JsonParams<'_>, ApiError> {
        if is_blank(&self.0) {
            return Ok(no_params().into());
        }
        std::str::from_utf8(&self.0)
            .map(JsonParams::Text)
            .map_err(ApiError::malformed_json)
    }
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// What an empty body stands for: `{}`.
fn no_params() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// The whole request body: 413 if its declared length, or the bytes read so far, pass
/// `limit` (the rest is not read); 400 if it cannot be read. A body that arrives in one
/// piece (a small request's usually does) is handed on as it is: no copy, no buffer list.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is over the limit",
        )
    };
    // A declared length over the limit is refused before anything is read.
    if usize::try_from(body.size_hint().lower()).map_or(true, |declared| declared > limit) {
        return Err(too_large());
    }
    let mut chunks = body.into_data_stream();
    let mut first = Bytes::new();
    // Only a body of two pieces or more is copied, into one buffer.
    let mut joined: Option<Vec<u8>> = None;
    let mut len = 0usize;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(
                "bad_request",
                format!("could not read the request body: {e}"),
            )
        })?;
        len = len.saturating_add(chunk.len());
        if len > limit {
            return Err(too_large());
        }
        match &mut joined {
            Some(all) => all.extend_from_slice(&chunk),
            None if first.is_empty() => first = chunk,
            None => joined = Some([&first[..], &chunk[..]].concat()),
        }
    }
    Ok(joined.map_or(first, Bytes::from))
}
