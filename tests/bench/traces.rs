//! `proxy_compare --traces`: what exporting traces costs the gateway (issue 29), against the
//! same build with export off, in the same interleaved rounds.
//!
//! ```sh
//! target/release/proxy_compare --traces --rounds 16    # ~2 minutes on 2 cores
//! ```
//!
//! Four single-upstream gateways in front of the same `axum_mcp --no-policy`, with
//! `examples/bench.pol`, one worker each, and an OTLP/HTTP receiver in this process
//! (`tests/otlp.rs`: it decodes every export with the `opentelemetry-proto` types and counts
//! the spans) for the three that export. Every call of every row carries the same
//! `params._meta.traceparent` with the sampled flag off, as an agent that samples its own
//! traces sends most of its calls (so the four read the same bytes):
//!
//! 1. **export off**: `warden serve` without `--otlp-endpoint`: the yardstick.
//! 2. **every call sampled**: `--otlp-endpoint` with `OTEL_TRACES_SAMPLER=always_on`; two
//!    spans a call (the gateway's and the upstream call's), `params._meta.traceparent`
//!    rewritten in each forwarded call.
//! 3. **default sampler**: `--otlp-endpoint` and no `OTEL_TRACES_SAMPLER` (the
//!    specification's default, `parentbased_always_on`). The gateway follows the agent's
//!    decision: a span context, no span recorded, the flag handed on in the upstream's
//!    `traceparent` header.
//! 4. **1 % sampled**: `OTEL_TRACES_SAMPLER=traceidratio`, `OTEL_TRACES_SAMPLER_ARG=0.01`
//!    (whatever the agent decided; for reference).
//!
//! The default sampler records every call that comes with no trace context at all, so with
//! clients that send none it costs what row 2 costs.
//!
//! Issue 29's targets, from the ratios within rounds: row 2 ≤ 1.15× row 1's CPU per call,
//! row 3 ≤ 1.02×.

use std::process::Command;
use std::sync::Arc;

use super::common::{Proc, free_port, spawn};
use super::{ECHO, Env, Load, Opts, Row, Run, Setup, TOKEN, Table, median_of, ratios};

#[path = "../otlp.rs"]
mod otlp;

const SAMPLED_TARGET: f64 = 1.15;
const DEFAULT_TARGET: f64 = 1.02;
/// The agent's unsampled trace context, in every call.
const UNSAMPLED: &str =
    r#"{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}"#;

/// What the rows export to, kept alive for the run.
pub(super) struct Collector(otlp::Receiver);

impl Collector {
    pub(super) fn spans(&self) -> usize {
        self.0.count()
    }
}

/// One gateway of the rows: `serve --upstream` with `env`.
fn gateway(
    env: &Env,
    o: &Opts,
    otlp: Option<&str>,
    vars: &[(&str, &str)],
) -> Result<(Proc, u16), String> {
    let port = free_port();
    let mut cmd = Command::new(&env.warden);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &format!("http://127.0.0.1:{}/mcp", env.up)])
        .arg("--policy")
        .arg(env.repo.join("examples/bench.pol"))
        .args(["--grant-token", &format!("bench={TOKEN}")])
        .args(["--workers", &o.workers.to_string()])
        .args(&o.warden_args)
        .env("WARDEN_LOG", "warn");
    for var in [
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ] {
        cmd.env_remove(var);
    }
    if let Some(url) = otlp {
        cmd.args(["--otlp-endpoint", url]);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let p = spawn(&mut cmd, port, false)?;
    Ok((p, port))
}

pub(super) fn setup(o: &Opts, env: &Env) -> Result<(Setup, Collector), String> {
    let receiver = otlp::Receiver::start_counting(0);
    let url = receiver.url.clone();
    // Each row: its label, its name, where it exports, its variables.
    type Spec<'a> = (&'a str, &'a str, Option<&'a str>, &'a [(&'a str, &'a str)]);
    let rows_spec: [Spec<'_>; 4] = [
        ("export off", "warden export off", None, &[]),
        (
            "export on, every call sampled (`always_on`)",
            "warden export every call",
            Some(&url),
            &[("OTEL_TRACES_SAMPLER", "always_on")],
        ),
        (
            "export on, default sampler (`parentbased_always_on`)",
            "warden export default sampler",
            Some(&url),
            &[],
        ),
        (
            "export on, 1 % sampled (`traceidratio` 0.01)",
            "warden export one percent",
            Some(&url),
            &[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
            ],
        ),
    ];
    let mut procs = Vec::new();
    let mut rows = Vec::new();
    for (label, name, otlp, vars) in rows_spec {
        let (p, port) = gateway(env, o, otlp, vars)?;
        rows.push(Row {
            label: label.to_owned(),
            name: name.to_owned(),
            url: format!("http://127.0.0.1:{port}/mcp"),
            pid: Some(p.0.id()),
            tls: None,
            load: Load::Calls,
            upstream_status: None,
            tools: vec![ECHO.into()],
            meta: Some(Arc::from(UNSAMPLED)),
        });
        procs.push(p);
    }
    let header = format!(
        "{} clients (one keep-alive connection and MCP session each) x {} tools/call, after {} warm-up calls each; {} rounds, median round shown\nwarden serve --upstream http://127.0.0.1:PORT/mcp --policy examples/bench.pol, {} worker(s) each, {}; the exporting ones with --otlp-endpoint to an OTLP/HTTP receiver in the bench process (OTEL_BSP_* defaults: a batch every 5 s or 512 spans, a queue of 2,048); every call carries params._meta.traceparent 00-…-00 (the agent's trace, not sampled)\n",
        o.clients,
        o.calls,
        o.warmup,
        o.rounds,
        o.workers,
        super::warden_args(o),
    );
    Ok((
        Setup {
            tables: vec![Table {
                title: None,
                rows: (0..rows.len()).collect(),
                yard: 0,
                load: Load::Calls,
                targets: false,
                vs: "export off",
            }],
            rows,
            _procs: procs,
            header,
            memory: None,
        },
        Collector(receiver),
    ))
}

/// Issue 29's targets, from the ratios within rounds.
pub(super) fn targets(rows: &[Row], runs: &[Vec<Run>], spans: usize) -> String {
    let mut out = format!(
        "Targets (issue 29), CPU per call against export off within a round: every call sampled ≤ {SAMPLED_TARGET:.2}×, default sampler ≤ {DEFAULT_TARGET:.2}×; the receiver took {spans} spans in all\n"
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    for (i, target) in [
        (1, Some(SAMPLED_TARGET)),
        (2, Some(DEFAULT_TARGET)),
        (3, None),
    ] {
        let Some(row) = rows.get(i) else { continue };
        let (cpu, _) = ratios(&runs[i], &runs[0]);
        let cpu = median_of(cpu);
        out.push_str(&format!(
            "- {}: CPU per call {}{}\n",
            row.label,
            cpu.map_or("—".to_owned(), |c| format!("{c:.2}×")),
            match (target, cpu) {
                (Some(t), Some(c)) => format!(" ({}, target ≤ {t:.2}×)", verdict(c <= t)),
                _ => " (no target: for reference)".to_owned(),
            }
        ));
    }
    out
}
