//! A tower [`Layer`](tower::Layer) that enforces a Warden policy on MCP tool calls.
//!
//! Add [`PolicyLayer`] to an axum `Router`, a hyper service or rmcp's
//! `StreamableHttpService`, and every `tools/call` is decided before a handler runs:
//! allowed calls go on with their bytes unchanged; denied, rate-limited and unapproved calls
//! are answered by the layer (`[POLICY DENIED] …` as a tool result, or a JSON-RPC error);
//! hidden tools disappear from `tools/list`. Anything the layer cannot read with certainty
//! (invalid JSON, duplicate keys, a compressed body, headers that disagree with the body) is
//! refused, never guessed at.
//!
//! Modules follow the request: `service` reads who is calling, `mcp` (or `rest` in HTTP mode)
//! and `inspect` read the request, `warden_policy` decides,
//! [`limit`] charges counters in a [`limit::CounterStore`] (memory or Redis), [`approval`] asks a person, [`answer`] builds
//! what the client gets back, `observe` logs one event per decision, and [`otel`] makes a
//! span of each message.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod answer;
pub mod approval;
mod body;
mod elicit;
#[doc(hidden)]
pub mod fuzzing;
mod grant;
mod inspect;
#[cfg(feature = "jwt")]
pub mod jwt;
mod layer;
pub mod limit;
mod mcp;
mod methods;
mod observe;
pub mod otel;
#[cfg(feature = "redis")]
pub mod redis;
mod refund;
mod rest;
mod scan;
mod service;
#[cfg(feature = "tls")]
pub mod tls;
pub mod view;

pub use answer::{DENIED_PREFIX, DenyStyle, Forwarded, POLICY_DENIED_CODE};
pub use approval::{
    Answer, AnswerFuture, ApprovalDesk, ApprovalQueue, ApprovalRequest, Approver, DeskFuture,
    Refuse, Webhook,
};
pub use body::{Body, BoxError, Needle, Uncollected, collect, map_messages};
pub use grant::{
    BearerGrant, Claims, DefaultGrant, Grant, GrantExtractor, HeaderGrant, bearer_token, short_hash,
};
pub use layer::{Mode, PolicyHandle, PolicyLayer};
pub use limit::{CounterStore, MemoryStore};
pub use observe::Record;
pub use observe::{RecordedCall, Recorder};
pub use otel::Transport;
pub use service::{ClientAddr, PolicyService, ResponseFuture};
pub use view::{List, View};

/// Configuration mistakes found when building the layer's parts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
}
