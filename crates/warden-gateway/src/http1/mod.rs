//! HTTP/1.1 on both sides of `warden serve`, as a reverse proxy needs it and no more.
//!
//! ```text
//! client ──▶ server::connection ──▶ the gateway's tower stack ──▶ client::Pool ──▶ upstream
//!            (httparse → http::Request)   (tower-http, callers,      (request head as bytes,
//!                                          PolicyLayer, proxy)         answer read in place)
//! ```
//!
//! Why not hyper, which the gateway used until issue 12: hyper's client runs each upstream
//! connection as a task of its own and hands the request, the answer and every body frame
//! across channels between that task and the caller's, and its server writes each frame as
//! it comes; under load that bookkeeping was most of the gateway's user-space CPU, twice a
//! plain proxy's in all (docs/PERFORMANCE.md). Here one task per client connection does
//! everything a call needs, as nginx's event loop does: it parses the request head with
//! `httparse` (the parser hyper itself uses), runs the same tower stack every embedder runs,
//! writes the request to a pooled upstream connection it owns for the call, reads the answer
//! from that connection as its body is polled, and writes what has arrived in one `write`.
//!
//! TLS sits below both ends (`crate::tls`): the server reads from whatever stream the
//! listener hands it, plain or TLS, and the client's pooled connections are either.
//!
//! What is deliberately not here: HTTP/2 and upgrades (MCP's Streamable HTTP is HTTP/1.1
//! POSTs and SSE), and leniency: anything two HTTP readers could read two ways (both `Content-Length` and
//! `Transfer-Encoding`, a transfer coding other than `chunked`, bare LFs in chunk lines,
//! differing lengths) is refused with 400, never guessed at.

pub mod chunked;
pub mod client;
pub mod server;

/// Entry points for the fuzz targets in `tests/fuzz`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::BytesMut;

    /// A request head as the gateway reads it: how many bytes it took, its framing and the
    /// framing headers it saw; `Err` with the reason it was refused; `Ok(None)`: not whole.
    pub fn request_head(bytes: &[u8]) -> Result<Option<(usize, String, bool, bool)>, String> {
        let mut buf = BytesMut::from(bytes);
        let head = super::server::parse_for_fuzzing(&mut buf)?;
        Ok(head.map(|(framing, headers)| {
            (
                bytes.len() - buf.len(),
                format!("{framing:?}"),
                headers.contains_key(http::header::CONTENT_LENGTH),
                headers.contains_key(http::header::TRANSFER_ENCODING),
            )
        }))
    }
}

use std::cell::RefCell;
use std::io::Write as _;
use std::mem::MaybeUninit;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use smallvec::SmallVec;

/// The most header lines of a request or an answer.
const MAX_HEADERS: usize = 100;
/// The largest request or answer head.
const MAX_HEAD: usize = 64 * 1024;

/// Where a head's header lines are, recorded while `httparse` borrows the read buffer, so
/// that the `HeaderMap` can then be made of slices of the frozen head: values are not copied.
pub(crate) struct Lines {
    /// Name start, name end, value start, value end. Inline for a usual head: neither
    /// zeroed nor allocated per message.
    spans: SmallVec<[(u32, u32, u32, u32); 24]>,
}

impl Lines {
    pub(crate) fn record(buf: &[u8], headers: &[httparse::Header<'_>]) -> Lines {
        let spans = headers
            .iter()
            .map(|h| {
                let name = span(buf, h.name.as_bytes());
                let value = span(buf, h.value);
                (name.0, name.1, value.0, value.1)
            })
            .collect();
        Lines { spans }
    }

    pub(crate) fn map(&self, head: &Bytes) -> Result<HeaderMap, &'static str> {
        let mut map = HeaderMap::with_capacity(self.spans.len());
        for &(n0, n1, v0, v1) in &self.spans {
            let name = head
                .get(n0 as usize..n1 as usize)
                .and_then(header_name)
                .ok_or("invalid header name")?;
            let value = HeaderValue::from_maybe_shared(head.slice(v0 as usize..v1 as usize))
                .map_err(|_| "invalid header value")?;
            map.append(name, value);
        }
        Ok(map)
    }
}

/// The names a head's lines carry, each parsed once per worker: the same few names come on
/// every request and answer, and `HeaderName::from_bytes` (a lowercase copy and a match
/// over HTTP's standard names, or an allocation for any other) was a tenth of a call's
/// instructions. Names are compared as sent (case and all); only names that parsed are
/// kept, and no more than `NAMES_KEPT` of them.
fn header_name(raw: &[u8]) -> Option<HeaderName> {
    thread_local! {
        static SEEN: RefCell<Seen> = const { RefCell::new(Seen { names: Vec::new(), next: 0 }) };
    }
    SEEN.with(|seen| {
        if let Ok(mut seen) = seen.try_borrow_mut() {
            if let Some(name) = seen.find(raw) {
                return Some(name);
            }
        }
        let name = known_name(raw).or_else(|| HeaderName::from_bytes(raw).ok())?;
        if let Ok(mut seen) = seen.try_borrow_mut() {
            if seen.names.len() < NAMES_KEPT {
                seen.names.push((raw.into(), name.clone()));
            }
        }
        Some(name)
    })
}

/// A worker's parsed header names, in the order first seen.
struct Seen {
    names: Vec<(Box<[u8]>, HeaderName)>,
    /// Where the next name probably is: a client sends its headers in the same order every
    /// time, and so does an upstream, so the search starts after the last one found.
    next: usize,
}

impl Seen {
    fn find(&mut self, raw: &[u8]) -> Option<HeaderName> {
        let n = self.names.len();
        let at = (0..n)
            .map(|i| (self.next + i) % n)
            .find(|&i| *self.names[i].0 == *raw)?;
        self.next = at + 1;
        Some(self.names[at].1.clone())
    }
}

/// How many distinct header names a worker keeps parsed (a client inventing names gets
/// them parsed each time, as before).
const NAMES_KEPT: usize = 64;

/// MCP's own headers, named without the allocation `HeaderName::from_bytes` makes for any
/// name that is not one of HTTP's standard ones.
fn known_name(name: &[u8]) -> Option<HeaderName> {
    static KNOWN: [HeaderName; 7] = [
        HeaderName::from_static("mcp-session-id"),
        HeaderName::from_static("mcp-protocol-version"),
        HeaderName::from_static("last-event-id"),
        HeaderName::from_static("mcp-method"),
        HeaderName::from_static("mcp-name"),
        HeaderName::from_static("x-request-id"),
        // Sent with SSE answers by rmcp and other servers that expect nginx in front.
        HeaderName::from_static("x-accel-buffering"),
    ];
    KNOWN
        .iter()
        .find(|k| k.as_str().as_bytes().eq_ignore_ascii_case(name))
        .cloned()
}

/// Room for httparse's header slots, left uninitialized: filling 100 of them for every
/// message was a visible share of the profile.
pub(crate) fn header_slots<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Why a head could not be read.
pub(crate) enum Unreadable {
    /// Over `MAX_HEAD` bytes or `MAX_HEADERS` lines.
    TooLarge,
    Malformed(httparse::Error),
}

/// The length of the head httparse read from `buffered` bytes: `None` until it is whole.
pub(crate) fn head_len(
    parsed: httparse::Result<usize>,
    buffered: usize,
) -> Result<Option<usize>, Unreadable> {
    match parsed {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buffered <= MAX_HEAD => Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => Err(Unreadable::TooLarge),
        Err(e) => Err(Unreadable::Malformed(e)),
    }
}

/// HTTP/1.0 or HTTP/1.1, from httparse's minor version.
pub(crate) fn version(minor: Option<u8>) -> http::Version {
    if minor == Some(0) {
        http::Version::HTTP_10
    } else {
        http::Version::HTTP_11
    }
}

/// Where `part` (a slice of `buf`) lies in `buf`.
pub(crate) fn span(buf: &[u8], part: &[u8]) -> (u32, u32) {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    let start = start.min(buf.len());
    let end = (start + part.len()).min(buf.len());
    // Heads are at most MAX_HEAD bytes.
    (start as u32, end as u32)
}

/// How a message's body is delimited (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the connection closes (answers only).
    Close,
}

/// Reads the framing headers the strict way: `Content-Length` must be digits, repeated only
/// with the same value; `Transfer-Encoding` must be exactly `chunked`; not both.
pub(crate) fn framing(headers: &HeaderMap) -> Result<Framing, &'static str> {
    let mut te = headers.get_all(http::header::TRANSFER_ENCODING).iter();
    let mut length: Option<u64> = None;
    for v in headers.get_all(http::header::CONTENT_LENGTH) {
        let n = parse_length(v).ok_or("invalid Content-Length")?;
        if length.is_some_and(|l| l != n) {
            return Err("differing Content-Length values");
        }
        length = Some(n);
    }
    match (te.next(), length) {
        (None, None) => Ok(Framing::Empty),
        (None, Some(n)) => Ok(Framing::Length(n)),
        (Some(_), Some(_)) => Err("both Content-Length and Transfer-Encoding"),
        (Some(v), None) => {
            let chunked = v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked");
            if chunked && te.next().is_none() {
                Ok(Framing::Chunked)
            } else {
                Err("a transfer coding other than chunked")
            }
        }
    }
}

fn parse_length(v: &HeaderValue) -> Option<u64> {
    let b = v.as_bytes().trim_ascii();
    if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// Whether the `Connection` header lists `token`.
pub(crate) fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `HTTP/1.1 200 OK\r\n`.
pub(crate) fn status_line(status: StatusCode, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn header_line(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn length_line(n: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"content-length: ");
    // `write!` to a Vec cannot fail; it formats in place where `to_string` allocated.
    let _ = write!(out, "{n}");
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn header_names_read_from_memory_are_the_names_sent() {
        for _ in 0..3 {
            for (raw, name) in [
                ("Content-Type", "content-type"),
                ("content-type", "content-type"),
                ("MCP-Session-Id", "mcp-session-id"),
                ("X-Accel-Buffering", "x-accel-buffering"),
                ("X-Custom", "x-custom"),
            ] {
                assert_eq!(header_name(raw.as_bytes()).unwrap().as_str(), name);
            }
            assert!(header_name(b"bad name").is_none());
            assert!(header_name(b"").is_none());
        }
        // Past what a worker keeps, names are still read, each time afresh.
        for i in 0..2 * NAMES_KEPT {
            let raw = format!("X-Invented-{i}");
            assert_eq!(
                header_name(raw.as_bytes()).unwrap().as_str(),
                raw.to_ascii_lowercase()
            );
        }
    }

    #[test]
    fn framing_is_read_strictly() {
        assert_eq!(framing(&headers(&[])), Ok(Framing::Empty));
        assert_eq!(
            framing(&headers(&[("content-length", "12")])),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing(&headers(&[
                ("content-length", "12"),
                ("content-length", "12")
            ])),
            Ok(Framing::Length(12))
        );
        assert_eq!(
            framing(&headers(&[("transfer-encoding", " Chunked ")])),
            Ok(Framing::Chunked)
        );
        for bad in [
            &[("content-length", "12"), ("content-length", "13")][..],
            &[("content-length", "+12")],
            &[("content-length", "12, 12")],
            &[("content-length", "0x10")],
            &[("content-length", "")],
            &[("content-length", "99999999999999999999999")],
            &[("transfer-encoding", "chunked"), ("content-length", "5")],
            &[("transfer-encoding", "gzip, chunked")],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            &[("transfer-encoding", "identity")],
        ] {
            assert!(framing(&headers(bad)).is_err(), "{bad:?}");
        }
    }
}
