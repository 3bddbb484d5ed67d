//! [`PolicyService`]: inspects each request, decides, and answers locally or forwards.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::Service;
use warden_policy::{Call, OnTimeout, Outcome, Scope};

use crate::answer::{self, DenyStyle};
use crate::approval::{Answer, ApprovalRequest};
use crate::body::{Body, BoxError};
use crate::inspect::{self, Message, Refusal};
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
        ResponseFuture {
            inner: Box::pin(async move {
                match shared.config.mode {
                    Mode::Mcp => mcp(shared, inner, req).await,
                    Mode::Http => plain_http(shared, inner, req).await,
                }
            }),
        }
    }
}

fn boxed<B>(r: Response<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    r.map(Body::new)
}

/// Who is calling, from the request head.
struct Caller {
    grant: Option<String>,
    session: Option<String>,
    ip: Option<IpAddr>,
}

impl Caller {
    fn of(shared: &Shared, parts: &http::request::Parts) -> Caller {
        let ip = parts
            .extensions
            .get::<ClientAddr>()
            .map(|a| a.0)
            .or_else(|| parts.extensions.get::<SocketAddr>().map(SocketAddr::ip))
            .or_else(|| axum_addr(parts));
        Caller {
            grant: shared.grants.grant(parts).map(|g| g.as_str().to_owned()),
            session: header_str(&parts.headers, "mcp-session-id").map(str::to_owned),
            ip,
        }
    }

    fn call<'a>(&'a self, tool: &'a str, args: Option<&'a Value>) -> Call<'a> {
        Call {
            tool,
            args,
            grant: self.grant.as_deref(),
            session: self.session.as_deref(),
            ip: self.ip,
        }
    }

    fn key(&self, scope: Scope) -> String {
        match scope {
            Scope::Grant => self.grant.clone().unwrap_or_default(),
            Scope::Session => self.session.clone().unwrap_or_default(),
            Scope::Ip => self.ip.map(|i| i.to_string()).unwrap_or_default(),
            Scope::Global => String::new(),
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

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// What one call came to, before anything is forwarded.
struct Verdict<'a> {
    id: Value,
    tool: String,
    args: Option<&'a Value>,
    outcome: Outcome,
    rule: String,
    message: String,
    shadow: bool,
    charges: Vec<Charge>,
    approval: Option<warden_policy::Approval>,
}

impl<'a> Verdict<'a> {
    fn decide(
        enforcer: &Enforcer,
        caller: &Caller,
        id: Value,
        tool: &str,
        args: Option<&'a Value>,
        force_shadow: bool,
    ) -> Self {
        let d = enforcer.policy.decide(&caller.call(tool, args));
        let charges = d
            .charges()
            .iter()
            .map(|c| Charge {
                limit: c.limit.index,
                key: caller.key(c.limit.scope),
                cost: c.cost,
            })
            .collect();
        Verdict {
            id,
            tool: tool.to_owned(),
            args,
            outcome: d.outcome(),
            rule: d.rule().to_owned(),
            message: d.message().to_owned(),
            shadow: d.is_shadow() || force_shadow,
            charges,
            approval: d.approval().cloned(),
        }
    }

    /// Asks the approver about exactly this call, within the rule's timeout. `Err` carries
    /// the reason the agent reads.
    async fn ask(
        &self,
        shared: &Shared,
        caller: &Caller,
        approval: &warden_policy::Approval,
    ) -> Result<(), String> {
        let timeout = Duration::from_secs(approval.timeout_secs());
        let request = ApprovalRequest::new(
            caller.grant.as_deref(),
            &self.tool,
            self.args,
            &self.rule,
            timeout,
        );
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

async fn mcp<S, ReqB, ResB>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<ReqB>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResB>>,
    ReqB: http_body::Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    // Only POST bodies carry client messages; GET streams and DELETE pass untouched.
    if parts.method != Method::POST {
        let resp = inner
            .call(Request::from_parts(parts, Body::new(body)))
            .await?;
        return Ok(boxed(resp));
    }
    let started = Instant::now();
    let bytes = match read_body(&shared, &parts.headers, body).await {
        Ok(b) => b,
        Err(resp) => return Ok(resp),
    };
    let parsed = match inspect::parse(&bytes) {
        Ok(p) => p,
        Err(Refusal::Parse(why)) => {
            observe::refused_request("parse");
            let v = answer::rpc_error(&Value::Null, -32700, &format!("Parse error: {why}"));
            return Ok(answer::json(StatusCode::BAD_REQUEST, &v));
        }
        Err(Refusal::Invalid { id, message }) => {
            observe::refused_request("invalid");
            let v = answer::rpc_error(&id, -32600, &format!("Invalid request: {message}"));
            return Ok(answer::json(StatusCode::BAD_REQUEST, &v));
        }
    };
    if let Err(why) = headers_agree(&parts.headers, &parsed) {
        observe::refused_request("header-mismatch");
        let id = match parsed.messages.first() {
            Some(Message::Request { id, .. }) => id.clone(),
            _ => Value::Null,
        };
        let v = answer::rpc_error(&id, -32600, &format!("Invalid request: {why}"));
        return Ok(answer::json(StatusCode::BAD_REQUEST, &v));
    }

    let enforcer = shared.state.load_full();
    let caller = Caller::of(&shared, &parts);
    let verdicts = decide_all(&enforcer, &caller, &parsed.messages, shared.config.shadow);
    let style = shared.config.deny_style;
    let protocol = header_str(&parts.headers, "mcp-protocol-version");

    // Denials: answer locally; with a batch, nothing of it is forwarded.
    let blocking: Vec<&Verdict> = verdicts
        .iter()
        .filter(|v| v.outcome == Outcome::Deny && !v.shadow)
        .collect();
    for v in &verdicts {
        if v.outcome == Outcome::Deny {
            log(&caller, v, "deny", &v.rule, started.elapsed(), v.shadow);
        }
    }
    if !blocking.is_empty() {
        let reasons: Vec<(Value, String)> = blocking
            .iter()
            .map(|v| (v.id.clone(), v.message.clone()))
            .collect();
        return Ok(refuse_all(
            &parsed,
            &reasons,
            "another call in this batch was denied",
            style,
            protocol,
        ));
    }

    // Limits of every call that goes on, all charged together or none.
    let charges: Vec<Charge> = verdicts
        .iter()
        .filter(|v| v.outcome != Outcome::Deny)
        .flat_map(|v| v.charges.iter().cloned())
        .collect();
    if let Err(limited) = enforcer.counters.charge(&charges) {
        let shadow = verdicts.iter().all(|v| v.shadow);
        for v in verdicts.iter().filter(|v| v.outcome != Outcome::Deny) {
            log(
                &caller,
                v,
                "limited",
                limited.rule(),
                started.elapsed(),
                shadow,
            );
        }
        if !shadow {
            metrics::counter!("warden_limited_total").increment(1);
            let reasons: Vec<(Value, String)> = verdicts
                .iter()
                .filter(|v| v.outcome != Outcome::Deny)
                .map(|v| (v.id.clone(), limited.message()))
                .collect();
            return Ok(refuse_all(
                &parsed,
                &reasons,
                "another call in this batch was rate-limited",
                style,
                protocol,
            ));
        }
    }

    // Approvals, each bound to its exact call.
    let mut refused = Vec::new();
    for v in verdicts.iter().filter(|v| v.outcome != Outcome::Deny) {
        let Some(approval) = &v.approval else {
            log(&caller, v, "allow", &v.rule, started.elapsed(), false);
            continue;
        };
        if v.shadow {
            log(&caller, v, "approval", &v.rule, started.elapsed(), true);
            continue;
        }
        match v.ask(&shared, &caller, approval).await {
            Ok(()) => log(&caller, v, "approved", &v.rule, started.elapsed(), false),
            Err(reason) => {
                log(&caller, v, "refused", &v.rule, started.elapsed(), false);
                refused.push((v.id.clone(), reason));
            }
        }
    }
    if !refused.is_empty() {
        return Ok(refuse_all(
            &parsed,
            &refused,
            "another call in this batch was not approved",
            style,
            protocol,
        ));
    }

    // Forward the very bytes that were inspected.
    let list_ids: Vec<Value> = parsed
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::Request { id, method, .. } if method == "tools/list" => Some(id.clone()),
            _ => None,
        })
        .collect();
    let resp = inner
        .call(Request::from_parts(parts, Body::full(bytes)))
        .await?;
    if list_ids.is_empty() {
        return Ok(boxed(resp));
    }
    Ok(filter_list_response(
        resp,
        list_ids,
        enforcer.policy.clone(),
        shared.config.max_body,
    )
    .await)
}

fn decide_all<'a>(
    enforcer: &Enforcer,
    caller: &Caller,
    messages: &'a [Message],
    force_shadow: bool,
) -> Vec<Verdict<'a>> {
    let mut out = Vec::new();
    for m in messages {
        let Some((id, params)) = m.tool_call() else {
            continue;
        };
        let tool = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let args = params.get("arguments").filter(|a| !a.is_null());
        out.push(Verdict::decide(
            enforcer,
            caller,
            id.clone(),
            tool,
            args,
            force_shadow,
        ));
    }
    out
}

fn log(
    caller: &Caller,
    v: &Verdict<'_>,
    decision: &'static str,
    rule: &str,
    latency: Duration,
    would_block: bool,
) {
    observe::record(&Record {
        grant: caller.grant.as_deref(),
        session: caller.session.as_deref(),
        tool: &v.tool,
        decision,
        rule,
        args: v.args,
        latency,
        would_block,
    });
}

/// Answers every request of the body locally: the refused calls with their reason, the
/// others of a batch with `bystander`.
fn refuse_all(
    parsed: &inspect::Body,
    reasons: &[(Value, String)],
    bystander: &str,
    style: DenyStyle,
    protocol: Option<&str>,
) -> Response<Body> {
    let answers: Vec<Value> = parsed
        .messages
        .iter()
        .filter_map(|m| match m {
            Message::Request { id, method, .. } => {
                Some(match reasons.iter().find(|(rid, _)| rid == id) {
                    Some((_, why)) => answer::denied(id, why, style, protocol),
                    None if method == "tools/call" => {
                        answer::denied(id, bystander, style, protocol)
                    }
                    None => answer::rpc_error(
                        id,
                        answer::POLICY_DENIED_CODE,
                        &format!("{} {bystander}", answer::DENIED_PREFIX),
                    ),
                })
            }
            _ => None,
        })
        .collect();
    let value = if parsed.batch {
        Value::Array(answers)
    } else {
        answers.into_iter().next().unwrap_or(Value::Null)
    };
    answer::json(StatusCode::OK, &value)
}

/// Buffers a POST body up to the limit; refuses encodings it cannot read.
async fn read_body<B>(
    shared: &Shared,
    headers: &HeaderMap,
    body: B,
) -> Result<Bytes, Response<Body>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
            observe::refused_request("content-encoding");
            return Err(answer::status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "request bodies must not be compressed: the policy gate cannot inspect them",
            ));
        }
    }
    let max = shared.config.max_body;
    if headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > max as u64)
    {
        observe::refused_request("too-large");
        return Err(answer::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body over {max} bytes"),
        ));
    }
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            observe::refused_request("too-large");
            Err(answer::status(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body over {max} bytes"),
            ))
        }
        Err(_) => Err(answer::status(
            StatusCode::BAD_REQUEST,
            "could not read the request body",
        )),
    }
}

/// Protocol 2026-07-28 repeats the method and tool name in headers; a mismatch means two
/// parsers could see two different requests, so it is refused.
fn headers_agree(h: &HeaderMap, parsed: &inspect::Body) -> Result<(), String> {
    let method_h = h.get("mcp-method");
    let name_h = h.get("mcp-name");
    if method_h.is_none() && name_h.is_none() {
        return Ok(());
    }
    let single = match (&parsed.messages[..], parsed.batch) {
        ([m], false) => m,
        _ => return Err("Mcp-Method / Mcp-Name headers on a batch".into()),
    };
    let (method, params) = match single {
        Message::Request { method, params, .. } => (Some(method.as_str()), params.as_ref()),
        _ => (None, None),
    };
    if let Some(mh) = method_h {
        if method.is_some_and(|m| mh.as_bytes() != m.as_bytes()) {
            return Err("the Mcp-Method header does not match the body's method".into());
        }
    }
    if let (Some(nh), Some("tools/call")) = (name_h, method) {
        let name = params.and_then(|p| p.get("name")).and_then(Value::as_str);
        if name.is_none_or(|n| nh.as_bytes() != n.as_bytes()) {
            return Err("the Mcp-Name header does not match the tool being called".into());
        }
    }
    Ok(())
}

/// Removes hidden tools from a `tools/list` answer, JSON or SSE.
async fn filter_list_response<B>(
    resp: Response<B>,
    ids: Vec<Value>,
    policy: Arc<warden_policy::CompiledPolicy>,
    max: usize,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("text/event-stream") {
        return resp.map(|b| Body::sse_filtered(Body::new(b), ids, policy));
    }
    if !content_type.starts_with("application/json") {
        return boxed(resp);
    }
    let (mut parts, body) = resp.into_parts();
    // The upstream's list is bounded like requests are; past it, fail closed.
    let bytes = match http_body_util::Limited::new(body, max.max(16 << 20))
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return answer::status(
                StatusCode::BAD_GATEWAY,
                "could not read the tools/list answer",
            );
        }
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::full(bytes));
    };
    if !crate::body::filter_tools_list(&mut value, &ids, &policy) {
        return Response::from_parts(parts, Body::full(bytes));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::full(value.to_string()))
}

/// Plain HTTP mode: the tool is `METHOD /route`, the arguments are the query string and a
/// JSON object body.
async fn plain_http<S, ReqB, ResB>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<ReqB>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResB>>,
    ReqB: http_body::Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let route = route_of(&parts);
    let tool = format!("{} {route}", parts.method);
    let mut args = serde_json::Map::new();
    for pair in parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"));
    let body = if is_json {
        let bytes = match read_body(&shared, &parts.headers, body).await {
            Ok(b) => b,
            Err(resp) => return Ok(resp),
        };
        if !bytes.is_empty() {
            match warden_policy::strict_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => args.extend(m),
                Ok(_) => {}
                Err(e) => {
                    observe::refused_request("parse");
                    return Ok(answer::status(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid JSON body: {e}"),
                    ));
                }
            }
        }
        Body::full(bytes)
    } else {
        Body::new(body)
    };
    let args = Value::Object(args);
    let enforcer = shared.state.load_full();
    let caller = Caller::of(&shared, &parts);
    let d = enforcer.policy.decide(&caller.call(&tool, Some(&args)));
    let v = Verdict::decide(
        &enforcer,
        &caller,
        Value::Null,
        &tool,
        Some(&args),
        shared.config.shadow,
    );
    if v.outcome == Outcome::Deny {
        log(&caller, &v, "deny", &v.rule, started.elapsed(), v.shadow);
        if !v.shadow {
            return Ok(answer::forbidden(&v.message));
        }
    } else if let Err(limited) = enforcer.counters.charge(&v.charges) {
        log(
            &caller,
            &v,
            "limited",
            limited.rule(),
            started.elapsed(),
            v.shadow,
        );
        if !v.shadow {
            return Ok(match limited.retry_after_secs() {
                Some(secs) => answer::too_many(&limited.message(), &counter_of(&limited), secs),
                None => answer::forbidden(&limited.message()),
            });
        }
    } else if let Some(approval) = v.approval.clone().filter(|_| !v.shadow) {
        if let Err(reason) = v.ask(&shared, &caller, &approval).await {
            log(&caller, &v, "refused", &v.rule, started.elapsed(), false);
            return Ok(answer::forbidden(&reason));
        }
        log(&caller, &v, "approved", &v.rule, started.elapsed(), false);
    } else {
        log(&caller, &v, "allow", &v.rule, started.elapsed(), false);
    }
    let resp = inner.call(Request::from_parts(parts, body)).await?;
    Ok(boxed(resp))
}

fn counter_of(l: &crate::limit::Limited) -> String {
    match l {
        crate::limit::Limited::Exhausted { counter, .. }
        | crate::limit::Limited::TooCostly { counter, .. }
        | crate::limit::Limited::TooManyKeys { counter, .. } => counter.clone(),
    }
}

#[cfg(feature = "axum")]
fn route_of(parts: &http::request::Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned())
}

#[cfg(not(feature = "axum"))]
fn route_of(parts: &http::request::Parts) -> String {
    parts.uri.path().to_owned()
}
