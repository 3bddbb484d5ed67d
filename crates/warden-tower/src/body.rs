//! The body type the layer hands on and returns: the buffered request bytes, a local answer,
//! the inner service's body untouched, or an SSE stream with hidden tools filtered out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use crate::view::{Guarded, View};
use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use serde_json::Value;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What an answer's `Content-Type` says it is, as the layer reads answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentKind {
    Json,
    EventStream,
    Other,
}

/// The kind of `headers`' content (case and parameters ignored).
pub(crate) fn content_kind(headers: &http::HeaderMap) -> ContentKind {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start()
        .to_ascii_lowercase();
    if ct.starts_with("text/event-stream") {
        ContentKind::EventStream
    } else if ct.starts_with("application/json") {
        ContentKind::Json
    } else {
        ContentKind::Other
    }
}

/// A request or response body passing through the layer.
pub struct Body {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
    Sse(Box<SseFilter>),
    /// Chunks a task sends while it works (an approval asked on the call's own stream).
    Channel(tokio::sync::mpsc::Receiver<Bytes>, bool),
    /// An SSE stream passed on unchanged, its events read for errors to refund.
    Observed(Box<Observer>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Full(_) => "full",
            Kind::Boxed(_) => "stream",
            Kind::Sse(_) => "sse-filtered",
            Kind::Channel(..) => "channel",
            Kind::Observed(_) => "observed",
        };
        f.debug_tuple("Body").field(&kind).finish()
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl Body {
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body {
            kind: Kind::Full(Some(bytes.into())),
        }
    }

    /// The bytes of a body that is one known chunk ([`Body::full`]), without reading it.
    pub fn whole(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Full(bytes) => bytes.as_ref(),
            _ => None,
        }
    }

    pub fn empty() -> Body {
        Body {
            kind: Kind::Full(None),
        }
    }

    pub fn new<B>(body: B) -> Body
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use http_body_util::BodyExt;
        Body {
            kind: Kind::Boxed(body.map_err(Into::into).boxed_unsync()),
        }
    }

    /// `inner` unchanged, each complete SSE event read by `refunds`.
    pub(crate) fn observed(inner: Body, refunds: Arc<crate::refund::Refunds>) -> Body {
        Body {
            kind: Kind::Observed(Box::new(Observer {
                inner,
                buf: BytesMut::new(),
                refunds,
            })),
        }
    }

    /// A body whose chunks `rx` delivers; it ends when every sender is gone.
    pub(crate) fn channel(rx: tokio::sync::mpsc::Receiver<Bytes>) -> Body {
        Body {
            kind: Kind::Channel(rx, false),
        }
    }

    /// `inner`, with the list answers `view` names filtered for its caller as they stream
    /// through as server-sent events.
    pub(crate) fn sse_filtered(inner: Body, view: Arc<View>) -> Body {
        Self::sse_guarded(inner, view, None)
    }

    /// As [`Body::sse_filtered`], and the server's requests that `view` refuses are taken
    /// out of the stream: each one's error answer for the server goes to `refusals`.
    pub(crate) fn sse_guarded(
        inner: Body,
        view: Arc<View>,
        refusals: Option<tokio::sync::mpsc::UnboundedSender<Value>>,
    ) -> Body {
        Body {
            kind: Kind::Sse(Box::new(SseFilter {
                inner,
                buf: BytesMut::new(),
                view,
                refusals,
                done: false,
            })),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.kind {
            Kind::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Kind::Boxed(b) => Pin::new(b).poll_frame(cx),
            Kind::Sse(f) => f.poll_frame(cx),
            Kind::Observed(o) => {
                let frame = ready!(Pin::new(&mut o.inner).poll_frame(cx));
                if let Some(Ok(f)) = &frame {
                    if let Some(data) = f.data_ref() {
                        o.read(data);
                    }
                }
                Poll::Ready(frame)
            }
            Kind::Channel(rx, done) => match ready!(rx.poll_recv(cx)) {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => {
                    *done = true;
                    Poll::Ready(None)
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Kind::Boxed(b) => b.is_end_stream(),
            Kind::Sse(f) => f.done,
            Kind::Channel(_, done) => *done,
            Kind::Observed(o) => o.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Boxed(b) => b.size_hint(),
            Kind::Sse(_) | Kind::Channel(..) => SizeHint::default(),
            Kind::Observed(o) => o.inner.size_hint(),
        }
    }
}

/// Reads an event stream as it passes, for the answers to calls whose charge may be given
/// back. Only the events still being read are buffered, up to a bound.
struct Observer {
    inner: Body,
    buf: BytesMut,
    refunds: Arc<crate::refund::Refunds>,
}

impl Observer {
    /// An event larger than this is not read (its charge stays).
    const MAX_EVENT: usize = 16 << 20;

    fn read(&mut self, data: &Bytes) {
        self.buf.extend_from_slice(data);
        while let Some(end) = event_end(&self.buf) {
            let event = self.buf.split_to(end);
            let text = String::from_utf8_lossy(&event);
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            let data: Vec<&str> = lines(text).filter_map(data_value).collect();
            if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
                self.refunds.settle(&v);
            }
        }
        if self.buf.len() > Self::MAX_EVENT {
            self.buf.clear();
        }
    }
}

/// Passes an event stream through event by event, rewriting list results.
struct SseFilter {
    inner: Body,
    buf: BytesMut,
    view: Arc<View>,
    /// Where refused server requests' answers go (they are dropped when `None`).
    refusals: Option<tokio::sync::mpsc::UnboundedSender<Value>>,
    done: bool,
}

impl SseFilter {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        self.buf.extend_from_slice(&data);
                        let out = self.take_events();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    self.done = true;
                    // An event cut off by the end of the stream is not dispatched by a
                    // client that follows the spec; it is filtered anyway, for those that
                    // don't.
                    let rest = self.buf.split().freeze();
                    let rest = match self.rewrite(&String::from_utf8_lossy(&rest)) {
                        Some(rewritten) => Bytes::from(rewritten),
                        None => rest,
                    };
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))));
                }
            }
        }
    }

    /// Every complete event in the buffer, rewritten where needed; a partial event stays.
    fn take_events(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        while let Some(end) = event_end(&self.buf) {
            let event = self.buf.split_to(end);
            // Clients decode the stream as UTF-8 with replacement (the SSE spec), so an event
            // with invalid bytes is still dispatched: it is read the same way here.
            match self.rewrite(&String::from_utf8_lossy(&event)) {
                Some(rewritten) => out.extend_from_slice(rewritten.as_bytes()),
                None => out.extend_from_slice(&event),
            }
        }
        out.freeze()
    }

    /// The event as the client gets it: `None` to pass it as it is, `""` to drop it.
    fn rewrite(&self, event: &str) -> Option<String> {
        match rewrite_event(event, &self.view)? {
            Rewritten::Event(e) => Some(e),
            Rewritten::Refused(refused, rest) => {
                if let Some(tx) = &self.refusals {
                    for (id, why) in refused {
                        let _ = tx.send(crate::view::refusal(&id, &why));
                    }
                }
                Some(rest.unwrap_or_default())
            }
        }
    }
}

/// What becomes of one event.
enum Rewritten {
    /// The event with its message rewritten.
    Event(String),
    /// Requests of the server's that the policy refuses (each one's id and why), and the
    /// event with what is left of the message (the rest of a batch), if anything.
    Refused(Vec<(Value, String)>, Option<String>),
}

/// The length of the first complete event (through the empty line that ends it), if any.
/// Lines end with LF, CRLF or a lone CR (the SSE spec allows all three); a CR that is the
/// last byte so far may be the first half of a CRLF, so it waits for the next byte.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut pos = 0;
    loop {
        let (line_end, next) = line_end(buf, pos)?;
        if line_end == pos {
            return Some(next);
        }
        pos = next;
    }
}

/// Whether `data` ends where an event does (a blank line), so that nothing of it waits for
/// the next frame. Only the plain cases are recognised; others take the general path.
fn ends_an_event(data: &[u8]) -> bool {
    data.ends_with(b"\n\n") || data.ends_with(b"\r\n\r\n")
}

/// From `pos`: where the line ends and where the next one starts, if it is complete.
fn line_end(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let i = pos
        + buf
            .get(pos..)?
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')?;
    match (buf[i], buf.get(i + 1)) {
        (b'\n', _) => Some((i, i + 1)),
        (_, Some(b'\n')) => Some((i, i + 2)),
        (_, Some(_)) => Some((i, i + 1)),
        // A CR at the very end: CR or CRLF? The next bytes will tell.
        (_, None) => None,
    }
}

/// The lines of one event, whatever their line ends.
fn lines(event: &str) -> impl Iterator<Item = &str> {
    let bytes = event.as_bytes();
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= bytes.len() {
            return None;
        }
        // Within a whole event a final CR ends its line (there is no next byte to wait for).
        let (end, next) = line_end(bytes, pos).unwrap_or(match bytes.last() {
            Some(b'\r') => (bytes.len() - 1, bytes.len()),
            _ => (bytes.len(), bytes.len()),
        });
        let line = event.get(pos..end)?;
        pos = next;
        Some(line)
    })
}

/// The JSON-RPC messages of a whole answer: one JSON body, or each event's data of an event
/// stream. What is not JSON is left out.
pub(crate) fn messages_in(bytes: &[u8], stream: bool) -> Vec<Value> {
    if !stream {
        return serde_json::from_slice(bytes).into_iter().collect();
    }
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(end) = event_end(rest) {
        let text = String::from_utf8_lossy(&rest[..end]);
        let data: Vec<&str> = lines(&text).filter_map(data_value).collect();
        if let Ok(v) = serde_json::from_str::<Value>(&data.join("\n")) {
            out.push(v);
        }
        rest = &rest[end..];
    }
    out
}

/// The value of a `data` field line (`data: x`, `data:x`, or a bare `data`), else `None`.
fn data_value(line: &str) -> Option<&str> {
    if line == "data" {
        return Some("");
    }
    let v = line.strip_prefix("data:")?;
    Some(v.strip_prefix(' ').unwrap_or(v))
}

fn rewrite_event(event: &str, view: &View) -> Option<Rewritten> {
    // A byte order mark opening the stream is ignored by clients.
    let event = event.strip_prefix('\u{feff}').unwrap_or(event);
    let data: Vec<&str> = lines(event).filter_map(data_value).collect();
    if data.is_empty() {
        return None;
    }
    let joined = data.join("\n");
    // The server's own requests are looked at only under a policy that rules them.
    match view.guard(&joined) {
        Guarded::Pass => {}
        Guarded::Dropped => return Some(Rewritten::Refused(Vec::new(), None)),
        Guarded::Refused(refused, rest) => {
            let rest = rest.map(|mut v| {
                view.filter(&mut v);
                with_data(event, &v.to_string())
            });
            return Some(Rewritten::Refused(refused, rest));
        }
    }
    let rewritten = view.filter_bytes(joined.as_bytes())?;
    Some(Rewritten::Event(with_data(event, &rewritten)))
}

/// `event` with `rewritten` as its data.
fn with_data(event: &str, rewritten: &str) -> String {
    // Other fields (event, id, retry, comments) keep their place; the data lines go where
    // the first one was. Kept entries are copied as the server wrote them, line breaks
    // included: each line of the message is a data line of its own.
    let mut out = String::with_capacity(event.len());
    let mut wrote = false;
    for line in lines(event) {
        if data_value(line).is_some() {
            if !wrote {
                for part in rewritten.split(['\n', '\r']).filter(|p| !p.is_empty()) {
                    out.push_str("data: ");
                    out.push_str(part);
                    out.push('\n');
                }
                wrote = true;
            }
        } else if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    out
}

/// What [`map_messages`] looks for before reading an event, made once (a searcher built
/// for every frame costs more than the search): keep it in a `static`.
pub struct Needle(memchr::memmem::Finder<'static>);

impl Needle {
    pub fn new(needle: &'static str) -> Needle {
        Needle(memchr::memmem::Finder::new(needle.as_bytes()))
    }
}

/// An event stream whose JSON messages pass through `f` on their way: an event whose
/// message `f` changed (it returns `true`) is written again with the new message, every
/// other byte passes as it came. Only events whose data contain `needle` are read at all
/// (a tool's result need not be parsed to learn it is not a request). A gateway in front
/// of several servers renames the ids of their requests with it.
pub fn map_messages<F>(body: Body, needle: &'static Needle, f: F) -> Body
where
    F: FnMut(&mut Value) -> bool + Send + Unpin + 'static,
{
    Body::new(MessageMap {
        inner: body,
        buf: BytesMut::new(),
        needle,
        f,
        done: false,
    })
}

struct MessageMap<F> {
    inner: Body,
    buf: BytesMut,
    needle: &'static Needle,
    f: F,
    done: bool,
}

impl<F: FnMut(&mut Value) -> bool> MessageMap<F> {
    fn rewrite(&mut self, event: &[u8]) -> Option<String> {
        self.needle.0.find(event)?;
        let text = String::from_utf8_lossy(event);
        let data: Vec<&str> = lines(&text).filter_map(data_value).collect();
        if data.is_empty() {
            return None;
        }
        let mut message: Value = serde_json::from_str(&data.join("\n")).ok()?;
        (self.f)(&mut message).then(|| with_data(&text, &message.to_string()))
    }
}

impl<F: FnMut(&mut Value) -> bool + Unpin> http_body::Body for MessageMap<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    // Whole events none of which can be read (a tool's result, usually):
                    // the frame goes on as it came, not copied.
                    Ok(data)
                        if this.buf.is_empty()
                            && ends_an_event(&data)
                            && this.needle.0.find(&data).is_none() =>
                    {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(data) => {
                        this.buf.extend_from_slice(&data);
                        let mut out = BytesMut::new();
                        while let Some(end) = event_end(&this.buf) {
                            let event = this.buf.split_to(end);
                            match this.rewrite(&event) {
                                Some(e) => out.extend_from_slice(e.as_bytes()),
                                None => out.extend_from_slice(&event),
                            }
                        }
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                        }
                    }
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    this.done = true;
                    let rest = this.buf.split().freeze();
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))));
                }
            }
        }
    }
}

/// Why [`collect`] gave up.
#[derive(Debug)]
pub enum Uncollected {
    /// More than the limit.
    TooLarge,
    /// The body failed.
    Failed(BoxError),
}

/// All of a body's bytes, refusing more than `max`. A body that comes in one piece (as the
/// gateway's server makes them) is returned as it is, without being copied.
pub async fn collect<B>(body: B, max: usize) -> Result<Bytes, Uncollected>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let first = match body.frame().await {
        None => return Ok(Bytes::new()),
        Some(Err(e)) => return Err(Uncollected::Failed(e.into())),
        Some(Ok(frame)) => frame.into_data().unwrap_or_default(),
    };
    if first.len() > max {
        return Err(Uncollected::TooLarge);
    }
    if body.is_end_stream() {
        return Ok(first);
    }
    match http_body_util::Limited::new(body, max - first.len())
        .collect()
        .await
    {
        Ok(rest) => {
            let rest = rest.to_bytes();
            let mut all = BytesMut::with_capacity(first.len() + rest.len());
            all.extend_from_slice(&first);
            all.extend_from_slice(&rest);
            Ok(all.freeze())
        }
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Uncollected::TooLarge),
        Err(e) => Err(Uncollected::Failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serde_json::json;

    fn pieces(parts: &[&'static str]) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel(parts.len().max(1));
        for p in parts {
            tx.try_send(Bytes::from_static(p.as_bytes())).unwrap();
        }
        Body::channel(rx)
    }

    #[tokio::test]
    async fn collect_takes_one_piece_as_it_is_and_holds_the_limit_across_pieces() {
        let one = Bytes::from_static(b"{\"id\":1}");
        let got = collect(Body::full(one.clone()), 100).await.unwrap();
        assert_eq!(got.as_ptr(), one.as_ptr(), "one piece is not copied");
        assert_eq!(collect(Body::empty(), 0).await.unwrap(), Bytes::new());
        assert_eq!(
            collect(pieces(&["ab", "cd", "e"]), 5).await.unwrap(),
            Bytes::from_static(b"abcde")
        );
        for (parts, max) in [(&["abcdef"][..], 5), (&["ab", "cd", "ef"][..], 5)] {
            assert!(
                matches!(
                    collect(pieces(parts), max).await,
                    Err(Uncollected::TooLarge)
                ),
                "{parts:?} {max}"
            );
        }
    }

    fn view(id: u64) -> Arc<View> {
        let p = warden_policy::Policy::from_value(
            &json!({"version": "1", "default": "allow", "hide": ["delete_*"]}),
        )
        .unwrap();
        let policy = Arc::new(warden_policy::CompiledPolicy::new(&p).unwrap());
        Arc::new(View::new(
            policy,
            vec![(json!(id), crate::List::Tools)],
            None,
        ))
    }

    /// Frames delivered one poll at a time, as a network would.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn map_messages_rewrites_requests_wherever_the_frames_are_cut() {
        static METHOD: std::sync::LazyLock<Needle> =
            std::sync::LazyLock::new(|| Needle::new("\"method\""));
        let rename = |m: &mut Value| {
            let is_request = m.get("method").is_some() && m.get("id").is_some();
            if is_request {
                m["id"] = format!("s/{}", m["id"]).into();
            }
            is_request
        };
        let stream = "data: {\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"sampling/createMessage\"}\n\n\
                      id: 2\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"x\":\"y\"}}\r\n\r\n";
        for split in 1..stream.len() {
            let (a, b) = stream.split_at(split);
            let body = Body::new(Chunks(
                [Bytes::from(a.to_owned()), Bytes::from(b.to_owned())].into(),
            ));
            let out = map_messages(body, &METHOD, rename)
                .collect()
                .await
                .unwrap()
                .to_bytes();
            let out = String::from_utf8(out.to_vec()).unwrap();
            assert!(out.contains("\"id\":\"s/3\""), "split at {split}: {out}");
            assert!(
                out.ends_with(
                    "id: 2\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"x\":\"y\"}}\r\n\r\n"
                ),
                "split at {split}: {out}"
            );
        }
        // Whole events none of which is read go on as the same bytes, not copied.
        let answer = Bytes::from_static(b"data: {\"id\":1,\"result\":{}}\n\n");
        let mut body = map_messages(Body::new(Chunks([answer.clone()].into())), &METHOD, rename);
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(frame.as_ptr(), answer.as_ptr());
    }

    #[test]
    fn events_end_at_an_empty_line_whatever_the_line_ends() {
        assert_eq!(event_end(b"data: a\n\nrest"), Some(9));
        assert_eq!(event_end(b"data: a\r\n\r\nrest"), Some(11));
        assert_eq!(event_end(b"data: a\r\rrest"), Some(9));
        assert_eq!(event_end(b"data: a\n\r\nx"), Some(10));
        // A CR last: maybe half a CRLF, so not yet.
        assert_eq!(event_end(b"data: a\r\n\r"), None);
        assert_eq!(event_end(b"data: a\n"), None);
    }

    #[test]
    fn the_spec_examples_parse_as_the_spec_says() {
        // WHATWG HTML, "Server-sent events", the examples of the event stream format.
        let joined = |e: &str| {
            lines(e)
                .filter_map(data_value)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(joined("data: YHOO\ndata: +2\ndata: 10\n"), "YHOO\n+2\n10");
        assert_eq!(joined(": test stream\n"), "");
        assert_eq!(joined("data: first event\nid: 1\n"), "first event");
        assert_eq!(joined("data:second event\nid\n"), "second event");
        assert_eq!(joined("data:  third event\n"), " third event");
        assert_eq!(joined("data\n"), "");
        assert_eq!(joined("data\ndata\n"), "\n");
        assert_eq!(joined("data:\r\ndata: x\r"), "\nx");
        // `data` must be the whole field name.
        assert_eq!(joined("datum: x\n"), "");
    }

    #[tokio::test]
    async fn cr_only_and_multi_line_events_are_filtered_too() {
        let list = json!({"jsonrpc": "2.0", "id": 7, "result": {"tools": [{"name": "get_a"}, {"name": "delete_a"}]}});
        let text = serde_json::to_string_pretty(&list).unwrap();
        // The answer spread over several data lines, CR line ends, a comment and an id.
        let multi: String = text.lines().map(|l| format!("data: {l}\r")).collect();
        let stream = format!(": keep-alive\rid: 9\r{multi}\r");
        for split in [1, 7, stream.len() / 2, stream.len() - 1] {
            let (a, b) = stream.split_at(split);
            let body = Body::new(Chunks(
                [Bytes::from(a.to_owned()), Bytes::from(b.to_owned())].into(),
            ));
            let out = Body::sse_filtered(body, view(7))
                .collect()
                .await
                .unwrap()
                .to_bytes();
            let out = String::from_utf8(out.to_vec()).unwrap();
            assert!(!out.contains("delete_a"), "split at {split}: {out}");
            assert!(
                out.contains("get_a") && out.contains("id: 9"),
                "split at {split}: {out}"
            );
        }
        // Cut off before its empty line: filtered all the same.
        let cut = format!("data: {list}");
        let out = Body::sse_filtered(Body::full(cut), view(7))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert!(!String::from_utf8_lossy(&out).contains("delete_a"));
    }

    /// Found by tests/fuzz (sse_filter): an event holding bytes that are not UTF-8 was passed
    /// through unfiltered, but clients decode with replacement and dispatch it.
    #[tokio::test]
    async fn events_with_invalid_utf8_or_a_byte_order_mark_are_filtered_too() {
        let list = json!({"jsonrpc": "2.0", "id": 0, "result": {"tools": [{"name": "delete_a"}, {"name": "get_a"}]}});
        for prefix in [&b"\xff"[..], "\u{feff}".as_bytes(), b"\xc3"] {
            let mut stream = prefix.to_vec();
            stream.extend_from_slice(format!("event: message\ndata: {list}\n\n").as_bytes());
            let out = Body::sse_filtered(Body::full(stream), view(0))
                .collect()
                .await
                .unwrap()
                .to_bytes();
            let out = String::from_utf8_lossy(&out);
            assert!(
                !out.contains("delete_a") && out.contains("get_a"),
                "{prefix:?}: {out}"
            );
        }
    }

    /// Found by tests/fuzz (server_requests): a sampling request in a batch, or in JSON only
    /// a lenient reader takes, passed to the client unanswered.
    #[tokio::test]
    async fn refused_requests_in_batches_and_lenient_json_are_answered_not_passed() {
        let p = warden_policy::Policy::from_value(&json!({"version": "1", "default": "allow",
            "hide": ["delete_*"],
            "server_requests": {"sampling/createMessage": {"deny_if": [{"conditions": []}]}}}))
        .unwrap();
        let policy = Arc::new(warden_policy::CompiledPolicy::new(&p).unwrap());
        let view = Arc::new(View::new(
            policy,
            vec![(json!(1), crate::List::Tools)],
            None,
        ));
        let stream = concat!(
            r#"id: 1"#,
            "\n",
            r#"data: [{"jsonrpc":"2.0","id":6,"method":"sampling/createMessage"},"#,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_a"},{"name":"get_a"}]}}]"#,
            "\n\n",
            r#"data: {"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{"t":"\ud800"}}"#,
            "\n\n",
            r#"data: {"jsonrpc":"2.0","id":4,"method":"sampling/createMessage","method":"ping"}"#,
            "\n\n",
            r#"data: {"jsonrpc":"2.0","id":5,"method":"roots/list"}"#,
            "\n\n",
        );
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let out = Body::sse_guarded(Body::full(stream), view, Some(tx))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let out = String::from_utf8(out.to_vec()).unwrap();
        let events: Vec<&str> = out.split_terminator("\n\n").collect();
        let data = |e: &str| -> Value {
            serde_json::from_str(e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap()
        };
        assert_eq!(events.len(), 2, "{out}");
        assert!(events[0].starts_with("id: 1\n"), "{out}");
        assert_eq!(
            data(events[0]),
            json!([{"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "get_a"}]}}])
        );
        assert_eq!(
            events[1],
            r#"data: {"jsonrpc":"2.0","id":5,"method":"roots/list"}"#
        );
        let mut answered = Vec::new();
        while let Ok(a) = rx.try_recv() {
            let message = a["error"]["message"].as_str().unwrap();
            assert!(message.starts_with(crate::DENIED_PREFIX), "{a}");
            answered.push(a["id"].clone());
        }
        // The repeated `method` is dropped: there is no id to answer for certain.
        assert_eq!(answered, [json!(6), json!(3)]);
    }

    #[tokio::test]
    async fn sse_events_are_filtered_even_when_split_across_frames() {
        let answer = json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": [{"name": "get_a"}, {"name": "delete_a"}]}});
        let other = json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": [{"name": "delete_b"}]}});
        let stream = format!("id: 1\ndata: {answer}\n\ndata: {other}\n\n");
        let (a, b) = stream.as_bytes().split_at(20);
        let inner = Body::new(Chunks(
            [Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)].into(),
        ));
        let out = Body::sse_filtered(inner, view(2))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let out = String::from_utf8(out.to_vec()).unwrap();
        assert!(out.starts_with("id: 1\ndata: "), "{out}");
        assert!(!out.contains("delete_a"), "{out}");
        assert!(out.contains("get_a"), "{out}");
        // Only answers to the tools/list ids are touched.
        assert!(out.contains("delete_b"), "{out}");
    }
}
