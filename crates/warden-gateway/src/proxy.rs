//! The upstream half of `warden serve`: forwards each request to the MCP server's URL and
//! streams the answer back as it arrives (over [`crate::http1::client`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use smallvec::SmallVec;
use tower::Service;
use warden_tower::tls::ClientTls;
use warden_tower::{Body, Forwarded, Uncollected};

use crate::http1::client::Pool;
use crate::tls::Connector;

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

/// Where requests go: the MCP endpoint's URL, taken apart once.
#[derive(Debug)]
struct Target {
    /// `host:port`, to connect to.
    addr: String,
    /// For an `https://` URL.
    tls: Option<Connector>,
    /// The `Host` header the upstream gets.
    host: HeaderValue,
    path: String,
    query: Option<String>,
}

/// A worker's client for one MCP endpoint.
#[derive(Clone)]
pub struct Upstream {
    pool: Pool,
    target: Arc<Target>,
    extra: Arc<Vec<(HeaderName, HeaderValue)>>,
    /// The client's own `Authorization` is Warden's business, not the upstream's.
    strip_authorization: bool,
    /// How long the upstream may take to send its response headers (a stream after them is
    /// never cut).
    timeout: Duration,
    /// The server's name in a gateway of several, for the log.
    server: Option<Arc<str>>,
    /// The last call's outcome, shared by every worker's client: what `/healthz` says.
    health: Health,
}

/// Whether the upstream answered the last call, and why not.
#[derive(Clone, Default, Debug)]
pub struct Health(Arc<HealthState>);

#[derive(Default, Debug)]
struct HealthState {
    /// Set while the last call failed: the usual case (up, and staying up) is one atomic
    /// read per call, no lock shared by the workers.
    down: std::sync::atomic::AtomicBool,
    why: std::sync::Mutex<Option<String>>,
}

impl Health {
    /// `None` while the upstream answers; the reason of its last failure otherwise.
    pub fn failure(&self) -> Option<String> {
        if !self.0.down.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        self.0
            .why
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, failure: Option<String>, server: Option<&str>) {
        use std::sync::atomic::Ordering::Relaxed;
        if failure.is_none() && !self.0.down.load(Relaxed) {
            return;
        }
        let up = failure.is_none();
        *self
            .0
            .why
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = failure;
        self.0.down.store(!up, Relaxed);
        metrics::gauge!("warden_upstream_up", "server" => server.unwrap_or("-").to_owned())
            .set(if up { 1.0 } else { 0.0 });
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The default of `--upstream-timeout`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

    /// `url` must be `http://` or `https://host[:port]/path`; anything else is a
    /// configuration error. An `https://` upstream is verified as `tls` says.
    pub fn new(
        url: &Uri,
        tls: &ClientTls,
        extra: Vec<(HeaderName, HeaderValue)>,
        strip_authorization: bool,
    ) -> Result<Upstream, String> {
        let https = match url.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "the upstream URL {url} must start with http:// or https://"
                ));
            }
        };
        let authority = url
            .authority()
            .ok_or_else(|| format!("the upstream URL {url} has no host"))?;
        if !https && *tls != ClientTls::default() {
            return Err(format!(
                "--upstream-ca and --upstream-client-cert are for an https:// upstream, not {url}"
            ));
        }
        let target = Target {
            addr: format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(if https { 443 } else { 80 })
            ),
            tls: if https {
                Some(Connector::new(authority.host(), tls)?)
            } else {
                None
            },
            host: HeaderValue::from_str(authority.as_str())
                .map_err(|_| format!("the upstream URL {url} has an invalid host"))?,
            path: url.path().to_owned(),
            query: url.query().map(str::to_owned),
        };
        Ok(Upstream {
            pool: Pool::default(),
            target: Arc::new(target),
            extra: Arc::new(extra),
            strip_authorization,
            timeout: Self::DEFAULT_TIMEOUT,
            server: None,
            health: Health::default(),
        })
    }

    /// The same upstream with connections of its own: a worker's connections belong to its
    /// runtime, so workers never share them.
    pub fn for_worker(&self) -> Upstream {
        Upstream {
            pool: Pool::default(),
            ..self.clone()
        }
    }

    /// The path of the MCP endpoint.
    pub fn path(&self) -> &str {
        &self.target.path
    }

    /// Whether it answered the last call (every worker's client shares it).
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Names the server in the log lines of its failures.
    pub fn server(mut self, name: Option<&str>) -> Upstream {
        self.server = name.map(Arc::from);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Upstream {
        self.timeout = timeout;
        self
    }

    /// The request head as the upstream gets it: its own path (plus the client's query),
    /// its own `Host`, no hop-by-hop headers, the configured extra headers.
    fn head(&self, parts: &http::request::Parts, body_len: usize, out: &mut Vec<u8>) {
        let t = &self.target;
        out.extend_from_slice(parts.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(t.path.as_bytes());
        let queries = [t.query.as_deref(), parts.uri.query()];
        for (i, q) in queries.into_iter().flatten().enumerate() {
            out.push(if i == 0 { b'?' } else { b'&' });
            out.extend_from_slice(q.as_bytes());
        }
        out.extend_from_slice(b" HTTP/1.1\r\n");
        crate::http1::header_line(b"host", t.host.as_bytes(), out);
        let named = connection_named(&parts.headers);
        for (name, value) in &parts.headers {
            let skip = HOP_BY_HOP.contains(&name.as_str())
                || named.contains(name)
                || *name == header::HOST
                || *name == header::CONTENT_LENGTH
                // The gateway answered the expectation itself and sends the body whole.
                || *name == header::EXPECT
                || (self.strip_authorization && *name == header::AUTHORIZATION)
                || self.extra.iter().any(|(k, _)| k == name);
            if !skip {
                crate::http1::header_line(name.as_str().as_bytes(), value.as_bytes(), out);
            }
        }
        for (k, v) in self.extra.iter() {
            crate::http1::header_line(k.as_str().as_bytes(), v.as_bytes(), out);
        }
        if body_len > 0 || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
            crate::http1::length_line(body_len, out);
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// The headers the `Connection` header names, which are hop-by-hop too.
fn connection_named(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        for n in connection_named(h) {
            h.remove(n);
        }
    }
    // Only the names that are there are removed: a removal hashes its name, and an answer
    // carries one or two of these, not all nine.
    let present: SmallVec<[HeaderName; 4]> = h
        .keys()
        .filter(|k| HOP_BY_HOP.contains(&k.as_str()))
        .cloned()
        .collect();
    for n in present {
        h.remove(n);
    }
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // Taken, not cloned: nothing after the upstream reads it.
        let forwarded = req
            .extensions_mut()
            .remove::<Forwarded>()
            .unwrap_or_default();
        let this = self.clone();
        // Dropping this future (the client went away) drops the upstream request with it.
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            // The gateway reads request bodies whole before the policy sees them, so this
            // takes what is already there.
            let body = match whole(body).await {
                Ok(b) => b,
                Err(e) => {
                    return Ok(failure(
                        StatusCode::BAD_REQUEST,
                        &forwarded,
                        &format!("could not read the request body: {e}"),
                    ));
                }
            };
            let mut request = Vec::with_capacity(512 + body.len());
            this.head(&parts, body.len(), &mut request);
            request.extend_from_slice(&body);
            let sent = this.pool.send(
                &this.target.addr,
                this.target.tls.as_ref(),
                &request,
                parts.method == Method::HEAD,
            );
            match tokio::time::timeout(this.timeout, sent).await {
                Ok(Ok((mut head, body))) => {
                    this.health.set(None, this.server.as_deref());
                    strip_hop_by_hop(&mut head.headers);
                    // Status and body pass through: clients need the upstream's 400 to
                    // fall back to an older protocol.
                    Ok(Response::from_parts(head, Body::new(body)))
                }
                Ok(Err(e)) => {
                    tracing::warn!(target: "warden::gateway", server = this.server.as_deref().unwrap_or("-"), error = %e, "upstream failed");
                    this.health.set(Some(e.to_string()), this.server.as_deref());
                    Ok(failure(
                        StatusCode::BAD_GATEWAY,
                        &forwarded,
                        &format!("upstream unreachable or invalid answer: {e}"),
                    ))
                }
                Err(_) => {
                    tracing::warn!(target: "warden::gateway", server = this.server.as_deref().unwrap_or("-"), timeout_s = this.timeout.as_secs(), "upstream timed out");
                    this.health.set(
                        Some(format!("no answer within {} s", this.timeout.as_secs())),
                        this.server.as_deref(),
                    );
                    Ok(failure(
                        StatusCode::GATEWAY_TIMEOUT,
                        &forwarded,
                        &format!(
                            "upstream sent no answer within {} s",
                            this.timeout.as_secs()
                        ),
                    ))
                }
            }
        })
    }
}

/// The body's bytes (the server has held it to `--max-message-bytes` already).
async fn whole(body: Body) -> Result<Bytes, warden_tower::BoxError> {
    warden_tower::collect(body, usize::MAX)
        .await
        .map_err(|e| match e {
            Uncollected::Failed(e) => e,
            Uncollected::TooLarge => "request body too large".into(),
        })
}

/// A JSON-RPC error for every request of the body, with an HTTP status for plain clients.
fn failure(status: StatusCode, forwarded: &Forwarded, message: &str) -> Response<Body> {
    warden_tower::answer::json(status, &forwarded.error(Forwarded::UPSTREAM_ERROR, message))
}
