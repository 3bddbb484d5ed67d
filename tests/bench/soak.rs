//! Soak: `warden serve` in front of the rmcp example server for a bounded time under mixed
//! load, with the policy file rewritten every second (valid and invalid edits alternating)
//! and, with `--redis`, the counter store restarted twice. Not part of CI.
//!
//! ```sh
//! cargo build --release -p warden-cli -p warden-e2e
//! target/release/soak [--minutes 10] [--clients 16] [--redis]
//! ```
//!
//! Load, per client (each its own MCP session, keep-alive): allowed calls, denied calls (by
//! a rule and by `default deny`), calls over a per-session limit, calls to a hidden tool,
//! batches, `tools/list` (the upstream answers SSE, filtered on the way), malformed bodies,
//! and one call in ten sent on a fresh connection that is closed before the answer.
//!
//! It reports calls by outcome; errors that should not happen (any 5xx, any answer the
//! policy in force does not allow — a denied or hidden tool reaching the server, a hidden
//! tool listed); the gateway's resident memory at start, after warm-up, at its peak and at
//! the end; its open file descriptors after warm-up and at the end; p99 per minute. It exits
//! 1 if anything unexpected happened, the end memory is more than 10% over the warm-up
//! value, or descriptors did not come back.

#[path = "common.rs"]
mod common;
#[path = "../redis_server.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Counted, Http, free_port, spawn};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Two valid versions (a threshold moves) and a broken one, rewritten in turn.
fn policy(version: u64) -> String {
    match version % 4 {
        1 | 3 => "version 1\ndefault deny\ntool add {\n  deny if args.a >\n}\n".into(),
        v => format!(
            "version 1\ndefault deny\nhide [delete_*]\n\nallow echo\n\n\
             tool add {{\n  deny if args.a > {} because \"too big\"\n}}\n\n\
             tool create_token {{\n  limit 3 per minute per session\n}}\n",
            if v == 0 { 1000 } else { 1001 }
        ),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Allowed,
    DeniedByRule,
    DeniedByDefault,
    Limited,
    Hidden,
    Batch,
    List,
    Malformed,
    Disconnect,
}

fn pick(n: u64) -> Kind {
    match n % 100 {
        0..=29 => Kind::Allowed,
        30..=39 => Kind::DeniedByRule,
        40..=44 => Kind::DeniedByDefault,
        45..=59 => Kind::Limited,
        60..=64 => Kind::Hidden,
        65..=69 => Kind::Batch,
        70..=79 => Kind::List,
        80..=89 => Kind::Malformed,
        _ => Kind::Disconnect,
    }
}

#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<String, u64>,
    unexpected: Vec<String>,
    /// Latencies (µs) per minute of the run.
    latency: BTreeMap<u64, Vec<u64>>,
}

struct Shared {
    tally: Mutex<Tally>,
    stop: AtomicBool,
    started: Instant,
    calls: AtomicU64,
}

impl Shared {
    fn count(&self, outcome: &str, took: Duration) {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        *t.outcomes.entry(outcome.to_owned()).or_default() += 1;
        let minute = self.started.elapsed().as_secs() / 60;
        t.latency
            .entry(minute)
            .or_default()
            .push(took.as_micros() as u64);
    }
    fn unexpected(&self, what: String) {
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        if t.unexpected.len() < 50 {
            eprintln!("UNEXPECTED: {what}");
        }
        t.unexpected.push(what);
    }
}

/// One POST as the soak's caller, bounded: (status, session id, body as text).
async fn request(
    http: &Http,
    url: &str,
    sid: Option<&str>,
    body: String,
) -> Result<(u16, Option<String>, String), String> {
    let answer = common::request(http, url, sid, Some("soak-token"), body);
    let (status, sid, body) = tokio::time::timeout(Duration::from_secs(30), answer)
        .await
        .map_err(|_| "no answer within 30 s".to_owned())??;
    Ok((status, sid, String::from_utf8_lossy(&body).into_owned()))
}

fn call(id: u64, tool: &str, args: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{args}}}}}"#
    )
}

/// A fresh connection that sends a call and goes away before the answer.
fn disconnect(addr: &str, sid: &str, id: u64) {
    let body = call(id, "echo", r#"{"text":"bye"}"#);
    if let Ok(mut s) = std::net::TcpStream::connect(addr) {
        let _ = write!(
            s,
            "POST /mcp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             accept: application/json, text/event-stream\r\nmcp-protocol-version: 2025-11-25\r\n\
             authorization: Bearer soak-token\r\nmcp-session-id: {sid}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

async fn client(shared: Arc<Shared>, http: Http, url: String, addr: String, seed: u64) {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"soak","version":"0"}}}"#;
    let sid = match request(&http, &url, None, init.into()).await {
        Ok((200, Some(sid), _)) => sid,
        other => {
            shared.unexpected(format!("initialize: {other:?}"));
            return;
        }
    };
    let _ = request(
        &http,
        &url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into(),
    )
    .await;
    let mut n = seed;
    while !shared.stop.load(Ordering::Relaxed) {
        // A small LCG: the mix is the same on every run.
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let id = shared.calls.fetch_add(1, Ordering::Relaxed) + 2;
        let kind = pick(n >> 33);
        let body = match kind {
            Kind::Allowed => call(id, "echo", r#"{"text":"soak"}"#),
            Kind::DeniedByRule => call(id, "add", r#"{"a":5000,"b":1}"#),
            Kind::DeniedByDefault => call(id, "reboot_instance", r#"{"id":"i-1"}"#),
            Kind::Limited => call(id, "create_token", r#"{"name":"t"}"#),
            Kind::Hidden => call(id, "delete_instance", r#"{"id":"i-1"}"#),
            // rmcp (protocol 2025-11-25) takes no batches: one with a denied call is answered
            // whole by the gate, which is what is exercised here.
            Kind::Batch => format!(
                "[{},{}]",
                call(id, "echo", r#"{"text":"a"}"#),
                call(id + 1_000_000_000, "reboot_instance", r#"{"id":"i-1"}"#)
            ),
            Kind::List => format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#),
            Kind::Malformed => {
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo""#.into()
            }
            Kind::Disconnect => {
                let started = Instant::now();
                let (addr, sid) = (addr.clone(), sid.clone());
                let _ = tokio::task::spawn_blocking(move || disconnect(&addr, &sid, id)).await;
                shared.count("disconnected", started.elapsed());
                continue;
            }
        };
        let started = Instant::now();
        let answer = request(&http, &url, Some(&sid), body).await;
        let took = started.elapsed();
        let (status, _, text) = match answer {
            Ok(a) => a,
            Err(e) => {
                shared.unexpected(format!("{kind:?}: {e}"));
                continue;
            }
        };
        let denied = text.contains("[POLICY DENIED]");
        let outcome = match (kind, status) {
            (_, s) if s >= 500 => {
                shared.unexpected(format!("{kind:?}: HTTP {s}: {text}"));
                continue;
            }
            (Kind::Malformed, 400) if text.contains("-32700") => "malformed refused",
            (Kind::Allowed, 200) if text.contains("soak") && !denied => "allowed",
            (Kind::DeniedByRule, 200) if text.contains("too big") => "denied by rule",
            (Kind::DeniedByDefault, 200) if text.contains("is not allowed by this policy") => {
                "denied by default"
            }
            (Kind::Hidden, 200) if text.contains("is not available") => "hidden",
            (Kind::Limited, 200) if text.contains("rate limit `create_token_rate` reached") => {
                "limited"
            }
            (Kind::Limited, 200) if text.contains("rate-limit store is unavailable") => {
                "limited (store down)"
            }
            (Kind::Limited, 200) if !denied && text.contains("\"result\"") => {
                "allowed (within limit)"
            }
            (Kind::Batch, 200)
                if text.contains("another call in this batch was denied")
                    && text.contains("is not allowed by this policy") =>
            {
                "batch refused whole"
            }
            (Kind::List, 200) if text.contains("\"echo\"") && !text.contains("delete_instance") => {
                "listed"
            }
            _ => {
                shared.unexpected(format!(
                    "{kind:?}: HTTP {status}: {}",
                    text.chars().take(300).collect::<String>()
                ));
                continue;
            }
        };
        shared.count(outcome, took);
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
    }
    None
}

fn bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

fn p99(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get((v.len() * 99 / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let minutes: u64 = arg("--minutes").and_then(|m| m.parse().ok()).unwrap_or(10);
    let clients: u64 = arg("--clients").and_then(|m| m.parse().ok()).unwrap_or(16);
    let with_redis = std::env::args().any(|a| a == "--redis");
    let dir = bin_dir();
    let (warden, axum_mcp) = (dir.join("warden"), dir.join("axum_mcp"));
    for b in [&warden, &axum_mcp] {
        if !b.exists() {
            return Err(format!(
                "{} missing: cargo build --release -p warden-cli -p warden-e2e",
                b.display()
            ));
        }
    }
    let work = std::env::temp_dir().join(format!("warden-soak-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let policy_path = work.join("policy.pol");
    std::fs::write(&policy_path, policy(0)).map_err(|e| e.to_string())?;

    let up_port = free_port();
    let _upstream = spawn(
        Command::new(&axum_mcp)
            .args(["--no-policy", "--listen", &format!("127.0.0.1:{up_port}")])
            .env("RUST_LOG", "error"),
        up_port,
        true,
    )?;
    let mut redis = with_redis.then(redis_server::RedisServer::start);
    let port = free_port();
    let mut cmd = Command::new(&warden);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &format!("http://127.0.0.1:{up_port}/mcp")])
        .arg("--policy")
        .arg(&policy_path)
        .args(["--grant-token", "soak=soak-token"])
        .env("WARDEN_LOG", "error");
    if let Some(r) = &redis {
        cmd.args(["--redis", &r.url()]);
    }
    let gate = spawn(&mut cmd, port, true)?;
    let pid = gate.0.id();
    let rss_start = rss_kib(pid);
    println!(
        "soak: {minutes} min, {clients} clients, counters {}; warden pid {pid}",
        if with_redis {
            "in Redis (restarted twice)"
        } else {
            "in memory"
        }
    );

    let shared = Arc::new(Shared {
        tally: Mutex::default(),
        stop: AtomicBool::new(false),
        started: Instant::now(),
        calls: AtomicU64::new(0),
    });
    let http: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(clients as usize)
        .build(Counted(HttpConnector::new()));
    let url = format!("http://127.0.0.1:{port}/mcp");
    let addr = format!("127.0.0.1:{port}");
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(client(
            shared.clone(),
            http.clone(),
            url.clone(),
            addr.clone(),
            c * 7919 + 1,
        )));
    }

    // Policy edits every second; memory and descriptors sampled; Redis restarted at 1/3, 2/3.
    let total = Duration::from_secs(minutes * 60);
    let warmup = Duration::from_secs(60).min(total / 4);
    let (mut rss_warm, mut fds_warm, mut rss_peak) = (0, 0, rss_start);
    let mut version = 0u64;
    let mut restarts = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while shared.started.elapsed() < total {
        tick.tick().await;
        version += 1;
        let _ = std::fs::write(&policy_path, policy(version));
        let rss = rss_kib(pid);
        rss_peak = rss_peak.max(rss);
        if rss_warm == 0 && shared.started.elapsed() >= warmup {
            rss_warm = rss;
            fds_warm = fds(pid);
        }
        let third = shared.started.elapsed().as_secs() * 3 / total.as_secs().max(1);
        if let Some(r) = redis.as_mut() {
            if third > restarts && restarts < 2 {
                restarts += 1;
                println!(
                    "restarting redis ({restarts}/2) at {:?}",
                    shared.started.elapsed()
                );
                r.stop();
                tokio::time::sleep(Duration::from_secs(2)).await;
                r.resume();
            }
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    drop(http);
    // Idle connections close, the last reload settles.
    std::fs::write(&policy_path, policy(0)).map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_end, fds_end) = (rss_kib(pid), fds(pid));

    let mut t = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
    let total_calls: u64 = t.outcomes.values().sum();
    println!("\n| outcome | calls |\n|---|---:|");
    for (k, v) in &t.outcomes {
        println!("| {k} | {v} |");
    }
    println!(
        "| **all** | **{total_calls}** ({:.0}/s) |",
        total_calls as f64 / total.as_secs_f64()
    );
    println!("\nunexpected: {}", t.unexpected.len());
    println!(
        "resident memory (KiB): start {rss_start}, after warm-up {rss_warm}, peak {rss_peak}, end {rss_end} ({:+.1}% vs warm-up)",
        (rss_end as f64 / rss_warm.max(1) as f64 - 1.0) * 100.0
    );
    println!("open descriptors: after warm-up {fds_warm}, end {fds_end}");
    print!("p99 per minute (ms):");
    let minutes_seen: Vec<u64> = t.latency.keys().copied().collect();
    for m in minutes_seen {
        if let Some(v) = t.latency.get_mut(&m) {
            print!(" {:.2}", p99(v) as f64 / 1000.0);
        }
    }
    println!();
    drop(gate);
    let _ = std::fs::remove_dir_all(&work);
    let memory_flat = rss_end <= rss_warm + rss_warm / 10;
    let fds_back = fds_end <= fds_warm;
    if !t.unexpected.is_empty() || !memory_flat || !fds_back {
        return Err(format!(
            "soak failed: {} unexpected, memory flat: {memory_flat}, descriptors back: {fds_back}",
            t.unexpected.len()
        ));
    }
    println!("soak passed");
    Ok(())
}
