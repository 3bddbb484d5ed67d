//! `warden stdio`: launches a stdio MCP server and sits on its stdin and stdout.
//!
//! Each line the client writes is one JSON-RPC message. It goes through the same
//! [`PolicyLayer`] as HTTP traffic, whose inner service here writes the line to the child:
//! an allowed message reaches the server byte for byte, a denied one is answered on our
//! stdout and never reaches it. Lines from the server pass through, except `tools/list`
//! answers, which lose hidden tools.

use std::collections::HashSet;
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
use warden_tower::{Body, Grant};

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
}

/// Runs until the client closes stdin or the server exits; returns the server's exit code.
pub async fn stdio(opts: StdioOptions) -> Result<i32, Error> {
    let (compiled, text) = policy_file::load(&opts.policy).map_err(Error::Policy)?;
    let stores = crate::state::build(compiled, opts.redis.as_ref(), false, None)?;
    stores.check().await;
    tracing::info!(target: "warden::gateway", state = %stores.description, "stdio gate");
    let layer = stores
        .layer
        .shadow(opts.shadow)
        .max_body_bytes(opts.max_message_bytes);
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

    let list_ids: Arc<Mutex<HashSet<String>>> = Arc::default();
    let from_server = tokio::spawn(relay_server(
        child_out,
        out_tx.clone(),
        list_ids.clone(),
        live.clone(),
        opts.max_message_bytes,
    ));

    // The layer's inner service: hand the message to the server, answer 202.
    let svc = layer.layer(tower::service_fn(move |req: Request<Body>| {
        let tx = to_child.clone();
        async move {
            let line = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut r = Response::new(Body::empty());
            *r.status_mut() = if tx.send(line).await.is_ok() {
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
            let Ok(resp) = svc.clone().oneshot(req).await;
            // 202: forwarded to the server. Anything else is the layer's own answer.
            if resp.status() != StatusCode::ACCEPTED {
                if let Ok(body) = resp.into_body().collect().await {
                    let _ = out_tx.send(body.to_bytes()).await;
                }
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

fn remember_list_request(line: &str, ids: &Mutex<HashSet<String>>) {
    if !line.contains("tools/list") {
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
        if m.get("method").and_then(Value::as_str) == Some("tools/list") {
            if let (Some(id), Ok(mut set)) = (m.get("id"), ids.lock()) {
                set.insert(id.to_string());
            }
        }
    }
}

/// Server → client, line by line; `tools/list` answers are filtered. Lines are bytes (a
/// server that writes invalid UTF-8 does not end the relay), and bounded like the client's:
/// an answer over the limit is replaced by a JSON-RPC error for its id, so the client is
/// told instead of waiting, and the gateway never holds more than the limit.
async fn relay_server(
    out: tokio::process::ChildStdout,
    tx: mpsc::Sender<Bytes>,
    ids: Arc<Mutex<HashSet<String>>>,
    live: Live,
    max: usize,
) {
    let mut reader = BufReader::new(out);
    while let Ok(Some(line)) = crate::framing::next_line(&mut reader, max).await {
        let out = match line {
            Line::Message(line) => match std::str::from_utf8(&line)
                .ok()
                .and_then(|text| filtered_list_answer(text, &ids, &live))
            {
                Some(rewritten) => Bytes::from(rewritten),
                None => line,
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
        if tx.send(out).await.is_err() {
            break;
        }
    }
}

/// `line` without hidden tools, if it answers a pending `tools/list`.
fn filtered_list_answer(line: &str, ids: &Mutex<HashSet<String>>, live: &Live) -> Option<String> {
    let pending: Vec<Value> = {
        let set = ids.lock().ok()?;
        if set.is_empty() {
            return None;
        }
        set.iter()
            .filter_map(|id| serde_json::from_str(id).ok())
            .collect()
    };
    let mut v: Value = serde_json::from_str(line).ok()?;
    if let (Some(id), Ok(mut set)) = (v.get("id").map(Value::to_string), ids.lock()) {
        set.remove(&id);
    }
    warden_tower::filter_tools_list(&mut v, &pending, &live.handle.current()).then(|| v.to_string())
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
