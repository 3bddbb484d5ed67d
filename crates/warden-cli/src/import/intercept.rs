//! Intercept's YAML policies (and the hosted product's YAML form of them) → `.pol`.
//!
//! Every key of the schema (docs/import.md lists them with their Warden equivalent) is
//! either translated exactly or reported where it is written; nothing is dropped silently.
//! With `--lossy`, what Warden cannot express becomes a warning and a `# LOSSY:` comment in
//! the output instead of an error. Comment lines are kept, before what they preceded.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;
use warden_dsl::Diagnostic;

use super::yaml::{Kind, Lines, Node, Span};

/// Which product wrote the file: they share the format, but a hosted `rate_limit` counts
/// per agent session (as its FAQ says) and Intercept's per tool, for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Intercept,
    PolicyLayer,
}

impl Flavor {
    fn product(self) -> &'static str {
        match self {
            Flavor::Intercept => "Intercept",
            Flavor::PolicyLayer => "PolicyLayer",
        }
    }
}

/// The `.pol` text and what was found on the way (errors unless `--lossy` made them
/// warnings).
pub struct Imported {
    pub text: String,
    pub problems: Vec<Diagnostic>,
}

const TOP_KEYS: &[&str] = &["version", "description", "default", "hide", "tools"];
const RULE_KEYS: &[&str] = &[
    "name",
    "action",
    "rate_limit",
    "conditions",
    "on_deny",
    "state",
    "reason",
];
const CONDITION_KEYS: &[&str] = &["path", "op", "value"];
const STATE_KEYS: &[&str] = &["counter", "window", "increment", "increment_from"];
const OPS: &[&str] = &[
    "eq", "neq", "in", "not_in", "lt", "lte", "gt", "gte", "regex", "contains", "exists",
];

pub fn translate(text: &str, flavor: Flavor, lossy: bool) -> Imported {
    let lines = Lines::new(text);
    let mut t = Tr {
        comments: lines.comments(),
        used: BTreeSet::new(),
        lines,
        problems: Vec::new(),
        lossy,
        flavor,
        out: String::new(),
        counted: false,
        defined: Vec::new(),
        reads: Vec::new(),
        lossy_lines: Vec::new(),
    };
    match super::yaml::load(text) {
        Ok(root) => t.policy(&root),
        Err(d) => t.problems.push(d),
    }
    // Intercept reads a counter nobody charges as 0; Warden reads only counters it charges.
    for (name, span) in std::mem::take(&mut t.reads) {
        if !t.defined.contains(&name) {
            t.error(
                &span,
                format!("this reads counter `{name}`, which no rule counts (Intercept counts only a counter capped with `lt`/`lte` on its own rule, and reads any other as 0)"),
            );
        }
    }
    let rest = t.comments_before(usize::MAX);
    if !rest.is_empty() {
        t.out.push('\n');
        t.out.push_str(&rest);
    }
    Imported {
        text: t.out,
        problems: t.problems,
    }
}

/// A rule's output: its lines in the tool's block (or `all tools`).
#[derive(Default)]
struct Block {
    lines: Vec<String>,
}

struct Tr<'a> {
    lines: Lines<'a>,
    comments: Vec<(usize, String)>,
    used: BTreeSet<usize>,
    problems: Vec<Diagnostic>,
    lossy: bool,
    flavor: Flavor,
    out: String,
    /// A limit was written (its window note is due).
    counted: bool,
    /// Counters charged by a written limit, and counters conditions read (with where).
    defined: Vec<String>,
    reads: Vec<(String, Span)>,
    /// `# LOSSY:` lines for conditions that could not be said, for the rule being read.
    lossy_lines: Vec<String>,
}

impl Tr<'_> {
    // --- problems -----------------------------------------------------------------------

    fn error(&mut self, span: &Span, msg: impl Into<String>) {
        self.problems.push(Diagnostic::new(span.clone(), msg));
    }

    /// Something Warden cannot express exactly: an error, or with `--lossy` a warning and a
    /// comment in the output. Returns the comment line to write (when lossy).
    fn inexact(&mut self, span: &Span, msg: String, help: &str) -> Option<String> {
        let d = Diagnostic::new(span.clone(), msg.clone()).with_help(help);
        if self.lossy {
            self.problems.push(d.warning());
            Some(format!("# LOSSY: {msg}"))
        } else {
            self.problems.push(d.with_help(format!(
                "{help}; or import with --lossy to keep going with a comment"
            )));
            None
        }
    }

    fn map<'n>(&mut self, n: &'n Node, what: &str, known: &[&str]) -> Option<&'n [(Node, Node)]> {
        let Kind::Map(entries) = &n.kind else {
            self.error(
                &n.span,
                format!("expected {what} (a mapping), found {}", n.what()),
            );
            return None;
        };
        for (k, _) in entries {
            match k.as_str() {
                Some(key) if known.contains(&key) => {}
                Some(key) => {
                    let hint = warden_policy::did_you_mean(key, known.iter().copied())
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("known keys: {}", known.join(", ")));
                    let span = k.span.clone();
                    self.problems.push(
                        Diagnostic::new(
                            span,
                            format!(
                                "unknown key `{key}` in {what} ({} ignores unknown keys; Warden does not, so that nothing is lost)",
                                self.flavor.product()
                            ),
                        )
                        .with_help(hint),
                    );
                }
                None => self.error(&k.span, format!("a key of {what} must be a string")),
            }
        }
        Some(entries)
    }

    // --- comments -----------------------------------------------------------------------

    /// Every comment line not yet written that stands before `line`.
    fn comments_before(&mut self, line: usize) -> String {
        let mut out = String::new();
        for (l, c) in &self.comments {
            if *l < line && self.used.insert(*l) {
                if c.is_empty() {
                    out.push_str("#\n");
                } else {
                    let _ = writeln!(out, "# {c}");
                }
            }
        }
        out
    }

    fn comments_before_node(&mut self, n: &Node) -> String {
        let line = n.line(&self.lines);
        self.comments_before(line)
    }

    // --- the policy ---------------------------------------------------------------------

    fn policy(&mut self, root: &Node) {
        let Some(entries) = self.map(root, "a policy", TOP_KEYS) else {
            return;
        };
        let get = |key: &str| entries.iter().find(|(k, _)| k.as_str() == Some(key));
        let version = get("version");
        let description = get("description");
        let default = get("default");
        let hide = get("hide");
        let tools = get("tools");

        let first = entries
            .first()
            .map_or(usize::MAX, |(k, _)| k.line(&self.lines));
        let header = self.comments_before(first);
        self.out.push_str(&header);
        if !header.is_empty() {
            self.out.push('\n');
        }
        let _ = writeln!(
            self.out,
            "# Imported from {} by `warden import`.",
            self.flavor.product()
        );
        if let Some((k, v)) = description {
            let lead = self.comments_before_node(k);
            self.out.push_str(&lead);
            match v.as_str() {
                Some(d) => {
                    for l in d.lines() {
                        let _ = writeln!(self.out, "# {l}");
                    }
                }
                None if matches!(v.kind, Kind::Null) => {}
                None => self.error(
                    &v.span,
                    format!("`description` must be a string, found {}", v.what()),
                ),
            }
        }
        match version {
            Some((k, v)) => {
                let lead = self.comments_before_node(k);
                self.out.push_str(&lead);
                let ok = match &v.kind {
                    Kind::Str(s) => s == "1",
                    Kind::Int(1) => true,
                    _ => false,
                };
                if !ok {
                    self.error(
                        &v.span,
                        "`version` must be \"1\" (the only version of the format)",
                    );
                }
            }
            None => self.error(
                &(0..0),
                "the policy has no `version` (expected `version: \"1\"`)",
            ),
        }
        self.out.push_str("version 1\n");
        // Intercept's default is `allow` when the key is absent; Warden's is written out.
        let default_text = match default {
            Some((k, v)) => {
                let lead = self.comments_before_node(k);
                self.out.push_str(&lead);
                match v.as_str() {
                    Some("allow") => "allow",
                    Some("deny") => "deny",
                    _ => {
                        self.error(
                            &v.span,
                            format!("`default` must be \"allow\" or \"deny\", found {}", show(v)),
                        );
                        "deny"
                    }
                }
            }
            None => "allow",
        };
        let _ = writeln!(self.out, "default {default_text}");
        if let Some((k, v)) = hide {
            let lead = self.comments_before_node(k);
            self.out.push_str(&lead);
            self.hide(v);
        }
        if let Some((k, v)) = tools {
            let lead = self.comments_before_node(k);
            self.out.push_str(&lead);
            self.tools(v);
        }
        if self.counted && self.flavor == Flavor::Intercept {
            self.out.push_str(
                "\n# Counters: Intercept reset them at the top of each minute, hour and day (UTC);\n\
                 # Warden refills them evenly over the window (the same quota, no burst at the\n\
                 # boundary). See docs/import.md.\n",
            );
        }
    }

    fn hide(&mut self, v: &Node) {
        let Kind::Seq(items) = &v.kind else {
            if !matches!(v.kind, Kind::Null) {
                self.error(
                    &v.span,
                    format!("`hide` must be a list of tool names, found {}", v.what()),
                );
            }
            return;
        };
        let mut names = Vec::new();
        for item in items {
            match item.as_str() {
                Some(n) if n.trim().is_empty() => {
                    self.error(&item.span, "a `hide` entry must not be empty")
                }
                Some("*") => names.push("*".to_owned()),
                Some(n) => names.extend(self.exact_name(n, &item.span, true)),
                None => self.error(
                    &item.span,
                    format!("a `hide` entry must be a tool name, found {}", item.what()),
                ),
            }
        }
        for line in std::mem::take(&mut self.lossy_lines) {
            let _ = writeln!(self.out, "{line}");
        }
        let _ = writeln!(self.out, "hide [{}]", names.join(", "));
    }

    /// A tool name as `.pol` writes it. Intercept's names are exact; Warden reads `*` and `?`
    /// as globs, so a name holding them cannot be said exactly.
    /// In `hide`, a glob hides more (with --lossy, kept: it fails closed); as a tool entry
    /// it would let more tools through, so it stays an error.
    fn exact_name(&mut self, name: &str, span: &Span, hiding: bool) -> Option<String> {
        if name.contains(['*', '?']) {
            let msg = format!("tool name {name:?} holds `*` or `?`, which Warden reads as a glob");
            if !hiding {
                self.error(
                    span,
                    format!("{msg}: this entry would govern more tools than Intercept's"),
                );
                return None;
            }
            let line = self.inexact(span, msg, "hide the exact names instead")?;
            self.lossy_lines.push(format!("{line} (it hides more)"));
        }
        Some(warden_dsl::tool_name(name))
    }

    fn tools(&mut self, v: &Node) {
        let entries = match &v.kind {
            Kind::Map(entries) => entries,
            Kind::Null => return,
            _ => {
                self.error(
                    &v.span,
                    format!(
                        "`tools` must map tool names to their rules, found {}",
                        v.what()
                    ),
                );
                return;
            }
        };
        // Read in file order (so comments find their entries), written with `"*"` first:
        // `all tools` comes before the tool statements.
        let mut star = String::new();
        let mut named = String::new();
        for (k, body) in entries {
            let Some(name) = k.as_str() else {
                self.error(&k.span, "a tool name must be a string");
                continue;
            };
            let is_star = name == "*";
            let lead = self.comments_before_node(k);
            let block = self.tool_body(name, body);
            let tail = self.comments_before(body_end_line(body, &self.lines));
            let header = if is_star {
                "all tools".to_owned()
            } else {
                match self.exact_name(name, &k.span, false) {
                    Some(n) => format!("tool {n}"),
                    None => continue,
                }
            };
            let out = if is_star { &mut star } else { &mut named };
            out.push('\n');
            out.push_str(&lead);
            if block.lines.is_empty() && tail.is_empty() {
                if is_star {
                    let _ = writeln!(out, "{header} {{}}");
                } else {
                    let _ = writeln!(out, "allow {}", &header["tool ".len()..]);
                }
                continue;
            }
            let _ = writeln!(out, "{header} {{");
            for l in block.lines.iter().map(String::as_str).chain(tail.lines()) {
                let _ = writeln!(out, "  {l}");
            }
            out.push_str("}\n");
        }
        self.out.push_str(&star);
        self.out.push_str(&named);
    }

    fn tool_body(&mut self, tool: &str, body: &Node) -> Block {
        let mut block = Block::default();
        if matches!(body.kind, Kind::Null) {
            return block;
        }
        let Some(entries) = self.map(body, "a tool entry", &["rules"]) else {
            return block;
        };
        let Some((_, rules)) = entries.iter().find(|(k, _)| k.as_str() == Some("rules")) else {
            return block;
        };
        let items = match &rules.kind {
            Kind::Seq(items) => items,
            Kind::Null => return block,
            _ => {
                self.error(
                    &rules.span,
                    format!("`rules` must be a list, found {}", rules.what()),
                );
                return block;
            }
        };
        let mut counters: Vec<(String, Span)> = Vec::new();
        for rule in items {
            let lead = self.comments_before_node(rule);
            block.lines.extend(lead.lines().map(str::to_owned));
            self.rule(tool, rule, &mut block, &mut counters);
        }
        block
    }

    fn rule(
        &mut self,
        tool: &str,
        rule: &Node,
        block: &mut Block,
        counters: &mut Vec<(String, Span)>,
    ) {
        let Some(entries) = self.map(rule, "a rule", RULE_KEYS) else {
            return;
        };
        let get = |key: &str| {
            entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v)
        };
        let star = tool == "*";
        // A rule's place: its first key (the whole rule would underline to the next one).
        let at = entries.first().map_or_else(
            || rule.span.clone(),
            |(k, v)| k.span.start..v.span.end.max(k.span.end),
        );
        let rule = &Node {
            span: at,
            kind: Kind::Null,
        };
        let name = get("name").and_then(Node::as_str).map(str::to_owned);
        let action = get("action")
            .and_then(Node::as_str)
            .unwrap_or("evaluate")
            .to_owned();
        let on_deny = match (get("on_deny"), get("reason")) {
            (Some(a), Some(_)) => {
                self.error(
                    &a.span,
                    "a rule has both `on_deny` and `reason`: they say the same thing",
                );
                None
            }
            (Some(v), None) | (None, Some(v)) => match v.as_str() {
                Some(s) if !s.is_empty() => Some((s.to_owned(), v.span.clone())),
                Some(_) => None,
                None => {
                    self.error(
                        &v.span,
                        format!("a denial message must be a string, found {}", v.what()),
                    );
                    None
                }
            },
            (None, None) => None,
        };
        if let Some(n) = get("name") {
            if n.as_str().is_none() {
                self.error(
                    &n.span,
                    format!("`name` must be a string, found {}", n.what()),
                );
            }
        }
        if let Some(n) = &name {
            block.lines.push(format!("# rule {}", json(n)));
        } else if !(self.flavor == Flavor::PolicyLayer) {
            self.error(&rule.span, "a rule must have a `name`");
        }
        let message = on_deny
            .as_ref()
            .map(|(m, _)| m.clone())
            .unwrap_or_else(|| match &name {
                Some(n) => format!("Denied by rule \"{n}\""),
                None => "Denied by policy".to_owned(),
            });
        let conditions = get("conditions");
        let state = get("state");
        if let Some(rl) = get("rate_limit") {
            if conditions.is_some() || state.is_some() {
                self.error(&rl.span, "`rate_limit` cannot be combined with `conditions` or `state`; use separate rules or the full syntax");
                return;
            }
            if action == "deny" {
                self.error(&rl.span, "`rate_limit` cannot be used with `action: deny`");
                return;
            }
            let Some((max, window)) = self.rate_limit(rl) else {
                return;
            };
            let counter = format!("_rate_{window}");
            let message = on_deny.as_ref().map(|(m, _)| m.as_str());
            self.limit(
                tool, &counter, max, &window, None, message, &rl.span, block, counters,
            );
            return;
        }
        match action.as_str() {
            "deny" => {
                if conditions.is_some_and(|c| !matches!(&c.kind, Kind::Seq(v) if v.is_empty())) {
                    let span = conditions.map(|c| c.span.clone()).unwrap_or_default();
                    self.error(&span, "`action: deny` rules must not have conditions");
                    return;
                }
                block
                    .lines
                    .push(format!("deny always because {}", json(&message)));
            }
            "allow" if self.flavor == Flavor::PolicyLayer => {}
            "require_approval" if self.flavor == Flavor::PolicyLayer => {
                if star {
                    self.error(&rule.span, "an approval under \"*\": Warden asks per tool; repeat it in each tool's entry");
                    return;
                }
                block.lines.push("require approval".to_owned());
            }
            "evaluate" => self.evaluate(
                tool,
                rule,
                conditions,
                state,
                &message,
                on_deny.as_ref().map(|(_, s)| s),
                block,
                counters,
            ),
            other => {
                let span = get("action").map(|a| a.span.clone()).unwrap_or_default();
                let allowed = match self.flavor {
                    Flavor::Intercept => "\"evaluate\" or \"deny\"",
                    Flavor::PolicyLayer => {
                        "\"allow\", \"deny\", \"require_approval\" or \"evaluate\""
                    }
                };
                self.error(
                    &span,
                    format!("`action` must be {allowed}, found {other:?}"),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &mut self,
        tool: &str,
        rule: &Node,
        conditions: Option<&Node>,
        state: Option<&Node>,
        message: &str,
        on_deny_span: Option<&Span>,
        block: &mut Block,
        counters: &mut Vec<(String, Span)>,
    ) {
        let items: &[Node] = match conditions.map(|c| &c.kind) {
            Some(Kind::Seq(items)) if !items.is_empty() => items,
            Some(Kind::Seq(_)) | None | Some(Kind::Null) => {
                self.error(
                    &rule.span,
                    "`evaluate` rules must have at least one condition",
                );
                return;
            }
            Some(_) => {
                let c = conditions.map(|c| c.span.clone()).unwrap_or_default();
                self.error(&c, "`conditions` must be a list");
                return;
            }
        };
        let state = state.and_then(|s| self.state(s));
        let scope = if tool == "*" {
            "_global".to_owned()
        } else {
            tool.to_owned()
        };
        let mut args = Vec::new();
        let mut limit: Option<(u64, Span)> = None;
        for c in items {
            let Some(entries) = self.map(c, "a condition", CONDITION_KEYS) else {
                continue;
            };
            let get = |key: &str| {
                entries
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(key))
                    .map(|(_, v)| v)
            };
            let (Some(path), Some(op)) = (get("path"), get("op")) else {
                self.error(&c.span, "a condition needs `path`, `op` and `value`");
                continue;
            };
            let (Some(path_text), Some(op_text)) = (path.as_str(), op.as_str()) else {
                self.error(&c.span, "a condition's `path` and `op` must be strings");
                continue;
            };
            if !OPS.contains(&op_text) {
                self.error(
                    &op.span,
                    format!("unknown operator {op_text:?} (known: {})", OPS.join(", ")),
                );
                continue;
            }
            let value = get("value");
            if let Some(rest) = path_text.strip_prefix("state.") {
                // A limit: this rule's own counter, capped with lt/lte.
                let own = state
                    .as_ref()
                    .is_some_and(|s| rest == format!("{scope}.{}", s.counter));
                let bound = value.and_then(|v| match v.kind {
                    Kind::Int(i) => Some(i as f64),
                    Kind::Float(f) => Some(f),
                    _ => None,
                });
                match (own, op_text, bound) {
                    (true, "lte" | "lt", Some(n)) => {
                        let n = n.trunc() as i64 - i64::from(op_text == "lt");
                        if n < 1 {
                            self.error(
                                &c.span,
                                "this limit allows no call at all; write `action: deny` instead",
                            );
                            continue;
                        }
                        limit = Some((n as u64, c.span.clone()));
                    }
                    // Any other read of a counter, this tool's or another's: `counter.NAME`.
                    _ => {
                        let Some((owner, counter)) = rest.split_once('.') else {
                            self.error(
                                &path.span,
                                format!("a counter path is `state.<tool>.<counter>`, found {path_text:?}"),
                            );
                            continue;
                        };
                        let owner = if owner == "_global" { "all" } else { owner };
                        let name = format!("{owner}.{counter}");
                        self.reads.push((name.clone(), path.span.clone()));
                        let p = format!("counter.{}", counter_name(&name));
                        match self.compare(&p, op_text, value, &c.span) {
                            Some(text) => args.push(text),
                            None => continue,
                        }
                    }
                }
                continue;
            }
            if !path_text.starts_with("args.") {
                self.error(&path.span, format!("a condition path must start with \"args.\" or \"state.\", found {path_text:?}"));
                continue;
            }
            match self.condition(path_text, op_text, value, &c.span) {
                Some(text) => args.push(text),
                None => continue,
            }
        }
        let lost = std::mem::take(&mut self.lossy_lines);
        if !lost.is_empty() {
            // A guard that cannot be said whole fails closed: dropping a condition would
            // let through calls the rule refused.
            block.lines.extend(lost);
            block
                .lines
                .push("# LOSSY: so the rule refuses every call (fail closed)".to_owned());
            block
                .lines
                .push(format!("deny always because {}", json(message)));
        } else if !args.is_empty() {
            block.lines.push(format!(
                "require {} else {}",
                args.join(" and "),
                json(message)
            ));
        }
        match (limit, state) {
            (Some((max, span)), Some(s)) => {
                let (max, cost) = match s.cost {
                    Cost::Each(k) => (max / k, None),
                    Cost::Arg(path) => (max, Some(path)),
                };
                if max == 0 {
                    self.error(&span, "with this increment the limit allows no call at all");
                    return;
                }
                // The rule's message answers its limit too, as Intercept's did.
                let message = on_deny_span.map(|_| message);
                self.limit(
                    tool,
                    &s.counter,
                    max,
                    &s.window,
                    cost.as_deref(),
                    message,
                    &span,
                    block,
                    counters,
                );
            }
            (None, Some(s)) => {
                // Intercept never moves a counter without a cap on it (nothing to lose).
                let d = Diagnostic::new(s.span.clone(), format!("counter `{}` has no `lt`/`lte` condition on it, so Intercept never counted it; nothing to import", s.counter)).warning();
                self.problems.push(d);
                block.lines.push(format!(
                    "# counter {} (never counted by Intercept: no lt/lte on it)",
                    json(&s.counter)
                ));
            }
            (Some((_, span)), None) => {
                self.error(&span, "a condition on this rule's counter, but the rule has no `state` block defining it");
            }
            (None, None) => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn limit(
        &mut self,
        tool: &str,
        counter: &str,
        max: u64,
        window: &str,
        cost: Option<&str>,
        message: Option<&str>,
        span: &Span,
        block: &mut Block,
        counters: &mut Vec<(String, Span)>,
    ) {
        if let Some((_, first)) = counters.iter().find(|(c, _)| c == counter) {
            let line = self.lines.line_of(first.start);
            self.error(
                span,
                format!(
                    "counter `{counter}` is already defined by a rule of this tool (line {line})"
                ),
            );
            return;
        }
        counters.push((counter.to_owned(), span.clone()));
        self.counted = true;
        let owner = if tool == "*" { "all" } else { tool };
        let name: String = format!("{owner}.{counter}");
        self.defined.push(name.clone());
        let scope = match self.flavor {
            Flavor::Intercept => "global",
            Flavor::PolicyLayer => "per session",
        };
        // The hosted form's counter is the tool's default one (`TOOL_rate`), which
        // `compile --target policylayer` writes back as its `rate_limit`.
        let mut line = match self.flavor {
            Flavor::Intercept => format!(
                "limit {max} per {window} {scope} as {}",
                counter_name(&name)
            ),
            Flavor::PolicyLayer if tool == "*" => format!(
                "limit {max} per {window} {scope} as {}",
                counter_name(&name)
            ),
            Flavor::PolicyLayer => format!("limit {max} per {window} {scope}"),
        };
        if let Some(c) = cost {
            line.push_str(&format!(" cost {}", path(c)));
        }
        // Intercept gives a call's charges back when the server answers it with an error.
        if self.flavor == Flavor::Intercept {
            line.push_str(" refund on error");
        }
        if let Some(m) = message {
            line.push_str(&format!(" else {}", json(m)));
        }
        block.lines.push(line);
    }

    fn rate_limit(&mut self, v: &Node) -> Option<(u64, String)> {
        match &v.kind {
            Kind::Str(s) => {
                let Some((n, w)) = s.split_once('/') else {
                    self.error(
                        &v.span,
                        format!("`rate_limit` must be \"N/window\" (e.g. \"5/hour\"), found {s:?}"),
                    );
                    return None;
                };
                let max = n.parse::<u64>().ok().filter(|n| *n > 0);
                let Some(max) = max else {
                    self.error(
                        &v.span,
                        format!("the rate limit's count must be a positive integer, found {n:?}"),
                    );
                    return None;
                };
                if !["minute", "hour", "day"].contains(&w) {
                    self.error(
                        &v.span,
                        format!("the rate limit's window must be minute, hour or day, found {w:?}"),
                    );
                    return None;
                }
                Some((max, w.to_owned()))
            }
            // The hosted FAQ's block: `{max: 10, window: 60}` (seconds, or a unit name).
            Kind::Map(entries) if self.flavor == Flavor::PolicyLayer => {
                let get = |key: &str| {
                    entries
                        .iter()
                        .find(|(k, _)| k.as_str() == Some(key))
                        .map(|(_, v)| v)
                };
                let max = get("max").and_then(|m| match m.kind {
                    Kind::Int(i) if i > 0 => Some(i as u64),
                    _ => None,
                });
                let window = get("window").and_then(|w| match &w.kind {
                    Kind::Int(60) => Some("minute".to_owned()),
                    Kind::Int(3600) => Some("hour".to_owned()),
                    Kind::Int(86400) => Some("day".to_owned()),
                    Kind::Int(i) if *i > 0 => Some(format!("{i} seconds")),
                    Kind::Str(s) if ["minute", "hour", "day"].contains(&s.as_str()) => {
                        Some(s.clone())
                    }
                    _ => None,
                });
                match (max, window) {
                    (Some(m), Some(w)) => Some((m, w)),
                    _ => {
                        self.error(&v.span, "a `rate_limit` block needs `max` (a positive integer) and `window` (seconds, or minute / hour / day)");
                        None
                    }
                }
            }
            _ => {
                self.error(
                    &v.span,
                    format!("`rate_limit` must be \"N/window\", found {}", v.what()),
                );
                None
            }
        }
    }

    fn state(&mut self, v: &Node) -> Option<State> {
        let entries = self.map(v, "a `state` block", STATE_KEYS)?;
        let get = |key: &str| {
            entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v)
        };
        let counter = match get("counter").and_then(Node::as_str) {
            Some(c) if !c.is_empty() => c.to_owned(),
            _ => {
                self.error(&v.span, "`state` needs a `counter` name");
                return None;
            }
        };
        let window = match get("window").and_then(Node::as_str) {
            Some(w @ ("minute" | "hour" | "day")) => w.to_owned(),
            _ => {
                self.error(&v.span, "`state` needs a `window`: minute, hour or day");
                return None;
            }
        };
        let cost = match (get("increment_from"), get("increment")) {
            (Some(from), _) => match from.as_str() {
                Some(p) if p.starts_with("args.") => Cost::Arg(p.to_owned()),
                _ => {
                    self.error(
                        &from.span,
                        "`increment_from` must be an argument path starting with \"args.\"",
                    );
                    return None;
                }
            },
            (None, Some(inc)) => match inc.kind {
                // Intercept reads 0 as 1.
                Kind::Int(0) => Cost::Each(1),
                Kind::Int(i) if i > 0 => Cost::Each(i as u64),
                _ => {
                    let msg = format!(
                        "`increment` {}: only a positive whole number can be said exactly",
                        show(inc)
                    );
                    let span = inc.span.clone();
                    self.inexact(&span, msg, "use a positive integer");
                    return None;
                }
            },
            (None, None) => Cost::Each(1),
        };
        Some(State {
            counter,
            window,
            cost,
            span: v.span.clone(),
        })
    }

    /// One argument condition as `.pol`.
    fn condition(
        &mut self,
        path_text: &str,
        op: &str,
        value: Option<&Node>,
        span: &Span,
    ) -> Option<String> {
        self.compare(&path(path_text), op, value, span)
    }

    /// A comparison of the `.pol` path `p`.
    fn compare(&mut self, p: &str, op: &str, value: Option<&Node>, span: &Span) -> Option<String> {
        let need = |t: &mut Self, what: &str| {
            t.error(span, format!("operator {op:?} needs {what}"));
            None
        };
        let v = value.and_then(Node::json);
        Some(match (op, &v) {
            ("exists", Some(Value::Bool(true))) => format!("{p} exists"),
            ("exists", Some(Value::Bool(false))) => format!("{p} missing"),
            ("exists", _) => return need(self, "a boolean value"),
            ("in" | "not_in", Some(Value::Array(items))) if items.iter().all(is_scalar) => {
                let word = if op == "in" { "in" } else { "not in" };
                format!("{p} {word} {}", Value::Array(items.clone()))
            }
            ("in" | "not_in", _) => return need(self, "a list of plain values"),
            ("lt" | "lte" | "gt" | "gte", Some(Value::Number(n))) => {
                let sym = match op {
                    "lt" => "<",
                    "lte" => "<=",
                    "gt" => ">",
                    _ => ">=",
                };
                format!("{p} {sym} {n}")
            }
            ("lt" | "lte" | "gt" | "gte", _) => return need(self, "a numeric value"),
            ("regex", Some(Value::String(re))) => {
                if let Err(e) = regex::Regex::new(re) {
                    self.error(span, format!("invalid regex {re:?}: {e}"));
                    return None;
                }
                format!("{p} matches {}", json(re))
            }
            ("regex", _) => return need(self, "a string value"),
            ("eq" | "neq" | "contains", Some(v)) if is_scalar(v) => {
                let sym = match op {
                    "eq" => "==",
                    "neq" => "!=",
                    _ => "contains",
                };
                format!("{p} {sym} {v}")
            }
            ("eq" | "neq" | "contains", _) => {
                let msg = format!(
                    "operator {op:?} on a list or mapping value: Warden compares plain values only"
                );
                let at = value
                    .map(|v| v.span.clone())
                    .unwrap_or_else(|| span.clone());
                // With --lossy the rule fails closed (see `evaluate`).
                let line = self.inexact(&at, msg, "compare each field with its own condition")?;
                self.lossy_lines.push(line);
                return None;
            }
            _ => return need(self, "a value"),
        })
    }
}

struct State {
    counter: String,
    window: String,
    cost: Cost,
    span: Span,
}

enum Cost {
    /// A fixed increment: a cap of N with steps of k admits N / k calls.
    Each(u64),
    /// `increment_from`: the argument's value.
    Arg(String),
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn json(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

fn show(n: &Node) -> String {
    match n.json() {
        Some(v) => v.to_string(),
        None => n.what().to_owned(),
    }
}

/// `args.a.b` as `.pol` writes it: bare segments as they are, others (and numbers, which
/// Warden would read as list indexes where Intercept reads object keys) quoted.
fn path(p: &str) -> String {
    let rest = p.strip_prefix("args.").unwrap_or(p);
    let segs: Vec<String> = rest
        .split('.')
        .map(|s| {
            let bare = !s.is_empty()
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !s.chars().all(|c| c.is_ascii_digit());
            if bare { s.to_owned() } else { json(s) }
        })
        .collect();
    format!("args.{}", segs.join("."))
}

/// A counter name: bare when it can be, else a string.
fn counter_name(n: &str) -> String {
    if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        n.to_owned()
    } else {
        json(n)
    }
}

/// The last line holding a tool entry's content (its trailing comments belong inside it).
/// A collection's own end mark lies where the next entry starts, so leaves are used.
fn body_end_line(body: &Node, lines: &Lines) -> usize {
    fn last(n: &Node, lines: &Lines) -> usize {
        let own = lines.line_of(n.span.end.saturating_sub(1).max(n.span.start));
        match &n.kind {
            Kind::Map(entries) => entries
                .iter()
                .map(|(k, v)| last(k, lines).max(last(v, lines)))
                .max()
                .unwrap_or_else(|| lines.line_of(n.span.start)),
            Kind::Seq(items) => items
                .iter()
                .map(|i| last(i, lines))
                .max()
                .unwrap_or_else(|| lines.line_of(n.span.start)),
            _ => own,
        }
    }
    last(body, lines)
}
