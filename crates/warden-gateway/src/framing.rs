//! Newline-delimited JSON-RPC messages (`warden stdio`), read with a bound: a line longer
//! than the limit is discarded as it streams, never buffered whole, and answered with a
//! JSON-RPC error naming the request's id (found in the line's first few KiB).

use bytes::Bytes;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What one line of input was.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// A message within the limit, without its line end.
    Message(Bytes),
    /// A message over the limit: its top-level `id` if one was seen near its start, and its
    /// length.
    TooLong { id: Value, bytes: usize },
}

/// How much of an over-long line's start is kept to find its `id`.
const HEAD: usize = 4096;
/// And of its end: serializers that write `result` first put the `id` last.
const TAIL: usize = 256;

/// Reads the next line (`None` at the end of input).
pub async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Option<Line>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut tail: Vec<u8> = Vec::new();
    let mut over = false;
    let mut total = 0usize;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            if total == 0 {
                return Ok(None);
            }
            break;
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        total += take;
        if over {
            keep_tail(&mut tail, &chunk[..take]);
        } else if buf.len() + take > max.saturating_add(2) {
            // Keep only the head and the tail, for the id; the rest streams past.
            over = true;
            keep_tail(&mut tail, &buf[buf.len().saturating_sub(TAIL)..]);
            keep_tail(&mut tail, &chunk[..take]);
            buf.truncate(HEAD);
            let room = HEAD.saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..take.min(room)]);
        } else {
            buf.extend_from_slice(&chunk[..take]);
        }
        reader.consume(take);
        if done {
            break;
        }
    }
    if over {
        let id = match top_level_id(&buf) {
            Value::Null => last_top_level_id(&tail),
            id => id,
        };
        return Ok(Some(Line::TooLong { id, bytes: total }));
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    if buf.len() > max {
        return Ok(Some(Line::TooLong {
            id: top_level_id(&buf),
            bytes: total,
        }));
    }
    Ok(Some(Line::Message(Bytes::from(buf))))
}

/// The `id` member of the top-level object in (the start of) a JSON text, if it is a
/// string or a number and appears before the text is cut off; `null` otherwise.
pub fn top_level_id(text: &[u8]) -> Value {
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                let Some(end) = string_end(text, i) else {
                    return Value::Null;
                };
                if depth == 1 && expect_key {
                    expect_key = false;
                    let key = &text[i + 1..end - 1];
                    let mut j = skip_ws(text, end);
                    if text.get(j) != Some(&b':') {
                        return Value::Null;
                    }
                    j = skip_ws(text, j + 1);
                    if key == b"id" {
                        return scalar_at(text, j);
                    }
                    i = j;
                    continue;
                }
                i = end;
                continue;
            }
            b'{' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    Value::Null
}

fn keep_tail(tail: &mut Vec<u8>, more: &[u8]) {
    tail.extend_from_slice(&more[more.len().saturating_sub(TAIL)..]);
    let excess = tail.len().saturating_sub(TAIL);
    tail.drain(..excess);
}

/// The `id` of an object's end (`…,"id":7}`): a string or number member that only the
/// object's own closing brace follows, so it is the top level's. `null` otherwise.
fn last_top_level_id(tail: &[u8]) -> Value {
    let mut end = tail.len();
    while end > 0 && tail[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    // Exactly one closing brace: the object the id belongs to is the outermost one.
    if end == 0 || tail[end - 1] != b'}' {
        return Value::Null;
    }
    let body = &tail[..end - 1];
    let mut search = body.len();
    while let Some(at) = body[..search].windows(4).rposition(|w| w == b"\"id\"") {
        search = at;
        // The key's opening quote must start a key: after `{` or `,`, and not escaped.
        let before = body[..at].iter().rev().find(|b| !b.is_ascii_whitespace());
        if !matches!(before, Some(b',' | b'{')) {
            continue;
        }
        let colon = skip_ws(body, at + 4);
        if body.get(colon) != Some(&b':') {
            continue;
        }
        let value_at = skip_ws(body, colon + 1);
        let value = scalar_at(body, value_at);
        let value_end = match body.get(value_at) {
            Some(b'"') => string_end(body, value_at),
            Some(_) => Some(
                value_at
                    + body[value_at..]
                        .iter()
                        .take_while(|c| {
                            c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')
                        })
                        .count(),
            ),
            None => None,
        };
        // Nothing but whitespace between the value and the final brace.
        if value_end.is_some_and(|e| skip_ws(body, e) == body.len()) {
            return value;
        }
        return Value::Null;
    }
    Value::Null
}

/// The index just past the string starting at `start` (a `"`), if it ends.
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while text.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// A JSON string or number at `i`; `null` for anything else or a cut-off value.
fn scalar_at(text: &[u8], i: usize) -> Value {
    let end = match text.get(i) {
        Some(b'"') => string_end(text, i),
        Some(b) if b.is_ascii_digit() || *b == b'-' => Some(
            i + text[i..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
                .count(),
        ),
        _ => None,
    };
    end.and_then(|end| serde_json::from_slice(&text[i..end]).ok())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_top_level_id_is_found_wherever_it_is() {
        let id = |t: &str| top_level_id(t.as_bytes());
        assert_eq!(id(r#"{"jsonrpc":"2.0","id":7,"method":"x"}"#), json!(7));
        assert_eq!(id(r#"{ "id" : "a\"b", "x": 1}"#), json!("a\"b"));
        // Nested ids and strings that look like keys are not it.
        assert_eq!(
            id(r#"{"params":{"id":1,"s":"\"id\":2"},"id":-3.5}"#),
            json!(-3.5)
        );
        assert_eq!(id(r#"{"method":"x","params":{"id":1}"#), Value::Null);
        // Cut off in the middle of the id: unknown.
        assert_eq!(id(r#"{"id":"abc"#), Value::Null);
        assert_eq!(id(r#"[{"id":1}]"#), Value::Null);
        assert_eq!(id("not json"), Value::Null);
    }

    #[test]
    fn an_id_written_last_is_found_at_the_end() {
        let id = |t: &str| last_top_level_id(t.as_bytes());
        assert_eq!(id(r#"...truncated,"jsonrpc":"2.0","id":90}"#), json!(90));
        assert_eq!(id(r#"xx"}]},"id" : "r-1" }  "#), json!("r-1"));
        // A nested object's id, an id inside a string, or no final brace: not it.
        assert_eq!(id(r#"...,"x":{"id":5}}"#), Value::Null);
        assert_eq!(id(r#"...,"text":"say \"id\":5"}"#), Value::Null);
        assert_eq!(id(r#"...,"id":5"#), Value::Null);
        assert_eq!(id(r#"..."id":5}"#), Value::Null);
    }

    #[tokio::test]
    async fn an_over_long_answer_with_its_id_last_is_named() {
        let big = format!(
            r#"{{"result":{{"content":"{}"}},"jsonrpc":"2.0","id":"abc"}}"#,
            "y".repeat(50_000)
        );
        let input = format!("{big}\n");
        let mut r = tokio::io::BufReader::with_capacity(1000, input.as_bytes());
        assert_eq!(
            next_line(&mut r, 4096).await.unwrap(),
            Some(Line::TooLong {
                id: json!("abc"),
                bytes: big.len() + 1
            })
        );
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_skipped_as_it_streams() {
        let big = format!(
            r#"{{"jsonrpc":"2.0","id":42,"params":"{}"}}"#,
            "x".repeat(100_000)
        );
        let input = format!("{{\"id\":1}}\r\n{big}\n{{\"id\":2}}\nlast");
        let mut r = tokio::io::BufReader::with_capacity(1024, input.as_bytes());
        let max = 1000;
        assert_eq!(
            next_line(&mut r, max).await.unwrap(),
            Some(Line::Message(Bytes::from(r#"{"id":1}"#)))
        );
        assert_eq!(
            next_line(&mut r, max).await.unwrap(),
            Some(Line::TooLong {
                id: json!(42),
                bytes: big.len() + 1
            })
        );
        assert_eq!(
            next_line(&mut r, max).await.unwrap(),
            Some(Line::Message(Bytes::from(r#"{"id":2}"#)))
        );
        assert_eq!(
            next_line(&mut r, max).await.unwrap(),
            Some(Line::Message(Bytes::from("last")))
        );
        assert_eq!(next_line(&mut r, max).await.unwrap(), None);
    }
}
