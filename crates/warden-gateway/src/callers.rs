//! Who may call `warden serve`: static bearer tokens, JWTs from an identity provider, or
//! (`--no-auth`) anyone; and the discovery document (RFC 9728) that tells MCP clients where
//! to get a token. Everything refused here gets 401 before the upstream is touched.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::HeaderValue;
use http::{StatusCode, header};
use warden_tower::Grant;
use warden_tower::jwt::{Claims, JwtConfig, JwtVerifier, Rejection};

use crate::auth::Grants;

/// JWT grants and what the discovery document (RFC 9728) tells clients.
#[derive(Debug, Clone)]
pub struct JwtOptions {
    pub config: JwtConfig,
    /// Where clients get tokens; the issuer when empty.
    pub authorization_servers: Vec<String>,
    pub scopes: Vec<String>,
}

/// Who may call: static tokens, JWTs, or (`--no-auth`) anyone.
pub(crate) struct Callers {
    /// `None`: `--no-auth`.
    pub(crate) tokens: Option<Grants>,
    pub(crate) jwt: Option<JwtVerifier>,
    pub(crate) discovery: Option<JwtOptions>,
}

/// RFC 9728's well-known path; a client finds it from the 401's `resource_metadata`.
pub(crate) const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// A known static token or a valid JWT → its grant (and a JWT's claims); anything else →
/// 401 with the reason, before the upstream is touched.
pub(crate) async fn authenticate(
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

/// JSON-RPC error code of a 401 (the server-defined range).
pub const UNAUTHORIZED_CODE: i64 = -32000;

fn unauthorized(callers: &Callers, req: &Request, why: Option<&Rejection>) -> Response {
    metrics::counter!("warden_unauthorized_total").increment(1);
    let reason = match why {
        Some(r) => format!("unauthorized: {r}"),
        None => "unauthorized: send Authorization: Bearer <token> with a token Warden knows".into(),
    };
    tracing::info!(target: "warden::gateway", reason = %reason, "request refused (401)");
    // JSON-RPC like every answer on the MCP endpoint; the id is null because the body of an
    // unauthenticated request is never read.
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null,
        "error": {"code": UNAUTHORIZED_CODE, "message": reason}});
    let mut r = (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
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
pub(crate) fn protected_resource(callers: &Callers, req: &Request, mcp_path: &str) -> Response {
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
