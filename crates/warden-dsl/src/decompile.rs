//! [`Policy`] → canonical `.pol` text. `warden fmt` prints through this too, so
//! `decompile(compile(p)) == fmt(p)` (up to comments) holds by construction.
//!
//! Canonical layout: `version`, `default`, the per-kind defaults (`default allow …`, then
//! `default deny …`), `mode`, `lists`, `hide`, `hide resources`, `hide prompts`, `all tools`,
//! then tool entries, resource entries, prompt entries and server request entries, each in
//! document order, where consecutive entries with identical bodies share one block
//! (`allow a, b` when the body is empty); inside a block: `deny`, `require`, `limit`,
//! approval, `mode`.

use serde_json::Value;
use warden_policy::*;

use crate::ast::entry_word;
use crate::comments::{Anchor, Comments, entry_key};
use crate::lower::default_counter_for;

/// Prints `policy` as canonical `.pol`.
pub fn decompile(policy: &Policy) -> String {
    print(policy, &mut Comments::default())
}

pub(crate) fn print(policy: &Policy, comments: &mut Comments) -> String {
    let mut p = Printer {
        out: String::new(),
        comments,
    };
    p.policy(policy);
    p.finish()
}

struct Printer<'c> {
    out: String,
    comments: &'c mut Comments,
}

impl Printer<'_> {
    fn line(&mut self, indent: usize, anchor: Anchor, text: &str) {
        for c in self.comments.leading(&anchor) {
            self.out.push_str(&"  ".repeat(indent));
            self.out.push_str(&c);
            self.out.push('\n');
        }
        self.out.push_str(&"  ".repeat(indent));
        self.out.push_str(text);
        if let Some(c) = self.comments.trailing(&anchor) {
            self.out.push_str("  ");
            self.out.push_str(&c);
        }
        self.out.push('\n');
    }

    fn blank(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn finish(mut self) -> String {
        let rest = self.comments.remaining();
        if !rest.is_empty() {
            self.blank();
            for c in rest {
                self.out.push_str(&c);
                self.out.push('\n');
            }
        }
        self.out
    }

    fn policy(&mut self, p: &Policy) {
        self.line(
            0,
            Anchor::stmt("version"),
            &format!("version {}", version(&p.version)),
        );
        if let Some(d) = p.default {
            self.line(0, Anchor::stmt("default"), &format!("default {d}"));
        }
        if let Some(defaults) = &p.defaults {
            let of = |action: DefaultAction| -> Vec<&'static str> {
                Kind::ALL
                    .into_iter()
                    .filter(|k| kind_default(defaults, *k) == Some(action))
                    .map(Kind::section)
                    .collect()
            };
            let (allow, deny) = (of(DefaultAction::Allow), of(DefaultAction::Deny));
            if allow.is_empty() && deny.is_empty() {
                self.line(0, Anchor::stmt("defaults {}"), "defaults {}");
            }
            for (action, kinds, anchor) in [
                (DefaultAction::Allow, allow, "default allow …"),
                (DefaultAction::Deny, deny, "default deny …"),
            ] {
                if !kinds.is_empty() {
                    let text = format!("default {action} {}", kinds.join(", "));
                    self.line(0, Anchor::stmt(anchor), &text);
                }
            }
        }
        if let Some(m) = p.mode {
            self.line(0, Anchor::stmt("mode"), &format!("mode {m}"));
        }
        if let Some(l) = p.lists {
            self.line(0, Anchor::stmt("lists"), &format!("lists {l}"));
        }
        for (kind, list, head) in [
            (Kind::Tool, &p.hide, "hide"),
            (Kind::Resource, &p.hide_resources, "hide resources"),
            (Kind::Prompt, &p.hide_prompts, "hide prompts"),
        ] {
            if let Some(hide) = list {
                let names: Vec<String> = hide.iter().map(|n| entry_name(kind, n)).collect();
                self.line(
                    0,
                    Anchor::stmt(head),
                    &format!("{head} [{}]", names.join(", ")),
                );
            }
        }
        if let Some(all) = &p.all_tools {
            self.blank();
            let lines = rule_lines(&all.deny_if, &all.require, &all.limits, None);
            if lines.is_empty() {
                self.line(0, Anchor::stmt("all tools"), "all tools {}");
            } else {
                self.line(0, Anchor::stmt("all tools"), "all tools {");
                for (kind, i, text) in lines {
                    self.line(1, Anchor::item("all tools", kind, i), &text);
                }
                self.line(0, Anchor::end("all tools"), "}");
            }
        }
        for kind in [
            Kind::Tool,
            Kind::Resource,
            Kind::Prompt,
            Kind::ServerRequest,
        ] {
            if let Some(entries) = p.entries(kind) {
                self.entries(kind, entries);
            }
        }
    }

    /// One kind's entries: `tools {}` when there are none, else blocks in document order.
    fn entries(&mut self, kind: Kind, entries: &indexmap::IndexMap<String, ToolRule>) {
        if entries.is_empty() {
            let text = format!("{} {{}}", kind.section());
            let anchor = match kind {
                Kind::Resource => "resources {}",
                Kind::Prompt => "prompts {}",
                Kind::ServerRequest => "server_requests {}",
                _ => "tools {}",
            };
            self.blank();
            self.line(0, Anchor::stmt(anchor), &text);
            return;
        }
        let entries: Vec<(&String, &ToolRule)> = entries.iter().collect();
        let mut i = 0;
        let mut last_was_allow = false;
        while i < entries.len() {
            let (_, body) = entries[i];
            let mut j = i + 1;
            while j < entries.len() && entries[j].1 == body && groupable(kind, entries[i].0, body) {
                j += 1;
            }
            let group: Vec<&str> = entries[i..j].iter().map(|(k, _)| k.as_str()).collect();
            let is_allow = *body == ToolRule::default();
            if !(is_allow && last_was_allow) {
                self.blank();
            }
            self.entry(kind, &group, body);
            last_was_allow = is_allow;
            i = j;
        }
    }

    fn entry(&mut self, kind: Kind, names: &[&str], body: &ToolRule) {
        let anchor_name = entry_key(kind, names.first().copied().unwrap_or(""));
        for other in names.iter().skip(1) {
            self.comments
                .merge_into(&entry_key(kind, other), &anchor_name);
        }
        let list: Vec<String> = names.iter().map(|n| entry_name(kind, n)).collect();
        let word = entry_word(kind);
        if *body == ToolRule::default() {
            let allow = match kind {
                Kind::Tool => "allow".to_owned(),
                _ => format!("allow {word}"),
            };
            self.line(
                0,
                Anchor::tool(&anchor_name),
                &format!("{allow} {}", list.join(", ")),
            );
            return;
        }
        self.line(
            0,
            Anchor::tool(&anchor_name),
            &format!("{word} {} {{", list.join(", ")),
        );
        let single = names.first().filter(|_| names.len() == 1);
        let default = single.map(|n| default_counter_for(kind, n));
        let mut lines = rule_lines(
            &body.deny_if,
            &body.require,
            &body.limits,
            default.as_deref(),
        );
        if let Some(a) = &body.approval {
            let mut text = "require approval".to_owned();
            match a.via {
                Some(ApprovalVia::Queue) => text.push_str(" via queue"),
                Some(ApprovalVia::Client) => text.push_str(" via client"),
                Some(ApprovalVia::ClientOrQueue) => text.push_str(" via client or queue"),
                None => {}
            }
            if let Some(t) = a.timeout {
                text.push_str(&format!(" timeout {t} seconds"));
            }
            if let Some(o) = a.on_timeout {
                text.push_str(&format!(" on timeout {o}"));
            }
            if !a.redact.is_empty() {
                let paths: Vec<String> = a.redact.iter().map(|p| path(p)).collect();
                text.push_str(&format!(" redact {}", paths.join(", ")));
            }
            lines.push(("approval", 0, text));
        }
        if let Some(m) = body.mode {
            lines.push(("mode", 0, format!("mode {m}")));
        }
        for (line_kind, i, text) in lines {
            self.line(1, Anchor::item(&anchor_name, line_kind, i), &text);
        }
        self.line(0, Anchor::end(&anchor_name), "}");
    }
}

/// One kind's own default in `defaults`.
fn kind_default(d: &Defaults, kind: Kind) -> Option<DefaultAction> {
    match kind {
        Kind::Tool => d.tools,
        Kind::Resource => d.resources,
        Kind::Prompt => d.prompts,
        Kind::Method => d.methods,
        Kind::ServerRequest => d.server_requests,
    }
}

/// Entries share a block only when the shared text means the same for each name: a limit
/// without `as` would name a different counter per entry.
fn groupable(kind: Kind, first: &str, body: &ToolRule) -> bool {
    let own = default_counter_for(kind, first);
    body.limits.iter().flatten().all(|l| l.counter != own)
}

fn version(v: &str) -> String {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) {
        v.to_owned()
    } else {
        string(v)
    }
}

fn string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn is_bare(s: &str, extra: &[char]) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

/// A block's `deny`, `require` and `limit` lines in canonical order, each with its kind and
/// ordinal (the anchors comments are kept by): a tool's block and `all tools` alike.
fn rule_lines(
    deny_if: &Option<Vec<Rule>>,
    require: &Option<Vec<Rule>>,
    limits: &Option<Vec<Limit>>,
    default: Option<&str>,
) -> Vec<(&'static str, usize, String)> {
    let mut lines = Vec::new();
    for (kind, none, rules) in [
        ("deny", "no_deny", deny_if),
        ("require", "no_require", require),
    ] {
        match rules {
            Some(rules) if rules.is_empty() => {
                let empty = if kind == "deny" {
                    "deny if []"
                } else {
                    "require []"
                };
                lines.push((none, 0, empty.to_owned()));
            }
            Some(rules) => lines.extend(
                rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (kind, i, rule(kind, r))),
            ),
            None => {}
        }
    }
    match limits {
        Some(limits) if limits.is_empty() => lines.push(("no_limits", 0, "limits []".to_owned())),
        Some(limits) => lines.extend(
            limits
                .iter()
                .enumerate()
                .map(|(i, l)| ("limit", i, limit(l, default))),
        ),
        None => {}
    }
    lines
}

/// Words that begin an entry of another kind after `allow`: a tool so named is printed
/// quoted, so that `allow "resource"` does not read as the start of `allow resource "uri"`.
const ENTRY_WORDS: &[&str] = &["resource", "prompt", "server_request"];

/// Every keyword of the language, as `grammar/warden.pest` lists them.
const KEYWORDS: &[&str] = &[
    "version",
    "default",
    "defaults",
    "allow",
    "deny",
    "mode",
    "enforce",
    "shadow",
    "lists",
    "callable",
    "hide",
    "all",
    "tools",
    "tool",
    "resources",
    "resource",
    "prompts",
    "prompt",
    "methods",
    "server_requests",
    "server_request",
    "if",
    "always",
    "because",
    "require",
    "else",
    "approval",
    "timeout",
    "seconds",
    "on",
    "limits",
    "and",
    "exists",
    "missing",
    "not",
    "in",
    "matches",
    "contains",
    "limit",
    "per",
    "minute",
    "hour",
    "day",
    "grant",
    "session",
    "ip",
    "global",
    "claim",
    "as",
    "cost",
    "via",
    "refund",
    "error",
    "client",
    "or",
    "queue",
    "redact",
    "true",
    "false",
    "null",
];

/// A tool name as `.pol` writes it: bare when it can be, quoted otherwise.
pub fn tool_name(n: &str) -> String {
    if is_bare(n, &['.', '*', '?']) && !ENTRY_WORDS.contains(&n) {
        n.to_owned()
    } else {
        string(n)
    }
}

/// A name of an entry of `kind` as `.pol` writes it. Resource, prompt and server request
/// names that are keywords are quoted: `allow prompt default` would read as a tool named
/// `prompt` followed by a `default` statement.
pub fn entry_name(kind: Kind, n: &str) -> String {
    match kind {
        Kind::Tool => tool_name(n),
        _ if is_bare(n, &['.', '*', '?']) && !KEYWORDS.contains(&n) => n.to_owned(),
        _ => string(n),
    }
}

fn path(p: &str) -> String {
    let Some((root, rest)) = ["args", "caller", "counter"]
        .into_iter()
        .find_map(|root| Some((root, p.strip_prefix(root)?.strip_prefix('.')?)))
    else {
        return string(p);
    };
    let segs: Vec<String> = rest
        .split('.')
        .map(|s| {
            if is_bare(s, &['$']) {
                s.to_owned()
            } else {
                string(s)
            }
        })
        .collect();
    format!("{root}.{}", segs.join("."))
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => string(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn condition(c: &Condition) -> String {
    let p = path(&c.path);
    let v = &c.value;
    match c.op {
        Op::Exists if *v == Value::Bool(false) => format!("{p} missing"),
        Op::Exists => format!("{p} exists"),
        Op::Eq => format!("{p} == {}", scalar(v)),
        Op::Neq => format!("{p} != {}", scalar(v)),
        Op::Lt => format!("{p} < {}", scalar(v)),
        Op::Lte => format!("{p} <= {}", scalar(v)),
        Op::Gt => format!("{p} > {}", scalar(v)),
        Op::Gte => format!("{p} >= {}", scalar(v)),
        Op::In => format!("{p} in {}", scalar(v)),
        Op::NotIn => format!("{p} not in {}", scalar(v)),
        Op::Contains => format!("{p} contains {}", scalar(v)),
        Op::Regex => match v.as_str() {
            Some(re) if !re.is_empty() && !re.contains(['/', '\n']) => {
                format!("{p} matches /{re}/")
            }
            _ => format!("{p} matches {}", scalar(v)),
        },
    }
}

fn rule(kind: &str, r: &Rule) -> String {
    let conds = if r.conditions.is_empty() {
        "always".to_owned()
    } else {
        r.conditions
            .iter()
            .map(condition)
            .collect::<Vec<_>>()
            .join(" and ")
    };
    let head = if kind == "deny" && !r.conditions.is_empty() {
        format!("deny if {conds}")
    } else {
        format!("{kind} {conds}")
    };
    match (&r.on_deny, kind) {
        (Some(m), "deny") => format!("{head} because {}", string(m)),
        (Some(m), _) => format!("{head} else {}", string(m)),
        (None, _) => head,
    }
}

fn limit(l: &Limit, default: Option<&str>) -> String {
    let window = match l.window {
        Window::Seconds(s) => format!("{s} seconds"),
        w => w.to_string(),
    };
    let mut text = format!("limit {} per {window}", l.max);
    match (l.scope, &l.claim) {
        (Some(Scope::Global), _) => text.push_str(" global"),
        (Some(Scope::Claim), Some(claim)) => text.push_str(&format!(" per claim {claim}")),
        (Some(s), _) => text.push_str(&format!(" per {s}")),
        (None, _) => {}
    }
    if default != Some(l.counter.as_str()) {
        let name = if is_bare(&l.counter, &['$']) {
            l.counter.clone()
        } else {
            string(&l.counter)
        };
        text.push_str(&format!(" as {name}"));
    }
    if let Some(c) = &l.cost {
        text.push_str(&format!(" cost {}", path(c)));
    }
    if l.refund_on_error {
        text.push_str(" refund on error");
    }
    if let Some(m) = &l.on_deny {
        text.push_str(&format!(" else {}", string(m)));
    }
    text
}
