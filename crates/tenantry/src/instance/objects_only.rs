//! Params whose type is a struct decode from a JSON object only.
//!
//! serde's derived structs also take a sequence, field by field in declaration order, so
//! `["select", 3]` would decode as `{"sql": "select", "limit": 3}`. A handler's published
//! schema says object, and a client that sends an array is mistaken, not terse: an added,
//! removed or reordered field would silently shift every value after it. [`ObjectsOnly`]
//! wraps any deserializer and refuses a sequence wherever a struct (or a struct variant)
//! is read, at every depth it reaches; everything else passes through unchanged.
//!
//! Watching (`ObjectsOnly::watching`, for params decoded straight from JSON text) also
//! notes every value the type skips (`deserialize_ignored_any`, which is how derived types
//! pass over unknown fields), and reads what serde_json's text reader would read otherwise
//! than its value reader the way a value is read: 128-bit integers through
//! `deserialize_any` (a value holds a number past 64 bits as a float), and a raw value
//! (`serde_json::value::RawValue`, which from text would keep the client's bytes) not at
//! all, so that the decode falls back to the value.
//!
//! What serde buffers before deciding (untagged and internally tagged enums, flattened
//! fields) is read by serde's own private deserializers, which this wrapper does not
//! reach: a struct variant of an untagged or internally tagged enum still takes a
//! sequence.

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};
use std::cell::Cell;
use std::fmt;

/// The newtype name serde_json gives `RawValue` (its private `raw::TOKEN`).
const RAW_VALUE: &str = "$serde_json::private::RawValue";

/// Where a watching decode notes that a value was skipped (`None`: not watching).
type Watch<'w> = Option<&'w Cell<bool>>;

/// A deserializer that refuses a sequence where a struct is read, at every depth.
pub(crate) struct ObjectsOnly<'w, D> {
    inner: D,
    watch: Watch<'w>,
}

impl<D> ObjectsOnly<'static, D> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: D) -> Self {
        Self { inner, watch: None }
    }
}

impl<'w, D> ObjectsOnly<'w, D> {
    /// Wraps `inner`, setting `ignored` when the type skips a value at any depth.
    pub(crate) fn watching(inner: D, ignored: &'w Cell<bool>) -> Self {
        Self {
            inner,
            watch: Some(ignored),
        }
    }

    /// Wraps what a wrapped deserializer reads next, watching as the outer one does.
    fn within(inner: D, watch: Watch<'w>) -> Self {
        Self { inner, watch }
    }

    fn nested<V>(&self, visitor: V) -> Nested<'w, V> {
        Nested(visitor, self.watch)
    }
}

/// Visits as the wrapped visitor does, with everything nested also wrapped.
struct Nested<'w, V>(V, Watch<'w>);

/// [`Nested`], refusing a sequence (the visitor reads a struct).
struct StructFields<'w, V>(V, Watch<'w>);

/// A seed whose value is read through [`ObjectsOnly`].
struct Seed<'w, S>(S, Watch<'w>);

/// An access whose elements, entries or variant are read through [`ObjectsOnly`].
struct Access<'w, A>(A, Watch<'w>);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(ObjectsOnly::within(d, self.1))
    }
}

/// Forwards `deserialize_*` methods that take only a visitor, wrapping it.
macro_rules! forward_visitor_only {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.nested(visitor);
            self.inner.$method(visitor)
        }
    )*};
}

/// Forwards `deserialize_*` methods whose text reading differs from a value's: watching,
/// they read through `deserialize_any`, as a value holds what they would read.
macro_rules! read_as_a_value_when_watching {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.nested(visitor);
            match self.watch {
                Some(_) => self.inner.deserialize_any(visitor),
                None => self.inner.$method(visitor),
            }
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<'_, D> {
    type Error = D::Error;

    forward_visitor_only! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier
    }

    read_as_a_value_when_watching! { deserialize_i128 deserialize_u128 }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        if let Some(ignored) = self.watch {
            ignored.set(true);
        }
        let visitor = self.nested(visitor);
        self.inner.deserialize_ignored_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor);
        self.inner.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        if self.watch.is_some() && name == RAW_VALUE {
            return Err(de::Error::custom("a raw value is read from a JSON value"));
        }
        let visitor = self.nested(visitor);
        self.inner.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor);
        self.inner.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor);
        self.inner.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = StructFields(visitor, self.watch);
        self.inner.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor);
        self.inner.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forwards `visit_*` methods of one scalar argument.
macro_rules! forward_scalars {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.0.$method(v)
        }
    )*};
}

/// The visitor methods [`Nested`] and [`StructFields`] share: scalars pass through,
/// what nests is wrapped.
macro_rules! nested_visitor {
    () => {
        forward_scalars! {
            visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
            visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
            visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char)
            visit_str(&str) visit_borrowed_str(&'de str) visit_string(String)
            visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            self.0.visit_none()
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            self.0.visit_unit()
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            self.0.visit_some(ObjectsOnly::within(d, self.1))
        }

        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            self.0.visit_newtype_struct(ObjectsOnly::within(d, self.1))
        }

        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            self.0.visit_map(Access(map, self.1))
        }

        fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
            self.0.visit_enum(Access(data, self.1))
        }

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.expecting(f)
        }
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Nested<'_, V> {
    type Value = V::Value;

    nested_visitor!();

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Access(seq, self.1))
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for StructFields<'_, V> {
    type Value = V::Value;

    nested_visitor!();

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<V::Value, A::Error> {
        Err(de::Error::invalid_type(de::Unexpected::Seq, &self))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed, self.1))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed, self.1))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(Seed(seed, self.1))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'w, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<'w, A> {
    type Error = A::Error;
    type Variant = Access<'w, A::Variant>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(Seed(seed, self.1))?;
        Ok((value, Access(variant, self.1)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed, self.1))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Nested(visitor, self.1))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, StructFields(visitor, self.1))
    }
}

#[cfg(test)]
mod tests {
    use super::ObjectsOnly;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Inner {
        name: String,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Shape {
        Point(i32, i32),
        Named { inner: Inner },
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Outer {
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        pair: Option<(u8, Inner)>,
        #[serde(default)]
        shape: Option<Shape>,
    }

    fn decode(value: serde_json::Value) -> Result<Outer, String> {
        Outer::deserialize(ObjectsOnly::new(&value)).map_err(|e| e.to_string())
    }

    #[test]
    fn objects_decode_as_serde_json_decodes_them() {
        let value = json!({
            "inner": {"name": "a"},
            "list": [{"name": "b"}],
            "pair": [1, {"name": "c"}],
            "shape": {"point": [1, 2]},
        });
        assert_eq!(
            decode(value.clone()),
            Ok(Outer::deserialize(&value).unwrap())
        );
        let named = json!({"inner": null, "shape": {"named": {"inner": {"name": "d"}}}});
        assert_eq!(
            decode(named.clone()),
            Ok(Outer::deserialize(&named).unwrap())
        );
    }

    #[test]
    fn a_sequence_where_a_struct_is_read_is_refused_at_every_depth() {
        for value in [
            json!([null]),
            json!({"inner": ["a"]}),
            json!({"list": [{"name": "b"}, ["c"]]}),
            json!({"pair": [1, ["c"]]}),
            json!({"shape": {"named": {"inner": ["d"]}}}),
        ] {
            assert!(
                Outer::deserialize(&value).is_ok(),
                "serde_json takes {value}"
            );
            let refused = decode(value.clone()).expect_err("refused");
            assert!(
                refused.contains("invalid type: sequence, expected struct"),
                "{value}: {refused}"
            );
        }
    }
}
