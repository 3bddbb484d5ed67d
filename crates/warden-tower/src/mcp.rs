//! MCP mode: JSON-RPC in POST bodies, each `tools/call` decided before anything is forwarded.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use serde_json::Value;
use tower::Service;
use warden_policy::Outcome;

use crate::answer::{self, DenyStyle};
use crate::body::{Body, BoxError};
use crate::elicit;
use crate::inspect::{self, Fields, Message, Refusal};
use crate::layer::{Enforcer, Shared};
use crate::limit::{Charge, Charged};
use crate::methods::Ruled;
use crate::observe;
use crate::refund;
use crate::service::{Caller, HeaderText, Verdict, boxed, header_str, log, names, read_body};
use crate::view::{List, View};

pub(crate) async fn mcp<S, ReqB, ResB>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<ReqB>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: http_body::Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    // Only POST bodies carry client messages: a body on any other method could carry a call
    // the gate never read, so it is refused. GET streams and DELETE without a body pass.
    if parts.method != Method::POST && has_body(&parts.headers) {
        observe::refused_request("body-on-non-post");
        let v = answer::rpc_error(
            &Value::Null,
            -32600,
            &format!(
                "Invalid request: a {} request must not carry a body; MCP messages are POSTed",
                parts.method
            ),
        );
        return Ok(answer::json(StatusCode::METHOD_NOT_ALLOWED, &v));
    }
    if parts.method != Method::POST {
        // The standalone stream carries the server's own requests, guarded when the policy
        // rules them, and the gateway's `list_changed` when a reload changes the lists.
        if parts.method == Method::GET {
            let (policy, revision) = {
                let e = shared.state.load();
                (e.policy.clone(), e.revision)
            };
            // Lists the session got under an older policy: told at once.
            let stale = HeaderText::of(&parts.headers, &names::MCP_SESSION_ID)
                .map(|s| shared.listed.stale(&s, revision))
                .unwrap_or_default();
            // Who is asked, and how to answer the server, only when its requests are ruled.
            let guard = policy.rules_server_requests().then(|| {
                (
                    Caller::of(&shared, &parts),
                    answer_head(&parts),
                    inner.clone(),
                )
            });
            let resp = inner
                .call(Request::from_parts(parts, Body::new(body)))
                .await?;
            if crate::body::content_kind(resp.headers()) != crate::body::ContentKind::EventStream {
                return Ok(boxed(resp));
            }
            let resp = match guard {
                Some((caller, head, inner)) => {
                    guard_stream(resp, View::of(policy, Vec::new(), &caller), inner, head)
                }
                None => boxed(resp),
            };
            return Ok(with_list_changes(
                resp,
                shared.lists_changed.subscribe(),
                stale,
            ));
        }
        let resp = inner
            .call(Request::from_parts(parts, Body::new(body)))
            .await?;
        return Ok(boxed(resp));
    }
    let started = Instant::now();
    let bytes = match read_body(&shared, &parts.headers, body).await {
        Ok(b) => b,
        // The body was not read, so its id is unknown: JSON-RPC says `null` then.
        Err(crate::service::Unread(status, why)) => {
            let v = answer::rpc_error(&Value::Null, -32600, &format!("Invalid request: {why}"));
            return Ok(answer::json(status, &v));
        }
    };
    let enforcer = shared.state.load_full();
    // Arguments are read into JSON only when something will look at them: a condition or a
    // cost, an approval (the person sees them), the recorder, or the audit line's keys.
    let keep_arguments = enforcer.policy.reads_arguments()
        || enforcer.policy.asks_approval()
        || shared.config.recorder.is_some()
        || observe::decisions_enabled();
    // The messages borrow from their own handle on the body, so `bytes` can be forwarded.
    let text = bytes.clone();
    let parsed = match inspect::parse(&text, keep_arguments) {
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
        // Protocol 2026-07-28 names this error: HeaderMismatchError, -32020, HTTP 400.
        let v = answer::rpc_error(&id, HEADER_MISMATCH, &format!("Header mismatch: {why}"));
        return Ok(answer::json(StatusCode::BAD_REQUEST, &v));
    }

    let mut caller = Caller::of(&shared, &parts);
    // A span for each message, when traces are on; they end with the answer's body.
    let trace = shared
        .config
        .tracing
        .as_ref()
        .and_then(|t| crate::otel::Trace::start(t, &parts, &parsed.messages, &caller));
    caller.trace = trace.clone();
    let answer: Result<Response<Body>, S::Error> = async {
        // The person's answer to an approval asked on a call's own stream: the layer asked, so
        // the layer takes the answer; the upstream never sees it.
        if let Some(r) = elicit::take_client_answer(&shared, &caller, &parsed.messages) {
            return Ok(r);
        }
        caller.read_counters(&shared, &enforcer).await;
        // A resource's `args.uri` is its URI: built only for a policy that reads arguments.
        let uris = resource_args(&enforcer, &parsed.messages);
        let verdicts = decide_all(
            &enforcer,
            &caller,
            &parsed.messages,
            &uris,
            shared.config.shadow,
        );
        let style = shared.config.deny_style;
        let protocol = HeaderText::of(&parts.headers, &names::MCP_PROTOCOL_VERSION);
        let protocol = protocol.as_deref();
        // Calls that come back (protocol 2026-07-28) with the answer to an approval asked in the
        // client. They were charged when first asked; their ticket decides them below.
        // Empty (no allocation) unless the protocol has such calls; indexed like `verdicts`.
        let mut returned: Vec<Option<elicit::Returned>> =
            if protocol.is_some_and(|v| v >= elicit::MRTR_PROTOCOL) {
                call_params(&parsed.messages)
                    .map(|p| p.and_then(elicit::Returned::of))
                    .collect()
            } else {
                Vec::new()
            };
        let returned_any = returned.iter().any(Option::is_some);
        let is_returned = |i: usize| returned.get(i).is_some_and(Option::is_some);

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
                .map(|v| (v.id.clone(), v.message.to_string()))
                .collect();
            return Ok(untried(refuse_all(
                &parsed,
                &reasons,
                "another call in this batch was denied",
                style,
                protocol,
            )));
        }

        // Limits of every call that goes on, all charged together or none. One call (the usual
        // body) is charged from its own verdict, without copying.
        let mut going = verdicts
            .iter()
            .enumerate()
            .filter(|(i, v)| v.outcome != Outcome::Deny && !is_returned(*i))
            .map(|(_, v)| v);
        let combined: Vec<Charge>;
        let charges: &[Charge] = match (going.next(), going.next()) {
            (None, _) => &[],
            (Some(one), None) => &one.charges,
            (Some(a), Some(b)) => {
                combined = [a, b]
                    .into_iter()
                    .chain(going)
                    .flat_map(|v| v.charges.iter().cloned())
                    .collect();
                &combined
            }
        };
        // The round trip to a store elsewhere (Redis) is a span of its own.
        let store_span = match &trace {
            Some(t) if shared.config.remote_store && !charges.is_empty() => {
                t.child("warden counters", SpanKind::Client)
            }
            _ => None,
        };
        if let Some(s) = &store_span {
            s.set(KeyValue::new("db.system.name", "redis"));
        }
        let charged = enforcer
            .counters
            .charge(&enforcer.policy, shared.store.as_ref(), charges)
            .await;
        drop(store_span);
        if let Some(t) = &trace {
            match &charged {
                Ok(_) => t.charged(charges, shared.store.as_ref()),
                Err(limited) => t.limited(limited),
            }
        }
        if let Err(limited) = &charged {
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
                observe::limited(limited);
                let reasons: Vec<(Value, String)> = verdicts
                    .iter()
                    .filter(|v| v.outcome != Outcome::Deny)
                    .map(|v| (v.id.clone(), limited.message()))
                    .collect();
                return Ok(untried(refuse_all(
                    &parsed,
                    &reasons,
                    "another call in this batch was rate-limited",
                    style,
                    protocol,
                )));
            }
        }

        // Charges a call gives back if the server answers it with an error (`refund on error`).
        let refundable: Vec<(Value, Vec<Charge>)> = match charged {
            Ok(Charged::All) => verdicts
                .iter()
                .enumerate()
                .filter(|(i, v)| v.outcome != Outcome::Deny && !is_returned(*i))
                .filter_map(|(_, v)| {
                    let back: Vec<Charge> = v
                        .charges
                        .iter()
                        .filter(|c| {
                            enforcer
                                .policy
                                .limits()
                                .get(c.limit)
                                .is_some_and(|l| l.refund_on_error)
                        })
                        .cloned()
                        .collect();
                    (!back.is_empty()).then(|| (v.id.clone(), back))
                })
                .collect(),
            _ => Vec::new(),
        };
        let refunds = refund::Refunds::new(shared.store.clone(), refundable);

        // Approvals, each bound to its exact call.
        let single = !parsed.batch && verdicts.len() == 1;
        // Read only for a call that needs a person's approval.
        let accepts_sse = || {
            header_str(&parts.headers, &header::ACCEPT).is_some_and(|a| {
                a.as_bytes()
                    .windows(17)
                    .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"))
            })
        };
        let mut refused = Vec::new();
        // Somebody was asked about a call of this request (or answered before): a refusal
        // then keeps the charges, here and in front.
        let mut asked = false;
        for (i, (v, params)) in verdicts
            .iter()
            .zip(call_params(&parsed.messages))
            .enumerate()
        {
            if v.outcome == Outcome::Deny {
                continue;
            }
            if let Some(back) = returned.get_mut(i).and_then(Option::take) {
                asked = true;
                match Box::pin(back.redeem(&shared, &caller, v, enforcer.revision)).await {
                    Ok(()) => log(&caller, v, "approved", &v.rule, started.elapsed(), false),
                    Err(reason) => {
                        log(&caller, v, "refused", &v.rule, started.elapsed(), false);
                        refused.push((v.id.clone(), reason));
                    }
                }
                continue;
            }
            let Some(approval) = &v.approval else {
                log(&caller, v, "allow", &v.rule, started.elapsed(), false);
                continue;
            };
            if v.shadow {
                log(&caller, v, "approval", &v.rule, started.elapsed(), true);
                continue;
            }
            // Only a tool call can be approved in the client (the policy refuses the others).
            let asks_client = approval.via.filter(|via| via.asks_client());
            if let (Some(via), Some(params)) = (asks_client, params) {
                let route = elicit::route(&shared, &caller, protocol, params, accepts_sse(), single);
                let ticket = match route
                    .as_ref()
                    .map(|r| {
                        let url = matches!(r, elicit::Route::Retry { url: true });
                        elicit::open(&shared, &caller, v, approval, enforcer.revision, url)
                    })
                    .transpose()
                {
                    Ok(t) => t,
                    Err(reason) => {
                        log(&caller, v, "refused", &v.rule, started.elapsed(), false);
                        refused.push((v.id.clone(), reason));
                        continue;
                    }
                };
                match (route, ticket) {
                    (Some(elicit::Route::Retry { .. }), Some(t)) => {
                        return Ok(answer::json(
                            StatusCode::OK,
                            &elicit::input_required(&shared, &t, &v.id),
                        ));
                    }
                    (Some(elicit::Route::Stream), Some(t)) => {
                        // Forwarded once the person approves, under the upstream's span.
                        let mut parts = parts;
                        let bytes = match &trace {
                            Some(tr) => tr.forward(&mut parts.headers, bytes, single),
                            None => bytes,
                        };
                        let streamed = elicit::Streamed {
                            verdict: v.detached(),
                            args: v.args.cloned(),
                            caller,
                            request: forward_request(parts, &parsed, bytes),
                            started,
                            protocol: protocol.map(str::to_owned),
                            refunds,
                            charges: match charged {
                                Ok(Charged::All) => charges.to_vec(),
                                _ => Vec::new(),
                            },
                        };
                        return Ok(elicit::stream(shared.clone(), inner, t, streamed));
                    }
                    _ if elicit::fallback_to_queue(via) => {}
                    _ => {
                        log(&caller, v, "refused", &v.rule, started.elapsed(), false);
                        refused.push((
                            v.id.clone(),
                            "this call must be approved by the person at the MCP client, and this client cannot be asked (it did not declare the elicitation capability)".into(),
                        ));
                        continue;
                    }
                }
            }
            let waiting = trace
                .as_ref()
                .and_then(|t| t.child("warden approval", SpanKind::Internal));
            asked = true;
            let answer = Box::pin(v.ask(&shared, &caller, approval)).await;
            if let Some(w) = &waiting {
                // Nobody answering within the rule's timeout is not a person refusing.
                let timed_out = w.elapsed_ms() >= (approval.timeout_secs() * 1000) as i64;
                let said = match (&answer, timed_out) {
                    (Ok(()), _) => "approved",
                    (Err(_), true) => "timeout",
                    (Err(_), false) => "refused",
                };
                w.set(KeyValue::new("warden.approval.answer", said));
                w.set(KeyValue::new("warden.approval.wait_ms", w.elapsed_ms()));
                w.set(KeyValue::new("warden.approval.via", shared.approver.via()));
            }
            drop(waiting);
            match answer {
                Ok(()) => log(&caller, v, "approved", &v.rule, started.elapsed(), false),
                Err(reason) => {
                    log(&caller, v, "refused", &v.rule, started.elapsed(), false);
                    refused.push((v.id.clone(), reason));
                }
            }
        }
        // Once somebody was asked, a refusal keeps this gate's charges, and the marker stays
        // off so that a gate in front keeps its own: a limit bounds how often an agent in a
        // loop can have somebody asked. Refused before anybody was (the client cannot be
        // asked, too many calls already waiting), the calls are untried: charged nothing
        // here or in front.
        if !refused.is_empty() {
            let answer = refuse_all(
                &parsed,
                &refused,
                "another call in this batch was not approved",
                style,
                protocol,
            );
            if asked {
                return Ok(answer);
            }
            if matches!(charged, Ok(Charged::All)) && !charges.is_empty() {
                shared.store.refund(charges).await;
            }
            return Ok(untried(answer));
        }

        // Forward the very bytes that were inspected (less the answers to the layer's own
        // approvals), naming their requests for failure answers.
        let bytes = if returned_any {
            match elicit::strip(&bytes) {
                Some(b) => b,
                None => bytes,
            }
        } else {
            bytes
        };
        let mut lists = crate::methods::lists(&parsed.messages);
        // Which lists this session holds, under which policy: a standalone stream it opens
        // after a reload is told to list again.
        if let (Some(session), false) = (caller.session.as_deref(), lists.is_empty()) {
            shared
                .listed
                .note(session, enforcer.revision, lists.iter().map(|(_, l)| *l));
        }
        // A list this policy can take nothing from passes untouched (not even parsed).
        lists.retain(|(_, l)| enforcer.policy.may_drop_from_lists(l.kind()));
        let init_caps = parsed.messages.iter().find_map(|m| match m {
            Message::Request { method, params, .. } if method == "initialize" => Some(
                elicit::Caps::of(params.as_ref().and_then(|p| p.get("capabilities"))),
            ),
            _ => None,
        });
        // The head and a handle on the inner service to answer the server's refused requests
        // with: only under a policy that rules them (the usual call clones nothing).
        let guard = enforcer
            .policy
            .rules_server_requests()
            .then(|| (answer_head(&parts), inner.clone()));
        // The upstream call's span, its context handed on in the request.
        let mut parts = parts;
        let bytes = match &trace {
            Some(t) => t.forward(&mut parts.headers, bytes, single && !returned_any),
            None => bytes,
        };
        let resp = inner.call(forward_request(parts, &parsed, bytes)).await?;
        let refunds = if ran_nothing(&resp, caller.session.is_some())
            && matches!(charged, Ok(Charged::All))
            && !charges.is_empty()
        {
            shared.store.refund(charges).await;
            None
        } else {
            refunds
        };
        // What the client can be asked is learnt once per session, when it is created.
        if let Some(caps) = init_caps {
            if let Some(session) = header_str(resp.headers(), &names::MCP_SESSION_ID) {
                shared.elicit.remember(session, caps);
            }
        }
        let resp = match guard {
            // The server may ask the client things on this call's stream.
            Some((head, inner))
                if crate::body::content_kind(resp.headers())
                    == crate::body::ContentKind::EventStream =>
            {
                let view = View::of(enforcer.policy.clone(), lists, &caller);
                guard_stream(resp, view, inner, head)
            }
            _ if lists.is_empty() => boxed(resp),
            _ => {
                let view = View::of(enforcer.policy.clone(), lists, &caller);
                Box::pin(filter_list_response(resp, view, &shared, enforcer.revision)).await
            }
        };
        Ok(match refunds {
            Some(r) => Box::pin(refund::watch(resp, r, shared.config.max_body)).await,
            None => resp,
        })

    }
    .await;
    match trace {
        Some(t) => answer.map(|r| t.finish(r)),
        None => answer,
    }
}

/// The head of a POST that carries the client's answer to the server: the request's own
/// headers (session, protocol version, whatever the inner service needs) for JSON.
fn answer_head(parts: &http::request::Parts) -> http::request::Parts {
    let mut req = Request::post(parts.uri.clone())
        .body(())
        .unwrap_or_default();
    let headers = req.headers_mut();
    for (name, value) in &parts.headers {
        if !matches!(
            *name,
            header::CONTENT_LENGTH
                | header::CONTENT_TYPE
                | header::ACCEPT
                | header::TRANSFER_ENCODING
        ) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        http::HeaderValue::from_static("application/json, text/event-stream"),
    );
    req.into_parts().0
}

/// An event stream from the server (the caller checked that it is one) with its lists
/// filtered and the requests the policy refuses taken out; each refused request is answered
/// to the server, as the client would answer it, by a POST made with `head`.
fn guard_stream<S, ResB>(
    resp: Response<ResB>,
    view: View,
    inner: S,
    head: http::request::Parts,
) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<ResB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        let mut inner = inner;
        while let Some(answer) = rx.recv().await {
            let mut req = Request::from_parts(head.clone(), Body::full(answer.to_string()));
            req.extensions_mut().insert(answer::Forwarded::default());
            if let Ok(resp) = tower::ServiceExt::ready(&mut inner).await {
                if let Ok(r) = resp.call(req).await {
                    // Drain it, so a pooled connection is free again.
                    let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                }
            }
        }
    });
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        Body::sse_guarded(Body::new(body), Arc::new(view), Some(tx)),
    )
}

/// A standalone stream that also carries `notifications/*/list_changed` after each reload
/// that changes what lists show, between the server's own events.
fn with_list_changes(
    resp: Response<Body>,
    mut changes: tokio::sync::watch::Receiver<Vec<List>>,
    stale: Vec<List>,
) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    changes.mark_unchanged();
    for l in stale {
        let event = format!("data: {}\n\n", crate::view::list_changed(l));
        let _ = tx.try_send(Bytes::from(event));
    }
    tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        // False once the layer is gone: the server's stream is still relayed.
        let mut live = true;
        loop {
            tokio::select! {
                frame = body.frame() => match frame {
                    Some(Ok(f)) => {
                        // Trailers end nothing on an event stream; they are dropped.
                        if let Ok(data) = f.into_data() {
                            if tx.send(data).await.is_err() {
                                break;
                            }
                        }
                    }
                    _ => break,
                },
                changed = changes.changed(), if live => {
                    if changed.is_err() {
                        live = false;
                        continue;
                    }
                    let lists = changes.borrow_and_update().clone();
                    for l in lists {
                        let event = format!("data: {}\n\n", crate::view::list_changed(l));
                        if tx.send(Bytes::from(event)).await.is_err() {
                            return;
                        }
                    }
                }
                () = tx.closed() => break,
            }
        }
    });
    Response::from_parts(parts, Body::channel(rx))
}

/// The request to the inner service, with the ids of the requests it carries.
fn forward_request(
    mut parts: http::request::Parts,
    parsed: &inspect::Body,
    bytes: Bytes,
) -> Request<Body> {
    let forwarded = answer::Forwarded {
        ids: parsed
            .messages
            .iter()
            .filter_map(|m| match m {
                Message::Request { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect(),
        batch: parsed.batch,
    };
    parts.extensions.insert(forwarded);
    // The body may have lost the answers to the layer's approvals: say its real length.
    let stated = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<usize>().ok()));
    if stated.is_some_and(|n| n != Some(bytes.len())) {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, http::HeaderValue::from(bytes.len()));
    }
    Request::from_parts(parts, Body::full(bytes))
}

/// The messages the policy decides, with how, in the order the verdicts are in.
fn decided<'m>(
    messages: &'m [Message<'_>],
) -> impl Iterator<Item = (&'m Message<'m>, &'m Value, Ruled<'m>)> {
    messages.iter().filter_map(|m| match m {
        Message::Request { id, method, params } => {
            match crate::methods::rule(method, params.as_ref()) {
                r @ (Ruled::Decide { .. }
                | Ruled::Completes { .. }
                | Ruled::Listens(_)
                | Ruled::Malformed { .. }) => Some((m, id, r)),
                Ruled::List(_) | Ruled::Pass => None,
            }
        }
        _ => None,
    })
}

/// For each verdict: the params of its `tools/call` (`None` for the other kinds).
fn call_params<'m>(messages: &'m [Message<'_>]) -> impl Iterator<Item = Option<&'m Fields<'m>>> {
    decided(messages).map(|(m, ..)| m.tool_call().map(|(_, p)| p))
}

/// For each verdict, the arguments a resource read is decided with (`{"uri": URI}`), when
/// the policy reads arguments at all; else nothing.
fn resource_args(enforcer: &Enforcer, messages: &[Message<'_>]) -> Vec<Option<Value>> {
    let reads = |m: &Message<'_>| {
        matches!(m, Message::Request { method, .. }
            if method == "resources/read" || method == "resources/subscribe")
    };
    // The usual body holds a tool call: nothing to build, nothing allocated.
    if !enforcer.policy.reads_arguments() || !messages.iter().any(reads) {
        return Vec::new();
    }
    decided(messages)
        .map(|(_, _, ruled)| match ruled {
            Ruled::Decide {
                kind: warden_policy::Kind::Resource,
                name,
                ..
            } => Some(serde_json::json!({ "uri": name })),
            _ => None,
        })
        .collect()
}

fn decide_all<'a>(
    enforcer: &'a Enforcer,
    caller: &Caller,
    messages: &'a [Message<'_>],
    resource_args: &'a [Option<Value>],
    force_shadow: bool,
) -> Vec<Verdict<'a>> {
    decided(messages)
        .enumerate()
        .map(|(i, (m, id, ruled))| match ruled {
            Ruled::Malformed { kind, why } => {
                let method = match m {
                    Message::Request { method, .. } => method.as_str(),
                    _ => "",
                };
                if enforcer.policy.rules_kind(kind) {
                    Verdict::unreadable(id.clone(), kind, method, why)
                } else {
                    Verdict::passing(id.clone(), method)
                }
            }
            Ruled::Completes { kind, name } => {
                Verdict::completion(enforcer, caller, id.clone(), kind, name, force_shadow)
            }
            Ruled::Listens(uris) => {
                let uris = uris.iter().filter_map(Value::as_str);
                // The first resource this caller may not read decides; else the first one
                // (allowed, uncharged), or the method itself when it names none.
                let call = |uri| caller.call_as(warden_policy::Kind::Resource, uri, None);
                let pick = uris
                    .clone()
                    .find(|uri| !enforcer.policy.visible(&call(uri)))
                    .or_else(|| uris.clone().next());
                match pick {
                    Some(uri) => Verdict::completion(
                        enforcer,
                        caller,
                        id.clone(),
                        warden_policy::Kind::Resource,
                        uri,
                        force_shadow,
                    ),
                    None => Verdict::passing(id.clone(), "subscriptions/listen"),
                }
            }
            Ruled::Decide { kind, name, args } => Verdict::decide(
                enforcer,
                caller,
                id.clone(),
                kind,
                name,
                args.or_else(|| resource_args.get(i).and_then(Option::as_ref)),
                force_shadow,
            ),
            Ruled::List(_) | Ruled::Pass => unreachable!("decided() yields only decided messages"),
        })
        .collect()
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
                    // A tool's denial is a result the agent reads; another method's, an error.
                    Some((_, why)) if method == "tools/call" => {
                        answer::denied(id, why, style, protocol)
                    }
                    Some((_, why)) => answer::rpc_error(
                        id,
                        answer::POLICY_DENIED_CODE,
                        &format!("{} {why}", answer::DENIED_PREFIX),
                    ),
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

/// Whether the server (or a gate behind this one) ran none of the calls of `resp`'s request:
/// a server that does not know the session answers 404, as MCP says (a gateway that opens
/// the session again and sends them once more charges them once), and a gate behind that
/// refused them untried marks its answer ([`untried`]). Such calls cost nothing.
pub(crate) fn ran_nothing<B>(resp: &Response<B>, in_session: bool) -> bool {
    (resp.status() == StatusCode::NOT_FOUND && in_session)
        || resp.extensions().get::<answer::Refused>().is_some()
}

/// Marks an answer refusing calls that this gate stopped before anything was tried (its
/// policy, its limits, an approval nobody could be asked for): a gate in front of this one
/// gives back what it charged for them.
fn untried(mut r: Response<Body>) -> Response<Body> {
    r.extensions_mut().insert(answer::Refused);
    r
}

/// The JSON-RPC code of protocol 2026-07-28's `HeaderMismatchError`.
const HEADER_MISMATCH: i64 = -32020;

/// Whether a request says it has a body (a length above 0, or chunked framing).
fn has_body(h: &HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// Protocol 2026-07-28 repeats the method and tool name in headers; a mismatch means two
/// parsers could see two different requests, so it is refused.
fn headers_agree(h: &HeaderMap, parsed: &inspect::Body) -> Result<(), String> {
    let method_h = h.get(names::MCP_METHOD);
    let name_h = h.get(names::MCP_NAME);
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
        let name = params.and_then(inspect::Params::name);
        if name.is_none_or(|n| nh.as_bytes() != n.as_bytes()) {
            return Err("the Mcp-Name header does not match the tool being called".into());
        }
    }
    Ok(())
}

/// Keeps, in list answers (JSON or SSE), only what the caller could call.
async fn filter_list_response<B>(
    resp: Response<B>,
    view: View,
    shared: &Shared,
    revision: u64,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let kind = crate::body::content_kind(resp.headers());
    if kind == crate::body::ContentKind::EventStream {
        // The filtered stream's length is not the upstream's: let it be chunked.
        let (mut parts, body) = resp.into_parts();
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::sse_filtered(Body::new(body), Arc::new(view)));
    }
    if kind != crate::body::ContentKind::Json {
        return boxed(resp);
    }
    let (mut parts, body) = resp.into_parts();
    // The upstream's list is bounded like requests are; past it, fail closed.
    let bytes = match http_body_util::Limited::new(body, shared.config.max_body.max(16 << 20))
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            let ids: Vec<Value> = view.ids().cloned().collect();
            let forwarded = answer::Forwarded {
                batch: ids.len() > 1,
                ids,
            };
            let v = forwarded.error(
                answer::Forwarded::UPSTREAM_ERROR,
                "could not read the upstream's list answer (too large or cut off)",
            );
            return answer::json(StatusCode::BAD_GATEWAY, &v);
        }
    };
    let Some((head, rest)) = shared.list_cache.filter(&view, revision, &bytes) else {
        return Response::from_parts(parts, Body::full(bytes));
    };
    parts.headers.insert(
        header::CONTENT_LENGTH,
        http::HeaderValue::from(head.len() + rest.len()),
    );
    // Two pieces: the rest is shared with the cache, not copied.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let _ = tx.try_send(head);
    if !rest.is_empty() {
        let _ = tx.try_send(rest);
    }
    Response::from_parts(parts, Body::channel(rx))
}
