//! Load benchmark: `tools/call` throughput and latency through `warden serve`, against the
//! same upstream reached directly, in one run.
//!
//! ```sh
//! cargo build --release -p warden-cli -p warden-e2e
//! target/release/gateway_load            # prints a Markdown table for docs/PERFORMANCE.md
//! ```
//!
//! Upstreams: the project's rmcp example server (`axum_mcp --no-policy`, fast) and, when
//! installed, @modelcontextprotocol/server-everything (Node). Each is measured directly,
//! through `warden serve` with in-memory counters, through `warden serve --redis` (a
//! private `redis-server` this binary starts), and directly again. Every loop is bounded by
//! a request count and a deadline.

#[path = "common.rs"]
mod common;
#[path = "../redis_server.rs"]
mod redis_server;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Counted, Http, Proc, free_port, post, spawn};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const CLIENTS: usize = 16;
const CALLS_PER_CLIENT: usize = 1_000;
const WARMUP_PER_CLIENT: usize = 50;
const DEADLINE: Duration = Duration::from_secs(60);

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// One client: a session, then `calls` echo calls back to back; returns each latency.
async fn client_run(
    client: Http,
    url: Arc<str>,
    arg: &'static str,
    warmup: usize,
    calls: usize,
    deadline: Instant,
) -> Result<Vec<Duration>, String> {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"load","version":"0"}}}"#;
    let (sid, _) = post(&client, &url, None, None, init.to_owned()).await?;
    let sid = sid.unwrap_or_default();
    post(
        &client,
        &url,
        Some(&sid),
        None,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
    )
    .await?;
    let mut lat = Vec::with_capacity(calls);
    for i in 0..warmup + calls {
        if Instant::now() > deadline {
            break;
        }
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"echo","arguments":{{"{}":"hello"}}}}}}"#,
            i + 2,
            arg
        );
        let started = Instant::now();
        let (_, answer) = post(&client, &url, Some(&sid), None, body).await?;
        if i >= warmup {
            lat.push(started.elapsed());
        }
        if !answer.windows(5).any(|w| w == b"hello") {
            return Err(format!(
                "unexpected answer: {}",
                String::from_utf8_lossy(&answer)
            ));
        }
    }
    Ok(lat)
}

struct Run {
    throughput: f64,
    p50: Duration,
    p99: Duration,
}

/// `arg`: the name of the echo tool's text argument on this upstream.
async fn load(url: &str, arg: &'static str) -> Result<Run, String> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Http = Client::builder(TokioExecutor::new()).build(Counted(connector));
    let url: Arc<str> = url.into();
    let deadline = Instant::now() + DEADLINE;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (c, u) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(client_run(
            c,
            u,
            arg,
            WARMUP_PER_CLIENT,
            CALLS_PER_CLIENT,
            deadline,
        )));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(Run {
        throughput: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    })
}

fn gateway(
    warden: &Path,
    policy: &Path,
    upstream: &str,
    redis: Option<&str>,
) -> Result<(Proc, String), String> {
    let port = free_port();
    let mut cmd = Command::new(warden);
    cmd.args([
        "serve",
        "--no-auth",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--upstream",
        upstream,
    ])
    .arg("--policy")
    .arg(policy)
    .env("WARDEN_LOG", "error");
    if let Some(url) = redis {
        cmd.args(["--redis", url, "--redis-prefix", "bench:"]);
    }
    let p = spawn(&mut cmd, port, true)?;
    Ok((p, format!("http://127.0.0.1:{port}/mcp")))
}

fn main() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = bin_dir();
    let warden = dir.join("warden");
    let axum_mcp = dir.join("axum_mcp");
    for b in [&warden, &axum_mcp] {
        if !b.exists() {
            return Err(format!(
                "{} missing: cargo build --release -p warden-cli -p warden-e2e",
                b.display()
            ));
        }
    }
    let policy = repo.join("examples/bench.pol");
    println!(
        "{CLIENTS} clients x {CALLS_PER_CLIENT} tools/call each (after {WARMUP_PER_CLIENT} warm-up calls), keep-alive, TCP_NODELAY\n"
    );
    let redis = redis_server::RedisServer::start();
    let redis_version = Command::new(redis_server::redis_binary())
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("counter store for the `--redis` rows: {redis_version}, on the same machine\n");
    println!(
        "| upstream | path | calls/s | p50 | p99 | throughput vs direct | added p99 | vs memory store |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");

    let mut upstreams: Vec<(&str, &'static str, Proc, String)> = Vec::new();
    let port = free_port();
    let rmcp = spawn(
        Command::new(&axum_mcp)
            .args(["--no-policy", "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "error"),
        port,
        true,
    )?;
    upstreams.push((
        "rmcp (axum_mcp --no-policy)",
        "text",
        rmcp,
        format!("http://127.0.0.1:{port}/mcp"),
    ));
    let everything = repo
        .join("target/e2e/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if everything.exists() {
        let port = free_port();
        let node = spawn(
            Command::new("node")
                .arg(&everything)
                .arg("streamableHttp")
                .env("PORT", port.to_string()),
            port,
            true,
        )?;
        upstreams.push((
            "server-everything (Node)",
            "message",
            node,
            format!("http://127.0.0.1:{port}/mcp"),
        ));
    } else {
        eprintln!(
            "server-everything not installed (run `cargo xtask test` once): measuring the rmcp upstream only"
        );
    }
    for (name, arg, _proc, url) in &upstreams {
        let (_gw, gw_url) = gateway(&warden, &policy, url, None)?;
        let (_gw_redis, redis_url) = gateway(&warden, &policy, url, Some(&redis.url()))?;
        // The direct run first and last; the gateways in between: drift shows as a spread.
        let direct = rt.block_on(load(url, arg))?;
        let through = rt.block_on(load(&gw_url, arg))?;
        let shared = rt.block_on(load(&redis_url, arg))?;
        let direct2 = rt.block_on(load(url, arg))?;
        let d = Run {
            throughput: (direct.throughput + direct2.throughput) / 2.0,
            p50: (direct.p50 + direct2.p50) / 2,
            p99: (direct.p99 + direct2.p99) / 2,
        };
        let ms = |x: Duration| format!("{:.2} ms", x.as_secs_f64() * 1e3);
        println!(
            "| {name} | direct | {:.0} | {} | {} | 1.00 | — | — |",
            d.throughput,
            ms(d.p50),
            ms(d.p99)
        );
        println!(
            "| {name} | warden serve | {:.0} | {} | {} | {:.2} | {} | 1.00 |",
            through.throughput,
            ms(through.p50),
            ms(through.p99),
            through.throughput / d.throughput,
            ms(through.p99.saturating_sub(d.p99))
        );
        println!(
            "| {name} | warden serve --redis | {:.0} | {} | {} | {:.2} | {} | {:.2} |",
            shared.throughput,
            ms(shared.p50),
            ms(shared.p99),
            shared.throughput / d.throughput,
            ms(shared.p99.saturating_sub(d.p99)),
            shared.throughput / through.throughput
        );
    }
    Ok(())
}
