//! One worker's connections to the upstream: a request is written as one buffer to a kept-
//! alive connection, and the answer is read from that connection by whoever polls its body
//! (the client connection's task), so a call never hands bytes between tasks.
//!
//! A connection goes back to the pool only when its answer was read to the end with nothing
//! after it; an answer dropped half-way (the client went away) closes it, which is how the
//! upstream learns the call was cancelled.

use std::future::Future as _;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use http::{StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::Connector;

use super::chunked::{self, Step};
use super::{Framing, Lines, Unreadable};

/// Idle connections kept per worker; more are closed when their answer ends.
const MAX_IDLE: usize = 256;

/// Why the upstream gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("connection lost: {0}")]
    Io(std::io::Error),
    /// The handshake failed, or the server refused the connection in TLS terms (a client
    /// certificate it does not accept is only told after the handshake, on the first read).
    #[error("{0}")]
    Tls(String),
    #[error("the upstream closed the connection before its answer was complete")]
    Closed,
    #[error("invalid answer: {0}")]
    Invalid(String),
}

impl From<Unreadable> for Failure {
    fn from(u: Unreadable) -> Self {
        match u {
            Unreadable::TooLarge => Failure::Invalid("answer head too large".into()),
            Unreadable::Malformed(e) => Failure::Invalid(format!("malformed answer head ({e})")),
        }
    }
}

impl Failure {
    /// A read or write error, named as a TLS failure when it is one.
    fn io(e: std::io::Error) -> Failure {
        match warden_tower::tls::explain(&e) {
            Some(why) => Failure::Tls(why),
            None => Failure::Io(e),
        }
    }
}

/// A connection to the upstream: plain, or TLS over TCP for an `https://` URL.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// Kept-alive connections to one upstream, for one worker.
#[derive(Clone, Default)]
pub struct Pool {
    /// Each with its read buffer, kept for the next answer.
    idle: Arc<Mutex<Vec<(Conn, BytesMut)>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// Sends `request` (head and body, as written) to `addr` and reads the answer's head.
    ///
    /// A kept-alive connection the upstream has closed meanwhile (Node closes idle ones
    /// after 5 s) is found out either before the write or by an answer that ends before its
    /// first byte; then the request is sent again on a fresh connection, which is safe since
    /// an upstream that closed the connection never read it.
    pub async fn send(
        &self,
        addr: &str,
        tls: Option<&Connector>,
        request: &[u8],
        head_request: bool,
    ) -> Result<(http::response::Parts, UpstreamBody), Failure> {
        loop {
            let (mut conn, mut buf, reused) = match self.take() {
                Some((c, buf)) => (c, buf, true),
                None => (
                    connect(addr, tls).await?,
                    BytesMut::with_capacity(8 * 1024),
                    false,
                ),
            };
            let written = match conn.write_all(request).await {
                Ok(()) => conn.flush().await,
                Err(e) => Err(e),
            };
            let answer = match written {
                Ok(()) => read_head(&mut conn, &mut buf).await,
                Err(e) => Err(Failure::io(e)),
            };
            match answer {
                Ok((parts, framing, keep_alive)) => {
                    let framing = if head_request
                        || parts.status == StatusCode::NO_CONTENT
                        || parts.status == StatusCode::NOT_MODIFIED
                    {
                        Framing::Empty
                    } else {
                        framing
                    };
                    let pool = keep_alive.then(|| self.clone());
                    return Ok((parts, UpstreamBody::new(conn, buf, framing, pool)));
                }
                Err(Failure::Closed | Failure::Io(_)) if reused && buf.is_empty() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn take(&self) -> Option<(Conn, BytesMut)> {
        loop {
            let mut conn = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()?;
            if idle_and_open(&mut conn.0) {
                return Some(conn);
            }
        }
    }

    fn put(&self, conn: Conn, buf: BytesMut) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((conn, buf));
        }
    }
}

/// An idle connection with nothing to read is still usable; one that became readable has
/// been closed (or sent something unasked) and is not. Asked of the runtime's readiness
/// first, so the usual case costs no system call.
fn idle_and_open(conn: &mut Conn) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let tcp = match conn {
        Conn::Plain(s) => s,
        Conn::Tls(s) => s.get_ref().0,
    };
    match tcp.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => match conn {
            Conn::Plain(s) => {
                let mut byte = [0u8; 1];
                matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
            // A TLS server may send records that carry no data (session tickets, a key
            // update): read through them; only a read with nothing to give is still open.
            Conn::Tls(s) => {
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                Pin::new(&mut **s).poll_read(&mut cx, &mut buf).is_pending()
            }
        },
    }
}

async fn connect(addr: &str, tls: Option<&Connector>) -> Result<Conn, Failure> {
    let tcp = TcpStream::connect(addr).await.map_err(Failure::Connect)?;
    // An SSE answer written in two small pieces stalls ~40 ms under Nagle + delayed ACK.
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Conn::Plain(tcp)),
        Some(c) => match c.connect(tcp).await {
            Ok(s) => Ok(Conn::Tls(Box::new(s))),
            Err(e) => Err(Failure::Tls(
                warden_tower::tls::explain(&e)
                    .unwrap_or_else(|| format!("TLS handshake failed: {e}")),
            )),
        },
    }
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(8 * 1024);
    }
}

/// The answer's head (interim 1xx answers skipped), how its body is framed, and whether the
/// connection may carry another request after it.
async fn read_head(
    conn: &mut Conn,
    buf: &mut BytesMut,
) -> Result<(http::response::Parts, Framing, bool), Failure> {
    loop {
        if !buf.is_empty() {
            match parse_head(buf)? {
                Some(Parsed::Interim) => continue,
                Some(Parsed::Final(head)) => return Ok(head),
                None => {}
            }
        }
        reserve(buf);
        match conn.read_buf(buf).await {
            Ok(0) => return Err(Failure::Closed),
            Ok(_) => {}
            Err(e) => return Err(Failure::io(e)),
        }
    }
}

enum Parsed {
    Interim,
    Final((http::response::Parts, Framing, bool)),
}

fn parse_head(buf: &mut BytesMut) -> Result<Option<Parsed>, Failure> {
    let invalid = |why: &str| Failure::Invalid(why.to_owned());
    let (len, code, version, lines) = {
        let mut slots = super::header_slots();
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
        let Some(len) = super::head_len(parsed, buf.len())? else {
            return Ok(None);
        };
        let version = super::version(resp.version);
        let lines = Lines::record(buf, resp.headers);
        (len, resp.code.unwrap_or_default(), version, lines)
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| invalid("invalid status"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(invalid("the upstream switched protocols"));
    }
    if status.is_informational() {
        return Ok(Some(Parsed::Interim));
    }
    let headers = lines.map(&head).map_err(invalid)?;
    let framing = match super::framing(&headers).map_err(invalid)? {
        Framing::Empty => Framing::Close,
        f => f,
    };
    let keep_alive = version == Version::HTTP_11
        && framing != Framing::Close
        && !super::connection_has(&headers, "close");
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Parsed::Final((parts, framing, keep_alive))))
}

/// An answer's body, read from its connection as it is polled.
pub struct UpstreamBody {
    conn: Option<Conn>,
    buf: BytesMut,
    state: State,
    /// Where the connection goes when the answer has been read to its end.
    pool: Option<Pool>,
}

enum State {
    Length(u64),
    Chunked(chunked::Decoder),
    Close,
    Done,
}

impl UpstreamBody {
    fn new(conn: Conn, buf: BytesMut, framing: Framing, pool: Option<Pool>) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(chunked::Decoder::default()),
            Framing::Close => State::Close,
        };
        let mut body = UpstreamBody {
            conn: Some(conn),
            buf,
            state,
            pool,
        };
        if matches!(body.state, State::Done) {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        self.state = State::Done;
        let conn = self.conn.take();
        // Bytes after the end of an answer were never asked for: that connection is not
        // trusted with another request.
        if let (Some(conn), Some(pool)) = (conn, self.pool.take()) {
            if self.buf.is_empty() {
                pool.put(conn, std::mem::take(&mut self.buf));
            }
        }
    }

    fn fail(&mut self, e: Failure) -> Poll<Option<Result<Frame<Bytes>, Failure>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = Failure;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Failure>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if !this.buf.is_empty() {
                        let n = usize::try_from(*left)
                            .unwrap_or(usize::MAX)
                            .min(this.buf.len());
                        let data = this.buf.split_to(n).freeze();
                        *left -= n as u64;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Chunked(decoder) => match decoder.decode(&mut this.buf) {
                    Ok(Step::Data(d)) => return Poll::Ready(Some(Ok(Frame::data(d)))),
                    Ok(Step::Done) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::NeedMore) => {}
                    Err(e) => return this.fail(Failure::Invalid(e.to_string())),
                },
                State::Close => {
                    if !this.buf.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                    }
                }
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            reserve(&mut this.buf);
            match ready!(pin!(conn.read_buf(&mut this.buf)).poll(cx)) {
                Ok(0) if matches!(this.state, State::Close) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(Failure::Closed),
                Ok(_) => {}
                Err(e) => return this.fail(Failure::io(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
