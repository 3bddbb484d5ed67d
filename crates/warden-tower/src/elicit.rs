//! Approval in the agent's own MCP client (`require approval via client`), by elicitation.
//!
//! - **Protocol 2025-11-25.** The answer to the `tools/call` becomes an SSE stream whose
//!   first event is an `elicitation/create` request. The client POSTs the person's answer
//!   back; the layer takes that answer (the upstream never sent the request, so it never
//!   sees the reply), and the same stream then carries the call's own answer. Only sessions
//!   whose client declared `elicitation` at `initialize` are asked this way.
//! - **Protocol 2026-07-28.** The `tools/call` is answered with an `input_required` result
//!   embedding the elicitation; the client retries the call with the person's answer and
//!   the `requestState` it was handed. The capabilities come with each request. A client
//!   that can open links (URL mode) is sent to the console's page for the approval when the
//!   layer knows the console's address.
//!
//! Either way a [`Ticket`] kept here is the authority: bound to grant, session, tool and the
//! canonical arguments' hash, the policy revision and an expiry, and used once. Its id is
//! random, so an agent cannot answer an approval it was never sent. The request is put to
//! the approver as well (the console lists it), and whichever answer comes first counts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tower::Service;
use warden_policy::{Approval, ApprovalVia, OnTimeout};

use crate::answer;
use crate::approval::{Answer, ApprovalRequest, call_hash};
use crate::body::{Body, BoxError};
use crate::inspect::Fields;
use crate::layer::Shared;
use crate::service::{Caller, Verdict, log};

/// Ids of the elicitations the layer sends and of the `requestState` it hands out start
/// with this; the rest is random.
pub(crate) const ID_PREFIX: &str = "warden-approval-";
/// The layer's key in an `input_required` result's `inputRequests`.
pub(crate) const INPUT_KEY: &str = "warden_approval";
/// The first protocol whose calls carry capabilities and retry with answers.
pub(crate) const MRTR_PROTOCOL: &str = "2026-07-28";
const CAPS_META_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
/// Sessions remembered (the oldest is forgotten first), and approvals waiting at once.
const MAX_SESSIONS: usize = 100_000;
const MAX_TICKETS: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The elicitation modes a client declared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Caps {
    pub(crate) form: bool,
    pub(crate) url: bool,
}

impl Caps {
    /// From `ClientCapabilities`: `elicitation: {}` means form mode (clients written before
    /// modes existed).
    pub(crate) fn of(capabilities: Option<&Value>) -> Caps {
        let Some(e) = capabilities
            .and_then(|c| c.get("elicitation"))
            .and_then(Value::as_object)
        else {
            return Caps::default();
        };
        Caps {
            form: e.contains_key("form") || !e.contains_key("url"),
            url: e.contains_key("url"),
        }
    }

    /// What a 2026-07-28 call says its client can do, in its `_meta`.
    pub(crate) fn of_call(params: &Fields<'_>) -> Caps {
        Caps::of(params.get("_meta").and_then(|m| m.get(CAPS_META_KEY)))
    }
}

/// Approvals waiting for an answer from an MCP client, and the sessions whose client can
/// be asked.
#[derive(Default)]
pub(crate) struct Book {
    sessions: Mutex<Sessions>,
    tickets: Mutex<HashMap<String, Arc<Ticket>>>,
}

#[derive(Default)]
struct Sessions {
    caps: HashMap<String, Caps>,
    order: VecDeque<String>,
}

impl Book {
    /// Remembers what a session's client declared at `initialize`.
    pub(crate) fn remember(&self, session: &str, caps: Caps) {
        if caps == Caps::default() {
            return;
        }
        let mut s = lock(&self.sessions);
        if s.caps.insert(session.to_owned(), caps).is_none() {
            s.order.push_back(session.to_owned());
            while s.order.len() > MAX_SESSIONS {
                if let Some(old) = s.order.pop_front() {
                    s.caps.remove(&old);
                }
            }
        }
    }

    pub(crate) fn session_caps(&self, session: Option<&str>) -> Caps {
        session
            .and_then(|s| lock(&self.sessions).caps.get(s).copied())
            .unwrap_or_default()
    }

    fn open(&self, ticket: Ticket) -> Result<Arc<Ticket>, String> {
        let mut tickets = lock(&self.tickets);
        let now = Instant::now();
        tickets.retain(|_, t| t.deadline > now);
        if tickets.len() >= MAX_TICKETS {
            return Err(format!(
                "{MAX_TICKETS} approvals are already waiting; try again later"
            ));
        }
        let ticket = Arc::new(ticket);
        tickets.insert(ticket.id.clone(), ticket.clone());
        Ok(ticket)
    }

    fn get(&self, id: &str) -> Option<Arc<Ticket>> {
        lock(&self.tickets).get(id).cloned()
    }

    /// Takes a ticket out: it answers one call only.
    fn take(&self, id: &str) -> Option<Arc<Ticket>> {
        lock(&self.tickets).remove(id)
    }
}

/// One approval asked in an MCP client.
pub(crate) struct Ticket {
    id: String,
    grant: Option<String>,
    session: Option<String>,
    call_hash: String,
    revision: u64,
    deadline: Instant,
    on_timeout: Option<OnTimeout>,
    /// The person was sent to the console (URL mode): the client's yes only says they went.
    url_mode: bool,
    /// As the approver and the audit log see it (arguments redacted).
    request: ApprovalRequest,
    answer: Arc<watch::Sender<Option<Answer>>>,
    /// The same request put to the approver (the console); stopped with the ticket.
    console: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(h) = lock(&self.console).take() {
            h.abort();
        }
    }
}

impl Ticket {
    /// Records an answer unless one came first; true if this one counts.
    fn settle(&self, a: Answer) -> bool {
        self.answer.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(a);
                true
            } else {
                false
            }
        })
    }

    /// The first answer, or what the rule says once the deadline passes.
    async fn outcome(&self) -> Answer {
        let mut rx = self.answer.subscribe();
        let waited = tokio::time::timeout_at(self.deadline, rx.wait_for(Option::is_some)).await;
        if let Ok(Ok(a)) = waited {
            if let Some(a) = a.as_ref() {
                return a.clone();
            }
        }
        if self.on_timeout == Some(OnTimeout::Allow) {
            Answer::Approved
        } else {
            Answer::Denied(Some(format!(
                "no approval within {} seconds",
                self.request.timeout_secs
            )))
        }
    }

    fn binds(&self, caller: &Caller, hash: Option<&str>, revision: Option<u64>) -> bool {
        self.grant.as_deref() == caller.grant.as_deref()
            && self.session.as_deref() == caller.session.as_deref()
            && hash.is_none_or(|h| h == self.call_hash)
            && revision.is_none_or(|r| r == self.revision)
    }
}

/// How this call's approval is asked in the client, if it is.
pub(crate) enum Route {
    /// 2025-11-25: on the call's own SSE stream.
    Stream,
    /// 2026-07-28: an `input_required` result; `url` when the person goes to the console.
    Retry { url: bool },
}

/// Whether the client behind this call can be asked, and how.
pub(crate) fn route(
    shared: &Shared,
    caller: &Caller,
    protocol: Option<&str>,
    params: &Fields<'_>,
    accepts_sse: bool,
    single: bool,
) -> Option<Route> {
    if !single {
        return None;
    }
    if protocol.is_some_and(|p| p >= MRTR_PROTOCOL) {
        let caps = Caps::of_call(params);
        let url = caps.url && shared.config.console_url.is_some() && shared.approver.waits();
        return (caps.form || url).then_some(Route::Retry { url });
    }
    let caps = shared.elicit.session_caps(caller.session.as_deref());
    (caps.form && accepts_sse).then_some(Route::Stream)
}

/// Opens a ticket for this call and puts the same request to the approver.
pub(crate) fn open(
    shared: &Shared,
    caller: &Caller,
    v: &Verdict<'_>,
    approval: &Approval,
    revision: u64,
    url_mode: bool,
) -> Result<Arc<Ticket>, String> {
    let timeout = Duration::from_secs(approval.timeout_secs());
    let mut request =
        ApprovalRequest::new(caller.grant.as_deref(), &v.tool, v.args, &v.rule, timeout);
    request.server = caller.server.as_deref().map(str::to_owned);
    if !approval.redact.is_empty() {
        request.args = request.args.map(|a| approval.shown(&a));
    }
    let (tx, _) = watch::channel(None);
    let ticket = shared.elicit.open(Ticket {
        id: format!("{ID_PREFIX}{}", uuid::Uuid::new_v4().simple()),
        grant: caller.grant.as_deref().map(str::to_owned),
        session: caller.session.as_deref().map(str::to_owned),
        call_hash: request.call_hash.clone(),
        revision,
        deadline: Instant::now() + timeout,
        on_timeout: approval.on_timeout,
        url_mode,
        request: request.clone(),
        answer: Arc::new(tx),
        console: Mutex::new(None),
    })?;
    if shared.approver.waits() {
        let asked = tokio::time::timeout_at(ticket.deadline, shared.approver.ask(request));
        let answer = ticket.answer.clone();
        let task = tokio::spawn(async move {
            // Past the deadline the request leaves the console; the ticket decides alone.
            if let Ok(a) = asked.await {
                answer.send_if_modified(|slot| slot.is_none() && slot.replace(a).is_none());
            }
        });
        *lock(&ticket.console) = Some(task.abort_handle());
    }
    tracing::debug!(target: "warden::decision", id = %ticket.id, tool = %v.tool, url_mode, "approval asked in the MCP client");
    Ok(ticket)
}

/// What the person is shown.
fn message(t: &Ticket) -> String {
    let args = t
        .request
        .args
        .as_ref()
        .and_then(|a| serde_json::to_string_pretty(a).ok())
        .unwrap_or_else(|| "(none)".into());
    format!(
        "Approve this tool call?\n\nTool: {}\nArguments:\n{args}\n\nAsked by the policy rule {} (Warden). Accept to let the call run; decline to refuse it.",
        t.request.tool, t.request.rule
    )
}

/// The `elicitation/create` params for a ticket.
fn elicitation(shared: &Shared, t: &Ticket) -> Value {
    match (&shared.config.console_url, t.url_mode) {
        (Some(console), true) => json!({
            "mode": "url",
            "message": format!(
                "Tool {} needs a person's approval (rule {}). Open the Warden console to see the call and answer it; accept here once you have.",
                t.request.tool, t.request.rule
            ),
            "url": format!("{console}/console/approvals#{}", t.request.id),
        }),
        _ => json!({
            "mode": "form",
            "message": message(t),
            "requestedSchema": {
                "type": "object",
                "properties": {
                    "note": {
                        "type": "string",
                        "title": "Note",
                        "description": "Optional: why, for the audit log"
                    }
                }
            }
        }),
    }
}

/// The person's answer, read from an elicitation result.
fn answer_of(result: Option<&Value>, error: Option<&Value>) -> (Answer, Option<String>) {
    if let Some(e) = error {
        let why = e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("an error");
        return (
            Answer::Denied(Some(format!(
                "the MCP client could not ask the person: {why}"
            ))),
            None,
        );
    }
    let note = result
        .and_then(|r| r.get("content"))
        .and_then(|c| c.get("note"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    match result.and_then(|r| r.get("action")).and_then(Value::as_str) {
        Some("accept") => (Answer::Approved, note),
        Some("decline") => (
            Answer::Denied(Some(match &note {
                Some(n) => format!("the person at the MCP client declined this call: {n}"),
                None => "the person at the MCP client declined this call".into(),
            })),
            note,
        ),
        Some("cancel") => (
            Answer::Denied(Some(
                "the person at the MCP client dismissed the approval".into(),
            )),
            note,
        ),
        _ => (
            Answer::Denied(Some(
                "the MCP client's answer to the approval was not understood".into(),
            )),
            None,
        ),
    }
}

fn audit(t: &Ticket, approved: bool, note: Option<&str>) {
    tracing::info!(
        target: "warden::decision",
        id = %t.request.id,
        approved,
        author = "mcp-client",
        note = note.unwrap_or("-"),
        tool = %t.request.tool,
        grant = t.request.grant.as_deref().unwrap_or("-"),
        call_hash = %t.call_hash,
        "approval answered"
    );
}

// --- 2025-11-25: the call's own stream ---------------------------------------------------

/// Takes a client's answer to an elicitation the layer sent. `None`: the body is not one.
pub(crate) fn take_client_answer(
    shared: &Shared,
    caller: &Caller,
    messages: &[crate::inspect::Message],
) -> Option<Response<Body>> {
    use crate::inspect::Message;
    let ours = |m: &Message| matches!(m, Message::Response { id: Some(Value::String(id)), .. } if id.starts_with(ID_PREFIX));
    if !messages.iter().any(ours) {
        return None;
    }
    let refuse = |why: &str| {
        crate::observe::refused_request("approval-answer");
        tracing::warn!(target: "warden::decision", grant = caller.grant.as_deref().unwrap_or("-"), why, "approval answer refused");
        let v = answer::rpc_error(&Value::Null, -32600, &format!("Invalid request: {why}"));
        Some(answer::json(StatusCode::BAD_REQUEST, &v))
    };
    let [
        Message::Response {
            id: Some(Value::String(id)),
            result,
            error,
        },
    ] = messages
    else {
        return refuse("an answer to an approval must be sent on its own");
    };
    let Some(ticket) = shared
        .elicit
        .get(id)
        .filter(|t| t.binds(caller, None, None) && !t.url_mode)
    else {
        return refuse("no approval with this id was asked of this client");
    };
    let (a, note) = answer_of(result.as_ref(), error.as_ref());
    let approved = a == Answer::Approved;
    if ticket.settle(a) {
        audit(&ticket, approved, note.as_deref());
    }
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    Some(r)
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {v}\n\n"))
}

/// Everything the stream needs after the layer has returned its response.
pub(crate) struct Streamed {
    pub(crate) caller: Caller,
    pub(crate) verdict: Verdict<'static>,
    pub(crate) args: Option<Value>,
    pub(crate) request: Request<Body>,
    pub(crate) started: std::time::Instant,
    pub(crate) protocol: Option<String>,
    /// Charges given back if the server answers with an error.
    pub(crate) refunds: Option<crate::refund::Refunds>,
    /// Everything the call was charged, given back if the server (or a gate behind) runs
    /// nothing of it.
    pub(crate) charges: Vec<crate::limit::Charge>,
}

/// Answers the call with an SSE stream: the elicitation first, then (once approved) the
/// upstream's answer. A client that goes away cancels the wait and the upstream call.
pub(crate) fn stream<S, ResB>(
    shared: Arc<Shared>,
    mut inner: S,
    ticket: Arc<Ticket>,
    s: Streamed,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let ask = json!({
        "jsonrpc": "2.0",
        "id": ticket.id,
        "method": "elicitation/create",
        "params": elicitation(&shared, &ticket),
    });
    tokio::spawn(async move {
        let Streamed {
            caller,
            verdict,
            args,
            request,
            started,
            protocol,
            mut refunds,
            charges,
        } = s;
        let v = Verdict {
            args: args.as_ref(),
            ..verdict
        };
        let style = shared.config.deny_style;
        let deny = |why: &str| event(&answer::denied(&v.id, why, style, protocol.as_deref()));
        if tx.send(event(&ask)).await.is_err() {
            shared.elicit.take(&ticket.id);
            return;
        }
        // The wait for the person at the client, as a span of its own.
        let waiting = caller
            .trace
            .as_ref()
            .and_then(|t| t.child("warden approval", opentelemetry::trace::SpanKind::Internal));
        let noted = |answer: &'static str| {
            if let Some(w) = &waiting {
                w.set(opentelemetry::KeyValue::new(
                    "warden.approval.answer",
                    answer,
                ));
                w.set(opentelemetry::KeyValue::new(
                    "warden.approval.wait_ms",
                    w.elapsed_ms(),
                ));
                w.set(opentelemetry::KeyValue::new(
                    "warden.approval.via",
                    "client",
                ));
            }
        };
        let outcome = tokio::select! {
            a = ticket.outcome() => a,
            () = tx.closed() => {
                noted("cancelled");
                shared.elicit.take(&ticket.id);
                log(&caller, &v, "refused", &v.rule, started.elapsed(), false);
                return;
            }
        };
        noted(if outcome == Answer::Approved {
            "approved"
        } else {
            "refused"
        });
        drop(waiting);
        shared.elicit.take(&ticket.id);
        if let Answer::Denied(why) = outcome {
            log(&caller, &v, "refused", &v.rule, started.elapsed(), false);
            let why = why.unwrap_or_else(|| "a person refused this call".into());
            let _ = tx.send(deny(&why)).await;
            return;
        }
        log(&caller, &v, "approved", &v.rule, started.elapsed(), false);
        let resp = tokio::select! {
            r = inner.call(request) => r,
            () = tx.closed() => return,
        };
        match resp {
            Ok(resp) => {
                let in_session = caller.session.is_some();
                if crate::mcp::ran_nothing(&resp, in_session) && !charges.is_empty() {
                    shared.store.refund(&charges).await;
                    refunds = None;
                }
                let resp = match refunds {
                    Some(r) => crate::refund::watch(resp, r, shared.config.max_body).await,
                    None => crate::service::boxed(resp),
                };
                relay(resp, &tx, &v.id, shared.config.max_body).await
            }
            Err(_) => {
                let e = answer::rpc_error(
                    &v.id,
                    answer::Forwarded::UPSTREAM_ERROR,
                    "the upstream failed to answer",
                );
                let _ = tx.send(event(&e)).await;
            }
        }
    });
    let mut r = Response::new(Body::channel(rx));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Passes the upstream's answer on as events: its own stream as it is, a JSON answer as one
/// event, anything else as a JSON-RPC error for the call.
async fn relay<B>(resp: Response<B>, tx: &mpsc::Sender<Bytes>, id: &Value, max: usize)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let status = resp.status();
    let sse = crate::body::content_kind(resp.headers()) == crate::body::ContentKind::EventStream;
    // Boxed, so that no error of the inner service's body type is held across an await.
    let mut body = Body::new(resp.into_body());
    if sse {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if tx.send(data).await.is_err() {
                    return;
                }
            }
        }
        return;
    }
    let collected = http_body_util::Limited::new(body, max.max(16 << 20))
        .collect()
        .await;
    let v = match collected.map(|c| serde_json::from_slice::<Value>(&c.to_bytes())) {
        Ok(Ok(v)) if v.is_object() => v,
        _ => answer::rpc_error(
            id,
            answer::Forwarded::UPSTREAM_ERROR,
            &format!("the upstream answered {status} without a JSON-RPC answer"),
        ),
    };
    let _ = tx.send(event(&v)).await;
}

// --- 2026-07-28: the call comes back with the answer -------------------------------------

/// The `input_required` result asking for this ticket's approval.
pub(crate) fn input_required(shared: &Shared, ticket: &Ticket, id: &Value) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "resultType": "input_required",
            "inputRequests": {
                INPUT_KEY: {"method": "elicitation/create", "params": elicitation(shared, ticket)}
            },
            "requestState": ticket.id,
        }
    })
}

/// A call that comes back with the answer to an approval the layer asked.
pub(crate) struct Returned {
    pub(crate) state: String,
    pub(crate) responses: Option<Value>,
}

impl Returned {
    /// The layer's own `requestState` on a call, if it carries one.
    pub(crate) fn of(params: &Fields<'_>) -> Option<Returned> {
        let state = params.get("requestState")?.as_str()?;
        state.starts_with(ID_PREFIX).then(|| Returned {
            state: state.to_owned(),
            responses: params.get("inputResponses").cloned(),
        })
    }

    /// The person's answer, checked against the ticket: same caller, same call, same
    /// policy, in time, once. In URL mode the client's yes only says the person went to the
    /// console, so the console's answer is awaited.
    pub(crate) async fn redeem(
        self,
        shared: &Shared,
        caller: &Caller,
        v: &Verdict<'_>,
        revision: u64,
    ) -> Result<(), String> {
        let stale = "this approval is unknown, expired, already used or for another call; call the tool again to be asked anew";
        let Some(ticket) = shared.elicit.take(&self.state) else {
            return Err(stale.into());
        };
        let hash = call_hash(caller.grant.as_deref(), &v.tool, v.args);
        if !ticket.binds(caller, Some(&hash), None) || Instant::now() >= ticket.deadline {
            return Err(stale.into());
        }
        if ticket.revision != revision {
            return Err("the policy changed while this call waited for approval; call the tool again to be asked anew".into());
        }
        let response = self.responses.as_ref().and_then(|r| r.get(INPUT_KEY));
        let (a, note) = answer_of(response, None);
        let approved = a == Answer::Approved;
        let outcome = match (ticket.url_mode, a) {
            // The person said they would answer in the console: wait for it there.
            (true, Answer::Approved) => ticket.outcome().await,
            (_, a) => {
                if ticket.settle(a) {
                    audit(&ticket, approved, note.as_deref());
                }
                ticket.outcome().await
            }
        };
        match outcome {
            Answer::Approved => Ok(()),
            Answer::Denied(why) => Err(why.unwrap_or_else(|| "a person refused this call".into())),
        }
    }
}

/// The body to forward once the layer's own fields are gone from the returned calls: the
/// upstream never asked, so it must not see the answers.
pub(crate) fn strip(body: &[u8]) -> Option<Bytes> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let strip_one = |m: &mut Value| {
        if m.get("method").and_then(Value::as_str) != Some("tools/call") {
            return;
        }
        if let Some(p) = m.get_mut("params").and_then(Value::as_object_mut) {
            if p.get("requestState")
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with(ID_PREFIX))
            {
                p.remove("requestState");
                p.remove("inputResponses");
            }
        }
    };
    match &mut v {
        Value::Array(items) => items.iter_mut().for_each(strip_one),
        one => strip_one(one),
    }
    serde_json::to_vec(&v).ok().map(Bytes::from)
}

/// Whether a call's rule asks the client, and what happens when the client cannot be asked.
pub(crate) fn fallback_to_queue(via: ApprovalVia) -> bool {
    via == ApprovalVia::ClientOrQueue
}
