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
    serde_json::from_str::<Value>(text).map_err(|_| {
        let (sign, digits) = match text.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", text),
        };
        // JSON refuses leading zeros; the grammar lets them through to say so here.
        if digits.starts_with('0') && digits.as_bytes().get(1).is_some_and(u8::is_ascii_digit) {
            let rest = digits.trim_start_matches('0');
            let zero = if rest.starts_with(|c: char| c.is_ascii_digit()) {
                ""
            } else {
                "0"
            };
            Diagnostic::new(span, "a number cannot start with 0")
                .with_help(format!("write `{sign}{zero}{rest}`"))
        } else {
            Diagnostic::new(span, "number out of range")
                .with_help("numbers must fit in a 64-bit float (about ±1.8e308)")
        }
    })
}

/// A whole number: a limit, a window or a timeout.
pub fn integer(text: &str, span: Span) -> Result<u64, Diagnostic> {
    text.parse::<u64>().map_err(|_| {
        Diagnostic::new(span, "number too large")
            .with_help(format!("whole numbers here go up to {}", u64::MAX))
    })
}
