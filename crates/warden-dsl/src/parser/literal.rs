//! Literals as written in `.pol`, decoded the same way whichever parser read them.

use serde_json::Value;

use crate::ast::Span;
use crate::diagnostic::Diagnostic;

/// A string literal, quotes included. `.pol` strings take JSON's escapes, so JSON decodes
/// the ones that have any.
pub fn string(quoted: &str, span: Span) -> Result<String, Diagnostic> {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(quoted);
    // JSON refuses control characters in strings; anything else without a `\` is itself.
    if !inner.bytes().any(|b| b == b'\\' || b < 0x20) {
        return Ok(inner.to_owned());
    }
    serde_json::from_str::<String>(quoted).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or("invalid string");
        Diagnostic::new(span, format!("invalid string: {msg}"))
            .with_help("strings take JSON escapes: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX")
    })
}

/// A number in JSON's syntax (the grammar has already checked the shape).
pub fn number(text: &str, span: Span) -> Result<Value, Diagnostic> {
    serde_json::from_str::<Value>(text).map_err(|_| Diagnostic::new(span, "number out of range"))
}

/// A whole number: a limit, a window or a timeout.
pub fn integer(text: &str, span: Span) -> Result<u64, Diagnostic> {
    text.parse::<u64>()
        .map_err(|_| Diagnostic::new(span, "number too large"))
}
