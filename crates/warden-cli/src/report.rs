//! Diagnostics on stderr: miette reports with the file, line, column and source line.

use std::io::IsTerminal;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource, SourceSpan};
use warden_policy::{Problem, locate};

use crate::error::CliError;
use crate::source::Source;

#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
struct Located {
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("{label}")]
    span: Option<SourceSpan>,
    label: String,
    #[help]
    help: Option<String>,
}

/// Colour only for a person at a terminal.
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn handler() -> GraphicalReportHandler {
    let theme = if color() {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    GraphicalReportHandler::new_themed(theme).with_width(100)
}

fn emit(d: &dyn Diagnostic) {
    let mut out = String::new();
    if handler().render_report(&mut out, d).is_err() {
        out = d.to_string();
    }
    eprintln!("{out}");
}

/// A problem found on the parsed JSON, shown where its pointer lands in the text.
pub fn json_problem(src: &Source, p: &Problem) {
    let span = locate::span(&src.text, &p.pointer, p.target);
    let at = if p.pointer.is_empty() {
        "(document)".to_string()
    } else {
        p.pointer.clone()
    };
    emit(&Located {
        message: format!("{at}: {}", p.message),
        src: NamedSource::new(src.name(), src.text.clone()),
        span: span.map(|r| SourceSpan::from(r.start..r.end.min(r.start + 200).max(r.start))),
        label: "here".into(),
        help: p.help.clone(),
    });
}

/// A JSON syntax error at a 1-based line and column.
pub fn json_syntax(src: &Source, line: usize, column: usize, message: &str) {
    let offset = offset_of(&src.text, line, column);
    emit(&Located {
        message: format!("invalid JSON: {message}"),
        src: NamedSource::new(src.name(), src.text.clone()),
        span: Some(SourceSpan::from(offset..offset)),
        label: "here".into(),
        help: None,
    });
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
