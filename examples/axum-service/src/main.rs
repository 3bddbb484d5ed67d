//! An axum REST service behind Warden, with nothing but the `warden` crate: load the policy,
//! add the layer, watch the file.
//!
//! ```sh
//! cargo run -p warden-example-axum -- examples/rest.pol 127.0.0.1:8790
//! curl -i localhost:8790/items/1            # allowed by the policy
//! # edit examples/rest.pol: the change applies within a second, counters kept
//! ```

use std::net::SocketAddr;

use axum::Json;
use axum::extract::Path;
use axum::routing::{get, post};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Reloads and refused edits are logged on stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("warden=info")
        .init();
    let mut args = std::env::args().skip(1);
    let policy = args.next().unwrap_or_else(|| "examples/rest.pol".into());
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8790".into())
        .parse()?;

    let gate = warden::PolicyLayer::from_path(&policy)?.http_mode();
    let app = axum::Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<u64>| async move { Json(json!({"id": id})) })
                .delete(|Path(id): Path<u64>| async move { Json(json!({"deleted": id})) }),
        )
        .route(
            "/items",
            post(|Json(item): Json<Value>| async move { Json(json!({"created": item})) }),
        )
        .layer(gate.clone());
    gate.watch()?;

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
