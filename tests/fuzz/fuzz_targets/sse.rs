#![allow(dead_code)]
//! Reading an event stream as a client does (the SSE spec), and JSON as clients may.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The data of each event of `stream`, per the SSE spec: lines end in CRLF, LF or CR; `data`
/// lines join with LF; an event is dispatched at a blank line, and one cut off by the end of
/// the stream is not (`cut_off`: it is read all the same, as the gate filters it for
/// clients that don't follow the spec). `every_bom`: a byte order mark opening any event is
/// ignored, as the gate reads events (the spec ignores one only where the stream starts).
pub fn events(stream: &[u8], cut_off: bool, every_bom: bool) -> Vec<String> {
    let text = String::from_utf8_lossy(stream);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    let mut data_lines = 0;
    let mut first_line = true;
    let mut rest: &str = text;
    loop {
        let (line, next) = match rest.find(['\r', '\n']) {
            Some(end) => {
                let skip = if rest[end..].starts_with("\r\n") {
                    2
                } else {
                    1
                };
                (&rest[..end], &rest[end + skip..])
            }
            None if cut_off && !rest.is_empty() => (rest, ""),
            None => break,
        };
        rest = next;
        if line.is_empty() {
            if let Some(d) = data.take() {
                events.push(d);
            }
            data_lines = 0;
            first_line = true;
            continue;
        }
        let line = match (every_bom && first_line, line.strip_prefix('\u{feff}')) {
            (true, Some(l)) => l,
            _ => line,
        };
        first_line = false;
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        if field == "data" {
            let d = data.get_or_insert_with(String::new);
            if data_lines > 0 {
                d.push('\n');
            }
            data_lines += 1;
            d.push_str(value);
        }
    }
    if cut_off {
        if let Some(d) = data.take() {
            events.push(d);
        }
    }
    events
}

/// The events a client following the SSE spec dispatches.
pub fn dispatched(stream: &[u8]) -> Vec<String> {
    events(stream, false, false)
}

/// The readings a client may make of `text`: serde_json's (a repeated key's last value, as
/// most JSON libraries) and the first value's, of the text as JavaScript reads it; none
/// when it is not JSON even so.
pub fn readings(text: &str) -> Vec<Value> {
    let js = as_javascript_reads(text);
    let Ok(last) = serde_json::from_str::<Value>(&js) else {
        return Vec::new();
    };
    let mut de = serde_json::Deserializer::from_str(&js);
    match FirstWins::deserialize(&mut de) {
        Ok(FirstWins(first)) if first != last => vec![last, first],
        _ => vec![last],
    }
}

/// The messages of one reading: a message, or each of a batch's.
pub fn messages(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    }
}

/// JSON read keeping a repeated key's first value.
struct FirstWins(Value);

impl<'de> Deserialize<'de> for FirstWins {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FirstVisitor)
    }
}

struct FirstVisitor;

impl<'de> Visitor<'de> for FirstVisitor {
    type Value = FirstWins;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::from(v)))
    }
    fn visit_unit<E>(self) -> Result<FirstWins, E> {
        Ok(FirstWins(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstWins, A::Error> {
        let mut items = Vec::new();
        while let Some(FirstWins(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(FirstWins(Value::Array(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FirstWins, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let FirstWins(v) = map.next_value()?;
            m.entry(k).or_insert(v);
        }
        Ok(FirstWins(Value::Object(m)))
    }
}

/// `text` made readable to serde_json as JavaScript's `JSON.parse` reads it (the reader of
/// most MCP clients): a lone surrogate escape is taken (here as U+FFFD), and a number beyond
/// f64 is infinite (here the largest finite one). serde_json refuses both.
pub fn as_javascript_reads(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let hex = |at: usize| {
        text.get(at..at + 4)
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push('"');
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && b.get(i + 1) == Some(&b'u') {
                        match hex(i + 2) {
                            Some(hi @ 0xD800..=0xDBFF) => {
                                let lo = (b.get(i + 6) == Some(&b'\\')
                                    && b.get(i + 7) == Some(&b'u'))
                                .then(|| hex(i + 8))
                                .flatten();
                                if let Some(0xDC00..=0xDFFF) = lo {
                                    out.push_str(&text[i..i + 12]);
                                    i += 12;
                                } else {
                                    let _ = hi;
                                    out.push_str("\\ufffd");
                                    i += 6;
                                }
                            }
                            Some(0xDC00..=0xDFFF) => {
                                out.push_str("\\ufffd");
                                i += 6;
                            }
                            _ => {
                                out.push_str(&text[i..i + 2]);
                                i += 2;
                            }
                        }
                        continue;
                    }
                    let step = if b[i] == b'\\' { 2 } else { 1 };
                    let end = (i + step).min(b.len());
                    // Whole characters only.
                    let end = (end..=b.len())
                        .find(|&e| text.is_char_boundary(e))
                        .unwrap_or(b.len());
                    out.push_str(&text[i..end]);
                    i = end;
                }
                if i < b.len() {
                    out.push('"');
                    i += 1;
                }
            }
            b'-' | b'0'..=b'9' => {
                let end = (i..b.len())
                    .find(|&j| !matches!(b[j], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                    .unwrap_or(b.len());
                let number = &text[i..end];
                match number.parse::<f64>() {
                    Ok(f) if f.is_infinite() => {
                        out.push_str(if f < 0.0 { "-1e308" } else { "1e308" })
                    }
                    _ => out.push_str(number),
                }
                i = end;
            }
            _ => {
                let end = (i + 1..=b.len())
                    .find(|&e| text.is_char_boundary(e))
                    .unwrap_or(b.len());
                out.push_str(&text[i..end]);
                i = end;
            }
        }
    }
    out
}
