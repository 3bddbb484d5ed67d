//! Entry points for the fuzz targets in `tests/fuzz` (`cargo fuzz`): the layer's readers of
//! outsiders' bytes, reachable without a server. Not a stable API.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use warden_policy::CompiledPolicy;

use crate::body::Body;
use crate::inspect::{self, Message};

/// What the layer read from a POST body: per message, its method (`None` for responses and
/// notifications) and, for `tools/call`, the tool name and arguments it decides on. `Err`:
/// the body is refused before any decision.
#[allow(clippy::type_complexity)]
pub fn inspect(
    body: &[u8],
) -> Result<Vec<(Option<String>, Option<(String, Option<Value>)>)>, String> {
    let parsed = inspect::parse(body).map_err(|r| format!("{r:?}"))?;
    Ok(parsed
        .messages
        .iter()
        .map(|m| match m {
            Message::Request { method, .. } => {
                let call = m.tool_call().map(|(_, p)| {
                    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
                    let args = p.get("arguments").filter(|a| !a.is_null()).cloned();
                    (name.to_owned(), args)
                });
                (Some(method.clone()), call)
            }
            _ => (None, None),
        })
        .collect())
}

/// An SSE body, delivered in `chunks`, as it leaves the `tools/list` filter for the requests
/// `ids` under `policy`.
pub async fn sse_filter(chunks: Vec<Bytes>, ids: Vec<Value>, policy: Arc<CompiledPolicy>) -> Bytes {
    let (tx, rx) = tokio::sync::mpsc::channel(chunks.len().max(1));
    for c in chunks {
        let _ = tx.try_send(c);
    }
    drop(tx);
    let body = Body::sse_filtered(Body::channel(rx), ids, policy);
    match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    }
}
