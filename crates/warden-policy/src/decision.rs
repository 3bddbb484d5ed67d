//! Steps 2–6 of the decision order (DESIGN.md section 4), as a pure function.

use std::borrow::Cow;
use std::net::IpAddr;

use serde_json::Value;

use crate::compiled::{CompiledLimit, CompiledPolicy, CompiledRule};
use crate::compiled::{Entry, Section};
use crate::condition::{CompiledCondition, Num, Truth};
use crate::explain::{Step, Trace, Untraced};
use crate::model::{Approval, Kind, Scope};

/// One call as the engine sees it: a tool call, a resource read, a prompt, another method,
/// or a request from the server.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Which section of the policy decides it.
    pub kind: Kind,
    /// What is called: the tool's or prompt's name, the resource's URI, the method.
    pub tool: &'a str,
    /// The call's `arguments` object; `None` when the call has none.
    pub args: Option<&'a Value>,
    /// The caller's grant (credential name), for `grant`-scoped limits.
    pub grant: Option<&'a str>,
    /// The MCP session id, for `session`-scoped limits.
    pub session: Option<&'a str>,
    /// The client's address, for `ip`-scoped limits.
    pub ip: Option<IpAddr>,
    /// The claims of the caller's validated token (JWT), for `caller.claims.*` conditions.
    pub claims: Option<&'a Value>,
    /// What the caller has used of each counter that conditions read (`counter.NAME`), as
    /// the counter store reported it; a counter missing here makes its conditions false.
    pub counters: Option<&'a CounterValues>,
}

/// Counter name → units the caller has used of its bucket (not yet refilled).
pub type CounterValues = std::collections::HashMap<String, u64>;

impl<'a> Call<'a> {
    /// A tool call.
    pub fn new(tool: &'a str) -> Self {
        Call::of(Kind::Tool, tool)
    }
    /// A call of any kind: `Call::of(Kind::Resource, "file:///srv/a.md")`.
    pub fn of(kind: Kind, name: &'a str) -> Self {
        Call {
            kind,
            tool: name,
            args: None,
            grant: None,
            session: None,
            ip: None,
            claims: None,
            counters: None,
        }
    }
    pub fn counters(mut self, counters: &'a CounterValues) -> Self {
        self.counters = Some(counters);
        self
    }
    pub fn args(mut self, args: &'a Value) -> Self {
        self.args = Some(args);
        self
    }
    pub fn grant(mut self, grant: &'a str) -> Self {
        self.grant = Some(grant);
        self
    }
    pub fn session(mut self, session: &'a str) -> Self {
        self.session = Some(session);
        self
    }
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }
    pub fn claims(mut self, claims: &'a Value) -> Self {
        self.claims = Some(claims);
        self
    }
}

/// What the gate does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Forward it (after charging the limits).
    Allow,
    /// Refuse it with the message.
    Deny,
    /// Charge the limits, then forward only if a person approves.
    Approval,
}

/// One limit an allowed call must be charged, and by how much.
#[derive(Debug, Clone)]
pub struct Charge<'p> {
    pub limit: &'p CompiledLimit,
    pub cost: u64,
    /// Whose bucket: the grant, session id, client address or claim value (`""` for
    /// `global`), from [`CompiledLimit::scope_key`].
    pub key: String,
}

/// The engine's answer for one call. Borrowed from the [`CompiledPolicy`].
#[derive(Debug, Clone)]
pub struct Decision<'p> {
    outcome: Outcome,
    rule: &'p str,
    message: Cow<'p, str>,
    charges: Vec<Charge<'p>>,
    approval: Option<&'p Approval>,
    shadow: bool,
}

impl<'p> Decision<'p> {
    fn deny(rule: &'p str, message: impl Into<Cow<'p, str>>, shadow: bool) -> Self {
        Decision {
            outcome: Outcome::Deny,
            rule,
            message: message.into(),
            charges: Vec::new(),
            approval: None,
            shadow,
        }
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
    pub fn is_allow(&self) -> bool {
        self.outcome == Outcome::Allow
    }
    pub fn is_deny(&self) -> bool {
        self.outcome == Outcome::Deny
    }
    /// The rule that decided: a JSON Pointer into the policy, `(hidden)`,
    /// `(default deny)` or `(default allow)`.
    pub fn rule(&self) -> &'p str {
        self.rule
    }
    /// Why: the rule's `on_deny` for a denial, a short description otherwise.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Limits to charge, all or none, before forwarding (empty for a denial).
    pub fn charges(&self) -> &[Charge<'p>] {
        &self.charges
    }
    /// The approval step this call must pass, when the outcome is [`Outcome::Approval`].
    pub fn approval(&self) -> Option<&'p Approval> {
        self.approval
    }
    /// Shadow mode: report this decision, but forward the call whatever it says.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }
    /// The message and the charges, taken rather than copied, for a caller that keeps them.
    pub fn into_message_and_charges(self) -> (Cow<'p, str>, Vec<Charge<'p>>) {
        (self.message, self.charges)
    }
}

pub(crate) const HIDDEN: &str = "(hidden)";
pub(crate) const DEFAULT_DENY: &str = "(default deny)";
pub(crate) const DEFAULT_ALLOW: &str = "(default allow)";

impl CompiledPolicy {
    /// Decides one call: hide, entry lookup, `deny_if`, `require`, and the limits to charge.
    pub fn decide<'p>(&'p self, call: &Call<'_>) -> Decision<'p> {
        self.decide_traced(call, &mut Untraced)
    }

    pub(crate) fn decide_traced<'p, T: Trace>(
        &'p self,
        call: &Call<'_>,
        trace: &mut T,
    ) -> Decision<'p> {
        let section = self.section(call.kind);
        let noun = call.kind.noun();
        // Step 3 first for exact names: their hidden flag is precomputed.
        let entry = match section.exact.get(call.tool) {
            Some(&i) => {
                let e = &section.entries[i];
                if e.hidden {
                    return self.hidden(section, call, e.shadow, trace);
                }
                trace.step(|| Step::new(&e.pointer, format!("exact entry for `{}`", call.tool)));
                Some(e)
            }
            None => {
                if section.is_hidden(call.tool) {
                    let shadow = section
                        .globs
                        .find(call.tool)
                        .map_or(self.shadow, |(_, &i)| section.entries[i].shadow);
                    return self.hidden(section, call, shadow, trace);
                }
                section.globs.find(call.tool).map(|(g, &i)| {
                    let e = &section.entries[i];
                    trace.step(|| {
                        Step::new(
                            &e.pointer,
                            format!(
                                "glob `{}` matches `{}` (most specific)",
                                g.as_str(),
                                call.tool
                            ),
                        )
                    });
                    e
                })
            }
        };
        let Some(entry) = entry else {
            if !section.default_allow {
                trace.step(|| {
                    Step::new(
                        DEFAULT_DENY,
                        format!("no {noun} entry matches `{}`", call.tool),
                    )
                });
                let message = format!("{noun} `{}` is not allowed by this policy", call.tool);
                return Decision::deny(DEFAULT_DENY, message, self.shadow);
            }
            trace.step(|| {
                Step::new(
                    DEFAULT_ALLOW,
                    format!("no {noun} entry matches `{}`", call.tool),
                )
            });
            if let Some(rule) = section
                .default_deny_if
                .iter()
                .find(|r| fires(r, call, trace))
            {
                return Decision::deny(&rule.pointer, rule.message.as_str(), self.shadow);
            }
            if let Some(rule) = section
                .default_require
                .iter()
                .find(|r| !holds(r, call, trace))
            {
                return Decision::deny(&rule.pointer, rule.message.as_str(), self.shadow);
            }
            return self.permit(
                call,
                DEFAULT_ALLOW,
                &section.default_limits,
                None,
                self.shadow,
                trace,
            );
        };
        let shadow = entry.shadow;
        if let Some(rule) = entry.deny_if.iter().find(|r| fires(r, call, trace)) {
            return Decision::deny(&rule.pointer, rule.message.as_str(), shadow);
        }
        if let Some(rule) = entry.require.iter().find(|r| !holds(r, call, trace)) {
            return Decision::deny(&rule.pointer, rule.message.as_str(), shadow);
        }
        self.permit(
            call,
            &entry.pointer,
            &entry.limits,
            entry.approval.as_ref(),
            shadow,
            trace,
        )
    }

    /// Whether `call` could ever be allowed for this caller, whatever its arguments: what
    /// list answers keep. `false` for a hidden name, a default-denied one, and one an
    /// entry denies on conditions about the caller alone (or always). Rules that read
    /// arguments or counters, limits and approvals do not hide an entry: the agent learns
    /// of them when it calls. An entry in shadow mode is kept (unless hidden): shadow
    /// blocks nothing.
    pub fn visible(&self, call: &Call<'_>) -> bool {
        let section = self.section(call.kind);
        if section.is_hidden(call.tool) {
            return false;
        }
        if !self.filters_lists() {
            return true;
        }
        let (shadow, deny_if, require) = match section.entry(call.tool) {
            Some(Entry {
                shadow,
                deny_if,
                require,
                ..
            }) => (*shadow, deny_if, require),
            None if section.default_allow => (
                self.shadow,
                &section.default_deny_if,
                &section.default_require,
            ),
            None => return self.shadow,
        };
        if shadow {
            return true;
        }
        // Conditions on the caller alone have the same answer for every call it makes.
        let on_caller = |c: &CompiledCondition| !c.reads_arguments() && c.counter_read().is_none();
        // A deny_if on the caller alone that fires denies every call.
        let always_denies = |r: &CompiledRule| {
            r.conditions.iter().all(|(_, c)| on_caller(c)) && fires(r, call, &mut Untraced)
        };
        // A require with a condition on the caller that fails can never hold.
        let never_holds = |r: &CompiledRule| {
            r.conditions
                .iter()
                .any(|(_, c)| on_caller(c) && c.eval(call) != Truth::True)
        };
        !deny_if.iter().any(always_denies) && !require.iter().any(never_holds)
    }

    fn hidden<'p, T: Trace>(
        &'p self,
        section: &Section,
        call: &Call<'_>,
        shadow: bool,
        trace: &mut T,
    ) -> Decision<'p> {
        trace.step(|| {
            Step::new(
                HIDDEN,
                format!(
                    "`{}` matches hide entry `{}`",
                    call.tool,
                    section.hidden_by(call.tool).unwrap_or(call.tool)
                ),
            )
        });
        Decision::deny(
            HIDDEN,
            format!("{} `{}` is not available", call.kind.noun(), call.tool),
            shadow,
        )
    }

    fn permit<'p, T: Trace>(
        &'p self,
        call: &Call<'_>,
        rule: &'p str,
        limits: &[usize],
        approval: Option<&'p Approval>,
        shadow: bool,
        trace: &mut T,
    ) -> Decision<'p> {
        let mut charges = Vec::with_capacity(limits.len());
        for &i in limits {
            let limit = &self.limits[i];
            let Some(key) = limit.scope_key(call) else {
                let what: Cow<'_, str> = match limit.scope {
                    Scope::Grant => "grant (credential)".into(),
                    Scope::Session => "MCP session id".into(),
                    Scope::Ip => "client address".into(),
                    Scope::Claim => format!("claim `{}`", limit.claim().unwrap_or("?")).into(),
                    Scope::Global => "key".into(),
                };
                trace.step(|| {
                    Step::new(
                        &limit.pointer,
                        format!("limit is per {}, and the call has no {what}", limit.scope),
                    )
                });
                let message = format!(
                    "the limit `{}` is counted per {}, and this call has no {what}",
                    limit.counter_name, limit.scope
                );
                return Decision::deny(&limit.pointer, message, shadow);
            };
            let cost = match &limit.cost {
                None => 1,
                Some((path, arg)) => match arg
                    .resolve(call.args)
                    .and_then(Num::of)
                    .and_then(Num::to_cost)
                {
                    Some(cost) => cost,
                    None => {
                        trace.step(|| {
                            Step::new(
                                &limit.pointer,
                                format!("`{path}` is missing or not a non-negative number"),
                            )
                        });
                        let message = format!(
                            "`{path}` must be a non-negative number: the limit `{}` charges it",
                            limit.counter_name
                        );
                        return Decision::deny(&limit.pointer, message, shadow);
                    }
                },
            };
            trace.step(|| {
                Step::new(
                    &limit.pointer,
                    format!(
                        "charge {cost} to `{}` ({} per {}s per {})",
                        limit.counter_name, limit.quota.max, limit.quota.window_secs, limit.scope
                    ),
                )
            });
            charges.push(crate::Charge { limit, cost, key });
        }
        let (outcome, message) = match approval {
            Some(_) => (Outcome::Approval, "requires human approval"),
            None => (Outcome::Allow, "allowed"),
        };
        Decision {
            outcome,
            rule,
            message: Cow::Borrowed(message),
            charges,
            approval,
            shadow,
        }
    }
}

/// A `deny_if` entry fires unless one of its conditions is false; unknown counts as true.
fn fires<T: Trace>(rule: &CompiledRule, call: &Call<'_>, trace: &mut T) -> bool {
    let fired = rule.conditions.iter().all(|(at, c)| {
        let t = c.eval(call);
        trace.step(|| Step::condition(at, t));
        t != Truth::False
    });
    trace.step(|| {
        Step::new(
            &rule.pointer,
            if fired {
                "deny_if fires: deny"
            } else {
                "deny_if does not fire"
            },
        )
    });
    fired
}

/// A `require` entry holds only if every condition is true; unknown counts as false.
fn holds<T: Trace>(rule: &CompiledRule, call: &Call<'_>, trace: &mut T) -> bool {
    let held = rule.conditions.iter().all(|(at, c)| {
        let t = c.eval(call);
        trace.step(|| Step::condition(at, t));
        t == Truth::True
    });
    trace.step(|| {
        Step::new(
            &rule.pointer,
            if held {
                "require holds"
            } else {
                "require fails: deny"
            },
        )
    });
    held
}
