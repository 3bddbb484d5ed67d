//! Command-line surface. Every verb reads files, prints to stdout, and reports problems
//! on stderr with file:line:column; exit 0 means success, 1 a problem in the input.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "warden",
    version,
    about = "A policy gate for MCP tool calls: allow, deny, rate-limit or ask a person, per tool."
)]
#[command(propagate_version = true)]
pub struct Cli {
    /// Colour in diagnostics: auto (a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Products `warden import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFrom {
    Intercept,
    Policylayer,
}

/// Shells `warden completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a shell completion script: `warden completions bash > /etc/bash_completion.d/warden`.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff), generated from these same definitions:
    /// `warden man > /usr/local/share/man/man1/warden.1`.
    Man,
    /// Validate policy files and report every problem with its location.
    ///
    /// Also warns about rules that can never take effect (a block for a hidden tool,
    /// conditions that contradict each other) and, with --tools, about names that match no
    /// tool of the server; and notes when `default deny` denies resources and prompts a
    /// policy says nothing of. Exits 0 when all files are valid (warnings or not), 1 otherwise.
    Check {
        /// Policy files (`.pol` or `.json`), or a warden.toml (checked, then each policy it
        /// names).
        #[arg(required_unless_present = "config", value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The server's `tools/list` answer, to check tool names against.
        #[arg(long, value_name = "TOOLS.json")]
        tools: Option<PathBuf>,
        /// A warden.toml: each server's policy is checked against the tools the server
        /// lists now (it is asked over the network).
        #[arg(long, value_name = "FILE", conflicts_with = "tools")]
        config: Option<PathBuf>,
    },
    /// Show how a policy decides one call (of a tool, a resource or a prompt), step by step.
    ///
    /// Counters are not consulted: the output lists the limits an allowed call would be
    /// charged. Examples:
    ///   warden explain policy.json --tool create_instance --args '{"region": "eu-west"}'
    ///   warden explain policy.pol --resource file:///srv/ledger --grant bot
    ///   warden explain policy.pol --prompt summarize --args '{"temperature": 2}'
    #[command(group(clap::ArgGroup::new("called").required(true).args(["tool", "resource", "prompt"])))]
    Explain {
        /// The policy file, or a warden.toml: then the name is `<server>_<name>`, as the
        /// aggregated /mcp shows it, and that server's policy decides.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The tool being called.
        #[arg(long, value_name = "NAME")]
        tool: Option<String>,
        /// The resource being read, by URI (`args.uri` is the URI).
        #[arg(long, value_name = "URI")]
        resource: Option<String>,
        /// The prompt being got, by name (`--args` are its arguments).
        #[arg(long, value_name = "NAME")]
        prompt: Option<String>,
        /// The call's (or the prompt's) arguments as a JSON object.
        #[arg(
            long,
            value_name = "JSON",
            default_value = "{}",
            conflicts_with = "resource"
        )]
        args: String,
        /// The caller's grant (credential name), for grant-scoped limits.
        #[arg(long, value_name = "G", default_value = "anonymous")]
        grant: String,
        /// The MCP session id, for session-scoped limits.
        #[arg(long, value_name = "ID", default_value = "explain")]
        session: String,
        /// The client address, for ip-scoped limits.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
        ip: std::net::IpAddr,
        /// The caller's token claims as a JSON object, for `caller.claims.*` and
        /// `caller.scopes` conditions, e.g. '{"team": "ops", "scope": "tools:call"}'.
        #[arg(long, value_name = "JSON")]
        claims: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Compile a `.pol` policy to policy.json.
    ///
    /// With `--target policylayer` the output uses only keys the hosted PolicyLayer product
    /// knows: globs are expanded against --tools, approvals become "Requires human
    /// approval." denials, and anything else the hosted format cannot express is an error.
    Compile {
        /// The `.pol` (or `.json`) policy.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write here instead of stdout.
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// Which JSON dialect to emit.
        #[arg(long, value_enum, default_value_t = Target::Warden)]
        target: Target,
        /// The server's `tools/list` answer, to expand globs against (policylayer target).
        #[arg(long, value_name = "TOOLS.json")]
        tools: Option<PathBuf>,
    },
    /// Run policy tests: `*.test.pol` files of calls and the decisions expected.
    ///
    /// Each test file tests the policy it names (`policy "x.pol"`) or the one beside it
    /// with its name (`linode.test.pol` tests `linode.pol`). Calls go through the gateway's
    /// decision and counter code on a virtual clock (`after 60 seconds` passes at once).
    /// Exits 1 if any test fails or any file cannot run.
    Test {
        /// Test files; none: every `*.test.pol` under the current directory.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = TestFormat::Text)]
        format: TestFormat,
        /// Also list the rules no test exercised (with file:line:column) and, with --tools,
        /// the server's tools no test calls.
        #[arg(long)]
        coverage: bool,
        /// The server's `tools/list` answer: steps must call its tools (did-you-mean on a
        /// typo), and --coverage lists the tools never called.
        #[arg(long, value_name = "TOOLS.json")]
        tools: Option<PathBuf>,
    },
    /// What an edit changes: each tool's decision class (hidden, denied, conditional, needs
    /// approval, allowed) and limits under OLD and NEW, and the rules added and removed; each
    /// kind's default, and the resource, prompt and server request entries and hide
    /// patterns added, removed and changed.
    ///
    /// Compares the catalog's tools with --tools, else every exact name either policy
    /// mentions. Exits 0 (2 with --fail-on-change when anything changes), 1 on bad input.
    Diff {
        /// A policy, or a warden.toml (then NEW is one too: each server's policy is compared
        /// with its namesake's).
        #[arg(value_name = "OLD")]
        old: PathBuf,
        #[arg(value_name = "NEW")]
        new: PathBuf,
        /// The server's `tools/list` answer: compare every tool it has.
        #[arg(long, value_name = "TOOLS.json")]
        tools: Option<PathBuf>,
        /// Exit 2 when anything changes (for a CI gate that wants a person to look).
        #[arg(long)]
        fail_on_change: bool,
    },
    /// Run recorded traffic (`warden serve --record`) through another policy and report
    /// which calls it would decide differently, per tool and per rule.
    ///
    /// Calls replay in time order on a virtual clock that follows the recording, so limits
    /// see the same pace. Bad lines are reported with their numbers and skipped. Exits 0
    /// (2 with --fail-on-change when anything would change), 1 on bad input.
    Replay {
        /// The policy to try (`.pol` or `.json`), or a warden.toml: each call is replayed
        /// against its server's policy (a recording names the server of every call).
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// Recordings (several replicas' files replay together, in time order).
        #[arg(required = true, value_name = "RECORDING")]
        files: Vec<PathBuf>,
        #[arg(long)]
        fail_on_change: bool,
    },
    /// Rewrite `.pol` files in canonical layout, keeping comments.
    ///
    /// The result is re-parsed and must mean the same policy before anything is written.
    Fmt {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Write nothing; list the files that would change and exit 1 if any would.
        #[arg(long)]
        check: bool,
    },
    /// Print a policy.json as canonical `.pol`.
    Decompile {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Turn a policy written for another product into `.pol`.
    ///
    /// `intercept`: Intercept's YAML policies (every key of its schema; see docs/import.md).
    /// `policylayer`: the hosted product's YAML form (`rules: - action: deny / reason: …`,
    /// `rate_limit: 30/hour`, counted per agent session). Comments are kept. What Warden
    /// cannot say exactly is an error at its place in the file, unless --lossy. Examples:
    ///   warden import intercept stripe.yaml -o stripe.pol
    ///   warden import intercept policies/*.yaml -o imported/
    Import {
        #[arg(value_enum)]
        from: ImportFrom,
        /// YAML policy files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Where to write: a file for one input, a directory for several (default: stdout).
        #[arg(short, long, value_name = "OUT")]
        output: Option<PathBuf>,
        /// Import what Warden cannot express exactly as a warning and a `# LOSSY:` comment
        /// instead of refusing the file.
        #[arg(long)]
        lossy: bool,
    },
    /// Print the JSON Schema of the policy.json format.
    Schema,
    /// Put the policy in front of MCP servers: one reached over HTTP(S), or several (and
    /// stdio servers it launches) from a warden.toml.
    ///
    /// Point MCP clients at http://LISTEN/ instead of the server (with --config: /mcp for
    /// every server at once, /mcp/NAME for one). Policy files are reloaded when they change
    /// (or on SIGHUP); an invalid edit keeps the old policy. Examples:
    ///   warden serve --policy policy.pol --upstream http://127.0.0.1:3001/mcp \
    ///     --grant-token alice=s3cret --audit audit.jsonl
    ///   warden serve --config warden.toml
    Serve(Box<ServeArgs>),
    /// Launch a stdio MCP server and put the policy between it and the client.
    ///
    /// Configure your MCP client to run `warden stdio --policy FILE -- CMD ARGS...` instead
    /// of `CMD ARGS...`. Logs go to stderr; stdout carries only the protocol. Exits with the
    /// server's exit code. Example:
    ///   warden stdio --policy policy.pol -- npx @modelcontextprotocol/server-everything stdio
    Stdio(Box<StdioArgs>),
    /// Ask an MCP server for its tools and write a starter `.pol`.
    ///
    /// Reads are allowed, writes capped at 30 a minute per credential, executes (reboot,
    /// run, deploy, ...) at 10, destructive tools hidden; each tool's description becomes a
    /// comment. Examples:
    ///   warden scan --upstream http://127.0.0.1:3001/mcp -o policy.pol
    ///   warden scan -o policy.pol -- npx @modelcontextprotocol/server-everything stdio
    Scan {
        /// The server's Streamable HTTP endpoint.
        #[arg(long, value_name = "URL", conflicts_with = "command")]
        upstream: Option<String>,
        /// Scan every server of a warden.toml, each into the policy file its table names
        /// (a file that exists is left alone).
        #[arg(long, value_name = "FILE", conflicts_with_all = ["upstream", "command", "output", "save_tools"])]
        config: Option<PathBuf>,
        /// A header for the server (credentials). Repeatable.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        #[command(flatten)]
        upstream_tls: UpstreamTlsArgs,
        /// Write the policy here instead of stdout (an existing file is not overwritten).
        #[arg(short, long, value_name = "FILE.pol")]
        output: Option<PathBuf>,
        /// Also save the raw tools/list answer (for `warden check --tools`).
        #[arg(long, value_name = "TOOLS.json")]
        save_tools: Option<PathBuf>,
        /// A stdio server to launch, after `--`.
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
}

#[derive(Debug, clap::Args)]
// A flag given twice (once by --config's file, once on the command line) takes the last.
#[command(args_override_self = true)]
pub struct ServeArgs {
    /// Read these flags from a TOML file (warden.toml): each flag is a key of the same
    /// name, the server a [servers.NAME] table with `url` and `policy`; `${VAR}` reads the
    /// environment. Flags on the command line win over the file's. Check it with
    /// `warden check warden.toml`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The policy (`.pol` or `.json`). Required unless --config names the servers.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// The MCP server's endpoint, e.g. http://127.0.0.1:3001/mcp or
    /// https://mcp.example.com/mcp (verified against Mozilla's roots, or --upstream-ca).
    /// Required unless --config names the servers.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    #[command(flatten)]
    pub upstream_tls: UpstreamTlsArgs,
    /// Where MCP clients connect.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8787")]
    pub listen: std::net::SocketAddr,
    /// With several servers (--config): how /mcp names their tools and prompts. `always`:
    /// <server>_<name>; `on-collision`: as each server names them, prefixed only where two
    /// servers share a name; `never`: as the servers name them, and a shared name stops
    /// the start. The last two ask every server for its lists at start.
    #[arg(long, value_enum, default_value = "always")]
    pub server_names: ServerNames,
    /// With several servers (--config): a policy for every server's calls, decided after
    /// each server's own (both must allow): caller conditions and limits that all servers
    /// share (its counters count every server's calls). It names tools as the servers do;
    /// `all tools { ... }` reaches every tool. Reloaded on change, like the servers' policies.
    #[arg(long, value_name = "FILE")]
    pub gateway_policy: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM; TLS 1.2 and 1.3). Reloaded when the
    /// file changes (cert-manager, ACME clients); open connections keep theirs.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The admin address's own certificate (default: --tls-cert, when given).
    #[arg(long, value_name = "FILE", requires_all = ["admin", "admin_tls_key"])]
    pub admin_tls_cert: Option<PathBuf>,
    /// The private key of --admin-tls-cert.
    #[arg(long, value_name = "FILE", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,
    /// A header added to every upstream request (upstream credentials). Repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// A caller and its bearer token; the name is the `grant` of limits and the audit log.
    /// Repeatable. The token is kept only as a SHA-256 digest and never forwarded.
    #[arg(long = "grant-token", value_name = "NAME=TOKEN")]
    pub grant_tokens: Vec<String>,
    /// A grants file: one `NAME SHA256-HEX-OF-TOKEN` per line (`printf %s TOKEN | sha256sum`).
    #[arg(long, value_name = "FILE")]
    pub grants: Option<PathBuf>,
    /// Let anyone call, as the grant `anonymous` (must be said explicitly).
    #[arg(long, conflicts_with_all = ["grant_tokens", "grants"])]
    pub no_auth: bool,
    /// Serve health, metrics, the approval queue and the policy here (needs --admin-token).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<std::net::SocketAddr>,
    /// Bearer token for the admin address.
    #[arg(long, value_name = "TOKEN", requires = "admin")]
    pub admin_token: Option<String>,
    /// POST each approval request (as JSON, with `console_url`: its page on the console) to
    /// this http(s):// URL, e.g. a chat webhook; people answer on the console. Needs --admin.
    #[arg(long, value_name = "URL", requires = "admin")]
    pub approval_notify: Option<String>,
    /// The CA (PEM) that signed --approval-notify's certificate, if not a public one.
    #[arg(long, value_name = "FILE", requires = "approval_notify")]
    pub approval_notify_ca: Option<PathBuf>,
    /// The console's address as people open it (behind a proxy, say), for the links of
    /// --approval-notify and of approvals asked in MCP clients that can open links.
    /// Default: http://<--admin address>.
    #[arg(long, value_name = "URL", requires = "admin")]
    pub console_url: Option<String>,
    /// Record every decided tools/call here as JSON lines — caller, tool, ARGUMENT VALUES,
    /// time, decision — for `warden replay`. Sensitive: the file is created mode 0600.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Send one OpenTelemetry span per MCP message to this OTLP collector (HTTP/protobuf;
    /// its base URL, e.g. http://localhost:4318: spans go to /v1/traces). Without it,
    /// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns traces on;
    /// OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*,
    /// OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_TIMEOUT apply as the OpenTelemetry
    /// specification defines them.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// The CA (PEM) that signed an https:// collector's certificate, if not a public one.
    #[arg(long, value_name = "FILE")]
    pub otlp_ca: Option<PathBuf>,
    /// Append one JSON line per decision here (no argument values, no tokens).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Decide and log every call, block none.
    #[arg(long)]
    pub shadow: bool,
    /// Seconds the upstream may take to send response headers; past it the call gets a
    /// JSON-RPC error with its id (HTTP 504). A stream already started is never cut.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub upstream_timeout: u64,
    /// The largest request body a client may send (a base64 file in a tool call can be
    /// large); past it the call gets a JSON-RPC error (413) and nothing is forwarded.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_MESSAGE)]
    pub max_message_bytes: usize,
    /// Seconds a client may take to send a request's headers; an idle keep-alive connection
    /// is closed after as long.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Connections served at once; beyond it new ones wait (open ones keep working).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Client sessions the aggregated /mcp endpoint keeps at once (with several servers);
    /// past it the longest idle one is closed, its servers' sessions with it (DELETE), and
    /// its client starts again on the 404 it then gets.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = at_least_one)]
    pub max_sessions: usize,
    /// On SIGTERM/SIGINT: stop accepting, give calls in flight this many seconds, exit 0.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Event loops serving clients, each a thread that owns its connections (and its pool
    /// of upstream connections). 0: one per CPU.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub workers: usize,
    /// A browser origin allowed to call (CORS), e.g. the MCP Inspector's
    /// http://localhost:6274. Repeatable; none by default.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[command(flatten)]
    pub jwt: JwtArgs,
}

/// Callers with tokens from the team's identity provider (OAuth 2.1 / OIDC).
#[derive(Debug, clap::Args)]
pub struct JwtArgs {
    /// Accept JWTs signed by a key of this JWKS: a file (reloaded when it changes) or an
    /// http(s):// URL (fetched again when a token names an unknown key, at most once a minute).
    /// Static --grant-token / --grants tokens keep working beside JWTs.
    #[arg(long, value_name = "FILE|URL", requires_all = ["jwt_issuer", "jwt_audience"])]
    pub jwt_jwks: Option<String>,
    /// The `iss` every token must carry.
    #[arg(long, value_name = "ISS", requires = "jwt_jwks")]
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must carry (this gateway's resource identifier).
    #[arg(long, value_name = "AUD", requires = "jwt_jwks")]
    pub jwt_audience: Option<String>,
    /// The claim whose value is the grant (limits `per grant`, the audit log).
    #[arg(long, value_name = "CLAIM", default_value = "sub")]
    pub grant_claim: String,
    /// Where clients get tokens, for the discovery document (repeatable; default: the issuer).
    #[arg(long, value_name = "URL", requires = "jwt_jwks")]
    pub jwt_authorization_server: Vec<String>,
    /// A scope to list in the discovery document (repeatable).
    #[arg(long, value_name = "SCOPE", requires = "jwt_jwks")]
    pub jwt_scope: Vec<String>,
    /// Also accept HS256/384/512 tokens signed with the shared secret in this file (never
    /// accepted without it, so an RSA public key cannot be turned into an HMAC secret).
    #[arg(long, value_name = "FILE", requires = "jwt_jwks")]
    pub jwt_hs_secret_file: Option<PathBuf>,
    /// The CA (PEM) that signed an https:// --jwt-jwks URL's certificate (a private IdP);
    /// default: Mozilla's roots.
    #[arg(long, value_name = "FILE", requires = "jwt_jwks")]
    pub jwt_jwks_ca: Option<PathBuf>,
    /// A JWKS URL is fetched again, when a token names a key it does not hold, at most once
    /// in this many seconds (the provider is never hammered by tokens with made-up kids).
    #[arg(long, value_name = "SECS", default_value_t = 60, requires = "jwt_jwks")]
    pub jwt_jwks_refetch: u64,
}

/// How an https:// upstream is verified, and the certificate Warden shows it.
#[derive(Debug, Clone, clap::Args)]
pub struct UpstreamTlsArgs {
    /// Trust only the CA certificates in this PEM bundle for an https:// upstream (a private
    /// CA); default: Mozilla's roots. There is no option that turns verification off.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// A client certificate chain (PEM) for upstreams that want mutual TLS.
    #[arg(long, value_name = "FILE", requires = "upstream_client_key")]
    pub upstream_client_cert: Option<PathBuf>,
    /// The private key of --upstream-client-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "upstream_client_cert")]
    pub upstream_client_key: Option<PathBuf>,
}

/// 16 MiB: room for real payloads (a file as base64 in a tool call).
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;

/// Everything `warden stdio` is told.
#[derive(Debug, clap::Args)]
pub struct StdioArgs {
    /// The policy (`.pol` or `.json`).
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// The grant all calls are made as (limits `per grant` count against it).
    #[arg(long, value_name = "NAME", default_value = "local")]
    pub grant: String,
    /// Append one JSON line per decision here.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Decide and log every call, block none.
    #[arg(long)]
    pub shadow: bool,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The largest message (one line) the client may send; a longer line is discarded as it
    /// streams and answered with a JSON-RPC error naming its id.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_MESSAGE)]
    pub max_message_bytes: usize,
    /// Send one OpenTelemetry span per MCP message to this OTLP collector (HTTP/protobuf;
    /// its base URL, e.g. http://localhost:4318: spans go to /v1/traces). Without it,
    /// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) turns traces on;
    /// OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*,
    /// OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_TIMEOUT apply as the OpenTelemetry
    /// specification defines them.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// The CA (PEM) that signed an https:// collector's certificate, if not a public one.
    #[arg(long, value_name = "FILE")]
    pub otlp_ca: Option<PathBuf>,
    /// With --jwt-*: the caller's JWT, from this environment variable; the grant is its
    /// claim (--grant-claim) instead of --grant. An invalid token stops the start.
    #[arg(long, value_name = "VAR", default_value = "WARDEN_TOKEN")]
    pub token_env: String,
    #[command(flatten)]
    pub jwt: JwtArgs,
    /// The server to launch, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Several replicas: counters and approvals in one Redis.
#[derive(Debug, clap::Args)]
pub struct RedisArgs {
    /// Share rate-limit counters and the approval queue with every replica pointed at this
    /// Redis: redis://[USER:PASSWORD@]HOST:PORT[/DB], or rediss://… over TLS. Without it,
    /// state lives in this process.
    /// Read from WARDEN_REDIS_URL when not given (keeps a password out of `ps`).
    #[arg(
        long,
        value_name = "URL",
        env = "WARDEN_REDIS_URL",
        hide_env_values = true
    )]
    pub redis: Option<String>,
    /// Prefix of every Redis key and channel (deployments sharing one Redis pick different ones).
    #[arg(long, value_name = "PREFIX", default_value = "warden:")]
    pub redis_prefix: String,
    /// How long one Redis command may take before the call is treated as unanswerable.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    pub redis_timeout_ms: u64,
    /// When Redis cannot answer in time: `closed` refuses the call ([POLICY DENIED], the
    /// default), `open` forwards it unchecked and logs a warning.
    #[arg(long, value_enum, default_value = "closed")]
    pub redis_fail: RedisFail,
    /// For rediss://: trust only the CA certificates in this PEM bundle (default: the
    /// system's roots).
    #[arg(long, value_name = "FILE", requires = "redis")]
    pub redis_ca: Option<PathBuf>,
    /// For rediss:// servers that want a client certificate (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["redis", "redis_client_key"])]
    pub redis_client_cert: Option<PathBuf>,
    /// The private key of --redis-client-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "redis_client_cert")]
    pub redis_client_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerNames {
    Always,
    OnCollision,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedisFail {
    Closed,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Warden's policy.json, extensions included.
    Warden,
    /// Only what the hosted PolicyLayer product accepts.
    Policylayer,
}

/// How `warden test` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TestFormat {
    /// A line per test, and for a failure what was expected, what happened and why.
    Text,
    /// One object per test, for tools.
    Json,
    /// JUnit XML, for CI systems.
    Junit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// A count of which none would stop everything (`--max-sessions 0`): refused, not read as 1.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
