//! Plain HTTP mode: each `METHOD /route` is a tool; refusals are 403 and 429.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use serde_json::Value;
use tower::Service;
use warden_policy::Outcome;

use crate::answer;
use crate::body::{Body, BoxError};
use crate::layer::Shared;
use crate::limit::Limited;
use crate::observe;
use crate::service::{Caller, Verdict, boxed, log, read_body};

/// Plain HTTP mode: the tool is `METHOD /route`, the arguments are the query string and a
/// JSON object body.
pub(crate) async fn plain_http<S, ReqB, ResB>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<ReqB>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<ResB>>,
    ReqB: http_body::Body<Data = Bytes> + Send + 'static,
    ReqB::Error: Into<BoxError>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let route = route_of(&parts);
    let tool = format!("{} {route}", parts.method);
    let mut args = serde_json::Map::new();
    for pair in parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"));
    let body = if is_json {
        let bytes = match read_body(&shared, &parts.headers, body).await {
            Ok(b) => b,
            Err(crate::service::Unread(status, why)) => return Ok(answer::status(status, &why)),
        };
        if !bytes.is_empty() {
            match warden_policy::strict_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => args.extend(m),
                Ok(_) => {}
                Err(e) => {
                    observe::refused_request("parse");
                    return Ok(answer::status(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid JSON body: {e}"),
                    ));
                }
            }
        }
        Body::full(bytes)
    } else {
        Body::new(body)
    };
    let args = Value::Object(args);
    let enforcer = shared.state.load_full();
    let mut caller = Caller::of(&shared, &parts);
    caller.read_counters(&shared, &enforcer).await;
    let v = Verdict::decide(
        &enforcer,
        &caller,
        Value::Null,
        warden_policy::Kind::Tool,
        &tool,
        Some(&args),
        shared.config.shadow,
    );
    if v.outcome == Outcome::Deny {
        log(&caller, &v, "deny", &v.rule, started.elapsed(), v.shadow);
        if !v.shadow {
            return Ok(answer::forbidden(&v.message));
        }
    } else if let Err(limited) = enforcer
        .counters
        .charge(&enforcer.policy, shared.store.as_ref(), &v.charges)
        .await
    {
        log(
            &caller,
            &v,
            "limited",
            limited.rule(),
            started.elapsed(),
            v.shadow,
        );
        if !v.shadow {
            observe::limited(&limited);
            return Ok(match (&limited, limited.retry_after_secs()) {
                (_, Some(secs)) => answer::too_many(&limited.message(), limited.counter(), secs),
                (Limited::Unavailable { .. }, None) => answer::status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("{} {}", answer::DENIED_PREFIX, limited.message()),
                ),
                (_, None) => answer::forbidden(&limited.message()),
            });
        }
    } else if let Some(approval) = v.approval.clone().filter(|_| !v.shadow) {
        if let Err(reason) = v.ask(&shared, &caller, &approval).await {
            log(&caller, &v, "refused", &v.rule, started.elapsed(), false);
            return Ok(answer::forbidden(&reason));
        }
        log(&caller, &v, "approved", &v.rule, started.elapsed(), false);
    } else {
        log(&caller, &v, "allow", &v.rule, started.elapsed(), false);
    }
    let resp = inner.call(Request::from_parts(parts, body)).await?;
    Ok(boxed(resp))
}

#[cfg(feature = "axum")]
fn route_of(parts: &http::request::Parts) -> String {
    parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned())
}

#[cfg(not(feature = "axum"))]
fn route_of(parts: &http::request::Parts) -> String {
    parts.uri.path().to_owned()
}
