//! `warden serve`: the policy layer in front of an MCP server reached over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::Either;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, header};
use tokio::sync::Semaphore;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use warden_tower::jwt::JwtVerifier;
use warden_tower::redis::RedisConfig;
use warden_tower::tls::ClientTls;
use warden_tower::{Body, PolicyService};

pub use crate::aggregate::NameMode;
use crate::aggregate::{Aggregate, Naming};
use crate::auth::Grants;
use crate::callers::{Admission, Callers, JwtOptions, METADATA_PATH, protected_resource};
use crate::children::{Children, Launch};
use crate::listener::{self, Limits};
use crate::policy_file::{self, Live};
use crate::proxy::Upstream;
use crate::tls::ServerTls;
use crate::{Error, admin};

/// One MCP server behind the gateway, with its own policy.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Its name (`warden.toml`'s `[servers.NAME]`): with several servers it is served at
    /// `/mcp/NAME`, and its name is in every audit line and recorded call and keys its
    /// counters. `None`: the one server of `--upstream`, served at any path.
    pub name: Option<String>,
    pub policy: PathBuf,
    pub endpoint: Endpoint,
}

/// Where a server is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// Reached over Streamable HTTP.
    Url {
        upstream: Uri,
        /// How an `https://` upstream is verified, and the client certificate it is shown.
        tls: ClientTls,
        /// Added to every upstream request (upstream credentials).
        headers: Vec<(HeaderName, HeaderValue)>,
        /// How long the upstream may take to send response headers.
        timeout: Duration,
    },
    /// A stdio server this gateway launches ([`crate::children`]).
    Command(Launch),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Url { upstream, .. } => write!(f, "{upstream}"),
            Endpoint::Command(l) => write!(f, "`{}`", l.command.join(" ")),
        }
    }
}

/// Everything `warden serve` is told on the command line (or in `warden.toml`).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// At least one. Named ones (from `warden.toml`) are each at `/mcp/NAME`, and all of
    /// them at `/mcp`; one unnamed server (`--upstream`) is served at any path.
    pub servers: Vec<ServerOptions>,
    /// How `/mcp` names the tools and prompts of several servers.
    pub server_names: NameMode,
    /// `--gateway-policy`: rules for every server's calls, decided after the server's own
    /// policy (caller conditions, a budget all servers share).
    pub gateway_policy: Option<PathBuf>,
    pub listen: SocketAddr,
    /// Serve TLS with this certificate chain and key (PEM), reloaded when they change.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The admin address's own pair; without it, the admin address uses `tls`.
    pub admin_tls: Option<(PathBuf, PathBuf)>,
    /// `None`: `--no-auth`, every caller is the grant `anonymous`.
    pub grants: Option<Grants>,
    pub admin: Option<(SocketAddr, String)>,
    pub shadow: bool,
    pub reload_every: Duration,
    /// Counters and approvals shared with other replicas; `None`: in this process.
    pub redis: Option<RedisConfig>,
    /// Callers with JWTs from an identity provider, beside (or instead of) static tokens.
    pub jwt: Option<JwtOptions>,
    /// The largest request body; a larger one is answered 413 with a JSON-RPC error.
    pub max_message_bytes: usize,
    /// Slow, idle and numerous clients; the graceful stop.
    pub limits: Limits,
    /// Origins whose browser-based MCP clients (the MCP Inspector, say) may call.
    pub cors_origins: Vec<HeaderValue>,
    /// Event loops (threads); 0: one per CPU.
    pub workers: usize,
    /// Announce each approval request to a URL, with a link to the console.
    pub notify: Option<crate::state::Notify>,
    /// The console's address as people open it: MCP clients that can open links are sent
    /// there to answer approvals asked `via client`.
    pub console_url: Option<String>,
    /// Record every decided call, arguments included, here (JSON lines, mode 0600).
    pub record: Option<PathBuf>,
    /// `--otlp-endpoint`: the collector's base URL; the `OTEL_*` variables otherwise
    /// ([`crate::otel`]).
    pub otlp_endpoint: Option<String>,
    /// `--otlp-ca`: the CA of an `https://` collector, if not a public one.
    pub otlp_ca: Option<PathBuf>,
}

/// Serves until SIGTERM/SIGINT, then drains (see [`listener`]).
///
/// Runs its own threads, nginx-style: `opts.workers` event loops, each a current-thread
/// tokio runtime that accepts from the one listening socket and serves its connections
/// start to finish with its own upstream connection pool. A call never changes threads, so
/// no worker parks and wakes another per call — under load that handoff cost more CPU than
/// the proxying (docs/PERFORMANCE.md). The first worker also runs what is shared: policy
/// reloads, JWKS refreshes, the Redis connection and the admin address.
pub fn serve(opts: ServeOptions) -> Result<(), Error> {
    let workers = if opts.workers == 0 {
        default_workers()
    } else {
        opts.workers
    };
    runtime()?.block_on(run(opts, workers))
}

/// One worker per CPU the process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Io(format!("cannot start a runtime: {e}")))
}

async fn run(opts: ServeOptions, workers: usize) -> Result<(), Error> {
    let Some(first) = opts.servers.first() else {
        return Err(Error::Config("no MCP server to stand in front of".into()));
    };
    let (compiled, text) = policy_file::load(&first.policy).map_err(Error::Policy)?;
    let stores = crate::state::build(
        compiled,
        first.name.as_deref(),
        opts.redis.as_ref(),
        opts.admin.is_some(),
        opts.notify.as_ref(),
    )?;
    stores.check().await;
    let recorder = match &opts.record {
        Some(path) => {
            tracing::warn!(target: "warden::gateway", path = %path.display(), "recording every call with its arguments (sensitive; --record)");
            Some(crate::record::FileRecorder::open(path)?)
        }
        None => None,
    };
    let export =
        crate::otel::Export::start(opts.otlp_endpoint.as_deref(), opts.otlp_ca.as_deref())?;
    if let Some(e) = &export {
        tracing::info!(target: "warden::gateway", endpoint = %e.description, "exporting traces over OTLP");
    }
    let auth = opts.grants.is_some() || opts.jwt.is_some();
    // The gateway-wide policy: one layer behind every server's gate, so that its counters
    // are all servers' at once. Its audit lines, metrics and counters say server `*`.
    let gateway = match &opts.gateway_policy {
        Some(path) => {
            let (compiled, text) = policy_file::load(path).map_err(Error::Policy)?;
            let layer = dressed(stores.layer_for(GATEWAY, compiled), &opts, export.as_ref());
            let live = Live::new(path.clone(), text, layer.handle());
            live.clone().watch(opts.reload_every);
            tracing::info!(target: "warden::gateway", policy = %path.display(), "a gateway-wide policy decides every server's calls after the server's own");
            Some((layer, live))
        }
        None => None,
    };
    let (gateway, gateway_live) = gateway.unzip();
    // Each server: its layer (policy, counters), its policy file watched, its upstream.
    let mut servers = Vec::with_capacity(opts.servers.len());
    let mut lives = Vec::with_capacity(opts.servers.len());
    for (i, server) in opts.servers.iter().enumerate() {
        let (layer, text) = if i == 0 {
            (stores.layer.clone(), text.clone())
        } else {
            let (compiled, text) = policy_file::load(&server.policy).map_err(Error::Policy)?;
            let name = server.name.as_deref().unwrap_or_default();
            (stores.layer_for(name, compiled), text)
        };
        let mut layer = dressed(layer, &opts, export.as_ref());
        if let Some(r) = &recorder {
            layer = layer.recorder(r.clone());
        }
        let live = Live::new(server.policy.clone(), text, layer.handle());
        live.clone().watch(opts.reload_every);
        let upstream = match &server.endpoint {
            // Checked once here; every worker takes a client with its own connections.
            Endpoint::Url {
                upstream,
                tls,
                headers,
                timeout,
            } => Server::Http(
                Upstream::new(upstream, tls, headers.clone(), auth)
                    .map_err(|e| match &server.name {
                        Some(n) => Error::Config(format!("servers.{n}: {e}")),
                        None => Error::Config(e),
                    })?
                    .timeout(*timeout)
                    .server(server.name.as_deref()),
            ),
            Endpoint::Command(launch) => {
                let children = Children::new(launch.clone());
                children.reap();
                Server::Launched(children)
            }
        };
        lives.push((server.name.clone(), live, upstream.health()));
        servers.push(Backend {
            name: server.name.as_deref().map(Arc::from),
            layer,
            upstream,
            gateway: gateway.clone(),
        });
    }
    let live = lives[0].1.clone();
    let naming = Arc::new(naming(&opts).await?);

    let jwt = match &opts.jwt {
        Some(j) => {
            let v = JwtVerifier::new(j.config.clone())
                .await
                .map_err(|e| Error::Config(e.to_string()))?;
            v.watch(opts.reload_every);
            Some(v)
        }
        None => None,
    };
    let stack = Arc::new(Stack {
        servers,
        callers: Arc::new(Callers {
            tokens: opts.grants.clone(),
            jwt,
            discovery: opts.jwt.clone(),
        }),
        cors_origins: opts.cors_origins.clone(),
        sessions: Arc::new(crate::aggregate::Sessions::new(opts.limits.max_sessions)),
        naming,
    });

    let listener = std::net::TcpListener::bind(opts.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Error::Io(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Io(e.to_string()))?;
    let tls = opts
        .tls
        .as_ref()
        .map(|(cert, key)| ServerTls::load(cert, key))
        .transpose()?;
    if let Some(t) = &tls {
        t.watch(opts.reload_every);
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some((admin_addr, token)) = &opts.admin {
        let admin_tls = match &opts.admin_tls {
            Some((cert, key)) => {
                let t = ServerTls::load(cert, key)?;
                t.watch(opts.reload_every);
                Some(t)
            }
            None => tls.clone(),
        };
        let scheme = if admin_tls.is_some() { "https" } else { "http" };
        let bound = admin::start(
            *admin_addr,
            token.clone(),
            stores.desk.clone(),
            live.clone(),
            lives,
            gateway_live,
            admin_tls,
        )
        .await?;
        println!("admin on {scheme}://{bound}/");
    }

    // One signal stops every worker; each drains its own connections.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown().await;
        let _ = stop_tx.send(true);
    });
    let permits = Arc::new(Semaphore::new(opts.limits.max_connections.max(1)));
    let mut threads = Vec::new();
    for i in 1..workers {
        let socket = listener
            .try_clone()
            .map_err(|e| Error::Io(format!("cannot share the listening socket: {e}")))?;
        let (stack, permits, stop, limits, max_body, tls) = (
            stack.clone(),
            permits.clone(),
            stop_rx.clone(),
            opts.limits,
            opts.max_message_bytes,
            tls.clone(),
        );
        let rt = runtime()?;
        let thread = std::thread::Builder::new()
            .name(format!("warden-worker-{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(socket) {
                        Ok(l) => listener::run(l, stack.service(), limits, max_body, permits, stop, tls).await,
                        Err(e) => tracing::error!(target: "warden::gateway", error = %e, worker = i, "worker cannot accept"),
                    }
                });
            })
            .map_err(|e| Error::Io(format!("cannot start worker {i}: {e}")))?;
        threads.push(thread);
    }
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|e| Error::Io(e.to_string()))?;
    let upstreams = opts
        .servers
        .iter()
        .map(|s| match &s.name {
            Some(n) if opts.servers.len() > 1 => format!("/mcp/{n} -> {}", s.endpoint),
            _ => s.endpoint.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!("listening on {scheme}://{addr}/ -> {upstreams}");
    tracing::info!(target: "warden::gateway", %addr, upstream = %upstreams, auth, workers, state = %stores.description, "serving");
    listener::run(
        listener,
        stack.service(),
        opts.limits,
        opts.max_message_bytes,
        permits,
        stop_rx,
        tls,
    )
    .await;
    // The other workers may still need this runtime (the Redis connection lives here)
    // while they drain, so wait for them off it.
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
        // The spans still queued go to the collector (their requests run on this runtime).
        if let Some(e) = export {
            e.shutdown();
        }
    })
    .await;
    Ok(())
}

/// What every worker builds its router from; the policies, counters and callers are
/// shared, the upstream connection pools are the worker's own.
struct Stack {
    servers: Vec<Backend>,
    callers: Arc<Callers>,
    cors_origins: Vec<HeaderValue>,
    /// The aggregated endpoint's sessions, shared by every worker.
    sessions: Arc<crate::aggregate::Sessions>,
    naming: Arc<Naming>,
}

/// How `/mcp` names entries: unless always prefixed, each server is asked at start what it
/// has, so that names two servers share are known (and, under `never`, refused).
async fn naming(opts: &ServeOptions) -> Result<Naming, Error> {
    let names: Vec<Arc<str>> = opts
        .servers
        .iter()
        .map(|s| Arc::from(s.name.as_deref().unwrap_or("")))
        .collect();
    if opts.server_names == NameMode::Always || opts.servers.len() < 2 {
        return Naming::new(opts.server_names, &names, &[]).map_err(Error::Config);
    }
    let mut lists = Vec::with_capacity(opts.servers.len());
    for s in &opts.servers {
        let catalog = match &s.endpoint {
            Endpoint::Url {
                upstream,
                tls,
                headers,
                ..
            } => crate::scan::scan_http(upstream, tls, headers).await,
            Endpoint::Command(l) => {
                crate::scan::scan_launched(&l.command, &l.env, l.cwd.as_deref()).await
            }
        }
        .map_err(|e| {
            Error::Config(format!(
                "servers.{}: cannot list its tools to name them ({e}); server-names = \"always\" needs no list at start",
                s.name.as_deref().unwrap_or("")
            ))
        })?;
        lists.push((
            catalog.tools.into_iter().map(|t| t.name).collect(),
            catalog.prompts,
        ));
    }
    Naming::new(opts.server_names, &names, &lists).map_err(Error::Config)
}

/// A gate's settings every gate of the gateway shares (the server's and the gateway-wide).
fn dressed(
    layer: warden_tower::PolicyLayer,
    opts: &ServeOptions,
    export: Option<&crate::otel::Export>,
) -> warden_tower::PolicyLayer {
    let mut layer = layer
        .shadow(opts.shadow)
        .max_body_bytes(opts.max_message_bytes);
    if let Some(url) = &opts.console_url {
        layer = layer.console_url(url.clone());
    }
    if let Some(e) = export {
        layer = layer.tracer_with_sampler(e.tracer(), e.sampler());
    }
    layer
}

/// What the gateway-wide policy's layer is called where a server's name would be: no
/// server can have it (a server's name is letters, digits, `-` and `_`).
const GATEWAY: &str = "*";

/// One server's gate: its policy layer in front of its upstream.
struct Backend {
    name: Option<Arc<str>>,
    layer: warden_tower::PolicyLayer,
    upstream: Server,
    /// The gateway-wide policy's layer, between the server's gate and its upstream.
    gateway: Option<warden_tower::PolicyLayer>,
}

impl Backend {
    /// A worker's stack for this server: its gate, the gateway's, its upstream.
    fn gate(&self) -> PolicyService<Behind> {
        let upstream = self.upstream.for_worker();
        let behind = match &self.gateway {
            Some(g) => Behind::Gated(g.layer(upstream)),
            None => Behind::Direct(upstream),
        };
        self.layer.layer(behind)
    }
}

/// A server as the policy layer's inner service: over HTTP, or launched here.
#[derive(Clone, Debug)]
pub(crate) enum Server {
    Http(Upstream),
    Launched(Children),
}

impl Server {
    /// A worker's own: its own connection pool (launched children are everyone's).
    fn for_worker(&self) -> Server {
        match self {
            Server::Http(u) => Server::Http(u.for_worker()),
            Server::Launched(c) => Server::Launched(c.clone()),
        }
    }

    fn path(&self) -> &str {
        match self {
            Server::Http(u) => u.path(),
            Server::Launched(_) => "/mcp",
        }
    }

    fn health(&self) -> crate::proxy::Health {
        match self {
            Server::Http(u) => u.health(),
            Server::Launched(_) => crate::proxy::Health::default(),
        }
    }
}

impl Service<Request<Body>> for Server {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxedAnswer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> BoxedAnswer {
        match self {
            Server::Http(u) => u.call(req),
            Server::Launched(c) => c.call(req),
        }
    }
}

/// What a server's gate forwards to: the server, or the gateway-wide policy's gate
/// (`--gateway-policy`) in front of it, one layer shared by every server so that its
/// counters are all servers' at once.
#[derive(Clone, Debug)]
pub(crate) enum Behind {
    Direct(Server),
    Gated(PolicyService<Server>),
}

impl Service<Request<Body>> for Behind {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxedAnswer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> BoxedAnswer {
        match self {
            Behind::Direct(s) => s.call(req),
            // Without `poll_ready`: the gate is as ready as the server behind it, always.
            Behind::Gated(g) => g.call(req).into_boxed(),
        }
    }
}

impl Stack {
    /// Named servers: each at `/mcp/NAME`, all of them at `/mcp`.
    fn named(&self, gates: Vec<(Option<Arc<str>>, PolicyService<Behind>)>) -> Routes {
        let names: Arc<[Arc<str>]> = gates
            .iter()
            .map(|(n, _)| n.clone().unwrap_or_else(|| "".into()))
            .collect();
        let all = Aggregate::new(
            names,
            gates.iter().map(|(_, g)| g.clone()).collect(),
            self.sessions.clone(),
            self.naming.clone(),
        );
        Routes::Named { gates, all }
    }

    /// The worker's whole server stack, from the client's request to the upstream.
    fn service(
        &self,
    ) -> impl Service<
        Request<Body>,
        Response = Response<
            impl http_body::Body<Data = bytes::Bytes, Error = impl Into<warden_tower::BoxError>>
            + Send
            + 'static,
        >,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        let gates: Vec<_> = self
            .servers
            .iter()
            .map(|b| (b.name.clone(), b.gate()))
            .collect();
        let routes = match <[_; 1]>::try_from(gates) {
            // `--upstream`: the one server, at any path, as always.
            Ok([(None, one)]) => Routes::One(one),
            Ok(one) => self.named(Vec::from(one)),
            Err(several) => self.named(several),
        };
        let mcp_path: Arc<str> = match &routes {
            Routes::One(_) => self.servers[0].upstream.path().into(),
            Routes::Named { .. } => "/mcp".into(),
        };
        let gate = Gate {
            callers: self.callers.clone(),
            routes,
            mcp_path,
        };
        // tower-http around it all, outermost first: a panic is a JSON-RPC 500, not a dropped
        // connection; CORS answers preflights before anything asks for a token; tokens are
        // marked sensitive for every trace; each request gets an id the audit line carries.
        ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(panic_answer))
            .option_layer(cors(&self.cors_origins))
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
            ]))
            .layer(SetRequestIdLayer::x_request_id(Uuids))
            .layer(PropagateRequestIdLayer::x_request_id())
            .service(gate)
    }
}

/// Routes the discovery document, admits callers ([`crate::callers`]), and hands every
/// other request to the policy layer in front of its server's upstream.
#[derive(Clone)]
struct Gate {
    callers: Arc<Callers>,
    routes: Routes,
    mcp_path: Arc<str>,
}

/// Which server a request is for.
#[derive(Clone)]
enum Routes {
    /// The one server: every path goes to it (its own MCP path upstream).
    One(PolicyService<Behind>),
    /// Several: `/mcp/NAME` is server NAME's endpoint, `/mcp` all of them at once.
    Named {
        gates: Vec<(Option<Arc<str>>, PolicyService<Behind>)>,
        all: Aggregate,
    },
}

impl Routes {
    /// The server's gate for `path`.
    fn route(&mut self, path: &str) -> Option<&mut PolicyService<Behind>> {
        match self {
            Routes::One(gate) => Some(gate),
            Routes::Named { gates, .. } => {
                let wanted = path.strip_prefix("/mcp/").map(|n| n.trim_end_matches('/'));
                gates
                    .iter_mut()
                    .find(|(n, _)| n.as_deref().is_some_and(|n| Some(n) == wanted))
                    .map(|(_, gate)| gate)
            }
        }
    }

    /// A 404 that lists the endpoints there are.
    fn not_found(&self, path: &str) -> Response<Body> {
        let endpoints = match self {
            Routes::One(_) => String::new(),
            Routes::Named { gates, .. } => std::iter::once("/mcp (all)".to_owned())
                .chain(
                    gates
                        .iter()
                        .filter_map(|(n, _)| n.as_deref().map(|n| format!("/mcp/{n}"))),
                )
                .collect::<Vec<_>>()
                .join(", "),
        };
        warden_tower::answer::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {
                "code": -32601,
                "message": format!("no MCP server at {path}; this gateway serves {endpoints}"),
            }}),
        )
    }
}

type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl Service<Request<Body>> for Gate {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<
        Ready<Result<Response<Body>, Infallible>>,
        Either<
            warden_tower::ResponseFuture<Infallible>,
            Either<crate::aggregate::Answer, BoxedAnswer>,
        >,
    >;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The policy service is ready whenever the upstream client is: always.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let answer = |r: Response<Body>| Either::Left(ready(Ok(r)));
        if req.uri().path() == METADATA_PATH {
            return answer(if matches!(*req.method(), Method::GET | Method::HEAD) {
                protected_resource(&self.callers, req.headers(), &self.mcp_path)
            } else {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                r
            });
        }
        if let Routes::Named { all, .. } = &self.routes {
            if matches!(req.uri().path(), "/mcp" | "/mcp/") {
                return match self.callers.admit_now(&mut req) {
                    Admission::Admitted => {
                        Either::Right(Either::Right(Either::Left(all.answer(req))))
                    }
                    Admission::Refused(r) => answer(r),
                    Admission::Jwt(token) => {
                        let (callers, all) = (self.callers.clone(), all.clone());
                        Either::Right(Either::Right(Either::Right(Box::pin(async move {
                            match callers.admit_jwt(&token, &mut req).await {
                                Ok(()) => all.answer(req).await,
                                Err(r) => Ok(r),
                            }
                        }))))
                    }
                };
            }
        }
        let Some(policy) = self.routes.route(req.uri().path()) else {
            return answer(self.routes.not_found(req.uri().path()));
        };
        match self.callers.admit_now(&mut req) {
            Admission::Admitted => Either::Right(Either::Left(policy.call(req))),
            Admission::Refused(r) => answer(r),
            // A JWT is checked against the identity provider's keys, which may need fetching.
            Admission::Jwt(token) => {
                let (callers, mut policy) = (self.callers.clone(), policy.clone());
                Either::Right(Either::Right(Either::Right(Box::pin(async move {
                    match callers.admit_jwt(&token, &mut req).await {
                        Ok(()) => policy.call(req).await,
                        Err(r) => Ok(r),
                    }
                }))))
            }
        }
    }
}

/// `x-request-id`: a v4 UUID, written straight into the header value (tower-http's own
/// `MakeRequestUuid` formats it through a `String` first).
#[derive(Clone, Copy)]
struct Uuids;

impl MakeRequestId for Uuids {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        HeaderValue::from_str(text).ok().map(RequestId::new)
    }
}

/// Browser clients from these origins may call (and read the session id); none by default.
fn cors(origins: &[HeaderValue]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins.iter().cloned()))
            .allow_methods([http::Method::GET, http::Method::POST, http::Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                HeaderName::from_static("mcp-session-id"),
                HeaderName::from_static("mcp-protocol-version"),
                HeaderName::from_static("last-event-id"),
            ])
            .expose_headers([
                HeaderName::from_static("mcp-session-id"),
                header::WWW_AUTHENTICATE,
            ]),
    )
}

/// What a client gets if a handler panics: a JSON-RPC error, not a dropped connection.
fn panic_answer(_: Box<dyn std::any::Any + Send + 'static>) -> Response<String> {
    tracing::error!(target: "warden::gateway", "a request handler panicked");
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null,
        "error": {"code": -32603, "message": "internal error in the gateway"}});
    let mut r = Response::new(body.to_string());
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(crate) async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
