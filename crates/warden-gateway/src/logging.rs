//! Logs on stderr for people, and the audit file: one JSON line per decision.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::Error;

/// Installs the global subscriber. Decision events (`warden::decision`) carry grant, session,
/// tool, decision, rule, argument keys and latency — never argument values or tokens.
///
/// By default stderr does not get a line per decision (`WARDEN_LOG=warden=info` shows
/// them): on a busy gateway that line costs more than the decision itself. Warnings about
/// calls (refusals before any decision, a store that fails closed) are still written, and
/// the audit file gets every decision whatever `WARDEN_LOG` says.
///
/// With `console` (an admin address), decisions also feed the console's live view; without
/// it no layer wants decision events and, with no audit file, they cost nothing.
pub fn init(audit: Option<&Path>, console: bool) -> Result<(), Error> {
    let filter = EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warden=info,warden::decision=warn"));
    let human = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    let audit = match audit {
        Some(path) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Error::Io(format!("cannot open audit log {}: {e}", path.display())))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false)
                    .with_writer(Mutex::new(file))
                    .with_filter(
                        Targets::new().with_target("warden::decision", tracing::Level::INFO),
                    ),
            )
        }
        None => None,
    };
    // The console's live view: every decision, whatever WARDEN_LOG says.
    let feed = console.then(|| {
        crate::console::decisions::FeedLayer
            .with_filter(Targets::new().with_target("warden::decision", tracing::Level::INFO))
    });
    tracing_subscriber::registry()
        .with(human)
        .with(audit)
        .with(feed)
        .try_init()
        .map_err(|e| Error::Config(format!("logging: {e}")))
}
