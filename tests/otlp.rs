//! An OTLP/HTTP receiver on loopback for the traces test and bench: it takes
//! `POST /v1/traces` (protobuf), decodes each request with the `opentelemetry-proto` types
//! and keeps the spans, and the raw bytes (to search for what must never be there).

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One span as received, with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: String,
    pub span: Span,
}

impl Received {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// An attribute's value as text (`None` when absent).
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::ArrayValue(a)) => {
            a.values.iter().map(text).collect::<Vec<_>>().join(",")
        }
        other => format!("{other:?}"),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .map(text)
}

/// The receiver: serving until [`Receiver::stop`] (or drop).
pub struct Receiver {
    pub url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    raw: Arc<Mutex<Vec<u8>>>,
    requests: Arc<AtomicUsize>,
    /// The last request's headers (a keeping receiver's).
    headers: Arc<Mutex<http::HeaderMap>>,
    /// Spans received (kept or not).
    count: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    /// Listens on a free loopback port (`port` 0) or on `port`, keeping every span.
    pub fn start(port: u16) -> Receiver {
        Self::listen(port, true, None)
    }

    /// The same, counting spans without keeping them (a bench's millions).
    pub fn start_counting(port: u16) -> Receiver {
        Self::listen(port, false, None)
    }

    /// [`Receiver::start`] over TLS with `config` (an `https://` collector).
    pub fn start_tls(config: Arc<rustls::ServerConfig>) -> Receiver {
        let mut r = Self::listen(0, true, Some(config));
        r.url = r.url.replace("http://127.0.0.1", "https://localhost");
        r
    }

    fn listen(port: u16, keep: bool, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let std_listener =
            std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the OTLP receiver");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", std_listener.local_addr().expect("address"));
        let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
        let raw: Arc<Mutex<Vec<u8>>> = Arc::default();
        let requests: Arc<AtomicUsize> = Arc::default();
        let count: Arc<AtomicUsize> = Arc::default();
        let headers: Arc<Mutex<http::HeaderMap>> = Arc::default();
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let (s, r, n) = (spans.clone(), raw.clone(), requests.clone());
        let (c, h) = (count.clone(), headers.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((tcp, _)) = accepted else { continue };
                            let (s, r, n, c, h) = (s.clone(), r.clone(), n.clone(), c.clone(), h.clone());
                            let tls = tls.clone().map(tokio_rustls::TlsAcceptor::from);
                            conns.spawn(async move {
                                let svc = hyper::service::service_fn(move |req| {
                                    let (s, r, n, c, h) = (s.clone(), r.clone(), n.clone(), c.clone(), h.clone());
                                    async move {
                                        let kept = keep.then_some((&*s, &*r, &*h));
                                        Ok::<_, std::convert::Infallible>(take(req, kept, &n, &c).await)
                                    }
                                });
                                let http = hyper::server::conn::http1::Builder::new();
                                match tls {
                                    None => {
                                        let _ = http.serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await;
                                    }
                                    Some(acceptor) => {
                                        // A client that does not trust the certificate
                                        // ends here: nothing is received.
                                        if let Ok(stream) = acceptor.accept(tcp).await {
                                            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                                        }
                                    }
                                }
                            });
                        }
                    }
                }
                // Stopped: the port closes and every open connection with it.
                drop(listener);
                conns.abort_all();
            });
        });
        Receiver {
            url,
            spans,
            raw,
            requests,
            headers,
            count,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().expect("spans").clone()
    }

    /// Every request body received so far, end to end.
    pub fn raw(&self) -> Vec<u8> {
        self.raw.lock().expect("raw").clone()
    }

    /// The headers of the last request a keeping receiver took.
    pub fn last_headers(&self) -> http::HeaderMap {
        self.headers.lock().expect("headers").clone()
    }

    /// Export requests taken.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// Spans received, kept or not.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Waits (up to `secs`) until `done` holds of the spans received.
    pub fn wait_for(&self, secs: u64, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let spans = self.spans();
            if done(&spans) || std::time::Instant::now() > deadline {
                return spans;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Closes the port and drops every connection: a collector that went away.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where a keeping receiver puts the spans, the raw bodies and the last headers.
type Kept<'a> = (
    &'a Mutex<Vec<Received>>,
    &'a Mutex<Vec<u8>>,
    &'a Mutex<http::HeaderMap>,
);

async fn take(
    req: http::Request<hyper::body::Incoming>,
    kept: Option<Kept<'_>>,
    requests: &AtomicUsize,
    count: &AtomicUsize,
) -> http::Response<Full<Bytes>> {
    let headers = req.headers().clone();
    let path_ok = req.method() == http::Method::POST && req.uri().path() == "/v1/traces";
    let protobuf = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return status(400),
    };
    if !path_ok || !protobuf {
        return status(404);
    }
    let Ok(export) = ExportTraceServiceRequest::decode(body.clone()) else {
        return status(400);
    };
    requests.fetch_add(1, Ordering::Relaxed);
    let n: usize = export
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum();
    count.fetch_add(n, Ordering::Relaxed);
    let Some((spans, raw, last)) = kept else {
        return ok();
    };
    *last.lock().expect("headers") = headers;
    raw.lock().expect("raw").extend_from_slice(&body);
    let mut kept = spans.lock().expect("spans");
    for rs in export.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| attr(&r.attributes, "service.name"))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                kept.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
    }
    ok()
}

fn ok() -> http::Response<Full<Bytes>> {
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    http::Response::builder()
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::from(answer)))
        .unwrap_or_default()
}

fn status(code: u16) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_REQUEST);
    r
}
