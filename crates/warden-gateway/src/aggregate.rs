//! `/mcp` in front of several servers: one MCP session for the client, one upstream session
//! per server behind it, every message passed through that server's own gate.
//!
//! ```text
//! client ──▶ Aggregate ──┬─▶ gate "linode"     (PolicyLayer: linode.json) ──▶ upstream
//!   /mcp    (names, ids,  ├─▶ gate "everything" (PolicyLayer: everything.pol) ──▶ upstream
//!            sessions)    └─▶ gate "rmcp"       (PolicyLayer: rmcp.pol) ──▶ upstream
//! ```
//!
//! - `initialize` is answered here, from the servers' own answers: their capabilities
//!   merged, the server opened in the same step for each (a server that cannot be reached
//!   then is opened again when next needed).
//! - `tools/list` and `prompts/list` are every server's list (each filtered by its own
//!   policy, for this caller), each entry named `<server>_<name>`; `resources/list` and
//!   `resources/templates/list` are merged as they are (URIs are not renamed) and remember
//!   which server listed which URI.
//! - `tools/call`, `prompts/get` and `completion/complete` go to the server their name
//!   starts with, under the name the server knows (its policy names its tools as it does);
//!   `resources/read` and `subscribe` to the server that listed the URI. The answer (JSON
//!   or an SSE stream) comes back as the server sent it: the request's id is the client's.
//! - Notifications go to every server; `ping` and `logging/setLevel` are answered here
//!   (the latter after telling every server).
//! - A server that is down answers its own calls with a JSON-RPC error naming it; its
//!   entries vanish from lists until it is back (an agent should not plan with tools it
//!   cannot call), and the others go on. A server that lost the session (restarted) is
//!   opened again and the request sent once more.
//!
//! - Requests a server sends the client on an answer's stream (sampling, elicitation,
//!   roots, and the approvals a gate asks in the client) are renamed `NAME/ID`, so that the
//!   client's answer goes back to the server that asked, under its own id.
//!
//! - `GET /mcp` is every server's standalone stream merged into one (`list_changed` from any
//!   server reaches the client, which lists again), with requests renamed the same way.
//!
//! - A `GET` with `Last-Event-ID` resumes a cut stream when the session has one server
//!   open (the id can only be its). With several, the events of the servers have no one
//!   order and an id does not say whose it is: the streams start afresh.
//!
//! - `DELETE /mcp` closes every server's session with the client. Past `--max-sessions`
//!   client sessions, the longest idle one is closed the same way, in the background.
//!
//! Not here yet: batches, and protocol 2026-07-28 (answered 400, which makes clients fall
//! back to 2025-11-25).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use tower::Service;
use warden_tower::{Body, Needle, PolicyService, ResponseFuture};

use crate::serve::Behind;

mod call;
use call::Call;

/// The aggregated endpoint's own reading of a call, for the fuzz target `aggregate_call`.
#[doc(hidden)]
pub mod fuzzing {
    /// A body as the hot path reads it: its id as written, its name, and the body with
    /// `name` spliced in instead.
    pub fn read_call(bytes: &[u8], name: &str) -> Option<(String, String, Vec<u8>)> {
        let call = super::Call::read(bytes)?;
        Some((
            call.id.to_owned(),
            call.name.to_owned(),
            call.renamed(name).to_vec(),
        ))
    }
}

// Names made once: a name given as a string is parsed again at every use.
const SESSION: HeaderName = HeaderName::from_static("mcp-session-id");
const VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
/// Pages of one list read from one server before giving up on the rest.
const MAX_PAGES: usize = 100;
/// The largest answer read whole (a list, an error).
const MAX_ANSWER: usize = 16 << 20;

/// The aggregated endpoint of one worker: every server's gate, and the sessions all
/// workers share. A clone (one per request) is one reference count.
#[derive(Clone)]
pub(crate) struct Aggregate(Arc<Inner>);

pub(crate) struct Inner {
    names: Arc<[Arc<str>]>,
    gates: Vec<PolicyService<Behind>>,
    sessions: Arc<Sessions>,
    naming: Arc<Naming>,
}

/// How tools and prompts of several servers are named in the merged lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NameMode {
    /// `<server>_<name>`, always.
    #[default]
    Always,
    /// As the server names it, but `<server>_<name>` where two servers use one name.
    OnCollision,
    /// As the server names it; two servers with one name stop the start.
    Never,
}

/// The mode, and what the servers listed at start: which server has which name, and which
/// names several have.
#[derive(Debug, Default)]
pub struct Naming {
    pub mode: NameMode,
    /// `tool:NAME` / `prompt:NAME` → the server that has it (names only one server has).
    pub owners: HashMap<String, usize>,
    /// `tool:NAME` / `prompt:NAME` that several servers have.
    pub collide: std::collections::HashSet<String>,
}

impl Naming {
    /// What the servers listed at start (`lists[i]`: server i's tools and prompts), or the
    /// names two servers share, under [`NameMode::Never`].
    pub fn new(
        mode: NameMode,
        names: &[Arc<str>],
        lists: &[(Vec<String>, Vec<String>)],
    ) -> Result<Naming, String> {
        let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (tools, prompts)) in lists.iter().enumerate() {
            let keys = tools
                .iter()
                .map(|t| format!("tool:{t}"))
                .chain(prompts.iter().map(|p| format!("prompt:{p}")));
            for k in keys {
                let owners = seen.entry(k).or_default();
                if !owners.contains(&i) {
                    owners.push(i);
                }
            }
        }
        let mut naming = Naming {
            mode,
            ..Naming::default()
        };
        let mut clashes = Vec::new();
        for (k, owners) in seen {
            match owners.as_slice() {
                [one] => {
                    naming.owners.insert(k, *one);
                }
                several => {
                    let who: Vec<&str> = several.iter().map(|i| &*names[*i]).collect();
                    clashes.push(format!(
                        "{} `{}` ({})",
                        k.split(':').next().unwrap_or(""),
                        k.split_once(':').map_or("", |x| x.1),
                        who.join(", ")
                    ));
                    naming.collide.insert(k);
                }
            }
        }
        if mode == NameMode::Never && !clashes.is_empty() {
            clashes.sort();
            return Err(format!(
                "server-names = \"never\", but servers share names: {}; use \"always\" or \"on-collision\"",
                clashes.join(", ")
            ));
        }
        Ok(naming)
    }
}

/// Client sessions of the aggregated endpoint, by the id this gateway gave them: at most
/// `max` (`--max-sessions`), the longest idle closed to make room.
pub(crate) struct Sessions {
    max: usize,
    // foldhash, not SipHash: every key is an id this gateway made (a client cannot choose
    // what goes in, so it cannot make keys collide), and a lookup is on every call.
    // Keyed by the id's bytes, as the header has them: no check that they are text first.
    map: Mutex<HashMap<Arc<[u8]>, Arc<Session>, foldhash::fast::RandomState>>,
    /// Counts uses: a session's `touched` is the count at its last use, so the least
    /// recently used is the smallest (no clock read per call).
    uses: AtomicU64,
}

/// One client session: the upstream session each server gave it.
struct Session {
    /// The client's `initialize`, sent again to a server opened later.
    initialize: Bytes,
    servers: Mutex<Vec<Arc<Upstreams>>>,
    /// Which server listed which resource URI.
    uris: Mutex<HashMap<String, usize>>,
    /// `tool:NAME` / `prompt:NAME` as this session's lists showed them, unprefixed → server.
    bare: Mutex<HashMap<String, usize>>,
    touched: AtomicU64,
}

/// A request's id: read (the general path), or as the client wrote it (a call on the hot
/// path, where it is read only if an error has to carry it).
#[derive(Clone, Copy)]
enum Id<'a> {
    Read(&'a Value),
    Written(&'a str),
}

impl Id<'_> {
    fn value(self) -> Value {
        match self {
            Id::Read(v) => v.clone(),
            Id::Written(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        }
    }
}

/// Why a server did not open a session: its status and its words.
struct Refused {
    status: StatusCode,
    why: String,
}

/// What one server knows of a client session.
#[derive(Clone, Default)]
struct Upstreams {
    session: Option<HeaderValue>,
    version: Option<HeaderValue>,
    /// What the server said it offers (`tools`, `prompts`, `resources`, ...): a list it
    /// does not offer is not asked for.
    capabilities: Option<Arc<Value>>,
}

impl Aggregate {
    pub(crate) fn new(
        names: Arc<[Arc<str>]>,
        gates: Vec<PolicyService<Behind>>,
        sessions: Arc<Sessions>,
        naming: Arc<Naming>,
    ) -> Aggregate {
        Aggregate(Arc::new(Inner {
            names,
            gates,
            sessions,
            naming,
        }))
    }
}

impl Inner {
    /// The name a client sees for server `i`'s `name` (of `kind`: `tool` or `prompt`).
    fn shown(&self, kind: &str, i: usize, name: &str) -> String {
        let prefixed = match self.naming.mode {
            NameMode::Always => true,
            NameMode::Never => false,
            NameMode::OnCollision => self.naming.collide.contains(&format!("{kind}:{name}")),
        };
        if prefixed {
            format!("{}_{name}", self.names[i])
        } else {
            name.to_owned()
        }
    }

    /// The server a name a client called belongs to, and the name the server knows.
    fn route<'n>(&self, session: &Session, kind: &str, name: &'n str) -> Option<(usize, &'n str)> {
        if self.naming.mode != NameMode::Always {
            let key = format!("{kind}:{name}");
            let known = session
                .bare
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .copied()
                .or_else(|| self.naming.owners.get(&key).copied())
                .or_else(|| (self.names.len() == 1).then_some(0));
            if let Some(i) = known {
                return Some((i, name));
            }
        }
        self.by_prefix(name)
    }
}

type Boxed = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

/// The endpoint's answer: a call on the hot path is the server gate's own future, polled
/// in place ([`Sent`]); anything else is the endpoint's boxed future.
// Not boxed: a box per call is what the hot path saves; the future is moved a few times.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer {
    Sent(Sent),
    Other(Boxed),
    /// Between the two, and after the answer.
    Done,
}

/// A `tools/call` sent to its server's gate by [`Inner::hot`], with what a retry needs
/// should the server have lost the session.
pub(crate) struct Sent {
    inner: Arc<Inner>,
    gate: ResponseFuture<Infallible>,
    /// The request as sent, but its body: the template of a second try.
    parts: http::request::Parts,
    session: Arc<Session>,
    i: usize,
    /// The body as the server got it, and as the client wrote it (where the id is).
    body: Bytes,
    client: Bytes,
    id: Range<usize>,
}

impl Future for Answer {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Answer::Sent(sent) = this {
            let Ok(answer) = std::task::ready!(Pin::new(&mut sent.gate).poll(cx));
            if !matches!(
                answer.status(),
                StatusCode::NOT_FOUND | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
            ) {
                let answer = sent.inner.named_requests(sent.i, without_session(answer));
                *this = Answer::Done;
                return Poll::Ready(Ok(answer));
            }
            // A lost session or a server down: the general handling, boxed (rare).
            if let Answer::Sent(s) = std::mem::replace(this, Answer::Done) {
                *this = Answer::Other(Box::pin(async move {
                    let id = std::str::from_utf8(&s.client[s.id.clone()]).unwrap_or("null");
                    let answer = s
                        .inner
                        .forward(
                            &s.parts,
                            &s.session,
                            s.i,
                            s.body,
                            Id::Written(id),
                            Some(answer),
                        )
                        .await;
                    Ok(answer)
                }));
            }
        }
        match this {
            Answer::Other(f) => f.as_mut().poll(cx),
            // Polled after its answer: nothing more comes.
            _ => Poll::Pending,
        }
    }
}

impl Service<Request<Body>> for Aggregate {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        self.answer(req)
    }
}

impl Aggregate {
    /// [`Service::call`], without the `&mut` (nothing changes).
    pub(crate) fn answer(&self, req: Request<Body>) -> Answer {
        match Inner::hot(&self.0, req) {
            Ok(sent) => Answer::Sent(sent),
            Err(req) => {
                let this = self.0.clone();
                Answer::Other(Box::pin(async move { Ok(this.handle(req).await) }))
            }
        }
    }
}

/// A JSON-RPC error answer.
fn error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response<Body> {
    warden_tower::answer::json(
        status,
        &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
    )
}

fn result(id: &Value, result: Value) -> Response<Body> {
    warden_tower::answer::json(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "id": id, "result": result}),
    )
}

impl Inner {
    /// The hot path: a plain `tools/call` whose body came whole, in a session whose server
    /// for it is open, is sent to that server's gate from here, its headers edited in place
    /// (one pass over them, no lookup by name); the request comes back for [`Inner::handle`]
    /// otherwise, unchanged.
    // The request comes back by value: boxing it would cost every other request a box.
    #[allow(clippy::result_large_err)]
    fn hot(this: &Arc<Inner>, req: Request<Body>) -> Result<Sent, Request<Body>> {
        if req.method() != Method::POST {
            return Err(req);
        }
        let (mut parts, body) = req.into_parts();
        let Some(client) = body.whole().cloned() else {
            return Err(Request::from_parts(parts, body));
        };
        let routed = (|| {
            let call = Call::read(&client)?;
            let mut sid = None;
            let mut version = None;
            let mut length = None;
            for (name, value) in parts.headers.iter_mut() {
                // By text: a length, then the bytes (`HeaderName`'s own `==` costs more).
                match name.as_str() {
                    "mcp-session-id" => sid = Some(value),
                    "mcp-protocol-version" => version = Some(value),
                    "content-length" => length = Some(value),
                    _ => {}
                }
            }
            // 2026-07-28 is refused on the general path.
            if version
                .as_ref()
                .is_some_and(|v| v.as_bytes() >= &b"2026-"[..])
            {
                return None;
            }
            let session = this.session_of(sid.as_ref()?.as_bytes())?;
            let (i, bare) = this.route(&session, "tool", call.name)?;
            let up = session.open_with(i)?;
            // The server's own session and version for the client's (this gateway's); a
            // server that gave no session id is left to the general path, which removes it.
            let (theirs, their_version) = (up.session.clone()?, up.version.clone()?);
            let renamed = call.renamed(bare);
            *sid? = theirs;
            if let Some(length) = length {
                *length = HeaderValue::from(renamed.len());
            }
            // A client that sends no version (before 2025-06-18) gets the server's.
            let unsent = match version {
                Some(v) => {
                    *v = their_version;
                    None
                }
                None => Some(their_version),
            };
            let id = call.id_at.clone();
            Some((session, i, renamed, id, unsent))
        })();
        // Nothing above changed a header unless it returned `Some`.
        let Some((session, i, renamed, id, unsent)) = routed else {
            return Err(Request::from_parts(parts, body));
        };
        if let Some(v) = unsent {
            parts.headers.insert(VERSION, v);
        }
        let mut req = Request::new(Body::full(renamed.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = parts.uri.clone();
        *req.headers_mut() = parts.headers.clone();
        *req.extensions_mut() = parts.extensions.clone();
        Ok(Sent {
            inner: this.clone(),
            gate: this.gates[i].clone().call(req),
            parts,
            session,
            i,
            body: renamed,
            client,
            id,
        })
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        if parts
            .headers
            .get(&VERSION)
            .is_some_and(|v| v.as_bytes() >= &b"2026-"[..])
        {
            return error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                -32600,
                "the aggregated endpoint speaks MCP 2025-11-25 (and earlier); per-server endpoints /mcp/NAME speak every version",
            );
        }
        match parts.method {
            Method::POST => {}
            // Boxed, as the general path is below: this future is moved whole on every call,
            // so it holds only what the hot path needs.
            Method::DELETE => return Box::pin(self.close(&parts)).await,
            Method::GET => return Box::pin(self.listen(&parts)).await,
            _ => {
                let mut r = error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &Value::Null,
                    -32600,
                    "the aggregated endpoint takes POST, GET (the standalone stream) and DELETE",
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
                return r;
            }
        }
        let bytes = match warden_tower::collect(body, MAX_ANSWER).await {
            Ok(b) => b,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &Value::Null,
                    -32700,
                    "unreadable body",
                );
            }
        };
        if let Some((session, i, body, id)) = self.call_tool(&parts, &bytes) {
            return self.forward(&parts, &session, i, body, id, None).await;
        }
        Box::pin(self.general(parts, bytes)).await
    }

    /// Every message but a plain `tools/call`: read whole.
    async fn general(&self, parts: http::request::Parts, bytes: Bytes) -> Response<Body> {
        let Ok(message) = serde_json::from_slice::<Value>(&bytes) else {
            return error(StatusCode::BAD_REQUEST, &Value::Null, -32700, "not JSON");
        };
        let Some(obj) = message.as_object() else {
            return error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                -32600,
                "batches are not accepted by the aggregated endpoint",
            );
        };
        let id = obj.get("id").cloned();
        let Some(method) = obj.get("method").and_then(Value::as_str) else {
            // The client's answer to a request a server (or its gate) sent it: the id says
            // which server asked, and what it called the request.
            return self.answer_to_server(&parts, &message).await;
        };
        let method = method.to_owned();
        if method == "initialize" {
            return self
                .initialize(&parts, &bytes, id.unwrap_or(Value::Null))
                .await;
        }
        let Some(session) = self.session(&parts.headers) else {
            return error(
                StatusCode::NOT_FOUND,
                id.as_ref().unwrap_or(&Value::Null),
                -32001,
                "unknown or missing session: initialize first",
            );
        };
        let Some(id) = id else {
            // A notification: every server open for this session hears it.
            self.broadcast(&parts, &session, &bytes).await;
            return accepted();
        };
        let params = obj.get("params").cloned().unwrap_or(Value::Null);
        match method.as_str() {
            "ping" => result(&id, json!({})),
            "logging/setLevel" => {
                self.broadcast(&parts, &session, &bytes).await;
                result(&id, json!({}))
            }
            "tools/list" => {
                self.list(&parts, &session, &id, &method, "tools", true)
                    .await
            }
            "prompts/list" => {
                self.list(&parts, &session, &id, &method, "prompts", true)
                    .await
            }
            "resources/list" => {
                self.list(&parts, &session, &id, &method, "resources", false)
                    .await
            }
            "resources/templates/list" => {
                self.list(&parts, &session, &id, &method, "resourceTemplates", false)
                    .await
            }
            "tools/call" | "prompts/get" => {
                let name = params.get("name").and_then(Value::as_str).unwrap_or("");
                let kind = if method == "tools/call" {
                    "tool"
                } else {
                    "prompt"
                };
                match self.route(&session, kind, name) {
                    Some((i, bare)) => {
                        let mut m = message.clone();
                        m["params"]["name"] = bare.into();
                        let body = Bytes::from(m.to_string());
                        self.forward(&parts, &session, i, body, Id::Read(&id), None)
                            .await
                    }
                    None => self.unknown(&id, &method, name),
                }
            }
            "completion/complete" => {
                let reference = params.get("ref").cloned().unwrap_or(Value::Null);
                let routed = match reference.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => {
                        let name = reference.get("name").and_then(Value::as_str).unwrap_or("");
                        self.route(&session, "prompt", name).map(|(i, bare)| {
                            let mut m = message.clone();
                            m["params"]["ref"]["name"] = bare.into();
                            (i, m)
                        })
                    }
                    _ => {
                        let uri = reference.get("uri").and_then(Value::as_str).unwrap_or("");
                        self.owner(&session, uri).map(|i| (i, message.clone()))
                    }
                };
                match routed {
                    Some((i, m)) => {
                        let body = Bytes::from(m.to_string());
                        self.forward(&parts, &session, i, body, Id::Read(&id), None)
                            .await
                    }
                    None => self.unknown(&id, &method, &reference.to_string()),
                }
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = params.get("uri").and_then(Value::as_str).unwrap_or("");
                match self.owner(&session, uri) {
                    Some(i) => {
                        let body = Bytes::from(message.to_string());
                        self.forward(&parts, &session, i, body, Id::Read(&id), None)
                            .await
                    }
                    // Not listed to this session (a template's URI, or read without
                    // listing): the servers that offer resources are asked in turn.
                    None => self.ask_around(&parts, &session, uri, &message, &id).await,
                }
            }
            other => error(
                StatusCode::OK,
                &id,
                -32601,
                &format!("{other} is not available on the aggregated endpoint"),
            ),
        }
    }

    fn unknown(&self, id: &Value, method: &str, what: &str) -> Response<Body> {
        let names: Vec<&str> = self.names.iter().map(|n| &**n).collect();
        error(
            StatusCode::OK,
            id,
            -32602,
            &format!(
                "{method}: {what:?} belongs to no server here (names are <server>_<name>; the servers are {}; a resource is read from the server that listed it)",
                names.join(", ")
            ),
        )
    }

    /// A `tools/call` that [`Inner::hot`] did not take (its body came in pieces, or its
    /// server is not open yet), routed and renamed the same way from a reading of its bytes
    /// ([`Call`]): its session, server, body for that server and id; `None` when it is not
    /// one this path takes (the general path does).
    fn call_tool<'b>(
        &self,
        parts: &http::request::Parts,
        bytes: &'b [u8],
    ) -> Option<(Arc<Session>, usize, Bytes, Id<'b>)> {
        let call = Call::read(bytes)?;
        let session = self.session(&parts.headers)?;
        let (i, bare) = self.route(&session, "tool", call.name)?;
        let body = call.renamed(bare);
        Some((session, i, body, Id::Written(call.id)))
    }

    /// The server a `<server>_<name>` belongs to (the longest server name that fits), and
    /// the name as the server knows it.
    fn by_prefix<'n>(&self, name: &'n str) -> Option<(usize, &'n str)> {
        self.names
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let rest = name.strip_prefix(&**s)?.strip_prefix('_')?;
                Some((i, s.len(), rest))
            })
            .max_by_key(|(_, len, _)| *len)
            .map(|(i, _, rest)| (i, rest))
    }

    /// The server that listed `uri` to this session.
    fn owner(&self, session: &Session, uri: &str) -> Option<usize> {
        let uris = session.uris.lock().unwrap_or_else(PoisonError::into_inner);
        uris.get(uri).copied()
    }

    fn session(&self, headers: &HeaderMap) -> Option<Arc<Session>> {
        self.session_of(headers.get(&SESSION)?.as_bytes())
    }

    fn session_of(&self, id: &[u8]) -> Option<Arc<Session>> {
        let map = self
            .sessions
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let s = map.get(id)?.clone();
        drop(map);
        s.touched.store(self.sessions.tick(), Ordering::Relaxed);
        Some(s)
    }

    /// Sends `body` to server `i` as this client, in the client's session with it.
    async fn send(
        &self,
        template: &http::request::Parts,
        up: &Upstreams,
        i: usize,
        body: Bytes,
    ) -> Response<Body> {
        let Ok(r) = self
            .exchange(template, up, i, Method::POST, Body::full(body))
            .await;
        r
    }

    /// One request to server `i`'s gate as this client (its headers, its admission), in the
    /// client's session with that server: the ids and versions are the server's own.
    ///
    /// Not `async`: the request is made here and the gate's own (boxed) future returned, so
    /// no future of this function's sits between the call and the gate.
    fn exchange(
        &self,
        template: &http::request::Parts,
        up: &Upstreams,
        i: usize,
        method: Method,
        body: Body,
    ) -> ResponseFuture<Infallible> {
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = template.uri.clone();
        *req.headers_mut() = template.headers.clone();
        *req.extensions_mut() = template.extensions.clone();
        let h = req.headers_mut();
        h.remove(header::CONTENT_LENGTH);
        // The client's session and version are this gateway's; the server's own replace
        // them (an insert replaces, so a remove is needed only where there is none).
        match &up.session {
            Some(s) => h.insert(SESSION, s.clone()),
            None => h.remove(&SESSION),
        };
        match &up.version {
            Some(v) => h.insert(VERSION, v.clone()),
            None => h.remove(&VERSION),
        };
        self.gates[i].clone().call(req)
    }

    /// Opens server `i` for `session` (its `initialize` and `initialized`); its
    /// capabilities, or why not.
    async fn open(
        &self,
        template: &http::request::Parts,
        session: &Session,
        i: usize,
    ) -> Result<Value, Refused> {
        let answer = self
            .send(
                template,
                &Upstreams::default(),
                i,
                session.initialize.clone(),
            )
            .await;
        let status = answer.status();
        // Copied: the header shares the read buffer of the answer's connection, which an
        // idle session would otherwise keep alive (kilobytes per session).
        let sid = answer
            .headers()
            .get(&SESSION)
            .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
        let message = read_answer(answer).await;
        let result = match message.as_ref().and_then(|m| m.get("result")) {
            Some(r) if status.is_success() => r.clone(),
            _ => {
                return Err(Refused {
                    status,
                    why: message
                        .as_ref()
                        .and_then(|m| m["error"]["message"].as_str())
                        .map_or_else(|| format!("answered {status}"), str::to_owned),
                });
            }
        };
        let up = Upstreams {
            session: sid,
            version: result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .and_then(|v| HeaderValue::from_str(v).ok()),
            capabilities: Some(Arc::new(result["capabilities"].clone())),
        };
        let initialized =
            Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        let _ = read_answer(self.send(template, &up, i, initialized).await).await;
        session
            .servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[i] = Arc::new(up);
        Ok(result)
    }

    async fn initialize(
        &self,
        parts: &http::request::Parts,
        bytes: &Bytes,
        id: Value,
    ) -> Response<Body> {
        let session = Arc::new(Session {
            // Copied, for the same reason: the body shares the client connection's buffer.
            initialize: Bytes::copy_from_slice(bytes),
            servers: Mutex::new(vec![Arc::default(); self.names.len()]),
            uris: Mutex::default(),
            bare: Mutex::default(),
            touched: AtomicU64::new(self.sessions.tick()),
        });
        let opened = futures_util::future::join_all(
            (0..self.names.len()).map(|i| self.open(parts, &session, i)),
        )
        .await;
        let mut capabilities = Map::new();
        let mut version = None;
        let mut instructions = Vec::new();
        for (i, r) in opened.iter().enumerate() {
            match r {
                Ok(result) => {
                    merge(&mut capabilities, &result["capabilities"]);
                    version =
                        version.or_else(|| result["protocolVersion"].as_str().map(str::to_owned));
                    if let Some(text) = result["instructions"].as_str() {
                        instructions.push(format!("{}: {text}", self.names[i]));
                    }
                }
                Err(r) => {
                    tracing::warn!(target: "warden::gateway", server = %self.names[i], error = %r.why, "server not opened for a new session; tried again when next needed");
                }
            }
        }
        let Some(version) = version else {
            // Every server refused this client the same way (its Host or Origin, say): the
            // client hears that refusal, not a gateway error.
            let refusals: Vec<&Refused> = opened.iter().filter_map(|r| r.as_ref().err()).collect();
            if let Some(first) = refusals.first().filter(|f| {
                f.status.is_client_error() && refusals.iter().all(|r| r.status == f.status)
            }) {
                return error(first.status, &id, -32600, &first.why);
            }
            return error(
                StatusCode::BAD_GATEWAY,
                &id,
                -32603,
                "no server behind this gateway could be reached",
            );
        };
        let sid: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        if let Some(gone) = self.sessions.insert(sid.as_bytes().into(), session) {
            // Pushed out past `--max-sessions`: its servers' sessions go too, rather than
            // waiting for each server's own idle timeout (a flood of sessions would otherwise
            // pile up in the servers). Asked as the gateway, not as this client: only the
            // servers' session ids and the configured headers go with it.
            let (mut template, ()) = Request::new(()).into_parts();
            template.uri = parts.uri.clone();
            tokio::spawn(self.close_upstream(&template, &gone));
        }
        let mut info = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": {"name": "warden", "version": env!("CARGO_PKG_VERSION")},
        });
        if !instructions.is_empty() {
            info["instructions"] = instructions.join("\n\n").into();
        }
        let mut r = result(&id, info);
        if let Ok(v) = HeaderValue::from_str(&sid) {
            r.headers_mut().insert(SESSION, v);
        }
        r
    }

    /// Server `i`'s session for this client, opened now if it is not yet.
    async fn upstream(
        &self,
        parts: &http::request::Parts,
        session: &Session,
        i: usize,
    ) -> Result<Arc<Upstreams>, String> {
        if let Some(up) = session.open_with(i) {
            return Ok(up);
        }
        self.open(parts, session, i).await.map_err(|r| r.why)?;
        Ok(session
            .servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[i]
            .clone())
    }

    /// Sends a request to server `i` and passes its answer back as it comes; a server that
    /// lost the session is opened again and asked once more.
    async fn forward(
        &self,
        parts: &http::request::Parts,
        session: &Session,
        i: usize,
        body: Bytes,
        id: Id<'_>,
        mut answered: Option<Response<Body>>,
    ) -> Response<Body> {
        for attempt in 0..2 {
            // Open already, but for a call's first to this server: no future of its own.
            let up = match session.open_with(i) {
                Some(up) => Ok(up),
                // Boxed: a session is opened rarely, and this future sits in every call's.
                None => Box::pin(self.upstream(parts, session, i)).await,
            };
            let up = match up {
                Ok(up) => up,
                Err(why) => return self.down(i, id, &why),
            };
            // The hot path's answer to the first try, or this try's.
            let answer = match answered.take() {
                Some(a) => a,
                None => {
                    let Ok(answer) = self
                        .exchange(parts, &up, i, Method::POST, Body::full(body.clone()))
                        .await;
                    answer
                }
            };
            match answer.status() {
                StatusCode::NOT_FOUND if attempt == 0 && up.session.is_some() => {
                    // The server forgot the session (it restarted): open it again.
                    session
                        .servers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)[i] = Arc::default();
                    continue;
                }
                StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => {
                    let why = read_answer(answer)
                        .await
                        .and_then(|m| m["error"]["message"].as_str().map(str::to_owned))
                        .unwrap_or_else(|| "no answer".into());
                    session
                        .servers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)[i] = Arc::default();
                    return self.down(i, id, &why);
                }
                _ => return self.named_requests(i, without_session(answer)),
            }
        }
        self.down(i, id, "the server lost the session twice")
    }

    /// Requests server `i` (or its gate: an approval asked in the client) sends the client on
    /// an answer's stream get ids that say whose they are: `NAME/ID`, the server's id as
    /// JSON after the slash. Two servers' ids never collide, and the client's answer finds
    /// its way back ([`Inner::answer_to_server`]).
    fn named_requests(&self, i: usize, answer: Response<Body>) -> Response<Body> {
        let sse = answer
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if !sse {
            return answer;
        }
        let name = self.names[i].clone();
        let (parts, body) = answer.into_parts();
        static METHOD: LazyLock<Needle> = LazyLock::new(|| Needle::new("\"method\""));
        let body = warden_tower::map_messages(body, &METHOD, move |m| {
            let is_request = m.get("method").is_some() && m.get("id").is_some();
            if is_request {
                m["id"] = format!("{name}/{}", m["id"]).into();
            }
            is_request
        });
        Response::from_parts(parts, body)
    }

    /// `GET /mcp`: every open server's standalone stream, merged into one (their requests
    /// renamed `NAME/ID` as on a call's stream). A server without one is left out; with
    /// none at all, the answer is 405, as from a server that offers none.
    async fn listen(&self, parts: &http::request::Parts) -> Response<Body> {
        let Some(session) = self.session(&parts.headers) else {
            return error(
                StatusCode::NOT_FOUND,
                &Value::Null,
                -32001,
                "unknown or missing session: initialize first",
            );
        };
        let open = session.opened(|u| u.version.is_some());
        // A client resuming a stream sends the id of the last event it saw, which is some
        // server's own (call streams pass through unrenamed). With one server open it can
        // only be that server's, which is asked to resume; with several the id does not say
        // whose it is, and one server's ids are not handed to another: each stream starts
        // afresh.
        let mut fresh;
        let template = if open.len() != 1 && parts.headers.contains_key(LAST_EVENT_ID) {
            fresh = parts.clone();
            fresh.headers.remove(LAST_EVENT_ID);
            &fresh
        } else {
            parts
        };
        let streams = futures_util::future::join_all(open.iter().map(|(i, up)| async move {
            let Ok(r) = self
                .exchange(template, up, *i, Method::GET, Body::empty())
                .await;
            (*i, r)
        }))
        .await;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let mut any = false;
        for (i, r) in streams {
            if r.status() != StatusCode::OK {
                continue;
            }
            any = true;
            let mut body = self.named_requests(i, r).into_body();
            let tx = tx.clone();
            tokio::spawn(async move {
                use http_body_util::BodyExt;
                loop {
                    let frame = tokio::select! {
                        f = body.frame() => f,
                        () = tx.closed() => return,
                    };
                    match frame {
                        Some(Ok(f)) => {
                            if let Ok(data) = f.into_data() {
                                if tx.send(data).await.is_err() {
                                    return;
                                }
                            }
                        }
                        _ => return,
                    }
                }
            });
        }
        if !any {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
            return r;
        }
        drop(tx);
        let events = futures_util::stream::unfold(rx, |mut rx| async move {
            let data = rx.recv().await?;
            Some((Ok::<_, Infallible>(http_body::Frame::data(data)), rx))
        });
        let mut r = Response::new(Body::new(http_body_util::StreamBody::new(events)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    }

    /// A client's answer to a request of `NAME/ID`: to server NAME's session, as `ID`.
    async fn answer_to_server(
        &self,
        parts: &http::request::Parts,
        message: &Value,
    ) -> Response<Body> {
        let routed = message
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| id.split_once('/'))
            .and_then(|(server, original)| {
                let i = self.names.iter().position(|n| **n == *server)?;
                Some((i, serde_json::from_str::<Value>(original).ok()?))
            });
        let (Some((i, original)), Some(session)) = (routed, self.session(&parts.headers)) else {
            tracing::warn!(target: "warden::gateway", "an answer to a request no server here sent reached the aggregated endpoint; dropped");
            return accepted();
        };
        let mut answer = message.clone();
        answer["id"] = original;
        let up = session
            .servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)[i]
            .clone();
        let reply = self
            .send(parts, &up, i, Bytes::from(answer.to_string()))
            .await;
        let status = reply.status();
        let _ = warden_tower::collect(reply.into_body(), MAX_ANSWER).await;
        let mut r = Response::new(Body::empty());
        *r.status_mut() = if status.is_success() {
            StatusCode::ACCEPTED
        } else {
            status
        };
        r
    }

    /// A resource request for a URI no list showed this session: each server offering
    /// resources is asked until one answers without an error; that server then owns it.
    async fn ask_around(
        &self,
        parts: &http::request::Parts,
        session: &Session,
        uri: &str,
        message: &Value,
        id: &Value,
    ) -> Response<Body> {
        let mut last = None;
        for i in 0..self.names.len() {
            let Ok(up) = self.upstream(parts, session, i).await else {
                continue;
            };
            if up
                .capabilities
                .as_ref()
                .is_some_and(|c| c.get("resources").is_none())
            {
                continue;
            }
            let answer = self
                .send(parts, &up, i, Bytes::from(message.to_string()))
                .await;
            let (head, body) = answer.into_parts();
            let Ok(bytes) = warden_tower::collect(body, MAX_ANSWER).await else {
                continue;
            };
            let failed = !head.status.is_success()
                || read_message(&bytes).is_some_and(|m| m.get("error").is_some());
            let answer = without_session(Response::from_parts(head, Body::full(bytes)));
            if !failed {
                session
                    .uris
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(uri.to_owned(), i);
                return answer;
            }
            last = Some(answer);
        }
        last.unwrap_or_else(|| self.unknown(id, "resources/read", uri))
    }

    fn down(&self, i: usize, id: Id<'_>, why: &str) -> Response<Body> {
        error(
            StatusCode::BAD_GATEWAY,
            &id.value(),
            -32603,
            &format!("server {}: {why}", self.names[i]),
        )
    }

    /// Every server's list, its entries named `<server>_<name>` when `rename`.
    async fn list(
        &self,
        parts: &http::request::Parts,
        session: &Session,
        id: &Value,
        method: &str,
        field: &str,
        rename: bool,
    ) -> Response<Body> {
        let lists = futures_util::future::join_all((0..self.names.len()).map(|i| async move {
            let mut entries = Vec::new();
            let mut cursor: Option<String> = None;
            let offered = match field {
                "resourceTemplates" => "resources",
                f => f,
            };
            for _ in 0..MAX_PAGES {
                let up = self.upstream(parts, session, i).await?;
                if up
                    .capabilities
                    .as_ref()
                    .is_some_and(|c| c.get(offered).is_none())
                {
                    break;
                }
                let mut request =
                    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {}});
                if let Some(c) = &cursor {
                    request["params"]["cursor"] = c.clone().into();
                }
                let answer = self
                    .send(parts, &up, i, Bytes::from(request.to_string()))
                    .await;
                let status = answer.status();
                let message = read_answer(answer).await;
                let Some(result) = message.as_ref().and_then(|m| m.get("result")) else {
                    return Err(message
                        .as_ref()
                        .and_then(|m| m["error"]["message"].as_str())
                        .map_or_else(|| format!("answered {status}"), str::to_owned));
                };
                entries.extend(result[field].as_array().cloned().unwrap_or_default());
                match result.get("nextCursor").and_then(Value::as_str) {
                    Some(c) if !c.is_empty() => cursor = Some(c.to_owned()),
                    _ => break,
                }
            }
            Ok::<_, String>(entries)
        }))
        .await;
        let mut merged = Vec::new();
        let mut uris = HashMap::new();
        let mut bare = HashMap::new();
        let kind = if field == "tools" { "tool" } else { "prompt" };
        for (i, list) in lists.into_iter().enumerate() {
            match list {
                Ok(entries) => {
                    for mut e in entries {
                        if rename {
                            if let Some(name) = e.get("name").and_then(Value::as_str) {
                                let shown = self.shown(kind, i, name);
                                if shown == name {
                                    bare.insert(format!("{kind}:{name}"), i);
                                }
                                e["name"] = shown.into();
                            }
                        } else if let Some(uri) = e
                            .get("uri")
                            .or_else(|| e.get("uriTemplate"))
                            .and_then(Value::as_str)
                        {
                            uris.insert(uri.to_owned(), i);
                        }
                        merged.push(e);
                    }
                }
                Err(why) => {
                    tracing::warn!(target: "warden::gateway", server = %self.names[i], method, error = %why, "server left out of a merged list");
                }
            }
        }
        if !bare.is_empty() {
            session
                .bare
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(bare);
        }
        if !uris.is_empty() {
            session
                .uris
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(uris);
        }
        result(id, json!({ field: merged }))
    }

    /// A notification (or `logging/setLevel`) for every server open for this session.
    async fn broadcast(&self, parts: &http::request::Parts, session: &Session, bytes: &Bytes) {
        let open = session.opened(|u| u.version.is_some());
        futures_util::future::join_all(open.iter().map(|(i, up)| async move {
            let _ = read_answer(self.send(parts, up, *i, bytes.clone()).await).await;
        }))
        .await;
    }

    /// `DELETE /mcp`: every upstream session closed, then the client's.
    async fn close(&self, parts: &http::request::Parts) -> Response<Body> {
        let Some(id) = parts.headers.get(&SESSION).and_then(|v| v.to_str().ok()) else {
            return error(
                StatusCode::BAD_REQUEST,
                &Value::Null,
                -32600,
                "no session to close",
            );
        };
        let Some(session) = self.sessions.remove(id.as_bytes()) else {
            return error(
                StatusCode::NOT_FOUND,
                &Value::Null,
                -32001,
                "unknown session",
            );
        };
        self.close_upstream(parts, &session).await;
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NO_CONTENT;
        r
    }

    /// Every server's session with this client closed (`DELETE`), their answers read.
    fn close_upstream(
        &self,
        template: &http::request::Parts,
        session: &Session,
    ) -> impl Future<Output = ()> + Send + 'static {
        let closing: Vec<_> = session
            .opened(|u| u.session.is_some())
            .iter()
            .map(|(i, up)| self.exchange(template, up, *i, Method::DELETE, Body::empty()))
            .collect();
        async move {
            for r in futures_util::future::join_all(closing).await {
                let Ok(r) = r;
                let _ = warden_tower::collect(r.into_body(), MAX_ANSWER).await;
            }
        }
    }
}

impl Session {
    /// Server `i`'s session with this client, when it is open.
    fn open_with(&self, i: usize) -> Option<Arc<Upstreams>> {
        let servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        servers.get(i).filter(|u| u.version.is_some()).cloned()
    }

    /// The servers whose session with this client `open` says is usable, with it.
    fn opened(&self, open: fn(&Upstreams) -> bool) -> Vec<(usize, Arc<Upstreams>)> {
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .enumerate()
            .filter(|(_, u)| open(u))
            .map(|(i, u)| (i, u.clone()))
            .collect()
    }
}

impl Sessions {
    pub(crate) fn new(max: usize) -> Sessions {
        Sessions {
            max: max.max(1),
            map: Mutex::default(),
            uses: AtomicU64::new(0),
        }
    }

    /// Keeps `session`; returns the one that made room for it, if one had to.
    fn insert(&self, id: Arc<[u8]>, session: Arc<Session>) -> Option<Arc<Session>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut gone = None;
        if map.len() >= self.max {
            // The longest idle goes (its client re-initializes on the 404 it then gets).
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.touched.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone());
            gone = oldest.and_then(|k| map.remove(&k));
        }
        map.insert(id, session);
        gone
    }

    fn tick(&self) -> u64 {
        self.uses.fetch_add(1, Ordering::Relaxed)
    }

    fn remove(&self, id: &[u8]) -> Option<Arc<Session>> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    }
}

fn accepted() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// The server's answer without its own session id (the client's is this gateway's).
fn without_session(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().remove(&SESSION);
    r
}

/// The JSON-RPC answer in a body that is JSON or server-sent events (the last message
/// with a `result` or an `error`).
async fn read_answer(r: Response<Body>) -> Option<Value> {
    let bytes = warden_tower::collect(r.into_body(), MAX_ANSWER)
        .await
        .ok()?;
    read_message(&bytes)
}

fn read_message(bytes: &[u8]) -> Option<Value> {
    if let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        return Some(v);
    }
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .rev()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
}

/// Capabilities of several servers as one: every capability any server has, a flag
/// (`listChanged`, `subscribe`) on if any server's is.
fn merge(into: &mut Map<String, Value>, caps: &Value) {
    let Some(caps) = caps.as_object() else { return };
    for (k, v) in caps {
        match (into.get_mut(k), v) {
            (Some(Value::Object(have)), Value::Object(more)) => {
                for (flag, on) in more {
                    let keep = have.get(flag).and_then(Value::as_bool).unwrap_or(false);
                    if !keep {
                        have.insert(flag.clone(), on.clone());
                    }
                }
            }
            (Some(_), _) => {}
            (None, v) => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_merge_as_a_union() {
        let mut m = Map::new();
        merge(
            &mut m,
            &json!({"tools": {"listChanged": false}, "logging": {}}),
        );
        merge(
            &mut m,
            &json!({"tools": {"listChanged": true}, "prompts": {"listChanged": true}}),
        );
        assert_eq!(
            Value::Object(m),
            json!({"tools": {"listChanged": true}, "logging": {}, "prompts": {"listChanged": true}})
        );
    }
}
