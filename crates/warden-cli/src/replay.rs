//! `warden replay --policy NEW FILE…`: recorded traffic (`warden serve --record`) run
//! through another policy, to see what an edit would have done to real calls.
//!
//! Calls are replayed in the order they were made, on a virtual clock that follows their
//! recorded times, through the same `decide()` and in-memory counters as the gateway; each
//! recorded decision is compared with the new one. A line may say what kind of call it was
//! (`"kind": "resource"`, `"prompt"`, ...; absent, a tool call). A line that is not a
//! recorded call (a truncated last line, say) is reported with its line number and skipped.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;
use warden_policy::{Call, Kind};
use warden_tower::RecordedCall;

use crate::simulate::{Came, Simulator};

use crate::error::CliError;
use crate::source;

/// What a call came to, coarsely enough to compare a recording with a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Allow,
    Deny,
    Limited,
    Approval,
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Class::Allow => "allow",
            Class::Deny => "deny",
            Class::Limited => "limited",
            Class::Approval => "approval",
        })
    }
}

/// The recorded decision's class; `None` for a word this version does not know.
fn recorded(decision: &str) -> Option<Class> {
    Some(match decision {
        "allow" => Class::Allow,
        "deny" => Class::Deny,
        "limited" => Class::Limited,
        // Asked a person: whatever they answered, the policy's decision was "ask".
        "approval" | "approved" | "refused" => Class::Approval,
        _ => return None,
    })
}

/// Reads every recorded call; bad lines are reported and skipped.
fn read(files: &[PathBuf]) -> Result<(Vec<RecordedCall>, usize), CliError> {
    let mut calls = Vec::new();
    let mut bad = 0;
    for file in files {
        let f = std::fs::File::open(file).map_err(|source| CliError::Read {
            path: file.clone(),
            source,
        })?;
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{}:{}: unreadable: {e}", file.display(), i + 1);
                    bad += 1;
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<RecordedCall>(&line) {
                Ok(c) => calls.push(c),
                Err(e) => {
                    eprintln!(
                        "{}:{}: not a recorded call ({e}); skipped",
                        file.display(),
                        i + 1
                    );
                    bad += 1;
                }
            }
        }
    }
    // In the order they were made (files may overlap in time: several replicas).
    calls.sort_by_key(|c| c.at_ms);
    Ok((calls, bad))
}

/// A deciding rule, and whose policy it is in (with a warden.toml).
type ServerRule = (Option<String>, String);

/// One change, as counted and shown.
#[derive(Default)]
struct Changes {
    count: usize,
    examples: Vec<String>,
}

/// The policy (and counters) a recorded call is replayed against: the one `--policy`, or,
/// with a warden.toml, its server's.
struct Target {
    src: source::Source,
    compiled: warden_policy::CompiledPolicy,
    sim: Simulator,
}

/// `--policy FILE`, or every server's policy of a warden.toml by server name.
fn targets(policy: &Path) -> Result<BTreeMap<Option<String>, Target>, CliError> {
    let load = |path: &Path| -> Result<Target, CliError> {
        let (src, _, compiled) = source::load_compiled(path)?;
        Ok(Target {
            src,
            compiled,
            sim: Simulator::new(1_000_000),
        })
    };
    if policy.extension().is_none_or(|e| e != "toml") {
        return Ok(BTreeMap::from([(None, load(policy)?)]));
    }
    let (config, _) = crate::config::load_reported(policy, crate::config::Purpose::Check)?;
    if let Some(g) = &config.gateway_policy {
        // `--record` writes what each server's gate decided; the gateway's gate records
        // nothing, so there is no decision of its own to compare with.
        eprintln!(
            "note: the gateway-wide policy {} is not replayed: the recorded decisions are the servers' policies'",
            g.display()
        );
    }
    config
        .servers
        .iter()
        .map(|s| Ok((Some(s.name.clone()), load(&s.policy)?)))
        .collect()
}

pub fn run(policy: &Path, files: &[PathBuf], fail_on_change: bool) -> Result<ExitCode, CliError> {
    let targets = targets(policy)?;
    let several = targets.keys().any(Option::is_some);
    let (calls, bad) = read(files)?;
    let start = calls.first().map_or(0, |c| c.at_ms);
    let mut elapsed = 0;
    // (from, to) → per tool; and per deciding rule of the new policy.
    let mut by_tool: BTreeMap<(Class, Class), BTreeMap<String, Changes>> = BTreeMap::new();
    let mut by_rule: BTreeMap<(Class, Class), BTreeMap<ServerRule, usize>> = BTreeMap::new();
    let mut unknown = 0;
    let mut elsewhere = 0;
    let mut same = 0;
    for c in &calls {
        let now = c.at_ms.saturating_sub(start);
        if now > elapsed {
            for t in targets.values() {
                t.sim.advance(Duration::from_millis(now - elapsed));
            }
            elapsed = now;
        }
        let Some(before) = recorded(&c.decision) else {
            unknown += 1;
            continue;
        };
        // With a warden.toml, the call's server's policy; a call of no server there (or
        // recorded by a one-server gateway) is left out and counted.
        let key = if several { c.server.clone() } else { None };
        let Some(Target { compiled, sim, .. }) = targets.get(&key) else {
            elsewhere += 1;
            continue;
        };
        let args = crate::simulate::args_of(c.kind, &c.tool, c.args.clone());
        let mut call = Call::of(c.kind, &c.tool).grant(c.grant.as_deref().unwrap_or("anonymous"));
        call.session = c.session.as_deref();
        call.args = args.as_ref();
        call.claims = c.claims.as_ref();
        let (d, came) = sim.run(compiled, &call);
        let after = match came {
            Came::Allow => Class::Allow,
            Came::Deny { .. } | Came::Hidden => Class::Deny,
            Came::Limited { .. } => Class::Limited,
            Came::Approval => Class::Approval,
        };
        if before == after {
            same += 1;
            continue;
        }
        // A tool by its name; another kind's call says its kind: `resource file:///a`; with
        // several servers, the server first: `rmcp: add`.
        let called = match c.kind {
            Kind::Tool => c.tool.clone(),
            kind => format!("{} {}", kind.noun(), c.tool),
        };
        let called = match &key {
            Some(server) => format!("{server}: {called}"),
            None => called,
        };
        let entry = by_tool
            .entry((before, after))
            .or_default()
            .entry(called)
            .or_default();
        entry.count += 1;
        if entry.examples.len() < 2 {
            entry.examples.push(example(c));
        }
        *by_rule
            .entry((before, after))
            .or_default()
            .entry((key.clone(), d.rule().to_owned()))
            .or_default() += 1;
    }

    let mut out = std::io::stdout().lock();
    let changed: usize = by_tool
        .values()
        .flat_map(|t| t.values())
        .map(|c| c.count)
        .sum();
    writeln!(
        out,
        "{} recorded calls replayed against {}: {same} decided the same, {changed} differently{}{}{}",
        calls.len(),
        policy.display(),
        if elsewhere > 0 {
            format!(", {elsewhere} for a server the file does not name")
        } else {
            String::new()
        },
        if unknown > 0 {
            format!(", {unknown} with a recorded decision this version does not know")
        } else {
            String::new()
        },
        if bad > 0 {
            format!(" ({bad} bad line(s) skipped)")
        } else {
            String::new()
        },
    )?;
    for ((from, to), tools) in &by_tool {
        let n: usize = tools.values().map(|c| c.count).sum();
        writeln!(out, "\n{from} → {to}: {n} call(s)")?;
        for (tool, c) in tools {
            writeln!(out, "  {tool}: {}", c.count)?;
            for e in &c.examples {
                writeln!(out, "    e.g. {e}")?;
            }
        }
        if let Some(rules) = by_rule.get(&(*from, *to)) {
            let located: Vec<String> = rules
                .iter()
                .map(|((server, r), n)| {
                    let at = targets.get(server).and_then(|t| t.src.location(r));
                    match at {
                        Some(at) => format!("{r} ({at}): {n}"),
                        None => format!("{r}: {n}"),
                    }
                })
                .collect();
            writeln!(out, "  decided by: {}", located.join("; "))?;
        }
    }
    Ok(if changed > 0 && fail_on_change {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// A call in one line: when, who, and its arguments (shortened).
fn example(c: &RecordedCall) -> String {
    let args = c.args.as_ref().map_or_else(String::new, |a| {
        let text = Value::to_string(a);
        if text.chars().count() > 80 {
            format!("{}…", text.chars().take(80).collect::<String>())
        } else {
            text
        }
    });
    let grant = c.grant.as_deref().unwrap_or("-");
    if args.is_empty() {
        format!("at {} ms, grant {grant}", c.at_ms)
    } else {
        format!("at {} ms, grant {grant}: {args}", c.at_ms)
    }
}
