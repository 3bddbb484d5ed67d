//! The admin address: the console ([`crate::console`]) for people, and for scripts health,
//! Prometheus metrics, the approval queue and the policy in force. Every route but the login
//! form wants the admin token: as `Authorization: Bearer`, or a console session.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{StatusCode, header};
use serde_json::{Value, json};
use warden_tower::{Answer, ApprovalDesk};

use crate::policy_file::Live;
use crate::tls::ServerTls;
use crate::{Error, console};

pub(crate) struct Admin {
    pub(crate) token_digest: [u8; 32],
    /// `None`: this process refuses approvals, so there is nothing to answer here.
    pub(crate) desk: Option<Arc<dyn ApprovalDesk>>,
    pub(crate) live: Live,
    /// Every server's policy and health, by name (`/policy?server=`, `/healthz`).
    pub(crate) lives: Vec<(Option<String>, Live, crate::proxy::Health)>,
    /// The gateway-wide policy (`/policy?server=*`).
    gateway: Option<Live>,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    pub(crate) sessions: console::Sessions,
    /// Served over TLS: the console's cookie is `Secure` without any proxy saying so.
    pub(crate) tls: bool,
}

/// Binds the admin address and serves it in the background.
pub async fn start(
    addr: SocketAddr,
    token: String,
    desk: Option<Arc<dyn ApprovalDesk>>,
    live: Live,
    lives: Vec<(Option<String>, Live, crate::proxy::Health)>,
    gateway: Option<Live>,
    tls: Option<ServerTls>,
) -> Result<SocketAddr, Error> {
    if token.is_empty() {
        return Err(Error::Config(
            "the admin address needs a token (--admin-token)".into(),
        ));
    }
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| tracing::warn!(target: "warden::gateway", error = %e, "metrics recorder not installed"))
        .ok();
    let state = Arc::new(Admin {
        token_digest: crate::auth::digest(&token),
        desk,
        live,
        lives,
        gateway,
        metrics,
        sessions: console::Sessions::default(),
        tls: tls.is_some(),
    });
    let app = axum::Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(prometheus))
        .route("/approvals", get(list))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/deny", post(deny))
        .route("/policy", get(policy))
        .merge(console::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            check_token,
        ))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Io(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Io(e.to_string()))?;
    tokio::spawn(serve(listener, app, tls));
    Ok(bound)
}

/// Each connection over hyper (HTTP/1.1 or h2), through TLS when it is on.
async fn serve(listener: tokio::net::TcpListener, app: axum::Router, tls: Option<ServerTls>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(target: "warden::gateway", error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let (app, tls) = (TowerToHyperService::new(app.clone()), tls.clone());
        tokio::spawn(async move {
            let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let served = match tls {
                None => http.serve_connection(TokioIo::new(tcp), app).await,
                Some(tls) => match tls.accept(tcp, HANDSHAKE_DEADLINE).await {
                    Some(s) => http.serve_connection(TokioIo::new(s), app).await,
                    None => return,
                },
            };
            if let Err(e) = served {
                tracing::debug!(target: "warden::gateway", error = %e, "admin connection ended");
            }
        });
    }
}

/// How long a client of the admin address may take over its TLS handshake.
const HANDSHAKE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

async fn check_token(State(admin): State<Arc<Admin>>, req: Request, next: Next) -> Response {
    if console::is_public(req.uri().path()) {
        return next.run(req).await;
    }
    match console::access(&admin, &req) {
        console::Access::Token | console::Access::Session => next.run(req).await,
        console::Access::Forged => (
            StatusCode::FORBIDDEN,
            "a POST made with the console's cookie must carry its X-CSRF-Token\n",
        )
            .into_response(),
        console::Access::None => {
            // A person opening a page goes to the login form; a script gets a 401.
            let wants_page = req.method() == http::Method::GET
                && req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/html"));
            if wants_page {
                axum::response::Redirect::to("/login").into_response()
            } else {
                (StatusCode::UNAUTHORIZED, "admin token required\n").into_response()
            }
        }
    }
}

async fn prometheus(State(admin): State<Arc<Admin>>) -> Response {
    match &admin.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable\n",
        )
            .into_response(),
    }
}

/// 200 while the gate can decide; 503 while its counter store cannot answer (a load
/// balancer should then prefer another replica).
async fn health(State(admin): State<Arc<Admin>>) -> Response {
    let store = admin.live.handle.store_health();
    let status = if store.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // A server that does not answer is reported, but keeps the gateway in rotation: its
    // calls fail on their own, the other servers' go on.
    let servers: Vec<Value> = admin
        .lives
        .iter()
        .map(|(name, _, health)| {
            let failure = health.failure();
            json!({"name": name, "ok": failure.is_none(), "detail": failure})
        })
        .collect();
    let all_up = servers.iter().all(|s| s["ok"] == true);
    let body = json!({
        "status": if store.ok && all_up { "ok" } else { "degraded" },
        "store": store,
        "servers": servers,
    });
    (status, Json(body)).into_response()
}

async fn list(State(admin): State<Arc<Admin>>) -> Response {
    let Some(desk) = &admin.desk else {
        return Json(json!({"pending": []})).into_response();
    };
    match desk.pending().await {
        Ok(pending) => Json(json!({"pending": pending})).into_response(),
        Err(why) => unavailable(&why),
    }
}

fn unavailable(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": format!("the approval queue is unavailable: {why}")})),
    )
        .into_response()
}

/// `{"note": "…"}` (optional) goes to the audit log; on a denial it is also what the agent
/// reads (`reason` is accepted as before). An empty body, with or without a
/// `Content-Type`, is no note (`curl -X POST` sends none); a body that is not a JSON object
/// is refused with 400 and the reason.
fn note_of(body: &Bytes) -> Result<Option<String>, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let refuse = |why: String| {
        let why =
            format!("the body must be empty or a JSON object such as {{\"note\": \"…\"}}: {why}");
        Box::new((StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response())
    };
    let b: Value = serde_json::from_slice(body).map_err(|e| refuse(e.to_string()))?;
    if !b.is_object() {
        return Err(refuse(format!("found {}", warden_policy::json_kind(&b))));
    }
    Ok(["note", "reason"]
        .iter()
        .find_map(|k| b.get(*k).and_then(Value::as_str))
        .map(str::to_owned))
}

async fn approve(State(admin): State<Arc<Admin>>, Path(id): Path<String>, body: Bytes) -> Response {
    match note_of(&body) {
        Ok(note) => api_answer(&admin, &id, Answer::Approved, note.as_deref()).await,
        Err(refused) => *refused,
    }
}

async fn deny(State(admin): State<Arc<Admin>>, Path(id): Path<String>, body: Bytes) -> Response {
    match note_of(&body) {
        Ok(note) => api_answer(&admin, &id, Answer::Denied(note.clone()), note.as_deref()).await,
        Err(refused) => *refused,
    }
}

/// Answers request `id` and writes who answered, how and with what note to the audit log.
/// `Ok(false)`: no such request is pending.
pub(crate) async fn answer(
    admin: &Admin,
    id: &str,
    answer: Answer,
    author: &str,
    note: Option<&str>,
) -> Result<bool, String> {
    let Some(desk) = &admin.desk else {
        return Ok(false);
    };
    // For the audit line: what was answered (the request is gone once answered).
    let asked = desk
        .pending()
        .await
        .ok()
        .and_then(|p| p.into_iter().find(|r| r.id == id));
    let approved = answer == Answer::Approved;
    let answered = desk.answer(id, answer).await?;
    if answered {
        tracing::info!(
            target: "warden::decision",
            id,
            approved,
            author,
            note = note.unwrap_or("-"),
            tool = asked.as_ref().map_or("-", |r| r.tool.as_str()),
            grant = asked.as_ref().and_then(|r| r.grant.as_deref()).unwrap_or("-"),
            call_hash = asked.as_ref().map_or("-", |r| r.call_hash.as_str()),
            "approval answered"
        );
    }
    Ok(answered)
}

async fn api_answer(admin: &Admin, id: &str, a: Answer, note: Option<&str>) -> Response {
    match answer(admin, id, a, "admin-api", note).await {
        Ok(true) => Json(json!({"answered": id})).into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no pending approval {id}")})),
        )
            .into_response(),
        Err(why) => unavailable(&why),
    }
}

#[derive(serde::Deserialize)]
struct Which {
    server: Option<String>,
}

/// The policy in force: the first server's, or `?server=NAME`'s (with `servers`, every name),
/// or the gateway-wide one's (`?server=*`).
async fn policy(
    State(admin): State<Arc<Admin>>,
    axum::extract::Query(which): axum::extract::Query<Which>,
) -> Response {
    let live = match &which.server {
        None => &admin.live,
        Some(name) => match admin
            .lives
            .iter()
            .find(|(n, _, _)| n.as_deref() == Some(name.as_str()))
            .map(|(_, l, _)| l)
            .or(admin.gateway.as_ref().filter(|_| name == "*"))
        {
            Some(l) => l,
            None => {
                return (
                    StatusCode::NOT_FOUND,
                    Json(json!({"error": format!("no server named {name:?}")})),
                )
                    .into_response();
            }
        },
    };
    let servers: Vec<&str> = admin
        .lives
        .iter()
        .filter_map(|(n, _, _)| n.as_deref())
        .chain(admin.gateway.as_ref().map(|_| "*"))
        .collect();
    Json(json!({
        "path": live.path.display().to_string(),
        "source": live.source(),
        "policy": live.handle.current().policy().to_value(),
        "servers": servers,
    }))
    .into_response()
}
