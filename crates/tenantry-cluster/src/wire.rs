//! What a forwarded call and its answer look like on NATS: JSON documents, with the
//! runtime's errors carried as kinds the receiving node turns back into the same
//! [`tenantry::Error`] (so a gateway answers a forwarded call with the status it would
//! give a local one).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;
use tenantry::quota::{Limit, Throttled};
use tenantry::store::{OverLimit, StoreError};
use tenantry::{CallError, Caller, CallerKind, Error, HandlerError, Identity, Partition};

/// A partition as a subject token: its name, or `_` for the unpartitioned value (no
/// partition name starts with `_`).
pub(crate) fn token(partition: &Partition) -> &str {
    partition.name().unwrap_or("_")
}

/// The partition a subject token names (the inverse of [`token`]); `None` for a token
/// no partition makes.
pub(crate) fn partition_of(token: &str) -> Option<Partition> {
    match token {
        "_" => Some(Partition::unpartitioned()),
        name => Partition::new(name).ok(),
    }
}

/// A call forwarded to the node that serves `identity`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct WireCall {
    /// Names the call in both nodes' logs, and stays the same across its retries.
    pub id: String,
    pub handler: String,
    pub params: serde_json::Value,
    pub identity: Identity,
    pub caller: WireCaller,
    /// What is left of the caller's deadline when the call was sent.
    pub timeout_ms: u64,
}

/// Who a forwarded call acts for; the receiving node checks it again.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireCaller {
    Host,
    Tenant(Partition),
    Admin(Identity),
}

impl From<&Caller> for WireCaller {
    fn from(caller: &Caller) -> Self {
        match caller.kind() {
            CallerKind::Host => Self::Host,
            CallerKind::Partition(p) => Self::Tenant(p.clone()),
            CallerKind::Admin(id) => Self::Admin(id.clone()),
        }
    }
}

/// The answer to a forwarded call: `{"ok": reply}` or `{"err": {...}}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireReplyOut<'a> {
    Ok(&'a RawValue),
    Err(WireError),
}

/// [`WireReplyOut`] as the calling node reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireReply {
    Ok(serde_json::Value),
    Err(WireError),
}

/// An error of a forwarded call. `NotServed` means the receiver does not serve the
/// identity (a hand-off is under way) and did not run the call: the caller retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub(crate) enum WireError {
    NotServed,
    Handler {
        error: HandlerError,
    },
    MailboxFull {
        capacity: usize,
    },
    Timeout {
        ms: u64,
    },
    Stopped,
    Panicked {
        handler: String,
        message: String,
    },
    UnknownHandler {
        handler: String,
    },
    InvalidParams {
        handler: String,
        message: String,
    },
    MalformedParams {
        handler: String,
        message: String,
    },
    ReplyTooLarge {
        handler: String,
        limit: usize,
    },
    NotDurable {
        reason: String,
    },
    OverLimit {
        over: OverLimit,
    },
    StoreOverLimit {
        over: OverLimit,
    },
    Throttled {
        limit: Limit,
        retry_after_ms: u64,
    },
    ReplyEncoding {
        handler: String,
        message: String,
    },
    BackingOff {
        attempt: u32,
        retry_in_ms: u64,
    },
    NotFound,
    RouteNotFound {
        handler: String,
    },
    Forbidden {
        message: String,
    },
    StoreUnavailable {
        message: String,
    },
    StoreConflict {
        expected: Option<u64>,
        actual: Option<u64>,
    },
    StoreCorrupt {
        message: String,
    },
    StoreFenced {
        shard: u32,
    },
    ShutDown,
    Other {
        message: String,
    },
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> Self {
        match e {
            Error::ServedElsewhere(_) => Self::NotServed,
            Error::Call(c) => match c {
                CallError::Handler(error) => Self::Handler {
                    error: error.clone(),
                },
                CallError::MailboxFull { capacity } => Self::MailboxFull {
                    capacity: *capacity,
                },
                CallError::Timeout(d) => Self::Timeout { ms: millis(*d) },
                CallError::Stopped => Self::Stopped,
                CallError::Panicked { handler, message } => Self::Panicked {
                    handler: handler.clone(),
                    message: message.clone(),
                },
                CallError::UnknownHandler { handler } => Self::UnknownHandler {
                    handler: handler.clone(),
                },
                CallError::InvalidParams { handler, message } => Self::InvalidParams {
                    handler: handler.clone(),
                    message: message.clone(),
                },
                CallError::MalformedParams { handler, message } => Self::MalformedParams {
                    handler: handler.clone(),
                    message: message.clone(),
                },
                CallError::ReplyTooLarge { handler, limit } => Self::ReplyTooLarge {
                    handler: handler.clone(),
                    limit: *limit,
                },
                CallError::NotDurable { reason } => Self::NotDurable {
                    reason: reason.clone(),
                },
                CallError::OverLimit(over) => Self::OverLimit { over: over.clone() },
                CallError::ReplyEncoding { handler, message } => Self::ReplyEncoding {
                    handler: handler.clone(),
                    message: message.clone(),
                },
            },
            Error::BackingOff {
                attempt, retry_in, ..
            } => Self::BackingOff {
                attempt: *attempt,
                retry_in_ms: millis(*retry_in),
            },
            Error::NotFound(_) => Self::NotFound,
            Error::RouteNotFound(handler) => Self::RouteNotFound {
                handler: handler.clone(),
            },
            Error::Forbidden(message) => Self::Forbidden {
                message: message.clone(),
            },
            Error::Store(s) => match s {
                StoreError::Unavailable(message) => Self::StoreUnavailable {
                    message: message.clone(),
                },
                StoreError::Conflict { expected, actual } => Self::StoreConflict {
                    expected: *expected,
                    actual: *actual,
                },
                StoreError::Corrupt(message) => Self::StoreCorrupt {
                    message: message.clone(),
                },
                StoreError::Fenced { shard } => Self::StoreFenced { shard: *shard },
                StoreError::OverLimit(over) => Self::StoreOverLimit { over: over.clone() },
            },
            Error::Throttled { throttled, .. } => Self::Throttled {
                limit: throttled.limit,
                retry_after_ms: millis(throttled.retry_after),
            },
            Error::ShutDown => Self::ShutDown,
            other => Self::Other {
                message: other.to_string(),
            },
        }
    }
}

impl WireError {
    /// The runtime error this stands for, on the calling node; `identity` is the call's.
    pub(crate) fn into_error(self, identity: &Identity) -> Error {
        let call = |c: CallError| Error::Call(c);
        match self {
            Self::NotServed => Error::ServedElsewhere(identity.clone()),
            Self::Handler { error } => call(CallError::Handler(error)),
            Self::MailboxFull { capacity } => call(CallError::MailboxFull { capacity }),
            Self::Timeout { ms } => call(CallError::Timeout(Duration::from_millis(ms))),
            Self::Stopped => call(CallError::Stopped),
            Self::Panicked { handler, message } => call(CallError::Panicked { handler, message }),
            Self::UnknownHandler { handler } => call(CallError::UnknownHandler { handler }),
            Self::InvalidParams { handler, message } => {
                call(CallError::InvalidParams { handler, message })
            }
            Self::MalformedParams { handler, message } => {
                call(CallError::MalformedParams { handler, message })
            }
            Self::ReplyTooLarge { handler, limit } => {
                call(CallError::ReplyTooLarge { handler, limit })
            }
            Self::NotDurable { reason } => call(CallError::NotDurable { reason }),
            Self::OverLimit { over } => call(CallError::OverLimit(over)),
            Self::StoreOverLimit { over } => Error::Store(StoreError::OverLimit(over)),
            Self::Throttled {
                limit,
                retry_after_ms,
            } => Error::Throttled {
                partition: identity.partition.clone(),
                throttled: Throttled {
                    limit,
                    retry_after: Duration::from_millis(retry_after_ms),
                },
            },
            Self::ReplyEncoding { handler, message } => {
                call(CallError::ReplyEncoding { handler, message })
            }
            Self::BackingOff {
                attempt,
                retry_in_ms,
            } => Error::BackingOff {
                identity: identity.clone(),
                attempt,
                retry_in: Duration::from_millis(retry_in_ms),
            },
            Self::NotFound => Error::NotFound(identity.clone()),
            Self::RouteNotFound { handler } => Error::RouteNotFound(handler),
            Self::Forbidden { message } => Error::Forbidden(message),
            Self::StoreUnavailable { message } => Error::Store(StoreError::Unavailable(message)),
            Self::StoreConflict { expected, actual } => {
                Error::Store(StoreError::Conflict { expected, actual })
            }
            Self::StoreCorrupt { message } => Error::Store(StoreError::Corrupt(message)),
            Self::StoreFenced { shard } => Error::Store(StoreError::Fenced { shard }),
            Self::ShutDown => Error::ShutDown,
            Self::Other { message } => Error::Remote(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry::Key;

    fn identity() -> Identity {
        Identity::new(
            Partition::new("acme").unwrap(),
            "counters",
            Key::new("k1").unwrap(),
        )
    }

    #[test]
    fn every_error_a_call_can_meet_crosses_the_wire_unchanged() {
        let id = identity();
        let errors = [
            Error::ServedElsewhere(id.clone()),
            Error::Call(CallError::Handler(HandlerError::conflict(
                "full",
                "it is full",
            ))),
            Error::Call(CallError::MailboxFull { capacity: 8 }),
            Error::Call(CallError::Timeout(Duration::from_millis(1500))),
            Error::Call(CallError::Stopped),
            Error::Call(CallError::Panicked {
                handler: "h".into(),
                message: "boom".into(),
            }),
            Error::Call(CallError::UnknownHandler {
                handler: "nope".into(),
            }),
            Error::Call(CallError::InvalidParams {
                handler: "h".into(),
                message: "missing field `x`".into(),
            }),
            Error::Call(CallError::MalformedParams {
                handler: "h".into(),
                message: "EOF while parsing a value at line 1 column 0".into(),
            }),
            Error::Call(CallError::ReplyTooLarge {
                handler: "h".into(),
                limit: 10,
            }),
            Error::Call(CallError::NotDurable {
                reason: "down".into(),
            }),
            Error::Call(CallError::ReplyEncoding {
                handler: "h".into(),
                message: "key must be a string".into(),
            }),
            Error::BackingOff {
                identity: id.clone(),
                attempt: 3,
                retry_in: Duration::from_millis(2500),
            },
            Error::NotFound(id.clone()),
            Error::RouteNotFound("counters.nope".into()),
            Error::Forbidden("no".into()),
            Error::Store(StoreError::Unavailable("down".into())),
            Error::Store(StoreError::Conflict {
                expected: Some(1),
                actual: None,
            }),
            Error::Store(StoreError::Corrupt("row".into())),
            Error::Store(StoreError::Fenced { shard: 7 }),
            Error::Store(StoreError::OverLimit(OverLimit {
                limit: tenantry::store::SizeLimit::StoredBytes,
                max: 100,
                would_be: 140,
            })),
            Error::Call(CallError::OverLimit(OverLimit {
                limit: tenantry::store::SizeLimit::StateBytes,
                max: 10,
                would_be: 11,
            })),
            Error::Throttled {
                partition: id.partition.clone(),
                throttled: Throttled {
                    limit: Limit::Instances,
                    retry_after: Duration::from_secs(1),
                },
            },
            Error::ShutDown,
        ];
        for e in errors {
            let text = serde_json::to_string(&WireError::from(&e)).unwrap();
            let back: WireError = serde_json::from_str(&text).unwrap();
            assert_eq!(back.into_error(&id), e, "{text}");
        }
        let other = Error::ActivationFailed {
            identity: id.clone(),
            reason: "hook failed".into(),
        };
        assert_eq!(
            WireError::from(&other).into_error(&id),
            Error::Remote(other.to_string())
        );
    }

    #[test]
    fn callers_cross_the_wire_as_their_kind() {
        let text = serde_json::to_string(&WireCaller::Tenant(Partition::new("acme").unwrap()));
        assert_eq!(text.unwrap(), r#"{"tenant":"acme"}"#);
        let admin: WireCaller =
            serde_json::from_str(&serde_json::to_string(&WireCaller::Admin(identity())).unwrap())
                .unwrap();
        assert_eq!(admin, WireCaller::Admin(identity()));
    }
}
