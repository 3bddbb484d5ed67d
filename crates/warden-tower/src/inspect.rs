//! Reading MCP JSON-RPC from a request body, refusing anything ambiguous.

use serde_json::Value;

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
    let value =
        warden_policy::strict_json::from_slice(bytes).map_err(|e| Refusal::Parse(e.to_string()))?;
    match value {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(Refusal::Invalid {
                    id: Value::Null,
                    message: "empty batch".into(),
                });
            }
            let messages = items.into_iter().map(message).collect::<Result<_, _>>()?;
            Ok(Body {
                messages,
                batch: true,
            })
        }
        other => Ok(Body {
            messages: vec![message(other)?],
            batch: false,
        }),
    }
}

fn message(v: Value) -> Result<Message, Refusal> {
    let Value::Object(mut m) = v else {
        return Err(Refusal::Invalid {
            id: Value::Null,
            message: "a message must be a JSON object".into(),
        });
    };
    let id = m.remove("id");
    let invalid = |id: Option<Value>, message: &str| Refusal::Invalid {
        id: id.unwrap_or(Value::Null),
        message: message.to_owned(),
    };
    match m.remove("method") {
        Some(Value::String(method)) => match id {
            // A call without an id would not be answered, but a server might still run it:
            // the gate decides every call, so it must be able to answer it.
            None if method == "tools/call" => Err(invalid(
                None,
                "tools/call must be a request with an id, not a notification",
            )),
            None => Ok(Message::Notification),
            Some(id @ (Value::String(_) | Value::Number(_))) => {
                let params = m.remove("params");
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
        None if m.contains_key("result") || m.contains_key("error") => Ok(Message::Response {
            id,
            result: m.remove("result"),
            error: m.remove("error"),
        }),
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
