//! Finds where a JSON Pointer lives in JSON source text, so problems found on the parsed
//! value can be shown at a file:line:column. Iterative, so any nesting depth is safe.

use std::ops::Range;

use crate::problem::Target;

/// Byte range of the key (for [`Target::Key`]) or of the value that `pointer` names.
pub fn span(text: &str, pointer: &str, target: Target) -> Option<Range<usize>> {
    let tokens = crate::pointer::tokens(pointer)?;
    let b = text.as_bytes();
    let mut pos = skip_ws(b, 0);
    let last = tokens.len().checked_sub(1);
    for (n, token) in tokens.iter().enumerate() {
        match b.get(pos)? {
            b'{' => {
                pos += 1;
                loop {
                    pos = skip_ws(b, pos);
                    if b.get(pos)? != &b'"' {
                        return None;
                    }
                    let key_end = string_end(b, pos)?;
                    let key: String = serde_json::from_str(text.get(pos..key_end)?).ok()?;
                    let key_span = pos..key_end;
                    pos = skip_ws(b, key_end);
                    if b.get(pos)? != &b':' {
                        return None;
                    }
                    pos = skip_ws(b, pos + 1);
                    if key == *token {
                        if Some(n) == last && target == Target::Key {
                            return Some(key_span);
                        }
                        break;
                    }
                    pos = skip_ws(b, value_end(b, pos)?);
                    if b.get(pos)? != &b',' {
                        return None;
                    }
                    pos += 1;
                }
            }
            b'[' => {
                let want: usize = token.parse().ok()?;
                pos = skip_ws(b, pos + 1);
                for _ in 0..want {
                    pos = skip_ws(b, value_end(b, pos)?);
                    if b.get(pos)? != &b',' {
                        return None;
                    }
                    pos = skip_ws(b, pos + 1);
                }
            }
            _ => return None,
        }
    }
    Some(pos..value_end(b, pos)?)
}

/// 1-based line and column (in characters) of a byte offset.
/// The byte offset of a 1-based line and column (columns count characters).
pub fn offset(text: &str, line: usize, column: usize) -> usize {
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

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn skip_ws(b: &[u8], mut pos: usize) -> usize {
    while matches!(b.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

/// End (exclusive) of the string starting at `pos`.
fn string_end(b: &[u8], pos: usize) -> Option<usize> {
    let mut i = pos + 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// End (exclusive) of the value starting at `pos`.
fn value_end(b: &[u8], pos: usize) -> Option<usize> {
    match b.get(pos)? {
        b'"' => string_end(b, pos),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = pos;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = string_end(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = pos;
            while !matches!(
                b.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                i += 1;
            }
            (i > pos).then_some(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
  "version": "1",
  "tools": {
    "a/b": {"limits": [ {"max": 0}, {"max": "x", "windw": 1} ]},
    "q\"k": {}
  }
}"#;

    fn at(pointer: &str, target: Target) -> Option<&'static str> {
        span(DOC, pointer, target).map(|r| &DOC[r])
    }

    #[test]
    fn finds_values_and_keys() {
        assert_eq!(at("/version", Target::Value), Some(r#""1""#));
        assert_eq!(at("/tools/a~1b/limits/0/max", Target::Value), Some("0"));
        assert_eq!(
            at("/tools/a~1b/limits/1/max", Target::Value),
            Some(r#""x""#)
        );
        assert_eq!(
            at("/tools/a~1b/limits/1/windw", Target::Key),
            Some(r#""windw""#)
        );
        assert_eq!(at("/tools/q\"k", Target::Key), Some(r#""q\"k""#));
        assert_eq!(at("/tools/a~1b/limits/2", Target::Value), None);
        assert_eq!(at("/nothing", Target::Value), None);
        assert_eq!(at("", Target::Value).map(str::len), Some(DOC.len()));
    }

    #[test]
    fn line_and_column() {
        let r = span(DOC, "/tools/a~1b/limits/0/max", Target::Value).unwrap();
        assert_eq!(line_col(DOC, r.start), (4, 33));
    }

    #[test]
    fn survives_garbage_and_depth() {
        assert_eq!(span("{\"a\": ", "/a", Target::Value), None);
        assert_eq!(span("[[[[", "/0/0/0/0/0", Target::Value), None);
        let deep = "[".repeat(100_000);
        assert_eq!(span(&deep, "/0", Target::Value), None);
    }
}
