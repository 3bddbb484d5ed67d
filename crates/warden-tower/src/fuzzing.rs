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
///
/// The body is also read without keeping arguments (as the layer does when nothing looks
/// at them); that reading must accept, refuse and name exactly the same, or this panics.
#[allow(clippy::type_complexity)]
pub fn inspect(
    body: &[u8],
) -> Result<Vec<(Option<String>, Option<(String, Option<Value>)>)>, String> {
    let kept = reading(inspect::parse(body, true));
    let unkept = reading(inspect::parse(body, false));
    assert_eq!(
        names(&kept),
        names(&unkept),
        "reading a body with and without its arguments differs"
    );
    kept
}

/// The methods and tool names of a reading.
#[allow(clippy::type_complexity)]
fn names(
    r: &Result<Vec<(Option<String>, Option<(String, Option<Value>)>)>, String>,
) -> Result<Vec<(Option<String>, Option<String>)>, String> {
    r.clone().map(|ms| {
        ms.into_iter()
            .map(|(m, c)| (m, c.map(|(n, _)| n)))
            .collect()
    })
}

#[allow(clippy::type_complexity)]
fn reading(
    parsed: Result<inspect::Body<'_>, inspect::Refusal>,
) -> Result<Vec<(Option<String>, Option<(String, Option<Value>)>)>, String> {
    let parsed = parsed.map_err(|r| format!("{r:?}"))?;
    Ok(parsed
        .messages
        .iter()
        .map(|m| match m {
            Message::Request { method, .. } => {
                let call = m.tool_call().map(|(_, p)| {
                    let name = p.name.as_deref().unwrap_or_default();
                    (name.to_owned(), p.arguments().cloned())
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
    let ids = ids.into_iter().map(|id| (id, crate::List::Tools)).collect();
    let view = crate::View::new(policy, ids, None);
    let body = Body::sse_filtered(Body::channel(rx), std::sync::Arc::new(view));
    match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    }
}
