//! The gateway's decision and counters, offline: `decide()`, then the in-memory counter
//! store on a virtual clock. `warden test` and `warden replay` both run calls through this.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use warden_policy::{Call, CompiledPolicy, Decision, Kind, Outcome};
use warden_tower::limit::{Charge, CounterSpec, MemoryStore, Refusal, VirtualClock};

/// What one call came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Came {
    Allow,
    Deny { message: String },
    Hidden,
    Limited { counter: String },
    Approval,
}

impl std::fmt::Display for Came {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Came::Allow => write!(f, "allow"),
            Came::Deny { message } => write!(f, "deny ({message:?})"),
            Came::Hidden => write!(f, "hidden"),
            Came::Limited { counter } => write!(f, "limited {counter}"),
            Came::Approval => write!(f, "approval"),
        }
    }
}

/// The arguments a call of `kind` is decided with: a resource's are `{"uri": URI}` (the
/// policy model's `args.uri`), unless given; the others' are theirs.
pub fn args_of(kind: Kind, name: &str, args: Option<Value>) -> Option<Value> {
    match (kind, args) {
        (Kind::Resource, None) => Some(serde_json::json!({ "uri": name })),
        (Kind::Resource, Some(Value::Object(o))) if o.is_empty() => {
            Some(serde_json::json!({ "uri": name }))
        }
        (_, args) => args,
    }
}

/// An explanation as text, its head saying the kind of what was called when it is not a
/// tool ("DENY resource `file:///a` by …"): the explanation itself names only the thing.
pub fn explanation_text(kind: Kind, explanation: &warden_policy::Explanation) -> String {
    let text = explanation.to_string();
    match (kind, text.split_once(" `")) {
        (Kind::Tool, _) | (_, None) => text,
        (_, Some((verdict, rest))) => format!("{verdict} {} `{rest}", kind.noun()),
    }
}

/// Counters that start empty at virtual time zero.
pub struct Simulator {
    clock: VirtualClock,
    store: MemoryStore<VirtualClock>,
}

impl Simulator {
    pub fn new(max_keys: usize) -> Simulator {
        let clock = VirtualClock::default();
        Simulator {
            store: MemoryStore::with_clock(max_keys, clock.clone()),
            clock,
        }
    }

    /// Lets virtual time pass.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Decides `call` and, when it may go on, charges its limits as the gateway would.
    pub fn run<'p>(&self, compiled: &'p CompiledPolicy, call: &Call<'_>) -> (Decision<'p>, Came) {
        let (d, came, _) = self.run_charging(compiled, call);
        (d, came)
    }

    /// Gives back what a call was charged (a policy behind this one refused it).
    pub fn give_back(&self, charges: &[Charge]) {
        self.store.refund_now(charges);
    }

    /// [`Self::run`], with what the call was charged.
    pub fn run_charging<'p>(
        &self,
        compiled: &'p CompiledPolicy,
        call: &Call<'_>,
    ) -> (Decision<'p>, Came, Vec<Charge>) {
        // Conditions that read a counter see what the caller has used of it so far.
        let mut counters = warden_policy::CounterValues::new();
        for (name, at) in compiled.counters_read() {
            let Some(limit) = compiled.limits().get(*at) else {
                continue;
            };
            if let Some(key) = limit.scope_key(call) {
                if let Some(used) = self.store.used(&CounterSpec::of(limit), &key) {
                    counters.insert(name.clone(), used);
                }
            }
        }
        let call = &Call {
            counters: Some(&counters),
            ..*call
        };
        let d = compiled.decide(call);
        let mut charged = Vec::new();
        let came = match d.outcome() {
            Outcome::Deny if compiled.is_hidden_as(call.kind, call.tool) => Came::Hidden,
            Outcome::Deny => Came::Deny {
                message: d.message().to_owned(),
            },
            outcome => {
                let charges: Vec<Charge> = d
                    .charges()
                    .iter()
                    .map(|c| Charge {
                        limit: c.limit.index,
                        counter: Arc::new(CounterSpec::of(c.limit)),
                        key: c.key.clone(),
                        cost: c.cost,
                    })
                    .collect();
                match self.store.charge_now(&charges) {
                    Err(r) => Came::Limited {
                        counter: refused_counter(&r, &charges),
                    },
                    Ok(_) => {
                        charged = charges;
                        if outcome == Outcome::Approval {
                            Came::Approval
                        } else {
                            Came::Allow
                        }
                    }
                }
            }
        };
        (d, came, charged)
    }
}

fn refused_counter(r: &Refusal, charges: &[Charge]) -> String {
    let at = match r {
        Refusal::Exhausted { at, .. } | Refusal::TooCostly { at } | Refusal::TooManyKeys { at } => {
            Some(*at)
        }
        Refusal::Unavailable { .. } => None,
    };
    at.and_then(|i| charges.get(i))
        .map_or_else(|| "(counter store)".to_owned(), |c| c.counter.name.clone())
}
