//! The admin address: health, Prometheus metrics, the approval queue and the policy in force.
//! Every route wants `Authorization: Bearer <admin token>`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{StatusCode, header};
use serde_json::{Value, json};
use warden_tower::{Answer, ApprovalDesk};

use crate::Error;
use crate::policy_file::Live;

struct Admin {
    token_digest: [u8; 32],
    /// `None`: this process refuses approvals, so there is nothing to answer here.
    desk: Option<Arc<dyn ApprovalDesk>>,
    live: Live,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

/// Binds the admin address and serves it in the background.
pub async fn start(
    addr: SocketAddr,
    token: String,
    desk: Option<Arc<dyn ApprovalDesk>>,
    live: Live,
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
        metrics,
    });
    let app = axum::Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(prometheus))
        .route("/approvals", get(list))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/deny", post(deny))
        .route("/policy", get(policy))
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
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(target: "warden::gateway", error = %e, "admin server stopped");
        }
    });
    Ok(bound)
}

async fn check_token(State(admin): State<Arc<Admin>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(warden_tower::bearer_token)
        .is_some_and(|t| crate::auth::digest(t) == admin.token_digest);
    if ok {
        next.run(req).await
    } else {
        (StatusCode::UNAUTHORIZED, "admin token required\n").into_response()
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
    let body = json!({
        "status": if store.ok { "ok" } else { "degraded" },
        "store": store,
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

async fn approve(State(admin): State<Arc<Admin>>, Path(id): Path<String>) -> Response {
    answer(&admin, &id, Answer::Approved).await
}

async fn deny(
    State(admin): State<Arc<Admin>>,
    Path(id): Path<String>,
    body: Option<Json<Value>>,
) -> Response {
    let reason =
        body.and_then(|Json(b)| b.get("reason").and_then(Value::as_str).map(str::to_owned));
    answer(&admin, &id, Answer::Denied(reason)).await
}

async fn answer(admin: &Admin, id: &str, answer: Answer) -> Response {
    let approved = answer == Answer::Approved;
    let result = match &admin.desk {
        Some(desk) => desk.answer(id, answer).await,
        None => Ok(false),
    };
    match result {
        Ok(true) => {
            tracing::info!(target: "warden::decision", id, approved, "approval answered");
            Json(json!({"answered": id})).into_response()
        }
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no pending approval {id}")})),
        )
            .into_response(),
        Err(why) => unavailable(&why),
    }
}

async fn policy(State(admin): State<Arc<Admin>>) -> Json<Value> {
    Json(json!({
        "path": admin.live.path.display().to_string(),
        "source": admin.live.source(),
        "policy": admin.live.handle.current().policy().to_value(),
    }))
}
