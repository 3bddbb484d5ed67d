//! A peer's test suite: the official MCP conformance suite (@modelcontextprotocol/conformance,
//! its server scenarios) gives the same result per scenario, and per check, directly against
//! a conforming server and through `warden serve` with a `default allow` policy — at both
//! protocol revisions the suite knows; and at 2025-11-25 through the aggregated `/mcp` of a
//! `warden.toml` with that one server (every scenario the same; the checks too, but for
//! resuming the merged standalone stream and opening a second one, not offered yet). Scenarios include the
//! server calling back the client (sampling, elicitation, progress, logging), SSE polling
//! and resumption, sessions and DNS rebinding protection.
//!
//! The server is tests/conformance/server.py (Python `mcp` SDK); the suite runs through
//! tests/conformance/run.sh. `cargo xtask test` provisions Node 22, the suite and the SDK; a
//! missing piece fails the test with what to install.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const REVISIONS: [&str; 2] = ["2025-11-25", "2026-07-28"];

/// The suite against `url`: the per-scenario summary and the per-check statuses.
fn suite(url: &str, revision: &str, out: &Path) -> (String, String) {
    let status = Command::new("bash")
        .arg(support::repo().join("tests/conformance/run.sh"))
        .arg(url)
        .arg(out)
        .env("CONFORMANCE_SPEC_VERSION", revision)
        .env("CONFORMANCE_TIMEOUT", "300")
        .stdout(Stdio::null())
        .status()
        .expect("run tests/conformance/run.sh");
    match status.code() {
        Some(0) => {}
        Some(3) => support::missing(
            "the MCP conformance suite cannot run (Node 22 or @modelcontextprotocol/conformance \
             missing; run.sh said what, above)",
        ),
        other => panic!("tests/conformance/run.sh failed: {other:?}"),
    }
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap();
    (read("summary.txt"), read("checks.tsv"))
}

fn lines_differing(a: &str, b: &str) -> Vec<String> {
    let (a, b): (Vec<_>, Vec<_>) = (a.lines().collect(), b.lines().collect());
    let mut out: Vec<String> = a
        .iter()
        .filter(|l| !b.contains(l))
        .map(|l| format!("direct only:  {l}"))
        .collect();
    out.extend(
        b.iter()
            .filter(|l| !a.contains(l))
            .map(|l| format!("gateway only: {l}")),
    );
    out
}

#[test]
fn the_conformance_suite_sees_the_same_server_through_the_gateway() {
    let warden = support::warden().expect("warden binary");
    let python = support::python().expect("python with mcp");
    let server = support::conformance_server(&python);
    let dir: PathBuf = support::scratch("conformance");
    let policy = dir.join("allow.pol");
    std::fs::write(&policy, "version 1\ndefault allow\n").unwrap();
    let mut cmd = support::serve_command(&warden, &policy, &server.url);
    cmd.arg("--no-auth").env("WARDEN_LOG", "error");
    let gateway = support::start(cmd);
    let through = format!("{}/mcp", gateway.url);
    // The aggregated endpoint of a warden.toml with this one server (names as the server
    // gives them, so the suite's tool names hold).
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\nno-auth = true\nserver-names = \"never\"\n\n[servers.conformance]\nurl = \"{}\"\npolicy = \"allow.pol\"\n",
            server.url
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(&warden);
    cmd.args(["serve", "--config"])
        .arg(dir.join("warden.toml"))
        .env("WARDEN_LOG", "error");
    let aggregate = support::start(cmd);
    // A localhost URL: the DNS-rebinding scenario wants one.
    let aggregated = format!("{}/mcp", aggregate.url.replace("127.0.0.1", "localhost"));

    for revision in REVISIONS {
        let (direct, direct_checks) = suite(
            &server.url,
            revision,
            &dir.join(format!("direct-{revision}")),
        );
        let scenarios = direct.lines().count();
        assert!(
            scenarios >= 30,
            "{revision}: only {scenarios} scenarios:\n{direct}"
        );
        // The reference must conform, or an equal result would prove nothing.
        let failing: Vec<&str> = direct.lines().filter(|l| l.ends_with(" FAIL")).collect();
        assert!(
            failing.is_empty(),
            "{revision}: the conformance server itself fails {failing:?}"
        );
        let (via, via_checks) = suite(&through, revision, &dir.join(format!("gateway-{revision}")));
        assert_eq!(
            direct,
            via,
            "{revision}: scenarios differ through the gateway: {:?}",
            lines_differing(&direct, &via)
        );
        // Checks too: SSE priming, retry and resumption are SHOULDs, so a proxy that broke
        // them would only turn a check into a WARNING.
        assert_eq!(
            direct_checks,
            via_checks,
            "{revision}: checks differ through the gateway: {:#?}",
            lines_differing(&direct_checks, &via_checks)
        );
        eprintln!("{revision}: {scenarios} scenarios pass, directly and through warden serve");
        if revision != "2025-11-25" {
            // The aggregated endpoint answers 2026-07-28 with a 400 (clients fall back).
            continue;
        }
        let (all, all_checks) = suite(
            &aggregated,
            revision,
            &dir.join(format!("aggregated-{revision}")),
        );
        assert_eq!(
            direct,
            all,
            "{revision}: scenarios differ through the aggregated endpoint: {:?}",
            lines_differing(&direct, &all)
        );
        // The one check that differs: the aggregated endpoint answers `tools/list` with
        // the merged list as JSON, where the server streamed it, so there are no list
        // streams to try. Every other check is the same, resuming a cut call stream
        // (`server-sse-disconnect-resume`, Last-Event-ID) included.
        let differing: Vec<String> = lines_differing(&direct_checks, &all_checks)
            .into_iter()
            .filter(|l| !l.contains("server-sse-streams-functional"))
            .collect();
        assert!(
            differing.is_empty(),
            "{revision}: checks differ through the aggregated endpoint: {differing:#?}"
        );
        eprintln!("{revision}: the same scenarios pass through the aggregated endpoint");
    }
}
