//! An MCP server (rmcp's streamable HTTP service in axum) behind Warden's `PolicyLayer`.
//!
//! ```sh
//! cargo run -p warden-e2e --bin axum_mcp -- --policy examples/demo.pol --listen 127.0.0.1:8788
//! ```
//! then point any MCP client at `http://127.0.0.1:8788/mcp`. `delete_instance` is hidden,
//! `create_token` is limited to 30 a minute per bearer token, `transfer` needs `amount <= 100`,
//! and anything the policy does not name is denied.

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation, ListPromptsResult,
    ListResourcesResult, PaginatedRequestParams, Prompt, PromptArgument, PromptMessage,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, Role, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use warden_tower::PolicyLayer;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// Text to send back.
    text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct CityArgs {
    city: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct NameArgs {
    name: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct IdArgs {
    id: u64,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct TransferArgs {
    amount: f64,
    to: String,
}

/// A handful of tools standing in for a real server's catalog.
#[derive(Clone)]
struct Demo {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Demo {
    fn new() -> Self {
        Demo {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Echo the given text")]
    async fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Add two integers")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        a.saturating_add(b).to_string()
    }

    #[tool(description = "Today's weather in a city")]
    fn get_weather(&self, Parameters(CityArgs { city }): Parameters<CityArgs>) -> String {
        format!("Sunny in {city}")
    }

    #[tool(description = "Create a personal access token")]
    fn create_token(&self, Parameters(NameArgs { name }): Parameters<NameArgs>) -> String {
        format!("token for {name}: tok_example")
    }

    #[tool(description = "Move money")]
    fn transfer(
        &self,
        Parameters(TransferArgs { amount, to }): Parameters<TransferArgs>,
    ) -> String {
        format!("sent {amount} to {to}")
    }

    #[tool(description = "Delete an instance (hidden by the policy)")]
    fn delete_instance(&self, Parameters(IdArgs { id }): Parameters<IdArgs>) -> String {
        format!("deleted {id}")
    }

    #[tool(description = "Reboot an instance (not named by the policy, so denied)")]
    fn reboot_instance(&self, Parameters(IdArgs { id }): Parameters<IdArgs>) -> String {
        format!("rebooted {id}")
    }
}

/// The documents the server offers as resources: a public one and an internal one.
const DOCS: [(&str, &str); 2] = [
    ("docs://public/readme", "Warden demo: a public document."),
    ("docs://internal/payroll", "Internal: salaries."),
];

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Demo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_prompts()
                .build(),
        )
        .with_server_info(Implementation::new(
            "warden-demo",
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        let docs = DOCS
            .iter()
            .map(|(uri, _)| Resource::new(*uri, *uri))
            .collect();
        Ok(ListResourcesResult::with_all_items(docs))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        match DOCS.iter().find(|(uri, _)| *uri == request.uri) {
            Some((uri, text)) => Ok(ReadResourceResponse::Complete(ReadResourceResult::new(
                vec![ResourceContents::text(*text, *uri)],
            ))),
            None => Err(McpError::resource_not_found(request.uri, None)),
        }
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let prompts = vec![
            Prompt::new(
                "greet",
                Some("Greet someone"),
                Some(vec![PromptArgument::new("name")]),
            ),
            Prompt::new(
                "debug_dump",
                Some("Dump internal state"),
                None::<Vec<PromptArgument>>,
            ),
        ];
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let name = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("name"))
            .and_then(|v| v.as_str())
            .unwrap_or("you");
        let text = match request.name.as_str() {
            "greet" => format!("Say hello to {name}."),
            "debug_dump" => "Dump everything.".to_owned(),
            other => return Err(McpError::invalid_params(format!("no prompt {other}"), None)),
        };
        Ok(GetPromptResponse::Complete(GetPromptResult::new(vec![
            PromptMessage::new_text(Role::User, text),
        ])))
    }
}

fn load_policy(path: &str) -> Result<warden_policy::CompiledPolicy, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let file = warden_dsl::load(path, &text).map_err(|e| e.render(path, &text, false))?;
    warden_policy::CompiledPolicy::new(&file.policy).map_err(|e| format!("{path}: {e}"))
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warden=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let policy_path = arg("--policy").unwrap_or_else(|| "examples/demo.pol".into());
    let listen: SocketAddr = arg("--listen")
        .unwrap_or_else(|| "127.0.0.1:8788".into())
        .parse()?;

    let mcp = StreamableHttpService::new(
        || Ok(Demo::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(["localhost", "127.0.0.1"]),
    );
    let mut app = axum::Router::new().nest_service("/mcp", mcp);
    // `--no-policy`: the bare server, as an upstream for `warden serve` and its load bench
    // (no policy file is read, so it starts from any directory).
    if !std::env::args().any(|a| a == "--no-policy") {
        let policy = load_policy(&policy_path).map_err(|e| {
            eprintln!("{e}");
            "invalid policy"
        })?;
        app = app.layer(PolicyLayer::new(policy));
    }

    let listener = tokio::net::TcpListener::bind(listen).await?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // The test harness reads the real port from this line (--listen 127.0.0.1:0).
    println!(
        "listening on http://{}/mcp",
        axum::serve::Listener::local_addr(&listener)?
    );
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
