//! `warden test`: runs `*.test.pol` files against the policies they test.
//!
//! Each case goes through what the gateway runs — `decide()`, then the in-memory counter
//! store charging the limits — on a virtual clock, so `after 60 seconds` tests a refill
//! without waiting. Every test starts with empty counters and at time zero.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use warden_dsl::{Expect, Step, TestFile};
use warden_policy::{Call, CompiledPolicy, Glob, Kind};

use crate::simulate::{Came, Simulator};

use crate::cli::TestFormat;
use crate::error::CliError;
use crate::report;
use crate::source::{self, Source};

/// Test files named on the command line, or every `*.test.pol` under the current directory.
fn discover(files: &[PathBuf]) -> Result<Vec<PathBuf>, CliError> {
    if !files.is_empty() {
        return Ok(files.to_vec());
    }
    let mut found = Vec::new();
    walk(Path::new("."), &mut found);
    found.sort();
    if found.is_empty() {
        return Err(CliError::Usage(
            "no *.test.pol file under the current directory (name files to run)".into(),
        ));
    }
    Ok(found)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            // Build output and dependencies hold no tests of ours.
            if !name.starts_with('.') && !matches!(name.as_str(), "target" | "node_modules") {
                walk(&path, out);
            }
        } else if name.ends_with(".test.pol") {
            out.push(path.strip_prefix("./").unwrap_or(&path).to_owned());
        }
    }
}

/// The policy a test file tests: the one it names (relative to it), else its own name
/// without `.test` (`.pol`, then `.json`).
fn policy_of(file: &Path, tests: &TestFile) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new(""));
    if let Some(p) = &tests.policy {
        return dir.join(&p.node);
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.trim_end_matches(".test.pol");
    let pol = dir.join(format!("{stem}.pol"));
    if pol.exists() {
        pol
    } else {
        dir.join(format!("{stem}.json"))
    }
}

fn matches(expect: &Expect, actual: &Came) -> bool {
    match (expect, actual) {
        (Expect::Allow, Came::Allow)
        | (Expect::Hidden, Came::Hidden)
        | (Expect::Approval, Came::Approval) => true,
        (Expect::Deny { because }, Came::Deny { message }) => because
            .as_ref()
            .is_none_or(|b| message.contains(b.as_str())),
        (Expect::Limited { counter }, Came::Limited { counter: c }) => {
            counter.as_ref().is_none_or(|want| want == c)
        }
        _ => false,
    }
}

/// A failed step, as reported.
#[derive(Debug, Serialize)]
struct Failure {
    /// `file:line:column` of the step.
    at: String,
    /// Which repetition failed (1-based) of how many.
    call: u32,
    of: u32,
    expected: String,
    actual: Came,
    /// The rule that decided, and where it is written.
    rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_at: Option<String>,
    /// The explanation of the decision, step by step.
    explain: String,
}

#[derive(Debug, Serialize)]
struct CaseResult {
    file: String,
    test: String,
    calls: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<Failure>,
}

/// The policies a test file's steps are decided by: one, or (its `policy` a warden.toml)
/// each server's, a step's name then being `<server>_<name>` as the aggregated `/mcp`
/// shows it.
struct Servers<'a> {
    /// `(name, compiled, source)`; one unnamed entry for a single policy.
    policies: Vec<(Option<String>, &'a CompiledPolicy, &'a Source)>,
    /// The warden.toml's gateway-wide policy: it decides what a server's lets through, on
    /// counters every server's calls share.
    gateway: Option<(&'a CompiledPolicy, &'a Source)>,
}

impl<'a> Servers<'a> {
    /// The policy of the server named `server`, for `name` as that server knows it.
    fn named<'n>(&self, server: &str, name: &'n str) -> Option<(usize, &'n str)> {
        let at = self
            .policies
            .iter()
            .position(|(s, _, _)| s.as_deref() == Some(server))?;
        Some((at, name))
    }

    fn names(&self) -> Vec<&str> {
        self.policies
            .iter()
            .filter_map(|(n, _, _)| n.as_deref())
            .collect()
    }

    /// Which policy decides `name`, and the name it knows.
    fn route<'n>(&self, name: &'n str) -> Option<(usize, &'n str)> {
        if let [(None, _, _)] = self.policies.as_slice() {
            return Some((0, name));
        }
        self.policies
            .iter()
            .enumerate()
            .filter_map(|(i, (server, _, _))| {
                let rest = name.strip_prefix(server.as_deref()?)?.strip_prefix('_')?;
                Some((i, server.as_deref().map_or(0, str::len), rest))
            })
            .max_by_key(|(_, len, _)| *len)
            .map(|(i, _, rest)| (i, rest))
    }
}

/// Runs one test's steps on fresh counters at virtual time zero.
fn run_case(
    servers: &Servers<'_>,
    test_src: &Source,
    steps: &[Step],
    mut hits: Option<&mut Coverage>,
) -> (u64, Option<Failure>) {
    // Each server's counters are its own, as in the gateway.
    let sims: Vec<Simulator> = servers
        .policies
        .iter()
        .map(|_| Simulator::new(10_000))
        .collect();
    let above = Simulator::new(10_000);
    let mut calls = 0;
    for step in steps {
        for sim in sims.iter().chain([&above]) {
            sim.advance(Duration::from_secs(step.after_secs));
        }
        let routed = match &step.server {
            Some(server) => servers.named(&server.node, &step.tool.node),
            None => servers.route(&step.tool.node),
        };
        let Some((at, name)) = routed else {
            let what = match &step.server {
                Some(server) if servers.names().is_empty() => format!(
                    "`on {}`: this policy names no servers (`on SERVER` goes with a warden.toml)",
                    server.node
                ),
                Some(server) => format!(
                    "`on {}`: no such server here (the policy must be a warden.toml; its servers are {})",
                    server.node,
                    servers.names().join(", ")
                ),
                None => format!(
                    "{:?} names no server: write <server>_<name> or `call NAME on SERVER`, the servers being {}",
                    step.tool.node,
                    servers.names().join(", ")
                ),
            };
            let at = step
                .server
                .as_ref()
                .map_or(step.tool.span.start, |s| s.span.start);
            let (line, col) = warden_policy::locate::line_col(&test_src.text, at);
            return (
                calls,
                Some(Failure {
                    at: format!("{}:{line}:{col}", test_src.name()),
                    call: 1,
                    of: step.times,
                    expected: step.expect.node.to_string(),
                    actual: Came::Deny {
                        message: "no server".into(),
                    },
                    rule: "(no server)".into(),
                    rule_at: None,
                    explain: what,
                }),
            );
        };
        let (_, compiled, policy_src) = servers.policies[at];
        let sim = &sims[at];
        let args = crate::simulate::args_of(step.kind, name, step.args.clone());
        for n in 1..=step.times {
            calls += 1;
            let mut call = Call::of(step.kind, name)
                .grant(step.grant.as_deref().unwrap_or("anonymous"))
                .session("warden-test");
            call.args = args.as_ref();
            call.claims = step.claims.as_ref();
            let (d, actual, charged) = sim.run_charging(compiled, &call);
            // What the server's policy lets through, the gateway-wide one decides too (both
            // must allow); a refusal there gives the server's counters their charge back.
            let (d, actual, (decided_by, decided_src)) = match (servers.gateway, &actual) {
                (Some((gateway, gateway_src)), Came::Allow | Came::Approval) => {
                    match above.run(gateway, &call) {
                        (_, Came::Allow) => (d, actual, (compiled, policy_src)),
                        (gd, Came::Approval) => (gd, Came::Approval, (gateway, gateway_src)),
                        (gd, refused) => {
                            sim.give_back(&charged);
                            (gd, refused, (gateway, gateway_src))
                        }
                    }
                }
                _ => (d, actual, (compiled, policy_src)),
            };
            if let Some(cov) = hits.as_deref_mut() {
                if step.kind == Kind::Tool {
                    cov.tools.insert(name.to_owned());
                }
                // Every rule, condition and limit the decision looked at.
                for s in compiled.explain(&call).steps {
                    cov.rules.insert(s.at);
                }
                // A hidden name: the hide entry that matched (the step says `(hidden)`).
                if let Some(pattern) = hidden_by(compiled, step.kind, name)
                    && let Some(key) = step.kind.hide_key()
                {
                    cov.rules.insert(format!("{key}:{pattern}"));
                }
            }
            let wrong_rule = step.by_rule.as_ref().is_some_and(|r| r.node != d.rule());
            if !matches(&step.expect.node, &actual) || wrong_rule {
                let mut explanation = decided_by.explain(&call);
                explanation.source = decided_src.location(&explanation.rule);
                let (line, col) =
                    warden_policy::locate::line_col(&test_src.text, step.expect.span.start);
                return (
                    calls,
                    Some(Failure {
                        at: format!("{}:{line}:{col}", test_src.name()),
                        call: n,
                        of: step.times,
                        expected: match &step.by_rule {
                            Some(r) => format!("{} by {}", step.expect.node, r.node),
                            None => step.expect.node.to_string(),
                        },
                        actual,
                        rule: d.rule().to_owned(),
                        rule_at: explanation.source.clone(),
                        explain: crate::simulate::explanation_text(step.kind, &explanation),
                    }),
                );
            }
        }
    }
    (calls, None)
}

/// What the tests exercised: the rules the decisions looked at, and the tools called.
#[derive(Default)]
struct Coverage {
    rules: std::collections::HashSet<String>,
    tools: std::collections::HashSet<String>,
}

/// The hide pattern that hides `name` of `kind`, if any.
fn hidden_by<'p>(compiled: &'p CompiledPolicy, kind: Kind, name: &str) -> Option<&'p str> {
    match kind {
        Kind::Tool => compiled.hidden_by(name),
        _ => compiled
            .policy()
            .hidden(kind)
            .iter()
            .find(|p| Glob::new(p).matches(name))
            .map(String::as_str),
    }
}

/// The kinds with a hide list, with its key (`hide`, `hide_resources`, `hide_prompts`).
const HIDE_KEYS: [&str; 3] = ["hide", "hide_resources", "hide_prompts"];

/// Every rule of a policy a test could exercise: hide entries (their pointers, and
/// `KEY:PATTERN` for each pattern, to match what a hidden call hit), entries of every kind
/// and their require, deny_if and limit entries, approvals, and the all-tools conditions
/// and limits.
pub(crate) fn rules_of(policy: &warden_policy::Policy) -> Vec<String> {
    use warden_policy::pointer::{child, index};
    let doc = policy.to_value();
    let mut out = Vec::new();
    let list = |v: Option<&serde_json::Value>| v.and_then(|l| l.as_array()).map_or(0, Vec::len);
    for key in HIDE_KEYS {
        let at = format!("/{key}");
        for i in 0..list(doc.get(key)) {
            out.push(index(&at, i));
        }
        let patterns = doc
            .get(key)
            .and_then(|h| h.as_array())
            .into_iter()
            .flatten();
        out.extend(
            patterns
                .filter_map(|p| p.as_str())
                .map(|p| format!("{key}:{p}")),
        );
    }
    // `all tools { ... }`: its conditions as much as its limits.
    for field in ["deny_if", "require", "limits"] {
        let at = format!("/all_tools/{field}");
        for i in 0..list(doc.pointer(&at)) {
            out.push(index(&at, i));
        }
    }
    for kind in [
        Kind::Tool,
        Kind::Resource,
        Kind::Prompt,
        Kind::ServerRequest,
    ] {
        let section = kind.section();
        let Some(entries) = doc.get(section).and_then(|t| t.as_object()) else {
            continue;
        };
        for (name, entry) in entries {
            let at = child(&format!("/{section}"), name);
            out.push(at.clone());
            for field in ["deny_if", "require", "limits"] {
                for i in 0..list(entry.get(field)) {
                    out.push(index(&child(&at, field), i));
                }
            }
            if entry.get("approval").is_some() {
                out.push(child(&at, "approval"));
            }
        }
    }
    out
}

/// Whether `rule` is a hide pattern's marker (`hide:delete_*`) rather than a pointer.
pub(crate) fn is_hide_marker(rule: &str) -> bool {
    HIDE_KEYS
        .iter()
        .any(|k| rule.strip_prefix(k).is_some_and(|r| r.starts_with(':')))
}

/// Checks what a test file expects against what the policy (and the catalog) know, before
/// anything runs: an unknown counter is a located error with a suggestion; a tool the
/// server does not have is a warning (a test may mean to call one: default deny).
fn check_names(
    tests: &TestFile,
    compiled: &CompiledPolicy,
    rules: &[String],
    catalog: Option<&warden_policy::Catalog>,
) -> (Vec<warden_dsl::Diagnostic>, Vec<warden_dsl::Diagnostic>) {
    let (mut out, mut warnings) = (Vec::new(), Vec::new());
    for step in tests.tests.iter().flat_map(|t| &t.steps) {
        if let Expect::Limited { counter: Some(c) } = &step.expect.node {
            let known = compiled.counter_names();
            if !known.iter().any(|k| k == c) {
                let mut d = warden_dsl::Diagnostic::new(
                    step.expect.span.clone(),
                    format!("the policy has no counter {c:?}"),
                );
                d.help = Some(
                    match warden_policy::did_you_mean(c, known.iter().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None if known.is_empty() => "the policy has no limits".into(),
                        None => format!("its counters: {}", known.join(", ")),
                    },
                );
                out.push(d);
            }
        }
        if let Some(r) = &step.by_rule {
            let pseudo = r.node.starts_with('(');
            if !pseudo && !rules.iter().any(|x| x == &r.node) {
                let mut d = warden_dsl::Diagnostic::new(
                    r.span.clone(),
                    format!("the policy has no rule {:?}", r.node),
                );
                d.help = warden_policy::did_you_mean(
                    &r.node,
                    rules.iter().filter(|x| x.starts_with('/')).map(String::as_str),
                )
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| Some("rules are JSON Pointers such as /tools/NAME/require/0, or (default deny), (hidden)".into()));
                out.push(d);
            }
        }
        if let Some(cat) = catalog
            && step.kind == Kind::Tool
            && !cat.contains(&step.tool.node)
        {
            let mut d = warden_dsl::Diagnostic::new(
                step.tool.span.clone(),
                format!("the server has no tool {:?}", step.tool.node),
            );
            d.help = warden_policy::did_you_mean(&step.tool.node, cat.names())
                .map(|s| format!("did you mean `{s}`?"));
            warnings.push(d.warning());
        }
    }
    (out, warnings)
}

pub fn run(
    files: &[PathBuf],
    format: TestFormat,
    coverage: bool,
    tools: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let files = discover(files)?;
    let catalog = tools.map(source::catalog).transpose()?;
    // Per policy file: its rules, located, and what the tests hit.
    let mut covered: Vec<(Source, Vec<String>, Coverage)> = Vec::new();
    let mut results: Vec<CaseResult> = Vec::new();
    let mut broken = 0;
    for file in &files {
        let test_src = Source::read(file)?;
        let tests = match warden_dsl::parse_tests(&test_src.text) {
            Ok(t) => t,
            Err(diagnostics) => {
                for d in &diagnostics {
                    report::emit(&test_src, d);
                }
                broken += 1;
                continue;
            }
        };
        let policy_path = policy_of(file, &tests);
        if policy_path.extension().is_some_and(|e| e == "toml") {
            match run_servers(&policy_path, &test_src, &tests) {
                Ok(mut r) => results.append(&mut r),
                Err(e) => {
                    report::error(&e);
                    broken += 1;
                }
            }
            continue;
        }
        let (policy_src, policy) = match source::load(&policy_path) {
            Ok(p) => p,
            Err(e) => {
                report::error(&e);
                broken += 1;
                continue;
            }
        };
        let compiled = match source::compiled(&policy_src, &policy) {
            Ok(c) => c,
            Err(e) => {
                report::error(&e);
                broken += 1;
                continue;
            }
        };
        let (wrong, warnings) =
            check_names(&tests, &compiled, &rules_of(&policy), catalog.as_ref());
        for d in &warnings {
            report::emit(&test_src, d);
        }
        if !wrong.is_empty() {
            for d in &wrong {
                report::emit(&test_src, d);
            }
            broken += 1;
            continue;
        }
        let slot = match covered
            .iter()
            .position(|(s, _, _)| s.path == policy_src.path)
        {
            Some(i) => i,
            None => {
                let rules = rules_of(&policy);
                covered.push((policy_src, rules, Coverage::default()));
                covered.len() - 1
            }
        };
        let (policy_src, _, cov) = &mut covered[slot];
        let servers = Servers {
            policies: vec![(None, &compiled, &*policy_src)],
            gateway: None,
        };
        for case in &tests.tests {
            let hits = coverage.then_some(&mut *cov);
            let (calls, failure) = run_case(&servers, &test_src, &case.steps, hits);
            results.push(CaseResult {
                file: test_src.name(),
                test: case.name.node.clone(),
                calls,
                failure,
            });
        }
    }
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    let mut out = std::io::stdout().lock();
    match format {
        TestFormat::Text => text(&mut out, &results)?,
        TestFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &results).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        TestFormat::Junit => junit(&mut out, &results)?,
    }
    if coverage {
        report_coverage(&mut out, &covered, catalog.as_ref())?;
    }
    if format == TestFormat::Text {
        writeln!(
            out,
            "\n{} passed, {failed} failed{}",
            results.len() - failed,
            if broken > 0 {
                format!(", {broken} file(s) could not run")
            } else {
                String::new()
            }
        )?;
    }
    Ok(if failed > 0 || broken > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A test file whose policy is a warden.toml: every server's policy, each step routed by
/// its name's server.
fn run_servers(
    config: &Path,
    test_src: &Source,
    tests: &TestFile,
) -> Result<Vec<CaseResult>, CliError> {
    let (file, _) = crate::config::load_reported(config, crate::config::Purpose::Check)?;
    let mut loaded = Vec::new();
    for s in &file.servers {
        let (src, _, compiled) = source::load_compiled(&s.policy)?;
        loaded.push((s.name.clone(), compiled, src));
    }
    let gateway = match &file.gateway_policy {
        Some(path) => {
            let (src, _, compiled) = source::load_compiled(path)?;
            Some((compiled, src))
        }
        None => None,
    };
    let servers = Servers {
        policies: loaded
            .iter()
            .map(|(n, c, s)| (Some(n.clone()), c, s))
            .collect(),
        gateway: gateway.as_ref().map(|(c, s)| (c, s)),
    };
    Ok(tests
        .tests
        .iter()
        .map(|case| {
            let (calls, failure) = run_case(&servers, test_src, &case.steps, None);
            CaseResult {
                file: test_src.name(),
                test: case.name.node.clone(),
                calls,
                failure,
            }
        })
        .collect())
}

/// Rules no test looked at (with where they are written), and catalog tools no test called.
fn report_coverage(
    out: &mut impl Write,
    covered: &[(Source, Vec<String>, Coverage)],
    catalog: Option<&warden_policy::Catalog>,
) -> std::io::Result<()> {
    let mut called = std::collections::HashSet::new();
    for (src, rules, cov) in covered {
        called.extend(cov.tools.iter().cloned());
        // `KEY:PATTERN` markers follow the `/KEY/i` pointers, in the same order.
        let patterns = |key: &str| -> Vec<&str> {
            rules
                .iter()
                .filter_map(|r| r.strip_prefix(key)?.strip_prefix(':'))
                .collect()
        };
        let patterns: Vec<(&str, Vec<&str>)> =
            HIDE_KEYS.iter().map(|k| (*k, patterns(k))).collect();
        let rules: Vec<&String> = rules.iter().filter(|r| !is_hide_marker(r)).collect();
        // An entry counts as exercised when any decision looked at it or inside it.
        let missed: Vec<&String> = rules
            .iter()
            .copied()
            .filter(|r| {
                let hide = patterns.iter().find_map(|(key, patterns)| {
                    let i = r.strip_prefix('/')?.strip_prefix(key)?.strip_prefix('/')?;
                    Some((key, patterns, i.parse::<usize>().ok()?))
                });
                if let Some((key, patterns, i)) = hide {
                    return patterns
                        .get(i)
                        .is_none_or(|p| !cov.rules.contains(&format!("{key}:{p}")));
                }
                !cov.rules.iter().any(|hit| {
                    hit == *r
                        || hit
                            .strip_prefix(r.as_str())
                            .is_some_and(|rest| rest.starts_with('/'))
                })
            })
            .collect();
        writeln!(
            out,
            "\ncoverage of {}: {} of {} rules exercised",
            src.name(),
            rules.len() - missed.len(),
            rules.len()
        )?;
        for r in missed {
            match src.location(r) {
                Some(at) => writeln!(out, "  not exercised: {r} ({at})")?,
                None => writeln!(out, "  not exercised: {r}")?,
            }
        }
    }
    if let Some(cat) = catalog {
        let uncalled: Vec<&str> = cat.names().filter(|n| !called.contains(*n)).collect();
        writeln!(
            out,
            "\ncatalog: {} of {} tools called by a test",
            cat.tools.len() - uncalled.len(),
            cat.tools.len()
        )?;
        const SHOWN: usize = 40;
        for n in uncalled.iter().take(SHOWN) {
            writeln!(out, "  not called: {n}")?;
        }
        if uncalled.len() > SHOWN {
            writeln!(out, "  … and {} more", uncalled.len() - SHOWN)?;
        }
    }
    Ok(())
}

fn text(out: &mut impl Write, results: &[CaseResult]) -> std::io::Result<()> {
    for r in results {
        match &r.failure {
            None => writeln!(out, "ok    {} :: {} ({} calls)", r.file, r.test, r.calls)?,
            Some(f) => {
                writeln!(out, "FAIL  {} :: {}", r.file, r.test)?;
                writeln!(out, "  {}: call {} of {}", f.at, f.call, f.of)?;
                writeln!(out, "    expected: {}", f.expected)?;
                writeln!(out, "    actual:   {}", f.actual)?;
                match &f.rule_at {
                    Some(at) => writeln!(out, "    decided by {} ({at})", f.rule)?,
                    None => writeln!(out, "    decided by {}", f.rule)?,
                }
                for line in f.explain.lines() {
                    writeln!(out, "    | {line}")?;
                }
            }
        }
    }
    Ok(())
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML, one suite per test file, as CI systems read it.
fn junit(out: &mut impl Write, results: &[CaseResult]) -> std::io::Result<()> {
    let failed = results.iter().filter(|r| r.failure.is_some()).count();
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="warden test" tests="{}" failures="{failed}">"#,
        results.len()
    )?;
    let mut files: Vec<&str> = results.iter().map(|r| r.file.as_str()).collect();
    files.dedup();
    for file in files {
        let cases: Vec<&CaseResult> = results.iter().filter(|r| r.file == file).collect();
        let f = cases.iter().filter(|r| r.failure.is_some()).count();
        writeln!(
            out,
            r#"  <testsuite name="{}" tests="{}" failures="{f}">"#,
            xml(file),
            cases.len()
        )?;
        for c in cases {
            match &c.failure {
                None => writeln!(
                    out,
                    r#"    <testcase classname="{}" name="{}"/>"#,
                    xml(file),
                    xml(&c.test)
                )?,
                Some(fl) => {
                    writeln!(
                        out,
                        r#"    <testcase classname="{}" name="{}">"#,
                        xml(file),
                        xml(&c.test)
                    )?;
                    writeln!(
                        out,
                        r#"      <failure message="{}: expected {}, got {}">{}</failure>"#,
                        xml(&fl.at),
                        xml(&fl.expected),
                        xml(&fl.actual.to_string()),
                        xml(&fl.explain)
                    )?;
                    writeln!(out, "    </testcase>")?;
                }
            }
        }
        writeln!(out, "  </testsuite>")?;
    }
    writeln!(out, "</testsuites>")
}
