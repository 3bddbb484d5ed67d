//! Which client-to-server methods the policy decides, and on what.
//!
//! Every request a client sends is one of: decided by the policy (a tool call, a resource
//! read, a prompt, a completion of one of them, or a method the gate does not know),
//! a list whose answer is filtered per caller, or a method that carries nothing to rule
//! (`initialize`, `ping`, `logging/setLevel`, ...). Unknown methods are decided as
//! [`Kind::Method`], so a later protocol's method cannot slip past a `default deny`.

use serde_json::Value;
use warden_policy::Kind;

use crate::inspect::{Message, Params};

/// What the gate does with one client request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ruled<'m> {
    /// Decided by the policy: charged, approved, denied like a tool call.
    Decide {
        kind: Kind,
        name: &'m str,
        args: Option<&'m Value>,
    },
    /// `completion/complete`: allowed when the prompt or resource it completes could be
    /// used by this caller at all, denied otherwise; never charged.
    Completes { kind: Kind, name: &'m str },
    /// `subscriptions/listen` (protocol 2026-07-28): the resources whose updates it asks
    /// for (`params.notifications.resourceSubscriptions`) must each be readable by the
    /// caller, as with [`Ruled::Completes`]; the stream itself passes.
    Listens(&'m [Value]),
    /// A request of a ruled kind whose params name nothing the gate can decide on (a
    /// resource without a string `uri`): refused when the policy rules that kind at all,
    /// else passed for the server to answer (it knows the method, or says it does not).
    Malformed { kind: Kind, why: String },
    /// A list whose answer keeps only what this caller could call.
    List(List),
    /// Carries nothing to rule.
    Pass,
}

/// The lists a server answers, and where their entries' names are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Tools,
    Resources,
    ResourceTemplates,
    Prompts,
}

impl List {
    /// The result's array key and each entry's name key.
    pub(crate) fn keys(self) -> (&'static str, &'static str) {
        match self {
            List::Tools => ("tools", "name"),
            List::Resources => ("resources", "uri"),
            List::ResourceTemplates => ("resourceTemplates", "uriTemplate"),
            List::Prompts => ("prompts", "name"),
        }
    }

    /// The kind of what the list names.
    pub fn kind(self) -> Kind {
        match self {
            List::Tools => Kind::Tool,
            List::Resources | List::ResourceTemplates => Kind::Resource,
            List::Prompts => Kind::Prompt,
        }
    }
}

/// Methods that carry nothing the policy rules: the session's life, its settings, and
/// the tasks of calls already decided.
const PASSING: &[&str] = &[
    "initialize",
    // Protocol 2026-07-28's stateless replacement for initialize.
    "server/discover",
    "ping",
    "logging/setLevel",
    "resources/unsubscribe",
    // Tasks (protocol 2025-11-25) act on a call that was decided when it was made.
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
];

/// Whether a method is decided by the policy, so it must have an id to be answered with.
pub(crate) fn is_decided(method: &str) -> bool {
    matches!(
        method,
        "tools/call"
            | "resources/read"
            | "resources/subscribe"
            | "prompts/get"
            | "completion/complete"
            | "subscriptions/listen"
    )
}

/// What the gate does with a request of `method`, given its params.
pub(crate) fn rule<'m>(method: &'m str, params: Option<&'m Params<'_>>) -> Ruled<'m> {
    if let Err(why) = check_params(method, params) {
        let kind = match method {
            "prompts/get" => Kind::Prompt,
            "completion/complete" => match params
                .and_then(|p| p.get("ref"))
                .and_then(|r| r.get("type"))
                .and_then(Value::as_str)
            {
                Some("ref/resource") => Kind::Resource,
                _ => Kind::Prompt,
            },
            _ => Kind::Resource,
        };
        return Ruled::Malformed { kind, why };
    }
    let name = |p: Option<&'m Params<'_>>| p.and_then(Params::name).unwrap_or_default();
    let fields = match params {
        Some(Params::Object(f)) => Some(f),
        _ => None,
    };
    let uri = || {
        params
            .and_then(|p| p.get("uri"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    match method {
        "tools/call" => Ruled::Decide {
            kind: Kind::Tool,
            name: name(params),
            args: fields.and_then(|f| f.arguments()),
        },
        "resources/read" | "resources/subscribe" => Ruled::Decide {
            kind: Kind::Resource,
            name: uri(),
            args: None,
        },
        "prompts/get" => Ruled::Decide {
            kind: Kind::Prompt,
            name: name(params),
            args: fields.and_then(|f| f.arguments()),
        },
        "completion/complete" => {
            let r = params.and_then(|p| p.get("ref"));
            let field = |k: &str| r.and_then(|r| r.get(k)).and_then(Value::as_str);
            match field("type") {
                Some("ref/resource") => Ruled::Completes {
                    kind: Kind::Resource,
                    name: field("uri").unwrap_or_default(),
                },
                _ => Ruled::Completes {
                    kind: Kind::Prompt,
                    name: field("name").unwrap_or_default(),
                },
            }
        }
        "subscriptions/listen" => Ruled::Listens(
            params
                .and_then(|p| p.get("notifications"))
                .and_then(|n| n.get("resourceSubscriptions"))
                .and_then(Value::as_array)
                .map_or(&[], Vec::as_slice),
        ),
        "tools/list" => Ruled::List(List::Tools),
        "resources/list" => Ruled::List(List::Resources),
        "resources/templates/list" => Ruled::List(List::ResourceTemplates),
        "prompts/list" => Ruled::List(List::Prompts),
        m if PASSING.contains(&m) => Ruled::Pass,
        m => Ruled::Decide {
            kind: Kind::Method,
            name: m,
            args: None,
        },
    }
}

/// Finds params the gate could not decide on: a resource without a string `uri`, a
/// prompt without a string `name` or with `arguments` that are not an object, a completion
/// whose `ref` names neither.
pub(crate) fn check_params(method: &str, params: Option<&Params<'_>>) -> Result<(), String> {
    let object = match params {
        Some(Params::Object(f)) => Some(f),
        _ => None,
    };
    let string = |key: &str| {
        params
            .and_then(|p| p.get(key))
            .is_some_and(Value::is_string)
    };
    match method {
        "resources/read" | "resources/subscribe" if !string("uri") => {
            Err(format!("{method} needs params with a string `uri`"))
        }
        "prompts/get" => match object {
            Some(f) if f.name.is_some() && f.get("arguments").is_none() => Ok(()),
            Some(f) if f.name.is_some() => Err("prompt `arguments` must be an object".into()),
            _ => Err("prompts/get needs params with a string `name`".into()),
        },
        "completion/complete" => {
            let r = params.and_then(|p| p.get("ref"));
            let field = |k: &str| r.and_then(|r| r.get(k)).and_then(Value::as_str);
            match field("type") {
                Some("ref/prompt") if field("name").is_some() => Ok(()),
                Some("ref/resource") if field("uri").is_some() => Ok(()),
                _ => Err(
                    "completion/complete needs a `ref` of type `ref/prompt` with a `name` or `ref/resource` with a `uri`"
                        .into(),
                ),
            }
        }
        "subscriptions/listen" => {
            let subs = params
                .and_then(|p| p.get("notifications"))
                .and_then(|n| n.get("resourceSubscriptions"));
            match subs {
                None | Some(Value::Null) => Ok(()),
                Some(Value::Array(uris)) if uris.iter().all(Value::is_string) => Ok(()),
                Some(_) => Err("`resourceSubscriptions` must be a list of URI strings".into()),
            }
        }
        _ => Ok(()),
    }
}

/// The list requests of a body, with their ids.
pub(crate) fn lists(messages: &[Message<'_>]) -> Vec<(Value, List)> {
    messages
        .iter()
        .filter_map(|m| match m {
            Message::Request { id, method, params } => match rule(method, params.as_ref()) {
                Ruled::List(l) => Some((id.clone(), l)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ruled(body: &str) -> String {
        let parsed = crate::inspect::parse(body.as_bytes(), true);
        match parsed {
            Ok(b) => match &b.messages[0] {
                Message::Request { method, params, .. } => {
                    format!("{:?}", rule(method, params.as_ref()))
                }
                other => format!("{other:?}"),
            },
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn each_method_is_ruled_as_the_docs_say() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}"#,
                "Decide { kind: Resource, name: \"file:///a\", args: None }",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"x://y"}}"#,
                "Decide { kind: Resource, name: \"x://y\", args: None }",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":{"a":"1"}}}"#,
                "Decide { kind: Prompt, name: \"p\", args: Some(Object {\"a\": String(\"1\")}) }",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"t://{x}"},"argument":{"name":"x","value":""}}}"#,
                "Completes { kind: Resource, name: \"t://{x}\" }",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"x","value":""}}}"#,
                "Completes { kind: Prompt, name: \"p\" }",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/templates/list"}"#,
                "List(ResourceTemplates)",
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#, "Pass"),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}"#,
                "Pass",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":["a://b"]}}}"#,
                "Listens([String(\"a://b\")])",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"info"}}"#,
                "Pass",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"future/thing"}"#,
                "Decide { kind: Method, name: \"future/thing\", args: None }",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(ruled(body), want, "{body}");
        }
    }

    #[test]
    fn params_the_gate_cannot_decide_on_are_found() {
        for (body, why) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":7}}"#,
                "string `uri`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read"}"#,
                "string `uri`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{}}"#,
                "string `name`",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":[1]}}"#,
                "must be an object",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt"}}}"#,
                "`ref`",
            ),
            (
                r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"a"}}"#,
                "Invalid",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":{"resourceSubscriptions":[1]}}}"#,
                "URI strings",
            ),
        ] {
            let out = ruled(body);
            assert!(
                (out.contains("Malformed") || out.contains("not a notification"))
                    && out.contains(why),
                "{body}: {out}"
            );
        }
    }
}
