//! `Transfer-Encoding: chunked` (RFC 9112 §7.1), read incrementally: request bodies from
//! clients and answers from the upstream both come this way.
//!
//! Strict where leniency lets two readers disagree about where a message ends (the
//! request-smuggling class): the size is hex digits only, at most 15 of them, data is
//! followed by exactly CRLF, and extensions and trailers are skipped within a bound.

use std::io::Write as _;

use bytes::{Bytes, BytesMut};

/// Longest chunk-size line (size, extensions) or trailer section accepted.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty one; bytes of trailers seen.
    Trailers(usize),
    Done,
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Data(Bytes),
    /// Nothing more can be decoded from what is buffered.
    NeedMore,
    /// The last chunk and the trailers have been read.
    Done,
}

/// The chunked framing is broken; the message cannot be read with certainty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked encoding: {0}")]
pub struct Invalid(pub &'static str);

#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { state: State::Size }
    }
}

impl Decoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the front of `buf`, consuming what it uses.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, Invalid> {
        loop {
            match self.state {
                State::Done => return Ok(Step::Done),
                State::Size => {
                    let Some(end) = line_end(buf, MAX_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    let line = buf.split_to(end + 2);
                    let size = chunk_size(&line[..end])?;
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Step::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Invalid("chunk data not followed by CRLF"));
                    }
                    let _ = buf.split_to(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some(end) = line_end(buf, MAX_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    let _ = buf.split_to(end + 2);
                    if end == 0 {
                        self.state = State::Done;
                    } else if seen + end > MAX_TRAILERS {
                        return Err(Invalid("trailers too large"));
                    } else {
                        self.state = State::Trailers(seen + end + 2);
                    }
                }
            }
        }
    }
}

/// Where the CRLF ending the first line is; a bare LF or CR inside a framing line is
/// refused (RFC 9112 allows a recipient to, and lenient readers disagree on it).
fn line_end(buf: &[u8], max: usize) -> Result<Option<usize>, Invalid> {
    let window = &buf[..buf.len().min(max + 2)];
    match window.iter().position(|&b| b == b'\n' || b == b'\r') {
        Some(i) if window.get(i) == Some(&b'\r') => match window.get(i + 1) {
            Some(b'\n') => Ok(Some(i)),
            Some(_) => Err(Invalid("bare CR in a chunk line")),
            None => Ok(None),
        },
        Some(_) => Err(Invalid("bare LF in a chunk line")),
        None if buf.len() > max => Err(Invalid("chunk line too long")),
        None => Ok(None),
    }
}

/// The hex size before any `;extension`.
fn chunk_size(line: &[u8]) -> Result<u64, Invalid> {
    let digits = line
        .iter()
        .position(|&b| b == b';' || b == b' ' || b == b'\t')
        .map_or(line, |i| &line[..i]);
    if digits.is_empty() {
        return Err(Invalid("empty chunk size"));
    }
    if digits.len() > 15 {
        return Err(Invalid("chunk size too large"));
    }
    let mut size = 0u64;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(Invalid("chunk size is not hexadecimal")),
        };
        size = size * 16 + u64::from(d);
    }
    let rest = &line[digits.len()..];
    // Whitespace may only precede an extension.
    let rest = rest.trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(Invalid("junk after the chunk size"));
    }
    Ok(size)
}

/// Appends one chunk of `data` to `out`.
pub fn encode(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    // `write!` to a Vec cannot fail.
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk, no trailers.
pub const END: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], cuts: usize) -> Result<(Vec<u8>, bool, usize), Invalid> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        for piece in input.chunks(cuts.max(1)) {
            buf.extend_from_slice(piece);
            fed += piece.len();
            loop {
                match d.decode(&mut buf)? {
                    Step::Data(b) => out.extend_from_slice(&b),
                    Step::NeedMore => break,
                    // Left over: what is buffered and what was never fed.
                    Step::Done => return Ok((out, true, buf.len() + input.len() - fed)),
                }
            }
        }
        Ok((out, d.is_done(), buf.len()))
    }

    #[test]
    fn decodes_whole_and_cut_anywhere() {
        let input = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for cut in 1..input.len() {
            let (out, done, left) = decode_all(input, cut).unwrap();
            assert_eq!(out, b"hello, world", "cut {cut}");
            assert!(done);
            assert_eq!(left, 4, "what follows the message stays buffered");
        }
    }

    #[test]
    fn refuses_what_readers_disagree_on() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"-5\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"\r\n",
            b"1000000000000000\r\n",
            b"5 5\r\nhello\r\n",
            b"5\rhello",
            b"0\r\nbad\ntrailer\r\n\r\n",
        ] {
            assert!(
                decode_all(bad, bad.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = vec![b'1'; MAX_LINE + 10];
        assert!(decode_all(&long, long.len()).is_err());
    }

    #[test]
    fn encodes_what_it_decodes() {
        let mut out = Vec::new();
        encode(b"abc", &mut out);
        encode(b"", &mut out);
        encode(&[b'x'; 300], &mut out);
        out.extend_from_slice(END);
        let (back, done, _) = decode_all(&out, 3).unwrap();
        assert!(done);
        assert_eq!(back.len(), 303);
        assert!(out.starts_with(b"3\r\nabc\r\n12c\r\n"));
    }
}
