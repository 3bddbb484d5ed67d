//! The training run of `cargo xtask dist --pgo`, the profile-guided build: drives a
//! `warden serve` built with `-Cprofile-generate` through the calls a gateway serves, then
//! stops it with SIGTERM so that it writes its profile.
//!
//! ```sh
//! cargo build --release -p warden-e2e --bin pgo_train --bin axum_mcp
//! target/release/pgo_train --warden path/to/instrumented/warden [--calls N]
//! ```
//!
//! The policy is `examples/demo.pol` (one rule of each kind), not the benchmark's, and the
//! calls are a mix: allowed calls with arguments, a condition passed and failed, a limit
//! charged until it refuses, a hidden tool, `tools/list` filtered, unknown tools and
//! unauthenticated calls. `--calls` is per client (16 clients, each its own keep-alive
//! connection and MCP session, as `proxy_compare` drives them). Every answer is checked,
//! so a training run that went wrong fails instead of teaching the compiler an error path.

#[path = "common.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{open_session, request, spawn_listening};

const TOKEN: &str = "train-token-0123456789";
const CLIENTS: usize = 16;
const DEADLINE: Duration = Duration::from_secs(300);

fn usage() -> &'static str {
    "pgo_train --warden INSTRUMENTED-WARDEN-BINARY [--calls N per client (default 2000)]"
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pgo_train: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut warden = None;
    let mut calls = 2_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--warden" => warden = Some(PathBuf::from(args.next().ok_or(usage())?)),
            "--calls" => {
                calls = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--calls takes a positive number")?
            }
            "-h" | "--help" => {
                println!("{}", usage());
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; {}", usage())),
        }
    }
    let warden = warden.ok_or(usage())?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe_dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(PathBuf::from)
        .ok_or("no directory for this binary")?;

    let (_upstream, up) = spawn_listening(
        Command::new(exe_dir.join("axum_mcp"))
            .args(["--no-policy", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "error")
            .stderr(Stdio::null()),
    )
    .map_err(|e| format!("the upstream (build it with -p warden-e2e --bin axum_mcp): {e}"))?;
    let (mut gateway, gate) = spawn_listening(
        Command::new(&warden)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--upstream", &format!("{up}/mcp")])
            .arg("--policy")
            .arg(repo.join("examples/demo.pol"))
            .args(["--grant-token", &format!("trainer={TOKEN}")])
            .env("WARDEN_LOG", "warn"),
    )?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let url: Arc<str> = format!("{gate}/mcp").into();
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| tokio::spawn(client(url.clone(), c, calls)))
            .collect();
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok::<_, String>(())
    })?;
    eprintln!(
        "pgo_train: {} calls in {:.1} s",
        CLIENTS * calls,
        started.elapsed().as_secs_f64()
    );

    // The profile is written when the process exits normally, which SIGTERM leads to.
    Command::new("kill")
        .args(["-TERM", &gateway.0.id().to_string()])
        .status()
        .map_err(|e| format!("kill: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match gateway.0.try_wait().map_err(|e| e.to_string())? {
            Some(s) if s.success() => return Ok(()),
            Some(s) => return Err(format!("warden exited with {s} on SIGTERM")),
            None if Instant::now() > deadline => {
                return Err("warden did not exit within 60 s of SIGTERM".into());
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// What one call expects back.
enum Expect {
    /// Forwarded: the answer holds this text.
    Answer(&'static str),
    /// Refused by the gateway (HTTP 200).
    Refused,
    /// Either, depending on how much of a limit is left.
    Either(&'static str),
    /// Refused before the policy: an HTTP error status.
    Status(u16),
}

async fn client(url: Arc<str>, c: usize, calls: usize) -> Result<(), String> {
    let (http, sid) = open_session(&url, TOKEN, "pgo_train").await?;
    let deadline = Instant::now() + DEADLINE;
    for i in 0..calls {
        if Instant::now() > deadline {
            return Err("deadline passed".into());
        }
        let id = i + 2;
        let call = |name: &str, args: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{args}}}}}"#
            )
        };
        let mut bearer = Some(TOKEN);
        let (body, expect) = match (i + c) % 100 {
            7 | 57 => (
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#),
                Expect::Answer("get_weather"),
            ),
            11 | 61 => (call("add", r#"{"a":2,"b":3}"#), Expect::Answer("5")),
            13 => (
                call("get_weather", r#"{"city":"Lisbon"}"#),
                Expect::Answer("Lisbon"),
            ),
            17 => (
                call("transfer", r#"{"to":"acct-1","amount":50}"#),
                Expect::Answer("50"),
            ),
            19 => (
                call("transfer", r#"{"to":"acct-1","amount":5000}"#),
                Expect::Refused,
            ),
            23 => (
                call("create_token", r#"{"name":"ci"}"#),
                Expect::Either("ci"),
            ),
            29 => (call("delete_instance", r#"{"id":1}"#), Expect::Refused),
            31 => (call("no_such_tool", "{}"), Expect::Refused),
            37 => {
                bearer = None;
                (call("echo", r#"{"text":"hi"}"#), Expect::Status(401))
            }
            _ => (
                call("echo", &format!(r#"{{"text":"hello {i}"}}"#)),
                Expect::Answer("hello"),
            ),
        };
        let (status, _, answer) = request(&http, &url, Some(&sid), bearer, body.clone()).await?;
        let text = String::from_utf8_lossy(&answer);
        // A policy's refusal is a tool result with `isError` (a JSON-RPC error for what is
        // not a tool call).
        let refused = text.contains(r#""isError":true"#) || text.contains(r#""error""#);
        let ok = match expect {
            Expect::Answer(want) => status == 200 && !refused && text.contains(want),
            Expect::Refused => status == 200 && refused,
            Expect::Either(want) => status == 200 && (refused || text.contains(want)),
            Expect::Status(want) => status == want,
        };
        if !ok {
            return Err(format!("{body}\n  was answered {status}: {text}"));
        }
        if body.contains("tools/list") && text.contains("delete_instance") {
            return Err(format!("tools/list showed a hidden tool: {text}"));
        }
    }
    Ok(())
}
