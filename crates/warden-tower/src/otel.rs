//! Traces: one OpenTelemetry span per MCP message the layer reads, named and attributed as
//! the semantic conventions for MCP say, joined to the client's trace and handed on to the
//! server's.
//!
//! ```
//! use opentelemetry::trace::TracerProvider as _;
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use warden_tower::PolicyLayer;
//!
//! let policy = warden_policy::Policy::from_json_str(
//!     r#"{"version": "1", "default": "deny", "tools": {"get_weather": {}}}"#).unwrap();
//! // Give the provider an exporter (opentelemetry-otlp's, say) to send the spans somewhere.
//! let provider = SdkTracerProvider::builder().build();
//! let layer = PolicyLayer::new(warden_policy::CompiledPolicy::new(&policy).unwrap())
//!     .tracer(provider.tracer("warden"));
//! ```
//!
//! - A message's span (kind server) is named `{mcp.method.name} {target}` (`tools/call
//!   get_weather`), with `jsonrpc.request.id`, `mcp.session.id`, `mcp.protocol.version`,
//!   `network.transport`, `gen_ai.tool.name` or `gen_ai.prompt.name` or `mcp.resource.uri`,
//!   and Warden's own: `warden.decision`, `warden.rule`, `warden.grant` (the grant's name:
//!   a hash, never the token), `warden.server`, the counters charged and the room left in
//!   them, or the limit that refused. An answer that is a JSON-RPC error sets `error.type`
//!   to its code; a tool result with `isError`, to `tool_error`.
//! - Its parent is the `traceparent` (and `tracestate`) in the message's `params._meta`,
//!   where MCP clients carry it, else the request's `traceparent` header.
//! - Children: the upstream call (kind client, same name), the counter store's round trip
//!   when the counters live elsewhere (Redis), and the wait for a person's approval.
//! - The upstream request carries the upstream span's context the same two ways: the
//!   `traceparent` header, and `params._meta.traceparent` of a single request (the only way
//!   through a stdio server).
//! - Never in a span: a token, an argument's value, the text of a server's error.
//!
//! Unsampled messages cost a span context and nothing else: no attribute is gathered, no
//! child made, no body rewritten.

use std::borrow::Cow;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Frame;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{
    SpanBuilder, SpanContext, SpanKind, SpanRef, Status, TraceContextExt, TraceFlags,
};
use opentelemetry::{Context, KeyValue, Value as OtelValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::trace::{SamplingDecision, SdkTracer, ShouldSample};
use serde_json::Value;
use smallvec::SmallVec;

use crate::body::{Body, BoxError};
use crate::inspect::{Members, Message, Params};
use crate::limit::{Charge, CounterStore, Limited};
use crate::service::Caller;

/// Where the layer's spans go ([`crate::PolicyLayer::tracer`]).
#[derive(Clone)]
pub(crate) struct Tracing {
    tracer: SdkTracer,
    /// The provider's sampler, when the layer was told it: asked before the SDK, so that a
    /// message it drops costs no span.
    sampler: Option<Arc<dyn ShouldSample>>,
}

impl Tracing {
    pub(crate) fn new(tracer: SdkTracer, sampler: Option<Box<dyn ShouldSample>>) -> Self {
        Tracing {
            tracer,
            sampler: sampler.map(Arc::from),
        }
    }

    /// Whether the sampler drops a span under `parent` (a valid context), when the layer
    /// knows the sampler; otherwise the SDK is asked, span and all.
    fn drops(&self, parent: &Context, name: &str) -> bool {
        let Some(sampler) = &self.sampler else {
            return false;
        };
        let trace_id = parent.span().span_context().trace_id();
        let r = sampler.should_sample(Some(parent), trace_id, name, &SpanKind::Server, &[], &[]);
        r.decision == SamplingDecision::Drop
    }
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracing")
    }
}

/// How the messages reached the layer: `network.transport` of their spans. An HTTP request
/// is `tcp`; `warden stdio` marks its requests `pipe` with this extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    #[default]
    Tcp,
    Pipe,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Pipe => "pipe",
        }
    }
}

/// The spans of one request's messages (one, unless it is a batch).
pub(crate) struct Trace {
    spans: SmallVec<[Spanned; 1]>,
    /// The upstream call's span, once the request goes on.
    upstream: Mutex<Option<Context>>,
    /// The first span's trace id, and as 32 hex digits once the audit line asks.
    trace_id: opentelemetry::trace::TraceId,
    trace_text: std::sync::OnceLock<String>,
    recording: bool,
    /// The client sent a trace context (in `_meta` or the header).
    joined: bool,
    /// The first message's `params._meta` holds a `traceparent` string.
    meta_traceparent: bool,
    tracer: SdkTracer,
}

struct Spanned {
    /// The request's id; `None` for a notification.
    id: Option<Value>,
    /// `{method} {target}`, of a recording span (the upstream call's is named the same).
    name: Option<String>,
    cx: Context,
    /// The policy refused it: its status already says why.
    refused: AtomicBool,
}

/// The context a W3C `traceparent` (and `tracestate`) names, as the parent of a span; an
/// empty one when there is none or it is not valid.
///
/// Read here rather than with the SDK's `TraceContextPropagator::extract`, which splits the
/// header into a vector and costs some 2,600 instructions a call (callgrind), against about
/// a tenth here: every traced call pays it, sampled or not. The rules are the
/// specification's: lowercase hex, version `ff` invalid, all-zero ids invalid, a version
/// after `00` may carry more fields after a `-`.
fn remote(from: &dyn Extractor) -> Context {
    let Some(sc) = from
        .get("traceparent")
        .and_then(|tp| parse_traceparent(trimmed(tp), from.get("tracestate")))
    else {
        return Context::new();
    };
    Context::new().with_remote_span_context(sc)
}

/// `text` without the white space around it, looked for only where it could be.
fn trimmed(text: &str) -> &str {
    let ends = |b: Option<&u8>| b.is_some_and(u8::is_ascii_whitespace);
    if ends(text.as_bytes().first()) || ends(text.as_bytes().last()) {
        text.trim()
    } else {
        text
    }
}

fn parse_traceparent(tp: &str, state: Option<&str>) -> Option<opentelemetry::trace::SpanContext> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let b = tp.as_bytes();
    // Lowercase hex digits by table, anything else 0x10 and up, and one branch at the end:
    // the two-digit version and flags (the ids are read eight digits at a time).
    const DIGITS: [u8; 256] = {
        let mut t = [0xff_u8; 256];
        let mut i = 0;
        while i < 16 {
            t[b"0123456789abcdef"[i] as usize] = i as u8;
            i += 1;
        }
        t
    };
    fn hex(b: &[u8]) -> Option<u64> {
        let (mut v, mut bad) = (0_u64, 0_u8);
        for &c in b {
            let d = DIGITS[usize::from(c)];
            bad |= d;
            v = (v << 4) | u64::from(d & 0x0f);
        }
        (bad < 0x10).then_some(v)
    }
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let version = hex(&b[..2])?;
    let ok_length = match version {
        0 => b.len() == 55,
        0xff => false,
        _ => b.len() == 55 || b[55] == b'-',
    };
    let trace = (u128::from(digits16(&b[3..19])?) << 64) | u128::from(digits16(&b[19..35])?);
    let span = digits16(&b[36..52])?;
    let flags = u8::try_from(hex(&b[53..55])?).ok()?;
    if !ok_length || trace == 0 || span == 0 {
        return None;
    }
    let state = state
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(
        TraceId::from(trace),
        SpanId::from(span),
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        state,
    ))
}

/// Eight lowercase hex digits read at once, in one register (a `traceparent`'s ids are 48
/// of its 55 characters): each byte's value from its low four bits (and 9 more for a
/// letter), accepted only if it is below 16 and written back the same, which only a
/// lowercase hex digit is.
fn digits8(b: &[u8]) -> Option<u64> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = u64::from_be_bytes(b.try_into().ok()?);
    let letters = (x >> 6) & ONES;
    let v = (x & (ONES * 0x0f)) + letters * 9;
    let tens = ((v + ONES * 6) >> 4) & ONES;
    let written = v + ONES * 0x30 + tens * 0x27;
    if v & (ONES * 0xf0) != 0 || written != x {
        return None;
    }
    let v = (v | (v >> 4)) & 0x00ff_00ff_00ff_00ff;
    let v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff;
    Some((v | (v >> 16)) & 0xffff_ffff)
}

/// Sixteen digits: a span id, or half a trace id.
fn digits16(b: &[u8]) -> Option<u64> {
    Some((digits8(b.get(..8)?)? << 32) | digits8(b.get(8..16)?)?)
}

fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        // The usual id: written by itoa, not through `fmt` (a few hundred instructions).
        Value::Number(n) => match n.as_i64() {
            Some(i) => itoa::Buffer::new().format(i).to_owned(),
            None => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// What a message's span is named and attributed with.
struct Described<'a> {
    method: &'a str,
    target: Option<&'a str>,
    id: Option<&'a Value>,
    params: Option<&'a Params<'a>>,
    transport: Transport,
    caller: &'a Caller,
    headers: &'a HeaderMap,
}

/// Attributes a recording span gets after it starts on an allowed or denied call: the
/// decision and rule, the counters and their room left, `error.type` and its code (a
/// limited call adds up to three more, and the vector may then grow once).
const LATER_ATTRIBUTES: usize = 6;

impl Described<'_> {
    /// `{method} {target}`.
    fn name(&self) -> String {
        match self.target {
            // Pushed, not `format!`ted: this is on every sampled call.
            Some(t) => {
                let mut name = String::with_capacity(self.method.len() + 1 + t.len());
                name.push_str(self.method);
                name.push(' ');
                name.push_str(t);
                name
            }
            None => self.method.to_owned(),
        }
    }

    fn attributes(&self) -> Vec<KeyValue> {
        let (method, target) = (self.method, self.target);
        let mut attrs = Vec::with_capacity(10 + LATER_ATTRIBUTES);
        let known_method = known(method);
        attrs.push(if known_method == method {
            KeyValue::new("mcp.method.name", known_method)
        } else {
            KeyValue::new("mcp.method.name", method.to_owned())
        });
        if let Some(id) = self.id {
            attrs.push(KeyValue::new("jsonrpc.request.id", id_text(id)));
        }
        attrs.push(KeyValue::new("network.transport", self.transport.name()));
        if let Some(session) = self.caller.session.as_deref() {
            attrs.push(KeyValue::new("mcp.session.id", session.to_owned()));
        }
        if let Some(v) =
            crate::service::header_str(self.headers, &crate::service::names::MCP_PROTOCOL_VERSION)
        {
            attrs.push(KeyValue::new("mcp.protocol.version", version(v)));
        }
        match (method, target) {
            ("tools/call", Some(t)) => {
                attrs.push(KeyValue::new("gen_ai.tool.name", t.to_owned()));
                attrs.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
            }
            ("prompts/get", Some(t)) => {
                attrs.push(KeyValue::new("gen_ai.prompt.name", t.to_owned()));
            }
            _ => {}
        }
        if method.starts_with("resources/") {
            if let Some(uri) = self
                .params
                .and_then(|p| p.get("uri"))
                .and_then(Value::as_str)
            {
                attrs.push(KeyValue::new("mcp.resource.uri", uri.to_owned()));
            }
        }
        // Shared, not copied.
        if let Some(g) = &self.caller.grant {
            attrs.push(KeyValue::new("warden.grant", g.clone()));
        }
        if let Some(server) = &self.caller.server {
            attrs.push(KeyValue::new("warden.server", server.clone()));
        }
        attrs
    }
}

impl Trace {
    /// A span for each request and notification of the body; `None` when there is none.
    pub(crate) fn start(
        tracing: &Tracing,
        parts: &http::request::Parts,
        messages: &[Message<'_>],
        caller: &Caller,
    ) -> Option<Arc<Trace>> {
        let mut from_header: Option<Context> = None;
        let transport = parts
            .extensions
            .get::<Transport>()
            .copied()
            .unwrap_or_default();
        let mut spans: SmallVec<[Spanned; 1]> = SmallVec::new();
        let mut joined = false;
        let mut meta_traceparent = None;
        for m in messages {
            let (id, method, params) = match m {
                Message::Request { id, method, params } => {
                    (Some(id), method.as_str(), params.as_ref())
                }
                Message::Notification { method } => (None, method.as_str(), None),
                Message::Response { .. } => continue,
            };
            let meta = params
                .and_then(|p| p.get("_meta"))
                .and_then(Value::as_object)
                .and_then(|m| Some((m.get("traceparent")?, m)));
            meta_traceparent.get_or_insert(meta.is_some_and(|(tp, _)| tp.is_string()));
            let parent = match meta {
                Some((tp, m)) => tp
                    .as_str()
                    .and_then(|tp| {
                        let state = m.get("tracestate").and_then(Value::as_str);
                        parse_traceparent(trimmed(tp), state)
                    })
                    .map_or_else(Context::new, |sc| {
                        Context::new().with_remote_span_context(sc)
                    }),
                None => from_header
                    .get_or_insert_with(|| remote(&HeaderExtractor(&parts.headers)))
                    .clone(),
            };
            let valid = parent.span().span_context().is_valid();
            joined |= valid;
            if valid && tracing.drops(&parent, known(method)) {
                // The client's own context stands for the span the sampler would drop.
                spans.push(Spanned {
                    id: None,
                    name: None,
                    cx: parent,
                    refused: AtomicBool::new(false),
                });
                continue;
            }
            let target = match method {
                "tools/call" | "prompts/get" => params.and_then(Params::name),
                _ => None,
            };
            let described = Described {
                method,
                target,
                id,
                params,
                transport,
                caller,
                headers: &parts.headers,
            };
            let (cx, name) = if valid && tracing.sampler.is_some() {
                // The sampler was asked above and said yes: named and attributed from the
                // start, in one vector with room for what the decision adds (no lock, no
                // regrowth). (A message without a context is asked by the SDK, under the
                // trace id it makes.)
                let name = described.name();
                let span = SpanBuilder::from_name(name.clone())
                    .with_kind(SpanKind::Server)
                    .with_attributes(described.attributes())
                    .start_with_context(&tracing.tracer, &parent);
                let cx = parent.with_span(span);
                let recording = cx.span().is_recording();
                (cx, recording.then_some(name))
            } else {
                // Named for good once the SDK's sampler has said yes: an unsampled span
                // costs no name.
                let span = SpanBuilder::from_name(known(method))
                    .with_kind(SpanKind::Server)
                    .start_with_context(&tracing.tracer, &parent);
                let cx = parent.with_span(span);
                let s = cx.span();
                let name = s.is_recording().then(|| {
                    let name = described.name();
                    s.update_name(name.clone());
                    s.set_attributes(described.attributes());
                    name
                });
                (cx, name)
            };
            spans.push(Spanned {
                // Looked up only for a recording span (its decision, its answer's error).
                id: name.as_ref().and_then(|_| id.cloned()),
                name,
                cx,
                refused: AtomicBool::new(false),
            });
        }
        let first = spans.first()?;
        let trace_id = first.cx.span().span_context().trace_id();
        let recording = spans.iter().any(|s: &Spanned| s.name.is_some());
        Some(Arc::new(Trace {
            trace_id,
            trace_text: std::sync::OnceLock::new(),
            recording,
            joined,
            meta_traceparent: meta_traceparent.unwrap_or(false),
            tracer: tracing.tracer.clone(),
            upstream: Mutex::new(None),
            spans,
        }))
    }

    /// The trace the request's first message belongs to, as 32 hex digits.
    pub(crate) fn trace_id(&self) -> &str {
        self.trace_text.get_or_init(|| self.trace_id.to_string())
    }

    fn spanned(&self, id: &Value) -> Option<&Spanned> {
        self.spans.iter().find(|s| s.id.as_ref() == Some(id))
    }

    /// What the policy decided about request `id`; `message` is the policy's own words.
    pub(crate) fn decided(&self, id: &Value, decision: &'static str, rule: &str, message: &str) {
        if !self.recording {
            return;
        }
        let Some(spanned) = self.spanned(id) else {
            return;
        };
        let s = spanned.cx.span();
        s.set_attributes([
            KeyValue::new("warden.decision", decision),
            KeyValue::new("warden.rule", rule.to_owned()),
        ]);
        if matches!(decision, "deny" | "limited" | "refused") {
            spanned.refused.store(true, Ordering::Relaxed);
            s.set_status(Status::error(message.to_owned()));
        }
    }

    /// The counters every message's charge went to, and the room each has left (when the
    /// store can tell without a round trip); never the keys, which may be a caller's.
    pub(crate) fn charged(&self, charges: &[Charge], store: &dyn CounterStore) {
        if !self.recording || charges.is_empty() {
            return;
        }
        let names: Vec<opentelemetry::StringValue> = charges
            .iter()
            .map(|c| c.counter.name.clone().into())
            .collect();
        let left: Option<Vec<i64>> = charges
            .iter()
            .map(|c| {
                store
                    .used_now(&c.counter, &c.key)
                    .flatten()
                    .map(|used| c.counter.max.saturating_sub(used) as i64)
            })
            .collect();
        let mut counters = Some(OtelValue::Array(names.into()));
        let mut remaining = left.map(|l| OtelValue::Array(l.into()));
        let last = self.spans.len().saturating_sub(1);
        for (i, s) in self.spans.iter().enumerate() {
            // Copied for every span but the last, which takes them.
            let (counters, remaining) = if i == last {
                (counters.take(), remaining.take())
            } else {
                (counters.clone(), remaining.clone())
            };
            let counters = counters.map(|v| KeyValue::new("warden.limit.counters", v));
            let remaining = remaining.map(|v| KeyValue::new("warden.limit.remaining", v));
            s.cx.span()
                .set_attributes(counters.into_iter().chain(remaining));
        }
    }

    /// The limit that refused the request.
    pub(crate) fn limited(&self, l: &Limited) {
        if !self.recording {
            return;
        }
        for s in &self.spans {
            let span = s.cx.span();
            span.set_attribute(KeyValue::new(
                "warden.limit.counter",
                l.counter().to_owned(),
            ));
            span.set_attribute(KeyValue::new("warden.limit.rule", l.rule().to_owned()));
            if let Limited::Exhausted {
                retry_after_secs, ..
            } = l
            {
                span.set_attribute(KeyValue::new(
                    "warden.limit.retry_after_s",
                    *retry_after_secs as i64,
                ));
            }
        }
    }

    /// A child of the first message's span, recorded only under a recording one; ends when
    /// the returned [`Child`] is dropped.
    pub(crate) fn child(&self, name: &'static str, kind: SpanKind) -> Option<Child> {
        if !self.recording {
            return None;
        }
        let parent = &self.spans.first()?.cx;
        let span = SpanBuilder::from_name(name)
            .with_kind(kind)
            .start_with_context(&self.tracer, parent);
        Some(Child {
            cx: parent.with_span(span),
            started: Instant::now(),
        })
    }

    /// Opens the upstream call's span and hands its context on: in the `traceparent`
    /// header, and in `params._meta` of a single request (a recording span only: that
    /// rewrites the body). Returns the body to forward.
    pub(crate) fn forward(&self, headers: &mut HeaderMap, bytes: Bytes, single: bool) -> Bytes {
        let Some(first) = self.spans.first() else {
            return bytes;
        };
        if !self.recording {
            // Nothing recorded: the client's own context goes on as it came (in the body or
            // the header); a call that came without one takes the decision not to sample.
            let handed = (!self.joined)
                .then(|| Handed::of(first.cx.span().span_context()))
                .flatten();
            if let Some(h) = handed {
                put_headers(headers, &h);
            }
            return bytes;
        }
        let span = SpanBuilder::from_name(first.name.clone().unwrap_or_default())
            .with_kind(SpanKind::Client)
            .start_with_context(&self.tracer, &first.cx);
        let cx = first.cx.with_span(span);
        let bytes = match Handed::of(cx.span().span_context()) {
            Some(h) => {
                put_headers(headers, &h);
                let replaced = (single && self.meta_traceparent)
                    .then(|| replace_traceparent(&h, &bytes))
                    .flatten();
                match replaced {
                    Some(b) => b,
                    None if single => with_meta(&h, &bytes).unwrap_or(bytes),
                    None => bytes,
                }
            }
            None => bytes,
        };
        *self.upstream.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx);
        bytes
    }

    /// The answer, its body wrapped so that the spans end with it, and their `error.type`
    /// read from it. An unrecorded trace is left as it is.
    pub(crate) fn finish(self: Arc<Self>, resp: Response<Body>) -> Response<Body> {
        if !self.recording {
            return resp;
        }
        let stream =
            crate::body::content_kind(resp.headers()) == crate::body::ContentKind::EventStream;
        let status = resp.status();
        resp.map(|inner| {
            Body::new(Finish {
                inner,
                trace: Some(self),
                seen: Vec::new(),
                stream,
                status,
            })
        })
    }

    /// The whole answer went to the client (or `bytes` is as much of it as was kept).
    fn answered(&self, bytes: &[u8], stream: bool, status: StatusCode, cut: Option<&str>) {
        let upstream = self
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let mut errors: SmallVec<[(Option<Value>, Cow<'static, str>); 1]> = SmallVec::new();
        let messages = if may_hold_error(bytes) {
            crate::body::messages_in(bytes, stream)
        } else {
            Vec::new()
        };
        for m in messages {
            let Some(id) = m.get("id").filter(|_| m.get("method").is_none()) else {
                continue;
            };
            if let Some(code) = m.get("error").and_then(|e| e.get("code")) {
                errors.push((Some(id.clone()), Cow::Owned(code.to_string())));
            } else if m["result"]["isError"] == Value::Bool(true) {
                errors.push((Some(id.clone()), Cow::Borrowed("tool_error")));
            }
        }
        if let Some(why) = cut {
            errors.push((None, Cow::Owned(why.to_owned())));
        } else if errors.is_empty() && (status.is_client_error() || status.is_server_error()) {
            errors.push((None, Cow::Owned(status.as_str().to_owned())));
        }
        for (id, kind) in &errors {
            let mark = |span: &SpanRef<'_>| {
                span.set_attribute(KeyValue::new("error.type", kind.to_string()));
                // A JSON-RPC error's code (negative), not an HTTP status.
                if kind.starts_with('-') {
                    span.set_attribute(KeyValue::new("rpc.response.status_code", kind.to_string()));
                }
            };
            for s in &self.spans {
                if id.is_some() && s.id.as_ref() != id.as_ref() {
                    continue;
                }
                let span = s.cx.span();
                mark(&span);
                // A policy's refusal already says why (decided); a server's words stay out.
                if !s.refused.load(Ordering::Relaxed) {
                    span.set_status(Status::error(""));
                }
            }
            if let Some(u) = &upstream {
                u.span()
                    .set_attribute(KeyValue::new("error.type", kind.to_string()));
            }
        }
        // One clock read for all of them: the answer is in, and the upstream call and the
        // message end together (a clock read costs more than it looks in a VM).
        let now = std::time::SystemTime::now();
        if let Some(u) = upstream {
            u.span().end_with_timestamp(now);
        }
        for s in &self.spans {
            s.cx.span().end_with_timestamp(now);
        }
    }
}

/// Whether an answer can hold an error: an `"error"` member, or an `"isError"` that is
/// `true`. Most answers hold neither (a tool's result says `"isError":false`) and are not
/// parsed at all.
fn may_hold_error(bytes: &[u8]) -> bool {
    let after_blanks = |at: usize| {
        bytes[at..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|n| at + n)
    };
    static RROR: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"rror\""));
    RROR.find_iter(bytes).any(|at| {
        let before = &bytes[..at];
        if before.ends_with(b"\"e") {
            return true;
        }
        if !before.ends_with(b"\"isE") {
            return false;
        }
        let Some(colon) = after_blanks(at + 5).filter(|&c| bytes[c] == b':') else {
            return false;
        };
        after_blanks(colon + 1).is_some_and(|v| bytes[v] == b't')
    })
}

/// A method's name as a `'static` one, for a span not yet known to be recorded.
/// (A sampler that reads names sees the method; the target is added once sampled.)
fn known(method: &str) -> &'static str {
    const METHODS: [&str; 12] = [
        "tools/call",
        "tools/list",
        "resources/read",
        "resources/list",
        "resources/templates/list",
        "prompts/get",
        "prompts/list",
        "initialize",
        "ping",
        "completion/complete",
        "notifications/initialized",
        "notifications/cancelled",
    ];
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("mcp")
}

/// `00-{trace id}-{span id}-{flags}`: a span context as W3C's `traceparent` writes it
/// (the SDK's propagator formats the same through `format!`, at some 1,500 instructions).
fn traceparent(sc: &SpanContext) -> [u8; 55] {
    let mut out = [b'-'; 55];
    let flags = (sc.trace_flags() & TraceFlags::SAMPLED).to_u8();
    let trace = u128::from_be_bytes(sc.trace_id().to_bytes());
    let span = u64::from_be_bytes(sc.span_id().to_bytes());
    out[..2].copy_from_slice(b"00");
    for (at, half) in [(3, (trace >> 64) as u64), (19, trace as u64), (36, span)] {
        out[at..at + 8].copy_from_slice(&hex8((half >> 32) as u32));
        out[at + 8..at + 16].copy_from_slice(&hex8(half as u32));
    }
    out[53..].copy_from_slice(&hex8(u32::from(flags))[6..]);
    out
}

/// `v` as eight lowercase hex digits, in one register: a nibble spread to each byte, then
/// each made a digit (`'0' + n`, and 39 more for a letter).
fn hex8(v: u32) -> [u8; 8] {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = u64::from(v);
    let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    let x = (x | (x << 4)) & (ONES * 0x0f);
    let letters = ((x + ONES * 6) >> 4) & ONES;
    (x + ONES * 0x30 + letters * 0x27).to_be_bytes()
}

/// A span context as it is handed on, written once for the headers and the body.
struct Handed {
    traceparent: [u8; 55],
    /// `tracestate`; empty is none.
    state: String,
}

impl Handed {
    /// `None` for an invalid context, which is not handed on (as the propagator would not).
    fn of(sc: &SpanContext) -> Option<Handed> {
        sc.is_valid().then(|| Handed {
            traceparent: traceparent(sc),
            state: sc.trace_state().header(),
        })
    }
}

/// The upstream request's `traceparent` and `tracestate` headers say `h` (an empty
/// `tracestate` is none: one the client sent is not passed on).
fn put_headers(headers: &mut HeaderMap, h: &Handed) {
    if let Ok(v) = HeaderValue::from_bytes(&h.traceparent) {
        headers.insert(TRACEPARENT, v);
    }
    // The usual empty state is not made into a header value only to be dropped.
    match (!h.state.is_empty())
        .then(|| HeaderValue::from_str(&h.state).ok())
        .flatten()
    {
        Some(v) => {
            headers.insert(TRACESTATE, v);
        }
        None => {
            headers.remove(TRACESTATE);
        }
    }
}

const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// The request with its `params._meta.traceparent` (which the layer's reading found) now
/// `h`'s, written over the client's in place: the usual call from a traced agent, which
/// need not be read again. Only where nothing else can be meant: the body has one
/// `"traceparent"`, no `\u` escape anywhere (so that `_meta`'s key cannot be written in
/// another way, leaving the one found to be some other key), a value of exactly 55 plain
/// characters, no `"tracestate"`, and `h` carries no trace state to write. `None`
/// otherwise, and [`with_meta`] rewrites `_meta` whole.
fn replace_traceparent(h: &Handed, bytes: &[u8]) -> Option<Bytes> {
    const KEY: &[u8] = b"\"traceparent\":\"";
    // One pass finds both keys (`"trace` cannot overlap itself, so every one is seen).
    static TRACE: LazyLock<memchr::memmem::Finder<'static>> =
        LazyLock::new(|| memchr::memmem::Finder::new(b"\"trace"));
    let escaped = memchr::memchr_iter(b'\\', bytes).any(|i| bytes.get(i + 1) == Some(&b'u'));
    if escaped || !h.state.is_empty() {
        return None;
    }
    let mut found = None;
    for at in TRACE.find_iter(bytes) {
        let rest = &bytes[at..];
        if rest.starts_with(b"\"tracestate\"") {
            return None;
        }
        if rest.starts_with(b"\"traceparent\"") {
            if found.is_some() {
                return None;
            }
            found = Some(at);
        }
    }
    let at = found?;
    if !bytes[at..].starts_with(KEY) {
        return None;
    }
    let value = at + KEY.len()..at + KEY.len() + 55;
    let plain = bytes
        .get(value.clone())?
        .iter()
        .all(|&b| b != b'\\' && b != b'"');
    if !plain || bytes.get(value.end) != Some(&b'"') {
        return None;
    }
    let mut out = bytes.to_vec();
    out[value].copy_from_slice(&h.traceparent);
    Some(Bytes::from(out))
}

/// The request with `params._meta` carrying `h`, when it is one request with object
/// params. Only the top level, `params` and `_meta` are read, and only `_meta` is written
/// again: the rest (arguments above all) goes as it came, byte for byte. The layer has
/// already refused a body with a repeated key, so each key read here is the only one.
fn with_meta(h: &Handed, bytes: &[u8]) -> Option<Bytes> {
    // Where a value read from `bytes` sits in it.
    let at = |raw: &serde_json::value::RawValue| {
        let start = (raw.get().as_ptr() as usize).checked_sub(bytes.as_ptr() as usize)?;
        (start + raw.get().len() <= bytes.len()).then_some(start..start + raw.get().len())
    };
    let top: Members<'_> = serde_json::from_slice(bytes).ok()?;
    let params = top.get("params")?;
    let in_params: Members<'_> = serde_json::from_str(params.get()).ok()?;
    let old = in_params.get("_meta");
    let mut meta = Vec::with_capacity(96);
    meta.push(b'{');
    if let Some(old) = old {
        let members: Members<'_> = serde_json::from_str(old.get()).ok()?;
        for (k, v) in members
            .0
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "traceparent" | "tracestate"))
        {
            serde_json::to_writer(&mut meta, k.as_str()).ok()?;
            meta.push(b':');
            meta.extend_from_slice(v.get().as_bytes());
            meta.push(b',');
        }
    }
    meta.extend_from_slice(b"\"traceparent\":\"");
    meta.extend_from_slice(&h.traceparent);
    meta.push(b'"');
    if !h.state.is_empty() {
        meta.extend_from_slice(b",\"tracestate\":");
        serde_json::to_writer(&mut meta, &h.state).ok()?;
    }
    meta.push(b'}');
    let (cut, insert): (std::ops::Range<usize>, &[u8]) = match old {
        Some(old) => (at(old)?, &[]),
        None => {
            // Before the closing brace of `params`, after a comma if it holds anything.
            let end = at(params)?.end - 1;
            let prefix: &[u8] = if in_params.0.is_empty() {
                b"\"_meta\":"
            } else {
                b",\"_meta\":"
            };
            (end..end, prefix)
        }
    };
    let mut out = Vec::with_capacity(bytes.len() + meta.len() + insert.len());
    out.extend_from_slice(&bytes[..cut.start]);
    out.extend_from_slice(insert);
    out.extend_from_slice(&meta);
    out.extend_from_slice(&bytes[cut.end..]);
    Some(Bytes::from(out))
}

/// A protocol version as a `'static` one when it is a known one.
fn version(v: &str) -> OtelValue {
    const VERSIONS: [&str; 5] = [
        "2026-07-28",
        "2025-11-25",
        "2025-06-18",
        "2025-03-26",
        "2024-11-05",
    ];
    match VERSIONS.iter().find(|k| **k == v) {
        Some(k) => OtelValue::from(*k),
        None => OtelValue::from(v.to_owned()),
    }
}

/// A child span: the store's round trip, an approval's wait.
pub(crate) struct Child {
    cx: Context,
    started: Instant,
}

impl Child {
    pub(crate) fn set(&self, kv: KeyValue) {
        self.cx.span().set_attribute(kv);
    }

    /// Milliseconds since the child began.
    pub(crate) fn elapsed_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.cx.span().end();
    }
}

/// How much of an answer is kept to read its errors from, at most, per sampled call in
/// flight. A longer answer keeps its latest frames (an event stream ends with the call's
/// answer); the error of one message longer than this is not read.
const KEEP: usize = 32 * 1024;

/// An answer's body that ends the request's spans when it ends (or is dropped).
struct Finish {
    inner: Body,
    trace: Option<Arc<Trace>>,
    seen: Vec<u8>,
    stream: bool,
    status: StatusCode,
}

impl Finish {
    fn end(&mut self, cut: Option<&str>) {
        if let Some(t) = self.trace.take() {
            t.answered(&self.seen, self.stream, self.status, cut);
        }
    }
}

impl http_body::Body for Finish {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    if this.seen.len() + data.len() > KEEP {
                        this.seen.clear();
                    }
                    this.seen.extend_from_slice(&data[..data.len().min(KEEP)]);
                }
            }
            Some(Err(_)) => this.end(Some("stream_error")),
            None => this.end(None),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        // An empty answer may never be polled; any other went unfinished: the client left.
        if self.trace.is_some() {
            let cut = (!http_body::Body::is_end_stream(&self.inner)).then_some("cancelled");
            self.end(cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::{SpanKind, TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use serde_json::{Value, json};
    use tower::{Layer, ServiceExt};

    use crate::{Body, PolicyLayer};

    /// Keeps what it is given.
    #[derive(Debug, Clone, Default)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const CLIENT_SPAN: &str = "00f067aa0ba902b7";

    /// What the upstream got: each request's `traceparent` header and body.
    type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

    async fn call(layer: &PolicyLayer, seen: &Seen, body: Value, header: Option<&str>) -> Value {
        let seen = seen.clone();
        let svc = layer.layer(tower::service_fn(move |req: http::Request<Body>| {
            let seen = seen.clone();
            async move {
                let tp = req
                    .headers()
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_owned());
                let bytes = http_body_util::BodyExt::collect(req.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                seen.lock().unwrap().push((tp, v.clone()));
                let answer = json!({"jsonrpc": "2.0", "id": v["id"], "result": {"content": [{"type": "text", "text": "hi"}]}});
                Ok::<_, Infallible>(http::Response::new(Body::full(answer.to_string())))
            }
        }));
        let mut req = http::Request::post("/mcp").header("content-type", "application/json");
        if let Some(h) = header {
            req = req.header("traceparent", h);
        }
        let resp = svc
            .oneshot(req.body(Body::full(body.to_string())).unwrap())
            .await
            .unwrap();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    fn layer() -> (PolicyLayer, Kept, SdkTracerProvider) {
        layer_told(false)
    }

    /// A provider with the spec's default sampler, keeping every span; and a layer (allowing
    /// `echo`) with no tracer yet.
    fn traced() -> (
        SdkTracerProvider,
        Kept,
        opentelemetry_sdk::trace::Sampler,
        impl Fn() -> PolicyLayer,
    ) {
        use opentelemetry_sdk::trace::Sampler;
        let kept = Kept::default();
        let sampler = Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler.clone())
            .with_simple_exporter(kept.clone())
            .build();
        let policy = warden_policy::Policy::from_json_str(
            r#"{"version": "1", "default": "deny", "tools": {"echo": {}}}"#,
        )
        .unwrap();
        let layer = move || PolicyLayer::new(warden_policy::CompiledPolicy::new(&policy).unwrap());
        (provider, kept, sampler, layer)
    }

    /// With `told`, the layer knows the provider's sampler (the spec's default) and asks
    /// it first, as `warden serve` does.
    fn layer_told(told: bool) -> (PolicyLayer, Kept, SdkTracerProvider) {
        let (provider, kept, sampler, layer) = traced();
        let layer = layer();
        let layer = if told {
            layer.tracer_with_sampler(provider.tracer("warden"), Box::new(sampler))
        } else {
            layer.tracer(provider.tracer("warden"))
        };
        (layer, kept, provider)
    }

    fn attr(s: &SpanData, key: &str) -> Option<String> {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    }

    #[tokio::test]
    async fn a_call_is_a_server_span_under_meta_and_the_upstream_gets_its_client_span() {
        for told in [false, true] {
            a_call_is_a_server_span_under_meta_and_the_upstream_gets_its_client_span_with(told)
                .await;
        }
    }

    async fn a_call_is_a_server_span_under_meta_and_the_upstream_gets_its_client_span_with(
        told: bool,
    ) {
        let (layer, kept, _provider) = layer_told(told);
        let seen = Seen::default();
        let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "secret"}, "_meta": {"traceparent": parent}}});
        // The header names another trace: `_meta`, the message's own, wins.
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let answer = call(&layer, &seen, body, Some(other)).await;
        assert_eq!(answer["result"]["content"][0]["text"], "hi");
        let spans = kept.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 2, "{spans:?}");
        let server = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Server)
            .unwrap();
        let client = spans
            .iter()
            .find(|s| s.span_kind == SpanKind::Client)
            .unwrap();
        assert_eq!(server.name, "tools/call echo");
        assert_eq!(client.name, "tools/call echo");
        assert_eq!(server.span_context.trace_id().to_string(), CLIENT_TRACE);
        assert_eq!(server.parent_span_id.to_string(), CLIENT_SPAN);
        assert_eq!(client.parent_span_id, server.span_context.span_id());
        assert_eq!(
            attr(server, "mcp.method.name").as_deref(),
            Some("tools/call")
        );
        assert_eq!(attr(server, "gen_ai.tool.name").as_deref(), Some("echo"));
        assert_eq!(attr(server, "jsonrpc.request.id").as_deref(), Some("7"));
        assert_eq!(attr(server, "network.transport").as_deref(), Some("tcp"));
        assert_eq!(attr(server, "warden.decision").as_deref(), Some("allow"));
        assert_eq!(attr(server, "warden.rule").as_deref(), Some("/tools/echo"));
        assert!(attr(server, "error.type").is_none());
        let handed = format!("00-{CLIENT_TRACE}-{}-01", client.span_context.span_id());
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[0].0.as_deref(), Some(handed.as_str()));
        assert_eq!(seen[0].1["params"]["_meta"]["traceparent"], handed);
        assert_eq!(seen[0].1["params"]["arguments"]["text"], "secret");
        // No attribute holds an argument's value.
        for s in &spans {
            for kv in &s.attributes {
                assert!(!kv.value.to_string().contains("secret"), "{kv:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_denial_is_an_error_span_under_the_header_and_never_reaches_the_server() {
        let (layer, kept, _provider) = layer();
        let seen = Seen::default();
        let body = json!({"jsonrpc": "2.0", "id": "a", "method": "tools/call",
            "params": {"name": "delete_everything", "arguments": {}}});
        let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let answer = call(&layer, &seen, body, Some(&parent)).await;
        assert_eq!(answer["result"]["isError"], true);
        assert!(seen.lock().unwrap().is_empty());
        let spans = kept.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 1, "{spans:?}");
        let s = &spans[0];
        assert_eq!(s.parent_span_id.to_string(), CLIENT_SPAN);
        assert_eq!(attr(s, "warden.decision").as_deref(), Some("deny"));
        assert_eq!(attr(s, "error.type").as_deref(), Some("tool_error"));
        match &s.status {
            opentelemetry::trace::Status::Error { description } => {
                assert!(description.contains("not allowed"), "{description}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn traceparent_is_read_as_the_specification_says() {
        let ok = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let sc = super::parse_traceparent(&ok, None).unwrap();
        assert_eq!(sc.trace_id().to_string(), CLIENT_TRACE);
        assert_eq!(sc.span_id().to_string(), CLIENT_SPAN);
        assert!(sc.is_sampled() && sc.is_remote());
        let off = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
        assert!(!super::parse_traceparent(&off, None).unwrap().is_sampled());
        // A later version may add fields after a dash; 00 may not.
        let later = format!("01-{CLIENT_TRACE}-{CLIENT_SPAN}-01-more");
        assert!(super::parse_traceparent(&later, None).is_some());
        for bad in [
            format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01-more"),
            format!("ff-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
            format!("00-{}-{CLIENT_SPAN}-01", "0".repeat(32)),
            format!("00-{CLIENT_TRACE}-{}-01", "0".repeat(16)),
            format!("00-{}-{CLIENT_SPAN}-01", CLIENT_TRACE.to_uppercase()),
            format!("00-{CLIENT_TRACE}-{}-01", CLIENT_SPAN.to_uppercase()),
            format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-0"),
            format!("00_{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
            "00-x".to_owned(),
            String::new(),
        ] {
            assert!(super::parse_traceparent(&bad, None).is_none(), "{bad}");
        }
        // Every byte that is not a lowercase hex digit spoils sixteen digits wherever it
        // stands, non-ASCII ones too (which a `&str` cannot hold alone).
        let digits = *b"0123456789abcdef";
        for at in 0..16 {
            for c in 0..=255u8 {
                let mut b = digits;
                b[at] = c;
                let digit = c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
                let read = super::digits16(&b);
                assert_eq!(read.is_some(), digit, "{b:?}");
                if let Some(v) = read {
                    assert_eq!(format!("{v:016x}").as_bytes(), b, "{b:?}");
                }
            }
        }
        // Every character of either id that is not a lowercase hex digit spoils it, and
        // every digit reads as itself, wherever it stands.
        let ok = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let ids: Vec<usize> = (3..35).chain(36..52).collect();
        for &at in &ids {
            for c in 0..=255u8 {
                let mut tp = ok.clone().into_bytes();
                tp[at] = c;
                let Ok(tp) = String::from_utf8(tp) else {
                    continue;
                };
                let read = super::parse_traceparent(&tp, None);
                let digit = c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
                assert_eq!(read.is_some(), digit, "{tp}");
                if let Some(sc) = read {
                    let ids = format!("{}-{}", sc.trace_id(), sc.span_id());
                    assert_eq!(ids, tp[3..52], "{tp}");
                }
            }
        }
        // The SDK's own reading agrees on every case above.
        let sdk = TraceContextPropagator::new();
        for tp in [ok, off] {
            let mut h = std::collections::HashMap::new();
            h.insert("traceparent".to_owned(), tp.clone());
            let theirs = opentelemetry::propagation::TextMapPropagator::extract(&sdk, &h);
            assert_eq!(
                theirs.span().span_context(),
                &super::parse_traceparent(&tp, None).unwrap(),
            );
        }
        let state = super::parse_traceparent(
            &format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
            Some("a=1,b=2"),
        )
        .unwrap();
        assert_eq!(state.trace_state().header(), "a=1,b=2");
    }

    #[test]
    fn the_context_handed_on_is_written_as_the_sdk_writes_it() {
        use opentelemetry::propagation::TextMapPropagator;
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        use std::collections::HashMap;
        // Every digit in every place, as `format!` writes it.
        let mut x: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for n in 0..2000u32 {
            x = x
                .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
                .wrapping_add(1);
            let span = (x >> 37) as u64 | 1;
            let flags = (n % 2) as u8;
            let sc = SpanContext::new(
                TraceId::from(x | 1),
                SpanId::from(span),
                TraceFlags::new(flags),
                false,
                TraceState::NONE,
            );
            let written = super::traceparent(&sc);
            let expected = format!("00-{:032x}-{span:016x}-{flags:02x}", x | 1);
            assert_eq!(std::str::from_utf8(&written).unwrap(), expected);
        }
        for (trace, span, flags, state) in [
            (CLIENT_TRACE, CLIENT_SPAN, 1, ""),
            (
                "00000000000000000000000000000001",
                "0000000000000001",
                0,
                "a=1,b=2",
            ),
            (
                "ffffffffffffffffffffffffffffffff",
                "ffffffffffffffff",
                3,
                "",
            ),
        ] {
            let sc = SpanContext::new(
                TraceId::from_hex(trace).unwrap(),
                SpanId::from_hex(span).unwrap(),
                TraceFlags::new(flags),
                true,
                state.parse::<TraceState>().unwrap(),
            );
            let cx = opentelemetry::Context::new().with_remote_span_context(sc.clone());
            let mut sdk = HashMap::new();
            TraceContextPropagator::new().inject_context(&cx, &mut sdk);
            let mut headers = http::HeaderMap::new();
            headers.insert("tracestate", http::HeaderValue::from_static("client=1"));
            super::put_headers(&mut headers, &super::Handed::of(&sc).unwrap());
            assert_eq!(headers["traceparent"], sdk["traceparent"]);
            assert_eq!(
                headers.get("tracestate").map(|v| v.to_str().unwrap()),
                Some(state).filter(|s| !s.is_empty())
            );
            let meta =
                super::with_meta(&super::Handed::of(&sc).unwrap(), br#"{"params":{ }}"#).unwrap();
            let v: Value = serde_json::from_slice(&meta).unwrap();
            assert_eq!(
                v["params"]["_meta"]["traceparent"],
                sdk["traceparent"].as_str()
            );
            assert_eq!(
                v["params"]["_meta"]
                    .get("tracestate")
                    .and_then(Value::as_str),
                Some(state).filter(|s| !s.is_empty())
            );
        }
    }

    #[test]
    fn a_client_traceparent_in_meta_is_written_over_in_place_where_nothing_else_can_be_meant() {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        let sc = SpanContext::new(
            TraceId::from_hex(CLIENT_TRACE).unwrap(),
            SpanId::from_hex("1111111111111111").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let old = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let body = |meta: &str, args: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{args},"_meta":{meta}}}}}"#
            )
        };
        let usual = body(
            &format!(r#"{{"progressToken":5,"traceparent":"{old}"}}"#),
            r#"{"a":"b\n"}"#,
        );
        let fast = super::replace_traceparent(&super::Handed::of(&sc).unwrap(), usual.as_bytes())
            .expect("the usual call");
        let whole = super::with_meta(&super::Handed::of(&sc).unwrap(), usual.as_bytes()).unwrap();
        let read = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
        assert_eq!(read(&fast), read(&whole));
        assert_eq!(
            read(&fast)["params"]["_meta"]["traceparent"],
            format!("00-{CLIENT_TRACE}-1111111111111111-01")
        );
        // A key that only starts like it is another key.
        let lookalike = body(
            &format!(r#"{{"traceparent":"{old}"}}"#),
            r#"{"traceparents":"x","tracestates":1}"#,
        );
        let fast =
            super::replace_traceparent(&super::Handed::of(&sc).unwrap(), lookalike.as_bytes())
                .expect("one traceparent");
        let whole =
            super::with_meta(&super::Handed::of(&sc).unwrap(), lookalike.as_bytes()).unwrap();
        assert_eq!(read(&fast), read(&whole));
        // Anything that could mean another key, or more to write, is left to `with_meta`.
        for other in [
            body(
                &format!(r#"{{"traceparent":"{old}"}}"#),
                r#"{"traceparent":"x"}"#,
            ),
            body(
                &format!(r#"{{"traceparent":"{old}"}}"#),
                r#"{"k":"\u0041"}"#,
            ),
            body(&format!(r#"{{"traceparent": "{old}"}}"#), "{}"),
            body(&format!(r#"{{"traceparent":"{old}-x"}}"#), "{}"),
            body(
                &format!(r#"{{"traceparent":"{old}","tracestate":"a=1"}}"#),
                "{}",
            ),
            body(r#"{"traceparent":"00-short"}"#, "{}"),
            body(
                &format!(r#"{{"traceparent":"{old}"}}"#),
                r#"{"tracestate":"x"}"#,
            ),
        ] {
            assert!(
                super::replace_traceparent(&super::Handed::of(&sc).unwrap(), other.as_bytes())
                    .is_none(),
                "{other}"
            );
        }
        let stated = SpanContext::new(
            sc.trace_id(),
            sc.span_id(),
            TraceFlags::SAMPLED,
            true,
            "a=1".parse::<TraceState>().unwrap(),
        );
        assert!(
            super::replace_traceparent(&super::Handed::of(&stated).unwrap(), usual.as_bytes())
                .is_none()
        );
    }

    #[test]
    fn only_an_answer_that_can_hold_an_error_is_read() {
        for (answer, read) in [
            (
                &br#"{"id":1,"result":{"content":[],"isError":false}}"#[..],
                false,
            ),
            (
                br#"{"id":1,"result":{"content":[],"isError" : true}}"#,
                true,
            ),
            (br#"{"id":1,"result":{"isError":true}}"#, true),
            (br#"{"id":1,"error":{"code":-32602,"message":"x"}}"#, true),
            (br#"data: {"id":1, "error" :{}}"#, true),
            (br#"{"id":1,"result":{"text":"no mirror\"s here"}}"#, false),
            (br#"{"id":1,"result":{"isError""#, false),
            (br#"{"id":1,"result":{"isError":"#, false),
        ] {
            assert_eq!(
                super::may_hold_error(answer),
                read,
                "{}",
                String::from_utf8_lossy(answer)
            );
        }
    }

    #[test]
    fn meta_is_written_beside_what_it_held_and_the_arguments_go_as_they_came() {
        use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
        let sc = SpanContext::new(
            opentelemetry::trace::TraceId::from_hex(CLIENT_TRACE).unwrap(),
            opentelemetry::trace::SpanId::from_hex(CLIENT_SPAN).unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = opentelemetry::Context::new().with_remote_span_context(sc);
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"b": [1, 2],"a":"\u00e9"},"_meta":{"progressToken":5,"traceparent":"old"}}}"#;
        let out =
            super::with_meta(&super::Handed::of(cx.span().span_context()).unwrap(), body).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{"b": [1, 2],"a":"\u00e9"}},"_meta":{{"progressToken":5,"traceparent":"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}}}}}}"#
            )
        );
        let bare = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#;
        let out =
            super::with_meta(&super::Handed::of(cx.span().span_context()).unwrap(), bare).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["params"]["_meta"]["traceparent"],
            format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01")
        );
        assert!(
            super::with_meta(
                &super::Handed::of(cx.span().span_context()).unwrap(),
                br#"{"params":[1]}"#
            )
            .is_none()
        );
    }

    #[tokio::test]
    async fn a_gate_behind_a_gate_decides_in_a_span_under_the_first_ones_upstream_span() {
        // `warden serve --gateway-policy`: the gateway's gate sits between a server's gate
        // and the server, and its span hangs under the call the first gate handed on.
        let (provider, kept, sampler, layer) = traced();
        let gate =
            || layer().tracer_with_sampler(provider.tracer("warden"), Box::new(sampler.clone()));
        let seen = Seen::default();
        let upstream = {
            let seen = seen.clone();
            tower::service_fn(move |req: http::Request<Body>| {
                let seen = seen.clone();
                async move {
                    let bytes = http_body_util::BodyExt::collect(req.into_body())
                        .await
                        .unwrap()
                        .to_bytes();
                    let v: Value = serde_json::from_slice(&bytes).unwrap();
                    seen.lock().unwrap().push((None, v.clone()));
                    let answer =
                        json!({"jsonrpc": "2.0", "id": v["id"], "result": {"content": []}});
                    Ok::<_, Infallible>(http::Response::new(Body::full(answer.to_string())))
                }
            })
        };
        let svc = gate().layer(gate().layer(upstream));
        let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
        let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {}, "_meta": {"traceparent": parent}}});
        let resp = svc
            .oneshot(
                http::Request::post("/mcp")
                    .header("content-type", "application/json")
                    .body(Body::full(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        let spans = kept.0.lock().unwrap().clone();
        assert_eq!(spans.len(), 4, "{spans:?}");
        let of = |kind: SpanKind| -> Vec<&SpanData> {
            spans.iter().filter(|s| s.span_kind == kind).collect()
        };
        let (servers, clients) = (of(SpanKind::Server), of(SpanKind::Client));
        assert!(
            spans
                .iter()
                .all(|s| s.span_context.trace_id().to_string() == CLIENT_TRACE)
        );
        // The first gate's span is the agent's child; the second's, its upstream span's.
        let first = servers
            .iter()
            .find(|s| s.parent_span_id.to_string() == CLIENT_SPAN)
            .unwrap();
        let handed = clients
            .iter()
            .find(|c| c.parent_span_id == first.span_context.span_id())
            .unwrap();
        let second = servers
            .iter()
            .find(|s| s.parent_span_id == handed.span_context.span_id())
            .unwrap();
        assert_eq!(attr(second, "warden.decision").as_deref(), Some("allow"));
        // The server sees the second gate's upstream span.
        let last = clients
            .iter()
            .find(|c| c.parent_span_id == second.span_context.span_id())
            .unwrap();
        let meta = &seen.lock().unwrap()[0].1["params"]["_meta"]["traceparent"];
        assert_eq!(
            meta.as_str().unwrap(),
            format!("00-{CLIENT_TRACE}-{}-01", last.span_context.span_id())
        );
    }

    #[tokio::test]
    async fn an_unsampled_agent_trace_records_nothing_and_goes_on_as_it_came() {
        // Told the sampler, the layer makes no span at all; not told, the SDK makes one
        // that records nothing. Either way the same goes on.
        for told in [false, true] {
            let (layer, kept, _provider) = layer_told(told);
            let seen = Seen::default();
            let parent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "x"}, "_meta": {"traceparent": parent}}});
            call(&layer, &seen, body.clone(), None).await;
            assert!(kept.0.lock().unwrap().is_empty(), "told: {told}");
            let seen = seen.lock().unwrap().clone();
            // The agent's own context (flag off) reaches the server as it came, in the body.
            assert_eq!(seen[0].0, None, "told: {told}");
            // The body goes as it came.
            assert_eq!(seen[0].1, body, "told: {told}");
        }
    }
}
