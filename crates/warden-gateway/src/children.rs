//! Stdio servers that `warden serve` launches itself (`command = [...]` in `warden.toml`),
//! reached as if over Streamable HTTP: the policy layer sits in front of this service
//! exactly as it sits in front of [`crate::proxy::Upstream`].
//!
//! By default every client session gets a child of its own, started by its `initialize`
//! and stopped when the session is deleted or has been idle for [`Launch::idle`]; at most
//! [`Launch::max_children`] run at once, and an `initialize` past that is refused with a
//! JSON-RPC error (never a fork bomb). `shared = true` runs one child for every session (a
//! stateless server): the first `initialize` starts it, later ones are answered from its
//! answer. Messages get ids of this gateway's own on the child's stdin, so sessions sharing
//! a child never see each other's answers; a request's answer is an SSE stream carrying the
//! progress notifications the child sends for it, then the answer.
//!
//! A child that exits answers every request it still owed with a JSON-RPC error naming
//! the server; the session's next request gets a 404, and a new `initialize` starts a new
//! child. Requests the child sends the client (sampling, roots) are answered with an
//! error: there is no stream to the client to carry them yet.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tower::Service;
use warden_tower::{Body, Forwarded};

const SESSION: &str = "mcp-session-id";
/// How long a child may take to answer `initialize`.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// The largest line read from a child.
const MAX_LINE: usize = 64 << 20;

/// How to start one server.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The server's name, in errors and logs.
    pub name: String,
    /// The program and its arguments.
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// One child for every session instead of one each.
    pub shared: bool,
    /// Children running at once, at most.
    pub max_children: usize,
    /// A session's child idle this long is stopped.
    pub idle: Duration,
}

impl Launch {
    /// The default of `max_children`: enough for a team's agents, few enough that a flood
    /// of sessions cannot exhaust the machine (Node servers take ~50 MB each).
    pub fn default_max_children() -> usize {
        std::thread::available_parallelism().map_or(8, |n| n.get() * 16)
    }
}

/// The launched server as an upstream service; clones share the children.
#[derive(Clone)]
pub struct Children {
    inner: Arc<Inner>,
}

struct Inner {
    launch: Launch,
    permits: Arc<Semaphore>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Child>>>,
    /// `shared = true`: the one child, and its answer to the first `initialize`.
    shared: tokio::sync::Mutex<Option<(Arc<Child>, Value)>>,
}

/// One running child: lines go to it through its writer task, answers come back by id.
struct Child {
    stdin: mpsc::UnboundedSender<Bytes>,
    /// Our id on the child's stdin → the client's id, and where its messages go.
    pending: Mutex<HashMap<u64, Pending>>,
    /// A request's progress token → our id, so its progress reaches its stream.
    tokens: Mutex<HashMap<String, u64>>,
    next: AtomicU64,
    alive: AtomicBool,
    touched: Mutex<Instant>,
    kill: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// Its place under `max_children`, given back the moment it is stopped or exits.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

struct Pending {
    id: Value,
    to: mpsc::UnboundedSender<Value>,
}

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Children")
            .field("launch", &self.inner.launch)
            .finish_non_exhaustive()
    }
}

impl Children {
    pub fn new(launch: Launch) -> Children {
        let inner = Arc::new(Inner {
            permits: Arc::new(Semaphore::new(launch.max_children.max(1))),
            launch,
            sessions: Mutex::default(),
            shared: tokio::sync::Mutex::new(None),
        });
        Children { inner }
    }

    /// Stops children idle too long, every few seconds, while the service lives.
    pub fn reap(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let Some(inner) = weak.upgrade() else { return };
                let idle = inner.launch.idle;
                let stale: Vec<Arc<str>> = inner
                    .sessions
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .filter(|(_, c)| {
                        !inner.launch.shared && c.touched().elapsed() > idle || !c.is_alive()
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in stale {
                    if let Some(c) = inner.remove(&k) {
                        tracing::info!(target: "warden::gateway", server = %inner.launch.name, "idle session's child stopped");
                        c.stop();
                    }
                }
            }
        });
    }
}

impl Inner {
    fn remove(&self, session: &str) -> Option<Arc<Child>> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(session)
    }

    /// Starts a child (holding `permit`, if any).
    fn spawn(&self, permit: Option<OwnedSemaphorePermit>) -> Result<Arc<Child>, String> {
        let l = &self.launch;
        let (program, args) = l
            .command
            .split_first()
            .ok_or_else(|| "an empty command".to_owned())?;
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(l.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(dir) = &l.cwd {
            cmd.current_dir(dir);
        }
        let mut process = cmd
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", l.command.join(" ")))?;
        let (Some(mut stdin), Some(stdout)) = (process.stdin.take(), process.stdout.take()) else {
            return Err("the child has no stdin or stdout".into());
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let (kill_tx, kill_rx) = tokio::sync::oneshot::channel();
        let child = Arc::new(Child {
            stdin: tx,
            pending: Mutex::default(),
            tokens: Mutex::default(),
            next: AtomicU64::new(1),
            alive: AtomicBool::new(true),
            touched: Mutex::new(Instant::now()),
            kill: Mutex::new(Some(kill_tx)),
            permit: Mutex::new(permit),
        });
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
                    return;
                }
            }
        });
        let (reader, name) = (child.clone(), l.name.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match tokio::io::AsyncReadExt::take(&mut lines, MAX_LINE as u64)
                    .read_until(b'\n', &mut buf)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => reader.heard(&buf),
                }
            }
            reader.exited(&name);
        });
        let name = l.name.clone();
        tokio::spawn(async move {
            tokio::select! {
                status = process.wait() => {
                    tracing::warn!(target: "warden::gateway", server = %name, status = ?status.ok(), "stdio server exited");
                }
                _ = kill_rx => {
                    let _ = process.kill().await;
                }
            }
        });
        Ok(child)
    }
}

impl Child {
    fn touched(&self) -> Instant {
        *self.touched.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    fn stop(&self) {
        self.alive.store(false, Ordering::Relaxed);
        self.permit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(k) = self
            .kill
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = k.send(());
        }
    }

    /// Sends a request under an id of ours; its messages arrive on the receiver, its
    /// answer (with the client's id back) last.
    fn request(&self, mut message: Value) -> Result<mpsc::UnboundedReceiver<Value>, ()> {
        *self.touched.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let ours = self.next.fetch_add(1, Ordering::Relaxed);
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        message["id"] = ours.into();
        let (to, rx) = mpsc::unbounded_channel();
        if let Some(token) = message
            .pointer("/params/_meta/progressToken")
            .map(Value::to_string)
        {
            self.tokens
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(token, ours);
        }
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(ours, Pending { id, to });
        self.send(&message)?;
        Ok(rx)
    }

    fn send(&self, message: &Value) -> Result<(), ()> {
        let mut line = message.to_string().into_bytes();
        line.push(b'\n');
        if !self.is_alive() {
            return Err(());
        }
        self.stdin.send(Bytes::from(line)).map_err(|_| ())
    }

    /// One line the child wrote.
    fn heard(&self, line: &[u8]) {
        let Ok(mut message) = serde_json::from_slice::<Value>(line) else {
            return;
        };
        let id = message.get("id").and_then(Value::as_u64);
        let is_answer = message.get("result").is_some() || message.get("error").is_some();
        match (id, is_answer, message.get("method").and_then(Value::as_str)) {
            (Some(ours), true, _) => {
                let pending = self
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&ours);
                if let Some(p) = pending {
                    self.tokens
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .retain(|_, v| *v != ours);
                    message["id"] = p.id;
                    let _ = p.to.send(message);
                }
            }
            (_, false, Some(method)) if message.get("id").is_some() => {
                // A request of the server's: no stream carries it to the client yet.
                let answer = json!({"jsonrpc": "2.0", "id": message["id"], "error": {
                    "code": -32601,
                    "message": format!("{method}: the gateway does not pass a launched server's requests to the client"),
                }});
                let _ = self.send(&answer);
            }
            (_, false, Some(_)) => {
                // A notification: progress to the request it is about, nothing else (a
                // shared child's other notifications could belong to any session).
                let token = message
                    .pointer("/params/progressToken")
                    .map(Value::to_string);
                let ours = token.and_then(|t| {
                    self.tokens
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&t)
                        .copied()
                });
                if let Some(ours) = ours {
                    let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(p) = pending.get(&ours) {
                        let _ = p.to.send(message);
                    }
                }
            }
            _ => {}
        }
    }

    /// The child is gone: everything it owed gets an error.
    fn exited(&self, name: &str) {
        self.alive.store(false, Ordering::Relaxed);
        self.permit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let owed: Vec<Pending> = self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in owed {
            let _ = p.to.send(json!({"jsonrpc": "2.0", "id": p.id, "error": {
                "code": -32603, "message": format!("server {name}: the stdio server exited before answering"),
            }}));
        }
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl Service<Request<Body>> for Children {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Answer {
        let inner = self.inner.clone();
        let forwarded = req
            .extensions_mut()
            .remove::<Forwarded>()
            .unwrap_or_default();
        Box::pin(async move { Ok(inner.handle(req, forwarded).await) })
    }
}

fn rpc_error(status: StatusCode, id: &Value, message: &str) -> Response<Body> {
    warden_tower::answer::json(
        status,
        &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": message}}),
    )
}

impl Inner {
    async fn handle(self: Arc<Self>, req: Request<Body>, forwarded: Forwarded) -> Response<Body> {
        let name = self.launch.name.clone();
        let (parts, body) = req.into_parts();
        let session = parts
            .headers
            .get(SESSION)
            .and_then(|v| v.to_str().ok())
            .map(Arc::<str>::from);
        if parts.method == Method::DELETE {
            if let Some(c) = session.as_deref().and_then(|s| self.remove(s)) {
                if !self.launch.shared {
                    c.stop();
                }
            }
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            return r;
        }
        if parts.method != Method::POST {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
            return r;
        }
        let Ok(bytes) = warden_tower::collect(body, usize::MAX).await else {
            return forwarded_error(&forwarded, StatusCode::BAD_REQUEST, "unreadable body");
        };
        let Ok(message) = serde_json::from_slice::<Value>(&bytes) else {
            return forwarded_error(&forwarded, StatusCode::BAD_REQUEST, "not JSON");
        };
        let id = message.get("id").cloned();
        let method = message.get("method").and_then(Value::as_str).unwrap_or("");
        if method == "initialize" {
            return self.initialize(message, id.unwrap_or(Value::Null)).await;
        }
        let child = session.as_deref().and_then(|s| {
            self.sessions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(s)
                .cloned()
        });
        let Some(child) = child.filter(|c| c.is_alive()) else {
            // Unknown, or its child exited: the client starts again with `initialize`.
            if let Some(s) = &session {
                self.remove(s);
            }
            return rpc_error(
                StatusCode::NOT_FOUND,
                id.as_ref().unwrap_or(&Value::Null),
                &format!("server {name}: no such session (initialize again)"),
            );
        };
        match id {
            Some(id) if !method.is_empty() => match child.request(message) {
                Ok(rx) => stream(rx),
                Err(()) => rpc_error(
                    StatusCode::BAD_GATEWAY,
                    &id,
                    &format!("server {name}: the stdio server is not running"),
                ),
            },
            // Notifications (and answers to requests the client never saw) go as they are.
            _ => {
                if method == "notifications/initialized" && self.launch.shared {
                    // The shared child was told once, by the first session.
                    return accepted();
                }
                let _ = child.send(&message);
                accepted()
            }
        }
    }

    async fn initialize(self: &Arc<Self>, message: Value, id: Value) -> Response<Body> {
        let name = &self.launch.name;
        let session: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        let child = if self.launch.shared {
            let mut shared = self.shared.lock().await;
            match shared.as_ref().filter(|(c, _)| c.is_alive()) {
                Some((c, result)) => {
                    let c = c.clone();
                    let result = result.clone();
                    drop(shared);
                    self.sessions
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(session.clone(), c);
                    return with_session(
                        warden_tower::answer::json(
                            StatusCode::OK,
                            &json!({"jsonrpc": "2.0", "id": id, "result": result}),
                        ),
                        &session,
                    );
                }
                None => {
                    let c = match self.spawn(None) {
                        Ok(c) => c,
                        Err(why) => {
                            return rpc_error(
                                StatusCode::BAD_GATEWAY,
                                &id,
                                &format!("server {name}: {why}"),
                            );
                        }
                    };
                    let answer = match first_answer(&c, message).await {
                        Ok(a) => a,
                        Err(why) => {
                            c.stop();
                            return rpc_error(
                                StatusCode::BAD_GATEWAY,
                                &id,
                                &format!("server {name}: {why}"),
                            );
                        }
                    };
                    let _ =
                        c.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
                    *shared = Some((c.clone(), answer["result"].clone()));
                    self.sessions
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(session.clone(), c);
                    let mut answer = answer;
                    answer["id"] = id;
                    return with_session(
                        warden_tower::answer::json(StatusCode::OK, &answer),
                        &session,
                    );
                }
            }
        } else {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                metrics::counter!("warden_children_refused_total", "server" => name.clone())
                    .increment(1);
                return rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &id,
                    &format!(
                        "server {name}: {} sessions already have a server process (max-children); try again later",
                        self.launch.max_children
                    ),
                );
            };
            match self.spawn(Some(permit)) {
                Ok(c) => c,
                Err(why) => {
                    return rpc_error(
                        StatusCode::BAD_GATEWAY,
                        &id,
                        &format!("server {name}: {why}"),
                    );
                }
            }
        };
        let answer = match first_answer(&child, message).await {
            Ok(a) => a,
            Err(why) => {
                child.stop();
                return rpc_error(
                    StatusCode::BAD_GATEWAY,
                    &id,
                    &format!("server {name}: {why}"),
                );
            }
        };
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session.clone(), child);
        with_session(
            warden_tower::answer::json(StatusCode::OK, &answer),
            &session,
        )
    }
}

/// A request's answer, waited for (the start of a child).
async fn first_answer(child: &Child, message: Value) -> Result<Value, String> {
    let mut rx = child
        .request(message)
        .map_err(|()| "the stdio server is not running".to_owned())?;
    let wait = async {
        while let Some(m) = rx.recv().await {
            if m.get("result").is_some() || m.get("error").is_some() {
                return Ok(m);
            }
        }
        Err("the stdio server exited before answering".to_owned())
    };
    tokio::time::timeout(START_DEADLINE, wait)
        .await
        .map_err(|_| format!("no answer within {} s", START_DEADLINE.as_secs()))?
}

/// A request's messages as SSE, ending with its answer.
fn stream(rx: mpsc::UnboundedReceiver<Value>) -> Response<Body> {
    let events = futures_util::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        let m = rx.recv().await?;
        let last = m.get("result").is_some() || m.get("error").is_some();
        let frame = http_body::Frame::data(Bytes::from(format!("event: message\ndata: {m}\n\n")));
        Some((Ok::<_, Infallible>(frame), (rx, last)))
    });
    let mut r = Response::new(Body::new(http_body_util::StreamBody::new(events)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r
}

fn with_session(mut r: Response<Body>, session: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(session) {
        r.headers_mut().insert(SESSION, v);
    }
    r
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

fn forwarded_error(forwarded: &Forwarded, status: StatusCode, message: &str) -> Response<Body> {
    warden_tower::answer::json(status, &forwarded.error(Forwarded::UPSTREAM_ERROR, message))
}
