//! What the targets share: the reading an upstream server makes of a body (serde_json, as
//! most JSON libraries read it), compared with the gate's.

use serde_json::Value;
use warden_policy::Kind;
use warden_tower::List;
use warden_tower::fuzzing::Rule;

/// Checks the gate's reading of `body` against serde_json's: anything the gate did not
/// refuse must be read the same way, so no call can be smuggled past it, and each request
/// must be ruled on what the server will read in it (the resource's URI, the prompt's name
/// and arguments, what a completion completes, the method itself).
pub fn same_reading(body: &[u8]) {
    let Ok(ours) = warden_tower::fuzzing::inspect(body) else {
        return;
    };
    let theirs: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("the gate read a body serde_json refuses ({e})"));
    let list = match theirs {
        Value::Array(items) => items,
        one => vec![one],
    };
    assert_eq!(list.len(), ours.len(), "message count");
    for (read, v) in ours.iter().zip(&list) {
        let their_method = v.get("method").and_then(Value::as_str);
        if read.method.is_some() {
            assert_eq!(read.method.as_deref(), their_method, "method");
        }
        assert_eq!(
            read.rule.is_some(),
            read.method.is_some(),
            "a request without a rule, or a rule without a request: {v}"
        );
        if their_method == Some("tools/call") {
            let (name, args) = read
                .call
                .as_ref()
                .unwrap_or_else(|| panic!("a tools/call the gate forwards undecided: {v}"));
            let params = &v["params"];
            assert_eq!(params["name"].as_str(), Some(name.as_str()), "tool name");
            let their_args = params.get("arguments").filter(|a| !a.is_null());
            assert_eq!(their_args, args.as_ref(), "arguments");
        }
        if let (Some(rule), Some(method)) = (&read.rule, &read.method) {
            let want = expected_rule(method, v.get("params"));
            assert_eq!(rule, &want, "the rule of {v}");
        }
    }
}

/// Methods that carry nothing to rule (docs/policy-json.md, "Every MCP method").
const PASSING: &[&str] = &[
    "initialize",
    "server/discover",
    "ping",
    "logging/setLevel",
    "resources/unsubscribe",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
];

/// What docs/policy-json.md says a request is decided on, read from serde_json's reading
/// of its params.
fn expected_rule(method: &str, params: Option<&Value>) -> Rule {
    // Positional params name nothing.
    let get = |k: &str| params.filter(|p| p.is_object()).and_then(|p| p.get(k));
    let string = |k: &str| get(k).and_then(Value::as_str).map(str::to_owned);
    match method {
        "tools/call" => Rule::Decide {
            kind: Kind::Tool,
            name: string("name").unwrap_or_default(),
            args: get("arguments").filter(|a| a.is_object()).cloned(),
        },
        "resources/read" | "resources/subscribe" => match string("uri") {
            Some(uri) => Rule::Decide {
                kind: Kind::Resource,
                name: uri,
                args: None,
            },
            None => Rule::Malformed {
                kind: Kind::Resource,
            },
        },
        "prompts/get" => match (string("name"), get("arguments")) {
            (Some(name), None | Some(Value::Null)) => Rule::Decide {
                kind: Kind::Prompt,
                name,
                args: None,
            },
            (Some(name), Some(a @ Value::Object(_))) => Rule::Decide {
                kind: Kind::Prompt,
                name,
                args: Some(a.clone()),
            },
            _ => Rule::Malformed { kind: Kind::Prompt },
        },
        "completion/complete" => {
            let field = |k: &str| {
                get("ref")
                    .and_then(|r| r.get(k))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            match (field("type").as_deref(), field("name"), field("uri")) {
                (Some("ref/prompt"), Some(name), _) => Rule::Completes {
                    kind: Kind::Prompt,
                    name,
                },
                (Some("ref/resource"), _, Some(uri)) => Rule::Completes {
                    kind: Kind::Resource,
                    name: uri,
                },
                (Some("ref/resource"), ..) => Rule::Malformed {
                    kind: Kind::Resource,
                },
                _ => Rule::Malformed { kind: Kind::Prompt },
            }
        }
        "subscriptions/listen" => {
            match get("notifications").and_then(|n| n.get("resourceSubscriptions")) {
                None | Some(Value::Null) => Rule::Listens(Vec::new()),
                Some(Value::Array(uris)) if uris.iter().all(Value::is_string) => {
                    Rule::Listens(uris.clone())
                }
                Some(_) => Rule::Malformed {
                    kind: Kind::Resource,
                },
            }
        }
        "tools/list" => Rule::List(List::Tools),
        "resources/list" => Rule::List(List::Resources),
        "resources/templates/list" => Rule::List(List::ResourceTemplates),
        "prompts/list" => Rule::List(List::Prompts),
        m if PASSING.contains(&m) => Rule::Pass,
        m => Rule::Decide {
            kind: Kind::Method,
            name: m.to_owned(),
            args: None,
        },
    }
}
