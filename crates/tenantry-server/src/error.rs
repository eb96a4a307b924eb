//! API errors and their HTTP statuses.
//!
//! Every error answers `{"ok": false, "error": {"code": ..., "message": ...}}`. The
//! library's errors name only what the caller asked for; the gateway keeps it that way
//! (a 403 never says which partition a key belongs to). A 5xx that comes from inside
//! (a panic, a corrupt record, an encoding failure) never carries its text: the client
//! gets a generic message with an error id, and the text goes to the log under that id.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tenantry::store::{OverLimit, SizeLimit, StoreError};
use tenantry::{CallError, Error};

/// An error answered to an API client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A short machine-readable code.
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after: Option<u64>,
    /// Cluster mode: the identity another node hosts (`served_elsewhere`), for the relay
    /// (a response extension, never in the body).
    pub elsewhere: Option<tenantry::Identity>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            retry_after: None,
            elsewhere: None,
        }
    }

    /// The same error, telling the client to retry after `secs` seconds.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// The same error, telling the client to retry after `wait`, in whole seconds rounded
    /// up: never too early.
    pub fn retry_after_duration(self, wait: std::time::Duration) -> Self {
        let secs = wait.as_millis().div_ceil(1000).max(1);
        self.retry_after(u64::try_from(secs).unwrap_or(u64::MAX))
    }

    /// 400.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 `invalid_json`: a body (or a call's params as text) that is not JSON.
    pub fn malformed_json(detail: impl std::fmt::Display) -> Self {
        Self::bad_request("invalid_json", format!("malformed JSON body: {detail}"))
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422.
    pub fn unprocessable(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 500, hiding `detail` (logged under a fresh error id the answer names).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::hidden(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// An error whose `detail` stays in the log: the answer says only that something
    /// failed inside, and under which id to look.
    pub fn hidden(status: StatusCode, code: &str, detail: impl std::fmt::Display) -> Self {
        let id = error_id();
        tracing::error!(error_id = %id, code, status = status.as_u16(), detail = %detail, "internal error");
        Self::new(
            status,
            code,
            format!("internal error; the server log has it under error id {id}"),
        )
    }
}

/// A fresh id to find an error's log line by (16 hex digits).
fn error_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: a per-process counter still tells log lines apart.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        bytes = NEXT
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Serialize)]
struct Body<'a> {
    ok: bool,
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body {
            ok: false,
            error: Detail {
                code: &self.code,
                message: &self.message,
            },
        })
        .unwrap_or_default();
        let mut response = crate::routes::json_response(self.status, body);
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        if let Some(identity) = self.elsewhere {
            response
                .extensions_mut()
                .insert(crate::relay::Elsewhere(identity));
        }
        response
    }
}

impl ApiError {
    /// A write refused by a storage limit: 413 `state_too_large` for one record, 507
    /// `storage_limit_exceeded` for the partition's stored bytes (not retried: the tenant
    /// must make room or have its limit raised).
    fn over_limit(over: &OverLimit, message: String) -> Self {
        match over.limit {
            SizeLimit::StateBytes => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "state_too_large", message)
            }
            SizeLimit::StoredBytes => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage_limit_exceeded",
                message,
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        match e {
            StoreError::Conflict { .. } => Self::conflict(message),
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                message,
            ),
            StoreError::Corrupt(_) => Self::internal(message),
            StoreError::Fenced { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_fenced", message)
            }
            StoreError::OverLimit(over) => Self::over_limit(&over, message),
        }
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        let message = e.to_string();
        match e {
            CallError::MailboxFull { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "mailbox_full", message)
            }
            CallError::Timeout(_) => Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", message),
            CallError::Stopped => Self::new(StatusCode::SERVICE_UNAVAILABLE, "stopped", message),
            CallError::Panicked { .. } => {
                Self::hidden(StatusCode::INTERNAL_SERVER_ERROR, "panicked", message)
            }
            CallError::ReplyTooLarge { .. } => Self::unprocessable("reply_too_large", message),
            CallError::Handler(h) => match h.kind {
                tenantry::RefusalKind::Invalid => Self::unprocessable(&h.code, h.message),
                tenantry::RefusalKind::Conflict => {
                    Self::new(StatusCode::CONFLICT, &h.code, h.message)
                }
                tenantry::RefusalKind::Forbidden => {
                    Self::new(StatusCode::FORBIDDEN, &h.code, h.message)
                }
            },
            CallError::UnknownHandler { .. } => Self::not_found(message),
            CallError::InvalidParams { .. } => Self::unprocessable("invalid_params", message),
            CallError::MalformedParams { message, .. } => Self::malformed_json(message),
            CallError::ReplyEncoding { .. } => Self::internal(message),
            CallError::NotDurable { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_durable", message)
            }
            CallError::OverLimit(over) => Self::over_limit(&over, message),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Call(c) => c.into(),
            Error::Store(s) => s.into(),
            Error::InvalidKey(_) => Self::bad_request("invalid_key", message),
            Error::InvalidPartition(_) => Self::bad_request("invalid_partition", message),
            Error::InvalidName { .. } | Error::Topology(_) => {
                Self::bad_request("bad_request", message)
            }
            Error::UnknownManager(_)
            | Error::NotFound(_)
            | Error::UnknownNode(_)
            | Error::UnknownFactory(_)
            | Error::UnknownInstance(_)
            | Error::RouteNotFound(_) => Self::not_found(message),
            Error::DuplicateManager(_)
            | Error::DuplicateFactory(_)
            | Error::NameTaken(_)
            | Error::MutationInProgress(_)
            | Error::DependencyCycle(_)
            | Error::DependenciesNotActive { .. } => Self::conflict(message),
            Error::InvalidProperties(_) | Error::InvalidInitialState { .. } => {
                Self::unprocessable("invalid_properties", message)
            }
            Error::Forbidden(_) => Self::forbidden(message),
            Error::BackingOff { retry_in, .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "backing_off", message)
                    .retry_after_duration(retry_in)
            }
            Error::NotFailed(_) => Self::conflict(message),
            Error::Throttled { throttled, .. } => {
                use tenantry::quota::Limit;
                let code = match throttled.limit {
                    Limit::Rate => "rate_limited",
                    Limit::Concurrency => "concurrency_limited",
                    Limit::FairShare => "fair_share_exceeded",
                    Limit::Instances => "instance_limit_reached",
                };
                Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
                    .retry_after_duration(throttled.retry_after)
            }
            Error::ServedElsewhere(identity) => Self {
                elsewhere: Some(identity),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "served_elsewhere", message)
                    .retry_after(1)
            },
            Error::ServiceGone(_) | Error::ShutDown => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            // Thaw, activation, encoding and node failures, and anything added later.
            _ => Self::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_panic_answers_a_generic_message_with_an_error_id() {
        let e = ApiError::from(Error::Call(CallError::Panicked {
            handler: "query".into(),
            message: "capacity overflow at src/secret.rs:12".into(),
        }));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code, "panicked");
        assert!(!e.message.contains("capacity") && !e.message.contains("query"));
        let id = e.message.rsplit(' ').next().unwrap();
        assert_eq!(id.len(), 16, "{}", e.message);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        let other = ApiError::internal("x");
        assert_ne!(other.message, e.message, "every error gets its own id");
        let corrupt = ApiError::from(StoreError::Corrupt("row 7 of table t".into()));
        assert!(!corrupt.message.contains("row 7"));
        let too_large = ApiError::from(CallError::ReplyTooLarge {
            handler: "q".into(),
            limit: 10,
        });
        assert_eq!(too_large.status.as_u16(), 422);
        assert_eq!(too_large.code, "reply_too_large");
        let backing_off = ApiError::from(Error::BackingOff {
            identity: tenantry::Identity::new(
                tenantry::Partition::new("acme").unwrap(),
                "tenant-db",
                tenantry::Key::new("tenant-db-acme").unwrap(),
            ),
            attempt: 2,
            retry_in: Duration::from_millis(1500),
        });
        assert_eq!(backing_off.status.as_u16(), 503);
        assert_eq!(backing_off.retry_after, Some(2));
        let refused = |h: tenantry::HandlerError| ApiError::from(CallError::Handler(h)).status;
        assert_eq!(refused(tenantry::HandlerError::new("bad")).as_u16(), 422);
        assert_eq!(
            refused(tenantry::HandlerError::conflict("full", "full")).as_u16(),
            409
        );
        assert_eq!(
            refused(tenantry::HandlerError::forbidden("forbidden", "no")).as_u16(),
            403
        );
    }

    #[test]
    fn statuses_follow_the_contract() {
        let s = |e: Error| ApiError::from(e).status.as_u16();
        assert_eq!(s(Error::RouteNotFound("x.y".into())), 404);
        assert_eq!(
            s(CallError::UnknownHandler {
                handler: "x".into()
            }
            .into()),
            404
        );
        assert_eq!(s(Error::NameTaken("x".into())), 409);
        assert_eq!(
            s(Error::Store(StoreError::Conflict {
                expected: None,
                actual: Some(1)
            })),
            409
        );
        assert_eq!(s(Error::Store(StoreError::Unavailable("down".into()))), 503);
        assert_eq!(s(CallError::MailboxFull { capacity: 1 }.into()), 429);
        assert_eq!(s(CallError::Timeout(Duration::from_secs(1)).into()), 504);
        assert_eq!(
            s(CallError::InvalidParams {
                handler: "q".into(),
                message: "sql: missing".into()
            }
            .into()),
            422
        );
        assert_eq!(
            s(CallError::MalformedParams {
                handler: "q".into(),
                message: "EOF while parsing an object at line 1 column 9".into()
            }
            .into()),
            400
        );
    }
}
