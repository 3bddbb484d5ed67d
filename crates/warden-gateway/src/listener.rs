//! Accepting clients: at most `max_connections` at once (beyond it new ones wait in the
//! listen backlog; open ones keep working), a deadline for request headers and for idle
//! keep-alive connections, and a graceful stop that lets calls in flight finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How the gateway treats slow, idle and numerous clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A client must send a whole request head within this time, and an idle keep-alive
    /// connection is closed after it.
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// After SIGTERM/SIGINT, calls in flight get this long to finish.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves, then drains. Workers sharing one
/// listening socket share `permits` too (`limits.max_connections` of them in all).
pub async fn run(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    permits: Arc<Semaphore>,
    stop: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(stop);
    loop {
        // Past the cap, stop accepting: new clients wait in the backlog.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut stop => break,
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
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = app.clone().map_request(move |mut req: http::Request<_>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
            req
        });
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let first_byte = limits.header_read_timeout;
        tokio::spawn(async move {
            // hyper's header deadline starts once bytes arrive, and telling HTTP/1 from
            // HTTP/2 waits for bytes too: a client that connects and says nothing is cut here.
            let mut byte = [0u8; 1];
            if !matches!(
                tokio::time::timeout(first_byte, stream.peek(&mut byte)).await,
                Ok(Ok(1..))
            ) {
                drop(permit);
                return;
            }
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(svc),
            );
            let _ = watcher.watch(conn.into_owned()).await;
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(target: "warden::gateway", "stopping: no new connections; waiting for calls in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(target: "warden::gateway", grace_s = limits.shutdown_grace.as_secs(), "calls still in flight after the grace period were cut");
        }
    }
}
