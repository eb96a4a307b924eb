//! Bounded param types: numbers and texts whose limits are stated in the JSON Schema and
//! enforced when params are decoded.
//!
//! A request from outside sets every field of a handler's params, so each size or count
//! a handler acts on needs a bound it states and checks before running. Using these types
//! in a params struct does both: the schema clients read says `minimum`/`maximum`
//! (`maxLength`), and a value outside is refused on decode, naming the field, before the
//! letter reaches the instance.
//!
//! ```
//! # use tenantry::params::{Bounded, BoundedText};
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Query {
//!     sql: BoundedText<4096>,
//!     limit: Bounded<1, 100>,
//! }
//! let q: Query = serde_json::from_value(serde_json::json!({"sql": "select 1", "limit": 5})).unwrap();
//! assert_eq!(q.limit.get(), 5);
//! assert!(serde_json::from_value::<Query>(serde_json::json!({"sql": "x", "limit": 1000})).is_err());
//! ```

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;

/// An unsigned integer in `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// `value` if it is in bounds.
    pub fn new(value: u64) -> Option<Self> {
        (MIN..=MAX).contains(&value).then_some(Self(value))
    }

    /// `value` moved into bounds (for defaults written as constants).
    pub const fn clamped(value: u64) -> Self {
        if value < MIN {
            Self(MIN)
        } else if value > MAX {
            Self(MAX)
        } else {
            Self(value)
        }
    }

    /// The value.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The value as a `usize` (saturating on targets where it is narrower).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Display for Bounded<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const MIN: u64, const MAX: u64> Serialize for Bounded<MIN, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BoundedVisitor::<MIN, MAX>)
    }
}

/// Takes what JSON Schema calls an integer: any number with no fractional part (`17`,
/// `17.0`, `-3`), then checks the bounds.
struct BoundedVisitor<const MIN: u64, const MAX: u64>;

impl<const MIN: u64, const MAX: u64> BoundedVisitor<MIN, MAX> {
    fn check<E: serde::de::Error>(value: u64) -> Result<Bounded<MIN, MAX>, E> {
        Bounded::new(value)
            .ok_or_else(|| E::custom(format!("{value} is out of bounds: {MIN} to {MAX}")))
    }

    fn out_of_bounds<E: serde::de::Error>(shown: impl fmt::Display) -> E {
        E::custom(format!("{shown} is out of bounds: {MIN} to {MAX}"))
    }
}

impl<'de, const MIN: u64, const MAX: u64> serde::de::Visitor<'de> for BoundedVisitor<MIN, MAX> {
    type Value = Bounded<MIN, MAX>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer from {MIN} to {MAX}")
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Self::check(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v).map_or_else(|_| Err(Self::out_of_bounds(v)), Self::check)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(E::invalid_type(serde::de::Unexpected::Float(v), &self));
        }
        // Integral and finite: exact as u64 when within its range.
        if v < 0.0 || v > u64::MAX as f64 {
            return Err(Self::out_of_bounds(v));
        }
        Self::check(v as u64)
    }
}

impl<const MIN: u64, const MAX: u64> JsonSchema for Bounded<MIN, MAX> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        Cow::Owned(format!("Bounded_{MIN}_{MAX}"))
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "format": "uint64", "minimum": MIN, "maximum": MAX})
    }
}

/// A text of at most `MAX_CHARS` characters (Unicode scalar values, as JSON Schema's
/// `maxLength` counts them; at most four bytes each).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedText<const MAX_CHARS: usize>(String);

impl<const MAX_CHARS: usize> BoundedText<MAX_CHARS> {
    /// `text` if it is short enough.
    pub fn new(text: impl Into<String>) -> Option<Self> {
        let text = text.into();
        Self::fits(&text).then_some(Self(text))
    }

    /// Whether `text` is short enough; characters are counted only when its bytes are
    /// too many to tell (a character is at least one byte).
    fn fits(text: &str) -> bool {
        text.len() <= MAX_CHARS || text.chars().count() <= MAX_CHARS
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl<const MAX_CHARS: usize> fmt::Display for BoundedText<MAX_CHARS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const MAX_CHARS: usize> Serialize for BoundedText<MAX_CHARS> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, const MAX_CHARS: usize> Deserialize<'de> for BoundedText<MAX_CHARS> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if !Self::fits(&text) {
            return Err(serde::de::Error::custom(format!(
                "{} characters is longer than the {MAX_CHARS}-character limit",
                text.chars().count()
            )));
        }
        Ok(Self(text))
    }
}

impl<const MAX_CHARS: usize> JsonSchema for BoundedText<MAX_CHARS> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        Cow::Owned(format!("BoundedText_{MAX_CHARS}"))
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "maxLength": MAX_CHARS})
    }
}
