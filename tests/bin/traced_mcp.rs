//! An rmcp server for the traces test (issue 29) that writes down, for every tool call, the
//! trace context it arrived with: the `traceparent` header and `params._meta.traceparent`.
//!
//! ```sh
//! traced_mcp --listen 127.0.0.1:0 --record calls.jsonl    # Streamable HTTP at /mcp
//! traced_mcp --stdio --record calls.jsonl                 # over stdin and stdout
//! ```
//!
//! One JSON line per call: `{"tool": …, "header": …, "meta": …}` (`null` where absent).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct TextArgs {
    text: String,
}

#[derive(Clone)]
struct Traced {
    tool_router: ToolRouter<Self>,
    record: Arc<Mutex<std::fs::File>>,
}

impl Traced {
    /// Writes down what `tool`'s request carried.
    fn note(&self, tool: &str, cx: &RequestContext<RoleServer>) {
        let header = cx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("traceparent"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let meta = serde_json::to_value(&cx.meta)
            .ok()
            .and_then(|m| m.get("traceparent").cloned())
            .unwrap_or(Value::Null);
        let line = json!({"tool": tool, "header": header, "meta": meta});
        if let Ok(mut f) = self.record.lock() {
            let _ = writeln!(f, "{line}");
        }
    }
}

#[tool_router]
impl Traced {
    #[tool(description = "Echo the given text")]
    async fn echo(
        &self,
        Parameters(TextArgs { text }): Parameters<TextArgs>,
        cx: RequestContext<RoleServer>,
    ) -> String {
        self.note("echo", &cx);
        text
    }

    #[tool(description = "Create a personal access token")]
    async fn create_token(
        &self,
        Parameters(TextArgs { text }): Parameters<TextArgs>,
        cx: RequestContext<RoleServer>,
    ) -> String {
        self.note("create_token", &cx);
        format!("token for {text}")
    }

    #[tool(description = "Move money")]
    async fn transfer(
        &self,
        Parameters(TextArgs { text }): Parameters<TextArgs>,
        cx: RequestContext<RoleServer>,
    ) -> String {
        self.note("transfer", &cx);
        format!("moved to {text}")
    }

    #[tool(description = "Fail after 300 ms (a tool error that ends a span late)")]
    async fn slow_fail(
        &self,
        Parameters(TextArgs { text }): Parameters<TextArgs>,
        cx: RequestContext<RoleServer>,
    ) -> Result<String, String> {
        self.note("slow_fail", &cx);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        Err(format!("could not {text}"))
    }

    #[tool(description = "Reboot an instance (the test's policy denies it)")]
    async fn reboot_instance(
        &self,
        Parameters(TextArgs { text }): Parameters<TextArgs>,
        cx: RequestContext<RoleServer>,
    ) -> String {
        self.note("reboot_instance", &cx);
        format!("rebooted {text}")
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Traced {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("traced", env!("CARGO_PKG_VERSION")))
    }
}

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
    let path = PathBuf::from(arg("--record").ok_or("--record FILE is required")?);
    let record = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?,
    ));
    if std::env::args().any(|a| a == "--stdio") {
        use rmcp::ServiceExt;
        let server = Traced {
            tool_router: Traced::tool_router(),
            record,
        }
        .serve(rmcp::transport::stdio())
        .await?;
        server.waiting().await?;
        return Ok(());
    }
    let listen: SocketAddr = arg("--listen")
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let mcp = StreamableHttpService::new(
        move || {
            Ok(Traced {
                tool_router: Traced::tool_router(),
                record: record.clone(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(["localhost", "127.0.0.1"]),
    );
    let app = axum::Router::new().nest_service("/mcp", mcp);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}/mcp", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
