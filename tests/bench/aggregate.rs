//! `proxy_compare --aggregate`: the aggregated `/mcp` of a `warden.toml` with three servers
//! against a single-upstream `warden serve`, in the same interleaved rounds (issue 28), then
//! the memory an idle client session costs.
//!
//! ```sh
//! target/release/proxy_compare --aggregate --rounds 16    # ~2 minutes on 2 cores
//! # one row alone (for `perf record -p` on its gateway); the memory part runs after it
//! target/release/proxy_compare --aggregate --rounds 1 --calls 20000 --only "all on one"
//! ```
//!
//! Three `axum_mcp --no-policy` processes (`one`, the upstream the other modes use, `two`
//! and `three`) and two gateways, one worker each (`--workers`):
//!
//! - **single**: `warden serve --upstream http://…one…/mcp --policy examples/bench.pol`, the
//!   gateway of the other modes: the yardstick.
//! - **aggregated**: `warden serve --config warden.toml` with `[servers.one]`,
//!   `[servers.two]` and `[servers.three]`, each its own `axum_mcp` with the same
//!   `examples/bench.pol` (its tools named as the server names them: `echo`). A client
//!   `initialize`s on `/mcp` (the gateway opens a session on each of the three servers),
//!   sends `notifications/initialized` (relayed to all three), then calls; its session id
//!   is the gateway's. Protocol 2025-11-25 (the aggregated endpoint refuses 2026-07-28).
//!
//! Rows, all measured in each round like the other modes' (the same clients, calls,
//! warm-up and CPU accounting):
//!
//! 1. single: `tools/call echo` through the single gateway;
//! 2. `/mcp`, every client calling `one_echo`: the same upstream process as row 1, so the
//!    difference is the gateway's own;
//! 3. `/mcp`, client `c` calling `one_echo`, `two_echo` or `three_echo` by `c % 3`: the
//!    calls spread over the three servers (and their three upstream connection pools);
//! 4. `/mcp/one` of the aggregated gateway: one server of the config, no router, to tell
//!    what the router costs from what a config-built gateway costs.
//!
//! The targets of issue 28, checked at the end for rows 2 and 3 from the ratios within
//! rounds: CPU per call ≤ 1.05× the single gateway's, and p99 no more than 0.1 ms above it.
//! For reading them, row 2 against row 4 (same process) is printed too.
//!
//! Then the memory (`--sessions N`, 2,000 by default): `N` sessions opened through the
//! aggregated `/mcp` (eight clients, each opening its share in turn on one kept-alive
//! connection) and left idle, twice, with the RSS (`VmRSS`) of the gateway and of each
//! upstream before and after each batch; then every session closed (`DELETE`), and `N`
//! sessions opened the same way through the single gateway, for its own growth. Last, a
//! gateway whose one server is a stdio server launched per session
//! (`command = ["node", …/server-everything/dist/index.js, "stdio"]`, when node and the
//! package are there): one session, then five more, the RSS and PSS of each child it
//! started and the gateway's growth over the five. Every loop is bounded by a count and a
//! deadline.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::{Http, Proc, close_session, free_port, keep_alive_client, open_on, spawn};
use super::{
    DEADLINE, ECHO, Env, Load, Opts, Row, Run, Setup, TOKEN, Table, median_of, p99_interval,
    p99_of, ratios, warden,
};

/// The servers of the `warden.toml`; the first is the single gateway's upstream.
const SERVERS: [&str; 3] = ["one", "two", "three"];
/// The targets of issue 28.
const CPU_TARGET: f64 = 1.05;
const P99_TARGET_MS: f64 = 0.1;
/// Clients opening the idle sessions at once.
const OPENERS: usize = 8;
/// Sessions (each with its own child) on the stdio server, after a first one that pays
/// what the first child costs once (the gateway's process driver, its buffers).
const STDIO_SESSIONS: usize = 5;

/// What the memory figures are taken of.
pub(super) struct Memory {
    /// The aggregated gateway, and its `/mcp`.
    warden: u32,
    url: String,
    /// Each server's name and its `axum_mcp`'s pid.
    upstreams: Vec<(&'static str, u32)>,
    /// The single gateway, and its `/mcp`: the same sessions through it, for comparison.
    single: u32,
    single_url: String,
}

/// `warden serve --config FILE` on a free port, as [`warden`] starts the single one.
fn warden_config(
    bin: &Path,
    config: &Path,
    workers: usize,
    extra: &[String],
    quiet: bool,
) -> Result<(Proc, u16), String> {
    let port = free_port();
    let p = spawn(
        Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--grant-token", &format!("bench={TOKEN}")])
            .args(["--workers", &workers.to_string()])
            .args(extra)
            .env("WARDEN_LOG", "warn"),
        port,
        quiet,
    )?;
    Ok((p, port))
}

/// The two gateways, two more upstreams, and the rows.
pub(super) fn setup(o: &Opts, env: &Env) -> Result<Setup, String> {
    let axum_mcp = env.warden.with_file_name("axum_mcp");
    let mut procs = Vec::new();
    let mut ports = vec![env.up];
    let mut upstreams = vec![(SERVERS[0], env.up_pid)];
    for name in &SERVERS[1..] {
        let port = free_port();
        let p = spawn(
            Command::new(&axum_mcp)
                .args(["--no-policy", "--listen", &format!("127.0.0.1:{port}")])
                .env("RUST_LOG", "error"),
            port,
            true,
        )?;
        upstreams.push((*name, p.0.id()));
        procs.push(p);
        ports.push(port);
    }
    let policy = env.repo.join("examples/bench.pol");
    let policy = policy
        .canonicalize()
        .map_err(|e| format!("{}: {e}", policy.display()))?;
    let mut toml = String::from("# proxy_compare --aggregate: three servers, one policy each\n");
    for (name, port) in SERVERS.iter().zip(&ports) {
        toml.push_str(&format!(
            "\n[servers.{name}]\nurl = \"http://127.0.0.1:{port}/mcp\"\npolicy = {:?}\n",
            policy.display().to_string()
        ));
    }
    let config = env.dir.join("warden.toml");
    std::fs::write(&config, &toml).map_err(|e| format!("{}: {e}", config.display()))?;

    let single_upstream = format!("http://127.0.0.1:{}/mcp", env.up);
    let (single, single_port) = warden(
        &env.warden,
        &env.repo,
        &single_upstream,
        Some(o.workers),
        &o.warden_args,
    )?;
    let (agg, agg_port) = warden_config(&env.warden, &config, o.workers, &o.warden_args, false)?;
    let prefixed = |name: &str| -> Arc<str> { format!("{name}_{ECHO}").into() };
    let row =
        |label: &str, name: &str, port: u16, path: &str, pid: u32, tools: Vec<Arc<str>>| Row {
            label: label.to_owned(),
            name: name.to_owned(),
            url: format!("http://127.0.0.1:{port}{path}"),
            pid: Some(pid),
            tls: None,
            load: Load::Calls,
            upstream_status: None,
            tools,
            meta: None,
        };
    let rows = vec![
        row(
            "single: `serve --upstream`, `echo`",
            "warden single upstream",
            single_port,
            "/mcp",
            single.0.id(),
            vec![ECHO.into()],
        ),
        row(
            "aggregated `/mcp`, `one_echo` (all on one)",
            "warden /mcp all on one",
            agg_port,
            "/mcp",
            agg.0.id(),
            vec![prefixed(SERVERS[0])],
        ),
        row(
            "aggregated `/mcp`, `one_echo`/`two_echo`/`three_echo` (spread)",
            "warden /mcp spread over three",
            agg_port,
            "/mcp",
            agg.0.id(),
            SERVERS.iter().map(|s| prefixed(s)).collect(),
        ),
        row(
            "`/mcp/one` of the same gateway, `echo`",
            "warden /mcp/one",
            agg_port,
            "/mcp/one",
            agg.0.id(),
            vec![ECHO.into()],
        ),
    ];
    let header = format!(
        "{} clients (one keep-alive connection and MCP session each) x {} tools/call, after {} warm-up calls each; {} rounds, median round shown\nsingle: warden serve --upstream http://127.0.0.1:PORT/mcp --policy examples/bench.pol; aggregated: warden serve --config warden.toml (below); {} worker(s) each; warden serve {}\nthree axum_mcp --no-policy processes; `one` is also the single gateway's upstream\n\n```toml\n{}```\n",
        o.clients,
        o.calls,
        o.warmup,
        o.rounds,
        o.workers,
        super::warden_args(o),
        toml.replace(&policy.display().to_string(), "examples/bench.pol"),
    );
    let memory = Memory {
        warden: agg.0.id(),
        url: format!("http://127.0.0.1:{agg_port}/mcp"),
        upstreams,
        single: single.0.id(),
        single_url: format!("http://127.0.0.1:{single_port}/mcp"),
    };
    procs.push(single);
    procs.push(agg);
    Ok(Setup {
        tables: vec![Table {
            title: None,
            rows: (0..rows.len()).collect(),
            yard: 0,
            load: Load::Calls,
            targets: false,
            vs: "single",
        }],
        rows,
        _procs: procs,
        header,
        memory: Some(memory),
    })
}

/// Issue 28's targets for the aggregated rows, from the ratios within rounds.
pub(super) fn targets(
    tables: &[Table],
    rows: &[Row],
    runs: &[Vec<Run>],
    hists: &[Vec<Vec<u32>>],
) -> String {
    let mut out = format!(
        "Targets (issue 28), against the single gateway within a round: CPU per call ≤ {CPU_TARGET:.2}×, p99 no more than {P99_TARGET_MS:.1} ms above (the median of the rounds' differences, and the difference of the p99s over every call of every round)\n"
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let Some(t) = tables.first() else {
        return out;
    };
    let y = t.yard;
    for &i in t.rows.iter().filter(|&&i| i != y) {
        let aggregated = rows[i].url.ends_with("/mcp");
        let (cpu, _) = ratios(&runs[i], &runs[y]);
        let cpu = median_of(cpu);
        let p99 = median_of(
            runs[i]
                .iter()
                .zip(&runs[y])
                .filter(|(r, n)| r.throughput.is_finite() && n.throughput.is_finite())
                .map(|(r, n)| (r.p99.as_secs_f64() - n.p99.as_secs_f64()) * 1e3)
                .collect(),
        );
        let all = match (hists[i].len(), hists[y].len()) {
            (r, n) if r > 0 && r == n => {
                let every: Vec<usize> = (0..r).collect();
                Some((
                    p99_of(&hists[i], &every) - p99_of(&hists[y], &every),
                    p99_interval(&hists[i], &hists[y]),
                ))
            }
            _ => None,
        };
        let interval = match all {
            Some((_, Some((lo, hi)))) => format!(" (90 % interval {lo:+.2}–{hi:+.2})"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "- {}: CPU per call {}{}; p99 − single's {}{}, over all rounds {}{interval}{}\n",
            rows[i].label,
            cpu.map_or("—".to_owned(), |c| format!("{c:.2}×")),
            if aggregated {
                format!(" ({})", verdict(cpu.is_some_and(|c| c <= CPU_TARGET)))
            } else {
                String::new()
            },
            p99.map_or("—".to_owned(), |d| format!("{d:+.2} ms")),
            if aggregated {
                format!(" ({})", verdict(p99.is_some_and(|d| d <= P99_TARGET_MS)))
            } else {
                String::new()
            },
            all.map_or("—".to_owned(), |(d, _)| format!("{d:+.2} ms")),
            match (aggregated, all) {
                (true, Some((d, _))) => format!(" ({})", verdict(d <= P99_TARGET_MS)),
                (true, None) => String::new(),
                (false, _) => " (no target: for reference)".to_owned(),
            },
        ));
    }
    // `/mcp/one` runs the instructions `serve --upstream` runs, in the aggregated gateway's
    // process: against it, the router's own cost shows without the process's and the
    // machine's share (for reading the figures; the target is against the single gateway).
    let one = t.rows.iter().find(|&&i| rows[i].url.ends_with("/mcp/one"));
    let all_on_one = t
        .rows
        .iter()
        .find(|&&i| i != y && rows[i].url.ends_with("/mcp"));
    if let (Some(&one), Some(&all)) = (one, all_on_one) {
        let (mut cpu, _) = ratios(&runs[all], &runs[one]);
        cpu.retain(|c| c.is_finite());
        cpu.sort_by(f64::total_cmp);
        if let (Some(mid), Some(lo), Some(hi)) = (
            median_of(cpu.clone()),
            cpu.first().copied(),
            cpu.last().copied(),
        ) {
            out.push_str(&format!(
                "- {} against `/mcp/one` of the same gateway, within a round: CPU per call {mid:.2}× ({lo:.2}–{hi:.2}) (no target: the router's own share)\n",
                rows[all].label
            ));
        }
    }
    out
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `RssAnon`).
fn status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{path}: no {field}"))
}

/// The proportional set size in KiB (shared pages divided among the processes that map
/// them), from `/proc/PID/smaps_rollup`.
fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let child = e.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse::<u32>()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// The RSS of the gateway and of each upstream, in KiB.
fn snapshot(m: &Memory) -> Result<Vec<u64>, String> {
    std::iter::once(m.warden)
        .chain(m.upstreams.iter().map(|(_, pid)| *pid))
        .map(|pid| status_kib(pid, "VmRSS"))
        .collect()
}

/// `n` sessions opened on `url` by [`OPENERS`] clients at once, each opening its share in
/// turn: their ids, with the client that holds each.
async fn open_many(clients: &[Http], url: &str, n: usize) -> Result<Vec<(usize, String)>, String> {
    let deadline = Instant::now() + DEADLINE;
    let url: Arc<str> = url.into();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(c, client)| {
            let (client, url) = (client.clone(), url.clone());
            let share = n / clients.len() + usize::from(c < n % clients.len());
            tokio::spawn(async move {
                let mut sids = Vec::with_capacity(share);
                for _ in 0..share {
                    if Instant::now() > deadline {
                        return Err(format!(
                            "opening sessions: deadline passed after {}",
                            sids.len()
                        ));
                    }
                    sids.push((c, open_on(&client, &url, TOKEN, "idle").await?));
                }
                Ok::<_, String>(sids)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// Every session closed (`DELETE`), by the client that opened it.
async fn close_many(clients: &[Http], url: &str, sids: Vec<(usize, String)>) -> Result<(), String> {
    let deadline = Instant::now() + DEADLINE;
    let url: Arc<str> = url.into();
    let mut per: Vec<Vec<String>> = vec![Vec::new(); clients.len()];
    for (c, sid) in sids {
        per[c].push(sid);
    }
    let tasks: Vec<_> = clients
        .iter()
        .zip(per)
        .map(|(client, sids)| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                for sid in sids {
                    if Instant::now() > deadline {
                        return Err("closing sessions: deadline passed".to_owned());
                    }
                    close_session(&client, &url, &sid, TOKEN).await?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// A pause for the processes to finish what the last requests started.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The memory figures: idle sessions through the aggregated `/mcp` of three HTTP servers,
/// then children of a stdio server launched per session.
pub(super) async fn memory(m: &Memory, o: &Opts, env: &Env) -> Result<String, String> {
    let n = o.sessions;
    let clients: Vec<Http> = (0..OPENERS).map(|_| keep_alive_client()).collect();
    settle().await;
    let mut snaps = vec![snapshot(m)?];
    let mut sids = Vec::new();
    let mut took = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        sids.extend(open_many(&clients, &m.url, n).await?);
        took.push(started.elapsed());
        settle().await;
        snaps.push(snapshot(m)?);
    }
    let opened = sids.len();
    close_many(&clients, &m.url, sids).await?;
    settle().await;
    snaps.push(snapshot(m)?);

    // The same through the single gateway (one upstream session each, on `one`, which
    // reuses what the sessions above freed: its growth is not told here).
    let single0 = status_kib(m.single, "VmRSS")?;
    let sids = open_many(&clients, &m.single_url, n).await?;
    settle().await;
    let single1 = status_kib(m.single, "VmRSS")?;
    close_many(&clients, &m.single_url, sids).await?;

    let mut out = format!(
        "Memory per idle client session through the aggregated /mcp (three HTTP servers): two batches of {n} sessions ({OPENERS} clients opening in turn: {:.1} s and {:.1} s), VmRSS before and after each, then all {opened} closed\n\n| process | before | + batch 1 | + batch 2 | per session, batch 1 | per session, batch 2 | after closing all |\n|---|---:|---:|---:|---:|---:|---:|\n",
        took[0].as_secs_f64(),
        took[1].as_secs_f64(),
    );
    let names = std::iter::once("warden serve --config (the gateway)".to_owned()).chain(
        m.upstreams
            .iter()
            .map(|(name, _)| format!("axum_mcp `{name}` (upstream)")),
    );
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let per = |a: u64, b: u64| format!("{:.1} KiB", (b as f64 - a as f64) / n as f64);
    for (k, name) in names.enumerate() {
        let s: Vec<u64> = snaps.iter().map(|s| s[k]).collect();
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} |\n",
            mib(s[0]),
            mib(s[1]),
            mib(s[2]),
            per(s[0], s[1]),
            per(s[1], s[2]),
            mib(s[3]),
        ));
    }
    out.push_str(&format!(
        "\nFor comparison, {n} sessions through the single gateway (`serve --upstream`, which passes the upstream's session id through): its VmRSS {} → {} ({} per session)\n\n",
        mib(single0),
        mib(single1),
        per(single0, single1),
    ));
    out.push_str(&stdio(o, env).await?);
    Ok(out)
}

/// A gateway whose one server is server-everything over stdio, a child per session: the
/// RSS and PSS of each child, and the gateway's own growth.
async fn stdio(o: &Opts, env: &Env) -> Result<String, String> {
    let js = env
        .repo
        .join("target/e2e/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let (Some(node), true) = (node, js.exists()) else {
        return Ok(format!(
            "stdio server per session: skipped (needs node and {}; `cargo xtask test` installs it)\n",
            js.display()
        ));
    };
    let js = js.canonicalize().map_err(|e| e.to_string())?;
    let policy = env
        .repo
        .join("examples/bench.pol")
        .canonicalize()
        .map_err(|e| e.to_string())?;
    let config = env.dir.join("warden-stdio.toml");
    std::fs::write(
        &config,
        format!(
            "[servers.everything]\ncommand = [\"node\", {:?}, \"stdio\"]\npolicy = {:?}\n",
            js.display().to_string(),
            policy.display().to_string()
        ),
    )
    .map_err(|e| e.to_string())?;
    // Quiet: the children write to the gateway's stderr.
    let (gw, port) = warden_config(&env.warden, &config, o.workers, &[], true)?;
    let pid = gw.0.id();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let clients = vec![keep_alive_client()];
    // Each child is started by its session's `initialize`; `n` of them, loaded.
    let started = |n: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut kids = children(pid);
        while kids.len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            kids = children(pid);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        kids
    };
    let mut sids = open_many(&clients, &url, 1).await?;
    started(1).await;
    let before = status_kib(pid, "VmRSS")?;
    sids.extend(open_many(&clients, &url, STDIO_SESSIONS).await?);
    let kids = started(1 + STDIO_SESSIONS).await;
    let after = status_kib(pid, "VmRSS")?;
    let mut rss = Vec::new();
    let mut pss = Vec::new();
    for k in &kids {
        rss.push(status_kib(*k, "VmRSS")?);
        pss.extend(pss_kib(*k));
    }
    close_many(&clients, &url, sids).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !children(pid).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = children(pid).len();
    drop(gw);
    let range = |v: &[u64]| {
        let mib = |k: u64| k as f64 / 1024.0;
        match (v.iter().min(), v.iter().max()) {
            (Some(lo), Some(hi)) => format!(
                "{:.1} MiB ({:.1}–{:.1})",
                mib(v.iter().sum::<u64>()) / v.len() as f64,
                mib(*lo),
                mib(*hi)
            ),
            _ => "—".to_owned(),
        }
    };
    Ok(format!(
        "A stdio server launched per session (server-everything `stdio`, node {node}): {} sessions through /mcp started {} children; each child's VmRSS {}, PSS {} (mean, lowest–highest); the gateway's VmRSS grew {:.1} KiB per session over the last {STDIO_SESSIONS}; children still running once the sessions were closed (waited up to 30 s): {left}\n",
        1 + STDIO_SESSIONS,
        kids.len(),
        range(&rss),
        range(&pss),
        (after as f64 - before as f64) / STDIO_SESSIONS as f64,
    ))
}
