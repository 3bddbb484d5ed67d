//! The gateway: Warden's policy layer in front of MCP servers written in anything.
//!
//! - [`serve()`]: a reverse proxy for MCP Streamable HTTP (`warden serve`).
//! - [`stdio()`]: wraps a stdio MCP server it launches (`warden stdio`).
//! - [`scan`]: lists a server's tools and writes a starter `.pol` (`warden scan`).
//!
//! The server stack: [`listener`] accepts (connection cap, graceful stop; the TLS handshake
//! with `--tls-cert`, [`tls`]), [`http1`] reads
//! each connection's requests (header and idle deadlines) and writes the answers, tower-http
//! layers (catch-panic, CORS, sensitive headers, request ids), [`callers`] authenticates,
//! then `warden_tower::PolicyLayer`, then [`proxy`], whose requests [`http1`] writes to the
//! upstream (over TLS for an `https://` URL, [`tls`] again).
//!
//! Counters and approvals live in this process, or with `--redis` in a Redis shared by
//! every replica ([`state`]).
//!
//! Both proxies reload the policy when its file changes (or on SIGHUP), keep the old one
//! when the new one is invalid, and log one `warden::decision` event per decision, which
//! [`logging`] can write to an audit file as JSON lines.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin;
mod aggregate;
pub use aggregate::fuzzing as aggregate_fuzzing;
pub mod auth;
pub mod callers;
pub mod children;
pub mod console;
pub mod framing;
pub mod http1;
pub mod listener;
pub mod logging;
pub mod notify;
pub mod otel;
pub mod policy_file;
pub mod proxy;
pub mod record;
pub mod scan;
pub mod serve;
pub mod state;
pub mod stdio;
pub mod tls;

pub use auth::Grants;
pub use callers::JwtOptions;
pub use serve::{ServeOptions, serve};
pub use stdio::{StdioOptions, stdio};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The policy file is invalid; the text is every diagnostic, rendered.
    #[error("{0}")]
    Policy(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
}
