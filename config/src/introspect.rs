//! The shape of the schema, read from the raw serde structs themselves.
//!
//! serde stops at the first unknown key; we want every one. So before the
//! file is deserialized, [`Shape::prune`] walks it against the shape of
//! [`RawConfig`](crate::schema::RawConfig), reports each unknown key or
//! misplaced value with its path, and removes it. The shape is not written
//! by hand: [`Shape::of`] runs the derived `Deserialize` impls against a
//! probe that records the field names serde passes to `deserialize_struct`
//! and the kind each [`Field`](crate::schema::Field) announces. The
//! `FERRY_` variables are checked against the same shape.

use std::fmt;
use std::sync::LazyLock;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

use crate::error::{ConfigError, ErrorKind};
use crate::schema::RawConfig;

/// What a place in the configuration holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A value of the named kind (`"integer"`, `"string"`, `"size"`,
    /// `"duration"`).
    Leaf(&'static str),
    /// A table with these keys, in schema order.
    Table(Vec<(&'static str, Shape)>),
    /// An array of tables (`[[auth.keys]]`).
    Array(Box<Shape>),
}

/// The shape of the whole file.
pub(crate) static CONFIG_SHAPE: LazyLock<Shape> = LazyLock::new(Shape::of::<RawConfig>);

impl Shape {
    /// Reads the shape of `T` by running its `Deserialize` impl on a probe.
    pub(crate) fn of<T: DeserializeOwned>() -> Shape {
        let mut out = None;
        // The probe refuses every value, so the result is an error or a
        // value of defaults; either way `out` holds what was recorded.
        let _ = T::deserialize(Probe { out: &mut out });
        out.unwrap_or(Shape::Leaf("unknown"))
    }

    /// The shape under `key`, if this is a table that has it.
    pub(crate) fn get(&self, key: &str) -> Option<&Shape> {
        match self {
            Shape::Table(fields) => fields.iter().find(|(k, _)| *k == key).map(|(_, s)| s),
            _ => None,
        }
    }

    /// The keys of a table, in schema order.
    pub(crate) fn keys(&self) -> Vec<&'static str> {
        match self {
            Shape::Table(fields) => fields.iter().map(|(k, _)| *k).collect(),
            _ => Vec::new(),
        }
    }

    /// Every leaf path (`limits.max_frame_size`, `auth.keys[].kid`).
    pub(crate) fn leaf_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_leaves("", &mut out);
        out
    }

    fn collect_leaves(&self, path: &str, out: &mut Vec<String>) {
        match self {
            Shape::Leaf(_) => out.push(path.to_owned()),
            Shape::Table(fields) => {
                for (key, shape) in fields {
                    shape.collect_leaves(&join(path, key), out);
                }
            }
            Shape::Array(elem) => elem.collect_leaves(&format!("{path}[]"), out),
        }
    }

    /// Removes from `table` (found at `path`, a table of this shape) every
    /// key the schema does not have and every value that is not the table
    /// or array the schema wants there, reporting each. Leaves are left for
    /// the [`Field`](crate::schema::Field)s to judge.
    pub(crate) fn prune(&self, table: &mut toml::Table, path: &str, errors: &mut Vec<ConfigError>) {
        let keys = self.keys();
        table.retain(|key, value| {
            let here = join(path, key);
            let Some(shape) = self.get(key) else {
                let what = if path.is_empty() { "section" } else { "key" };
                errors.push(ConfigError::new(
                    ErrorKind::Unknown,
                    here,
                    format!("unknown {what}{}", suggest(key, &keys)),
                ));
                return false;
            };
            match (shape, value) {
                (Shape::Leaf(_), _) => true,
                (Shape::Table(_), toml::Value::Table(inner)) => {
                    shape.prune(inner, &here, errors);
                    true
                }
                (Shape::Table(_), other) => {
                    errors.push(ConfigError::new(
                        ErrorKind::Type,
                        here.clone(),
                        format!("{other} is not a table (write it as a [{here}] section)"),
                    ));
                    false
                }
                (Shape::Array(elem), toml::Value::Array(items)) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        let at = format!("{here}[{i}]");
                        match item {
                            toml::Value::Table(inner) => elem.prune(inner, &at, errors),
                            other => {
                                errors.push(ConfigError::new(
                                    ErrorKind::Type,
                                    at,
                                    format!("{other} is not a table (write [[{here}]] entries)"),
                                ));
                                // Keep the index so later paths stay right.
                                *other = toml::Value::Table(toml::Table::new());
                            }
                        }
                    }
                    true
                }
                (Shape::Array(_), other) => {
                    errors.push(ConfigError::new(
                        ErrorKind::Type,
                        here.clone(),
                        format!("{other} is not an array of tables (write [[{here}]] entries)"),
                    ));
                    false
                }
            }
        });
    }
}

/// `a.b`, or `b` at the top.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `; did you mean "x"?` for a near miss, else the list of valid keys.
pub(crate) fn suggest(key: &str, known: &[&str]) -> String {
    let near = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min();
    match near {
        Some((_, k)) => format!("; did you mean \"{k}\"?"),
        None => format!("; expected one of: {}", known.join(", ")),
    }
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The probe's refusal. Never seen outside this module.
#[derive(Debug)]
struct ProbeError(String);

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProbeError {}

impl de::Error for ProbeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// A deserializer that records the shape it is asked for.
struct Probe<'a> {
    out: &'a mut Option<Shape>,
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(ProbeError(
            "the schema probe only reads structs, sequences and fields".into(),
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        let mut slots = vec![None; fields.len()];
        let result = visitor.visit_map(ProbeMap {
            fields,
            slots: &mut slots,
            next: 0,
        });
        let children = fields
            .iter()
            .zip(slots)
            .map(|(f, s)| (*f, s.unwrap_or(Shape::Leaf("unknown"))))
            .collect();
        *self.out = Some(Shape::Table(children));
        result
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        let mut elem = None;
        let result = visitor.visit_seq(ProbeSeq {
            out: &mut elem,
            done: false,
        });
        *self.out = Some(Shape::Array(Box::new(
            elem.unwrap_or(Shape::Leaf("unknown")),
        )));
        result
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        kind: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        *self.out = Some(Shape::Leaf(kind));
        // Any value will do: a `Field` keeps what it cannot read.
        visitor
            .visit_newtype_struct(toml::Value::Boolean(false))
            .map_err(|e| ProbeError(e.to_string()))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct tuple tuple_struct map enum
        identifier ignored_any
    }
}

struct ProbeMap<'a> {
    fields: &'static [&'static str],
    slots: &'a mut [Option<Shape>],
    next: usize,
}

impl<'de> MapAccess<'de> for ProbeMap<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        match self.fields.get(self.next) {
            Some(field) => seed
                .deserialize(de::value::BorrowedStrDeserializer::new(field))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        let i = self.next;
        self.next += 1;
        let slot = self
            .slots
            .get_mut(i)
            .ok_or_else(|| ProbeError("value without a key".into()))?;
        seed.deserialize(Probe { out: slot })
    }
}

struct ProbeSeq<'a> {
    out: &'a mut Option<Shape>,
    done: bool,
}

impl<'de> SeqAccess<'de> for ProbeSeq<'_> {
    type Error = ProbeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ProbeError> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        seed.deserialize(Probe { out: self.out }).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_has_every_section_and_kind() {
        let shape = &*CONFIG_SHAPE;
        assert_eq!(
            shape.keys(),
            [
                "server",
                "listen",
                "tls",
                "limits",
                "session",
                "channels",
                "websocket",
                "quic",
                "auth",
                "ops",
                "log",
                "upgrade"
            ]
        );
        let limits = shape.get("limits").expect("limits");
        assert_eq!(limits.get("max_frame_size"), Some(&Shape::Leaf("size")));
        assert_eq!(limits.get("max_channel_len"), Some(&Shape::Leaf("integer")));
        let keys = shape.get("auth").and_then(|a| a.get("keys"));
        let Some(Shape::Array(elem)) = keys else {
            panic!("auth.keys is not an array: {keys:?}");
        };
        assert_eq!(
            elem.keys(),
            ["kid", "algorithm", "secret", "public_key_file"]
        );
        assert!(shape.leaf_paths().contains(&"auth.keys[].kid".to_owned()));
    }

    #[test]
    fn suggestions_prefer_near_misses() {
        let known = ["max_frame_size", "max_channel_len"];
        assert_eq!(
            suggest("max_frame_sise", &known),
            "; did you mean \"max_frame_size\"?"
        );
        assert_eq!(
            suggest("colour", &known),
            "; expected one of: max_frame_size, max_channel_len"
        );
    }
}
