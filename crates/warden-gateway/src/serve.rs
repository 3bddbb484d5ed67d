//! `warden serve`: the policy layer in front of an MCP server reached over HTTP.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use http::header::{HeaderName, HeaderValue};
use http::{StatusCode, Uri, header};
use tower::Layer;
use warden_tower::Grant;
use warden_tower::jwt::{Claims, JwtConfig, JwtVerifier, Rejection};
use warden_tower::redis::RedisConfig;

use crate::auth::Grants;
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
}

/// JWT grants and what the discovery document (RFC 9728) tells clients.
#[derive(Debug, Clone)]
pub struct JwtOptions {
    pub config: JwtConfig,
    /// Where clients get tokens; the issuer when empty.
    pub authorization_servers: Vec<String>,
    pub scopes: Vec<String>,
}

/// Who may call: static tokens, JWTs, or (`--no-auth`) anyone.
struct Callers {
    /// `None`: `--no-auth`.
    tokens: Option<Grants>,
    jwt: Option<JwtVerifier>,
    discovery: Option<JwtOptions>,
}

/// RFC 9728's well-known path; a client finds it from the 401's `resource_metadata`.
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

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
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown())
    .await
    .map_err(|e| Error::Io(e.to_string()))
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

/// A known static token or a valid JWT → its grant (and a JWT's claims); anything else →
/// 401 with the reason, before the upstream is touched.
async fn authenticate(
    State(callers): State<Arc<Callers>>,
    mut req: Request,
    next: Next,
) -> Response {
    if req.uri().path() == METADATA_PATH {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(warden_tower::bearer_token)
        .map(str::to_owned);
    let grant = match (&callers.tokens, &callers.jwt) {
        (None, None) => "anonymous".to_owned(),
        (tokens, jwt) => {
            let known = tokens
                .as_ref()
                .zip(token.as_deref())
                .and_then(|(g, t)| g.lookup_token(t));
            match (known, jwt, token.as_deref()) {
                (Some(name), _, _) => name.to_owned(),
                (None, Some(jwt), Some(t)) if t.contains('.') => match jwt.verify(t).await {
                    Ok(v) => {
                        req.extensions_mut().insert(Claims(v.claims.clone()));
                        v.grant
                    }
                    Err(why) => return unauthorized(&callers, &req, Some(&why)),
                },
                _ => return unauthorized(&callers, &req, None),
            }
        }
    };
    req.extensions_mut().insert(Grant::new(grant));
    next.run(req).await
}

fn unauthorized(callers: &Callers, req: &Request, why: Option<&Rejection>) -> Response {
    metrics::counter!("warden_unauthorized_total").increment(1);
    let reason = match why {
        Some(r) => format!("unauthorized: {r}"),
        None => "unauthorized: send Authorization: Bearer <token> with a token Warden knows".into(),
    };
    tracing::info!(target: "warden::gateway", reason = %reason, "request refused (401)");
    let mut r = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({"error": reason}).to_string(),
    )
        .into_response();
    // RFC 6750 / RFC 9728: say where the metadata is, and why a token was refused.
    let mut params = Vec::new();
    if callers.discovery.is_some() {
        params.push(format!(
            "resource_metadata=\"{}{METADATA_PATH}\"",
            origin(req)
        ));
    }
    if let Some(r) = why {
        let text = r.to_string().replace('"', "'");
        params.push("error=\"invalid_token\"".to_owned());
        params.push(format!("error_description=\"{text}\""));
    }
    let challenge = if params.is_empty() {
        "Bearer".to_owned()
    } else {
        format!("Bearer {}", params.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// `http://host:port` as the client addressed us.
fn origin(req: &Request) -> String {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_graphic()) && !h.contains('"'))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The protected-resource metadata (RFC 9728) for MCP clients that follow the spec.
fn protected_resource(callers: &Callers, req: &Request, mcp_path: &str) -> Response {
    let Some(d) = &callers.discovery else {
        return (StatusCode::NOT_FOUND, "no JWT grants configured\n").into_response();
    };
    let servers = if d.authorization_servers.is_empty() {
        vec![d.config.issuer.clone()]
    } else {
        d.authorization_servers.clone()
    };
    let mut doc = serde_json::json!({
        "resource": format!("{}{mcp_path}", origin(req)),
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
    });
    if !d.scopes.is_empty() {
        doc["scopes_supported"] = serde_json::json!(d.scopes);
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}
