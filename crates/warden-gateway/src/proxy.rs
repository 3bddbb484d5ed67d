//! The upstream half of `warden serve`: forwards each request to the MCP server's URL and
//! streams the answer back as it arrives.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::Service;
use warden_tower::{Body, Forwarded};

use crate::prefetch;

/// Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A pooled HTTP client aimed at one MCP endpoint.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, Body>,
    url: Uri,
    extra: Arc<Vec<(HeaderName, HeaderValue)>>,
    /// The client's own `Authorization` is Warden's business, not the upstream's.
    strip_authorization: bool,
    /// How long the upstream may take to send its response headers (a stream after them is
    /// never cut).
    timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The default of `--upstream-timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    pub fn new(
        url: Uri,
        extra: Vec<(HeaderName, HeaderValue)>,
        strip_authorization: bool,
    ) -> Upstream {
        let mut connector = HttpConnector::new();
        // An SSE answer written in two small pieces stalls ~40 ms under Nagle + delayed ACK.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Upstream {
            client,
            url,
            extra: Arc::new(extra),
            strip_authorization,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Upstream {
        self.timeout = timeout;
        self
    }

    fn rewrite(&self, mut req: Request<Body>) -> Request<Body> {
        let mut uri = self.url.clone().into_parts();
        if let (Some(q), Some(pq)) = (req.uri().query(), uri.path_and_query.as_ref()) {
            let joined = if pq.query().is_some() {
                format!("{pq}&{q}")
            } else {
                format!("{}?{q}", pq.path())
            };
            uri.path_and_query = joined.parse().ok().or(uri.path_and_query);
        }
        *req.uri_mut() = Uri::from_parts(uri).unwrap_or_else(|_| self.url.clone());
        let h = req.headers_mut();
        strip_hop_by_hop(h);
        // hyper sets Host from the upstream URI.
        h.remove(header::HOST);
        if self.strip_authorization {
            h.remove(header::AUTHORIZATION);
        }
        for (k, v) in self.extra.iter() {
            h.insert(k.clone(), v.clone());
        }
        req
    }
}

fn strip_hop_by_hop(h: &mut http::HeaderMap) {
    // Plus any header the Connection header names.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let forwarded = req
            .extensions()
            .get::<Forwarded>()
            .cloned()
            .unwrap_or_default();
        let req = self.rewrite(req);
        let client = self.client.clone();
        let timeout = self.timeout;
        // Dropping this future (the client went away) drops the upstream request with it.
        Box::pin(async move {
            match tokio::time::timeout(timeout, client.request(req)).await {
                Ok(Ok(resp)) => {
                    let (mut parts, body) = resp.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    // Status and body pass through: clients need the upstream's 400 to
                    // fall back to an older protocol.
                    Ok(Response::from_parts(parts, prefetch::gather(body).await))
                }
                Ok(Err(e)) => {
                    let why = describe(&e);
                    tracing::warn!(target: "warden::gateway", error = %why, "upstream failed");
                    Ok(failure(
                        StatusCode::BAD_GATEWAY,
                        &forwarded,
                        &format!("upstream unreachable or invalid answer: {why}"),
                    ))
                }
                Err(_) => {
                    tracing::warn!(target: "warden::gateway", timeout_s = timeout.as_secs(), "upstream timed out");
                    Ok(failure(
                        StatusCode::GATEWAY_TIMEOUT,
                        &forwarded,
                        &format!("upstream sent no answer within {} s", timeout.as_secs()),
                    ))
                }
            }
        })
    }
}

/// A JSON-RPC error for every request of the body, with an HTTP status for plain clients.
fn failure(status: StatusCode, forwarded: &Forwarded, message: &str) -> Response<Body> {
    let body = forwarded.error(Forwarded::UPSTREAM_ERROR, message);
    let mut r = Response::new(Body::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The error and its causes, one line (hyper-util's own text is only "client error (Connect)").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
