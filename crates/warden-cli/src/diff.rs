//! `warden diff OLD NEW`: what an edit changes, tool by tool, before it ships.
//!
//! Each tool (the catalog's, or every exact name the two policies mention) gets a decision
//! class under each policy — hidden, denied, allowed, needs approval, or conditional (its
//! entry has conditions on arguments or caller) — and the limits a call to it is charged.
//! Tools whose class or limits change are listed, grouped; then the rules added and removed,
//! where they are written. Resources, prompts and server requests follow: each kind's
//! default where it changes, and its entries and hide patterns added, removed and changed.
//! Works across `.pol` and `.json`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;
use warden_policy::{Call, CompiledPolicy, DefaultAction, Kind, Outcome, Policy};

use crate::error::CliError;
use crate::source::{self, Source};

/// How a policy treats calls to one tool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Hidden,
    Denied,
    Conditional,
    NeedsApproval,
    Allowed,
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Class::Hidden => "hidden",
            Class::Denied => "denied",
            Class::Conditional => "conditional",
            Class::NeedsApproval => "needs approval",
            Class::Allowed => "allowed",
        })
    }
}

struct Side {
    src: Source,
    policy: Policy,
    compiled: CompiledPolicy,
    doc: Value,
}

impl Side {
    fn load(path: &Path) -> Result<Side, CliError> {
        let (src, policy, compiled) = source::load_compiled(path)?;
        let doc = policy.to_value();
        Ok(Side {
            src,
            policy,
            compiled,
            doc,
        })
    }

    /// The class of `tool`, and its limits as `counter max/window per scope`.
    fn class(&self, tool: &str) -> (Class, Vec<String>) {
        let limits = |entry: Option<&Value>| -> Vec<String> {
            let mut out: Vec<String> = [entry, self.doc.pointer("/all_tools")]
                .into_iter()
                .flatten()
                .flat_map(|e| {
                    e.get("limits")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .map(|l| {
                    let s = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    let max = l.get("max").map(Value::to_string).unwrap_or_default();
                    let scope = match s("scope").as_str() {
                        "" => "grant".to_owned(),
                        "claim" => format!("claim {}", s("claim")),
                        other => other.to_owned(),
                    };
                    format!("{} {max}/{} per {scope}", s("counter"), s("window"))
                })
                .collect();
            out.sort();
            out
        };
        if self.compiled.is_hidden(tool) {
            return (Class::Hidden, Vec::new());
        }
        let entry = self
            .compiled
            .entry_key(tool)
            .and_then(|k| self.doc.get("tools").and_then(|t| t.get(k)));
        let conditional = entry.is_some_and(|e| {
            ["require", "deny_if"].iter().any(|f| {
                e.get(*f).and_then(Value::as_array).is_some_and(|rules| {
                    rules.iter().any(|r| {
                        r.get("conditions")
                            .and_then(Value::as_array)
                            .is_some_and(|c| !c.is_empty())
                    })
                })
            })
        });
        let class = match self.compiled.decide(&Call::new(tool)).outcome() {
            _ if conditional => Class::Conditional,
            Outcome::Deny => Class::Denied,
            Outcome::Approval => Class::NeedsApproval,
            Outcome::Allow => Class::Allowed,
        };
        let limits = if class == Class::Denied {
            Vec::new()
        } else {
            limits(entry)
        };
        (class, limits)
    }

    /// Every exact tool name the policy mentions.
    fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .doc
            .get("tools")
            .and_then(Value::as_object)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        out.extend(
            self.doc
                .get("hide")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned)),
        );
        out.retain(|n| !n.contains(['*', '?']));
        out
    }
}

/// Two warden.toml files: each server's policy against its namesake's, a server added or
/// removed said as such; then the gateway-wide policies.
fn run_configs(old: &Path, new: &Path, fail_on_change: bool) -> Result<ExitCode, CliError> {
    type Servers = Vec<(String, std::path::PathBuf)>;
    let servers = |path: &Path| -> Result<(Servers, Option<std::path::PathBuf>), CliError> {
        let (config, _) = crate::config::load_reported(path, crate::config::Purpose::Check)?;
        let gateway = config.gateway_policy;
        let servers = config
            .servers
            .into_iter()
            .map(|s| (s.name, s.policy))
            .collect();
        Ok((servers, gateway))
    };
    let ((a, gateway_a), (b, gateway_b)) = (servers(old)?, servers(new)?);
    let mut changed = false;
    for (name, before) in &a {
        if !b.iter().any(|(n, _)| n == name) {
            changed |= side(&format!("server {name}"), Some(before), None)?;
        }
    }
    for (name, after) in &b {
        let before = a.iter().find(|(n, _)| n == name).map(|(_, p)| p.as_path());
        changed |= side(&format!("server {name}"), before, Some(after))?;
    }
    changed |= side(
        "gateway-wide policy",
        gateway_a.as_deref(),
        gateway_b.as_deref(),
    )?;
    Ok(if changed && fail_on_change {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// One policy of two warden.tomls (a server's, or the gateway-wide one), as it went from
/// one to the other: whether it changed.
fn side(what: &str, before: Option<&Path>, after: Option<&Path>) -> Result<bool, CliError> {
    match (before, after) {
        (None, None) => Ok(false),
        (Some(before), None) => {
            println!("== {what}: removed (it was {})", before.display());
            Ok(true)
        }
        (None, Some(after)) => {
            println!("== {what}: added, {}", after.display());
            Ok(true)
        }
        (Some(before), Some(after)) => {
            println!("== {what}: {} → {}", before.display(), after.display());
            let changed = run(before, after, None, true)? != ExitCode::SUCCESS;
            println!();
            Ok(changed)
        }
    }
}

pub fn run(
    old: &Path,
    new: &Path,
    tools: Option<&Path>,
    fail_on_change: bool,
) -> Result<ExitCode, CliError> {
    let toml = |p: &Path| p.extension().is_some_and(|e| e == "toml");
    if toml(old) && toml(new) {
        return run_configs(old, new, fail_on_change);
    }
    let catalog = tools.map(source::catalog).transpose()?;
    let (a, b) = (Side::load(old)?, Side::load(new)?);
    let mut names: Vec<String> = match &catalog {
        Some(c) => c.names().map(str::to_owned).collect(),
        None => a.names().into_iter().chain(b.names()).collect(),
    };
    names.sort();
    names.dedup();

    // (old class, new class) → tools; limits changes per tool.
    let mut moved: BTreeMap<(Class, Class), Vec<String>> = BTreeMap::new();
    let mut limits: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for n in &names {
        let ((ca, la), (cb, lb)) = (a.class(n), b.class(n));
        if ca != cb {
            moved
                .entry((ca.clone(), cb.clone()))
                .or_default()
                .push(n.clone());
        }
        if la != lb
            && ca != Class::Denied
            && cb != Class::Denied
            && ca != Class::Hidden
            && cb != Class::Hidden
        {
            limits.push((n.clone(), la, lb));
        }
    }
    let rules_a = crate::policy_tests::rules_of(&a.policy);
    let rules_b = crate::policy_tests::rules_of(&b.policy);
    // Hide entries are compared by pattern (an index shifts when one before it goes).
    // Other kinds' entries and hide lists have their own section below.
    let shown = |r: &&String| {
        !crate::policy_tests::is_hide_marker(r)
            && !r.starts_with("/hide/")
            && (r.starts_with("/tools/") || r.starts_with("/all_tools/"))
    };
    let hides = |side: &Side| -> Vec<(String, String)> {
        side.doc
            .get("hide")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, p)| Some((p.as_str()?.to_owned(), format!("/hide/{i}"))))
            .collect()
    };
    let (hide_a, hide_b) = (hides(&a), hides(&b));
    let hide_added: Vec<&(String, String)> = hide_b
        .iter()
        .filter(|(p, _)| !hide_a.iter().any(|(q, _)| q == p))
        .collect();
    let hide_removed: Vec<&(String, String)> = hide_a
        .iter()
        .filter(|(p, _)| !hide_b.iter().any(|(q, _)| q == p))
        .collect();
    let added: Vec<&String> = rules_b
        .iter()
        .filter(shown)
        .filter(|r| !rules_a.contains(r))
        .collect();
    let removed: Vec<&String> = rules_a
        .iter()
        .filter(shown)
        .filter(|r| !rules_b.contains(r))
        .collect();
    // Each kind's default as it applies (its own, else the policy's).
    let defaults: Vec<(Kind, DefaultAction, DefaultAction)> = Kind::ALL
        .into_iter()
        .map(|k| (k, a.policy.default_for(k), b.policy.default_for(k)))
        .filter(|(_, x, y)| x != y)
        .collect();
    let sections: Vec<(Kind, Vec<String>)> = [Kind::Resource, Kind::Prompt, Kind::ServerRequest]
        .into_iter()
        .map(|k| (k, section_changes(&a, &b, k)))
        .filter(|(_, lines)| !lines.is_empty())
        .collect();
    let mut notes: Vec<String> = [&a, &b]
        .iter()
        .filter_map(|side| {
            crate::report::beyond_tools_note(&side.src, &side.policy, catalog.as_ref())
        })
        .collect();
    notes.dedup(); // a file diffed against itself

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} → {}: {} tools compared{}",
        a.src.name(),
        b.src.name(),
        names.len(),
        if catalog.is_some() {
            " (the catalog's)"
        } else {
            " (named by either policy)"
        }
    )?;
    let changes = moved.values().map(Vec::len).sum::<usize>()
        + limits.len()
        + added.len()
        + removed.len()
        + defaults.len()
        + sections.iter().map(|(_, l)| l.len()).sum::<usize>();
    if changes == 0 {
        writeln!(out, "\nno change")?;
        for n in &notes {
            writeln!(out, "\n{n}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !defaults.is_empty() {
        writeln!(out)?;
    }
    for (kind, from, to) in &defaults {
        match kind {
            Kind::Tool => writeln!(
                out,
                "default: {from} → {to} (every tool the policies do not name)"
            )?,
            Kind::Method => writeln!(
                out,
                "default for methods: {from} → {to} (every client request the gate does not know)"
            )?,
            k => writeln!(
                out,
                "default for {}: {from} → {to} (every {} the policies do not name)",
                k.section(),
                k.noun()
            )?,
        }
    }
    for ((from, to), tools) in &moved {
        writeln!(out, "\n{from} → {to} ({})", tools.len())?;
        for t in tools {
            writeln!(out, "  {t}")?;
        }
    }
    if !limits.is_empty() {
        writeln!(out, "\nlimits changed ({})", limits.len())?;
        let none = || "none".to_owned();
        for (t, la, lb) in &limits {
            let show = |l: &Vec<String>| if l.is_empty() { none() } else { l.join(", ") };
            writeln!(out, "  {t}: {} → {}", show(la), show(lb))?;
        }
    }
    let located = |src: &Source, r: &str| match src.location(r) {
        Some(at) => format!("{r} ({at})"),
        None => r.to_owned(),
    };
    if !added.is_empty() || !hide_added.is_empty() {
        writeln!(out, "\nrules added ({})", added.len() + hide_added.len())?;
        for (p, at) in &hide_added {
            let at = b.src.location(at).unwrap_or_default();
            writeln!(out, "  + hide {p} ({at})")?;
        }
        for r in &added {
            writeln!(out, "  + {}", located(&b.src, r))?;
        }
    }
    if !removed.is_empty() || !hide_removed.is_empty() {
        writeln!(
            out,
            "\nrules removed ({})",
            removed.len() + hide_removed.len()
        )?;
        for (p, at) in &hide_removed {
            let at = a.src.location(at).unwrap_or_default();
            writeln!(out, "  - hide {p} ({at})")?;
        }
        for r in &removed {
            writeln!(out, "  - {}", located(&a.src, r))?;
        }
    }
    for (kind, lines) in &sections {
        let what = match kind {
            Kind::ServerRequest => "server requests",
            k => k.section(),
        };
        writeln!(out, "\n{what} changed ({})", lines.len())?;
        for l in lines {
            writeln!(out, "  {l}")?;
        }
    }
    for n in &notes {
        writeln!(out, "\n{n}")?;
    }
    Ok(if fail_on_change {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// One kind's entries and hide patterns that NEW adds (`+`), removes (`-`) or changes (`~`),
/// each where it is written (a removed one in OLD).
fn section_changes(a: &Side, b: &Side, kind: Kind) -> Vec<String> {
    use warden_policy::pointer::{child, index};
    let section = format!("/{}", kind.section());
    let at = |side: &Side, pointer: &str| {
        side.src
            .location(pointer)
            .map_or_else(String::new, |l| format!(" ({l})"))
    };
    let mut out = Vec::new();
    if let Some(key) = kind.hide_key() {
        let (ha, hb) = (a.policy.hidden(kind), b.policy.hidden(kind));
        let hide = format!("/{key}");
        for (i, p) in hb.iter().enumerate().filter(|(_, p)| !ha.contains(p)) {
            out.push(format!("+ hide {p}{}", at(b, &index(&hide, i))));
        }
        for (i, p) in ha.iter().enumerate().filter(|(_, p)| !hb.contains(p)) {
            out.push(format!("- hide {p}{}", at(a, &index(&hide, i))));
        }
    }
    let (ea, eb) = (a.policy.entries(kind), b.policy.entries(kind));
    for (name, rule) in eb.into_iter().flatten() {
        let pointer = child(&section, name);
        match ea.and_then(|e| e.get(name)) {
            None => out.push(format!("+ {name}{}", at(b, &pointer))),
            Some(old) if old != rule => out.push(format!("~ {name}{}", at(b, &pointer))),
            Some(_) => {}
        }
    }
    for name in ea.into_iter().flatten().map(|(n, _)| n) {
        if !eb.is_some_and(|e| e.contains_key(name)) {
            out.push(format!("- {name}{}", at(a, &child(&section, name))));
        }
    }
    out
}
