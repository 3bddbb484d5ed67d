//! Warnings: a valid policy that probably does not do what its author meant.
//!
//! Nothing here makes a policy invalid; `warden check` prints these and still exits 0.
//! With a [`Catalog`] (the server's `tools/list`), names are checked against real tools.

use crate::catalog::Catalog;
use crate::compiled::{CompiledPolicy, CompiledRule};
use crate::condition::contradictory;
use crate::glob::Glob;
use crate::pointer::{child, index};
use crate::problem::{Problem, Problems};
use crate::suggest::did_you_mean;

/// Every warning for `policy`, in document order.
pub fn lint(policy: &CompiledPolicy, catalog: Option<&Catalog>) -> Problems {
    let mut out = Vec::new();
    if let Some(catalog) = catalog {
        for (i, name) in policy.policy().hide.iter().flatten().enumerate() {
            unknown_name(name, &index("/hide", i), catalog, &mut out);
        }
    }
    for entry in &policy.section(crate::Kind::Tool).entries {
        let key = entry.key.as_str();
        let key_at = || Problem::new(entry.pointer.clone(), "").at_key();
        if let Some(catalog) = catalog {
            unknown_name(key, &entry.pointer, catalog, &mut out);
        }
        if !Glob::is_glob(key) {
            if let Some(by) = policy.hidden_by(key) {
                out.push(Problem {
                    message: format!("`{key}` is hidden (by `{by}`), so this block never takes effect"),
                    ..key_at()
                }
                .with_help("hidden tools are always denied: drop the block, or take the tool out of `hide`"));
            }
        } else if let Some(catalog) = catalog {
            let matched: Vec<&str> = catalog
                .names()
                .filter(|n| Glob::new(key).matches(n))
                .collect();
            let reachable: Vec<&str> = matched
                .iter()
                .copied()
                .filter(|n| !policy.is_hidden(n) && policy.entry_key(n) == Some(key))
                .collect();
            if !matched.is_empty() && reachable.is_empty() {
                let why = if matched.iter().all(|n| policy.is_hidden(n)) {
                    "every tool it matches is hidden".to_string()
                } else {
                    format!(
                        "every tool it matches has a more specific block ({})",
                        sample(&matched)
                    )
                };
                out.push(
                    Problem {
                        message: format!("glob `{key}` never takes effect: {why}"),
                        ..key_at()
                    }
                    .with_help("remove the block, or the blocks that take its tools"),
                );
            }
        } else if policy
            .policy()
            .hide
            .iter()
            .flatten()
            .any(|h| h == "*" || h == key)
        {
            out.push(Problem {
                message: format!(
                    "every tool `{key}` matches is hidden, so this block never takes effect"
                ),
                ..key_at()
            });
        }
        rules(
            &entry.deny_if,
            "can never hold together, so this rule never denies",
            &mut out,
        );
        rules(
            &entry.require,
            "can never be met, so every call is denied",
            &mut out,
        );
    }
    Problems(out)
}

fn rules(rules: &[CompiledRule], what: &str, out: &mut Vec<Problem>) {
    for rule in rules {
        let conds: Vec<_> = rule.conditions.iter().map(|(_, c)| c).collect();
        if !conds.is_empty() && contradictory(&conds) {
            out.push(
                Problem::new(child(&rule.pointer, "conditions"), format!("these conditions {what}"))
                    .with_help("conditions joined by `and` must all hold at once; check the values and operators"),
            );
        }
    }
}

/// A name (or glob) in the policy that no tool of the server answers to.
fn unknown_name(name: &str, at: &str, catalog: &Catalog, out: &mut Vec<Problem>) {
    if Glob::is_glob(name) {
        if name != "*" && !catalog.names().any(|n| Glob::new(name).matches(n)) {
            out.push(
                Problem::new(at, format!("`{name}` matches no tool of this server")).at_key_if(at),
            );
        }
        return;
    }
    if catalog.contains(name) {
        return;
    }
    let mut p = Problem::new(at, format!("no tool named `{name}` on this server")).at_key_if(at);
    p.help = Some(match did_you_mean(name, catalog.names()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => match similar(name, catalog) {
            found if found.is_empty() => format!(
                "none of the server's {} tools is close to this name",
                catalog.tools.len()
            ),
            found => format!("similar tools: {}", sample(&found)),
        },
    });
    out.push(p);
}

/// Tools sharing the most `_`-separated words with `name` (at least two), closest first.
fn similar<'a>(name: &str, catalog: &'a Catalog) -> Vec<&'a str> {
    let words: Vec<&str> = name.split('_').filter(|w| !w.is_empty()).collect();
    let shared = |n: &str| n.split('_').filter(|w| words.contains(w)).count();
    let best = catalog.names().map(shared).max().unwrap_or(0);
    if best < 2 {
        return Vec::new();
    }
    let mut found: Vec<&str> = catalog.names().filter(|n| shared(n) == best).collect();
    // Names made only of the typed words first: `get_linode_instance` → `get_instance`.
    found.sort_by_key(|n| {
        (
            n.split('_').count() - shared(n),
            strsim::levenshtein(name, n),
        )
    });
    found
}

fn sample(names: &[&str]) -> String {
    let shown: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
    match names.len() {
        n if n > 3 => format!("{}, and {} more", shown.join(", "), n - 3),
        _ => shown.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;
    use serde_json::json;

    fn warnings(policy: serde_json::Value, tools: &[&str]) -> Vec<String> {
        let policy = CompiledPolicy::new(&Policy::from_value(&policy).unwrap()).unwrap();
        let catalog = Catalog::from_value(&json!(
            tools.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()
        ))
        .unwrap();
        lint(&policy, (!tools.is_empty()).then_some(&catalog))
            .into_iter()
            .map(|p| format!("{} {}", p.pointer, p.message))
            .collect()
    }

    #[test]
    fn unknown_names_get_a_suggestion() {
        let policy = json!({"version": "1", "tools": {"create_personal_acess_token": {}}, "hide": ["delete_al"]});
        let tools = ["create_personal_access_token", "delete_all"];
        let p = CompiledPolicy::new(&Policy::from_value(&policy).unwrap()).unwrap();
        let catalog =
            Catalog::from_value(&json!([{"name": tools[0]}, {"name": tools[1]}])).unwrap();
        let found = lint(&p, Some(&catalog));
        assert_eq!(found.len(), 2, "{found}");
        assert_eq!(found.0[0].pointer, "/hide/0");
        assert_eq!(
            found.0[0].help.as_deref(),
            Some("did you mean `delete_all`?")
        );
        assert_eq!(
            found.0[1].help.as_deref(),
            Some("did you mean `create_personal_access_token`?")
        );
    }

    #[test]
    fn blocks_that_never_take_effect() {
        let policy = json!({"version": "1", "hide": ["delete_*"], "tools": {
            "delete_instance": {},
            "list_*": {}, "list_a": {}, "list_b": {},
            "get_*": {}, "get_a": {},
        }});
        let found = warnings(
            policy,
            &["delete_instance", "list_a", "list_b", "get_a", "get_b"],
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("/tools/delete_instance `delete_instance` is hidden"),
            "{found:?}"
        );
        assert!(found[1].starts_with("/tools/list_* glob `list_*` never takes effect: every tool it matches has a more specific block (`list_a`, `list_b`)"), "{found:?}");
    }

    #[test]
    fn self_contradicting_rules() {
        let policy = json!({"version": "1", "tools": {"t": {
            "require": [{"conditions": [
                {"path": "args.region", "op": "eq", "value": "us"},
                {"path": "args.region", "op": "eq", "value": "eu"}]}],
            "deny_if": [{"conditions": [
                {"path": "args.n", "op": "gt", "value": 10},
                {"path": "args.n", "op": "lt", "value": 5}]},
                {"conditions": [{"path": "args.n", "op": "gt", "value": 10}]}]
        }}});
        let found = warnings(policy, &[]);
        assert_eq!(
            found,
            [
                "/tools/t/deny_if/0/conditions these conditions can never hold together, so this rule never denies",
                "/tools/t/require/0/conditions these conditions can never be met, so every call is denied",
            ]
        );
    }
}
