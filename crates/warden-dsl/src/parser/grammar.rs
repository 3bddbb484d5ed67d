//! The pest parser generated from `grammar/warden.pest`: the specification of `.pol`, and
//! the source of every syntax diagnostic. It turns pest's pairs into the AST and its errors
//! into messages that speak the language, not the grammar.

use pest::Parser as _;
use pest::iterators::Pair;
use serde_json::Value;
use warden_policy::{
    ApprovalVia, DefaultAction, Kind, Lists, Mode, Op, Scope, Window, did_you_mean,
};

use super::literal;
use crate::ast::*;
use crate::diagnostic::Diagnostic;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/warden.pest"]
struct PolParser;

pub fn parse(text: &str) -> Result<File, Vec<Diagnostic>> {
    let mut pairs = PolParser::parse(Rule::file, text).map_err(|e| vec![syntax_error(text, e)])?;
    let mut b = Builder { errors: Vec::new() };
    let mut items = Vec::new();
    if let Some(file) = pairs.next() {
        for pair in file.into_inner() {
            if pair.as_rule() == Rule::EOI {
                continue;
            }
            if let Some(item) = b.item(pair) {
                items.push(item);
            }
        }
    }
    if b.errors.is_empty() {
        Ok(File { items })
    } else {
        Err(b.errors)
    }
}

struct Builder {
    errors: Vec<Diagnostic>,
}

fn span(p: &Pair<'_, Rule>) -> Span {
    p.as_span().start()..p.as_span().end()
}

fn spanned<T>(p: &Pair<'_, Rule>, node: T) -> Spanned<T> {
    Spanned {
        node,
        span: span(p),
    }
}

/// The inner pairs of a rule, keywords left out.
fn inner<'a>(p: Pair<'a, Rule>) -> impl Iterator<Item = Pair<'a, Rule>> {
    p.into_inner()
        .filter(|c| !is_keyword(c.as_rule()) || matches!(c.as_rule(), Rule::kw_always))
}

impl Builder {
    fn item(&mut self, p: Pair<'_, Rule>) -> Option<Item> {
        let sp = span(&p);
        let kind = match p.as_rule() {
            Rule::version => {
                let v = inner(p).next()?;
                let text = if v.as_rule() == Rule::string {
                    self.string(&v)?
                } else {
                    v.as_str().to_owned()
                };
                ItemKind::Version(spanned(&v, text))
            }
            Rule::default => {
                let mut parts = inner(p);
                let action = action(parts.next()?);
                let kinds: Vec<Spanned<Kind>> = parts
                    .flat_map(Pair::into_inner)
                    .filter_map(|k| {
                        Some(spanned(
                            &k,
                            kind_of(k.clone().into_inner().next()?.as_rule())?,
                        ))
                    })
                    .collect();
                // Up to the last word: pest's span runs on over the blanks before an absent
                // list of kinds.
                let end = kinds.last().map_or(action.span.end, |k| k.span.end);
                return Some(Item {
                    kind: ItemKind::Default { action, kinds },
                    span: sp.start..end,
                });
            }
            Rule::mode => ItemKind::Mode(mode_value(inner(p).next()?)),
            Rule::lists => {
                let v = inner(p).next()?;
                let value = if v.as_str() == "all" {
                    Lists::All
                } else {
                    Lists::Callable
                };
                ItemKind::Lists(spanned(&v, value))
            }
            Rule::hide => {
                let mut kind = Kind::Tool;
                let mut names = Vec::new();
                for c in inner(p) {
                    match c.as_rule() {
                        Rule::hide_kind => {
                            kind = kind_of(c.into_inner().next()?.as_rule())?;
                        }
                        _ => names = self.names(c.into_inner()),
                    }
                }
                ItemKind::Hide { kind, names }
            }
            Rule::all_tools => ItemKind::AllTools(self.block(inner(p))),
            Rule::tables_empty => {
                let word = inner(p).next()?.into_inner().next()?.as_rule();
                ItemKind::Empty(match word {
                    Rule::kw_defaults => Table::Defaults,
                    other => Table::Entries(kind_of(other)?),
                })
            }
            Rule::allow => ItemKind::Allow {
                kind: Kind::Tool,
                names: self.names(inner(p)),
            },
            Rule::allow_entry => {
                let mut parts = inner(p);
                let kind = kind_of(parts.next()?.into_inner().next()?.as_rule())?;
                ItemKind::Allow {
                    kind,
                    names: self.names(parts),
                }
            }
            Rule::tool | Rule::entry => {
                let mut kind = Kind::Tool;
                let mut names = Vec::new();
                let mut body = Vec::new();
                for c in inner(p) {
                    match c.as_rule() {
                        Rule::entry_kind => kind = kind_of(c.into_inner().next()?.as_rule())?,
                        Rule::tool_name => names.push(c),
                        _ => body.push(c),
                    }
                }
                ItemKind::Entry {
                    kind,
                    names: self.names(names.into_iter()),
                    body: self.block(body.into_iter()),
                }
            }
            _ => return None,
        };
        Some(Item { kind, span: sp })
    }

    fn names<'a>(&mut self, pairs: impl Iterator<Item = Pair<'a, Rule>>) -> Vec<Spanned<String>> {
        pairs
            .filter_map(|n| {
                let sp = span(&n);
                let first = n.into_inner().next()?;
                let text = if first.as_rule() == Rule::string {
                    self.string(&first)?
                } else {
                    first.as_str().to_owned()
                };
                Some(Spanned {
                    node: text,
                    span: sp,
                })
            })
            .collect()
    }

    fn block<'a>(&mut self, pairs: impl Iterator<Item = Pair<'a, Rule>>) -> Vec<BlockItem> {
        pairs.filter_map(|p| self.block_item(p)).collect()
    }

    fn block_item(&mut self, p: Pair<'_, Rule>) -> Option<BlockItem> {
        // Without the blanks an optional last part skipped over (diagnostics underline the
        // item itself).
        let sp = span(&p);
        let sp = sp.start..sp.start + p.as_str().trim_end().len();
        let kind = match p.as_rule() {
            Rule::deny_rule | Rule::require_rule => {
                let is_deny = p.as_rule() == Rule::deny_rule;
                let mut conditions = None;
                let mut message = None;
                for c in inner(p) {
                    match c.as_rule() {
                        Rule::kw_always => {}
                        Rule::conditions => {
                            conditions =
                                Some(c.into_inner().filter_map(|c| self.condition(c)).collect())
                        }
                        Rule::string => message = Some(spanned(&c, self.string(&c)?)),
                        _ => {}
                    }
                }
                if is_deny {
                    BlockKind::Deny {
                        conditions,
                        message,
                    }
                } else {
                    BlockKind::Require {
                        conditions,
                        message,
                    }
                }
            }
            Rule::approval => {
                let mut via = None;
                let mut timeout = None;
                let mut on_timeout = None;
                let mut redact = Vec::new();
                for c in inner(p) {
                    match c.as_rule() {
                        Rule::approval_via => {
                            let target = inner(c).find(|x| x.as_rule() == Rule::via_target)?;
                            let words: Vec<Pair<'_, Rule>> = target.into_inner().collect();
                            let node = match words.iter().map(Pair::as_rule).collect::<Vec<_>>()[..]
                            {
                                [Rule::kw_client] => ApprovalVia::Client,
                                [Rule::kw_client, ..] => ApprovalVia::ClientOrQueue,
                                _ => ApprovalVia::Queue,
                            };
                            // The words only, not the blanks read after them.
                            let (first, last) = (words.first()?, words.last()?);
                            via = Some(Spanned {
                                node,
                                span: first.as_span().start()..last.as_span().end(),
                            });
                        }
                        Rule::approval_timeout => {
                            let n = inner(c).next()?;
                            timeout = Some(spanned(&n, self.integer(&n)?));
                        }
                        Rule::on_timeout => on_timeout = Some(action(inner(c).next()?)),
                        Rule::redact => {
                            for path in inner(c).filter(|x| x.as_rule() == Rule::path) {
                                redact.push(spanned(&path, self.path(&path)?));
                            }
                        }
                        _ => {}
                    }
                }
                BlockKind::Approval {
                    via,
                    timeout,
                    on_timeout,
                    redact,
                }
            }
            Rule::limit => BlockKind::Limit(self.limit(p)?),
            Rule::mode => BlockKind::Mode(mode_value(inner(p).next()?)),
            Rule::no_limits => BlockKind::NoLimits,
            Rule::no_require => BlockKind::NoRequire,
            Rule::no_deny => BlockKind::NoDeny,
            _ => return None,
        };
        Some(BlockItem { kind, span: sp })
    }

    fn condition(&mut self, p: Pair<'_, Rule>) -> Option<Cond> {
        let sp = span(&p);
        let mut it = p.into_inner();
        let path_pair = it.next()?;
        let path = spanned(&path_pair, self.path(&path_pair)?);
        let test = it.next()?;
        let test_span = span(&test);
        let rule = test.as_rule();
        let mut parts = inner(test);
        let (op, value) = match rule {
            Rule::exists => (Op::Exists, spanned_at(test_span.clone(), Value::Bool(true))),
            Rule::missing => (
                Op::Exists,
                spanned_at(test_span.clone(), Value::Bool(false)),
            ),
            Rule::not_in | Rule::in_list => {
                let list = parts.next()?;
                let items: Option<Vec<Value>> =
                    list.clone().into_inner().map(|s| self.scalar(s)).collect();
                (
                    if rule == Rule::not_in {
                        Op::NotIn
                    } else {
                        Op::In
                    },
                    spanned(&list, Value::Array(items?)),
                )
            }
            Rule::matches => {
                let re = parts.next()?;
                let text = if re.as_rule() == Rule::string {
                    self.string(&re)?
                } else {
                    re.as_str().trim_matches('/').to_owned()
                };
                (Op::Regex, spanned(&re, Value::String(text)))
            }
            Rule::contains => {
                let v = parts.next()?;
                (Op::Contains, spanned(&v, self.scalar(v.clone())?))
            }
            Rule::compare => {
                let op = parts.next()?;
                let v = parts.next()?;
                let op = match op.as_str() {
                    "==" => Op::Eq,
                    "!=" => Op::Neq,
                    "<" => Op::Lt,
                    "<=" => Op::Lte,
                    ">" => Op::Gt,
                    _ => Op::Gte,
                };
                (op, spanned(&v, self.scalar(v.clone())?))
            }
            _ => return None,
        };
        Some(Cond {
            path,
            op: spanned_at(test_span, op),
            value,
            span: sp,
        })
    }

    fn limit(&mut self, p: Pair<'_, Rule>) -> Option<LimitAst> {
        let mut it = inner(p);
        let max_pair = it.next()?;
        let max = spanned(&max_pair, self.integer(&max_pair)?);
        let w = it.next()?;
        let window = match inner(w.clone()).next() {
            Some(n) if n.as_rule() == Rule::integer => Window::Seconds(self.integer(&n)?),
            _ => match w.as_str() {
                "minute" => Window::Minute,
                "hour" => Window::Hour,
                _ => Window::Day,
            },
        };
        let window = spanned(&w, window);
        let (mut scope, mut claim, mut counter, mut cost) = (None, None, None, None);
        let (mut message, mut refund) = (None, None);
        for c in it {
            match c.as_rule() {
                Rule::scope => {
                    let words: Vec<Pair<'_, Rule>> = c.clone().into_inner().collect();
                    let s = match words.last().map(|w| w.as_rule()) {
                        Some(Rule::kw_session) => Scope::Session,
                        Some(Rule::kw_ip) => Scope::Ip,
                        Some(Rule::kw_global) => Scope::Global,
                        Some(Rule::claim_name) => Scope::Claim,
                        _ => Scope::Grant,
                    };
                    if let Some(name) = words.iter().find(|w| w.as_rule() == Rule::claim_name) {
                        claim = Some(spanned(name, name.as_str().to_owned()));
                    }
                    scope = Some(spanned(&c, s));
                }
                Rule::counter => {
                    let first = c.clone().into_inner().next()?;
                    let text = if first.as_rule() == Rule::string {
                        self.string(&first)?
                    } else {
                        first.as_str().to_owned()
                    };
                    counter = Some(spanned(&c, text));
                }
                Rule::path => cost = Some(spanned(&c, self.path(&c)?)),
                Rule::string => message = Some(spanned(&c, self.string(&c)?)),
                Rule::refund => refund = Some(span(&c)),
                _ => {}
            }
        }
        Some(LimitAst {
            max,
            window,
            scope,
            claim,
            counter,
            cost,
            refund,
            message,
        })
    }

    fn path(&mut self, p: &Pair<'_, Rule>) -> Option<String> {
        let mut out = String::new();
        for seg in p.clone().into_inner() {
            if seg.as_rule() == Rule::path_root {
                out.push_str(seg.as_str());
                continue;
            }
            out.push('.');
            if seg.as_rule() == Rule::string {
                out.push_str(&self.string(&seg)?);
            } else {
                out.push_str(seg.as_str());
            }
        }
        Some(out)
    }

    fn scalar(&mut self, p: Pair<'_, Rule>) -> Option<Value> {
        let v = p.into_inner().next()?;
        match v.as_rule() {
            Rule::string => self.string(&v).map(Value::String),
            Rule::number => self.ok(literal::number(v.as_str(), span(&v))),
            Rule::kw_true => Some(Value::Bool(true)),
            Rule::kw_false => Some(Value::Bool(false)),
            _ => Some(Value::Null),
        }
    }

    fn string(&mut self, p: &Pair<'_, Rule>) -> Option<String> {
        self.ok(literal::string(p.as_str(), span(p)))
    }

    fn integer(&mut self, p: &Pair<'_, Rule>) -> Option<u64> {
        self.ok(literal::integer(p.as_str(), span(p)))
    }

    fn ok<T>(&mut self, r: Result<T, Diagnostic>) -> Option<T> {
        r.map_err(|d| self.errors.push(d)).ok()
    }
}

fn spanned_at<T>(span: Span, node: T) -> Spanned<T> {
    Spanned { node, span }
}

fn action(p: Pair<'_, Rule>) -> Spanned<DefaultAction> {
    let a = if p.as_str() == "allow" {
        DefaultAction::Allow
    } else {
        DefaultAction::Deny
    };
    spanned(&p, a)
}

/// The kind a keyword names, singular (`resource`) or plural (`resources`).
fn kind_of(r: Rule) -> Option<Kind> {
    Some(match r {
        Rule::kw_tools | Rule::kw_tool => Kind::Tool,
        Rule::kw_resources | Rule::kw_resource => Kind::Resource,
        Rule::kw_prompts | Rule::kw_prompt => Kind::Prompt,
        Rule::kw_methods => Kind::Method,
        Rule::kw_server_requests | Rule::kw_server_request => Kind::ServerRequest,
        _ => return None,
    })
}

fn mode_value(p: Pair<'_, Rule>) -> Spanned<Mode> {
    let m = if p.as_str() == "shadow" {
        Mode::Shadow
    } else {
        Mode::Enforce
    };
    spanned(&p, m)
}

fn is_keyword(r: Rule) -> bool {
    keyword_text(r).is_some()
}

/// The keyword a rule stands for, as written in `.pol`.
fn keyword_text(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::kw_version => "version",
        Rule::kw_default => "default",
        Rule::kw_allow => "allow",
        Rule::kw_deny => "deny",
        Rule::kw_mode => "mode",
        Rule::kw_enforce => "enforce",
        Rule::kw_shadow => "shadow",
        Rule::kw_hide => "hide",
        Rule::kw_all => "all",
        Rule::kw_tools => "tools",
        Rule::kw_tool => "tool",
        Rule::kw_resources => "resources",
        Rule::kw_resource => "resource",
        Rule::kw_prompts => "prompts",
        Rule::kw_prompt => "prompt",
        Rule::kw_methods => "methods",
        Rule::kw_server_requests => "server_requests",
        Rule::kw_server_request => "server_request",
        Rule::kw_defaults => "defaults",
        Rule::kw_lists => "lists",
        Rule::kw_callable => "callable",
        Rule::kw_if => "if",
        Rule::kw_always => "always",
        Rule::kw_because => "because",
        Rule::kw_require => "require",
        Rule::kw_else => "else",
        Rule::kw_approval => "approval",
        Rule::kw_timeout => "timeout",
        Rule::kw_seconds => "seconds",
        Rule::kw_on => "on",
        Rule::kw_limits => "limits",
        Rule::kw_and => "and",
        Rule::kw_exists => "exists",
        Rule::kw_missing => "missing",
        Rule::kw_not => "not",
        Rule::kw_in => "in",
        Rule::kw_matches => "matches",
        Rule::kw_contains => "contains",
        Rule::kw_limit => "limit",
        Rule::kw_per => "per",
        Rule::kw_minute => "minute",
        Rule::kw_hour => "hour",
        Rule::kw_day => "day",
        Rule::kw_grant => "grant",
        Rule::kw_session => "session",
        Rule::kw_ip => "ip",
        Rule::kw_global => "global",
        Rule::kw_claim => "claim",
        Rule::kw_as => "as",
        Rule::kw_cost => "cost",
        Rule::kw_redact => "redact",
        Rule::kw_via => "via",
        Rule::kw_refund => "refund",
        Rule::kw_error => "error",
        Rule::kw_client => "client",
        Rule::kw_or => "or",
        Rule::kw_queue => "queue",
        Rule::kw_true => "true",
        Rule::kw_false => "false",
        Rule::kw_null => "null",
        _ => return None,
    })
}

/// What a non-keyword rule is called in an "expected ..." message.
fn describe(r: Rule) -> Option<&'static str> {
    Some(match r {
        Rule::tool_name | Rule::bare_name => "a tool name",
        Rule::string => "a string in double quotes",
        Rule::integer => "a whole number",
        Rule::number => "a number",
        Rule::scalar => "a value (string, number, true, false or null)",
        Rule::list | Rule::name_list => "a list in [ ]",
        Rule::claim_name => "a claim name like team",
        Rule::path | Rule::path_seg | Rule::path_root => {
            "a path like args.region or caller.claims.team"
        }
        Rule::regex | Rule::regex_body => "a /regex/",
        Rule::cmp_op => "a comparison (==, !=, <, <=, >, >=)",
        Rule::counter => "a counter name",
        Rule::EOI => "end of file",
        _ => return None,
    })
}

fn syntax_error(text: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    let pos = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    if let Some(d) = super::mistakes::explain(text, pos) {
        return d;
    }
    let (positives, negatives) = match &e.variant {
        pest::error::ErrorVariant::ParsingError {
            positives,
            negatives,
        } => (positives.clone(), negatives.clone()),
        pest::error::ErrorVariant::CustomError { .. } => (Vec::new(), Vec::new()),
    };
    let word: String = text
        .get(pos..)
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let found = found_description(text, pos, &word);
    let before = text.get(..pos).unwrap_or("");
    let prev_word = before
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .rev()
        .find(|w| !w.is_empty())
        .unwrap_or("");
    // pest sometimes reports no expectation at all; the preceding word still tells.
    let positives = if positives.is_empty() && negatives.is_empty() {
        if prev_word == "per" && before.trim_end().ends_with("per") {
            expand(Rule::window)
        } else if before.trim().is_empty() || before.trim_end().ends_with('}') || depth(before) == 0
        {
            expand(Rule::file)
        } else {
            expand(Rule::tool_item)
        }
    } else {
        positives.into_iter().flat_map(expand).collect()
    };

    let mut expected: Vec<String> = Vec::new();
    let mut keywords: Vec<&'static str> = Vec::new();
    let mut symbols: Vec<&'static str> = Vec::new();
    for r in &positives {
        if let Some(k) = keyword_text(*r) {
            keywords.push(k);
        } else if let Some(d) = describe(*r) {
            if !expected.iter().any(|x| x == d) {
                expected.push(d.to_owned());
            }
        }
    }
    // Literal punctuation is not a rule in pest: infer it from where the parser stopped.
    let statement_start = keywords.contains(&"tool") && keywords.contains(&"hide");
    if statement_start {
        keywords.retain(|k| !super::STATEMENT_WORDS.contains(k));
        expected.retain(|x| x != "end of file");
        expected.insert(
            0,
            "a statement (`tool`, `resource`, `prompt`, `server_request`, `allow`, `hide`, `all tools`, `default`, `lists`, `mode` or `version`)"
                .into(),
        );
    }
    let block_item = keywords.contains(&"limit") && keywords.contains(&"require");
    if block_item {
        keywords.retain(|k| !["deny", "require", "limit", "mode", "limits"].contains(k));
        expected.insert(
            0,
            "a rule (`deny if`, `require`, `limit`, `mode`) or `}`".into(),
        );
        symbols.push("}");
    }
    // At an unclosed `[` after `hide`, the list is what went wrong, not a missing kind.
    if text.get(pos..).is_some_and(|t| t.starts_with('[')) {
        keywords.retain(|k| !["resources", "prompts"].contains(k));
    }
    let window = keywords.contains(&"minute");
    if window {
        keywords.retain(|k| !["minute", "hour", "day"].contains(k));
        expected.retain(|x| x != "a whole number");
        expected.insert(0, "a window: `minute`, `hour`, `day` or `N seconds`".into());
    }
    for k in &keywords {
        expected.push(format!("`{k}`"));
    }
    if positives.is_empty() && negatives.is_empty() {
        expected.push("something else".into());
    }
    let _ = symbols;
    let message = format!("expected {}, found {found}", join_or(&expected));

    // "Did you mean" against the keywords that would have fitted here.
    let mut candidates: Vec<&str> = positives.iter().filter_map(|r| keyword_text(*r)).collect();
    if window {
        candidates.extend(["minute", "hour", "day"]);
    }
    let mut d = Diagnostic::new(
        pos..pos
            + word
                .len()
                .max(1)
                .min(text.len().saturating_sub(pos))
                .max(usize::from(pos < text.len())),
        message,
    );
    if !word.is_empty()
        && let Some(s) = did_you_mean(&word, candidates.iter().copied())
        && s != word
    {
        d = d.with_help(format!("did you mean `{s}`?"));
    } else if window && !word.is_empty() {
        d = d.with_help("windows are `minute`, `hour`, `day`, or a number of seconds: `limit 10 per 3600 seconds`");
    } else if let Some(h) = punctuation_help(text, pos) {
        d = d.with_help(h);
    }
    d
}

/// A composite rule pest reports as expected, as the keywords that could start it.
fn expand(r: Rule) -> Vec<Rule> {
    match r {
        Rule::file | Rule::statement => {
            vec![
                Rule::kw_tool,
                Rule::kw_allow,
                Rule::kw_resource,
                Rule::kw_prompt,
                Rule::kw_server_request,
                Rule::kw_hide,
                Rule::kw_all,
                Rule::kw_default,
                Rule::kw_lists,
                Rule::kw_mode,
                Rule::kw_version,
            ]
        }
        Rule::kinds | Rule::kind => vec![
            Rule::kw_tools,
            Rule::kw_resources,
            Rule::kw_prompts,
            Rule::kw_methods,
            Rule::kw_server_requests,
        ],
        Rule::hide_kind => vec![Rule::kw_resources, Rule::kw_prompts],
        Rule::entry_kind => vec![Rule::kw_resource, Rule::kw_prompt, Rule::kw_server_request],
        Rule::lists_value => vec![Rule::kw_callable, Rule::kw_all],
        Rule::table => vec![
            Rule::kw_tools,
            Rule::kw_resources,
            Rule::kw_prompts,
            Rule::kw_server_requests,
            Rule::kw_defaults,
        ],
        Rule::tool_item => vec![
            Rule::kw_deny,
            Rule::kw_require,
            Rule::kw_limit,
            Rule::kw_mode,
            Rule::kw_limits,
        ],
        Rule::window => vec![Rule::kw_minute, Rule::kw_hour, Rule::kw_day, Rule::integer],
        Rule::scope => vec![Rule::kw_per, Rule::kw_global],
        Rule::action => vec![Rule::kw_allow, Rule::kw_deny],
        Rule::mode_value => vec![Rule::kw_enforce, Rule::kw_shadow],
        Rule::condition | Rule::conditions => vec![Rule::path],
        other => vec![other],
    }
}

/// Open `{` minus closed `}` before a point (strings aside: good enough for a hint).
fn depth(before: &str) -> i64 {
    before.matches('{').count() as i64 - before.matches('}').count() as i64
}

fn found_description(text: &str, pos: usize, word: &str) -> String {
    if pos >= text.len() {
        return "end of file".into();
    }
    if !word.is_empty() {
        return format!("`{word}`");
    }
    match text[pos..].chars().next() {
        Some('\n') | Some('\r') => "end of line".into(),
        Some(c) => format!("`{c}`"),
        None => "end of file".into(),
    }
}

fn punctuation_help(text: &str, pos: usize) -> Option<&'static str> {
    let rest_of_line = text
        .get(pos..)
        .unwrap_or("")
        .split('\n')
        .next()
        .unwrap_or("");
    if rest_of_line.starts_with('"') && rest_of_line.matches('"').count() < 2 {
        return Some("this string is not closed: strings end with `\"` on the same line");
    }
    if rest_of_line.starts_with('[') && !text[pos..].contains(']') {
        return Some("this list is not closed: add `]` after its last item");
    }
    if pos >= text.len() && text.matches('{').count() > text.matches('}').count() {
        return Some("a `{` is never closed: add `}` at the end of the block");
    }
    if text[..pos].matches('"').count() % 2 == 1 {
        return Some("a string is not closed: add the closing `\"`");
    }
    None
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => "something else".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
