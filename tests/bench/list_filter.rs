//! What filtering `tools/list` per caller costs the gateway, in one run: the same answer
//! (the real Linode server's 416 tools, and 10,000 made from them) through `warden serve`
//! forwarded untouched, filtered down to the one tool the hosted page's policy allows, and
//! filtered by a policy that keeps nearly every tool (the most re-serializing).
//!
//! ```sh
//! cargo build --release -p warden-cli -p warden-e2e
//! target/release/list_filter [--rounds N] [--calls N]   # a Markdown table for docs/PERFORMANCE.md
//! ```
//!
//! The upstream is a fake in this process that answers `tools/list` with a canned body, so
//! only the gateway's work differs between the paths. CPU is the gateway process's own
//! (/proc/PID/task/*/schedstat), per call; paths alternate within each round and rounds
//! alternate their order. Every loop is bounded by a call count and a deadline.

#[path = "common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use axum::routing::post;
use bytes::Bytes;
use common::{Proc, open_session, post as mcp_post, spawn_listening};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(120);

/// The paths measured: a name, the policy `warden serve` runs, and whether the upstream
/// makes every answer different (so the gateway's cache of filtered lists never hits: the
/// cost of a list seen for the first time).
const PATHS: [(&str, &str, bool); 5] = [
    (
        "forwarded untouched",
        r#"{"version": "1", "default": "allow", "lists": "all"}"#,
        false,
    ),
    (
        "filtered to 1 tool (the page's policy), same answer each call",
        PAGE,
        false,
    ),
    (
        "filtered to 1 tool, every answer new (no cache)",
        PAGE,
        true,
    ),
    (
        "filtered, nearly all kept (hide delete_*), same answer",
        HIDE,
        false,
    ),
    (
        "filtered, nearly all kept, every answer new (no cache)",
        HIDE,
        true,
    ),
];

const PAGE: &str = r#"{"version": "1", "default": "deny", "tools": {"create_personal_access_token":
    {"limits": [{"counter": "create_personal_access_token_rate", "window": "minute",
                 "max": 30, "scope": "grant"}]}}}"#;
const HIDE: &str = r#"{"version": "1", "default": "allow", "hide": ["delete_*"]}"#;

fn main() {
    if let Err(e) = run() {
        eprintln!("list_filter: {e}");
        std::process::exit(1);
    }
}

struct Options {
    rounds: usize,
    calls: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        rounds: 6,
        calls: 300,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |what: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{what} needs a positive number"))
        };
        match a.as_str() {
            "--rounds" => o.rounds = number("--rounds")?,
            "--calls" => o.calls = number("--calls")?,
            "-h" | "--help" => {
                println!("list_filter [--rounds N (6)] [--calls N per path per round (300)]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(o)
}

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// The Linode server's `tools/list` (shared/reference/ beside the checkout).
fn linode_tools() -> Result<Vec<Value>, String> {
    // tests/ is one level into the checkout, and shared/ sits beside the checkout.
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/linode-tools-list.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (the project's shared/reference/)", path.display()))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    v["tools"]
        .as_array()
        .cloned()
        .ok_or_else(|| "no tools in linode-tools-list.json".into())
}

/// A `tools/list` answer body for request id 2 with `n` tools: Linode's, then copies of
/// them under new names.
fn answer(tools: &[Value], n: usize) -> Bytes {
    let list: Vec<Value> = (0..n)
        .map(|i| {
            let mut t = tools[i % tools.len()].clone();
            if i >= tools.len() {
                let name = format!("{}_{}", t["name"].as_str().unwrap_or("tool"), i);
                t["name"] = json!(name);
            }
            t
        })
        .collect();
    Bytes::from(json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": list}}).to_string())
}

/// The fake upstream: `initialize` gets a session, notifications 202, anything else the
/// canned list (`vary`: with a `_meta` that changes every answer).
async fn upstream(list: Bytes, vary: bool) -> Result<String, String> {
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let app = axum::Router::new().route(
        "/mcp",
        post(move |body: Bytes| {
            let list = if vary {
                let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut l = list[..list.len() - 2].to_vec();
                l.extend_from_slice(format!(r#","_meta":{{"n":{n}}}}}}}"#).as_bytes());
                Bytes::from(l)
            } else {
                list.clone()
            };
            async move {
                let text = String::from_utf8_lossy(&body);
                let json = [(http::header::CONTENT_TYPE, "application/json")];
                if text.contains("\"initialize\"") {
                    let init = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"0"}}}"#;
                    return (
                        http::StatusCode::OK,
                        [
                            (http::header::CONTENT_TYPE, "application/json"),
                            (
                                http::HeaderName::from_static("mcp-session-id"),
                                "fake-session",
                            ),
                        ],
                        Bytes::from_static(init.as_bytes()),
                    )
                        .into_response();
                }
                if !text.contains("\"id\"") {
                    return (http::StatusCode::ACCEPTED, json, Bytes::new()).into_response();
                }
                (http::StatusCode::OK, json, list).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}/mcp",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

fn cpu_ns(pid: u32) -> u64 {
    let dir = format!("/proc/{pid}/task");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

struct Gate {
    name: &'static str,
    proc: Proc,
    url: String,
}

/// `calls` tools/list through `gate` on one keep-alive session: CPU ns per call, and the
/// bytes of the last answer.
async fn measure(gate: &Gate, calls: usize) -> Result<(f64, usize), String> {
    let (client, sid) = open_session(&gate.url, "bench-token", "list_filter").await?;
    let body = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    // Warm the connection and the gateway's allocator first.
    for _ in 0..10 {
        mcp_post(
            &client,
            &gate.url,
            Some(&sid),
            Some("bench-token"),
            body.into(),
        )
        .await?;
    }
    let pid = gate.proc.0.id();
    let started = Instant::now();
    let cpu0 = cpu_ns(pid);
    let mut bytes = 0;
    for _ in 0..calls {
        let (_, answer) = mcp_post(
            &client,
            &gate.url,
            Some(&sid),
            Some("bench-token"),
            body.into(),
        )
        .await?;
        bytes = answer.len();
        if started.elapsed() > DEADLINE {
            return Err(format!("{}: over {DEADLINE:?}", gate.name));
        }
    }
    let cpu = cpu_ns(pid).saturating_sub(cpu0);
    Ok((cpu as f64 / calls as f64, bytes))
}

fn run() -> Result<(), String> {
    let o = options()?;
    let warden = bin_dir().join("warden");
    if !warden.exists() {
        return Err(format!(
            "{} is missing: cargo build --release -p warden-cli",
            warden.display()
        ));
    }
    let tools = linode_tools()?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let scratch = std::env::temp_dir().join(format!("list_filter-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;

    println!("| tools in the answer | path | answer bytes | gateway CPU per call | vs untouched |");
    println!("|---:|---|---:|---:|---:|");
    for n in [tools.len(), 10_000] {
        let body = answer(&tools, n);
        let same = rt.block_on(upstream(body.clone(), false))?;
        let varying = rt.block_on(upstream(body, true))?;
        let mut gates = Vec::new();
        for (i, (name, policy, vary)) in PATHS.iter().enumerate() {
            let url = if *vary { &varying } else { &same };
            let file = scratch.join(format!("policy-{n}-{i}.json"));
            std::fs::write(&file, policy).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(&warden);
            cmd.args(["serve", "--listen", "127.0.0.1:0", "--upstream", url])
                .args(["--grant-token", "bench=bench-token", "--workers", "1"])
                .arg("--policy")
                .arg(&file)
                .env("WARDEN_LOG", "error");
            let (proc, base) = spawn_listening(&mut cmd)?;
            gates.push(Gate {
                name,
                proc,
                url: format!("{base}/mcp"),
            });
        }
        // ns per call per path, one entry per round.
        let mut per_round: Vec<Vec<f64>> = vec![Vec::new(); gates.len()];
        let mut bytes = vec![0; gates.len()];
        for round in 0..o.rounds {
            let order: Vec<usize> = if round % 2 == 0 {
                (0..gates.len()).collect()
            } else {
                (0..gates.len()).rev().collect()
            };
            for i in order {
                let (ns, b) = rt.block_on(measure(&gates[i], o.calls))?;
                per_round[i].push(ns);
                bytes[i] = b;
            }
        }
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        for (i, gate) in gates.iter().enumerate() {
            let m = median(&per_round[i]);
            // The ratio within each round, so a round that ran slow for everyone cancels.
            let ratios: Vec<f64> = per_round[i]
                .iter()
                .zip(&per_round[0])
                .map(|(a, b)| a / b)
                .collect();
            let (lo, hi) = ratios
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            println!(
                "| {n} | {} | {} | {:.1} µs | {:.3}× (rounds {:.3}–{:.3}) |",
                gate.name,
                bytes[i],
                m / 1000.0,
                median(&ratios),
                lo,
                hi
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
