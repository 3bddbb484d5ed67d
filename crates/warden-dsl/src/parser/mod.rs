//! Text → [`crate::ast::File`].
//!
//! `grammar/warden.pest` defines the language and pest, through [`grammar`], writes every
//! syntax diagnostic. [`fast`] reads the same grammar by hand, without pest's bookkeeping for
//! error messages, and is tried first: a valid file never reaches pest. The differential
//! tests keep the two in agreement.

mod fast;
mod grammar;
mod literal;
mod mistakes;

#[cfg(test)]
mod differential;

use crate::ast::File;

/// The keywords that start a statement: both readers stop a list of names at one, and
/// diagnostics name the statements instead of listing these.
pub(crate) const STATEMENT_WORDS: &[&str] = &[
    "version",
    "default",
    "defaults",
    "mode",
    "lists",
    "hide",
    "all",
    "tools",
    "resources",
    "prompts",
    "server_requests",
    "allow",
    "tool",
    "resource",
    "prompt",
    "server_request",
];
use crate::diagnostic::Diagnostic;

/// Larger inputs are refused up front: a policy is configuration, not data.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024 * 1024;

/// Every syntax error of `text`, or its AST.
pub fn parse(text: &str) -> Result<File, Vec<Diagnostic>> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(vec![Diagnostic::new(
            0..0,
            format!(
                "file is too large ({} bytes; the limit is {MAX_SOURCE_BYTES})",
                text.len()
            ),
        )]);
    }
    match fast::parse(text) {
        Some(file) => Ok(file),
        None => grammar::parse(text),
    }
}

/// pest's reader alone, for the benchmark that compares both.
#[doc(hidden)]
pub fn parse_with_pest(text: &str) -> Result<File, Vec<Diagnostic>> {
    grammar::parse(text)
}
