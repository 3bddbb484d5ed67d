//! The syntax tree of a `.pol` file, with byte spans for diagnostics.

use std::ops::Range;

use serde_json::Value;
use warden_policy::{DefaultAction, Mode, Op, Scope, Window};

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
    Default(Spanned<DefaultAction>),
    Mode(Spanned<Mode>),
    Hide(Vec<Spanned<String>>),
    AllTools(Vec<BlockItem>),
    ToolsEmpty,
    Allow(Vec<Spanned<String>>),
    Tool {
        names: Vec<Spanned<String>>,
        body: Vec<BlockItem>,
    },
}

impl ItemKind {
    /// What the statement is called in messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ItemKind::Version(_) => "version",
            ItemKind::Default(_) => "default",
            ItemKind::Mode(_) => "mode",
            ItemKind::Hide(_) => "hide",
            ItemKind::AllTools(_) => "all tools",
            ItemKind::ToolsEmpty => "tools {}",
            ItemKind::Allow(_) => "allow",
            ItemKind::Tool { .. } => "tool",
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
