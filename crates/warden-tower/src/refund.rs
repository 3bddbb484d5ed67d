//! Giving charges back when the server answers a call with a JSON-RPC error, for limits
//! written `refund on error` (Intercept's reserve / rollback): a failed call costs nothing.
//!
//! The answer is read as it passes — a JSON body whole, an SSE stream event by event —
//! and never changed. An answer that cannot be read keeps the charge (the limit's side).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::body::{Body, BoxError, ContentKind};
use crate::limit::{Charge, CounterStore};

/// Per request id, the charges to give back if its answer is an error.
pub(crate) struct Refunds {
    store: Arc<dyn CounterStore>,
    pending: Mutex<Vec<(Value, Vec<Charge>)>>,
}

impl Refunds {
    /// `None` when no charge may be given back (the usual case: nothing to read).
    pub(crate) fn new(
        store: Arc<dyn CounterStore>,
        pending: Vec<(Value, Vec<Charge>)>,
    ) -> Option<Refunds> {
        (!pending.is_empty()).then(|| Refunds {
            store,
            pending: Mutex::new(pending),
        })
    }

    /// Reads one JSON-RPC message (or batch) of the answer.
    pub(crate) fn settle(&self, msg: &Value) {
        match msg {
            Value::Array(items) => items.iter().for_each(|m| self.settle(m)),
            Value::Object(m) if m.get("error").is_some_and(|e| !e.is_null()) => {
                let Some(id) = m.get("id") else { return };
                let charges = {
                    let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    match pending.iter().position(|(i, _)| i == id) {
                        Some(at) => pending.swap_remove(at).1,
                        None => return,
                    }
                };
                let store = self.store.clone();
                metrics::counter!("warden_refunds_total").increment(1);
                tracing::debug!(target: "warden::decision", id = %id, "charge given back: the server answered with an error");
                tokio::spawn(async move { store.refund(&charges).await });
            }
            _ => {}
        }
    }
}

/// The answer, read for errors on its way to the client.
pub(crate) async fn watch<B>(resp: Response<B>, refunds: Refunds, max: usize) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let kind = crate::body::content_kind(resp.headers());
    let (parts, body) = resp.into_parts();
    match kind {
        ContentKind::EventStream => {
            return Response::from_parts(parts, Body::observed(Body::new(body), Arc::new(refunds)));
        }
        ContentKind::Other => return Response::from_parts(parts, Body::new(body)),
        ContentKind::Json => {}
    }
    match http_body_util::Limited::new(body, max.max(16 << 20))
        .collect()
        .await
    {
        Ok(c) => {
            let bytes = c.to_bytes();
            if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                refunds.settle(&v);
            }
            Response::from_parts(parts, Body::full(bytes))
        }
        // Too large or cut off: the client gets the same failure the gateway would give.
        Err(_) => {
            let v = crate::answer::rpc_error(
                &Value::Null,
                crate::answer::Forwarded::UPSTREAM_ERROR,
                "could not read the upstream's answer (too large or cut off)",
            );
            crate::answer::json(http::StatusCode::BAD_GATEWAY, &v)
        }
    }
}
