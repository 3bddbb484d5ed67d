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
}

/// Serves until the process is stopped.
pub async fn serve(opts: ServeOptions) -> Result<(), Error> {
    let (compiled, text) = policy_file::load(&opts.policy).map_err(Error::Policy)?;
    let stores = crate::state::build(compiled, opts.redis.as_ref(), opts.admin.is_some())?;
    stores.check().await;
    let layer = stores.layer.shadow(opts.shadow);
    let live = Live {
        path: opts.policy.clone(),
        source: Arc::new(RwLock::new(text)),
        handle: layer.handle(),
    };
    live.clone().watch(opts.reload_every);

    let auth = opts.grants.is_some();
    let upstream = Upstream::new(opts.upstream.clone(), opts.headers.clone(), auth);
    let grants = Arc::new(opts.grants.clone());
    let app = axum::Router::new()
        .fallback_service(layer.layer(upstream))
        .layer(axum::middleware::from_fn_with_state(grants, authenticate));

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

/// Known bearer token → its grant; anything else → 401 before the upstream is touched.
async fn authenticate(
    State(grants): State<Arc<Option<Grants>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let grant = match grants.as_ref() {
        None => "anonymous".to_owned(),
        Some(g) => {
            let auth = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match g.lookup(auth) {
                Some(name) => name.to_owned(),
                None => {
                    metrics::counter!("warden_unauthorized_total").increment(1);
                    tracing::info!(target: "warden::gateway", "request without a known token refused (401)");
                    return unauthorized();
                }
            }
        }
    };
    req.extensions_mut().insert(Grant::new(grant));
    next.run(req).await
}

fn unauthorized() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"error":"unauthorized: send Authorization: Bearer <token> with a token Warden knows"}"#,
    )
        .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}
