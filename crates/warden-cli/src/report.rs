//! Diagnostics on stderr: miette reports with the file, line, column and source line.

use std::io::IsTerminal;

use warden_dsl::Diagnostic;
use warden_policy::Problem;

use crate::error::CliError;
use crate::source::Source;

/// Colour only for a person at a terminal.
pub fn color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

pub fn emit(src: &Source, d: &Diagnostic) {
    eprintln!("{}", d.render(&src.name(), &src.text, color()));
}

/// A warning about a valid policy, at its place in the file.
pub fn warning(src: &Source, p: &Problem) {
    emit(src, &src.diagnostic(p).warning());
}

/// A failure that is not a located problem (already-printed problems end in a summary).
pub fn error(e: &CliError) {
    eprintln!("error: {e}");
}
