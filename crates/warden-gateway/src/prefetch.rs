//! The part of an upstream answer that has already arrived, gathered before the answer
//! goes back, so its head and body leave in one write.
//!
//! hyper's client hands a body over one frame at a time through a channel, and its server
//! writes (and flushes) whenever the body it sends has nothing ready. A typical MCP answer —
//! an SSE priming event, the result event and the chunked terminator, all in one upstream
//! read — thus cost three `writev`s and three loopback segments towards the client, where
//! nginx needs one or two; that was a good part of the gateway's CPU per call
//! (docs/PERFORMANCE.md). [`gather`] lets the connection task pass on what it already
//! holds, without ever waiting for the network: it stops at the first moment nothing more
//! is ready, so streams (SSE notifications, progress) are as prompt as before. An answer
//! that arrived whole goes back with a `Content-Length` (still the same bytes).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as _, Frame};
use hyper::body::Incoming;
use warden_tower::{Body, BoxError};

/// Past this much, what is gathered goes out and the rest streams (a large answer is not
/// buffered whole).
const MAX_GATHER: usize = 64 * 1024;

/// The upstream body, with what had arrived by now read ahead.
pub async fn gather(mut body: Incoming) -> Body {
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    let mut idle_turns = 0;
    let next = loop {
        let len = more
            .as_ref()
            .map_or(first.as_ref().map_or(0, Bytes::len), BytesMut::len);
        if len >= MAX_GATHER {
            break Next::Stream;
        }
        match poll_once(&mut body).await {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    idle_turns = 0;
                    match (&first, &mut more) {
                        (None, _) => first = Some(data),
                        (Some(f), None) => {
                            let mut buf = BytesMut::with_capacity(f.len() + data.len());
                            buf.extend_from_slice(f);
                            buf.extend_from_slice(&data);
                            more = Some(buf);
                        }
                        (Some(_), Some(buf)) => buf.extend_from_slice(&data),
                    }
                }
                Err(frame) => break Next::Frame(frame),
            },
            Poll::Ready(Some(Err(e))) => break Next::Error(e.into()),
            Poll::Ready(None) => break Next::End,
            // One turn of the scheduler lets hyper's connection task pass on a frame it
            // already holds; a second turn with nothing means the rest is still on the
            // network, and we do not wait for it.
            Poll::Pending if idle_turns == 0 => {
                idle_turns += 1;
                YieldOnce(false).await;
            }
            Poll::Pending => break Next::Stream,
        }
    };
    let head = more.map(BytesMut::freeze).or(first);
    match (head, next) {
        (Some(head), Next::End) => Body::full(head),
        (None, Next::End) => Body::empty(),
        (None, Next::Stream) => Body::new(body),
        (head, next) => Body::new(Prefetched {
            head,
            next: Some(next),
            body,
        }),
    }
}

enum Next {
    /// Trailers (any frame that is not data).
    Frame(Frame<Bytes>),
    Error(BoxError),
    End,
    /// The rest is still to come from the upstream.
    Stream,
}

/// Polls the body once with the task's own context: the frame, or `Pending` with the
/// task's waker registered.
fn poll_once(
    body: &mut Incoming,
) -> impl Future<Output = Poll<Option<Result<Frame<Bytes>, hyper::Error>>>> + '_ {
    std::future::poll_fn(move |cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx)))
}

/// Gives the scheduler one turn: wakes itself and returns `Pending` once. (Unlike
/// `tokio::task::yield_now`, which waits for the I/O driver's next poll: a system call.)
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// What was read ahead, then whatever followed it.
struct Prefetched {
    head: Option<Bytes>,
    next: Option<Next>,
    body: Incoming,
}

impl http_body::Body for Prefetched {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        match self.next.take() {
            Some(Next::Frame(f)) => Poll::Ready(Some(Ok(f))),
            Some(Next::Error(e)) => {
                self.next = Some(Next::End);
                Poll::Ready(Some(Err(e)))
            }
            Some(Next::End) => {
                self.next = Some(Next::End);
                Poll::Ready(None)
            }
            Some(Next::Stream) | None => {
                self.next = Some(Next::Stream);
                Pin::new(&mut self.body)
                    .poll_frame(cx)
                    .map_err(|e| Box::new(e) as BoxError)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && matches!(self.next, Some(Next::End))
    }
}
