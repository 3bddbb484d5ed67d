//! `warden serve`: the policy layer in front of an MCP server reached over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode, Uri, header};
use tower::{Layer, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use warden_tower::jwt::JwtVerifier;
use warden_tower::redis::RedisConfig;

use crate::auth::Grants;
use crate::callers::{Callers, JwtOptions, METADATA_PATH, authenticate, protected_resource};
use crate::listener::{self, Limits};
use crate::policy_file::{self, Live};
use crate::proxy::Upstream;
use crate::{Error, admin};

/// Everything `warden serve` is told on the command line.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub policy: PathBuf,
    pub upstream: Uri,
    pub listen: SocketAddr,
    /// Added to every upstream request (upstream credentials).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `None`: `--no-auth`, every caller is the grant `anonymous`.
    pub grants: Option<Grants>,
    pub admin: Option<(SocketAddr, String)>,
    pub shadow: bool,
    pub reload_every: Duration,
    /// Counters and approvals shared with other replicas; `None`: in this process.
    pub redis: Option<RedisConfig>,
    /// Callers with JWTs from an identity provider, beside (or instead of) static tokens.
    pub jwt: Option<JwtOptions>,
    /// How long the upstream may take to send response headers.
    pub upstream_timeout: Duration,
    /// The largest request body; a larger one is answered 413 with a JSON-RPC error.
    pub max_message_bytes: usize,
    /// Slow, idle and numerous clients; the graceful stop.
    pub limits: Limits,
    /// Origins whose browser-based MCP clients (the MCP Inspector, say) may call.
    pub cors_origins: Vec<HeaderValue>,
}

/// Serves until the process is stopped.
pub async fn serve(opts: ServeOptions) -> Result<(), Error> {
    let (compiled, text) = policy_file::load(&opts.policy).map_err(Error::Policy)?;
    let stores = crate::state::build(compiled, opts.redis.as_ref(), opts.admin.is_some())?;
    stores.check().await;
    let layer = stores
        .layer
        .shadow(opts.shadow)
        .max_body_bytes(opts.max_message_bytes);
    let live = Live {
        path: opts.policy.clone(),
        source: Arc::new(RwLock::new(text)),
        handle: layer.handle(),
    };
    live.clone().watch(opts.reload_every);

    let auth = opts.grants.is_some() || opts.jwt.is_some();
    let upstream = Upstream::new(opts.upstream.clone(), opts.headers.clone(), auth)
        .timeout(opts.upstream_timeout);
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
    let callers = Arc::new(Callers {
        tokens: opts.grants.clone(),
        jwt,
        discovery: opts.jwt.clone(),
    });
    let mcp_path = opts.upstream.path().to_owned();
    let app = axum::Router::new()
        .route(
            METADATA_PATH,
            axum::routing::get(move |State(c): State<Arc<Callers>>, req: Request| {
                let path = mcp_path.clone();
                async move { protected_resource(&c, &req, &path) }
            }),
        )
        .fallback_service(layer.layer(upstream))
        .layer(axum::middleware::from_fn_with_state(
            callers.clone(),
            authenticate,
        ))
        .with_state(callers);
    // tower-http around it all, outermost first: a panic is a JSON-RPC 500, not a dropped
    // connection; CORS answers preflights before anything asks for a token; tokens are
    // marked sensitive for every trace; each request gets an id the audit line carries.
    let app = app.layer(
        ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(panic_answer))
            .option_layer(cors(&opts.cors_origins))
            .layer(SetSensitiveRequestHeadersLayer::new([
                header::AUTHORIZATION,
                header::COOKIE,
            ]))
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id()),
    );

    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| Error::Io(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Io(e.to_string()))?;
    if let Some((admin_addr, token)) = &opts.admin {
        let bound = admin::start(*admin_addr, token.clone(), stores.desk, live.clone()).await?;
        println!("admin on http://{bound}/");
    }
    println!("listening on http://{addr}/ -> {}", opts.upstream);
    tracing::info!(target: "warden::gateway", %addr, upstream = %opts.upstream, auth, state = %stores.description, "serving");
    listener::run(listener, app, opts.limits, shutdown()).await;
    Ok(())
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
