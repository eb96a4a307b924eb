//! A call's JSON params: a value already built, or text not yet parsed.
//!
//! Callers that hold params as JSON text (a server's request body) pass it as it is: the
//! handler decodes its params type straight from the text in one pass, with no
//! `serde_json::Value` built in between and no separate check of the text. Decoding is
//! the same either way (structs from objects only, unknown fields refused where the
//! handler is strict, errors naming the field's path): only params that fail to decode
//! are parsed into a value, to say what failed the way a value's decode says it, or that
//! the text is not JSON ([`CallError::MalformedParams`]).
//!
//! Where serde_json's text reader would read otherwise than its value reader, the text
//! path reads as a value does (128-bit integers) or leaves the params to the value (a
//! `RawValue` field). What is left differs only where a value could not tell:
//! - a handler that ignores unknown fields (a typed [`Message`](crate::Message) without
//!   `deny_unknown_fields`) skips their text without holding it as a value, so a skipped
//!   number out of `f64`'s range, a lone surrogate escape or nesting past serde_json's
//!   recursion limit there is no error;
//! - a map type that keeps its keys' order, or sees repeated keys, gets them as the text
//!   has them (a value sorts them and keeps the last of each).
//!
//! A call routed to another node carries its params as a value, so these cases can
//! answer there as the value path does.

use crate::CallError;
use serde_json::value::RawValue;

/// Params of a call by handler name: a JSON value (owned or lent), or JSON text.
///
/// A local handler only reads its params, so a caller that sends the same params again
/// and again may lend them (`&value`) rather than clone them for each call; a call that
/// goes to another node takes its own copy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum JsonParams<'a> {
    /// A JSON value.
    Value(serde_json::Value),
    /// A JSON value lent by the caller.
    Lent(&'a serde_json::Value),
    /// JSON text, decoded straight into the handler's params type; text that is not JSON
    /// is [`CallError::MalformedParams`].
    Text(&'a str),
}

impl JsonParams<'_> {
    /// The params as a value, owned or lent; `None` for text.
    pub(crate) fn as_value(&self) -> Option<&serde_json::Value> {
        match self {
            Self::Value(value) => Some(value),
            Self::Lent(value) => Some(value),
            Self::Text(_) => None,
        }
    }

    /// The params as a JSON value, parsing text: text that serde_json cannot read as a
    /// value is [`CallError::MalformedParams`] naming `handler`.
    pub fn into_value(self, handler: &str) -> Result<serde_json::Value, CallError> {
        match self {
            Self::Value(value) => Ok(value),
            Self::Lent(value) => Ok(value.clone()),
            Self::Text(text) => {
                serde_json::from_str(text).map_err(|e| CallError::MalformedParams {
                    handler: handler.to_owned(),
                    message: e.to_string(),
                })
            }
        }
    }
}

impl From<serde_json::Value> for JsonParams<'_> {
    fn from(value: serde_json::Value) -> Self {
        Self::Value(value)
    }
}

impl<'a> From<&'a serde_json::Value> for JsonParams<'a> {
    fn from(value: &'a serde_json::Value) -> Self {
        Self::Lent(value)
    }
}

impl<'a> From<&'a RawValue> for JsonParams<'a> {
    fn from(text: &'a RawValue) -> Self {
        Self::Text(text.get())
    }
}
