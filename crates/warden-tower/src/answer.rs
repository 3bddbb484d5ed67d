//! What the layer says when it stops something: JSON-RPC answers for MCP, status codes for
//! plain HTTP.

use http::{HeaderValue, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::body::Body;

/// JSON-RPC error code for a call refused by policy, when denials are errors.
pub const POLICY_DENIED_CODE: i64 = -32001;

/// How a denied `tools/call` is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DenyStyle {
    /// A tool result with `isError: true`: the agent reads the reason and adapts (MCP practice).
    #[default]
    ToolResult,
    /// A JSON-RPC error with code [`POLICY_DENIED_CODE`].
    JsonRpcError,
}

/// The prefix every denial text starts with.
pub const DENIED_PREFIX: &str = "[POLICY DENIED]";

/// Protocol versions from this one on tag every result with `resultType`.
pub(crate) const RESULT_TYPE_SINCE: &str = "2026-07-28";

/// Marks an answer the layer wrote itself to refuse every call of a request before anything
/// was tried (its policy, its limits, an approval nobody could be asked for). A layer in
/// front of this one reads it and gives back what it charged for those calls. A refusal
/// once somebody was asked is not marked: both gates keep their charges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused;

pub(crate) fn denied(id: &Value, message: &str, style: DenyStyle, protocol: Option<&str>) -> Value {
    let text = format!("{DENIED_PREFIX} {message}");
    match style {
        DenyStyle::ToolResult => {
            let mut result = json!({"content": [{"type": "text", "text": text}], "isError": true});
            // Dates compare as strings; older clients may reject the unknown key.
            if protocol.is_some_and(|v| v >= RESULT_TYPE_SINCE) {
                result["resultType"] = json!("complete");
            }
            json!({"jsonrpc": "2.0", "id": id, "result": result})
        }
        DenyStyle::JsonRpcError => json!({
            "jsonrpc": "2.0", "id": id,
            "error": {"code": POLICY_DENIED_CODE, "message": text}
        }),
    }
}

/// The JSON-RPC requests of a body the layer forwarded, set as a request extension so that
/// whatever answers for the upstream (the gateway's proxy) can name them when it fails.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forwarded {
    /// The ids of the requests in the body (notifications have none).
    pub ids: Vec<Value>,
    pub batch: bool,
}

impl Forwarded {
    /// JSON-RPC error code for a failure between the gateway and the upstream.
    pub const UPSTREAM_ERROR: i64 = -32603;

    /// A JSON-RPC error answering every request of the body (`id: null` if it had none).
    pub fn error(&self, code: i64, message: &str) -> Value {
        if self.batch && !self.ids.is_empty() {
            Value::Array(
                self.ids
                    .iter()
                    .map(|id| rpc_error(id, code, message))
                    .collect(),
            )
        } else {
            rpc_error(self.ids.first().unwrap_or(&Value::Null), code, message)
        }
    }
}

pub(crate) fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// `value` as an `application/json` answer with `status`.
pub fn json(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(Body::full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Plain HTTP mode: 403 with the reason.
pub(crate) fn forbidden(message: &str) -> Response<Body> {
    json(
        StatusCode::FORBIDDEN,
        &json!({"error": format!("{DENIED_PREFIX} {message}")}),
    )
}

/// Plain HTTP mode: 429 with `Retry-After` and a `RateLimit` header naming the counter.
pub(crate) fn too_many(message: &str, counter: &str, retry_after_secs: u64) -> Response<Body> {
    let mut r = json(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({"error": format!("{DENIED_PREFIX} {message}")}),
    );
    let h = r.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    let name: String = counter
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"')
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{name}\";r=0;t={retry_after_secs}")) {
        h.insert("ratelimit", v);
    }
    r
}

pub(crate) fn status(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &json!({"error": message}))
}
