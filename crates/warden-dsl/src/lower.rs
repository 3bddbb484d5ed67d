//! [`ast::File`] → [`Policy`], recording where each JSON Pointer came from so that
//! validation problems (found on the model, shared with policy.json) point into `.pol`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use indexmap::IndexMap;
use warden_policy::pointer::{child, index};
use warden_policy::*;

use crate::ast::*;
use crate::diagnostic::Diagnostic;

/// JSON Pointer → the `.pol` span it was written at.
///
/// Built on first use by lowering the AST again while recording: most compiles are never
/// asked for a span, and recording one string per pointer would double the cost of lowering.
#[derive(Debug, Clone)]
pub struct SourceMap {
    file: Arc<File>,
    spans: Arc<OnceLock<HashMap<String, Span>>>,
}

impl SourceMap {
    /// The syntax tree the policy was lowered from.
    pub(crate) fn ast(&self) -> &File {
        &self.file
    }

    /// The span of `pointer`, or of its nearest recorded ancestor.
    pub fn span(&self, pointer: &str) -> Option<Span> {
        let spans = self.spans.get_or_init(|| {
            let mut l = Lowerer {
                map: Recorder(Some(HashMap::new())),
                ..Lowerer::default()
            };
            l.file(&self.file);
            l.map.0.unwrap_or_default()
        });
        let mut p = pointer;
        loop {
            if let Some(s) = spans.get(p) {
                return Some(s.clone());
            }
            p = &p[..p.rfind('/')?];
        }
    }
}

/// Records pointer → span while building a [`SourceMap`]; does nothing otherwise.
#[derive(Default)]
struct Recorder(Option<HashMap<String, Span>>);

impl Recorder {
    fn set(&mut self, pointer: impl FnOnce() -> String, span: &Span) {
        if let Some(spans) = &mut self.0 {
            spans.entry(pointer()).or_insert_with(|| span.clone());
        }
    }
}

/// The default counter name of a limit written without `as` in a tool block.
pub fn default_counter(tool: &str) -> String {
    format!("{tool}_rate")
}

/// The default counter name of a limit written without `as` in an entry of `kind`: a tool's
/// is `NAME_rate`; the other kinds' say their kind (`prompt:summarize_rate`), so that a
/// prompt and a tool of the same name do not share a bucket by accident.
pub fn default_counter_for(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Tool => default_counter(name),
        other => format!("{}:{name}_rate", crate::ast::entry_word(other)),
    }
}

pub fn lower(file: File, text: &str) -> Result<(Policy, SourceMap), Vec<Diagnostic>> {
    let mut l = Lowerer {
        text: text.to_owned(),
        ..Lowerer::default()
    };
    l.file(&file);
    if l.errors.is_empty() {
        let map = SourceMap {
            file: Arc::new(file),
            spans: Arc::default(),
        };
        Ok((l.policy, map))
    } else {
        Err(l.errors)
    }
}

struct Lowerer {
    policy: Policy,
    map: Recorder,
    errors: Vec<Diagnostic>,
    /// Statement kind → span of its first occurrence.
    seen: HashMap<&'static str, Span>,
    /// Kind → name → span of the entry's name.
    entry_spans: HashMap<Kind, HashMap<String, Span>>,
    /// Kind → span of the word that first set its own default.
    default_spans: HashMap<Kind, Span>,
    text: String,
}

impl Default for Lowerer {
    fn default() -> Self {
        Lowerer {
            policy: Policy {
                version: "1".into(),
                default: None,
                mode: None,
                hide: None,
                all_tools: None,
                tools: None,
                defaults: None,
                lists: None,
                hide_resources: None,
                hide_prompts: None,
                resources: None,
                prompts: None,
                server_requests: None,
            },
            map: Recorder::default(),
            errors: Vec::new(),
            seen: HashMap::new(),
            entry_spans: HashMap::new(),
            default_spans: HashMap::new(),
            text: String::new(),
        }
    }
}

impl Lowerer {
    fn at(&self, span: &Span) -> String {
        let (line, col) = locate::line_col(&self.text, span.start);
        format!("line {line}, column {col}")
    }

    fn once(&mut self, what: &'static str, span: &Span) -> bool {
        if let Some(first) = self.seen.get(what) {
            let first = first.clone();
            self.errors.push(
                Diagnostic::new(span.clone(), format!("`{what}` is already set"))
                    .with_help(format!("a policy has one `{what}` statement; the first is at {}; remove one of them", self.at(&first))),
            );
            return false;
        }
        self.seen.insert(what, span.clone());
        true
    }

    fn file(&mut self, file: &File) {
        for item in &file.items {
            let kind = item.kind.describe();
            match &item.kind {
                ItemKind::Version(v) => {
                    if self.once(kind, &item.span) {
                        self.policy.version = v.node.clone();
                        self.map.set(|| "/version".into(), &v.span);
                    }
                }
                ItemKind::Default { action, kinds } if kinds.is_empty() => {
                    if self.once(kind, &item.span) {
                        self.policy.default = Some(action.node);
                        self.map.set(|| "/default".into(), &action.span);
                    }
                }
                ItemKind::Default { action, kinds } => {
                    self.map.set(|| "/defaults".into(), &item.span);
                    for k in kinds {
                        self.kind_default(action, k);
                    }
                }
                ItemKind::Mode(m) => {
                    if self.once(kind, &item.span) {
                        self.policy.mode = Some(m.node);
                        self.map.set(|| "/mode".into(), &m.span);
                    }
                }
                ItemKind::Lists(l) => {
                    if self.once(kind, &item.span) {
                        self.policy.lists = Some(l.node);
                        self.map.set(|| "/lists".into(), &l.span);
                    }
                }
                ItemKind::Hide { kind: of, names } => {
                    if self.once(kind, &item.span) {
                        let key = match of {
                            Kind::Resource => "/hide_resources",
                            Kind::Prompt => "/hide_prompts",
                            _ => "/hide",
                        };
                        self.map.set(|| key.into(), &item.span);
                        for (i, n) in names.iter().enumerate() {
                            self.map.set(|| index(key, i), &n.span);
                        }
                        let list = Some(names.iter().map(|n| n.node.clone()).collect());
                        match of {
                            Kind::Resource => self.policy.hide_resources = list,
                            Kind::Prompt => self.policy.hide_prompts = list,
                            _ => self.policy.hide = list,
                        }
                    }
                }
                ItemKind::AllTools(body) => {
                    if self.once(kind, &item.span) {
                        self.map.set(|| "/all_tools".into(), &item.span);
                        let mut limits: Option<Vec<Limit>> = None;
                        let mut require: Option<Vec<Rule>> = None;
                        let mut deny_if: Option<Vec<Rule>> = None;
                        for b in body {
                            match &b.kind {
                                BlockKind::Deny {
                                    conditions,
                                    message,
                                } => {
                                    let list = deny_if.get_or_insert_with(Vec::new);
                                    let at = index("/all_tools/deny_if", list.len());
                                    list.push(self.rule(conditions, message, &at, &b.span));
                                }
                                BlockKind::Require {
                                    conditions,
                                    message,
                                } => {
                                    let list = require.get_or_insert_with(Vec::new);
                                    let at = index("/all_tools/require", list.len());
                                    list.push(self.rule(conditions, message, &at, &b.span));
                                }
                                BlockKind::NoRequire => {
                                    self.empty_list(&mut require, &b.span, "require")
                                }
                                BlockKind::NoDeny => {
                                    self.empty_list(&mut deny_if, &b.span, "deny if")
                                }
                                BlockKind::Limit(l) => {
                                    let list = limits.get_or_insert_with(Vec::new);
                                    let at = index("/all_tools/limits", list.len());
                                    let counter = || default_counter("all_tools");
                                    list.push(self.limit(l, &at, counter, &b.span));
                                }
                                BlockKind::NoLimits => {
                                    self.empty_list(&mut limits, &b.span, "limits")
                                }
                                _ => {}
                            }
                        }
                        self.policy.all_tools = Some(AllTools {
                            require,
                            deny_if,
                            limits,
                        });
                    }
                }
                ItemKind::Empty(table) => {
                    if self.once(kind, &item.span) {
                        self.map.set(|| format!("/{}", table.word()), &item.span);
                        match table {
                            Table::Defaults => {
                                self.policy.defaults.get_or_insert_with(Defaults::default);
                            }
                            Table::Entries(of) => {
                                if let Some(entries) = self.entries_mut(*of) {
                                    entries.get_or_insert_with(IndexMap::new);
                                }
                            }
                        }
                    }
                }
                ItemKind::Allow { kind: of, names } => {
                    // Up to the last name, not the blanks pest's span runs on over.
                    let end = names.last().map_or(item.span.end, |n| n.span.end);
                    self.section(*of, &(item.span.start..end));
                    for n in names {
                        self.entry(*of, n, &[]);
                    }
                }
                ItemKind::Entry {
                    kind: of,
                    names,
                    body,
                } => {
                    self.section(*of, &item.span);
                    for n in names {
                        self.entry(*of, n, body);
                    }
                }
            }
        }
    }

    /// Where a kind's section (`/resources`) is first written, for problems with the whole
    /// section (the hosted format has none). Tools are left as they were: no problem names
    /// `/tools` alone.
    fn section(&mut self, kind: Kind, span: &Span) {
        if kind != Kind::Tool {
            self.map.set(|| format!("/{}", kind.section()), span);
        }
    }

    /// `default allow resources`: one kind's own default, set once.
    fn kind_default(&mut self, action: &Spanned<DefaultAction>, k: &Spanned<Kind>) {
        if let Some(first) = self.default_spans.get(&k.node) {
            let first = first.clone();
            self.errors.push(
                Diagnostic::new(
                    k.span.clone(),
                    format!("the default for {} is already set", k.node.section()),
                )
                .with_help(format!(
                    "a kind has one default; the first is at {}; remove one of them",
                    self.at(&first)
                )),
            );
            return;
        }
        self.default_spans.insert(k.node, k.span.clone());
        let at = child("/defaults", k.node.section());
        self.map.set(|| at, &k.span);
        let d = self.policy.defaults.get_or_insert_with(Defaults::default);
        let slot = match k.node {
            Kind::Tool => &mut d.tools,
            Kind::Resource => &mut d.resources,
            Kind::Prompt => &mut d.prompts,
            Kind::Method => &mut d.methods,
            Kind::ServerRequest => &mut d.server_requests,
        };
        *slot = Some(action.node);
    }

    fn entries_mut(&mut self, kind: Kind) -> Option<&mut Option<IndexMap<String, ToolRule>>> {
        match kind {
            Kind::Tool => Some(&mut self.policy.tools),
            Kind::Resource => Some(&mut self.policy.resources),
            Kind::Prompt => Some(&mut self.policy.prompts),
            Kind::ServerRequest => Some(&mut self.policy.server_requests),
            Kind::Method => None,
        }
    }

    fn empty_list<T>(&mut self, list: &mut Option<Vec<T>>, span: &Span, what: &str) {
        if list.is_some() {
            self.errors.push(
                Diagnostic::new(
                    span.clone(),
                    format!("`{what} []` in a block that already has {what}"),
                )
                .with_help(format!(
                    "`{what} []` only spells out an empty list; remove it"
                )),
            );
        } else {
            *list = Some(Vec::new());
        }
    }

    fn entry(&mut self, kind: Kind, name: &Spanned<String>, body: &[BlockItem]) {
        let noun = kind.noun();
        let seen = self.entry_spans.entry(kind).or_default();
        if let Some(first) = seen.get(&name.node) {
            let first = first.clone();
            self.errors.push(
                Diagnostic::new(
                    name.span.clone(),
                    format!("{noun} `{}` already has an entry", name.node),
                )
                .with_help(format!(
                    "put everything about `{}` in one block (the first is at {})",
                    name.node,
                    self.at(&first)
                )),
            );
            return;
        }
        seen.insert(name.node.clone(), name.span.clone());
        let at = child(&format!("/{}", kind.section()), &name.node);
        self.map.set(|| at.clone(), &name.span);
        let mut rule = ToolRule::default();
        for b in body {
            match &b.kind {
                BlockKind::Deny {
                    conditions,
                    message,
                } => {
                    let list = rule.deny_if.get_or_insert_with(Vec::new);
                    let rule_at = index(&child(&at, "deny_if"), list.len());
                    list.push(self.rule(conditions, message, &rule_at, &b.span));
                }
                BlockKind::Require {
                    conditions,
                    message,
                } => {
                    let list = rule.require.get_or_insert_with(Vec::new);
                    let rule_at = index(&child(&at, "require"), list.len());
                    list.push(self.rule(conditions, message, &rule_at, &b.span));
                }
                BlockKind::Limit(l) => {
                    let list = rule.limits.get_or_insert_with(Vec::new);
                    let limit_at = index(&child(&at, "limits"), list.len());
                    let counter = || default_counter_for(kind, &name.node);
                    list.push(self.limit(l, &limit_at, counter, &b.span));
                }
                BlockKind::Approval {
                    via,
                    timeout,
                    on_timeout,
                    redact,
                } => {
                    if rule.approval.is_some() {
                        self.errors.push(Diagnostic::new(
                            b.span.clone(),
                            format!("this {noun} already requires approval"),
                        ));
                        continue;
                    }
                    self.map.set(|| child(&at, "approval"), &b.span);
                    if let Some(t) = timeout {
                        self.map
                            .set(|| child(&child(&at, "approval"), "timeout"), &t.span);
                    }
                    let on_timeout = on_timeout.as_ref().map(|a| match a.node {
                        DefaultAction::Allow => OnTimeout::Allow,
                        DefaultAction::Deny => OnTimeout::Deny,
                    });
                    if let Some(v) = via {
                        self.map
                            .set(|| child(&child(&at, "approval"), "via"), &v.span);
                    }
                    for (i, path) in redact.iter().enumerate() {
                        self.map.set(
                            || index(&child(&child(&at, "approval"), "redact"), i),
                            &path.span,
                        );
                    }
                    rule.approval = Some(Approval {
                        timeout: timeout.as_ref().map(|t| t.node),
                        on_timeout,
                        via: via.as_ref().map(|v| v.node),
                        redact: redact.iter().map(|p| p.node.clone()).collect(),
                    });
                }
                BlockKind::Mode(m) => {
                    if rule.mode.is_some() {
                        self.errors.push(Diagnostic::new(
                            b.span.clone(),
                            format!("this {noun}'s mode is already set"),
                        ));
                        continue;
                    }
                    self.map.set(|| child(&at, "mode"), &m.span);
                    rule.mode = Some(m.node);
                }
                BlockKind::NoLimits => self.empty_list(&mut rule.limits, &b.span, "limits"),
                BlockKind::NoRequire => self.empty_list(&mut rule.require, &b.span, "require"),
                BlockKind::NoDeny => self.empty_list(&mut rule.deny_if, &b.span, "deny if"),
            }
        }
        if let Some(entries) = self.entries_mut(kind) {
            entries
                .get_or_insert_with(IndexMap::new)
                .insert(name.node.clone(), rule);
        }
    }

    fn rule(
        &mut self,
        conditions: &Option<Vec<Cond>>,
        message: &Option<Spanned<String>>,
        at: &str,
        span: &Span,
    ) -> Rule {
        self.map.set(|| at.to_owned(), span);
        let conditions = conditions.as_deref().unwrap_or(&[]);
        for (i, c) in conditions.iter().enumerate() {
            let c_at = index(&child(at, "conditions"), i);
            self.map.set(|| c_at.clone(), &c.span);
            self.map.set(|| child(&c_at, "path"), &c.path.span);
            self.map.set(|| child(&c_at, "op"), &c.op.span);
            self.map.set(|| child(&c_at, "value"), &c.value.span);
        }
        if let Some(m) = message {
            self.map.set(|| child(at, "on_deny"), &m.span);
        }
        Rule {
            conditions: conditions
                .iter()
                .map(|c| Condition {
                    path: c.path.node.clone(),
                    op: c.op.node,
                    value: c.value.node.clone(),
                })
                .collect(),
            on_deny: message.as_ref().map(|m| m.node.clone()),
        }
    }

    fn limit(
        &mut self,
        l: &LimitAst,
        at: &str,
        default: impl FnOnce() -> String,
        span: &Span,
    ) -> Limit {
        self.map.set(|| at.to_owned(), span);
        self.map.set(|| child(at, "max"), &l.max.span);
        self.map.set(|| child(at, "window"), &l.window.span);
        if let Some(s) = &l.scope {
            self.map.set(|| child(at, "scope"), &s.span);
        }
        match &l.counter {
            Some(c) => self.map.set(|| child(at, "counter"), &c.span),
            None => self.map.set(|| child(at, "counter"), span),
        }
        if let Some(c) = &l.cost {
            self.map.set(|| child(at, "cost"), &c.span);
        }
        if let Some(c) = &l.claim {
            self.map.set(|| child(at, "claim"), &c.span);
        }
        Limit {
            counter: l
                .counter
                .as_ref()
                .map(|c| c.node.clone())
                .unwrap_or_else(default),
            window: l.window.node,
            max: l.max.node,
            scope: l.scope.as_ref().map(|s| s.node),
            cost: l.cost.as_ref().map(|c| c.node.clone()),
            claim: l.claim.as_ref().map(|c| c.node.clone()),
            on_deny: l.message.as_ref().map(|m| m.node.clone()),
            refund_on_error: l.refund.is_some(),
        }
    }
}
