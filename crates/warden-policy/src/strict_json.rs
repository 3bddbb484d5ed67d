//! JSON parsing that refuses repeated object keys.
//!
//! `{"tools": {...}, "tools": {...}}` is valid JSON to most parsers, which silently keep
//! one of the two; which one differs between parsers. A gate must not guess, so policies
//! (and, in the tower layer, requests) with a repeated key are refused.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

use crate::Error;

/// Parses `text`, refusing repeated keys at any depth.
pub fn from_str(text: &str) -> Result<Value, Error> {
    from_slice(text.as_bytes())
}

/// Parses `bytes`, refusing repeated keys at any depth.
pub fn from_slice(bytes: &[u8]) -> Result<Value, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict::deserialize(&mut de).and_then(|v| de.end().map(|()| v.0));
    parsed.map_err(syntax)
}

/// serde_json's error as this crate's, its position in fields of its own.
pub fn syntax(e: serde_json::Error) -> Error {
    Error::Syntax {
        line: e.line(),
        column: e.column(),
        message: strip_position(&e),
    }
}

/// The error a repeated key is (for readers that build on [`Strict`]).
pub fn duplicate_key<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate key {key:?}"))
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Any JSON value, refusing a repeated key at any depth: `Strict::deserialize` inside
/// another visitor reads a value the way [`from_slice`] does.
pub struct Strict(pub Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // One lookup finds a duplicate and the slot for a new key.
            match out.entry(key) {
                serde_json::map::Entry::Occupied(e) => {
                    return Err(de::Error::custom(format_args!(
                        "duplicate key {:?}",
                        e.key()
                    )));
                }
                serde_json::map::Entry::Vacant(slot) => {
                    let Strict(v) = map.next_value()?;
                    slot.insert(v);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_duplicate_keys_at_any_depth() {
        let err = from_str(r#"{"a": {"b": 1, "b": 2}}"#).unwrap_err();
        match err {
            Error::Syntax {
                line,
                column,
                message,
            } => {
                assert_eq!((line, column), (1, 18));
                assert_eq!(message, r#"duplicate key "b""#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_compare_after_unescaping() {
        assert!(from_str(r#"{"get-env": 1, "get\u002denv": 2}"#).is_err());
    }

    #[test]
    fn parses_ordinary_json_and_refuses_trailing_text() {
        assert_eq!(
            from_str(r#"[1, -2, 2.5, "x", null, true]"#).unwrap(),
            serde_json::json!([1, -2, 2.5, "x", null, true])
        );
        assert!(from_str("{} {}").is_err());
        assert!(
            from_str(&"[".repeat(10_000)).is_err(),
            "deep nesting is an error, not a stack overflow"
        );
    }
}
