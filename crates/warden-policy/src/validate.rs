//! Semantic checks on a loaded [`Policy`]: everything the types alone cannot say.
//! All problems are collected, each with its JSON Pointer.

use std::collections::HashMap;

use serde_json::Value;

use crate::condition::{ArgPath, CondPath, Num, build_regex};
use crate::glob::Glob;
use crate::load::kind;
use crate::model::*;
use crate::pointer::{child, index};
use crate::problem::{Problem, Problems};

/// Every semantic problem in `policy`, in document order.
pub fn validate(policy: &Policy) -> Problems {
    let mut v = Validator::default();
    v.policy(policy);
    Problems(v.problems)
}

#[derive(Default)]
struct Validator<'p> {
    problems: Vec<Problem>,
    /// counter name -> (pointer of its first use, its limit)
    counters: HashMap<&'p str, (String, &'p Limit)>,
    /// Pattern -> its compile error, if any: policies repeat patterns, and compiling a
    /// regex costs far more than everything else validation does.
    regexes: HashMap<&'p str, Option<String>>,
    /// Every counter some limit charges, for `counter.NAME` conditions written anywhere.
    declared: std::collections::HashSet<&'p str>,
}

impl<'p> Validator<'p> {
    fn policy(&mut self, p: &'p Policy) {
        let all_limits = p.all_tools.iter().flat_map(|a| a.limits.iter().flatten());
        let tool_limits = [
            Kind::Tool,
            Kind::Resource,
            Kind::Prompt,
            Kind::ServerRequest,
        ]
        .into_iter()
        .filter_map(|k| p.entries(k))
        .flatten()
        .flat_map(|(_, t)| t.limits.iter().flatten());
        self.declared = all_limits
            .chain(tool_limits)
            .map(|l| l.counter.as_str())
            .collect();
        if p.version != "1" {
            self.problems.push(
                Problem::new("/version", format!("unsupported version {:?}", p.version))
                    .with_help("this version of Warden reads version \"1\""),
            );
        }
        for kind in [Kind::Tool, Kind::Resource, Kind::Prompt] {
            let key = kind.hide_key().unwrap_or("hide");
            for (i, name) in p.hidden(kind).iter().enumerate() {
                if name.is_empty() {
                    self.problems.push(Problem::new(
                        index(&format!("/{key}"), i),
                        format!("empty {} name", kind.noun()),
                    ));
                }
            }
        }
        if let Some(all) = &p.all_tools {
            self.rules(&all.require, &all.deny_if, "/all_tools");
            if let Some(limits) = &all.limits {
                self.limits(limits, "/all_tools/limits");
            }
        }
        for (name, rule) in p.tools.iter().flatten() {
            let at = child("/tools", name);
            if name.is_empty() {
                self.problems
                    .push(Problem::new(&at, "empty tool name").at_key());
            }
            self.tool(rule, &at);
        }
        for kind in [Kind::Resource, Kind::Prompt, Kind::ServerRequest] {
            for (name, rule) in p.entries(kind).into_iter().flatten() {
                let at = child(&format!("/{}", kind.section()), name);
                if name.is_empty() {
                    self.problems
                        .push(Problem::new(&at, format!("empty {} name", kind.noun())).at_key());
                }
                if kind == Kind::ServerRequest && !SERVER_REQUESTS.contains(&name.as_str()) {
                    let mut problem =
                        Problem::new(&at, format!("`{name}` is not a request a server sends"))
                            .at_key();
                    problem = match crate::did_you_mean(name, SERVER_REQUESTS.iter().copied()) {
                        Some(s) => problem.with_help(format!("did you mean `{s}`?")),
                        None => problem
                            .with_help(format!("known requests: {}", SERVER_REQUESTS.join(", "))),
                    };
                    self.problems.push(problem);
                }
                if let Some(approval) = &rule.approval
                    && kind != Kind::Tool
                    && approval.via.is_some_and(ApprovalVia::asks_client)
                {
                    self.problems.push(
                        Problem::new(child(&child(&at, "approval"), "via"), format!("a {} cannot be approved in the MCP client", kind.noun()))
                            .with_help("only tool calls can ask the person at the client; use the queue (the default)"),
                    );
                }
                self.tool(rule, &at);
            }
        }
        for kind in [Kind::Tool, Kind::Resource, Kind::Prompt] {
            self.glob_ties(p, kind);
        }
    }

    fn rules(&mut self, require: &'p Option<Vec<Rule>>, deny_if: &'p Option<Vec<Rule>>, at: &str) {
        for (field, rules) in [("require", require), ("deny_if", deny_if)] {
            for (i, rule) in rules.iter().flatten().enumerate() {
                let rule_at = index(&child(at, field), i);
                for (j, c) in rule.conditions.iter().enumerate() {
                    self.condition(c, &index(&child(&rule_at, "conditions"), j));
                }
            }
        }
    }

    fn tool(&mut self, t: &'p ToolRule, at: &str) {
        self.rules(&t.require, &t.deny_if, at);
        if let Some(limits) = &t.limits {
            self.limits(limits, &child(at, "limits"));
        }
        for (i, path) in t.approval.iter().flat_map(|a| a.redact.iter()).enumerate() {
            if ArgPath::parse(path).is_none() {
                self.problems.push(
                    Problem::new(
                        index(&child(&child(at, "approval"), "redact"), i),
                        format!("invalid argument path {path:?}"),
                    )
                    .with_help("name an argument whose value the approver must not see: `args.card_number`"),
                );
            }
        }
        if t.approval.as_ref().and_then(|a| a.timeout) == Some(0) {
            self.problems.push(Problem::new(
                child(&child(at, "approval"), "timeout"),
                "expected a positive integer, found 0",
            ));
        }
    }

    fn condition(&mut self, c: &'p Condition, at: &str) {
        if let Some(CondPath::Counter(name)) = CondPath::parse(&c.path) {
            if !self.declared.contains(name.as_str()) {
                let known: Vec<&str> = self.declared.iter().copied().collect();
                let mut p = Problem::new(
                    child(at, "path"),
                    format!(
                        "no limit counts `{name}`: a condition can read only a counter the policy charges"
                    ),
                );
                if let Some(s) = crate::did_you_mean(&name, known.iter().copied()) {
                    p = p.with_help(format!("did you mean `counter.{s}`?"));
                }
                self.problems.push(p);
            }
        }
        if CondPath::parse(&c.path).is_none() {
            self.problems.push(
                Problem::new(child(at, "path"), format!("invalid path {:?}", c.path))
                    .with_help("write `args.` and the argument's name (dots descend into objects: `args.metadata.key`), or `caller.grant`, `caller.scopes`, `caller.claims.<name>`, `counter.<name>`"),
            );
        }
        let value_at = child(at, "value");
        let v = &c.value;
        let wrong = |expected: &str| {
            Problem::new(
                &value_at,
                format!("`{}` needs {expected}, found {}", c.op, kind(v)),
            )
        };
        let problem = match c.op {
            Op::Eq | Op::Neq | Op::Contains if v.is_array() && c.op != Op::Contains => {
                Some(wrong("a single value").with_help(format!(
                    "to compare with a list of values use `{}`",
                    if c.op == Op::Eq { "in" } else { "not_in" }
                )))
            }
            Op::Eq | Op::Neq | Op::Contains if v.is_object() || v.is_array() => {
                Some(wrong("a string, number, boolean or null"))
            }
            Op::Eq | Op::Neq | Op::Contains => None,
            Op::In | Op::NotIn => match v {
                Value::Array(items) => items
                    .iter()
                    .position(|i| i.is_array() || i.is_object())
                    .map(|pos| {
                        Problem::new(
                            index(&value_at, pos),
                            format!(
                                "`{}` lists need strings, numbers, booleans or null, found {}",
                                c.op,
                                kind(&items[pos])
                            ),
                        )
                    }),
                _ => Some(
                    wrong("a list of values")
                        .with_help(format!("write `[{v}]` for a single value, or use `eq`")),
                ),
            },
            Op::Lt | Op::Lte | Op::Gt | Op::Gte => Num::of(v).is_none().then(|| wrong("a number")),
            Op::Regex => match v.as_str() {
                None => Some(wrong("a regular expression string")),
                Some(re) => self
                    .regexes
                    .entry(re)
                    .or_insert_with(|| build_regex(re).err().map(|e| first_line(&e.to_string())))
                    .as_ref()
                    .map(|e| Problem::new(&value_at, format!("invalid regular expression: {e}"))),
            },
            Op::Exists => (!v.is_boolean()).then(|| {
                wrong("true or false")
                    .with_help("`true`: the argument must be present; `false`: it must be absent")
            }),
        };
        self.problems.extend(problem);
    }

    fn limits(&mut self, limits: &'p [Limit], at: &str) {
        for (i, limit) in limits.iter().enumerate() {
            let limit_at = index(at, i);
            // The JSON loader refuses these already; `.pol` and hand-built models come here.
            if limit.max == 0 {
                self.problems.push(Problem::new(
                    child(&limit_at, "max"),
                    "expected a positive integer, found 0",
                ));
            }
            if limit.window == Window::Seconds(0) {
                self.problems.push(
                    Problem::new(
                        child(&limit_at, "window"),
                        "a window of 0 seconds never refills",
                    )
                    .with_help("use a positive number of seconds, or minute, hour or day"),
                );
            }
            if limit.counter.is_empty() {
                self.problems.push(Problem::new(
                    child(&limit_at, "counter"),
                    "empty counter name",
                ));
            }
            if let Some(cost) = &limit.cost
                && ArgPath::parse(cost).is_none()
            {
                self.problems.push(
                    Problem::new(
                        child(&limit_at, "cost"),
                        format!("invalid argument path {cost:?}"),
                    )
                    .with_help("name the argument that holds the cost: `args.amount`"),
                );
            }
            match (limit.scope(), &limit.claim) {
                (Scope::Claim, None) => self.problems.push(
                    Problem::new(child(&limit_at, "scope"), "a limit per claim needs `claim`")
                        .with_help("name the claim whose value keys the bucket: `per claim team`"),
                ),
                (Scope::Claim, Some(c)) if ArgPath::segments(c).is_none() => self.problems.push(
                    Problem::new(
                        child(&limit_at, "claim"),
                        format!("invalid claim name {c:?}"),
                    )
                    .with_help("a claim's name, dots descending into objects: `team`, `org.id`"),
                ),
                (scope, Some(_)) if scope != Scope::Claim => self.problems.push(
                    Problem::new(
                        child(&limit_at, "claim"),
                        "`claim` is only for limits per claim",
                    )
                    .with_help("set `scope` to `claim`, or remove `claim`"),
                ),
                _ => {}
            }
            match self.counters.get(limit.counter.as_str()) {
                None => {
                    self.counters.insert(&limit.counter, (limit_at, limit));
                }
                Some((first_at, first)) => {
                    if (
                        first.max,
                        first.window.as_secs(),
                        first.scope(),
                        &first.claim,
                    ) != (
                        limit.max,
                        limit.window.as_secs(),
                        limit.scope(),
                        &limit.claim,
                    ) {
                        self.problems.push(
                            Problem::new(
                                child(&limit_at, "counter"),
                                format!("counter {:?} is already used with a different quota", limit.counter),
                            )
                            .with_help(format!(
                                "{first_at} sets {} per {} per {}; a shared counter needs the same max, window and scope everywhere, or give this limit its own counter name",
                                first.max, first.window, first.scope()
                            )),
                        );
                    }
                }
            }
        }
    }

    fn glob_ties(&mut self, p: &Policy, kind: Kind) {
        let section = format!("/{}", kind.section());
        let globs: Vec<Glob> = p
            .entries(kind)
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .filter(|k| Glob::is_glob(k))
            .map(|k| Glob::new(k))
            .collect();
        for (i, later) in globs.iter().enumerate() {
            for earlier in &globs[..i] {
                if earlier.specificity() != later.specificity() {
                    continue;
                }
                if let Some(example) = earlier.common_name(later) {
                    self.problems.push(
                        Problem::new(
                            child(&section, later.as_str()),
                            format!(
                                "`{}` and `{}` are equally specific ({} literal characters) and both match `{example}`",
                                earlier.as_str(), later.as_str(), later.specificity()
                            ),
                        )
                        .at_key()
                        .with_help(format!("make one of them more specific or narrow them so that no name matches both: which entry applies to `{example}` must not be a coin toss")),
                    );
                }
            }
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}
