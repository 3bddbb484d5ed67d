//! Who may call `warden serve`: static bearer tokens, JWTs from an identity provider, or
//! (`--no-auth`) anyone; and the discovery document (RFC 9728) that tells MCP clients where
//! to get a token. Everything refused here gets 401 before the upstream is touched.

use std::sync::Arc;

use http::header::HeaderValue;
use http::{HeaderMap, Request, Response, StatusCode, header};
use warden_tower::answer::json;
use warden_tower::jwt::{Claims, JwtConfig, JwtVerifier, Rejection};
use warden_tower::{Body, Grant};

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

/// What [`Callers::admit_now`] found.
pub(crate) enum Admission {
    /// The request carries its grant now.
    Admitted,
    /// The 401 to answer, before the upstream is touched.
    Refused(Response<Body>),
    /// A JWT to check with [`Callers::admit_jwt`].
    Jwt(String),
}

impl Callers {
    /// A known static token → its grant on the request; `--no-auth` → `anonymous`; a token
    /// that may be a JWT is left to [`Callers::admit_jwt`]; anything else is refused.
    pub(crate) fn admit_now<B>(&self, req: &mut Request<B>) -> Admission {
        let grant = match (&self.tokens, &self.jwt) {
            (None, None) => Arc::from("anonymous"),
            (tokens, jwt) => {
                let token = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(warden_tower::bearer_token);
                let known = tokens
                    .as_ref()
                    .zip(token)
                    .and_then(|(g, t)| g.lookup_token(t));
                match (known, jwt, token) {
                    (Some(name), _, _) => name,
                    (None, Some(_), Some(t)) if t.contains('.') => {
                        return Admission::Jwt(t.to_owned());
                    }
                    _ => return Admission::Refused(unauthorized(self, req.headers(), None)),
                }
            }
        };
        req.extensions_mut().insert(Grant(grant));
        Admission::Admitted
    }

    /// A valid JWT → its grant and claims on the request; else the 401 to answer.
    pub(crate) async fn admit_jwt<B>(
        &self,
        token: &str,
        req: &mut Request<B>,
    ) -> Result<(), Response<Body>> {
        let Some(jwt) = &self.jwt else {
            return Err(unauthorized(self, req.headers(), None));
        };
        match jwt.verify(token).await {
            Ok(v) => {
                req.extensions_mut().insert(Claims(v.claims.clone()));
                req.extensions_mut().insert(Grant::new(v.grant));
                Ok(())
            }
            Err(why) => Err(unauthorized(self, req.headers(), Some(&why))),
        }
    }
}

/// JSON-RPC error code of a 401 (the server-defined range).
pub const UNAUTHORIZED_CODE: i64 = -32000;

fn unauthorized(callers: &Callers, headers: &HeaderMap, why: Option<&Rejection>) -> Response<Body> {
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
    let mut r = json(StatusCode::UNAUTHORIZED, &body);
    // RFC 6750 / RFC 9728: say where the metadata is, and why a token was refused.
    let mut params = Vec::new();
    if callers.discovery.is_some() {
        params.push(format!(
            "resource_metadata=\"{}{METADATA_PATH}\"",
            origin(headers)
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
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_graphic()) && !h.contains('"'))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// The protected-resource metadata (RFC 9728) for MCP clients that follow the spec.
pub(crate) fn protected_resource(
    callers: &Callers,
    headers: &HeaderMap,
    mcp_path: &str,
) -> Response<Body> {
    let Some(d) = &callers.discovery else {
        let mut r = Response::new(Body::full("no JWT grants configured\n"));
        *r.status_mut() = StatusCode::NOT_FOUND;
        return r;
    };
    let servers = if d.authorization_servers.is_empty() {
        vec![d.config.issuer.clone()]
    } else {
        d.authorization_servers.clone()
    };
    let mut doc = serde_json::json!({
        "resource": format!("{}{mcp_path}", origin(headers)),
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
    });
    if !d.scopes.is_empty() {
        doc["scopes_supported"] = serde_json::json!(d.scopes);
    }
    json(StatusCode::OK, &doc)
}
