//! The syntax tree of a `.pol` file, with byte spans for diagnostics.

use std::ops::Range;

use serde_json::Value;
use warden_policy::{DefaultAction, Kind, Lists, Mode, Op, Scope, Window};

pub type Span = Range<usize>;

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ItemKind {
    Version(Spanned<String>),
    /// `default deny` (no kinds: every kind) or `default allow resources, prompts`.
    Default {
        action: Spanned<DefaultAction>,
        kinds: Vec<Spanned<Kind>>,
    },
    Mode(Spanned<Mode>),
    Lists(Spanned<Lists>),
    /// `hide [..]` (tools), `hide resources [..]`, `hide prompts [..]`.
    Hide {
        kind: Kind,
        names: Vec<Spanned<String>>,
    },
    AllTools(Vec<BlockItem>),
    /// `tools {}`, `resources {}`, ..., `defaults {}`.
    Empty(Table),
    /// `allow a, b` (tools) or `allow resource "uri"`, `allow prompt p`, ...
    Allow {
        kind: Kind,
        names: Vec<Spanned<String>>,
    },
    /// `tool a, b { ... }`, `resource "uri" { ... }`, `prompt p { ... }`, ...
    Entry {
        kind: Kind,
        names: Vec<Spanned<String>>,
        body: Vec<BlockItem>,
    },
}

/// A table that `NAME {}` writes out empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The entries of a kind: `tools`, `resources`, `prompts`, `server_requests`.
    Entries(Kind),
    /// The per-kind defaults.
    Defaults,
}

impl Table {
    /// The word that writes it (and its policy.json key).
    pub fn word(self) -> &'static str {
        match self {
            Table::Entries(kind) => kind.section(),
            Table::Defaults => "defaults",
        }
    }
}

/// The keyword of an entry of `kind`: `tool`, `resource`, `prompt`, `server_request`.
pub fn entry_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Tool => "tool",
        Kind::Resource => "resource",
        Kind::Prompt => "prompt",
        Kind::Method => "method",
        Kind::ServerRequest => "server_request",
    }
}

impl ItemKind {
    /// What the statement is called in messages (and, for those a policy has once, the key
    /// that finds a second one).
    pub fn describe(&self) -> &'static str {
        match self {
            ItemKind::Version(_) => "version",
            ItemKind::Default { kinds, action } => match (kinds.is_empty(), action.node) {
                (true, _) => "default",
                (false, DefaultAction::Allow) => "default allow …",
                (false, DefaultAction::Deny) => "default deny …",
            },
            ItemKind::Mode(_) => "mode",
            ItemKind::Lists(_) => "lists",
            ItemKind::Hide { kind, .. } => match kind {
                Kind::Resource => "hide resources",
                Kind::Prompt => "hide prompts",
                _ => "hide",
            },
            ItemKind::AllTools(_) => "all tools",
            ItemKind::Empty(t) => match t {
                Table::Entries(Kind::Resource) => "resources {}",
                Table::Entries(Kind::Prompt) => "prompts {}",
                Table::Entries(Kind::ServerRequest) => "server_requests {}",
                Table::Defaults => "defaults {}",
                Table::Entries(_) => "tools {}",
            },
            ItemKind::Allow { .. } => "allow",
            ItemKind::Entry { kind, .. } => entry_word(*kind),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BlockItem {
    pub kind: BlockKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BlockKind {
    /// `deny if ...` (`None` conditions: `deny always`).
    Deny {
        conditions: Option<Vec<Cond>>,
        message: Option<Spanned<String>>,
    },
    /// `require ...` (`None` conditions: `require always`).
    Require {
        conditions: Option<Vec<Cond>>,
        message: Option<Spanned<String>>,
    },
    Approval {
        via: Option<Spanned<warden_policy::ApprovalVia>>,
        timeout: Option<Spanned<u64>>,
        on_timeout: Option<Spanned<DefaultAction>>,
        /// Argument paths the approver is not shown.
        redact: Vec<Spanned<String>>,
    },
    Limit(LimitAst),
    Mode(Spanned<Mode>),
    NoLimits,
    NoRequire,
    NoDeny,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    pub path: Spanned<String>,
    pub op: Spanned<Op>,
    pub value: Spanned<Value>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitAst {
    pub max: Spanned<u64>,
    pub window: Spanned<Window>,
    pub scope: Option<Spanned<Scope>>,
    /// `per claim NAME`: the claim's name.
    pub claim: Option<Spanned<String>>,
    pub counter: Option<Spanned<String>>,
    pub cost: Option<Spanned<String>>,
    /// `refund on error`, where it is written.
    pub refund: Option<Span>,
    /// `else "…"`: what the agent reads when the limit refuses a call.
    pub message: Option<Spanned<String>>,
}
