//! One client connection: request heads parsed with `httparse`, each request run through the
//! gateway's tower stack, each answer written back with framing that matches its body.
//!
//! The request body is read whole before the stack sees it (up to the gateway's message
//! limit; past it the stack answers 413 from the headers and the connection closes), since
//! the policy layer must read a POST body whole anyway. While a call is in flight the
//! connection is still watched: a client that hangs up drops the call, and with it the
//! upstream request. An answer is gathered for up to [`HOLD_HEAD`] after its head: one that
//! has arrived whole by then goes out in one write with a `Content-Length`, and anything
//! still arriving is sent chunked, each piece as soon as it is there.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tower::Service;
use warden_tower::{Body, BoxError, ClientAddr};

use super::chunked::{self, Step};
use super::{Framing, Lines, MAX_HEAD, Unreadable};

/// Past this much, what an answer has ready is written and the rest follows.
const MAX_GATHER: usize = 64 * 1024;

/// How long an answer is gathered after its head, so that a short one goes out whole in one
/// write; a stream still going when this is up gets what it has sent so far, then the rest
/// as it comes.
pub const HOLD_HEAD: Duration = Duration::from_millis(20);

/// What a connection is held to.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// A request head must arrive whole within this long (counted from the connection, or
    /// from the previous answer on a kept-alive one), and each piece of its body too.
    pub header_read_timeout: Duration,
    /// The largest request body read; a larger one is left to the stack to refuse.
    pub max_body: usize,
}

/// Serves `stream` until the client closes it, breaks the protocol, idles past the
/// deadline, or `stop` turns true while it is between requests.
pub async fn connection<IO, S, B>(
    stream: IO,
    peer: SocketAddr,
    mut svc: S,
    settings: Settings,
    stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut conn = Conn {
        stream,
        buf: BytesMut::with_capacity(8 * 1024),
        out: Vec::with_capacity(8 * 1024),
        gathered: Vec::new(),
        stop,
        timeout: settings.header_read_timeout,
    };
    // One timer for the connection's life, re-armed only when it fires early (see
    // `read_head`): resetting it for every request would cost two timer-wheel operations
    // per call.
    let mut deadline = pin!(tokio::time::sleep(settings.header_read_timeout));
    loop {
        let head = match conn.read_head(deadline.as_mut(), Instant::now()).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(refusal) => return conn.refuse(refusal).await,
        };
        let (body, consumed) = match conn
            .read_body(&head, settings.max_body, deadline.as_mut())
            .await
        {
            Ok(b) => b,
            Err(Some(refusal)) => return conn.refuse(refusal).await,
            Err(None) => return,
        };
        let head_request = head.parts.method == Method::HEAD;
        let version = head.parts.version;
        let mut req = Request::from_parts(
            head.parts,
            if body.is_empty() {
                Body::empty()
            } else {
                Body::full(body)
            },
        );
        req.extensions_mut().insert(ClientAddr(peer.ip()));
        if poll_fn(|cx| svc.poll_ready(cx)).await.is_err() {
            return;
        }
        let Some(Ok(resp)) = conn.while_watching(svc.call(req)).await else {
            // The client went away: the call, and its upstream request, are dropped.
            return;
        };
        let close = head.close || !consumed || conn.stopping();
        if !conn.respond(resp, head_request, version, close).await || close {
            let _ = conn.stream.shutdown().await;
            return;
        }
    }
}

/// A request head, read.
struct Head {
    parts: http::request::Parts,
    framing: Framing,
    /// The client asked to close after this request (or speaks HTTP/1.0 without keep-alive).
    close: bool,
    expect_continue: bool,
}

/// Why a request was not read; answered with this status and closed.
enum Refusal {
    Bad(String),
    TooLarge,
}

impl From<Unreadable> for Refusal {
    fn from(u: Unreadable) -> Self {
        match u {
            Unreadable::TooLarge => Refusal::TooLarge,
            Unreadable::Malformed(e) => Refusal::Bad(format!("malformed request head ({e})")),
        }
    }
}

/// Over a TCP stream, or a TLS stream over one (`crate::tls`).
struct Conn<IO> {
    stream: IO,
    /// Bytes read and not yet used: the rest of a request, or the next (pipelined) one.
    buf: BytesMut,
    out: Vec<u8>,
    /// An answer's data as it is gathered, before it is framed into `out`.
    gathered: Vec<u8>,
    stop: watch::Receiver<bool>,
    timeout: Duration,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    fn stopping(&self) -> bool {
        self.stop.has_changed().unwrap_or(true)
    }

    /// `Ok(None)`: the connection is over (closed, idle past the deadline, or stopping).
    /// The head must be whole `timeout` after `since`; `deadline` is never later than that
    /// (every arming is some earlier moment plus `timeout`), so when it fires before, it is
    /// armed again for the real time.
    async fn read_head(
        &mut self,
        mut deadline: Pin<&mut Sleep>,
        since: Instant,
    ) -> Result<Option<Head>, Refusal> {
        let mut stop = self.stop.clone();
        let mut stopping = self.stopping();
        loop {
            if !self.buf.is_empty() {
                if let Some(head) = parse_head(&mut self.buf)? {
                    return Ok(Some(head));
                }
            } else if stopping {
                return Ok(None);
            }
            reserve(&mut self.buf);
            tokio::select! {
                biased;
                r = self.stream.read_buf(&mut self.buf) => match r {
                    Ok(0) | Err(_) => return Ok(None),
                    Ok(_) => {}
                },
                () = deadline.as_mut() => {
                    let due = since + self.timeout;
                    if Instant::now() >= due {
                        return Ok(None);
                    }
                    deadline.as_mut().reset(due);
                }
                _ = stop.changed(), if !stopping => stopping = true,
            }
        }
    }

    /// The whole body and whether it was all read (`false`: it is over the limit and was
    /// left unread; the connection closes after the answer). `Err(None)`: the client went.
    async fn read_body(
        &mut self,
        head: &Head,
        max: usize,
        mut deadline: Pin<&mut Sleep>,
    ) -> Result<(Bytes, bool), Option<Refusal>> {
        let needed = match head.framing {
            Framing::Empty | Framing::Close => return Ok((Bytes::new(), true)),
            Framing::Length(n) if n > max as u64 => return Ok((Bytes::new(), false)),
            Framing::Length(n) => Some(n as usize),
            Framing::Chunked => None,
        };
        if head.expect_continue && needed.is_none_or(|n| self.buf.len() < n) {
            write(&mut self.stream, b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .map_err(|_| None)?;
        }
        if let Some(n) = needed {
            while self.buf.len() < n {
                self.read_more(deadline.as_mut()).await?;
            }
            return Ok((self.buf.split_to(n).freeze(), true));
        }
        let mut decoder = chunked::Decoder::default();
        let mut body = BytesMut::new();
        loop {
            match decoder.decode(&mut self.buf) {
                Ok(Step::Data(d)) => {
                    body.extend_from_slice(&d);
                    // One byte over is enough for the stack to refuse it as too large.
                    if body.len() > max {
                        body.truncate(max + 1);
                        return Ok((body.freeze(), false));
                    }
                }
                Ok(Step::NeedMore) => self.read_more(deadline.as_mut()).await?,
                Ok(Step::Done) => return Ok((body.freeze(), true)),
                Err(e) => return Err(Some(Refusal::Bad(e.to_string()))),
            }
        }
    }

    async fn read_more(&mut self, mut deadline: Pin<&mut Sleep>) -> Result<(), Option<Refusal>> {
        deadline.as_mut().reset(Instant::now() + self.timeout);
        reserve(&mut self.buf);
        tokio::select! {
            biased;
            r = self.stream.read_buf(&mut self.buf) => match r {
                Ok(0) | Err(_) => Err(None),
                Ok(_) => Ok(()),
            },
            () = deadline => Err(None),
        }
    }

    /// Runs `fut` while reading what the client sends meanwhile; `None` if it hangs up.
    async fn while_watching<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        loop {
            // Pipelined requests are kept for their turn, up to one head's worth.
            let watching = self.buf.len() <= MAX_HEAD;
            if watching {
                reserve(&mut self.buf);
            }
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                r = self.stream.read_buf(&mut self.buf), if watching => match r {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                },
            }
        }
    }

    /// Writes the answer; `false` if the connection cannot carry another.
    async fn respond<B>(
        &mut self,
        resp: Response<B>,
        head_request: bool,
        version: Version,
        close: bool,
    ) -> bool
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let mut gathered = std::mem::take(&mut self.gathered);
        gathered.clear();
        let ok = self
            .write_answer(resp, head_request, version, close, &mut gathered)
            .await;
        // Kept for the next answer, unless a large one made it big.
        if gathered.capacity() <= MAX_GATHER * 2 {
            self.gathered = gathered;
        }
        ok
    }

    async fn write_answer<B>(
        &mut self,
        resp: Response<B>,
        head_request: bool,
        version: Version,
        close: bool,
        gathered: &mut Vec<u8>,
    ) -> bool
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = resp.into_parts();
        let mut body = pin!(body);
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        super::status_line(parts.status, &mut out);
        for (name, value) in &parts.headers {
            if !is_framing(name) {
                super::header_line(name.as_str().as_bytes(), value.as_bytes(), &mut out);
            }
        }
        let status = parts.status;
        let bodiless = head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        // Only HTTP/1.1 clients read chunked bodies; an HTTP/1.0 stream ends with the
        // connection.
        let mut close = close;
        let progress = if bodiless {
            if head_request {
                if let Some(v) = parts.headers.get(header::CONTENT_LENGTH) {
                    super::header_line(b"content-length", v.as_bytes(), &mut out);
                }
            }
            Progress::Ended
        } else {
            match next_data(body.as_mut(), gathered, false).await {
                // Not all there yet: most upstreams write a streamed answer in pieces a moment
                // apart (rmcp: the head, an SSE priming event, then the result), and neither
                // a head nor a priming event is anything a client can act on. Gathered
                // briefly, a short answer leaves whole with a length in one write. Sent piece
                // by piece, it woke the client once per piece, and hyper's pooled client
                // (reqwest's) saw the end before its connection was idle again and opened
                // another one: one new connection per 5-8 calls (docs/PERFORMANCE.md).
                Progress::More if gathered.len() < MAX_GATHER => {
                    let mut hold = pin!(tokio::time::sleep(HOLD_HEAD));
                    loop {
                        tokio::select! {
                            biased;
                            p = next_data(body.as_mut(), gathered, true) => match p {
                                Progress::More if gathered.len() < MAX_GATHER => {}
                                p => break p,
                            },
                            () = &mut hold => break Progress::More,
                        }
                    }
                }
                p => p,
            }
        };
        let streaming = matches!(progress, Progress::More);
        match progress {
            Progress::Ended if !bodiless => super::length_line(gathered.len(), &mut out),
            Progress::Ended => {}
            Progress::More if version == Version::HTTP_11 => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            }
            Progress::More => close = true,
            Progress::Failed(e) => {
                // Nothing is sent yet, so the client still gets an answer it can read.
                let e: BoxError = e;
                tracing::warn!(target: "warden::gateway", error = %e, "the answer failed before it was sent");
                self.out = out;
                self.answer_error(
                    StatusCode::BAD_GATEWAY,
                    -32603,
                    &format!("the upstream's answer broke off: {e}"),
                )
                .await;
                return false;
            }
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        } else if version == Version::HTTP_10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let chunked = streaming && version == Version::HTTP_11;
        put(&mut out, gathered, chunked);
        let mut ok = write(&mut self.stream, &out).await.is_ok();
        let mut watching = true;
        while ok && streaming {
            gathered.clear();
            out.clear();
            if watching {
                reserve(&mut self.buf);
            }
            let progress = tokio::select! {
                biased;
                p = next_data(body.as_mut(), gathered, true) => p,
                r = self.stream.read_buf(&mut self.buf), if watching => match r {
                    // The client hung up: dropping the body drops the upstream stream.
                    Ok(0) | Err(_) => { ok = false; break }
                    Ok(_) => { watching = self.buf.len() <= MAX_HEAD; continue }
                },
            };
            put(&mut out, gathered, chunked);
            match progress {
                Progress::More => {}
                Progress::Ended => {
                    if chunked {
                        out.extend_from_slice(chunked::END);
                    }
                    ok = write(&mut self.stream, &out).await.is_ok() && !close;
                    self.out = out;
                    return ok;
                }
                Progress::Failed(e) => {
                    // Cut without the last chunk, so the client knows the answer is incomplete.
                    let e: BoxError = e;
                    tracing::warn!(target: "warden::gateway", error = %e, "an answer stream failed");
                    let _ = write(&mut self.stream, &out).await;
                    self.out = out;
                    return false;
                }
            }
            ok = write(&mut self.stream, &out).await.is_ok();
        }
        self.out = out;
        ok && !streaming
    }

    /// Answers a request that could not be read, and closes.
    async fn refuse(&mut self, refusal: Refusal) {
        let (status, message) = match refusal {
            Refusal::Bad(why) => (StatusCode::BAD_REQUEST, format!("Invalid request: {why}")),
            Refusal::TooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "Invalid request: the request head is too large".to_owned(),
            ),
        };
        tracing::info!(target: "warden::gateway", %status, reason = %message, "request refused");
        self.answer_error(status, -32600, &message).await;
    }

    /// A JSON-RPC error (its id unknown here: `null`) with `status`, then the connection
    /// closes.
    async fn answer_error(&mut self, status: StatusCode, code: i64, message: &str) {
        let body = serde_json::json!({"jsonrpc": "2.0", "id": null,
            "error": {"code": code, "message": message}})
        .to_string();
        let mut out = Vec::new();
        super::status_line(status, &mut out);
        out.extend_from_slice(b"content-type: application/json\r\nconnection: close\r\n");
        super::length_line(body.len(), &mut out);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body.as_bytes());
        let _ = write(&mut self.stream, &out).await;
        let _ = self.stream.shutdown().await;
    }
}

/// Writes `bytes` and pushes them out: a TLS stream may hold written data in its session
/// until flushed (a no-op on TCP).
async fn write<IO: AsyncWrite + Unpin>(stream: &mut IO, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(8 * 1024);
    }
}

fn is_framing(name: &HeaderName) -> bool {
    name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::CONNECTION
        || name.as_str() == "keep-alive"
}

fn put(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if chunked {
        chunked::encode(data, out);
    } else {
        out.extend_from_slice(data);
    }
}

enum Progress {
    Ended,
    /// More is to come.
    More,
    Failed(BoxError),
}

/// Appends the body's data that is ready to `into`; with `wait`, first waits for some.
async fn next_data<B>(mut body: Pin<&mut B>, into: &mut Vec<u8>, wait: bool) -> Progress
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let start = into.len();
    poll_fn(|cx| {
        loop {
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are not passed on.
                    if let Ok(data) = frame.into_data() {
                        into.extend_from_slice(&data);
                        if into.len() >= MAX_GATHER {
                            return Poll::Ready(Progress::More);
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Progress::Failed(e.into())),
                Poll::Ready(None) => return Poll::Ready(Progress::Ended),
                Poll::Pending if wait && into.len() == start => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Progress::More),
            }
        }
    })
    .await
}

pub(crate) fn parse_for_fuzzing(
    buf: &mut BytesMut,
) -> Result<Option<(Framing, http::HeaderMap)>, String> {
    match parse_head(buf) {
        Ok(h) => Ok(h.map(|h| (h.framing, h.parts.headers))),
        Err(Refusal::Bad(why)) => Err(why),
        Err(Refusal::TooLarge) => Err("too large".into()),
    }
}

/// The request head at the front of `buf`, taken off it; `None` until it is whole.
fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, Refusal> {
    let bad = |what: &str| Refusal::Bad(what.to_owned());
    let (len, method, version, path, lines) = {
        let mut slots = super::header_slots();
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, buf, &mut slots);
        let Some(len) = super::head_len(parsed, buf.len())? else {
            return Ok(None);
        };
        let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
            .map_err(|_| bad("invalid method"))?;
        let version = super::version(req.version);
        let path = super::span(buf, req.path.unwrap_or_default().as_bytes());
        (len, method, version, path, Lines::record(buf, req.headers))
    };
    let head = buf.split_to(len).freeze();
    let uri = Uri::from_maybe_shared(head.slice(path.0 as usize..path.1 as usize))
        .map_err(|_| bad("invalid request target"))?;
    let headers = lines.map(&head).map_err(bad)?;
    let framing = super::framing(&headers).map_err(bad)?;
    if version == Version::HTTP_10 && framing == Framing::Chunked {
        return Err(bad("chunked bodies are not HTTP/1.0"));
    }
    if version == Version::HTTP_11 && !headers.contains_key(header::HOST) {
        return Err(bad("HTTP/1.1 requests must carry Host"));
    }
    let close = if version == Version::HTTP_10 {
        !super::connection_has(&headers, "keep-alive")
    } else {
        super::connection_has(&headers, "close")
    };
    let expect_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Head {
        parts,
        framing,
        close,
        expect_continue,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<Head>, String> {
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_head(&mut buf).map_err(|r| match r {
            Refusal::Bad(w) => w,
            Refusal::TooLarge => "too large".into(),
        })
    }

    #[test]
    fn heads_are_read_and_framing_refused_when_ambiguous() {
        let h = parse("POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap()
            .unwrap();
        assert_eq!(h.parts.uri.query(), Some("x=1"));
        assert_eq!(h.framing, Framing::Length(5));
        assert!(!h.close);
        assert!(
            parse("POST /mcp HTTP/1.1\r\nHost: a\r\n")
                .unwrap()
                .is_none()
        );
        let h = parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(h.close, "HTTP/1.0 closes unless asked not to");
        for (raw, why) in [
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
                "both",
            ),
            (
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                "transfer coding",
            ),
            ("POST / HTTP/1.1\r\n\r\n", "Host"),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.0",
            ),
            ("POST / HTTP/1.1\r\nHost: a\nX: \x01\r\n\r\n", "malformed"),
            ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "malformed"),
        ] {
            let err = parse(raw).map(|_| ()).unwrap_err();
            assert!(err.contains(why), "{raw:?}: {err}");
        }
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(parse(&huge).map(|_| ()).unwrap_err(), "too large");
    }
}
