//! Mistakes a person makes with the kinds of entry (resources, prompts, server requests), told
//! as such. pest reports where the text stopped making sense, which for these is often a word
//! later than the mistake: `default allow resource` reads as `default allow` followed by a
//! broken `resource` block. Given the statements that did read, this finds the mistake and
//! says what was meant; [`super::grammar`] falls back on pest's message otherwise.

use super::STATEMENT_WORDS;
use warden_policy::{Kind, did_you_mean};

use super::fast;
use crate::ast::{Item, ItemKind, Span};
use crate::diagnostic::Diagnostic;

const KINDS: [&str; 5] = [
    "tools",
    "resources",
    "prompts",
    "methods",
    "server_requests",
];
const KINDS_HELP: &str =
    "the kinds are `tools`, `resources`, `prompts`, `methods` and `server_requests`";

/// A token: a word (letters, digits, `_`), a string in quotes, or one other character.
#[derive(Debug, Clone, Copy)]
struct Tok<'a> {
    span: (usize, usize),
    text: &'a str,
}

impl Tok<'_> {
    fn is_word(&self) -> bool {
        self.text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }
    fn is_string(&self) -> bool {
        self.text.starts_with('"')
    }
    fn span(&self) -> Span {
        self.span.0..self.span.1
    }
}

/// The token at or after `from`, blanks and comments skipped.
fn token(text: &str, from: usize) -> Option<Tok<'_>> {
    let b = text.as_bytes();
    let mut i = from;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => i = text[i..].find('\n').map_or(b.len(), |n| i + n),
            _ => break,
        }
    }
    let start = i;
    let end = match *b.get(i)? {
        c if c.is_ascii_alphanumeric() || c == b'_' => {
            start
                + b[start..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count()
        }
        b'"' => {
            let mut j = start + 1;
            while j < b.len() && b[j] != b'"' && b[j] != b'\n' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(b.len())
        }
        _ => start + text[start..].chars().next().map_or(1, char::len_utf8),
    };
    Some(Tok {
        span: (start, end),
        text: text.get(start..end)?,
    })
}

/// No line break between the two offsets.
fn same_line(text: &str, a: usize, b: usize) -> bool {
    !text.get(a.min(b)..a.max(b)).unwrap_or("\n").contains('\n')
}

/// Whether the token after `t` on its line is `,` or there is none.
fn ends_line_or_list(text: &str, t: &Tok<'_>) -> bool {
    match token(text, t.span.1) {
        Some(next) => next.text == "," || !same_line(text, t.span.1, next.span.0),
        None => true,
    }
}

/// The mistake behind a syntax error pest found at `pos`, if it is one of these.
pub(super) fn explain(text: &str, pos: usize) -> Option<Diagnostic> {
    let (items, start) = fast::prefix(text);
    let first = token(text, start)?;
    let prev = items.last();
    // pest may stop at the start of a block header that holds one: look there too.
    let in_header = header_colon_or_slash(text, start);
    uri_unquoted(text, pos)
        .or_else(|| in_header.and_then(|at| uri_unquoted(text, at)))
        .or_else(|| prev.and_then(|p| after_default(text, p, &first)))
        .or_else(|| prev.and_then(|p| after_allow(text, p, &first)))
        .or_else(|| in_statement(text, pos, &first))
}

/// `default allow resource`, `default deny resources prompts`, `default allow everything`.
fn after_default(text: &str, prev: &Item, first: &Tok<'_>) -> Option<Diagnostic> {
    let ItemKind::Default { kinds, .. } = &prev.kind else {
        return None;
    };
    if !same_line(text, prev.span.end, first.span.0) {
        return None;
    }
    let word = if first.text == "," {
        token(text, first.span.1)?
    } else {
        *first
    };
    if !word.is_word() || !same_line(text, prev.span.end, word.span.0) {
        return None;
    }
    if KINDS.contains(&word.text) {
        // Only a missing comma keeps a kind from being read.
        return (!kinds.is_empty() && first.text != ",").then(|| {
            Diagnostic::new(word.span(), "expected `,` between kinds").with_help(format!(
                "separate the kinds with commas: `default allow resources, {}`",
                word.text
            ))
        });
    }
    // `default allow` followed by a block on the same line (`default allow tool x { … }`)
    // is a valid start: the mistake is elsewhere.
    if STATEMENT_WORDS.contains(&word.text) && !ends_line_or_list(text, &word) {
        return None;
    }
    Some(unknown_kind(&word))
}

fn unknown_kind(word: &Tok<'_>) -> Diagnostic {
    let d = Diagnostic::new(word.span(), format!("unknown kind `{}`", word.text));
    match did_you_mean(word.text, KINDS) {
        Some(k) => d.with_help(format!("did you mean `{k}`? {KINDS_HELP}")),
        None => d.with_help(format!(
            "{KINDS_HELP}; `default allow` alone sets the default of every kind"
        )),
    }
}

/// `allow resources "uri"` (the plural), and `allow prompt default` (a name that is a
/// statement word): both read as `allow` of a tool, followed by a statement that is not one.
fn after_allow(text: &str, prev: &Item, first: &Tok<'_>) -> Option<Diagnostic> {
    let ItemKind::Allow {
        kind: Kind::Tool,
        names,
    } = &prev.kind
    else {
        return None;
    };
    let last = names.last()?;
    if !same_line(text, last.span.end, first.span.0) {
        return None;
    }
    let word = text.get(last.span.clone())?;
    if let Some(singular) = match word {
        "resources" => Some("resource"),
        "prompts" => Some("prompt"),
        "server_requests" => Some("server_request"),
        _ => None,
    } && (first.is_string() || first.is_word() && !STATEMENT_WORDS.contains(&first.text))
    {
        return Some(
            Diagnostic::new(
                last.span.clone(),
                format!("`allow {word}` allows a tool named `{word}`"),
            )
            .with_help(format!(
                "an entry of a kind is allowed with the singular word: `allow {singular} {}`",
                first.text
            )),
        );
    }
    if names.len() == 1
        && matches!(word, "resource" | "prompt" | "server_request")
        && STATEMENT_WORDS.contains(&first.text)
    {
        let noun = word.replace('_', " ");
        return Some(
            Diagnostic::new(first.span(), format!("a {noun} named `{}` is written as a string", first.text))
                .with_help(format!(
                    "`allow {word} \"{}\"`: unquoted, `{}` starts a statement, and `allow {word}` allows a tool named `{word}`",
                    first.text, first.text
                )),
        );
    }
    None
}

/// Mistakes inside the statement that failed: `hide resource [..]`, `all resources { }`,
/// `lists every`.
fn in_statement(text: &str, pos: usize, first: &Tok<'_>) -> Option<Diagnostic> {
    let second = token(text, first.span.1)?;
    if second.span.0 != pos || !second.is_word() && !second.is_string() {
        return None;
    }
    match first.text {
        "hide" => {
            let d = Diagnostic::new(
                second.span(),
                format!("expected `resources`, `prompts` or a list in [ ], found `{}`", second.text),
            );
            Some(match second.text {
                "tools" | "tool" => d.with_help("tools are hidden by `hide [..]` alone: `hide [delete_*]`"),
                w => match did_you_mean(w, ["resources", "prompts"]) {
                    Some(k) => d.with_help(format!("did you mean `hide {k} [..]`?")),
                    None => d.with_help("`hide [..]` hides tools, `hide resources [..]` resources and `hide prompts [..]` prompts"),
                },
            })
        }
        "all" if second.text != "tools" => Some(
            Diagnostic::new(second.span(), format!("expected `tools`, found `{}`", second.text))
                .with_help("`all tools { … }` is for tools only: rules for every resource or prompt go in a glob's block, `resource \"*\" { … }` or `prompt * { … }`"),
        ),
        "lists" => Some(
            Diagnostic::new(second.span(), format!("expected `callable` or `all`, found `{}`", second.text))
                .with_help("`lists callable` (the default) shows each caller what it could call; `lists all` shows everything that is not hidden"),
        ),
        _ => None,
    }
}

/// The first `:` or `/` outside strings on the line from `start`, before any `{`.
fn header_colon_or_slash(text: &str, start: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'\n' | b'{' | b'#' => return None,
            b':' | b'/' => return Some(i),
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// `allow resource file:///srv/x`: a URI (or any name with `:` or `/`) left unquoted.
fn uri_unquoted(text: &str, pos: usize) -> Option<Diagnostic> {
    let b = text.as_bytes();
    if !matches!(b.get(pos), Some(b':' | b'/')) {
        return None;
    }
    let is_name =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'*' | b'?');
    let run_start = pos - b[..pos].iter().rev().take_while(|c| is_name(**c)).count();
    if run_start == pos {
        return None;
    }
    // What comes before the name: a word that takes names, a comma or a `[`.
    let before = text[..run_start].trim_end();
    let takes_names = [
        "allow",
        "resource",
        "prompt",
        "server_request",
        "tool",
        ",",
        "[",
    ]
    .iter()
    .any(|w| {
        before.ends_with(w)
            && !before[..before.len() - w.len()]
                .bytes()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
    });
    if !takes_names {
        return None;
    }
    let end = run_start
        + text[run_start..]
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | '{' | ']' | '"' | '#'))
            .unwrap_or(text.len() - run_start);
    let written = &text[run_start..end];
    Some(
        Diagnostic::new(run_start..end, format!("`{written}` must be written as a string"))
            .with_help(format!(
                "a bare name has only letters, digits and `_ - . * ?`; URIs and names with `:` or `/` take double quotes: `\"{written}\"`"
            )),
    )
}
