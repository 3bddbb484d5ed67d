//! Finding the parts of a JSON-RPC list answer without building it as values: where the
//! envelope's fields are, where each list entry starts and ends, and each entry's name.
//!
//! A list answer can be megabytes of tool schemas of which the gate needs only the names;
//! turning it all into `serde_json::Value`s cost ten times what forwarding it does. Strings
//! are skipped with `memchr` (schemas are mostly descriptions). The scanner checks structure
//! as far as it walks (brackets balance, keys are strings, `:` and `,` where they belong),
//! but it is no validator: a caller that gets `None` falls back to a full parse.

use std::borrow::Cow;
use std::ops::Range;

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end of the string whose opening quote is at `i` (just past its closing quote).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        match b[j] {
            b'\\' => j += 2,
            _ => return Some(j + 1),
        }
    }
}

/// The end of the value that starts at `i` (whitespace before it skipped).
pub(crate) fn value_end(b: &[u8], i: usize) -> Option<usize> {
    let i = ws(b, i);
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            // Brackets are counted by kind: `{]` is refused.
            let mut stack: Vec<u8> = vec![b[i]];
            let mut j = i + 1;
            while let Some(&c) = b.get(j) {
                match c {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => stack.push(c),
                    b'}' | b']' => {
                        let open = stack.pop()?;
                        if (open == b'{') != (c == b'}') {
                            return None;
                        }
                        if stack.is_empty() {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                j += 1;
            }
            Some(j)
        }
        _ => None,
    }
}

fn key(b: &[u8], range: Range<usize>) -> Option<Cow<'_, str>> {
    let raw = b.get(range)?;
    let inner = raw.get(1..raw.len().checked_sub(1)?)?;
    if memchr::memchr(b'\\', inner).is_none() {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(raw).ok().map(Cow::Owned)
}

/// Walks the object that starts at `start`: for each field, `value(key, at)` reads (or
/// skips) the value at `at` and says where it ends. The end of the object, past its `}`.
/// Each byte is looked at once however deep the caller descends.
pub(crate) fn fields<'a>(
    b: &'a [u8],
    start: usize,
    mut value: impl FnMut(Cow<'a, str>, usize) -> Option<usize>,
) -> Option<usize> {
    let mut i = ws(b, start);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let k_end = string_end(b, i)?;
        let k = key(b, i..k_end)?;
        i = ws(b, k_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let v_start = ws(b, i + 1);
        i = ws(b, value(k, v_start)?);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b'}') => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Walks the array that starts at `start`: `item(at)` reads each item and says where it
/// ends. The end of the array, past its `]`.
pub(crate) fn items(
    b: &[u8],
    start: usize,
    mut item: impl FnMut(usize) -> Option<usize>,
) -> Option<usize> {
    let mut i = ws(b, start);
    if b.get(i) != Some(&b'[') {
        return None;
    }
    i = ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some(i + 1);
    }
    loop {
        i = ws(b, item(i)?);
        match b.get(i) {
            Some(b',') => i = ws(b, i + 1),
            Some(b']') => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Whether only whitespace follows `end`.
pub(crate) fn ends_at(b: &[u8], end: usize) -> bool {
    ws(b, end) == b.len()
}

/// The string value at `range`, unescaped; `None` when it is not a string.
pub(crate) fn string(b: &[u8], range: Range<usize>) -> Option<Cow<'_, str>> {
    if b.get(range.start) != Some(&b'"') {
        return None;
    }
    key(b, range)
}

/// `b` as JSON, read as JavaScript's `JSON.parse` reads it (the reader of most MCP
/// clients) where serde_json refuses it: text that is not UTF-8 decoded with replacement, a
/// lone surrogate escape taken (here as U+FFFD), a number beyond f64 taken as infinite (here
/// as the largest finite one). `None` when it is not JSON even so.
pub(crate) fn lenient(b: &[u8]) -> Option<serde_json::Value> {
    if let Ok(v) = serde_json::from_slice(b) {
        return Some(v);
    }
    let text = String::from_utf8_lossy(b);
    serde_json::from_str(&as_javascript_reads(&text)).ok()
}

/// `text` with what JavaScript reads and serde_json refuses made readable to serde_json.
fn as_javascript_reads(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let hex = |at: usize| {
        b.get(at..at + 4)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
    };
    let mut i = 0;
    let mut copied = 0;
    let mut in_string = false;
    while i < b.len() {
        match (b[i], in_string) {
            (b'"', _) => {
                in_string = !in_string;
                i += 1;
            }
            (b'\\', true) if b.get(i + 1) == Some(&b'u') => {
                let lone = match hex(i + 2) {
                    Some(0xD800..=0xDBFF) => {
                        let pair = b.get(i + 6..i + 8) == Some(&b"\\u"[..]);
                        !(pair && matches!(hex(i + 8), Some(0xDC00..=0xDFFF)))
                    }
                    Some(0xDC00..=0xDFFF) => true,
                    _ => false,
                };
                if lone {
                    out.push_str(&text[copied..i]);
                    out.push_str("\\ufffd");
                    copied = i + 6;
                    i += 6;
                } else {
                    // A pair is taken whole: its low half is not lone.
                    i += if matches!(hex(i + 2), Some(0xD800..=0xDBFF)) {
                        12
                    } else {
                        2
                    };
                }
            }
            (b'\\', true) => i += 2,
            (b'-' | b'0'..=b'9', false) => {
                let end = b[i..]
                    .iter()
                    .position(|c| !matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .map_or(b.len(), |n| i + n);
                if let Some(f) = text[i..end].parse::<f64>().ok().filter(|f| f.is_infinite()) {
                    out.push_str(&text[copied..i]);
                    out.push_str(if f < 0.0 {
                        "-1.7976931348623157e308"
                    } else {
                        "1.7976931348623157e308"
                    });
                    copied = end;
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    out
}

/// Whether `b` is one object (as far as the scanner follows it) with no `method` key: a
/// response, not a request or a notification.
pub(crate) fn is_response(b: &[u8]) -> bool {
    let mut method = false;
    let end = fields(b, ws(b, 0), |k, at| {
        method |= k == "method";
        value_end(b, at)
    });
    end.is_some_and(|e| ends_at(b, e)) && !method
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the object at `at`, keys and values as text.
    fn walk(b: &[u8]) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        let end = fields(b, 0, |k, at| {
            let end = value_end(b, at)?;
            out.push((
                k.into_owned(),
                String::from_utf8_lossy(&b[at..end]).into_owned(),
            ));
            Some(end)
        })?;
        ends_at(b, end).then_some(out)
    }

    #[test]
    fn finds_fields_items_and_names_as_serde_json_reads_them() {
        let text = br#" {"jsonrpc":"2.0", "id" : 7, "result": {"tools": [
            {"name": "a\"b", "inputSchema": {"type": "object", "properties": {"x": [1, {"y": "}]"}]}}},
            {"description": "\\", "name": "c"} ], "nextCursor": null}} "#;
        let mut names = Vec::new();
        let mut items_seen = Vec::new();
        let end = fields(text, 1, |k, at| {
            if k != "result" {
                return value_end(text, at);
            }
            fields(text, at, |rk, rat| {
                if rk != "tools" {
                    return value_end(text, rat);
                }
                items(text, rat, |item| {
                    let end = fields(text, item, |ek, eat| {
                        let end = value_end(text, eat)?;
                        if ek == "name" {
                            names.push(string(text, eat..end)?.into_owned());
                        }
                        Some(end)
                    })?;
                    items_seen.push(item..end);
                    Some(end)
                })
            })
        })
        .unwrap();
        assert!(ends_at(text, end));
        assert_eq!(names, ["a\"b", "c"]);
        for item in items_seen {
            let v: serde_json::Value = serde_json::from_slice(&text[item]).unwrap();
            assert!(v.is_object());
        }
        let top = walk(br#"{"a": 1, "b" :"x\"y", "c": [true, null]}"#).unwrap();
        assert_eq!(top[1], ("b".to_owned(), r#""x\"y""#.to_owned()));
        assert_eq!(top[2].1, "[true, null]");
    }

    #[test]
    fn broken_structure_is_refused() {
        for bad in [
            &br#"{"a": [1, 2}"#[..],
            br#"{"a": 1,}"#,
            br#"{"a" 1}"#,
            br#"{a: 1}"#,
            br#"{"a": "unterminated}"#,
            br#"{"a": 1} trailing"#,
            br#"{"a": {]}"#,
        ] {
            assert!(walk(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
