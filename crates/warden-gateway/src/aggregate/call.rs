//! A `tools/call` read from its bytes without building its tree: where its id and its
//! name are written, so that the body can go on to the server with another name spliced
//! in and every other byte as the client wrote it.
//!
//! This reading only routes. The server's gate reads the body it is given again, strictly,
//! and decides on exactly those bytes: a body read here one way and there another can at
//! worst reach the wrong server's gate, never pass one. So the reading stops at the name
//! once the id and the method are read: what follows (the arguments, often most of the
//! body) is read by the gate alone, which refuses a repeated key or bytes that are not JSON.
//! Anything unusual before that point (an escaped key or name, a repeated key this reading
//! needs, a `params` that is not an object) is left to the general path, which reads the
//! whole message.

use std::ops::Range;

use bytes::Bytes;

pub(super) struct Call<'a> {
    bytes: &'a [u8],
    /// The id as the client wrote it, and where.
    pub(super) id: &'a str,
    pub(super) id_at: Range<usize>,
    /// The tool's name (written without escapes).
    pub(super) name: &'a str,
    /// Where the name's JSON string, quotes included, is in `bytes`.
    at: Range<usize>,
}

impl<'a> Call<'a> {
    /// `None` for anything but a request `tools/call` with a plain string `name`.
    pub(super) fn read(bytes: &'a [u8]) -> Option<Call<'a>> {
        let mut r = Reader { b: bytes, i: 0 };
        let (mut id, mut method, mut name) = (None, None, None);
        r.ws();
        r.eat(b'{')?;
        loop {
            let key = r.key()?;
            match &bytes[key] {
                b"id" if id.is_none() => id = Some(r.value()?),
                b"method" if method.is_none() => method = Some(r.string()?),
                b"params" if name.is_none() => {
                    let last = id.is_some() && method.is_some();
                    name = Some(r.name(last)?);
                    if last {
                        break;
                    }
                }
                b"id" | b"method" | b"params" => return None,
                _ => {
                    r.value()?;
                }
            }
            r.ws();
            match r.next()? {
                b',' => {}
                b'}' => {
                    r.ws();
                    if r.i != bytes.len() {
                        return None;
                    }
                    break;
                }
                _ => return None,
            }
        }
        if bytes.get(method?)? != b"tools/call" {
            return None;
        }
        let at = name?;
        let name = std::str::from_utf8(bytes.get(at.start + 1..at.end - 1)?).ok()?;
        let id_at = id?;
        let id = std::str::from_utf8(bytes.get(id_at.clone())?).ok()?;
        Some(Call {
            bytes,
            id,
            id_at,
            name,
            at,
        })
    }

    /// The request with `name` instead, every other byte as the client wrote it.
    pub(super) fn renamed(&self, name: &str) -> Bytes {
        let mut out = Vec::with_capacity(self.bytes.len() + name.len() + 2);
        out.extend_from_slice(&self.bytes[..self.at.start]);
        // A name read here (or a part of one) needs no escapes; any other is written by serde.
        if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        } else {
            let _ = serde_json::to_writer(&mut out, name);
        }
        out.extend_from_slice(&self.bytes[self.at.end..]);
        Bytes::from(out)
    }
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// A string without escapes or control characters: where its text is.
    fn string(&mut self) -> Option<Range<usize>> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = self.b.get(start..)?;
        // One pass that stops at the end or at what this reading leaves to the general path
        // (memchr costs more to start than the few bytes of a name or a key).
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        Some(start..start + len)
    }

    /// A member's key and its colon, white space around: where the key's text is.
    fn key(&mut self) -> Option<Range<usize>> {
        self.ws();
        let key = self.string()?;
        self.ws();
        self.eat(b':')?;
        self.ws();
        Some(key)
    }

    /// `params`, an object: where its `name`, a plain string, is written (quotes
    /// included). With `last` (nothing after it is needed), the reading stops there.
    fn name(&mut self, last: bool) -> Option<Range<usize>> {
        self.eat(b'{')?;
        let mut name = None;
        loop {
            let key = self.key()?;
            if &self.b[key] == b"name" {
                if name.is_some() {
                    return None;
                }
                let start = self.i;
                self.string()?;
                if last {
                    return Some(start..self.i);
                }
                name = Some(start..self.i);
            } else {
                self.value()?;
            }
            self.ws();
            match self.next()? {
                b',' => {}
                b'}' => return name,
                _ => return None,
            }
        }
    }

    /// Any value, skipped: where it is. Brackets are counted, not matched (the gate reads
    /// the body strictly after this).
    fn value(&mut self) -> Option<Range<usize>> {
        let start = self.i;
        let mut depth = 0usize;
        loop {
            match *self.b.get(self.i)? {
                b'"' => {
                    self.skip_string()?;
                    if depth == 0 {
                        break;
                    }
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                }
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    self.i += 1;
                    if depth == 0 {
                        break;
                    }
                }
                b',' | b'}' | b']' if depth == 0 => break,
                b' ' | b'\t' | b'\n' | b'\r' if depth == 0 => break,
                _ => self.i += 1,
            }
        }
        (self.i > start).then_some(start..self.i)
    }

    fn skip_string(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            let rest = self.b.get(self.i..)?;
            let at = rest.iter().position(|&c| c == b'"' || c == b'\\')?;
            self.i += at + 1;
            if rest[at] == b'"' {
                return Some(());
            }
            // An escape: the next byte is its letter, whatever it is.
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_call_is_renamed_with_everything_else_copied_byte_for_byte() {
        let body = br#" {"jsonrpc":"2.0", "id" : "a\"b" ,"method":"tools/call","params":{"arguments":{"a": 1,  "b":[2, {"name":"x"}], "s":"}\\"},"name" : "rmcp_add","_meta":{"progressToken":"p"}}} "#;
        let call = Call::read(body).unwrap();
        assert_eq!(call.name, "rmcp_add");
        assert_eq!(call.id, r#""a\"b""#);
        let out = call.renamed("add");
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            String::from_utf8_lossy(body).replace("\"rmcp_add\"", "\"add\"")
        );
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(v["params"]["name"], "add");
        assert_eq!(v["id"], "a\"b");
        assert_eq!(v["params"]["arguments"]["b"][1]["name"], "x");
        let numeric =
            Call::read(br#"{"id":-1.5e3,"method":"tools/call","params":{"name":"t"}}"#).unwrap();
        assert_eq!((numeric.id, numeric.name), ("-1.5e3", "t"));
    }

    #[test]
    fn anything_unusual_is_left_to_the_general_path() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"id":1,"id":2,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":3}}"#,
            r#"{"id":1,"method":"tools/call","params":{"na\u006de":"x"}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"\u0078"}}"#,
            r#"{"id":1,"m\u0065thod":"tools/call","params":{"name":"x"}}"#,
            r#"{"id":1,"method":"tools/call","params":[]}"#,
            r#"{"id":1,"method":"tools/call","params":{}}"#,
            r#"[{"id":1,"method":"tools/call","params":{"name":"x"}}]"#,
            r#"{"id":,"method":"tools/call","params":{"name":"x"}}"#,
        ] {
            assert!(Call::read(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn what_follows_the_name_is_left_to_the_gate_which_refuses_what_is_not_plain_json() {
        for body in [
            r#"{"id":1,"method":"tools/call","params":{"name":"a_x","name":"b_y"}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"a_x"},"params":{"name":"b_y"}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"a_x"},"method":"tools/list"}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"a_x"}} x"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"a_x","arguments":{"a":1,"a":2}}}"#,
            r#"{"id":1,"method":"tools/call","params":{"name":"a_x""#,
        ] {
            let call = Call::read(body.as_bytes()).unwrap_or_else(|| panic!("{body}"));
            assert_eq!(call.name, "a_x");
            let renamed = call.renamed("x");
            assert!(
                warden_tower::fuzzing::inspect(&renamed).is_err(),
                "the gate took {:?}",
                String::from_utf8_lossy(&renamed)
            );
        }
        // Before the name, the reading is whole: a repeated key it needs is refused here.
        assert!(
            Call::read(br#"{"id":1,"id":2,"method":"tools/call","params":{"name":"a_x"}}"#)
                .is_none()
        );
    }

    #[test]
    fn where_serde_reads_a_call_this_reading_agrees() {
        for body in [
            r#"{"params":{"name":"b_c"},"method":"tools/call","id":null}"#,
            r#"{"method":"tools/call","params":{"x":{"name":"no"},"name":"yes"},"id":[1,{"a":"]"}]}"#,
            "{\n\t\"id\": 5,\r\n\"method\": \"tools/call\", \"params\": {\"name\": \"é\"}\n}",
        ] {
            let call = Call::read(body.as_bytes()).unwrap();
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(call.name, v["params"]["name"]);
            assert_eq!(serde_json::from_str::<Value>(call.id).unwrap(), v["id"]);
        }
    }
}
