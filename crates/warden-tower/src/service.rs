//! [`PolicyService`]: inspects each request, decides, and answers locally or forwards.

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use serde_json::Value;
use tower::Service;
use warden_policy::{Call, Kind, OnTimeout, Outcome};

use crate::approval::{Answer, ApprovalRequest};
use crate::body::{Body, BoxError, Uncollected};
use crate::layer::{Enforcer, Mode, Shared};
use crate::limit::Charge;
use crate::observe::{self, Record};

/// The client's address, for `ip`-scoped limits. The gateway sets it; with axum,
/// `ConnectInfo<SocketAddr>` is read as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Wraps an inner service with a policy. Made by [`crate::PolicyLayer`].
#[derive(Clone)]
pub struct PolicyService<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for PolicyService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyService").finish_non_exhaustive()
    }
}

/// The future of [`PolicyService`]'s answer.
pub struct ResponseFuture<E> {
    inner: Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>,
}

impl<E> ResponseFuture<E> {
    /// The boxed future inside, for a caller that boxes its answers anyway (a gate behind
    /// another gate, say): no second box around the first.
    pub fn into_boxed(self) -> Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>> {
        self.inner
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response<Body>, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for PolicyService<S>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: http_body::Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        // The clone that was driven to readiness is the one that must be called.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        // Each mode's future is boxed as it is, not inside a block awaiting either: that
        // block would be as large as the larger of the two, copied into its box per call.
        let inner: Pin<Box<dyn Future<Output = _> + Send>> = match shared.config.mode {
            Mode::Mcp => Box::pin(crate::mcp::mcp(shared, inner, req)),
            Mode::Http => Box::pin(crate::rest::plain_http(shared, inner, req)),
        };
        ResponseFuture { inner }
    }
}

pub(crate) fn boxed<B>(r: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    r.map(Body::new)
}

/// Who is calling, from the request head.
pub(crate) struct Caller {
    pub(crate) grant: Option<Arc<str>>,
    pub(crate) session: Option<HeaderText>,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) claims: Option<Arc<Value>>,
    /// `x-request-id` (the gateway sets one), so an audit line can be matched to a request.
    pub(crate) request_id: Option<HeaderText>,
    pub(crate) recorder: Option<crate::layer::RecorderRef>,
    /// The server behind the layer, when it is named.
    pub(crate) server: Option<Arc<str>>,
    /// What the caller has used of the counters conditions read (`counter.NAME`).
    pub(crate) counters: Option<warden_policy::CounterValues>,
    /// The spans of the request's messages, when traces are on.
    pub(crate) trace: Option<Arc<crate::otel::Trace>>,
}

impl Caller {
    pub(crate) fn of(shared: &Shared, parts: &http::request::Parts) -> Caller {
        let ip = parts
            .extensions
            .get::<ClientAddr>()
            .map(|a| a.0)
            .or_else(|| parts.extensions.get::<SocketAddr>().map(SocketAddr::ip))
            .or_else(|| axum_addr(parts));
        // Claims set by an earlier layer win; else the extractor may find them with the grant.
        let (grant, claims) = match parts.extensions.get::<crate::grant::Claims>() {
            Some(c) => (shared.grants.grant(parts), Some(c.0.clone())),
            None => shared.grants.identify(parts),
        };
        Caller {
            grant: grant.map(|g| g.0),
            session: HeaderText::of(&parts.headers, &names::MCP_SESSION_ID),
            ip,
            claims,
            request_id: HeaderText::of(&parts.headers, &names::X_REQUEST_ID),
            recorder: shared.config.recorder.clone(),
            server: shared.config.server.clone(),
            counters: None,
            trace: None,
        }
    }

    /// Reads, from the counter store, the counters the policy's conditions read.
    pub(crate) async fn read_counters(
        &mut self,
        shared: &Shared,
        enforcer: &crate::layer::Enforcer,
    ) {
        if enforcer.policy.counters_read().is_empty() {
            return;
        }
        // Boxed: a store's read is a large future, and keeping it inline would make every
        // call's future that much larger, though most policies read no counter.
        let values = Box::pin(enforcer.counters.read(
            &enforcer.policy,
            shared.store.as_ref(),
            &self.call("", None),
        ))
        .await;
        self.counters = Some(values);
    }

    pub(crate) fn call<'a>(&'a self, tool: &'a str, args: Option<&'a Value>) -> Call<'a> {
        self.call_as(warden_policy::Kind::Tool, tool, args)
    }

    /// A call of any kind (a resource read, a prompt, a server's request) by this caller.
    pub(crate) fn call_as<'a>(
        &'a self,
        kind: warden_policy::Kind,
        tool: &'a str,
        args: Option<&'a Value>,
    ) -> Call<'a> {
        Call {
            kind,
            tool,
            args,
            grant: self.grant.as_deref(),
            session: self.session.as_deref(),
            ip: self.ip,
            claims: self.claims.as_deref(),
            counters: self.counters.as_ref(),
        }
    }
}

#[cfg(feature = "axum")]
fn axum_addr(parts: &http::request::Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

#[cfg(not(feature = "axum"))]
fn axum_addr(_: &http::request::Parts) -> Option<IpAddr> {
    None
}

/// The headers the layer reads on every call, named once: a lookup by `&str` parses the
/// name each time.
pub(crate) mod names {
    use http::HeaderName;
    pub(crate) const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
    pub(crate) const MCP_PROTOCOL_VERSION: HeaderName =
        HeaderName::from_static("mcp-protocol-version");
    pub(crate) const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
    pub(crate) const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
    pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
}

/// A header's text, kept as the request's own value (a shared slice, not a copy).
#[derive(Debug, Clone)]
pub(crate) struct HeaderText(http::HeaderValue);

impl HeaderText {
    /// `None` when absent or not visible ASCII (the same as [`header_str`]).
    pub(crate) fn of(h: &HeaderMap, name: &http::HeaderName) -> Option<HeaderText> {
        let v = h.get(name)?;
        v.to_str().ok()?;
        Some(HeaderText(v.clone()))
    }
}

impl std::ops::Deref for HeaderText {
    type Target = str;
    fn deref(&self) -> &str {
        // Checked in `of`.
        self.0.to_str().unwrap_or_default()
    }
}

pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// What one call came to, before anything is forwarded. Borrows the request's body and
/// the policy that decided; [`Verdict::detached`] copies it to outlive both.
pub(crate) struct Verdict<'a> {
    pub(crate) id: Value,
    /// What was decided: a tool call, a resource read, a prompt, ...
    pub(crate) kind: Kind,
    pub(crate) tool: Cow<'a, str>,
    pub(crate) args: Option<&'a Value>,
    pub(crate) outcome: Outcome,
    pub(crate) rule: Cow<'a, str>,
    pub(crate) message: Cow<'a, str>,
    pub(crate) shadow: bool,
    pub(crate) charges: Vec<Charge>,
    pub(crate) approval: Option<warden_policy::Approval>,
    /// The caller's claims that the policy reads, as JSON, for the audit line.
    pub(crate) claims: Option<String>,
}

impl Verdict<'_> {
    /// This verdict without its borrowed arguments, to outlive the request body.
    pub(crate) fn detached(&self) -> Verdict<'static> {
        Verdict {
            id: self.id.clone(),
            kind: self.kind,
            tool: Cow::Owned(self.tool.to_string()),
            args: None,
            outcome: self.outcome,
            rule: Cow::Owned(self.rule.to_string()),
            message: Cow::Owned(self.message.to_string()),
            shadow: self.shadow,
            charges: self.charges.clone(),
            approval: self.approval.clone(),
            claims: self.claims.clone(),
        }
    }
}

impl<'a> Verdict<'a> {
    pub(crate) fn decide(
        enforcer: &'a Enforcer,
        caller: &Caller,
        id: Value,
        kind: Kind,
        tool: &'a str,
        args: Option<&'a Value>,
        force_shadow: bool,
    ) -> Self {
        let call = caller.call_as(kind, tool, args);
        let d = enforcer.policy.decide(&call);
        let (outcome, rule, shadow) = (d.outcome(), d.rule(), d.is_shadow());
        let approval = d.approval().cloned();
        let (message, charges) = d.into_message_and_charges();
        let charges = charges
            .into_iter()
            .map(|c| Charge {
                limit: c.limit.index,
                counter: enforcer.counters.spec(c.limit),
                key: c.key,
                cost: c.cost,
            })
            .collect();
        Verdict {
            id,
            kind,
            tool: Cow::Borrowed(tool),
            args,
            outcome,
            rule: Cow::Borrowed(rule),
            message,
            shadow: shadow || force_shadow,
            charges,
            approval,
            claims: enforcer
                .policy
                .read_claims(caller.claims.as_deref())
                .map(|m| Value::Object(m).to_string()),
        }
    }

    /// A verdict the layer reaches without charging anything: no arguments, no limits, no
    /// approval.
    fn uncharged(
        id: Value,
        kind: Kind,
        name: &'a str,
        outcome: Outcome,
        rule: Cow<'a, str>,
        message: Cow<'a, str>,
        shadow: bool,
    ) -> Self {
        Verdict {
            id,
            kind,
            tool: Cow::Borrowed(name),
            args: None,
            outcome,
            rule,
            message,
            shadow,
            charges: Vec::new(),
            approval: None,
            claims: None,
        }
    }

    /// `completion/complete` for a prompt or resource: allowed, uncharged, when this caller
    /// could use it at all (as its list would show it); else denied with the reason a call
    /// without arguments would get.
    pub(crate) fn completion(
        enforcer: &'a Enforcer,
        caller: &Caller,
        id: Value,
        kind: Kind,
        name: &'a str,
        force_shadow: bool,
    ) -> Self {
        let call = caller.call_as(kind, name, None);
        let policy = &enforcer.policy;
        if policy.visible(&call) {
            let (rule, message) = (Cow::Borrowed("(visible)"), Cow::Borrowed("allowed"));
            return Self::uncharged(id, kind, name, Outcome::Allow, rule, message, force_shadow);
        }
        let d = policy.decide(&call);
        let message = Cow::Owned(d.message().to_owned());
        let shadow = d.is_shadow() || force_shadow;
        Self::uncharged(
            id,
            kind,
            name,
            Outcome::Deny,
            Cow::Borrowed(d.rule()),
            message,
            shadow,
        )
    }

    /// A request that passes as it is (decided only by what it names, and it names nothing).
    pub(crate) fn passing(id: Value, method: &'a str) -> Self {
        let (rule, message) = (Cow::Borrowed("(passes)"), Cow::Borrowed("allowed"));
        Self::uncharged(
            id,
            Kind::Method,
            method,
            Outcome::Allow,
            rule,
            message,
            false,
        )
    }

    /// A request of a ruled kind that names nothing the gate can decide on: denied, since
    /// the policy rules that kind.
    pub(crate) fn unreadable(id: Value, kind: Kind, method: &'a str, why: String) -> Self {
        let message = Cow::Owned(format!("{why}: the gate cannot decide it"));
        let rule = Cow::Borrowed("(unreadable)");
        Self::uncharged(id, kind, method, Outcome::Deny, rule, message, false)
    }

    /// Asks the approver about exactly this call, within the rule's timeout. `Err` carries
    /// the reason the agent reads.
    pub(crate) async fn ask(
        &self,
        shared: &Shared,
        caller: &Caller,
        approval: &warden_policy::Approval,
    ) -> Result<(), String> {
        let timeout = Duration::from_secs(approval.timeout_secs());
        let mut request = ApprovalRequest::new(
            caller.grant.as_deref(),
            &self.tool,
            self.args,
            &self.rule,
            timeout,
        );
        request.server = caller.server.as_deref().map(str::to_owned);
        // The approver sees the arguments minus what the policy redacts; the call hash was
        // made from the real ones, so the answer still binds them.
        if !approval.redact.is_empty() {
            request.args = request.args.map(|a| approval.shown(&a));
        }
        let answer = match tokio::time::timeout(timeout, shared.approver.ask(request)).await {
            Ok(a) => a,
            Err(_) if approval.on_timeout == Some(OnTimeout::Allow) => Answer::Approved,
            Err(_) => Answer::Denied(Some(format!(
                "no approval within {} seconds",
                timeout.as_secs()
            ))),
        };
        match answer {
            Answer::Approved => Ok(()),
            Answer::Denied(reason) => {
                Err(reason.unwrap_or_else(|| "a person refused this call".into()))
            }
        }
    }
}

pub(crate) fn log(
    caller: &Caller,
    v: &Verdict<'_>,
    decision: &'static str,
    rule: &str,
    latency: Duration,
    would_block: bool,
) {
    if let Some(t) = &caller.trace {
        t.decided(&v.id, decision, rule, &v.message);
    }
    observe::record(&Record {
        grant: caller.grant.as_deref(),
        session: caller.session.as_deref(),
        kind: v.kind,
        tool: &v.tool,
        decision,
        rule,
        message: (decision != "allow" && !v.message.is_empty()).then_some(&*v.message),
        args: v.args,
        claims: v.claims.as_deref(),
        request_id: caller.request_id.as_deref(),
        server: caller.server.as_deref(),
        // Formatted only for an event that is written.
        trace_id: caller
            .trace
            .as_deref()
            .filter(|_| observe::decisions_enabled())
            .map(crate::otel::Trace::trace_id),
        latency,
        would_block,
    });
    if let Some(r) = &caller.recorder {
        r.0.record(&crate::observe::RecordedCall {
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            grant: caller.grant.as_deref().map(str::to_owned),
            session: caller.session.as_deref().map(str::to_owned),
            claims: caller.claims.as_deref().cloned(),
            kind: v.kind,
            tool: v.tool.to_string(),
            args: v.args.cloned(),
            decision: decision.to_owned(),
            rule: rule.to_owned(),
            server: caller.server.as_deref().map(str::to_owned),
        });
    }
}

/// Why a request body was not read: its status and the reason.
pub(crate) struct Unread(pub(crate) StatusCode, pub(crate) String);

/// Buffers a POST body up to the limit; refuses encodings it cannot read.
pub(crate) async fn read_body<B>(
    shared: &Shared,
    headers: &HeaderMap,
    body: B,
) -> Result<Bytes, Unread>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
            observe::refused_request("content-encoding");
            return Err(Unread(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request bodies must not be compressed: the policy gate cannot inspect them".into(),
            ));
        }
    }
    let max = shared.config.max_body;
    let too_large = || {
        observe::refused_request("too-large");
        Unread(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {max} bytes"),
        )
    };
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
    {
        return Err(too_large());
    }
    match crate::body::collect(body, max).await {
        Ok(bytes) => Ok(bytes),
        Err(Uncollected::TooLarge) => Err(too_large()),
        Err(Uncollected::Failed(_)) => Err(Unread(
            StatusCode::BAD_REQUEST,
            "could not read the request body".into(),
        )),
    }
}
