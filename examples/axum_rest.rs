//! A plain axum REST API behind `PolicyLayer` in HTTP mode: each `METHOD /route` is a tool.
//!
//! ```sh
//! cargo run -p warden-e2e --bin axum_rest -- --policy examples/rest.pol --listen 127.0.0.1:8789
//! curl -i localhost:8789/items/1                  # 200
//! curl -i -X DELETE localhost:8789/items/1        # 403: the policy does not name it
//! curl -i -H 'content-type: application/json' -d '{"name":"a"}' localhost:8789/items   # 200, twice; then 429
//! ```

use std::net::SocketAddr;

use axum::Json;
use axum::extract::Path;
use axum::routing::{get, post};
use serde_json::{Value, json};
use warden_tower::PolicyLayer;

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
    }
    None
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = arg("--policy").unwrap_or_else(|| "examples/rest.pol".into());
    let listen: SocketAddr = arg("--listen")
        .unwrap_or_else(|| "127.0.0.1:8789".into())
        .parse()?;
    let text = std::fs::read_to_string(&path)?;
    let policy = match warden_dsl::load(&path, &text) {
        Ok(file) => file.policy,
        Err(e) => {
            eprintln!("{}", e.render(&path, &text, false));
            return Err("invalid policy".into());
        }
    };
    let policy = warden_policy::CompiledPolicy::new(&policy)?;

    let app = axum::Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<u64>| async move { Json(json!({"id": id, "name": "example"})) })
                .delete(|Path(id): Path<u64>| async move { Json(json!({"deleted": id})) }),
        )
        .route(
            "/items",
            post(|Json(item): Json<Value>| async move { Json(json!({"created": item})) }),
        )
        // Router::layer wraps each route, so the layer sees the matched route (`/items/{id}`).
        .layer(PolicyLayer::new(policy).http_mode());

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
