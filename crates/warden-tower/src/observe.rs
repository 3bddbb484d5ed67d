//! One `tracing` event and a few metrics per decision. Argument values never leave here;
//! only their keys do.

use std::time::Duration;

use serde_json::Value;

/// What was decided about one call, as logged.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub grant: Option<&'a str>,
    pub session: Option<&'a str>,
    /// What was called: a tool, a resource, a prompt, another method, a server's request.
    pub kind: warden_policy::Kind,
    /// The tool's or prompt's name, the resource's URI, the method.
    pub tool: &'a str,
    /// `allow`, `deny`, `limited`, `approved`, `refused`.
    pub decision: &'static str,
    pub rule: &'a str,
    /// What the agent reads when the call is not allowed (the policy's text).
    pub message: Option<&'a str>,
    pub args: Option<&'a Value>,
    /// The caller's claims that the policy reads (JSON), never the others.
    pub claims: Option<&'a str>,
    /// The request's `x-request-id`, when it has one.
    pub request_id: Option<&'a str>,
    /// The server the call was for, when the layer is named (a gateway of several).
    pub server: Option<&'a str>,
    /// The trace the call's span belongs to (32 hex digits), when traces are on.
    pub trace_id: Option<&'a str>,
    pub latency: Duration,
    /// Shadow mode: the call was forwarded although the decision would have blocked it.
    pub would_block: bool,
}

pub fn arg_keys(args: Option<&Value>) -> Vec<String> {
    match args {
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The argument keys, comma-separated, written only if the event is.
struct Keys<'a>(Option<&'a Value>);

impl std::fmt::Display for Keys<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(Value::Object(m)) = self.0 {
            for (i, k) in m.keys().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                f.write_str(k)?;
            }
        }
        Ok(())
    }
}

/// Whether the decision event is written (else its fields need not be gathered).
pub(crate) fn decisions_enabled() -> bool {
    tracing::enabled!(target: "warden::decision", tracing::Level::INFO)
}

pub(crate) fn record(r: &Record<'_>) {
    // tracing evaluates fields only for an enabled event: with decisions off (the
    // gateway's default on stderr), nothing here is formatted or allocated.
    let keys = Keys(r.args);
    tracing::info!(
        target: "warden::decision",
        grant = r.grant.unwrap_or("-"),
        session = r.session.unwrap_or("-"),
        kind = r.kind.noun(),
        tool = r.tool,
        decision = r.decision,
        rule = r.rule,
        message = r.message.unwrap_or("-"),
        arg_keys = %keys,
        claims = r.claims.unwrap_or("-"),
        request_id = r.request_id.unwrap_or("-"),
        server = r.server.unwrap_or("-"),
        trace_id = r.trace_id.unwrap_or("-"),
        latency_us = r.latency.as_micros() as u64,
        would_block = r.would_block,
        "{} call {}", r.kind.noun(), r.decision
    );
    let would_block = if r.would_block { "true" } else { "false" };
    match r.server {
        // A gateway of several servers counts each server's decisions apart.
        Some(server) => metrics::counter!("warden_decisions_total", "decision" => r.decision, "would_block" => would_block, "server" => server.to_owned())
            .increment(1),
        None => metrics::counter!("warden_decisions_total", "decision" => r.decision, "would_block" => would_block)
            .increment(1),
    }
    metrics::histogram!("warden_decision_seconds").record(r.latency.as_secs_f64());
}

/// A request from the server to the client, decided.
pub(crate) fn server_request(grant: Option<&str>, method: &str, d: &warden_policy::Decision<'_>) {
    let decision = match (d.is_deny(), d.is_shadow()) {
        (false, _) => "allow",
        (true, false) => "deny",
        (true, true) => "allow",
    };
    tracing::info!(
        target: "warden::decision",
        grant = grant.unwrap_or("-"),
        kind = "server request",
        tool = method,
        decision,
        rule = d.rule(),
        message = if d.is_deny() { d.message() } else { "-" },
        would_block = d.is_deny() && d.is_shadow(),
        "server request {decision}"
    );
    metrics::counter!("warden_server_requests_total", "decision" => decision).increment(1);
}

pub(crate) fn refused_request(reason: &'static str) {
    tracing::warn!(target: "warden::decision", reason, "request refused before any decision");
    metrics::counter!("warden_refused_requests_total", "reason" => reason).increment(1);
}

/// A call refused by a limit. A store that could not answer is worth a warning: every call
/// it refuses would have been forwarded if it had.
pub(crate) fn limited(l: &crate::limit::Limited) {
    metrics::counter!("warden_limited_total").increment(1);
    if let crate::limit::Limited::Unavailable {
        counter, reason, ..
    } = l
    {
        tracing::warn!(
            target: "warden::decision",
            counter = %counter, reason = %reason,
            "rate-limit store unavailable: call refused (fail closed)"
        );
        metrics::counter!("warden_store_fail_closed_total").increment(1);
    }
}

/// A call as a [`Recorder`] gets it: who, what, with which arguments, when, and what was
/// decided. Unlike the audit event it carries argument values, so recording is opt-in.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct RecordedCall {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub grant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Value>,
    /// What was called; absent for a tool call.
    #[serde(default, skip_serializing_if = "warden_policy::Kind::is_tool")]
    pub kind: warden_policy::Kind,
    pub tool: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// As in the audit log: `allow`, `deny`, `limited`, `approval`, `approved`, `refused`.
    pub decision: String,
    pub rule: String,
    /// The server it was for, in a gateway of several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// Gets every decided call, arguments included (`warden serve --record`, `warden replay`).
pub trait Recorder: Send + Sync + 'static {
    fn record(&self, call: &RecordedCall);
}
