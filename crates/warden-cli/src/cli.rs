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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate policy files and report every problem with its location.
    ///
    /// Also warns about rules that can never take effect (a block for a hidden tool,
    /// conditions that contradict each other) and, with --tools, about names that match no
    /// tool of the server. Exits 0 when all files are valid (warnings or not), 1 otherwise.
    Check {
        /// Policy files (`.pol` or `.json`).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The server's `tools/list` answer, to check tool names against.
        #[arg(long, value_name = "TOOLS.json")]
        tools: Option<PathBuf>,
    },
    /// Show how a policy decides one tool call, step by step.
    ///
    /// Counters are not consulted: the output lists the limits an allowed call would be
    /// charged. Example:
    ///   warden explain policy.json --tool create_instance --args '{"region": "eu-west"}'
    Explain {
        /// The policy file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The tool being called.
        #[arg(long, value_name = "NAME")]
        tool: String,
        /// The call's arguments as a JSON object.
        #[arg(long, value_name = "JSON", default_value = "{}")]
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
    /// Print the JSON Schema of the policy.json format.
    Schema,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// Warden's policy.json, extensions included.
    Warden,
    /// Only what the hosted PolicyLayer product accepts.
    Policylayer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}
