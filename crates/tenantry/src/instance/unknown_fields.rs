//! The fast path of strict params: decode from a JSON value and notice any field the
//! params type skips, without allocating.
//!
//! [`decode_ignoring_nothing`] walks a `serde_json::Value` the way serde_json's own
//! deserializer for `&Value` does and notes every value a type skips
//! (`deserialize_ignored_any`, which is how derived types pass over unknown fields). It
//! answers only "decoded, and nothing was ignored"; anything else, including the few
//! shapes it does not mirror (tuple and struct enum variants, map keys that are not
//! strings), is `None`, and the caller decodes again with serde_json's deserializer and
//! path tracking to name the field. So a `Some` here is exactly what serde_json would
//! have decoded, reading structs from objects only (see `objects_only`).
//!
//! [`decode_text`] is the same fast path for params given as JSON text: serde_json's own
//! deserializer reads the text, and a watching [`ObjectsOnly`] notes what the type skips.

use super::objects_only::ObjectsOnly;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};
use serde_json::Value;
use std::cell::Cell;
use std::fmt;

/// Decodes `T` from `value` if that ignores no field at any depth.
pub(crate) fn decode_ignoring_nothing<T: DeserializeOwned>(value: &Value) -> Option<T> {
    let ignored = Cell::new(false);
    let decoded = T::deserialize(Watched {
        value,
        ignored: &ignored,
    })
    .ok()?;
    (!ignored.get()).then_some(decoded)
}

/// Decodes `T` straight from JSON `text`, structs from objects only, and says whether the
/// type skipped any value at any depth; `None` if it does not decode (the slow path,
/// reading the text as a value, says why).
pub(crate) fn decode_text<T: DeserializeOwned>(text: &str) -> Option<(T, bool)> {
    let ignored = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let decoded = T::deserialize(ObjectsOnly::watching(&mut de, &ignored)).ok()?;
    de.end().ok()?;
    Some((decoded, ignored.get()))
}

/// Any failure of the fast path; what failed is for the slow path to say.
#[derive(Debug)]
struct Fallback;

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("decode again with paths")
    }
}

impl std::error::Error for Fallback {}

impl de::Error for Fallback {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Fallback
    }
}

type Key<'a> = BorrowedStrDeserializer<'a, Fallback>;

/// Typed hints accept only the JSON kinds serde_json's `&Value` deserializer accepts for
/// them (a visitor may accept more through `deserialize_any`: `Map`'s takes a unit),
/// then visit as `deserialize_any` does; any other kind leaves the fast path.
macro_rules! hinted {
    ($($kinds:pat => $($method:ident)+;)+) => {
        $($(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fallback> {
                match self.value {
                    $kinds => self.deserialize_any(visitor),
                    _ => Err(Fallback),
                }
            }
        )+)+
    };
}

/// One value of the walk, with the flag every skipped value sets.
#[derive(Clone, Copy)]
struct Watched<'a> {
    value: &'a Value,
    ignored: &'a Cell<bool>,
}

impl<'a> Watched<'a> {
    fn at(self, value: &'a Value) -> Self {
        Self { value, ..self }
    }
}

impl<'de> de::Deserializer<'de> for Watched<'de> {
    type Error = Fallback;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fallback> {
        match self.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => visitor.visit_u64(u),
                (None, Some(i), _) => visitor.visit_i64(i),
                (None, None, Some(f)) => visitor.visit_f64(f),
                (None, None, None) => Err(Fallback),
            },
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = Items {
                    items: items.iter(),
                    at: self,
                };
                let out = visitor.visit_seq(&mut seq)?;
                // serde_json refuses a sequence the visitor left unfinished.
                if seq.items.len() == 0 {
                    Ok(out)
                } else {
                    Err(Fallback)
                }
            }
            Value::Object(map) => {
                let mut entries = Entries {
                    entries: map.iter(),
                    value: None,
                    at: self,
                };
                let out = visitor.visit_map(&mut entries)?;
                if entries.entries.len() == 0 {
                    Ok(out)
                } else {
                    Err(Fallback)
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fallback> {
        match self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        let (variant, value) = match self.value {
            Value::String(variant) => (variant, None),
            Value::Object(map) if map.len() == 1 => match map.iter().next() {
                Some((variant, value)) => (variant, Some(value)),
                None => return Err(Fallback),
            },
            _ => return Err(Fallback),
        };
        visitor.visit_enum(Variant {
            variant,
            value,
            at: self,
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Fallback> {
        self.ignored.set(true);
        visitor.visit_unit()
    }

    hinted! {
        Value::Bool(_) => deserialize_bool;
        Value::Number(_) => deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
            deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
            deserialize_u128 deserialize_f32 deserialize_f64;
        Value::String(_) => deserialize_char deserialize_str deserialize_string
            deserialize_identifier;
        Value::String(_) | Value::Array(_) => deserialize_bytes deserialize_byte_buf;
        Value::Null => deserialize_unit;
        Value::Array(_) => deserialize_seq;
        Value::Object(_) => deserialize_map;
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Fallback> {
        // A struct decodes from an object only (see `objects_only`).
        match self.value {
            Value::Object(_) => self.deserialize_any(visitor),
            _ => Err(Fallback),
        }
    }
}

struct Items<'a> {
    items: std::slice::Iter<'a, Value>,
    at: Watched<'a>,
}

impl<'de> de::SeqAccess<'de> for Items<'de> {
    type Error = Fallback;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Fallback> {
        match self.items.next() {
            Some(item) => seed.deserialize(self.at.at(item)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
    at: Watched<'a>,
}

impl<'de> de::MapAccess<'de> for Entries<'de> {
    type Error = Fallback;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Fallback> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(Key::new(key)).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Fallback> {
        let value = self.value.take().ok_or(Fallback)?;
        seed.deserialize(self.at.at(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Variant<'a> {
    variant: &'a str,
    value: Option<&'a Value>,
    at: Watched<'a>,
}

impl<'de> de::EnumAccess<'de> for Variant<'de> {
    type Error = Fallback;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Fallback> {
        let variant = seed.deserialize(Key::new(self.variant))?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'de> {
    type Error = Fallback;

    fn unit_variant(self) -> Result<(), Fallback> {
        match self.value {
            None | Some(Value::Null) => Ok(()),
            Some(_) => Err(Fallback),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Fallback> {
        match self.value {
            Some(value) => seed.deserialize(self.at.at(value)),
            None => Err(Fallback),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        _visitor: V,
    ) -> Result<V::Value, Fallback> {
        Err(Fallback)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Fallback> {
        Err(Fallback)
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_ignoring_nothing, decode_text};
    use crate::instance::objects_only::ObjectsOnly;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Plain,
        Tagged(u8),
        Pair(u8, u8),
        Named { n: i32 },
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Inner {
        name: String,
        #[serde(default)]
        weight: Option<f64>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Params {
        #[serde(default)]
        limit: u16,
        #[serde(default)]
        offset: i64,
        #[serde(default)]
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        kind: Option<Kind>,
        #[serde(default)]
        tags: BTreeMap<String, bool>,
        #[serde(default)]
        any: Value,
        #[serde(default)]
        letter: Option<char>,
        /// A visitor that accepts more than its hint (`Map`'s takes a unit).
        #[serde(default)]
        free: serde_json::Map<String, Value>,
    }

    /// What serde_json's deserializer decodes (structs from objects only, as the slow
    /// path reads them), and whether it ignored a field.
    fn reference(value: &Value) -> (Option<Params>, bool) {
        let mut ignored = false;
        let decoded = serde_ignored::deserialize(ObjectsOnly::new(value), |_| ignored = true).ok();
        (decoded, ignored)
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u16>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z]{0,2}".prop_map(Value::from),
            prop_oneof![
                Just("plain"),
                Just("tagged"),
                Just("pair"),
                Just("named"),
                Just("x")
            ]
            .prop_map(Value::from),
        ];
        let keys = prop_oneof![
            Just("limit"),
            Just("offset"),
            Just("inner"),
            Just("list"),
            Just("kind"),
            Just("tags"),
            Just("any"),
            Just("letter"),
            Just("free"),
            Just("name"),
            Just("weight"),
            Just("plain"),
            Just("tagged"),
            Just("pair"),
            Just("named"),
            Just("n"),
            Just("extra"),
        ];
        leaf.prop_recursive(4, 32, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..5).prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        /// The fast path never accepts what serde_json (reading structs from objects
        /// only) refuses or what ignores a field, and when it accepts, it decodes exactly
        /// serde_json's value.
        #[test]
        fn fast_path_agrees_with_serde_json(value in json_value()) {
            let fast: Option<Params> = decode_ignoring_nothing(&value);
            let (slow, ignored) = reference(&value);
            if let Some(fast) = fast {
                prop_assert!(!ignored, "accepted params that ignore a field: {value}");
                prop_assert_eq!(Some(fast), slow);
            }
        }

        /// Straight from JSON text, the fast path decodes exactly what serde_json decodes
        /// from that text read as a value, and notes a skipped field exactly when it skips
        /// one. (The text is read as a value, not compared with the value it was written
        /// from: serde_json's float parsing does not round-trip every `f64`.)
        #[test]
        fn text_fast_path_agrees_with_serde_json(value in json_value()) {
            let text = value.to_string();
            let parsed: Value = serde_json::from_str(&text).expect("serde_json reads its own text");
            let (slow, ignored) = reference(&parsed);
            match decode_text::<Params>(&text) {
                Some((fast, fast_ignored)) => {
                    prop_assert_eq!(Some(fast), slow, "{}", text);
                    prop_assert_eq!(fast_ignored, ignored, "{}", text);
                }
                None => prop_assert!(slow.is_none(), "refused what decodes: {}", text),
            }
        }
    }

    #[test]
    fn text_leaves_to_the_value_what_a_value_reads_otherwise() {
        #[derive(Debug, Deserialize)]
        struct Wide {
            n: u128,
            #[serde(default)]
            m: i128,
        }
        let (wide, _) = decode_text::<Wide>(r#"{"n": 5, "m": -7}"#).expect("in 64 bits");
        assert_eq!((wide.n, wide.m), (5, -7));
        // Past 64 bits a value holds a float, which a 128-bit integer refuses.
        let past = r#"{"n": 18446744073709551616}"#;
        assert!(serde_json::from_value::<Wide>(serde_json::from_str(past).unwrap()).is_err());
        assert!(decode_text::<Wide>(past).is_none());
        // A raw value would keep the text's spacing and key order; a value's is rewritten.
        #[derive(Debug, Deserialize)]
        struct Raw {
            #[allow(dead_code)]
            raw: Box<serde_json::value::RawValue>,
        }
        assert!(decode_text::<Raw>(r#"{"raw": {"b": 1, "a": 2}}"#).is_none());
    }

    #[test]
    fn text_notes_a_skipped_field_at_any_depth_and_refuses_arrays_for_structs() {
        let valid = r#"{"limit": 3, "inner": {"name": "a"}, "list": [{"name": "b"}]}"#;
        let (decoded, ignored) = decode_text::<Params>(valid).expect("decodes");
        assert_eq!((decoded.limit, ignored), (3, false));
        for skipped in [
            r#"{"extra": 1}"#,
            r#"{"inner": {"name": "a", "extra": [1, {"x": 2}]}}"#,
            r#"{"list": [{"name": "a"}, {"name": "b", "extra": null}]}"#,
        ] {
            let (_, ignored) = decode_text::<Params>(skipped).expect("decodes");
            assert!(ignored, "{skipped}");
        }
        for refused in [
            r#"{"inner": ["a"]}"#,
            r#"{"limit": 3} {"limit": 4}"#,
            // Duplicate keys: the value would keep the last; the slow path decides.
            r#"{"limit": 3, "limit": 4}"#,
        ] {
            assert!(decode_text::<Params>(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn valid_params_take_the_fast_path() {
        let value = json!({
            "limit": 3,
            "offset": -4,
            "inner": {"name": "a", "weight": 1.5},
            "list": [{"name": "b"}],
            "kind": {"tagged": 7},
            "tags": {"x": true},
            "any": {"free": ["form"]},
            "letter": "z",
        });
        let decoded: Params = decode_ignoring_nothing(&value).expect("fast path");
        assert_eq!(decoded.kind, Some(Kind::Tagged(7)));
        assert_eq!(decoded.any, json!({"free": ["form"]}));
        let unit: Params = decode_ignoring_nothing(&json!({"kind": "plain"})).expect("unit");
        assert_eq!(unit.kind, Some(Kind::Plain));
    }

    #[test]
    fn an_unknown_field_at_any_depth_leaves_the_fast_path() {
        for value in [
            json!({"extra": 1}),
            json!({"inner": {"name": "a", "extra": null}}),
            json!({"list": [{"name": "a"}, {"name": "b", "extra": []}]}),
        ] {
            assert_eq!(decode_ignoring_nothing::<Params>(&value), None, "{value}");
        }
    }

    #[test]
    fn a_kind_serde_json_refuses_for_a_hint_is_refused_even_if_the_visitor_would_take_it() {
        // `Map`'s visitor takes a unit, but serde_json's `deserialize_map` wants an object.
        for value in [
            json!({"free": null}),
            json!({"limit": "3"}),
            json!({"list": {}}),
            // A struct is an object only (serde alone would read the array by position).
            json!({"inner": ["a"]}),
            json!({"list": [{"name": "b"}, ["c"]]}),
        ] {
            assert_eq!(decode_ignoring_nothing::<Params>(&value), None, "{value}");
            assert!(
                reference(&value).0.is_none(),
                "the slow path refuses {value}"
            );
        }
    }

    #[test]
    fn shapes_it_does_not_mirror_leave_the_fast_path() {
        for value in [
            json!({"kind": {"pair": [1, 2]}}),
            json!({"kind": {"named": {"n": 1}}}),
        ] {
            assert_eq!(decode_ignoring_nothing::<Params>(&value), None, "{value}");
            assert!(reference(&value).0.is_some(), "serde_json decodes {value}");
        }
    }
}
