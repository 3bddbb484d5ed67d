//! The decisions the console shows live: a `tracing` layer that keeps the last
//! [`BUFFER`] `warden::decision` events, counts them per outcome and minute, and hands each
//! new one to every open live view.
//!
//! It reads the same event the audit file gets, so the console shows exactly what is
//! audited (never argument values).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Decisions kept for a live view that opens.
pub const BUFFER: usize = 1000;
/// Minutes of per-outcome counts kept.
const MINUTES: usize = 15;

/// One decision, as the live view shows it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Decision {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub grant: String,
    pub tool: String,
    pub decision: String,
    pub rule: String,
    pub message: String,
    pub request_id: String,
    /// The server the call was for, in a gateway of several.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub server: String,
    /// The call's trace (32 hex digits), when traces are exported: a person can look it up
    /// in the tracing backend.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub trace_id: String,
}

/// The recent decisions and the live subscribers.
pub struct Feed {
    recent: Mutex<Recent>,
    live: broadcast::Sender<Arc<Decision>>,
}

#[derive(Default)]
struct Recent {
    buffer: VecDeque<Arc<Decision>>,
    /// (minute since the epoch, counts by outcome), oldest first.
    minutes: VecDeque<(u64, Vec<(String, u64)>)>,
}

/// The process's feed (one subscriber per process, like the audit file).
pub fn feed() -> &'static Feed {
    static FEED: OnceLock<Feed> = OnceLock::new();
    FEED.get_or_init(|| Feed {
        recent: Mutex::new(Recent::default()),
        live: broadcast::channel(256).0,
    })
}

impl Feed {
    fn push(&self, d: Decision) {
        let d = Arc::new(d);
        {
            let mut r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if r.buffer.len() == BUFFER {
                r.buffer.pop_front();
            }
            r.buffer.push_back(d.clone());
            let minute = d.at_ms / 60_000;
            if r.minutes.back().is_none_or(|(m, _)| *m != minute) {
                r.minutes.push_back((minute, Vec::new()));
                if r.minutes.len() > MINUTES {
                    r.minutes.pop_front();
                }
            }
            if let Some((_, counts)) = r.minutes.back_mut() {
                match counts.iter_mut().find(|(k, _)| *k == d.decision) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((d.decision.clone(), 1)),
                }
            }
        }
        // Nobody watching is fine.
        let _ = self.live.send(d);
    }

    /// The buffered decisions, oldest first.
    pub fn recent(&self) -> Vec<Arc<Decision>> {
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        r.buffer.iter().cloned().collect()
    }

    /// Counts per outcome over the last `minutes` minutes (this one included).
    pub fn counts(&self, minutes: u64) -> Vec<(String, u64)> {
        let now = now_ms() / 60_000;
        let r = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, u64)> = Vec::new();
        for (m, counts) in &r.minutes {
            if now.saturating_sub(*m) >= minutes {
                continue;
            }
            for (k, n) in counts {
                match out.iter_mut().find(|(o, _)| o == k) {
                    Some((_, total)) => *total += n,
                    None => out.push((k.clone(), *n)),
                }
            }
        }
        out.sort();
        out
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Decision>> {
        self.live.subscribe()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Feeds [`feed`] from `warden::decision` events that carry a decision.
pub struct FeedLayer;

impl<S: tracing::Subscriber> Layer<S> for FeedLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "warden::decision" {
            return;
        }
        let mut d = Decision {
            at_ms: now_ms(),
            ..Decision::default()
        };
        event.record(&mut Fields(&mut d));
        // Other events of the target (refusals before a decision, answered approvals).
        if d.decision.is_empty() || d.tool.is_empty() {
            return;
        }
        feed().push(d);
    }
}

struct Fields<'a>(&'a mut Decision);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "grant" => &mut self.0.grant,
            "tool" => &mut self.0.tool,
            "decision" => &mut self.0.decision,
            "rule" => &mut self.0.rule,
            "message" if value != "-" => &mut self.0.message,
            "request_id" if value != "-" => &mut self.0.request_id,
            "server" if value != "-" => &mut self.0.server,
            "trace_id" if value != "-" => &mut self.0.trace_id,
            _ => return,
        };
        *slot = value.to_owned();
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%`-formatted fields arrive here; none of the ones kept are.
        let _ = (field, value);
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn a_decision_keeps_its_trace_id_for_the_console() {
        let subscriber = tracing_subscriber::registry().with(super::FeedLayer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "warden::decision",
                grant = "alice",
                tool = "delete_everything",
                decision = "deny",
                rule = "(default deny)",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                "tool call deny"
            );
        });
        let d = super::feed()
            .recent()
            .into_iter()
            .rev()
            .find(|d| d.tool == "delete_everything")
            .expect("the decision is in the feed");
        assert_eq!(d.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        let json = serde_json::to_value(&*d).unwrap();
        assert_eq!(json["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
