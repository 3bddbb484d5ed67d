//! `warden stdio`: launches a stdio MCP server and sits on its stdin and stdout.
//!
//! Each line the client writes is one JSON-RPC message. It goes through the same
//! [`PolicyLayer`](warden_tower::PolicyLayer) as HTTP traffic, whose inner service here writes the line to the child:
//! an allowed message reaches the server byte for byte, a denied one is answered on our
//! stdout and never reaches it. Lines from the server pass through, except list answers,
//! which keep only what the client may call, and requests of the server's that the policy
//! refuses, which are answered to the server and never reach the client.
//!
//! With traces on, a request's spans end when the server's answer to it passes (not when
//! the request was handed over), and its `error.type` is read from that answer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tower::{Layer, ServiceExt};
use warden_tower::answer::Forwarded;
use warden_tower::view::Guarded;
use warden_tower::{Body, Grant, List, View};

use crate::Error;
use crate::framing::Line;
use crate::policy_file::{self, Live};

#[derive(Debug, Clone)]
pub struct StdioOptions {
    pub policy: PathBuf,
    pub command: Vec<String>,
    /// The grant every call is made as (there is one client: whoever started us).
    pub grant: String,
    pub shadow: bool,
    pub reload_every: Duration,
    /// Counters and approvals shared with `warden serve` replicas (whose admin addresses
    /// can then answer this process's approvals).
    pub redis: Option<warden_tower::redis::RedisConfig>,
    /// The largest message a client may send; a longer line is answered with a JSON-RPC
    /// error and never reaches the server.
    pub max_message_bytes: usize,
    /// `--otlp-endpoint`: the collector's base URL; the `OTEL_*` variables otherwise.
    pub otlp_endpoint: Option<String>,
    /// `--otlp-ca`: the CA of an `https://` collector, if not a public one.
    pub otlp_ca: Option<PathBuf>,
}

/// Runs until the client closes stdin or the server exits; returns the server's exit code.
pub async fn stdio(opts: StdioOptions) -> Result<i32, Error> {
    let (compiled, text) = policy_file::load(&opts.policy).map_err(Error::Policy)?;
    let stores = crate::state::build(compiled, None, opts.redis.as_ref(), false, None)?;
    stores.check().await;
    tracing::info!(target: "warden::gateway", state = %stores.description, "stdio gate");
    let mut layer = stores
        .layer
        .shadow(opts.shadow)
        .max_body_bytes(opts.max_message_bytes);
    let export =
        crate::otel::Export::start(opts.otlp_endpoint.as_deref(), opts.otlp_ca.as_deref())?;
    if let Some(e) = &export {
        tracing::info!(target: "warden::gateway", endpoint = %e.description, "exporting traces over OTLP");
        layer = layer.tracer_with_sampler(e.tracer(), e.sampler());
    }
    let live = Live::new(opts.policy.clone(), text, layer.handle());
    live.clone().watch(opts.reload_every);

    let (program, args) = opts
        .command
        .split_first()
        .ok_or_else(|| Error::Config("no server command given after --".into()))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Io(format!("cannot start {program}: {e}")))?;
    let child_in = child
        .stdin
        .take()
        .ok_or_else(|| Error::Io("no stdin pipe".into()))?;
    let child_out = child
        .stdout
        .take()
        .ok_or_else(|| Error::Io("no stdout pipe".into()))?;
    tracing::info!(target: "warden::gateway", program = %program, "stdio server started");

    // Our stdout has one writer, so lines from both directions never interleave.
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let writer = tokio::spawn(write_lines(tokio::io::stdout(), out_rx));
    let (to_child, child_rx) = mpsc::channel::<Bytes>(64);
    let child_writer = tokio::spawn(write_lines(child_in, child_rx));

    let list_ids: Arc<Mutex<HashMap<String, List>>> = Arc::default();
    // Only traced requests wait for their answers (their spans end with them).
    let awaited = export.as_ref().map(|_| Awaited::default());
    let from_server = tokio::spawn(relay_server(
        child_out,
        Relay {
            to_client: out_tx.clone(),
            // Weak: the server's stdin must close when the client's does.
            to_server: to_child.downgrade(),
            ids: list_ids.clone(),
            awaited: awaited.clone(),
            live: live.clone(),
            grant: opts.grant.clone(),
            max: opts.max_message_bytes,
        },
    ));

    // The layer's inner service: hand the message to the server, answer 202.
    // With traces on, the 202's body is the server's answer when it comes (a copy: the
    // answer itself goes to the client from the relay), so that the layer's spans end then.
    let svc = layer.layer(tower::service_fn(move |req: Request<Body>| {
        let tx = to_child.clone();
        let awaited = awaited.clone();
        async move {
            // The layer says which requests it forwards: no second reading of the line.
            let answer = awaited
                .as_ref()
                .and_then(|a| a.wait_for(req.extensions().get::<Forwarded>()?));
            let line = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut r = Response::new(Body::empty());
            *r.status_mut() = if tx.send(line).await.is_ok() {
                if let Some(answer) = answer {
                    *r.body_mut() = Body::new(http_body_util::StreamBody::new(
                        futures_util::stream::once(async move {
                            Ok::<_, Infallible>(http_body::Frame::data(
                                answer.await.unwrap_or_default(),
                            ))
                        }),
                    ));
                }
                StatusCode::ACCEPTED
            } else {
                StatusCode::BAD_GATEWAY
            };
            Ok::<_, Infallible>(r)
        }
    }));
    let grant = Grant::new(opts.grant.clone());
    let max = opts.max_message_bytes;
    let from_client = tokio::spawn(async move {
        let mut stdin = BufReader::new(tokio::io::stdin());
        while let Ok(Some(line)) = crate::framing::next_line(&mut stdin, max).await {
            let line = match line {
                Line::Message(line) => line,
                Line::TooLong { id, bytes } => {
                    tracing::warn!(target: "warden::gateway", bytes, max, "message over the limit refused");
                    let answer = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": -32600,
                        "message": format!("Invalid request: message of {bytes} bytes is over the limit of {max} bytes (--max-message-bytes)")}});
                    let _ = out_tx.send(Bytes::from(answer.to_string())).await;
                    continue;
                }
            };
            if line.trim_ascii().is_empty() {
                continue;
            }
            if let Ok(text) = std::str::from_utf8(&line) {
                remember_list_request(text, &list_ids);
            }
            let mut req = Request::new(Body::full(line));
            *req.method_mut() = http::Method::POST;
            req.extensions_mut().insert(grant.clone());
            req.extensions_mut().insert(warden_tower::Transport::Pipe);
            let Ok(resp) = svc.clone().oneshot(req).await;
            // 202: forwarded to the server (its body, if any, ends with the server's answer:
            // read apart, so that the next line is not held up). Anything else is the
            // layer's own answer.
            if resp.status() == StatusCode::ACCEPTED {
                if !http_body::Body::is_end_stream(resp.body()) {
                    tokio::spawn(resp.into_body().collect());
                }
            } else if let Ok(body) = resp.into_body().collect().await {
                let _ = out_tx.send(body.to_bytes()).await;
            }
        }
        // Client gone: closing the server's stdin asks it to finish.
        drop(svc);
    });

    let pid = child.id();
    let status = tokio::select! {
        s = child.wait() => s,
        _ = forward_signals(pid) => child.wait().await,
        _ = from_client => {
            // Give the server a moment to exit on EOF, then stop it.
            match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    let _ = child.kill().await;
                    child.wait().await
                }
            }
        }
    }
    .map_err(|e| Error::Io(e.to_string()))?;
    let _ = from_server.await;
    child_writer.abort();
    drop(writer);
    tracing::info!(target: "warden::gateway", %status, "stdio server exited");
    if let Some(e) = export {
        let _ = tokio::task::spawn_blocking(move || e.shutdown()).await;
    }
    Ok(status.code().unwrap_or(1))
}

/// Sends SIGINT/SIGTERM on to the server; returns once one was forwarded.
async fn forward_signals(pid: Option<u32>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return std::future::pending().await;
        };
        let name = tokio::select! {
            _ = int.recv() => "INT",
            _ = term.recv() => "TERM",
        };
        if let Some(pid) = pid {
            // `kill` keeps this crate free of unsafe code.
            let _ = tokio::process::Command::new("kill")
                .arg(format!("-{name}"))
                .arg(pid.to_string())
                .status()
                .await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        std::future::pending::<()>().await;
    }
}

fn remember_list_request(line: &str, ids: &Mutex<HashMap<String, List>>) {
    if !line.contains("/list") {
        return;
    }
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return;
    };
    let requests = match &v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for m in requests {
        let list = match m.get("method").and_then(Value::as_str) {
            Some("tools/list") => List::Tools,
            Some("resources/list") => List::Resources,
            Some("resources/templates/list") => List::ResourceTemplates,
            Some("prompts/list") => List::Prompts,
            _ => continue,
        };
        if let (Some(id), Ok(mut map)) = (m.get("id"), ids.lock()) {
            map.insert(id.to_string(), list);
        }
    }
}

/// Where the server's lines go, and what they are checked against.
struct Relay {
    to_client: mpsc::Sender<Bytes>,
    /// For the answers to the server's requests the policy refuses.
    to_server: mpsc::WeakSender<Bytes>,
    ids: Arc<Mutex<HashMap<String, List>>>,
    awaited: Option<Awaited>,
    live: Live,
    grant: String,
    max: usize,
}

/// Server → client, line by line; list answers are filtered, and requests of the server's
/// that the policy refuses are answered to it and never reach the client. Lines are bytes
/// (a server that writes invalid UTF-8 does not end the relay), and bounded like the
/// client's: an answer over the limit is replaced by a JSON-RPC error for its id, so the
/// client is told instead of waiting, and the gateway never holds more than the limit.
async fn relay_server(out: tokio::process::ChildStdout, relay: Relay) {
    let max = relay.max;
    let mut reader = BufReader::new(out);
    while let Ok(Some(line)) = crate::framing::next_line(&mut reader, max).await {
        let out = match line {
            // Clients decode lines as UTF-8 with replacement: so does the gate.
            Line::Message(line) => match ruled_server_line(&String::from_utf8_lossy(&line), &relay)
            {
                Ruling::Rewritten(rewritten) => Bytes::from(rewritten),
                Ruling::Refused(answers, rest) => {
                    if let Some(tx) = relay.to_server.upgrade() {
                        for answer in answers {
                            let _ = tx.send(Bytes::from(answer)).await;
                        }
                    }
                    match rest {
                        Some(rest) => Bytes::from(rest),
                        None => continue,
                    }
                }
                Ruling::Unchanged => line,
            },
            Line::TooLong { id, bytes } => {
                tracing::warn!(target: "warden::gateway", bytes, max, "server message over the limit dropped");
                if id.is_null() {
                    // A notification (or an id we could not find): nobody waits for it.
                    continue;
                }
                let answer = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {
                    "code": -32603,
                    "message": format!("the server's answer of {bytes} bytes is over the gateway's limit of {max} bytes (--max-message-bytes)")}});
                Bytes::from(answer.to_string())
            }
        };
        if let Some(a) = &relay.awaited {
            a.answered(&out);
        }
        if relay.to_client.send(out).await.is_err() {
            break;
        }
    }
}

/// Requests handed to the server whose spans wait for its answer, by id (as JSON text).
/// Bounded: past it a request's spans end when it is handed over, as without traces. What
/// is still waiting when the relay stops ends with an empty answer.
#[derive(Clone, Default)]
struct Awaited(Arc<Mutex<HashMap<String, tokio::sync::oneshot::Sender<Bytes>>>>);

const MAX_AWAITED: usize = 4096;

impl Awaited {
    /// Where the answer to the one request the layer `forwarded` will come; `None` for a
    /// notification or a batch.
    fn wait_for(&self, forwarded: &Forwarded) -> Option<tokio::sync::oneshot::Receiver<Bytes>> {
        let [id] = forwarded.ids.as_slice() else {
            return None;
        };
        if forwarded.batch {
            return None;
        }
        let id = id.to_string();
        let mut map = self.0.lock().ok()?;
        if map.len() >= MAX_AWAITED {
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        map.insert(id, tx);
        Some(rx)
    }

    /// A line from the server: the answer some request waits for, perhaps.
    fn answered(&self, line: &[u8]) {
        if self.0.lock().map_or(true, |m| m.is_empty()) {
            return;
        }
        let Ok(message) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        let Some(id) = message
            .get("id")
            .filter(|_| message.get("method").is_none())
        else {
            return;
        };
        let waiting = self
            .0
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&id.to_string()));
        if let Some(tx) = waiting {
            let _ = tx.send(Bytes::copy_from_slice(line));
        }
    }
}

enum Ruling {
    Unchanged,
    /// A list answer, filtered.
    Rewritten(String),
    /// Requests of the server's that the policy refuses (a batch may hold several): the
    /// errors to answer them with, and what is left of the line for the client, if anything.
    Refused(Vec<String>, Option<String>),
}

/// What becomes of one line from the server.
fn ruled_server_line(line: &str, relay: &Relay) -> Ruling {
    let policy = relay.live.handle.current();
    let pending: Vec<(Value, List)> = match relay.ids.lock() {
        Ok(map) => map
            .iter()
            .filter(|(_, l)| policy.may_drop_from_lists(l.kind()))
            .filter_map(|(id, l)| Some((serde_json::from_str(id).ok()?, *l)))
            .collect(),
        Err(_) => Vec::new(),
    };
    if pending.is_empty() && !policy.rules_server_requests() {
        return Ruling::Unchanged;
    }
    let view = View::new(policy, pending, Some(&relay.grant));
    match view.guard(line) {
        Guarded::Pass => {}
        Guarded::Dropped => return Ruling::Refused(Vec::new(), None),
        Guarded::Refused(refused, rest) => {
            let answers = refused
                .iter()
                .map(|(id, why)| warden_tower::view::refusal(id, why).to_string())
                .collect();
            let rest = rest.map(|mut v| {
                view.filter(&mut v);
                v.to_string()
            });
            return Ruling::Refused(answers, rest);
        }
    }
    // An answer ends its request's wait, whatever it holds.
    if let Ok(v) = serde_json::from_str::<Value>(line) {
        if v.get("method").is_none() {
            if let (Some(id), Ok(mut map)) = (v.get("id").map(Value::to_string), relay.ids.lock()) {
                map.remove(&id);
            }
        }
    }
    // The same reading as over HTTP: scanned, or as a client's JSON reader takes it when
    // serde_json does not (a list answer it refuses is filtered all the same).
    match view.filter_bytes(line.as_bytes()) {
        // Kept entries are copied as the server wrote them: a line break inside one (JSON
        // whitespace) would end the line early.
        Some(rewritten) => Ruling::Rewritten(rewritten.replace(['\n', '\r'], " ")),
        None => Ruling::Unchanged,
    }
}

async fn write_lines<W: tokio::io::AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(line) = rx.recv().await {
        if w.write_all(&line).await.is_err()
            || w.write_all(b"\n").await.is_err()
            || w.flush().await.is_err()
        {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Found by tests/fuzz (server_requests, on the SSE side; stdio reads the server's
    /// messages the same way): a refused request in a batch, or in JSON that only a lenient
    /// reader takes, reached the client.
    #[tokio::test]
    async fn a_traced_request_gets_the_answer_with_its_id_and_nothing_else() {
        let awaited = Awaited::default();
        let forwarded = |ids: Vec<Value>, batch: bool| Forwarded { ids, batch };
        // A notification, and a batch: nothing waits.
        assert!(awaited.wait_for(&forwarded(vec![], false)).is_none());
        assert!(
            awaited
                .wait_for(&forwarded(vec![json!(1), json!(2)], true))
                .is_none()
        );
        let mut rx = awaited
            .wait_for(&forwarded(vec![json!("a")], false))
            .unwrap();
        // The server's own request under the same id, and another request's answer: not it.
        awaited.answered(br#"{"jsonrpc":"2.0","id":"a","method":"roots/list"}"#);
        awaited.answered(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert!(rx.try_recv().is_err());
        let answer = br#"{"jsonrpc":"2.0","id":"a","result":{"isError":true}}"#;
        awaited.answered(answer);
        assert_eq!(rx.await.unwrap(), Bytes::from_static(answer));
        // Bounded: past it, a request does not wait.
        for i in 0..MAX_AWAITED {
            assert!(
                awaited
                    .wait_for(&forwarded(vec![json!(i)], false))
                    .is_some()
            );
        }
        assert!(
            awaited
                .wait_for(&forwarded(vec![json!("x")], false))
                .is_none()
        );
    }

    #[tokio::test]
    async fn refused_requests_in_batches_and_lenient_json_are_answered_not_passed() {
        let p = warden_policy::Policy::from_value(&json!({"version": "1", "default": "allow",
            "server_requests": {"sampling/createMessage": {"deny_if": [{"conditions": []}]}}}))
        .unwrap();
        let layer = warden_tower::PolicyLayer::new(warden_policy::CompiledPolicy::new(&p).unwrap());
        let (to_client, _client) = mpsc::channel(1);
        let (to_server, _server) = mpsc::channel(1);
        let relay = Relay {
            to_client,
            to_server: to_server.downgrade(),
            ids: Arc::default(),
            awaited: None,
            live: Live::new(PathBuf::from("policy.json"), String::new(), layer.handle()),
            grant: "g".into(),
            max: 1 << 20,
        };
        let batch = r#"[{"jsonrpc":"2.0","id":6,"method":"sampling/createMessage"},{"jsonrpc":"2.0","method":"notifications/message"}]"#;
        let Ruling::Refused(answers, rest) = ruled_server_line(batch, &relay) else {
            panic!("the batch's sampling request passed");
        };
        assert_eq!(answers.len(), 1);
        let answer: Value = serde_json::from_str(&answers[0]).unwrap();
        assert_eq!(answer["id"], 6);
        let rest: Value = serde_json::from_str(&rest.unwrap()).unwrap();
        assert_eq!(
            rest,
            json!([{"jsonrpc": "2.0", "method": "notifications/message"}])
        );
        let lone =
            r#"{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{"t":"\ud800"}}"#;
        assert!(
            matches!(ruled_server_line(lone, &relay), Ruling::Refused(a, None) if a.len() == 1)
        );
        let twice = r#"{"jsonrpc":"2.0","id":4,"method":"sampling/createMessage","method":"ping"}"#;
        assert!(
            matches!(ruled_server_line(twice, &relay), Ruling::Refused(a, None) if a.is_empty())
        );
        // A list answer serde_json refuses (a lone surrogate) is filtered as a client reads
        // it, and a pretty-printed one stays on one line.
        relay.ids.lock().unwrap().insert("7".into(), List::Tools);
        let hidden = serde_json::json!({"version": "1", "default": "allow", "hide": ["secret"]});
        let hidden = warden_policy::CompiledPolicy::new(
            &warden_policy::Policy::from_value(&hidden).unwrap(),
        )
        .unwrap();
        relay.live.handle.swap(hidden);
        let lenient = "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"secret\"},\n {\"name\":\"ok\",\"description\":\"\\ud800\"}]}}";
        let Ruling::Rewritten(out) = ruled_server_line(lenient, &relay) else {
            panic!("the list answer was not filtered");
        };
        assert!(
            !out.contains("secret") && out.contains("\"ok\"") && !out.contains('\n'),
            "{out}"
        );
        let allowed = r#"{"jsonrpc":"2.0","id":5,"method":"roots/list"}"#;
        assert!(matches!(
            ruled_server_line(allowed, &relay),
            Ruling::Unchanged
        ));
    }
}
