//! `explain`: the same decision, with every step the engine took written down.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::compiled::CompiledPolicy;
use crate::condition::Truth;
use crate::decision::{Call, Outcome};
use crate::model::Approval;

/// Receives the engine's steps. The untraced hot path passes a type whose `step` is
/// empty, so building the step text costs nothing there.
pub(crate) trait Trace {
    fn step(&mut self, f: impl FnOnce() -> Step);
}

pub(crate) struct Untraced;

impl Trace for Untraced {
    #[inline(always)]
    fn step(&mut self, _: impl FnOnce() -> Step) {}
}

impl Trace for Vec<Step> {
    fn step(&mut self, f: impl FnOnce() -> Step) {
        self.push(f());
    }
}

/// One step of a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// JSON Pointer of the rule, condition or limit looked at (or `(hidden)`, …).
    pub at: String,
    pub note: String,
    /// For a condition, what it came to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truth: Option<Truth>,
}

impl Step {
    pub(crate) fn new(at: &str, note: impl Into<String>) -> Step {
        Step {
            at: at.to_owned(),
            note: note.into(),
            truth: None,
        }
    }

    pub(crate) fn condition(at: &str, truth: Truth) -> Step {
        Step {
            at: at.to_owned(),
            note: String::new(),
            truth: Some(truth),
        }
    }
}

/// A limit the call would be charged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChargeInfo {
    pub limit: String,
    pub counter: String,
    pub cost: u64,
    pub max: u64,
    pub window_secs: u64,
    pub scope: crate::Scope,
}

/// A decision with its reasons; what `warden explain` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub tool: String,
    pub decision: Outcome,
    pub rule: String,
    /// `file:line:column` of the rule, when the caller knows the policy's source text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub message: String,
    pub shadow: bool,
    pub charges: Vec<ChargeInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    pub steps: Vec<Step>,
}

impl CompiledPolicy {
    /// Decides `call` and records how. Counters are not consulted: the charges are what
    /// an allowed call would cost, and whether the buckets have room is the limiter's part.
    pub fn explain(&self, call: &Call<'_>) -> Explanation {
        let mut steps = Vec::new();
        let d = self.decide_traced(call, &mut steps);
        let doc = self.policy().to_value();
        for step in &mut steps {
            if step.truth.is_some()
                && let Some(c) = doc.pointer(&step.at)
            {
                step.note = describe_condition(c);
            }
        }
        Explanation {
            tool: call.tool.to_owned(),
            decision: d.outcome(),
            rule: d.rule().to_owned(),
            source: None,
            message: d.message().to_owned(),
            shadow: d.is_shadow(),
            charges: d
                .charges()
                .iter()
                .map(|c| ChargeInfo {
                    limit: c.limit.pointer.clone(),
                    counter: c.limit.counter_name.clone(),
                    cost: c.cost,
                    max: c.limit.quota.max,
                    window_secs: c.limit.quota.window_secs,
                    scope: c.limit.scope,
                })
                .collect(),
            approval: d.approval().cloned(),
            steps,
        }
    }
}

fn describe_condition(c: &Value) -> String {
    let field = |k: &str| {
        c.get(k).map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        })
    };
    let value = c.get("value").map(Value::to_string).unwrap_or_default();
    format!(
        "{} {} {value}",
        field("path").unwrap_or_default(),
        field("op").unwrap_or_default()
    )
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.decision {
            Outcome::Allow => "ALLOW",
            Outcome::Deny => "DENY",
            Outcome::Approval => "APPROVAL REQUIRED",
        };
        writeln!(f, "{verdict} `{}` by {}", self.tool, self.rule)?;
        if let Some(at) = &self.source {
            writeln!(f, "  written at: {at}")?;
        }
        if self.decision == Outcome::Deny {
            writeln!(f, "  message: {}", self.message)?;
        }
        if self.shadow {
            writeln!(f, "  shadow mode: logged, not enforced")?;
        }
        writeln!(f, "steps:")?;
        for (i, s) in self.steps.iter().enumerate() {
            match s.truth {
                Some(t) => writeln!(
                    f,
                    "  {}. {}  {}  => {}",
                    i + 1,
                    s.at,
                    s.note,
                    serde_json::to_string(&t)
                        .unwrap_or_default()
                        .trim_matches('"')
                )?,
                None => writeln!(f, "  {}. {}  {}", i + 1, s.at, s.note)?,
            }
        }
        if !self.charges.is_empty() {
            writeln!(f, "charges (all or none, if the buckets have room):")?;
            for c in &self.charges {
                writeln!(
                    f,
                    "  {} += {}  (max {} per {}s per {}; {})",
                    c.counter, c.cost, c.max, c.window_secs, c.scope, c.limit
                )?;
            }
        }
        if let Some(a) = &self.approval {
            let asked = match a.via.unwrap_or(crate::ApprovalVia::Queue) {
                crate::ApprovalVia::Queue => "the approval queue",
                crate::ApprovalVia::Client => "the person at the MCP client (else refused)",
                crate::ApprovalVia::ClientOrQueue => {
                    "the person at the MCP client (else the approval queue)"
                }
            };
            writeln!(
                f,
                "approval: ask {asked}, wait up to {}s, then {}",
                a.timeout_secs(),
                a.on_timeout.unwrap_or(crate::OnTimeout::Deny)
            )?;
        }
        Ok(())
    }
}
