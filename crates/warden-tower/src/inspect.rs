//! Reading MCP JSON-RPC from a request body, refusing anything ambiguous.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use warden_policy::strict_json::{self, Strict};

/// One JSON-RPC message of a POST body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// A request: has `method` and `id`.
    Request {
        id: Value,
        method: String,
        params: Option<Value>,
    },
    /// `method` without `id`: nothing to answer, nothing to decide.
    Notification,
    /// `result` or `error`: the client answering the server (elicitation, sampling).
    Response {
        id: Option<Value>,
        result: Option<Value>,
        error: Option<Value>,
    },
}

impl Message {
    pub(crate) fn tool_call(&self) -> Option<(&Value, &Value)> {
        match self {
            Message::Request { id, method, params } if method == "tools/call" => {
                Some((id, params.as_ref().unwrap_or(&Value::Null)))
            }
            _ => None,
        }
    }
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
pub(crate) struct Body {
    pub(crate) messages: Vec<Message>,
    pub(crate) batch: bool,
}

pub(crate) fn parse(bytes: &[u8]) -> Result<Body, Refusal> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top = Top::deserialize(&mut de).and_then(|t| de.end().map(|()| t));
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
enum Top {
    One(Result<Message, Refusal>),
    Batch(Vec<Result<Message, Refusal>>),
}

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TopVisitor)
    }
}

struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message or batch")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(OneMessage(m)) = seq.next_element()? {
            items.push(m);
        }
        Ok(Top::Batch(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Top, A::Error> {
        MessageVisitor.visit_map(map).map(Top::One)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Top, E> {
        Ok(Top::One(Err(not_an_object())))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Top, E> {
        Ok(Top::One(Err(not_an_object())))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Top, E> {
        Ok(Top::One(Err(not_an_object())))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Top, E> {
        Ok(Top::One(Err(not_an_object())))
    }
    fn visit_str<E>(self, _: &str) -> Result<Top, E> {
        Ok(Top::One(Err(not_an_object())))
    }
    fn visit_unit<E>(self) -> Result<Top, E> {
        Ok(Top::One(Err(not_an_object())))
    }
}

fn not_an_object() -> Refusal {
    Refusal::Invalid {
        id: Value::Null,
        message: "a message must be a JSON object".into(),
    }
}

/// One element of a batch.
struct OneMessage(Result<Message, Refusal>);

impl<'de> Deserialize<'de> for OneMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MessageVisitor).map(OneMessage)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Result<Message, Refusal>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields: [Option<Value>; 6] = Default::default();
        // Other keys are only checked for repeats.
        let mut others: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.as_str();
            let slot = match key {
                "id" => 0,
                "method" => 1,
                "params" => 2,
                "result" => 3,
                "error" => 4,
                "jsonrpc" => 5,
                _ => {
                    if others.iter().any(|k| k == key) {
                        return Err(strict_json::duplicate_key(key));
                    }
                    others.push(key.to_owned());
                    let Strict(_) = map.next_value()?;
                    continue;
                }
            };
            if fields[slot].is_some() {
                return Err(strict_json::duplicate_key(key));
            }
            let Strict(v) = map.next_value()?;
            fields[slot] = Some(v);
        }
        let [id, method, params, result, error, _] = fields;
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

/// An object key as the body has it (borrowed unless it had escapes, which are decoded:
/// `"m\u0065thod"` is `method`).
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
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

fn message(
    id: Option<Value>,
    method: Option<Value>,
    params: Option<Value>,
    result: Option<Value>,
    error: Option<Value>,
) -> Result<Message, Refusal> {
    let invalid = |id: Option<Value>, message: &str| Refusal::Invalid {
        id: id.unwrap_or(Value::Null),
        message: message.to_owned(),
    };
    match method {
        Some(Value::String(method)) => match id {
            // A call without an id would not be answered, but a server might still run it:
            // the gate decides every call, so it must be able to answer it.
            None if method == "tools/call" => Err(invalid(
                None,
                "tools/call must be a request with an id, not a notification",
            )),
            None => Ok(Message::Notification),
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
fn check_call(id: &Value, params: Option<&Value>) -> Result<(), Refusal> {
    let invalid = |message: &str| Refusal::Invalid {
        id: id.clone(),
        message: message.to_owned(),
    };
    let Some(Value::Object(p)) = params else {
        return Err(invalid("tools/call needs params with a tool `name`"));
    };
    match p.get("name") {
        Some(Value::String(_)) => {}
        Some(_) => return Err(invalid("the tool name must be a string")),
        None => return Err(invalid("tools/call needs a tool `name`")),
    }
    match p.get("arguments") {
        None | Some(Value::Object(_)) | Some(Value::Null) => Ok(()),
        Some(_) => Err(invalid("tool `arguments` must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(params["name"], "get-env");
        let b = parse(br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":"x","result":{}}]"#).unwrap();
        assert!(b.batch);
        assert_eq!(
            b.messages,
            vec![
                Message::Notification,
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
}
