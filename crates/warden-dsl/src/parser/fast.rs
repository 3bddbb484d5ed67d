//! A hand-written reader of `grammar/warden.pest`, tried before pest.
//!
//! pest spends most of its time on bookkeeping for error messages (attempt tracking, a token
//! queue) that a valid file never needs. This reader follows the grammar rule by rule, each
//! function named after its rule and with pest's semantics (ordered choice, backtracking,
//! blanks and comments skipped between the parts of non-atomic rules), but keeps no record of
//! why it failed: on anything it does not accept it answers `None` and [`super::parse`] runs
//! pest, which writes the diagnostics. Spans are pest's too, including its habit of ending a
//! rule after the blanks that follow it when the rule ends in an absent optional part.
//! `super::differential` checks that both readers accept the same files and build the same
//! AST from them.

use serde_json::Value;
use warden_policy::{ApprovalVia, DefaultAction, Kind, Lists, Mode, Op, Scope, Window};

use super::literal;
use crate::ast::*;
use crate::diagnostic::Diagnostic;

/// The AST of `text`, or `None` if pest has to be asked (a syntax error, or a literal that
/// does not decode).
pub fn parse(text: &str) -> Option<File> {
    let mut r = Reader {
        text,
        src: text.as_bytes(),
        pos: 0,
        broken: false,
    };
    let file = r.file();
    if r.broken { None } else { file }
}

/// The statements `text` starts with, up to the first that does not read, and where that one
/// starts: the context a syntax error is explained in (see `super::mistakes`).
pub fn prefix(text: &str) -> (Vec<Item>, usize) {
    let mut r = Reader {
        text,
        src: text.as_bytes(),
        pos: 0,
        broken: false,
    };
    r.skip();
    let items = r.repeat(Reader::statement);
    // `repeat` leaves the position after the last statement; the next starts after a skip.
    r.skip();
    (items, r.pos)
}

struct Reader<'a> {
    text: &'a str,
    src: &'a [u8],
    pos: usize,
    /// A literal failed to decode. Parsing goes on as pest's would (the grammar accepted
    /// it), but the answer is `None` so that pest's path reports it.
    broken: bool,
}

/// `ident_char`: what may not follow a keyword, a number or an integer.
fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `bare_name`'s characters.
fn is_name(b: u8) -> bool {
    is_ident(b) || matches!(b, b'-' | b'.' | b'*' | b'?')
}

/// `path_seg`'s characters.
fn is_seg(b: u8) -> bool {
    is_ident(b) || matches!(b, b'-' | b'$')
}

impl<'a> Reader<'a> {
    // ---- machinery ----

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    /// `WHITESPACE` and `COMMENT`, as pest skips them between the parts of a rule.
    fn skip(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'#' => {
                    self.pos = self.src[self.pos..]
                        .iter()
                        .position(|&c| c == b'\n')
                        .map_or(self.src.len(), |n| self.pos + n);
                }
                _ => break,
            }
        }
    }

    /// Runs `f`; if it fails, puts the position back (a PEG alternative or optional part).
    fn attempt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<T> {
        let start = self.pos;
        let r = f(self);
        if r.is_none() {
            self.pos = start;
        }
        r
    }

    /// `e*` after the skip its sequence put before it: the first `e` directly, each further
    /// one after a skip that is undone if `e` fails.
    fn repeat<T>(&mut self, mut e: impl FnMut(&mut Self) -> Option<T>) -> Vec<T> {
        let mut out = Vec::new();
        if let Some(first) = self.attempt(&mut e) {
            out.push(first);
            while let Some(next) = self.attempt(|r| {
                r.skip();
                e(r)
            }) {
                out.push(next);
            }
        }
        out
    }

    fn literal(&mut self, s: &str) -> Option<()> {
        if self.src[self.pos..].starts_with(s.as_bytes()) {
            self.pos += s.len();
            Some(())
        } else {
            None
        }
    }

    /// `kw_*`: the word, not followed by an `ident_char`.
    fn kw(&mut self, word: &str) -> Option<()> {
        let end = self.pos + word.len();
        if self.src[self.pos..].starts_with(word.as_bytes())
            && !self.src.get(end).copied().is_some_and(is_ident)
        {
            self.pos = end;
            Some(())
        } else {
            None
        }
    }

    /// A keyword and where it was written.
    fn kw_at<T>(&mut self, word: &str, node: T) -> Option<Spanned<T>> {
        let start = self.pos;
        self.kw(word)?;
        Some(Spanned {
            node,
            span: start..self.pos,
        })
    }

    /// Advances over a run of bytes with `class`; at least one.
    fn run(&mut self, class: fn(u8) -> bool) -> Option<&'a str> {
        let start = self.pos;
        let len = self.src[start..].iter().take_while(|&&b| class(b)).count();
        if len == 0 {
            return None;
        }
        self.pos += len;
        self.text.get(start..self.pos)
    }

    fn decoded<T>(&mut self, r: Result<T, Diagnostic>, fallback: T) -> T {
        r.unwrap_or_else(|_| {
            self.broken = true;
            fallback
        })
    }

    // ---- file and statements ----

    /// `file = { SOI ~ statement* ~ EOI }`
    fn file(&mut self) -> Option<File> {
        self.skip();
        let items = self.repeat(Self::statement);
        self.skip();
        (self.pos == self.src.len()).then_some(File { items })
    }

    /// `statement = _{ version | default | mode | lists | hide | all_tools | tables_empty | allow_entry | allow | tool | entry }`
    fn statement(&mut self) -> Option<Item> {
        let start = self.pos;
        let kind = None
            .or_else(|| self.attempt(Self::version))
            .or_else(|| self.attempt(Self::default))
            .or_else(|| self.attempt(|r| r.mode().map(ItemKind::Mode)))
            .or_else(|| self.attempt(Self::lists))
            .or_else(|| self.attempt(Self::hide))
            .or_else(|| self.attempt(Self::all_tools))
            .or_else(|| self.attempt(Self::tables_empty))
            .or_else(|| self.attempt(Self::allow_entry))
            .or_else(|| self.attempt(Self::allow))
            .or_else(|| self.attempt(Self::tool))
            .or_else(|| self.attempt(Self::entry))?;
        Some(Item {
            kind,
            span: start..self.pos,
        })
    }

    /// `version = { kw_version ~ (integer | string) }`
    fn version(&mut self) -> Option<ItemKind> {
        self.kw("version")?;
        self.skip();
        let start = self.pos;
        let text = match self.attempt(Self::integer_text) {
            Some(digits) => digits.to_owned(),
            None => self.string()?,
        };
        Some(ItemKind::Version(Spanned {
            node: text,
            span: start..self.pos,
        }))
    }

    /// `default = { kw_default ~ action ~ kinds? }`, `kinds = { kind ~ ("," ~ kind)* }`.
    /// Ends at its last word, as the pest reader's item does.
    fn default(&mut self) -> Option<ItemKind> {
        self.kw("default")?;
        self.skip();
        let action = self.action()?;
        let kinds = self
            .attempt(|r| {
                r.skip();
                let first = r.kind()?;
                let mut kinds = vec![first];
                kinds.extend(r.repeat_after_skip(|r| {
                    r.literal(",")?;
                    r.skip();
                    r.kind()
                }));
                Some(kinds)
            })
            .unwrap_or_default();
        Some(ItemKind::Default { action, kinds })
    }

    /// `kind = { !(kind_word ~ "{") ~ kind_word }`
    fn kind(&mut self) -> Option<Spanned<Kind>> {
        let word = None
            .or_else(|| self.kw_at("tools", Kind::Tool))
            .or_else(|| self.kw_at("resources", Kind::Resource))
            .or_else(|| self.kw_at("prompts", Kind::Prompt))
            .or_else(|| self.kw_at("methods", Kind::Method))
            .or_else(|| self.kw_at("server_requests", Kind::ServerRequest))?;
        let after = self.pos;
        self.skip();
        let brace = self.peek() == Some(b'{');
        self.pos = after;
        (!brace).then_some(word)
    }

    /// `e ~ (sep ~ e)*` where `e` already ran: each further one after a skip that is undone
    /// if it fails, so the position stays at the end of the last one.
    fn repeat_after_skip<T>(&mut self, mut e: impl FnMut(&mut Self) -> Option<T>) -> Vec<T> {
        let mut out = Vec::new();
        while let Some(next) = self.attempt(|r| {
            r.skip();
            e(r)
        }) {
            out.push(next);
        }
        out
    }

    /// `action = { kw_allow | kw_deny }`
    fn action(&mut self) -> Option<Spanned<DefaultAction>> {
        None.or_else(|| self.kw_at("allow", DefaultAction::Allow))
            .or_else(|| self.kw_at("deny", DefaultAction::Deny))
    }

    /// `mode = { kw_mode ~ mode_value }`, `mode_value = { kw_enforce | kw_shadow }`
    fn mode(&mut self) -> Option<Spanned<Mode>> {
        self.kw("mode")?;
        self.skip();
        None.or_else(|| self.kw_at("enforce", Mode::Enforce))
            .or_else(|| self.kw_at("shadow", Mode::Shadow))
    }

    /// `lists = { kw_lists ~ lists_value }`, `lists_value = { kw_callable | kw_all }`
    fn lists(&mut self) -> Option<ItemKind> {
        self.kw("lists")?;
        self.skip();
        None.or_else(|| self.kw_at("callable", Lists::Callable))
            .or_else(|| self.kw_at("all", Lists::All))
            .map(ItemKind::Lists)
    }

    /// `hide = { kw_hide ~ hide_kind? ~ name_list }`, `hide_kind = { kw_resources | kw_prompts }`
    fn hide(&mut self) -> Option<ItemKind> {
        self.kw("hide")?;
        self.skip();
        let kind = match self.attempt(|r| {
            None.or_else(|| r.kw("resources").map(|()| Kind::Resource))
                .or_else(|| r.kw("prompts").map(|()| Kind::Prompt))
        }) {
            Some(kind) => {
                self.skip();
                kind
            }
            None => Kind::Tool,
        };
        let names = self.name_list()?;
        Some(ItemKind::Hide { kind, names })
    }

    /// `name_list = { "[" ~ (tool_name ~ ("," ~ tool_name)* ~ ","?)? ~ "]" }`
    fn name_list(&mut self) -> Option<Vec<Spanned<String>>> {
        self.literal("[")?;
        self.skip();
        let names = self
            .attempt(|r| {
                let names = r.names()?;
                r.skip();
                r.attempt(|r| r.literal(","));
                Some(names)
            })
            .unwrap_or_default();
        self.skip();
        self.literal("]")?;
        Some(names)
    }

    /// `tool_name ~ ("," ~ tool_name)*`, as `allow`, `tool` and `name_list` write it.
    fn names(&mut self) -> Option<Vec<Spanned<String>>> {
        let first = self.tool_name()?;
        self.skip();
        let mut names = vec![first];
        names.extend(self.repeat(|r| {
            r.literal(",")?;
            r.skip();
            r.tool_name()
        }));
        Some(names)
    }

    /// `all_tools = { kw_all ~ kw_tools ~ "{" ~ all_item* ~ "}" }`
    fn all_tools(&mut self) -> Option<ItemKind> {
        self.kw("all")?;
        self.skip();
        self.kw("tools")?;
        self.skip();
        self.literal("{")?;
        self.skip();
        // all_item = _{ deny_rule | require_rule | limit | no_limits | no_require | no_deny }
        let body = self.repeat(|r| {
            let start = r.pos;
            let kind = None
                .or_else(|| r.attempt(Self::deny_rule))
                .or_else(|| r.attempt(Self::require_rule))
                .or_else(|| r.attempt(|r| r.limit().map(BlockKind::Limit)))
                .or_else(|| r.attempt(Self::no_limits))
                .or_else(|| r.attempt(Self::no_require))
                .or_else(|| r.attempt(Self::no_deny))?;
            let end = start + r.text.get(start..r.pos)?.trim_end().len();
            Some(BlockItem {
                kind,
                span: start..end,
            })
        });
        self.skip();
        self.literal("}")?;
        Some(ItemKind::AllTools(body))
    }

    /// `tables_empty = { table ~ "{" ~ "}" }`,
    /// `table = { kw_tools | kw_resources | kw_prompts | kw_server_requests | kw_defaults }`
    fn tables_empty(&mut self) -> Option<ItemKind> {
        let table = None
            .or_else(|| self.kw("tools").map(|()| Table::Entries(Kind::Tool)))
            .or_else(|| {
                self.kw("resources")
                    .map(|()| Table::Entries(Kind::Resource))
            })
            .or_else(|| self.kw("prompts").map(|()| Table::Entries(Kind::Prompt)))
            .or_else(|| {
                self.kw("server_requests")
                    .map(|()| Table::Entries(Kind::ServerRequest))
            })
            .or_else(|| self.kw("defaults").map(|()| Table::Defaults))?;
        self.skip();
        self.literal("{")?;
        self.skip();
        self.literal("}")?;
        Some(ItemKind::Empty(table))
    }

    /// `entry_kind = { kw_resource | kw_prompt | kw_server_request }`
    fn entry_kind(&mut self) -> Option<Kind> {
        None.or_else(|| self.kw("resource").map(|()| Kind::Resource))
            .or_else(|| self.kw("prompt").map(|()| Kind::Prompt))
            .or_else(|| self.kw("server_request").map(|()| Kind::ServerRequest))
    }

    /// `statement_word`: a keyword that starts a statement (the lookahead reads it without
    /// moving).
    fn at_statement_word(&mut self) -> bool {
        let at = self.pos;
        super::STATEMENT_WORDS.iter().any(|w| {
            let hit = self.kw(w).is_some();
            self.pos = at;
            hit
        })
    }

    /// `allow_entry = { kw_allow ~ entry_kind ~ !statement_word ~ tool_name ~ ("," ~ tool_name)* }`
    fn allow_entry(&mut self) -> Option<ItemKind> {
        self.kw("allow")?;
        self.skip();
        let kind = self.entry_kind()?;
        self.skip();
        if self.at_statement_word() {
            return None;
        }
        self.names().map(|names| ItemKind::Allow { kind, names })
    }

    /// `allow = { kw_allow ~ tool_name ~ ("," ~ tool_name)* }`
    fn allow(&mut self) -> Option<ItemKind> {
        self.kw("allow")?;
        self.skip();
        self.names().map(|names| ItemKind::Allow {
            kind: Kind::Tool,
            names,
        })
    }

    /// `tool = { kw_tool ~ tool_name ~ ("," ~ tool_name)* ~ "{" ~ tool_item* ~ "}" }`
    fn tool(&mut self) -> Option<ItemKind> {
        self.kw("tool")?;
        self.skip();
        self.entry_rest(Kind::Tool)
    }

    /// `entry = { entry_kind ~ tool_name ~ ("," ~ tool_name)* ~ "{" ~ tool_item* ~ "}" }`
    fn entry(&mut self) -> Option<ItemKind> {
        let kind = self.entry_kind()?;
        self.skip();
        self.entry_rest(kind)
    }

    /// The names and block of `tool` and `entry`.
    fn entry_rest(&mut self, kind: Kind) -> Option<ItemKind> {
        let names = self.names()?;
        self.skip();
        self.literal("{")?;
        self.skip();
        let body = self.repeat(Self::tool_item);
        self.skip();
        self.literal("}")?;
        Some(ItemKind::Entry { kind, names, body })
    }

    /// `tool_name = { bare_name | string }`, `bare_name = @{ (ASCII_ALPHANUMERIC | "_" | "-" | "." | "*" | "?")+ }`
    fn tool_name(&mut self) -> Option<Spanned<String>> {
        let start = self.pos;
        let node = match self.run(is_name) {
            Some(bare) => bare.to_owned(),
            None => self.string()?,
        };
        Some(Spanned {
            node,
            span: start..self.pos,
        })
    }

    // ---- inside a tool block ----

    /// `tool_item = _{ deny_rule | approval | require_rule | limit | mode | no_limits | no_require | no_deny }`
    fn tool_item(&mut self) -> Option<BlockItem> {
        let start = self.pos;
        let kind = None
            .or_else(|| self.attempt(Self::deny_rule))
            .or_else(|| self.attempt(Self::approval))
            .or_else(|| self.attempt(Self::require_rule))
            .or_else(|| self.attempt(|r| r.limit().map(BlockKind::Limit)))
            .or_else(|| self.attempt(|r| r.mode().map(BlockKind::Mode)))
            .or_else(|| self.attempt(Self::no_limits))
            .or_else(|| self.attempt(Self::no_require))
            .or_else(|| self.attempt(Self::no_deny))?;
        // As the pest reader: without trailing blanks.
        let end = start + self.text.get(start..self.pos)?.trim_end().len();
        Some(BlockItem {
            kind,
            span: start..end,
        })
    }

    /// `deny_rule = { kw_deny ~ (kw_always | kw_if ~ conditions) ~ (kw_because ~ string)? }`
    fn deny_rule(&mut self) -> Option<BlockKind> {
        self.kw("deny")?;
        self.skip();
        let conditions = match self.attempt(|r| r.kw("always")) {
            Some(()) => None,
            None => {
                self.kw("if")?;
                self.skip();
                Some(self.conditions()?)
            }
        };
        self.skip();
        let message = self.attempt(|r| r.message("because"));
        Some(BlockKind::Deny {
            conditions,
            message,
        })
    }

    /// `require_rule = { kw_require ~ (kw_always | conditions) ~ (kw_else ~ string)? }`
    fn require_rule(&mut self) -> Option<BlockKind> {
        self.kw("require")?;
        self.skip();
        let conditions = match self.attempt(|r| r.kw("always")) {
            Some(()) => None,
            None => Some(self.conditions()?),
        };
        self.skip();
        let message = self.attempt(|r| r.message("else"));
        Some(BlockKind::Require {
            conditions,
            message,
        })
    }

    /// `kw_because ~ string` / `kw_else ~ string`
    fn message(&mut self, keyword: &str) -> Option<Spanned<String>> {
        self.kw(keyword)?;
        self.skip();
        let start = self.pos;
        let node = self.string()?;
        Some(Spanned {
            node,
            span: start..self.pos,
        })
    }

    /// `approval = { kw_require ~ kw_approval ~ approval_via? ~ approval_timeout? ~ on_timeout? ~ redact? }`
    fn approval(&mut self) -> Option<BlockKind> {
        self.kw("require")?;
        self.skip();
        self.kw("approval")?;
        self.skip();
        // approval_via = { kw_via ~ via_target }
        // via_target = { kw_client ~ (kw_or ~ kw_queue)? | kw_queue }
        let via = self.attempt(|r| {
            r.kw("via")?;
            r.skip();
            let start = r.pos;
            let node = if r.attempt(|r| r.kw("client")).is_some() {
                let mut end = r.pos;
                let or_queue = r.attempt(|r| {
                    r.skip();
                    r.kw("or")?;
                    r.skip();
                    r.kw("queue")
                });
                if or_queue.is_some() {
                    end = r.pos;
                }
                let node = if or_queue.is_some() {
                    ApprovalVia::ClientOrQueue
                } else {
                    ApprovalVia::Client
                };
                // The span covers the words, not the blanks pest may have read after them.
                return Some(Spanned {
                    node,
                    span: start..end,
                });
            } else {
                r.kw("queue")?;
                ApprovalVia::Queue
            };
            Some(Spanned {
                node,
                span: start..r.pos,
            })
        });
        self.skip();
        // approval_timeout = { kw_timeout ~ integer ~ kw_seconds }
        let timeout = self.attempt(|r| {
            r.kw("timeout")?;
            r.skip();
            let n = r.integer()?;
            r.skip();
            r.kw("seconds")?;
            Some(n)
        });
        self.skip();
        // on_timeout = { kw_on ~ kw_timeout ~ action }
        let on_timeout = self.attempt(|r| {
            r.kw("on")?;
            r.skip();
            r.kw("timeout")?;
            r.skip();
            r.action()
        });
        self.skip();
        // redact = { kw_redact ~ path ~ ("," ~ path)* }
        let redact = self
            .attempt(|r| {
                r.kw("redact")?;
                r.skip();
                // As pest reads `path ~ ("," ~ path)*`: blanks after each path are its own.
                let mut paths = vec![r.path()?];
                r.skip();
                paths.extend(r.repeat(|r| {
                    r.literal(",")?;
                    r.skip();
                    r.path()
                }));
                Some(paths)
            })
            .unwrap_or_default();
        Some(BlockKind::Approval {
            via,
            timeout,
            on_timeout,
            redact,
        })
    }

    /// `no_limits = { kw_limits ~ "[" ~ "]" }`
    fn no_limits(&mut self) -> Option<BlockKind> {
        self.kw("limits")?;
        self.empty_list()?;
        Some(BlockKind::NoLimits)
    }

    /// `no_require = { kw_require ~ "[" ~ "]" }`
    fn no_require(&mut self) -> Option<BlockKind> {
        self.kw("require")?;
        self.empty_list()?;
        Some(BlockKind::NoRequire)
    }

    /// `no_deny = { kw_deny ~ kw_if ~ "[" ~ "]" }`
    fn no_deny(&mut self) -> Option<BlockKind> {
        self.kw("deny")?;
        self.skip();
        self.kw("if")?;
        self.empty_list()?;
        Some(BlockKind::NoDeny)
    }

    /// `~ "[" ~ "]"` at the end of the `no_*` rules.
    fn empty_list(&mut self) -> Option<()> {
        self.skip();
        self.literal("[")?;
        self.skip();
        self.literal("]")
    }

    // ---- conditions ----

    /// `conditions = { condition ~ (kw_and ~ condition)* }`
    fn conditions(&mut self) -> Option<Vec<Cond>> {
        let first = self.condition()?;
        self.skip();
        let mut all = vec![first];
        all.extend(self.repeat(|r| {
            r.kw("and")?;
            r.skip();
            r.condition()
        }));
        Some(all)
    }

    /// `condition = { path ~ (exists | missing | not_in | in_list | matches | contains | compare) }`
    fn condition(&mut self) -> Option<Cond> {
        let start = self.pos;
        let path = self.path()?;
        self.skip();
        let test_start = self.pos;
        let (op, value) = None
            .or_else(|| {
                self.attempt(|r| {
                    r.kw("exists")?;
                    Some((Op::Exists, r.since(test_start, Value::Bool(true))))
                })
            })
            .or_else(|| {
                self.attempt(|r| {
                    r.kw("missing")?;
                    Some((Op::Exists, r.since(test_start, Value::Bool(false))))
                })
            })
            .or_else(|| {
                self.attempt(|r| {
                    r.kw("not")?;
                    r.skip();
                    r.kw("in")?;
                    r.skip();
                    Some((Op::NotIn, r.list()?))
                })
            })
            .or_else(|| {
                self.attempt(|r| {
                    r.kw("in")?;
                    r.skip();
                    Some((Op::In, r.list()?))
                })
            })
            .or_else(|| {
                self.attempt(|r| {
                    r.kw("matches")?;
                    r.skip();
                    let at = r.pos;
                    let re = match r.attempt(Self::regex) {
                        Some(body) => body,
                        None => r.string()?,
                    };
                    Some((Op::Regex, r.since(at, Value::String(re))))
                })
            })
            .or_else(|| {
                self.attempt(|r| {
                    r.kw("contains")?;
                    r.skip();
                    Some((Op::Contains, r.scalar()?))
                })
            })
            .or_else(|| {
                self.attempt(|r| {
                    let op = r.cmp_op()?;
                    r.skip();
                    Some((op, r.scalar()?))
                })
            })?;
        Some(Cond {
            path,
            op: Spanned {
                node: op,
                span: test_start..self.pos,
            },
            value,
            span: start..self.pos,
        })
    }

    fn since<T>(&self, start: usize, node: T) -> Spanned<T> {
        Spanned {
            node,
            span: start..self.pos,
        }
    }

    /// `cmp_op = { "==" | "!=" | "<=" | ">=" | "<" | ">" }`
    fn cmp_op(&mut self) -> Option<Op> {
        for (text, op) in [
            ("==", Op::Eq),
            ("!=", Op::Neq),
            ("<=", Op::Lte),
            (">=", Op::Gte),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.literal(text).is_some() {
                return Some(op);
            }
        }
        None
    }

    /// `path = ${ path_root ~ ("." ~ (path_seg | string))+ }`: no blanks inside.
    fn path(&mut self) -> Option<Spanned<String>> {
        let start = self.pos;
        let root = if self.literal("args").is_some() {
            "args"
        } else if self.literal("caller").is_some() {
            "caller"
        } else {
            self.literal("counter")?;
            "counter"
        };
        let mut out = String::from(root);
        let mut segments = 0;
        while let Some(seg) = self.attempt(|r| {
            r.literal(".")?;
            match r.run(is_seg) {
                Some(seg) => Some(seg.to_owned()),
                None => r.string(),
            }
        }) {
            out.push('.');
            out.push_str(&seg);
            segments += 1;
        }
        (segments > 0).then(|| self.since(start, out))
    }

    /// `regex = ${ "/" ~ regex_body ~ "/" }`; the body without its slashes.
    fn regex(&mut self) -> Option<String> {
        self.literal("/")?;
        let start = self.pos;
        self.run(|b| b != b'/' && b != b'\n')?;
        let body = self.text.get(start..self.pos)?.to_owned();
        self.literal("/")?;
        Some(body)
    }

    // ---- limits ----

    /// `limit = { kw_limit ~ integer ~ kw_per ~ window ~ scope? ~ (kw_as ~ counter)? ~ (kw_cost ~ path)? }`
    fn limit(&mut self) -> Option<LimitAst> {
        self.kw("limit")?;
        self.skip();
        let max = self.integer()?;
        self.skip();
        self.kw("per")?;
        self.skip();
        let window = self.window()?;
        self.skip();
        let (scope, claim) = match self.attempt(Self::scope) {
            Some((s, c)) => (Some(s), c),
            None => (None, None),
        };
        self.skip();
        let counter = self.attempt(|r| {
            r.kw("as")?;
            r.skip();
            // counter = { path_seg | string }
            let start = r.pos;
            let node = match r.run(is_seg) {
                Some(seg) => seg.to_owned(),
                None => r.string()?,
            };
            Some(r.since(start, node))
        });
        self.skip();
        let cost = self.attempt(|r| {
            r.kw("cost")?;
            r.skip();
            r.path()
        });
        self.skip();
        // refund = { kw_refund ~ kw_on ~ kw_error }
        let refund = self.attempt(|r| {
            let start = r.pos;
            r.kw("refund")?;
            r.skip();
            r.kw("on")?;
            r.skip();
            r.kw("error")?;
            Some(start..r.pos)
        });
        self.skip();
        let message = self.attempt(|r| r.message("else"));
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

    /// `window = { kw_minute | kw_hour | kw_day | integer ~ kw_seconds }`
    fn window(&mut self) -> Option<Spanned<Window>> {
        None.or_else(|| self.kw_at("minute", Window::Minute))
            .or_else(|| self.kw_at("hour", Window::Hour))
            .or_else(|| self.kw_at("day", Window::Day))
            .or_else(|| {
                self.attempt(|r| {
                    let start = r.pos;
                    let n = r.integer()?;
                    r.skip();
                    r.kw("seconds")?;
                    Some(r.since(start, Window::Seconds(n.node)))
                })
            })
    }

    /// `scope = { kw_per ~ (kw_grant | kw_session | kw_ip | kw_claim ~ claim_name) | kw_global }`
    fn scope(&mut self) -> Option<(Spanned<Scope>, Option<Spanned<String>>)> {
        let start = self.pos;
        let (scope, claim) = None
            .or_else(|| {
                self.attempt(|r| {
                    r.kw("per")?;
                    r.skip();
                    None.or_else(|| r.kw("grant").map(|()| (Scope::Grant, None)))
                        .or_else(|| r.kw("session").map(|()| (Scope::Session, None)))
                        .or_else(|| r.kw("ip").map(|()| (Scope::Ip, None)))
                        .or_else(|| {
                            r.kw("claim")?;
                            r.skip();
                            Some((Scope::Claim, Some(r.claim_name()?)))
                        })
                })
            })
            .or_else(|| self.kw("global").map(|()| (Scope::Global, None)))?;
        Some((self.since(start, scope), claim))
    }

    /// `claim_name = @{ path_seg ~ ("." ~ path_seg)* }`
    fn claim_name(&mut self) -> Option<Spanned<String>> {
        let start = self.pos;
        let mut out = self.run(is_seg)?.to_owned();
        while let Some(seg) = self.attempt(|r| {
            r.literal(".")?;
            r.run(is_seg).map(str::to_owned)
        }) {
            out.push('.');
            out.push_str(&seg);
        }
        Some(self.since(start, out))
    }

    // ---- values ----

    /// `list = { "[" ~ (scalar ~ ("," ~ scalar)* ~ ","?)? ~ "]" }`
    fn list(&mut self) -> Option<Spanned<Value>> {
        let start = self.pos;
        self.literal("[")?;
        self.skip();
        let items = self
            .attempt(|r| {
                let first = r.scalar()?;
                r.skip();
                let mut items = vec![first.node];
                items.extend(
                    r.repeat(|r| {
                        r.literal(",")?;
                        r.skip();
                        r.scalar()
                    })
                    .into_iter()
                    .map(|s| s.node),
                );
                r.skip();
                r.attempt(|r| r.literal(","));
                Some(items)
            })
            .unwrap_or_default();
        self.skip();
        self.literal("]")?;
        Some(self.since(start, Value::Array(items)))
    }

    /// `scalar = { string | number | kw_true | kw_false | kw_null }`
    fn scalar(&mut self) -> Option<Spanned<Value>> {
        let start = self.pos;
        let value = None
            .or_else(|| self.attempt(|r| r.string().map(Value::String)))
            .or_else(|| self.attempt(Self::number))
            .or_else(|| self.kw("true").map(|()| Value::Bool(true)))
            .or_else(|| self.kw("false").map(|()| Value::Bool(false)))
            .or_else(|| self.kw("null").map(|()| Value::Null))?;
        Some(self.since(start, value))
    }

    /// `string = ${ "\"" ~ (!("\"" | "\\" | "\n") ~ ANY | "\\" ~ ANY)* ~ "\"" }`, decoded.
    fn string(&mut self) -> Option<String> {
        let start = self.pos;
        self.literal("\"")?;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\n' => return None,
                // `\` takes the next character whatever it is; its UTF-8 continuation
                // bytes, if any, are never `"`, `\` or a newline.
                b'\\' => {
                    self.peek_at(1)?;
                    self.pos += 2;
                }
                _ => self.pos += 1,
            }
        }
        self.pos += 1;
        let quoted = self.text.get(start..self.pos)?;
        let decoded = literal::string(quoted, start..self.pos);
        Some(self.decoded(decoded, String::new()))
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.src.get(self.pos + ahead).copied()
    }

    /// `number = @{ "-"? ~ ASCII_DIGIT+ ~ ("." ~ ASCII_DIGIT+)? ~ (^"e" ~ ("+" | "-")? ~ ASCII_DIGIT+)? ~ !ident_char }`
    fn number(&mut self) -> Option<Value> {
        let start = self.pos;
        self.attempt(|r| r.literal("-"));
        self.run(|b| b.is_ascii_digit())?;
        self.attempt(|r| {
            r.literal(".")?;
            r.run(|b| b.is_ascii_digit())
        });
        self.attempt(|r| {
            if !matches!(r.peek(), Some(b'e' | b'E')) {
                return None;
            }
            r.pos += 1;
            r.attempt(|r| r.literal("+").or_else(|| r.literal("-")));
            r.run(|b| b.is_ascii_digit())
        });
        if self.peek().is_some_and(is_ident) {
            return None;
        }
        let text = self.text.get(start..self.pos)?;
        let decoded = literal::number(text, start..self.pos);
        Some(self.decoded(decoded, Value::Null))
    }

    /// `integer = @{ ASCII_DIGIT+ ~ !ident_char }`, as written.
    fn integer_text(&mut self) -> Option<&'a str> {
        let digits = self.run(|b| b.is_ascii_digit())?;
        if self.peek().is_some_and(is_ident) {
            return None;
        }
        Some(digits)
    }

    /// `integer`, decoded.
    fn integer(&mut self) -> Option<Spanned<u64>> {
        let start = self.pos;
        let digits = self.integer_text()?;
        let n = literal::integer(digits, start..self.pos);
        let n = self.decoded(n, 0);
        Some(self.since(start, n))
    }
}
