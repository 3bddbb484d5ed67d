//! Lowering to the hosted PolicyLayer format: only keys the hosted product knows.
//!
//! Globs are expanded against the server's catalog, an approval becomes the hosted practice
//! (an unconditional `deny_if` saying "Requires human approval."), and anything the hosted
//! format cannot say is a located problem, never silently dropped.

use indexmap::IndexMap;

use crate::catalog::Catalog;
use crate::compiled::CompiledPolicy;
use crate::condition::CondPath;
use crate::glob::Glob;
use crate::model::*;
use crate::pointer::{child, index};
use crate::problem::{Problem, Problems};

/// The message hosted policies use for tools that need a person.
pub const APPROVAL_MESSAGE: &str = "Requires human approval.";

/// `policy` in hosted-compatible form. `catalog` is needed only when the policy has globs.
pub fn to_policylayer(policy: &Policy, catalog: Option<&Catalog>) -> Result<Policy, Problems> {
    lower(policy, catalog, false).map(|(p, _)| p)
}

/// `policy` as the hosted product's JSON. Unlike [`to_policylayer`], a per-session limit
/// on a tool's default counter (`<tool>_rate`) becomes the hosted FAQ's
/// `rate_limit: {max, window}` block, which the hosted product tracks per agent session.
pub fn to_policylayer_json(
    policy: &Policy,
    catalog: Option<&Catalog>,
) -> Result<serde_json::Value, Problems> {
    let (lowered, rate_limits) = lower(policy, catalog, true)?;
    let mut doc = lowered.to_value();
    for (tool, max, window_secs) in rate_limits {
        if let Some(entry) = doc.get_mut("tools").and_then(|t| t.get_mut(&tool)) {
            entry["rate_limit"] = serde_json::json!({"max": max, "window": window_secs});
            // Its only limit became the block: no empty list beside it.
            if let Some(m) = entry.as_object_mut()
                && m.get("limits")
                    .and_then(|l| l.as_array())
                    .is_some_and(Vec::is_empty)
            {
                m.remove("limits");
            }
        }
    }
    Ok(doc)
}

/// A per-session default-counter limit kept for the `rate_limit` form: tool, max, seconds.
type RateLimit = (String, u64, u64);

fn lower(
    policy: &Policy,
    catalog: Option<&Catalog>,
    rate_limit_form: bool,
) -> Result<(Policy, Vec<RateLimit>), Problems> {
    let compiled = CompiledPolicy::new(policy).map_err(|e| match e {
        crate::Error::Invalid { problems } => problems,
        other => Problems(vec![Problem::new("", other.to_string())]),
    })?;
    let mut l = Lowering {
        catalog,
        compiled: &compiled,
        problems: Vec::new(),
        rate_limit_form,
        rate_limits: Vec::new(),
    };
    let out = l.policy(policy);
    if l.problems.is_empty() {
        Ok((out, l.rate_limits))
    } else {
        Err(Problems(l.problems))
    }
}

struct Lowering<'a> {
    catalog: Option<&'a Catalog>,
    compiled: &'a CompiledPolicy,
    problems: Vec<Problem>,
    /// Whether per-session default-counter limits may become `rate_limit` blocks.
    rate_limit_form: bool,
    rate_limits: Vec<RateLimit>,
}

impl Lowering<'_> {
    fn policy(&mut self, p: &Policy) -> Policy {
        if p.mode.is_some() {
            self.problems.push(
                Problem::new("/mode", "the hosted format has no shadow mode")
                    .with_help("remove `mode`, or keep this policy on Warden"),
            );
        }
        // The hosted product rules tools only; what Warden rules beyond them cannot be said.
        let beyond: [(&str, bool, &str); 6] = [
            ("defaults", p.defaults.is_some(), "defaults per kind"),
            ("hide_resources", p.hide_resources.is_some(), "resources"),
            ("hide_prompts", p.hide_prompts.is_some(), "prompts"),
            ("resources", p.resources.is_some(), "resources"),
            ("prompts", p.prompts.is_some(), "prompts"),
            (
                "server_requests",
                p.server_requests.is_some(),
                "rules for server requests",
            ),
        ];
        for (key, present, what) in beyond {
            if present {
                self.problems.push(
                    Problem::new(format!("/{key}"), format!("the hosted format has no {what}"))
                        .at_key()
                        .with_help("the hosted product rules tools only: remove this section, or keep this policy on Warden"),
                );
            }
        }
        let hide = p.hide.as_ref().map(|hide| {
            let mut out: Vec<String> = Vec::new();
            for (i, name) in hide.iter().enumerate() {
                // `*` is hosted syntax; other globs are Warden's.
                if name == "*" || !Glob::is_glob(name) {
                    push_unique(&mut out, name.clone());
                } else if let Some(names) = self.expand(name, &index("/hide", i)) {
                    for n in names {
                        push_unique(&mut out, n);
                    }
                }
            }
            out
        });
        if let Some(a) = &p.all_tools {
            for (field, rules) in [("require", &a.require), ("deny_if", &a.deny_if)] {
                if rules.as_ref().is_some_and(|r| !r.is_empty()) {
                    self.problems.push(
                        Problem::new(
                            child("/all_tools", field),
                            "the hosted format has no rules for every tool",
                        )
                        .with_help(
                            "repeat the rule in each tool's entry, or keep this policy on Warden",
                        ),
                    );
                }
            }
        }
        let all_tools = p.all_tools.as_ref().map(|a| AllTools {
            require: None,
            deny_if: None,
            limits: a
                .limits
                .as_ref()
                .map(|ls| self.limits(ls, "/all_tools/limits", None)),
        });
        let tools = p.tools.as_ref().map(|tools| {
            let mut out = IndexMap::new();
            for (key, rule) in tools {
                let at = child("/tools", key);
                let lowered = self.rule(rule, &at, Some(key));
                if !Glob::is_glob(key) {
                    out.insert(key.clone(), lowered);
                    continue;
                }
                for name in self.expand(key, &at).unwrap_or_default() {
                    // Only the tools this glob governs: exact blocks and more specific
                    // globs keep theirs, hidden tools stay denied.
                    if self.compiled.entry_key(&name) == Some(key)
                        && !self.compiled.is_hidden(&name)
                    {
                        out.insert(name, lowered.clone());
                    }
                }
            }
            out
        });
        Policy {
            version: p.version.clone(),
            default: p.default,
            mode: None,
            hide,
            all_tools,
            tools,
            // `lists` says what lists show, not what is decided; the hosted product shows
            // every tool that is not hidden, as `lists: all` does.
            lists: None,
            defaults: None,
            hide_resources: None,
            hide_prompts: None,
            resources: None,
            prompts: None,
            server_requests: None,
        }
    }

    fn expand(&mut self, glob: &str, at: &str) -> Option<Vec<String>> {
        let Some(catalog) = self.catalog else {
            self.problems.push(
                Problem::new(
                    at,
                    format!(
                        "the hosted format has no globs: `{glob}` needs a tool catalog to expand"
                    ),
                )
                .at_key_if(at)
                .with_help("pass the server's tools/list answer with --tools TOOLS.json"),
            );
            return None;
        };
        let g = Glob::new(glob);
        Some(
            catalog
                .names()
                .filter(|n| g.matches(n))
                .map(str::to_owned)
                .collect(),
        )
    }

    fn rule(&mut self, r: &ToolRule, at: &str, tool: Option<&str>) -> ToolRule {
        if r.mode.is_some() {
            self.problems.push(
                Problem::new(child(at, "mode"), "the hosted format has no shadow mode")
                    .with_help("remove the tool's `mode`, or keep this policy on Warden"),
            );
        }
        for (key, rules) in [("require", &r.require), ("deny_if", &r.deny_if)] {
            for (i, rule) in rules.iter().flatten().enumerate() {
                for (j, c) in rule.conditions.iter().enumerate() {
                    if CondPath::parse(&c.path).is_some_and(|p| p.is_caller()) {
                        let here = index(&child(&index(&child(at, key), i), "conditions"), j);
                        self.problems.push(
                            Problem::new(
                                child(&here, "path"),
                                format!("the hosted format cannot read the caller (`{}`)", c.path),
                            )
                            .with_help(
                                "its conditions see arguments only; keep this policy on Warden",
                            ),
                        );
                    }
                }
            }
        }
        let mut deny_if = r.deny_if.clone();
        if let Some(approval) = &r.approval {
            if approval.on_timeout == Some(OnTimeout::Allow) {
                self.problems.push(
                    Problem::new(child(&child(at, "approval"), "on_timeout"),
                        "the hosted format cannot wait for a person, and lowering `on timeout allow` to a denial would change what this rule means")
                        .with_help("use `on timeout deny` (the default), or keep this policy on Warden"),
                );
            }
            deny_if.get_or_insert_with(Vec::new).push(Rule {
                conditions: Vec::new(),
                on_deny: Some(APPROVAL_MESSAGE.to_string()),
            });
        }
        ToolRule {
            require: r.require.clone(),
            deny_if,
            limits: r
                .limits
                .as_ref()
                .map(|ls| self.limits(ls, &child(at, "limits"), tool)),
            approval: None,
            mode: None,
        }
    }

    fn limits(&mut self, limits: &[Limit], at: &str, tool: Option<&str>) -> Vec<Limit> {
        let mut kept = Vec::new();
        for (i, l) in limits.iter().enumerate() {
            let here = index(at, i);
            if l.refund_on_error {
                self.problems.push(
                    Problem::new(
                        child(&here, "refund_on_error"),
                        "the hosted format does not give charges back",
                    )
                    .with_help("remove `refund on error`, or keep this policy on Warden"),
                );
            }
            if l.on_deny.is_some() {
                self.problems.push(
                    Problem::new(
                        child(&here, "on_deny"),
                        "the hosted format has no message for a limit",
                    )
                    .with_help("remove the `else` message, or keep this policy on Warden"),
                );
            }
            // The FAQ's `rate_limit` block: per session, on the tool's default counter.
            if let Some(tool) = tool
                && self.rate_limit_form
                && l.scope == Some(Scope::Session)
                && l.counter == format!("{tool}_rate")
                && l.cost.is_none()
                && l.claim.is_none()
            {
                self.rate_limits
                    .push((tool.to_owned(), l.max, l.window.as_secs()));
                continue;
            }
            kept.push(l.clone());
            if let Some(scope) = l.scope.filter(|s| *s != Scope::Grant) {
                self.problems.push(
                    Problem::new(
                        child(&here, "scope"),
                        format!(
                            "the hosted format only counts per grant, not `{}`",
                            scope.as_str()
                        ),
                    )
                    .with_help("use `per grant`, or keep this policy on Warden"),
                );
            }
            if l.cost.is_some() {
                self.problems.push(
                    Problem::new(
                        child(&here, "cost"),
                        "the hosted format has no weighted limits",
                    )
                    .with_help(
                        "remove `cost` to count calls instead, or keep this policy on Warden",
                    ),
                );
            }
        }
        kept
    }
}

fn push_unique(out: &mut Vec<String>, name: String) {
    if !out.contains(&name) {
        out.push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lower(policy: serde_json::Value, tools: &[&str]) -> Result<serde_json::Value, Vec<String>> {
        let catalog = Catalog::from_value(&json!(
            tools.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()
        ))
        .unwrap();
        let policy = Policy::from_value(&policy).unwrap();
        to_policylayer(&policy, (!tools.is_empty()).then_some(&catalog))
            .map(|p| p.to_value())
            .map_err(|ps| {
                ps.into_iter()
                    .map(|p| format!("{} {}", p.pointer, p.message))
                    .collect()
            })
    }

    #[test]
    fn expands_globs_and_lowers_approval() {
        let out = lower(
            json!({"version": "1", "default": "deny", "hide": ["delete_*", "x"],
            "tools": {
                "get_*": {},
                "get_secret": {"approval": {"timeout": 60}},
                "list_*": {"limits": [{"counter": "reads", "window": "minute", "max": 5}]}
            }}),
            &[
                "get_a",
                "get_secret",
                "list_a",
                "list_b",
                "delete_a",
                "get_delete_me",
            ],
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"version": "1", "default": "deny", "hide": ["delete_a", "x"],
            "tools": {
                "get_a": {},
                "get_delete_me": {},
                "get_secret": {"deny_if": [{"conditions": [], "on_deny": "Requires human approval."}]},
                "list_a": {"limits": [{"counter": "reads", "window": "minute", "max": 5}]},
                "list_b": {"limits": [{"counter": "reads", "window": "minute", "max": 5}]}
            }})
        );
    }

    #[test]
    fn refuses_what_hosted_cannot_say() {
        let errors = lower(
            json!({"version": "1", "mode": "shadow", "tools": {
                "pay": {"limits": [{"counter": "spend", "window": "day", "max": 100, "scope": "session", "cost": "args.amount"}],
                        "approval": {"on_timeout": "allow"}, "mode": "enforce"},
                "list_*": {}
            }}),
            &[],
        )
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "/mode the hosted format has no shadow mode",
                "/tools/pay/mode the hosted format has no shadow mode",
                "/tools/pay/approval/on_timeout the hosted format cannot wait for a person, and lowering `on timeout allow` to a denial would change what this rule means",
                "/tools/pay/limits/0/scope the hosted format only counts per grant, not `session`",
                "/tools/pay/limits/0/cost the hosted format has no weighted limits",
                "/tools/list_* the hosted format has no globs: `list_*` needs a tool catalog to expand",
            ]
        );
    }
}
