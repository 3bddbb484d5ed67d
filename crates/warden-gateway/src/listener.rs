//! Accepting clients (over TLS with `--tls-cert`): at most `max_connections` at once (beyond it new ones wait in the
//! listen backlog; open ones keep working), a deadline for request headers and for idle
//! keep-alive connections, and a graceful stop that lets calls in flight finish.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::Service;
use warden_tower::{Body, BoxError};

use crate::http1::server::{self, Settings};
use crate::tls::ServerTls;

/// How the gateway treats slow, idle and numerous clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A client must send a whole request head within this time, and an idle keep-alive
    /// connection is closed after it.
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// Client sessions the aggregated `/mcp` endpoint keeps; past it the longest idle one
    /// is closed, with its servers' sessions.
    pub max_sessions: usize,
    /// After SIGTERM/SIGINT, calls in flight get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_sessions: 10_000,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then drains. Workers sharing one
/// listening socket share `permits` too (`limits.max_connections` of them in all).
pub async fn run<S, B>(
    listener: TcpListener,
    app: S,
    limits: Limits,
    max_body: usize,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
    tls: Option<ServerTls>,
) where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let settings = Settings {
        header_read_timeout: limits.header_read_timeout,
        max_body,
    };
    // Clients keep their connections alive; a count that grows with the calls means one of
    // them (or the gateway's answers) does not let it. Taken once: the recorder (admin) is
    // installed before any worker accepts, and a lookup per connection is wasted work.
    let accepted = metrics::counter!("warden_connections_accepted_total");
    loop {
        // Past the cap, stop accepting: new clients wait in the backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    tracing::warn!(target: "warden::gateway", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let _ = stream.set_nodelay(true);
        accepted.increment(1);
        let (app, stop, tls) = (app.clone(), stop.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => server::connection(stream, addr, app, settings, stop).await,
                // The handshake is held to the same deadline as a request head.
                Some(tls) => {
                    if let Some(s) = tls.accept(stream, settings.header_read_timeout).await {
                        server::connection(s, addr, app, settings, stop).await;
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(target: "warden::gateway", "stopping: no new connections; waiting for calls in flight");
    // Every connection holds a permit until it ends: all of them back means all are done.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    tokio::select! {
        _ = permits.acquire_many(all) => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(target: "warden::gateway", grace_s = limits.shutdown_grace.as_secs(), "calls still in flight after the grace period were cut");
        }
    }
}
