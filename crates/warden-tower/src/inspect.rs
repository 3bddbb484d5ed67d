//! Reading MCP JSON-RPC from a request body, refusing anything ambiguous.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use smallvec::SmallVec;
use warden_policy::strict_json::{self, Strict};

/// One JSON-RPC message of a POST body, borrowing from the body where it can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message<'a> {
    /// A request: has `method` and `id`.
    Request {
        id: Value,
        method: String,
        params: Option<Params<'a>>,
    },
    /// `method` without `id`: nothing to answer, nothing to decide.
    Notification { method: String },
    /// `result` or `error`: the client answering the server (elicitation, sampling).
    Response {
        id: Option<Value>,
        result: Option<Value>,
        error: Option<Value>,
    },
}

impl Message<'_> {
    /// A `tools/call`'s id and params ([`parse`] checked their shape).
    pub(crate) fn tool_call(&self) -> Option<(&Value, &Fields<'_>)> {
        match self {
            Message::Request {
                id,
                method,
                params: Some(Params::Object(fields)),
            } if method == "tools/call" => Some((id, fields)),
            _ => None,
        }
    }
}

/// A request's `params`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Params<'a> {
    Object(Fields<'a>),
    /// An array or a scalar (JSON-RPC allows positional params; MCP does not use them).
    Other(Value),
}

impl Params<'_> {
    /// A key of an object's params other than `name` and `arguments`.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Params::Object(f) => f.get(key),
            Params::Other(_) => None,
        }
    }

    /// `name`, when it is a string.
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Params::Object(f) => f.name.as_deref(),
            Params::Other(_) => None,
        }
    }
}

/// An object's params, with what a `tools/call` is decided on kept apart: the tool's name
/// borrowed from the body, and its arguments read into JSON only when something will look
/// at them (every key of them is still read, as strictly as the rest).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Fields<'a> {
    /// `name`, when it is a string (borrowed unless it had escapes).
    pub(crate) name: Option<Cow<'a, str>>,
    pub(crate) arguments: Arguments,
    /// Every other key, and `name` or `arguments` when they are of another type.
    rest: Map<String, Value>,
}

impl Fields<'_> {
    /// A key other than `name` and `arguments` (`_meta`, `requestState`, ...).
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.rest.get(key)
    }

    /// The arguments, when they were read into JSON.
    pub(crate) fn arguments(&self) -> Option<&Value> {
        match &self.arguments {
            Arguments::Read(v) => Some(v),
            Arguments::None | Arguments::Unread => None,
        }
    }
}

/// `arguments` of an object's params.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) enum Arguments {
    /// Absent or `null`.
    #[default]
    None,
    /// An object, read into JSON.
    Read(Value),
    /// An object, read and found sound (no repeated key at any depth) but not kept:
    /// nothing was going to look at it.
    Unread,
}

/// Why a body was refused before any decision: the layer answers these itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    /// Not JSON, or JSON with a repeated key (-32700).
    Parse(String),
    /// JSON, but not a JSON-RPC message or batch (-32600).
    Invalid { id: Value, message: String },
}

/// A parsed body: one message or a batch.
#[derive(Debug)]
pub(crate) struct Body<'a> {
    pub(crate) messages: Vec<Message<'a>>,
    pub(crate) batch: bool,
}

/// Reads a POST body. `keep_arguments`: read tool arguments into JSON (else they are only
/// checked); the answer is the same either way, bar [`Arguments::Read`] against
/// [`Arguments::Unread`].
pub(crate) fn parse(bytes: &[u8], keep_arguments: bool) -> Result<Body<'_>, Refusal> {
    // A batch is the one body that opens with `[` (after JSON's whitespace); anything else
    // is read as one message, which refuses what is not an object.
    let batch = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'[');
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top = if batch {
        (&mut de)
            .deserialize_seq(BatchSeed(keep_arguments))
            .map(Top::Batch)
    } else {
        MessageSeed(keep_arguments)
            .deserialize(&mut de)
            .map(Top::One)
    };
    let top = top.and_then(|t| de.end().map(|()| t));
    let top = top.map_err(|e| Refusal::Parse(strict_json::syntax(e).to_string()))?;
    match top {
        Top::Batch(items) => {
            if items.is_empty() {
                return Err(Refusal::Invalid {
                    id: Value::Null,
                    message: "empty batch".into(),
                });
            }
            let messages = items.into_iter().collect::<Result<_, _>>()?;
            Ok(Body {
                messages,
                batch: true,
            })
        }
        Top::One(m) => Ok(Body {
            messages: vec![m?],
            batch: false,
        }),
    }
}

// The body is read in one pass, the way `strict_json` reads any JSON (a repeated key at any
// depth is a syntax error), but a message's own keys are matched in place rather than
// collected into a map and taken out again: that map was most of the allocations of a
// call. Whether a message is valid JSON-RPC is decided after the whole body has parsed, so
// a syntax error anywhere still wins, as when the body was parsed first and read after.

/// A body: one message or a batch, each message read or the reason it is not one.
// Made once per body and taken apart at once: boxing the one message would cost the
// allocation this reader exists to save.
#[allow(clippy::large_enum_variant)]
enum Top<'a> {
    One(Result<Message<'a>, Refusal>),
    Batch(Vec<Result<Message<'a>, Refusal>>),
}

/// Reads a batch's messages; the flag is `keep_arguments`.
struct BatchSeed(bool);

impl<'de> Visitor<'de> for BatchSeed {
    type Value = Vec<Result<Message<'de>, Refusal>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC batch")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(m) = seq.next_element_seed(MessageSeed(self.0))? {
            items.push(m);
        }
        Ok(items)
    }
}

fn not_an_object() -> Refusal {
    Refusal::Invalid {
        id: Value::Null,
        message: "a message must be a JSON object".into(),
    }
}

/// Reads one message, or the reason it is not one; the flag is `keep_arguments`.
struct MessageSeed(bool);

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = Result<Message<'de>, Refusal>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MessageSeed {
    type Value = Result<Message<'de>, Refusal>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: [Option<Value>; 4] = Default::default();
        let mut jsonrpc = false;
        let mut params: Option<Params<'de>> = None;
        // Other keys are only checked for repeats.
        let mut others = KeySet::default();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            let key = k.as_str();
            let slot = match key {
                "id" => 0,
                "method" => 1,
                "result" => 2,
                "error" => 3,
                // Checked, not kept: nothing reads it.
                "jsonrpc" => {
                    if std::mem::replace(&mut jsonrpc, true) {
                        return Err(strict_json::duplicate_key(key));
                    }
                    let Sound = map.next_value()?;
                    continue;
                }
                "params" => {
                    if params.is_some() {
                        return Err(strict_json::duplicate_key(key));
                    }
                    params = Some(map.next_value_seed(ParamsSeed(self.0))?);
                    continue;
                }
                _ => {
                    if !others.insert(k.clone()) {
                        return Err(strict_json::duplicate_key(key));
                    }
                    let Sound = map.next_value()?;
                    continue;
                }
            };
            if fields[slot].is_some() {
                return Err(strict_json::duplicate_key(key));
            }
            let Strict(v) = map.next_value()?;
            fields[slot] = Some(v);
        }
        let [id, method, result, error] = fields;
        Ok(message(id, method, params, result, error))
    }

    // Anything else is parsed as strictly (a repeated key inside it is still a syntax
    // error), then refused as not a message.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while let Some(Strict(_)) = seq.next_element()? {}
        Ok(Err(not_an_object()))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Err(not_an_object()))
    }
}

/// Reads `params`; the flag is `keep_arguments`.
struct ParamsSeed(bool);

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = Params<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Params<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed {
    type Value = Params<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("params")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params<'de>, A::Error> {
        let mut f = Fields::default();
        let (mut seen_name, mut seen_arguments) = (false, false);
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let repeated = match key.as_str() {
                "name" => std::mem::replace(&mut seen_name, true),
                "arguments" => std::mem::replace(&mut seen_arguments, true),
                other => f.rest.contains_key(other),
            };
            if repeated {
                return Err(strict_json::duplicate_key(key.as_str()));
            }
            // A `name` or `arguments` of the wrong type is kept with the other keys, for
            // `check_call` to refuse by name.
            let wrong = |f: &mut Fields<'de>, v: Value| {
                f.rest.insert(key.as_str().to_owned(), v);
            };
            match key.as_str() {
                "name" => match map.next_value_seed(FieldSeed(false))? {
                    Field::Str(s) => f.name = Some(s),
                    Field::Null => wrong(&mut f, Value::Null),
                    // Objects come as `Other` with the flag off; were one to come here, the
                    // call would still be refused for having no name.
                    Field::Object => {}
                    Field::Other(v) => wrong(&mut f, v),
                },
                // Kept: read into JSON as any value is.
                "arguments" if self.0 => match map.next_value::<Strict>()? {
                    Strict(Value::Null) => {}
                    Strict(v @ Value::Object(_)) => f.arguments = Arguments::Read(v),
                    Strict(v) => wrong(&mut f, v),
                },
                "arguments" => match map.next_value_seed(FieldSeed(true))? {
                    Field::Null => {}
                    Field::Object => f.arguments = Arguments::Unread,
                    Field::Str(s) => wrong(&mut f, Value::String(s.into_owned())),
                    Field::Other(v) => wrong(&mut f, v),
                },
                other => {
                    let Strict(v) = map.next_value()?;
                    f.rest.insert(other.to_owned(), v);
                }
            }
        }
        Ok(Params::Object(f))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Params<'de>, A::Error> {
        let Strict(v) = Strict::deserialize(SeqAccessDeserializer::new(seq))?;
        Ok(Params::Other(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Params<'de>, E> {
        Ok(Params::Other(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Params<'de>, E> {
        Ok(Params::Other(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Params<'de>, E> {
        Ok(Params::Other(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Params<'de>, E> {
        Ok(Params::Other(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Params<'de>, E> {
        Ok(Params::Other(Value::from(v)))
    }
    fn visit_unit<E>(self) -> Result<Params<'de>, E> {
        Ok(Params::Other(Value::Null))
    }
}

/// A field of `params` (`name`, `arguments`): a string borrowed from the body when it had
/// no escapes, an object checked (as strictly as [`Strict`] reads it) but not kept when the
/// flag says so, anything else as JSON.
enum Field<'de> {
    Str(Cow<'de, str>),
    Null,
    /// An object, checked and dropped.
    Object,
    Other(Value),
}

/// Reads a [`Field`]; the flag: check objects without keeping them.
struct FieldSeed(bool);

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Field<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Field<'de>, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Field<'de>, E> {
        Ok(Field::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Field<'de>, E> {
        Ok(Field::Other(Value::from(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Field<'de>, A::Error> {
        let Strict(v) = Strict::deserialize(SeqAccessDeserializer::new(seq))?;
        Ok(Field::Other(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Field<'de>, A::Error> {
        if self.0 {
            return SoundVisitor.visit_map(map).map(|Sound| Field::Object);
        }
        let Strict(v) = Strict::deserialize(MapAccessDeserializer::new(map))?;
        Ok(Field::Other(v))
    }
}

/// Any JSON value read and dropped, refusing a repeated key at any depth with the same
/// error, at the same place, as [`Strict`].
struct Sound;

impl<'de> Deserialize<'de> for Sound {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SoundVisitor)
    }
}

struct SoundVisitor;

/// Keys compared one by one up to this many; past it, hashed (an object with many keys
/// must not cost the square of their number).
const FEW_KEYS: usize = 16;

impl<'de> Visitor<'de> for SoundVisitor {
    type Value = Sound;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Sound, E> {
        Ok(Sound)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Sound, E> {
        Ok(Sound)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Sound, E> {
        Ok(Sound)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Sound, E> {
        // As `Strict`: a number JSON cannot hold is refused, not dropped.
        serde_json::Number::from_f64(v)
            .map(|_| Sound)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Sound, E> {
        Ok(Sound)
    }
    fn visit_unit<E>(self) -> Result<Sound, E> {
        Ok(Sound)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Sound, A::Error> {
        while let Some(Sound) = seq.next_element()? {}
        Ok(Sound)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Sound, A::Error> {
        let mut seen = KeySet::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if !seen.insert(key.clone()) {
                // As `Strict` says it.
                return Err(strict_json::duplicate_key(key.as_str()));
            }
            let Sound = map.next_value()?;
        }
        Ok(Sound)
    }
}

/// The keys of one object, to find a repeat: compared one by one while there are few, hashed
/// past that, so that an object with many keys does not cost the square of their number.
#[derive(Default)]
struct KeySet<'a> {
    few: SmallVec<[Key<'a>; FEW_KEYS]>,
    many: HashSet<Key<'a>>,
}

impl<'a> KeySet<'a> {
    /// `false` if `key` was there already.
    fn insert(&mut self, key: Key<'a>) -> bool {
        if self.few.len() < FEW_KEYS {
            if self.few.iter().any(|k| k.as_str() == key.as_str()) {
                return false;
            }
            self.few.push(key);
            return true;
        }
        if self.many.is_empty() {
            self.many.extend(self.few.iter().cloned());
        }
        self.many.insert(key)
    }
}

/// A JSON object's members in order, their values as they came: for rewriting one member
/// of a body the layer has already read (and refused if it repeated a key), without a map.
pub(crate) struct Members<'a>(pub(crate) Vec<(Key<'a>, &'a serde_json::value::RawValue)>);

impl<'a> Members<'a> {
    /// The value of `key` (the only one: repeats were refused before).
    pub(crate) fn get(&self, key: &str) -> Option<&'a serde_json::value::RawValue> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| *v)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(m.size_hint().unwrap_or(4));
                while let Some(k) = m.next_key::<Key<'de>>()? {
                    members.push((k, m.next_value()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(MembersVisitor)
    }
}

/// An object key as the body has it (borrowed unless it had escapes, which are decoded:
/// `"m\u0065thod"` is `method`).
#[derive(Clone)]
pub(crate) enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }
}

impl PartialEq for Key<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Key<'_> {}

impl std::hash::Hash for Key<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h);
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

fn message<'a>(
    id: Option<Value>,
    method: Option<Value>,
    params: Option<Params<'a>>,
    result: Option<Value>,
    error: Option<Value>,
) -> Result<Message<'a>, Refusal> {
    let invalid = |id: Option<Value>, message: &str| Refusal::Invalid {
        id: id.unwrap_or(Value::Null),
        message: message.to_owned(),
    };
    match method {
        Some(Value::String(method)) => match id {
            // A call without an id would not be answered, but a server might still run it:
            // the gate decides every call, so it must be able to answer it.
            None if crate::methods::is_decided(&method) => Err(invalid(
                None,
                &format!("{method} must be a request with an id, not a notification"),
            )),
            None => Ok(Message::Notification { method }),
            Some(id @ (Value::String(_) | Value::Number(_))) => {
                if method == "tools/call" {
                    check_call(&id, params.as_ref())?;
                }
                Ok(Message::Request { id, method, params })
            }
            Some(id) => Err(invalid(
                Some(id),
                "a request id must be a string or a number",
            )),
        },
        Some(_) => Err(invalid(id, "`method` must be a string")),
        None if result.is_some() || error.is_some() => Ok(Message::Response { id, result, error }),
        None => Err(invalid(id, "a message needs `method`, `result` or `error`")),
    }
}

/// `tools/call` params: `name` a string, `arguments` an object or absent.
fn check_call(id: &Value, params: Option<&Params<'_>>) -> Result<(), Refusal> {
    let invalid = |message: &str| Refusal::Invalid {
        id: id.clone(),
        message: message.to_owned(),
    };
    let Some(Params::Object(p)) = params else {
        return Err(invalid("tools/call needs params with a tool `name`"));
    };
    // A `name` or `arguments` of the wrong type was kept with the other keys.
    match (&p.name, p.rest.contains_key("name")) {
        (Some(_), _) => {}
        (None, true) => return Err(invalid("the tool name must be a string")),
        (None, false) => return Err(invalid("tools/call needs a tool `name`")),
    }
    if p.rest.contains_key("arguments") {
        return Err(invalid("tool `arguments` must be an object"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Body<'_>, Refusal> {
        let kept = super::parse(bytes, true);
        let unkept = super::parse(bytes, false);
        assert_eq!(kept.is_ok(), unkept.is_ok());
        if let (Err(a), Err(b)) = (&kept, &unkept) {
            assert_eq!(a, b, "the same refusal with and without arguments");
        }
        kept
    }

    #[test]
    fn a_tools_call_without_an_id_is_refused_not_forwarded_undecided() {
        let r = parse(br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_all"}}"#);
        assert!(
            matches!(&r, Err(Refusal::Invalid { message, .. }) if message.contains("not a notification")),
            "{r:?}"
        );
        let r = parse(br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}]"#);
        assert!(r.is_err(), "{r:?}");
    }

    #[test]
    fn classifies_messages() {
        let b = parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get\u002denv","arguments":{"a":1}}}"#).unwrap();
        let (id, params) = b.messages[0].tool_call().unwrap();
        assert_eq!(id, &Value::from(1));
        // Escapes are decoded before the name is compared.
        assert_eq!(params.name.as_deref(), Some("get-env"));
        assert_eq!(params.arguments(), Some(&serde_json::json!({"a": 1})));
        let b = parse(br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":"x","result":{}}]"#).unwrap();
        assert!(b.batch);
        assert_eq!(
            b.messages,
            vec![
                Message::Notification {
                    method: "notifications/initialized".into()
                },
                Message::Response {
                    id: Some(Value::from("x")),
                    result: Some(serde_json::json!({})),
                    error: None
                }
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_read_with_certainty() {
        assert!(matches!(parse(b"{"), Err(Refusal::Parse(_))));
        assert!(matches!(
            parse(br#"{"id":1,"method":"tools/call","method":"tools/list"}"#),
            Err(Refusal::Parse(_))
        ));
        assert!(matches!(
            parse(br#"{"id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#),
            Err(Refusal::Parse(_))
        ));
        for bad in [
            r#"{"id":1,"method":"tools/call","params":{"name":7}}"#,
            r#"{"id":1,"method":"tools/call","params":{}}"#,
            r#"{"id":1,"method":"tools/call"}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#,
            r#"{"id":1,"method":5}"#,
            r#"{"id":{},"method":"tools/list"}"#,
            r#"[]"#,
            r#"3"#,
            r#"{"id":1}"#,
        ] {
            assert!(
                matches!(parse(bad.as_bytes()), Err(Refusal::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn arguments_not_kept_are_still_read_as_strictly() {
        let call = |args: &str| {
            format!(
                r#"{{"params":{{"arguments":{args},"name":"t"}},"id":1,"method":"tools/call"}}"#
            )
        };
        // Kept or not, params may come before the method that says what they are.
        let text = call(r#"{"a":[{"b":1}]}"#);
        let b = super::parse(text.as_bytes(), false).unwrap();
        let (_, p) = b.messages[0].tool_call().unwrap();
        assert_eq!(
            (p.name.as_deref(), &p.arguments),
            (Some("t"), &Arguments::Unread)
        );
        let text = call("null");
        let b = super::parse(text.as_bytes(), false).unwrap();
        assert_eq!(
            b.messages[0].tool_call().unwrap().1.arguments,
            Arguments::None
        );

        // Every key past the first few is hashed; a repeat is found on either side of that.
        let many: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        for repeat_at in [3, 15, 16, 17, 39] {
            let mut keys = many.clone();
            keys.push(format!(r#""k{repeat_at}":0"#));
            let deep = format!(r#"{{"x":[{{{}}}]}}"#, keys.join(","));
            let text = call(&deep);
            let r = parse(text.as_bytes());
            assert!(
                matches!(&r, Err(Refusal::Parse(m)) if m.contains(&format!("duplicate key \"k{repeat_at}\""))),
                "{repeat_at}: {r:?}"
            );
        }
        let fine = format!("{{{}}}", many.join(","));
        assert!(parse(call(&fine).as_bytes()).is_ok());
        // Escaped keys are compared decoded, kept or not.
        assert!(matches!(
            parse(call(r#"{"a":1,"\u0061":2}"#).as_bytes()),
            Err(Refusal::Parse(_))
        ));
        for bad in ["[1]", "7", r#""x""#, "true"] {
            assert!(
                matches!(parse(call(bad).as_bytes()), Err(Refusal::Invalid { message, .. }) if message.contains("must be an object")),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_message_s_own_unknown_keys_are_checked_for_repeats_however_many() {
        let with = |keys: &[String]| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list",{}}}"#,
                keys.join(",")
            )
        };
        // Enough keys that comparing each with every other would take minutes: the set
        // switches to hashing past a few.
        let keys: Vec<String> = (0..50_000).map(|i| format!(r#""x{i}":{i}"#)).collect();
        assert!(parse(with(&keys).as_bytes()).is_ok());
        for repeat_at in [2, 16, 17, 49_999] {
            let mut repeated = keys[..].to_vec();
            repeated.push(format!(r#""x{repeat_at}":0"#));
            let text = with(&repeated);
            let r = parse(text.as_bytes());
            assert!(
                matches!(&r, Err(Refusal::Parse(m)) if m.contains(&format!("duplicate key \"x{repeat_at}\""))),
                "{repeat_at}: {r:?}"
            );
        }
    }
}
