//! Instance keys: plain strings or structured tuples, with one stable encoding.
//!
//! The encoding is what the directory hashes and what the store persists, so it must be
//! injective and never change: a string key encodes as itself, a tuple as a compact JSON
//! array whose elements are JSON strings or nested arrays. String keys may not begin with
//! `[`, which keeps the two forms apart.

use std::fmt;
use std::sync::Arc;

/// The longest encoded key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// A validated instance key. Cloning is one reference count.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Arc<str>);

/// One element of a structured key. Serializes as a JSON string or array.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyPart {
    /// A string element.
    Str(String),
    /// A nested tuple.
    Tuple(Vec<KeyPart>),
}

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key was empty.
    #[error("invalid key: it is empty")]
    Empty,
    /// The encoded key was too long.
    #[error("invalid key: {len} bytes encoded is longer than the {max}-byte limit")]
    TooLong {
        /// Encoded length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The key held a control character.
    #[error("invalid key: control character {ch:?} is not allowed")]
    ControlChar {
        /// The refused character.
        ch: char,
    },
    /// A string key began with `[`, which is reserved for structured keys.
    #[error("invalid key: a string key may not begin with '[' (reserved for structured keys)")]
    ReservedPrefix,
    /// A structured key had no elements.
    #[error("invalid key: a structured key needs at least one element")]
    EmptyTuple,
    /// An encoded structured key did not parse.
    #[error("invalid key: malformed structured key: {0}")]
    Malformed(String),
}

impl Key {
    /// A string key.
    pub fn new(s: &str) -> Result<Self, KeyError> {
        if s.starts_with('[') {
            return Err(KeyError::ReservedPrefix);
        }
        check_text(s)?;
        Ok(Self(Arc::from(s)))
    }

    /// A structured key from its elements, e.g. `(pod factory, pod key, node name)`.
    pub fn tuple<I, P>(parts: I) -> Result<Self, KeyError>
    where
        I: IntoIterator<Item = P>,
        P: Into<KeyPart>,
    {
        let parts: Vec<KeyPart> = parts.into_iter().map(Into::into).collect();
        if parts.is_empty() {
            return Err(KeyError::EmptyTuple);
        }
        let mut out = String::new();
        encode_tuple(&parts, &mut out)?;
        if out.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong {
                len: out.len(),
                max: MAX_KEY_LEN,
            });
        }
        Ok(Self(Arc::from(out)))
    }

    /// Parses a key from its stable encoding (as returned by [`Key::encoded`]).
    pub fn from_encoded(s: &str) -> Result<Self, KeyError> {
        if s.starts_with('[') {
            let value: serde_json::Value =
                serde_json::from_str(s).map_err(|e| KeyError::Malformed(e.to_string()))?;
            let parts = match decode_parts(&value)? {
                KeyPart::Tuple(parts) => parts,
                KeyPart::Str(_) => return Err(KeyError::Malformed("not an array".into())),
            };
            let key = Self::tuple(parts)?;
            if &*key.0 != s {
                return Err(KeyError::Malformed("not in canonical form".into()));
            }
            Ok(key)
        } else {
            Self::new(s)
        }
    }

    /// The stable encoding used by the directory and the store.
    pub fn encoded(&self) -> &str {
        &self.0
    }

    /// Whether this is a structured (tuple) key.
    pub fn is_tuple(&self) -> bool {
        self.0.starts_with('[')
    }

    /// The elements of a structured key, or the single string of a string key.
    pub fn parts(&self) -> Vec<KeyPart> {
        if self.is_tuple() {
            match serde_json::from_str::<serde_json::Value>(&self.0)
                .ok()
                .and_then(|v| decode_parts(&v).ok())
            {
                Some(KeyPart::Tuple(parts)) => parts,
                // Unreachable for keys built by this module; fall back to the raw text.
                _ => vec![KeyPart::Str(self.0.to_string())],
            }
        } else {
            vec![KeyPart::Str(self.0.to_string())]
        }
    }
}

fn check_text(s: &str) -> Result<(), KeyError> {
    if s.is_empty() {
        return Err(KeyError::Empty);
    }
    if s.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong {
            len: s.len(),
            max: MAX_KEY_LEN,
        });
    }
    if let Some(ch) = s.chars().find(|c| c.is_control()) {
        return Err(KeyError::ControlChar { ch });
    }
    Ok(())
}

fn encode_tuple(parts: &[KeyPart], out: &mut String) -> Result<(), KeyError> {
    out.push('[');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match part {
            KeyPart::Str(s) => {
                check_text(s)?;
                // serde_json string encoding is canonical: same input, same bytes.
                out.push_str(&serde_json::Value::from(s.as_str()).to_string());
            }
            KeyPart::Tuple(inner) => {
                if inner.is_empty() {
                    return Err(KeyError::EmptyTuple);
                }
                encode_tuple(inner, out)?;
            }
        }
    }
    out.push(']');
    Ok(())
}

fn decode_parts(value: &serde_json::Value) -> Result<KeyPart, KeyError> {
    match value {
        serde_json::Value::String(s) => Ok(KeyPart::Str(s.clone())),
        serde_json::Value::Array(items) => Ok(KeyPart::Tuple(
            items.iter().map(decode_parts).collect::<Result<_, _>>()?,
        )),
        other => Err(KeyError::Malformed(format!(
            "element {other} is neither a string nor an array"
        ))),
    }
}

impl From<&str> for KeyPart {
    fn from(s: &str) -> Self {
        KeyPart::Str(s.to_owned())
    }
}

impl From<String> for KeyPart {
    fn from(s: String) -> Self {
        KeyPart::Str(s)
    }
}

impl From<&Key> for KeyPart {
    fn from(k: &Key) -> Self {
        if k.is_tuple() {
            KeyPart::Tuple(k.parts())
        } else {
            KeyPart::Str(k.0.to_string())
        }
    }
}

impl From<Key> for KeyPart {
    fn from(k: Key) -> Self {
        KeyPart::from(&k)
    }
}

/// Conversion into a validated [`Key`]; implemented for strings, keys and tuples.
pub trait IntoKey {
    /// Validates and converts.
    fn into_key(self) -> Result<Key, KeyError>;
}

impl IntoKey for Key {
    fn into_key(self) -> Result<Key, KeyError> {
        Ok(self)
    }
}
impl IntoKey for &Key {
    fn into_key(self) -> Result<Key, KeyError> {
        Ok(self.clone())
    }
}
impl IntoKey for &str {
    fn into_key(self) -> Result<Key, KeyError> {
        Key::new(self)
    }
}
impl IntoKey for String {
    fn into_key(self) -> Result<Key, KeyError> {
        Key::new(&self)
    }
}
impl IntoKey for &String {
    fn into_key(self) -> Result<Key, KeyError> {
        Key::new(self)
    }
}
impl<A: Into<KeyPart>, B: Into<KeyPart>> IntoKey for (A, B) {
    fn into_key(self) -> Result<Key, KeyError> {
        Key::tuple([self.0.into(), self.1.into()])
    }
}
impl<A: Into<KeyPart>, B: Into<KeyPart>, C: Into<KeyPart>> IntoKey for (A, B, C) {
    fn into_key(self) -> Result<Key, KeyError> {
        Key::tuple([self.0.into(), self.1.into(), self.2.into()])
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", &self.0)
    }
}

impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        Key::from_encoded(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for KeyPart {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KeyPart::Str(v) => s.serialize_str(v),
            KeyPart::Tuple(parts) => parts.serialize(s),
        }
    }
}

impl<'de> serde::Deserialize<'de> for KeyPart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        decode_parts(&value).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Key {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Key".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An instance key: a string, or a structured key as a compact JSON array"
        })
    }
}
