//! JSON value → [`Policy`], collecting every structural problem with its JSON Pointer.
//!
//! Hand-written rather than derived so that a document with ten mistakes reports ten
//! problems, each with a pointer and a suggestion, instead of serde's first error.

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::model::*;
use crate::pointer::{child, index};
use crate::problem::{Problem, Problems};
use crate::suggest::did_you_mean;

pub(crate) fn policy(value: &Value) -> Result<Policy, Problems> {
    let mut l = Loader::default();
    let policy = l.policy(value);
    match policy {
        Some(p) if l.problems.is_empty() => Ok(p),
        _ => Err(Problems(l.problems)),
    }
}

#[derive(Default)]
struct Loader {
    problems: Vec<Problem>,
}

const POLICY_KEYS: &[&str] = &[
    "version",
    "default",
    "mode",
    "hide",
    "all_tools",
    "tools",
    "defaults",
    "lists",
    "hide_resources",
    "hide_prompts",
    "resources",
    "prompts",
    "server_requests",
];
const DEFAULTS_KEYS: &[&str] = &[
    "tools",
    "resources",
    "prompts",
    "methods",
    "server_requests",
];
const ALL_TOOLS_KEYS: &[&str] = &["require", "deny_if", "limits"];
const TOOL_KEYS: &[&str] = &[
    "require",
    "deny_if",
    "limits",
    "approval",
    "mode",
    // The hosted product's FAQ forms, read into the canonical keys above.
    "action",
    "reason",
    "rate_limit",
];
const RATE_LIMIT_KEYS: &[&str] = &["max", "window"];
const RULE_KEYS: &[&str] = &["conditions", "on_deny"];
const CONDITION_KEYS: &[&str] = &["path", "op", "value"];
const LIMIT_KEYS: &[&str] = &[
    "counter",
    "window",
    "max",
    "scope",
    "cost",
    "claim",
    "on_deny",
    "refund_on_error",
];
const APPROVAL_KEYS: &[&str] = &["timeout", "on_timeout", "via", "redact"];

impl Loader {
    fn problem(&mut self, p: Problem) {
        self.problems.push(p);
    }

    fn policy(&mut self, v: &Value) -> Option<Policy> {
        let m = self.object(v, "", "a policy object")?;
        self.known_keys(m, "", POLICY_KEYS);
        let version = self.required(m, "", "version").and_then(|v| match v {
            Value::Number(n) => {
                self.problem(
                    Problem::new(
                        "/version",
                        format!("expected a string, found the number {n}"),
                    )
                    .with_help(format!("write it in quotes: \"{n}\"")),
                );
                None
            }
            v => self.string(v, "/version"),
        });
        let default = self.optional(m, "default", |l, v, at| {
            l.keyword(v, at, DefaultAction::NAMES)
        });
        let mode = self.optional(m, "mode", |l, v, at| l.keyword(v, at, Mode::NAMES));
        let hide = self.optional(m, "hide", |l, v, at| {
            l.list(v, at, |l, v, at| l.string(v, at))
        });
        let all_tools = self.optional(m, "all_tools", Loader::all_tools);
        let tools = self.optional(m, "tools", Loader::tools);
        let defaults = self.optional(m, "defaults", Loader::defaults);
        let lists = self.optional(m, "lists", |l, v, at| l.keyword(v, at, Lists::NAMES));
        let hide_resources = self.optional(m, "hide_resources", |l, v, at| {
            l.list(v, at, |l, v, at| l.string(v, at))
        });
        let hide_prompts = self.optional(m, "hide_prompts", |l, v, at| {
            l.list(v, at, |l, v, at| l.string(v, at))
        });
        let resources = self.optional(m, "resources", Loader::tools);
        let prompts = self.optional(m, "prompts", Loader::tools);
        let server_requests = self.optional(m, "server_requests", Loader::tools);
        Some(Policy {
            version: version?,
            default: default?,
            mode: mode?,
            hide: hide?,
            all_tools: all_tools?,
            tools: tools?,
            defaults: defaults?,
            lists: lists?,
            hide_resources: hide_resources?,
            hide_prompts: hide_prompts?,
            resources: resources?,
            prompts: prompts?,
            server_requests: server_requests?,
        })
    }

    fn defaults(&mut self, v: &Value, at: &str) -> Option<Defaults> {
        let m = self.object(v, at, "an object of kinds: `{\"resources\": \"allow\"}`")?;
        self.known_keys(m, at, DEFAULTS_KEYS);
        let mut one = |key: &str| {
            self.optional_at(m, at, key, |l, v, at| {
                l.keyword(v, at, DefaultAction::NAMES)
            })
        };
        let tools = one("tools");
        let resources = one("resources");
        let prompts = one("prompts");
        let methods = one("methods");
        let server_requests = one("server_requests");
        Some(Defaults {
            tools: tools?,
            resources: resources?,
            prompts: prompts?,
            methods: methods?,
            server_requests: server_requests?,
        })
    }

    fn all_tools(&mut self, v: &Value, at: &str) -> Option<AllTools> {
        let m = self.object(v, at, "an object `{require, deny_if, limits}`")?;
        self.known_keys(m, at, ALL_TOOLS_KEYS);
        let require = self.optional_at(m, at, "require", |l, v, at| l.list(v, at, Loader::rule));
        let deny_if = self.optional_at(m, at, "deny_if", |l, v, at| l.list(v, at, Loader::rule));
        let limits = self.optional_at(m, at, "limits", |l, v, at| l.list(v, at, Loader::limit));
        Some(AllTools {
            require: require?,
            deny_if: deny_if?,
            limits: limits?,
        })
    }

    fn tools(&mut self, v: &Value, at: &str) -> Option<IndexMap<String, ToolRule>> {
        let m = self.object(v, at, "an object mapping tool names to entries")?;
        let mut out = IndexMap::with_capacity(m.len());
        let mut ok = true;
        for (name, entry) in m {
            match self.tool(name, entry, &child(at, name)) {
                Some(rule) => {
                    out.insert(name.clone(), rule);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn tool(&mut self, name: &str, v: &Value, at: &str) -> Option<ToolRule> {
        let m = self.object(v, at, "a tool entry object (`{}` allows the tool)")?;
        self.known_keys(m, at, TOOL_KEYS);
        let require = self.optional_at(m, at, "require", |l, v, at| l.list(v, at, Loader::rule));
        let deny_if = self.optional_at(m, at, "deny_if", |l, v, at| l.list(v, at, Loader::rule));
        let limits = self.optional_at(m, at, "limits", |l, v, at| l.list(v, at, Loader::limit));
        let approval = self.optional_at(m, at, "approval", Loader::approval);
        let mode = self.optional_at(m, at, "mode", |l, v, at| l.keyword(v, at, Mode::NAMES));
        let (action_deny, rate_limit) = self.faq_forms(name, m, at)?;
        let mut deny_if = deny_if?;
        let mut limits = limits?;
        // `action: deny` blocks every call: an unconditional deny_if, checked first.
        if let Some(reason) = action_deny {
            deny_if.get_or_insert_with(Vec::new).insert(
                0,
                Rule {
                    conditions: Vec::new(),
                    on_deny: reason,
                },
            );
        }
        if let Some(limit) = rate_limit {
            limits.get_or_insert_with(Vec::new).push(limit);
        }
        Some(ToolRule {
            require: require?,
            deny_if,
            limits,
            approval: approval?,
            mode: mode?,
        })
    }

    /// The hosted product's FAQ forms in a tool entry: `action: allow|deny` (with `reason`,
    /// the message a denied agent reads) and `rate_limit: {max, window}` (window in seconds
    /// or a unit name; tracked per agent session, as the FAQ says). `Some(Some(reason))`
    /// in the first place means a deny.
    #[allow(clippy::type_complexity)]
    fn faq_forms(
        &mut self,
        name: &str,
        m: &Map<String, Value>,
        at: &str,
    ) -> Option<(Option<Option<String>>, Option<Limit>)> {
        let action = self.optional_at(m, at, "action", |l, v, at| {
            l.keyword(v, at, &[("allow", false), ("deny", true)])
        })?;
        let reason = self.optional_at(m, at, "reason", |l, v, at| l.string(v, at))?;
        if reason.is_some() && action != Some(true) {
            self.problem(
                Problem::new(child(at, "reason"), "`reason` goes with `action: deny`")
                    .with_help("it is the message an agent reads when the tool is blocked"),
            );
            return None;
        }
        let rate_limit = self.optional_at(m, at, "rate_limit", |l, v, at| {
            let r = l.object(v, at, "a rate limit `{max, window}`")?;
            l.known_keys(r, at, RATE_LIMIT_KEYS);
            let max = l
                .required(r, at, "max")
                .and_then(|v| l.positive(v, &child(at, "max")));
            let window = l
                .required(r, at, "window")
                .and_then(|v| l.window(v, &child(at, "window")));
            Some(Limit {
                counter: format!("{name}_rate"),
                window: window?,
                max: max?,
                scope: Some(Scope::Session),
                cost: None,
                claim: None,
                on_deny: None,
                refund_on_error: false,
            })
        })?;
        let deny = match action {
            Some(true) => Some(reason),
            _ => None,
        };
        Some((deny, rate_limit))
    }

    fn rule(&mut self, v: &Value, at: &str) -> Option<Rule> {
        let m = self.object(v, at, "a rule object with `conditions` and `on_deny`")?;
        self.known_keys(m, at, RULE_KEYS);
        let conditions = self
            .required(m, at, "conditions")
            .and_then(|v| self.list(v, &child(at, "conditions"), Loader::condition));
        let on_deny = self.optional_at(m, at, "on_deny", |l, v, at| l.string(v, at));
        Some(Rule {
            conditions: conditions?,
            on_deny: on_deny?,
        })
    }

    fn condition(&mut self, v: &Value, at: &str) -> Option<Condition> {
        let m = self.object(v, at, "a condition object `{path, op, value}`")?;
        self.known_keys(m, at, CONDITION_KEYS);
        let path = self
            .required(m, at, "path")
            .and_then(|v| self.string(v, &child(at, "path")));
        let op = self
            .required(m, at, "op")
            .and_then(|v| self.keyword(v, &child(at, "op"), Op::NAMES));
        let value = self.required(m, at, "value").cloned();
        Some(Condition {
            path: path?,
            op: op?,
            value: value?,
        })
    }

    fn limit(&mut self, v: &Value, at: &str) -> Option<Limit> {
        let m = self.object(v, at, "a limit object `{counter, window, max, scope}`")?;
        self.known_keys(m, at, LIMIT_KEYS);
        let counter = self
            .required(m, at, "counter")
            .and_then(|v| self.string(v, &child(at, "counter")));
        let window = self
            .required(m, at, "window")
            .and_then(|v| self.window(v, &child(at, "window")));
        let max = self
            .required(m, at, "max")
            .and_then(|v| self.positive(v, &child(at, "max")));
        let scope = self.optional_at(m, at, "scope", |l, v, at| l.keyword(v, at, Scope::NAMES));
        let cost = self.optional_at(m, at, "cost", |l, v, at| l.string(v, at));
        let claim = self.optional_at(m, at, "claim", |l, v, at| l.string(v, at));
        let on_deny = self.optional_at(m, at, "on_deny", |l, v, at| l.string(v, at));
        let refund = self.optional_at(m, at, "refund_on_error", Loader::boolean);
        Some(Limit {
            counter: counter?,
            window: window?,
            max: max?,
            scope: scope?,
            cost: cost?,
            claim: claim?,
            on_deny: on_deny?,
            refund_on_error: refund?.unwrap_or(false),
        })
    }

    fn approval(&mut self, v: &Value, at: &str) -> Option<Approval> {
        let m = self.object(
            v,
            at,
            "an approval object `{timeout, on_timeout, via, redact}`",
        )?;
        self.known_keys(m, at, APPROVAL_KEYS);
        let timeout = self.optional_at(m, at, "timeout", Loader::positive);
        let on_timeout = self.optional_at(m, at, "on_timeout", |l, v, at| {
            l.keyword(v, at, OnTimeout::NAMES)
        });
        let via = self.optional_at(m, at, "via", |l, v, at| {
            l.keyword(v, at, ApprovalVia::NAMES)
        });
        let redact = self.optional_at(m, at, "redact", |l, v, at| l.list(v, at, Loader::string));
        Some(Approval {
            timeout: timeout?,
            on_timeout: on_timeout?,
            via: via?,
            redact: redact?.unwrap_or_default(),
        })
    }

    fn window(&mut self, v: &Value, at: &str) -> Option<Window> {
        if v.is_number() {
            return self.positive(v, at).map(Window::Seconds);
        }
        self.keyword(v, at, Window::NAMES)
    }

    // --- shapes -------------------------------------------------------------------------

    fn object<'v>(&mut self, v: &'v Value, at: &str, what: &str) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(m) => Some(m),
            other => {
                self.problem(Problem::new(
                    at,
                    format!("expected {what}, found {}", kind(other)),
                ));
                None
            }
        }
    }

    fn known_keys(&mut self, m: &Map<String, Value>, at: &str, known: &[&str]) {
        for key in m.keys().filter(|k| !known.contains(&k.as_str())) {
            let mut p = Problem::new(child(at, key), "unknown field").at_key();
            p = match did_you_mean(key, known.iter().copied()) {
                Some(s) => p.with_help(format!("did you mean `{s}`?")),
                None => p.with_help(format!("known fields here: {}", known.join(", "))),
            };
            self.problem(p);
        }
    }

    fn required<'v>(
        &mut self,
        m: &'v Map<String, Value>,
        at: &str,
        key: &str,
    ) -> Option<&'v Value> {
        let v = m.get(key);
        if v.is_none() {
            self.problem(Problem::new(at, format!("missing field `{key}`")));
        }
        v
    }

    /// `Some(None)` when absent, `Some(Some(x))` when present and good, `None` when bad.
    fn optional<T>(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        f: impl FnOnce(&mut Self, &Value, &str) -> Option<T>,
    ) -> Option<Option<T>> {
        self.optional_at(m, "", key, f)
    }

    fn optional_at<T>(
        &mut self,
        m: &Map<String, Value>,
        at: &str,
        key: &str,
        f: impl FnOnce(&mut Self, &Value, &str) -> Option<T>,
    ) -> Option<Option<T>> {
        match m.get(key) {
            None => Some(None),
            Some(v) => f(self, v, &child(at, key)).map(Some),
        }
    }

    fn list<T>(
        &mut self,
        v: &Value,
        at: &str,
        mut item: impl FnMut(&mut Self, &Value, &str) -> Option<T>,
    ) -> Option<Vec<T>> {
        let Value::Array(items) = v else {
            self.problem(Problem::new(
                at,
                format!("expected a list, found {}", kind(v)),
            ));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, v) in items.iter().enumerate() {
            match item(self, v, &index(at, i)) {
                Some(x) => out.push(x),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn boolean(&mut self, v: &Value, at: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                self.problem(Problem::new(
                    at,
                    format!("expected true or false, found {}", kind(other)),
                ));
                None
            }
        }
    }

    fn string(&mut self, v: &Value, at: &str) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(Problem::new(
                    at,
                    format!("expected a string, found {}", kind(other)),
                ));
                None
            }
        }
    }

    fn positive(&mut self, v: &Value, at: &str) -> Option<u64> {
        match v.as_u64() {
            Some(n) if n > 0 => Some(n),
            _ => {
                let mut p = Problem::new(
                    at,
                    format!("expected a positive integer, found {}", describe(v)),
                );
                if let Some(n) = v.as_str().and_then(|s| s.parse::<u64>().ok()) {
                    p = p.with_help(format!("write the number without quotes: {n}"));
                }
                self.problem(p);
                None
            }
        }
    }

    fn keyword<T: Copy>(&mut self, v: &Value, at: &str, names: &[(&'static str, T)]) -> Option<T> {
        let known = || names.iter().map(|(n, _)| *n);
        let Value::String(s) = v else {
            let list: Vec<_> = known().collect();
            self.problem(Problem::new(
                at,
                format!("expected one of {}, found {}", quoted(&list), kind(v)),
            ));
            return None;
        };
        if let Some((_, t)) = names.iter().find(|(n, _)| n == s) {
            return Some(*t);
        }
        let list: Vec<_> = known().collect();
        let mut p = Problem::new(
            at,
            format!("unknown value {s:?}, expected one of {}", quoted(&list)),
        );
        if let Some(guess) = did_you_mean(s, known()) {
            p = p.with_help(format!("did you mean \"{guess}\"?"));
        }
        self.problem(p);
        None
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a JSON value is, for messages: "a number", "a list", ...
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("the string {s:?}"),
        other => kind(other).to_string(),
    }
}

/// Notes for a policy.json written with the hosted product's FAQ forms (`action`,
/// `reason`, `rate_limit`): each says what Warden reads it as, in the canonical keys.
pub fn faq_notes(doc: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(tools) = doc.get("tools").and_then(Value::as_object) else {
        return out;
    };
    for (name, entry) in tools {
        let at = child("/tools", name);
        if let Some(action) = entry.get("action").and_then(Value::as_str) {
            let canonical = match action {
                "deny" => match entry.get("reason").and_then(Value::as_str) {
                    Some(r) => format!(
                        r#""deny_if": [{{"conditions": [], "on_deny": {}}}]"#,
                        Value::from(r)
                    ),
                    None => r#""deny_if": [{"conditions": []}]"#.to_owned(),
                },
                _ => "an entry without rules (`{}`)".to_owned(),
            };
            out.push(
                Problem::new(
                    child(&at, "action"),
                    format!("hosted form `action: {action}`"),
                )
                .with_help(format!("read as {canonical}, its canonical form")),
            );
        }
        if let Some(r) = entry.get("rate_limit") {
            let max = r.get("max").map(Value::to_string).unwrap_or_default();
            let window = r.get("window").map(Value::to_string).unwrap_or_default();
            out.push(
                Problem::new(child(&at, "rate_limit"), "hosted form `rate_limit`").with_help(
                    format!(
                        r#"read as "limits": [{{"counter": "{name}_rate", "window": {window}, "max": {max}, "scope": "session"}}] (tracked per agent session, as the hosted FAQ says)"#
                    ),
                ),
            );
        }
    }
    out
}
