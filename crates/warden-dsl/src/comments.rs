//! Comments, kept across formatting. Each comment is attached to an anchor — the statement,
//! tool entry or block line it sits on or before — that survives reprinting; a comment
//! whose anchor is gone is printed at the end of the file, never dropped.

use std::collections::{HashMap, HashSet};

use warden_policy::Kind;

use crate::ast::{BlockItem, BlockKind, File, ItemKind};

/// The name an entry's anchors go by: a tool's own name; another kind's, prefixed by its
/// kind (with a byte no name of the language can hold unquoted), so that a prompt and a tool
/// of the same name keep their own comments.
pub(crate) fn entry_key(kind: Kind, name: &str) -> String {
    match kind {
        Kind::Tool => name.to_owned(),
        other => format!("{}\u{1f}{name}", other.section()),
    }
}

/// Where a comment belongs in canonical output.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Anchor {
    /// A top-level statement by kind: `version`, `default`, `hide`, `all tools`, …
    Stmt(&'static str),
    /// An entry (its `allow` line or `tool ... {` header), by [`entry_key`].
    Tool(String),
    /// The `ordinal`-th line of a kind (`deny`, `require`, `limit`, …) in a block.
    Item(String, &'static str, usize),
    /// The closing `}` of a block.
    End(String),
}

impl Anchor {
    pub(crate) fn stmt(kind: &'static str) -> Anchor {
        Anchor::Stmt(kind)
    }
    pub(crate) fn tool(name: &str) -> Anchor {
        Anchor::Tool(name.to_owned())
    }
    pub(crate) fn item(block: &str, kind: &'static str, ordinal: usize) -> Anchor {
        Anchor::Item(block.to_owned(), kind, ordinal)
    }
    pub(crate) fn end(block: &str) -> Anchor {
        Anchor::End(block.to_owned())
    }

    /// The tool entry the anchor belongs to (`all tools` and statements have none).
    fn entry(&self) -> Option<&str> {
        match self {
            Anchor::Tool(name) | Anchor::Item(name, ..) | Anchor::End(name) => Some(name),
            Anchor::Stmt(_) => None,
        }
    }

    /// The same place in another entry.
    fn renamed(&self, entry: &str) -> Anchor {
        match self {
            Anchor::Tool(_) => Anchor::Tool(entry.to_owned()),
            Anchor::Item(_, kind, n) => Anchor::Item(entry.to_owned(), kind, *n),
            Anchor::End(_) => Anchor::End(entry.to_owned()),
            Anchor::Stmt(s) => Anchor::Stmt(s),
        }
    }
}

/// Comments by anchor, handed out as the printer reaches each anchor.
#[derive(Debug, Default)]
pub(crate) struct Comments {
    leading: HashMap<Anchor, Vec<String>>,
    trailing: HashMap<Anchor, String>,
    /// In source order, for what no anchor claimed.
    order: Vec<Anchor>,
}

impl Comments {
    pub(crate) fn leading(&mut self, a: &Anchor) -> Vec<String> {
        self.leading.remove(a).unwrap_or_default()
    }

    pub(crate) fn trailing(&mut self, a: &Anchor) -> Option<String> {
        self.trailing.remove(a)
    }

    /// Gives every comment of tool entry `from` (its header, its lines, its `}`) to the same
    /// place in entry `into`, after `into`'s own: entries printed as one group keep each
    /// name's comments on the lines they were written on.
    pub(crate) fn merge_into(&mut self, from: &str, into: &str) {
        let moved: HashSet<Anchor> = self
            .leading
            .keys()
            .chain(self.trailing.keys())
            .filter(|a| a.entry() == Some(from))
            .cloned()
            .collect();
        for a in moved {
            let target = a.renamed(into);
            if let Some(mut lines) = self.leading.remove(&a) {
                self.leading
                    .entry(target.clone())
                    .or_default()
                    .append(&mut lines);
            }
            if let Some(text) = self.trailing.remove(&a) {
                self.add_trailing(target.clone(), text);
            }
            self.order.push(target);
        }
    }

    /// Comments no anchor claimed, in source order.
    pub(crate) fn remaining(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for a in std::mem::take(&mut self.order) {
            out.extend(self.leading.remove(&a).unwrap_or_default());
            out.extend(self.trailing.remove(&a));
        }
        out
    }

    fn add(&mut self, a: Anchor, text: String, trailing: bool) {
        self.order.push(a.clone());
        if trailing {
            self.add_trailing(a, text);
        } else {
            self.leading.entry(a).or_default().push(text);
        }
    }

    /// Several comments trailing one printed line share it.
    fn add_trailing(&mut self, a: Anchor, text: String) {
        match self.trailing.get_mut(&a) {
            Some(t) => {
                t.push(' ');
                t.push_str(&text);
            }
            None => {
                self.trailing.insert(a, text);
            }
        }
    }

    /// Finds the comments of `text` and attaches them to the anchors of `file`.
    pub(crate) fn collect(text: &str, file: &File) -> Comments {
        let mut points: Vec<(usize, usize, Anchor)> = Vec::new(); // (start, end, anchor)
        for item in &file.items {
            let (start, end) = (item.span.start, item.span.end);
            match &item.kind {
                ItemKind::Entry { kind, names, body } => {
                    let name = entry_key(*kind, names.first().map_or("", |n| n.node.as_str()));
                    let header_end = body.first().map_or(end, |b| b.span.start);
                    points.push((
                        start,
                        header_end.min(line_end(text, start)),
                        Anchor::Tool(name.clone()),
                    ));
                    block_points(&mut points, &name, body);
                    points.push((end.saturating_sub(1), end, Anchor::End(name)));
                }
                ItemKind::Allow { kind, names } => {
                    let name = entry_key(*kind, names.first().map_or("", |n| n.node.as_str()));
                    points.push((start, end, Anchor::Tool(name)));
                }
                ItemKind::AllTools(body) => {
                    let header_end = body.first().map_or(end, |b| b.span.start);
                    points.push((
                        start,
                        header_end.min(line_end(text, start)),
                        Anchor::Stmt("all tools"),
                    ));
                    block_points(&mut points, "all tools", body);
                    points.push((end.saturating_sub(1), end, Anchor::End("all tools".into())));
                }
                other => points.push((start, end, Anchor::Stmt(stmt_kind(other)))),
            }
        }
        points.sort_by_key(|p| p.0);
        // Without a `version` statement, canonical output still starts with one; comments
        // heading the file belong above it.
        let has_version = file
            .items
            .iter()
            .any(|i| matches!(i.kind, ItemKind::Version(_)));
        let first_start = points.first().map_or(usize::MAX, |p| p.0);

        let mut comments = Comments::default();
        for (start, body) in scan(text) {
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let own_line = text[line_start..start].trim().is_empty();
            let anchor = if own_line && !has_version && start < first_start {
                Some(Anchor::Stmt("version"))
            } else if own_line {
                points.iter().find(|p| p.0 > start).map(|p| p.2.clone())
            } else {
                // The last element that starts before the comment on the same line.
                points
                    .iter()
                    .rev()
                    .find(|p| p.0 < start && p.0 >= line_start || p.1 <= start && p.1 > line_start)
                    .map(|p| p.2.clone())
            };
            match anchor {
                Some(a) => comments.add(a, body, !own_line),
                None => comments.add(Anchor::Stmt("(end)"), body, false),
            }
        }
        comments
    }
}

/// The anchor of a statement that is not an entry: what the printer calls it.
fn stmt_kind(k: &ItemKind) -> &'static str {
    match k {
        ItemKind::Version(_)
        | ItemKind::Default { .. }
        | ItemKind::Mode(_)
        | ItemKind::Lists(_)
        | ItemKind::Hide { .. }
        | ItemKind::Empty(_) => k.describe(),
        _ => "(other)",
    }
}

fn block_points(points: &mut Vec<(usize, usize, Anchor)>, block: &str, body: &[BlockItem]) {
    let mut counts: HashMap<&'static str, usize> = HashMap::new();
    for b in body {
        let kind = match &b.kind {
            BlockKind::Deny { .. } => "deny",
            BlockKind::Require { .. } => "require",
            BlockKind::Approval { .. } => "approval",
            BlockKind::Limit(_) => "limit",
            BlockKind::Mode(_) => "mode",
            BlockKind::NoLimits => "no_limits",
            BlockKind::NoRequire => "no_require",
            BlockKind::NoDeny => "no_deny",
        };
        let n = counts.entry(kind).or_insert(0);
        points.push((
            b.span.start,
            b.span.end,
            Anchor::Item(block.to_owned(), kind, *n),
        ));
        *n += 1;
    }
}

fn line_end(text: &str, from: usize) -> usize {
    text[from..].find('\n').map_or(text.len(), |i| from + i)
}

/// `(start, text)` of every `#` comment, skipping `#` inside strings and `/regex/`s.
fn scan(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    let mut last_word = String::new();
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                last_word.clear();
            }
            b'/' if last_word == "matches" => {
                i += 1;
                while i < b.len() && b[i] != b'/' && b[i] != b'\n' {
                    i += 1;
                }
                i += 1;
                last_word.clear();
            }
            b'#' => {
                let end = text[i..].find('\n').map_or(text.len(), |e| i + e);
                out.push((i, text[i..end].trim_end().to_owned()));
                i = end;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                last_word = text[start..i].to_owned();
            }
            c => {
                if !c.is_ascii_whitespace() {
                    last_word.clear();
                }
                i += 1;
            }
        }
    }
    out
}
