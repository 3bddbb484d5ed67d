//! Diagnostics on stderr: miette reports with the file, line, column and source line.

use std::io::IsTerminal;

use warden_dsl::Diagnostic;
use warden_policy::{Problem, locate};

use crate::error::CliError;
use crate::source::Source;

/// Colour only for a person at a terminal.
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn emit(src: &Source, d: &Diagnostic) {
    eprintln!("{}", d.render(&src.name(), &src.text, color()));
}

/// A problem stated on the model, shown where it was written: through the source map for
/// `.pol`, by finding its JSON Pointer in the text for `.json`.
pub fn problem(src: &Source, p: &Problem, warning: bool) {
    let mut d = match &src.map {
        Some(map) => warden_dsl::problem_diagnostic(p, map, &src.text),
        None => {
            let span = locate::span(&src.text, &p.pointer, p.target)
                .map(|r| r.start..r.end.min(r.start + 200).max(r.start))
                .unwrap_or(0..0);
            let at = if p.pointer.is_empty() {
                "(document)"
            } else {
                &p.pointer
            };
            let mut d = Diagnostic::new(span, format!("{at}: {}", p.message));
            d.help = p.help.clone();
            d
        }
    };
    d.warning = warning;
    emit(src, &d);
}

/// A JSON syntax error at a 1-based line and column.
pub fn json_syntax(src: &Source, line: usize, column: usize, message: &str) {
    let offset = offset_of(&src.text, line, column);
    emit(
        src,
        &Diagnostic::new(offset..offset, format!("invalid JSON: {message}")),
    );
}

fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let line_text = text
        .get(start..)
        .unwrap_or("")
        .split('\n')
        .next()
        .unwrap_or("");
    let col: usize = line_text
        .chars()
        .take(column.saturating_sub(1))
        .map(char::len_utf8)
        .sum();
    (start + col).min(text.len())
}

/// A failure that is not a located problem (already-printed problems end in a summary).
pub fn error(e: &CliError) {
    eprintln!("error: {e}");
}
