//! `cargo xtask test`: installs the end-to-end test peers, then runs clippy and the workspace
//! tests. `cargo xtask dist`: the release binary as it ships, optionally with profile-guided
//! optimisation.
//! std only, so the alias builds in seconds on a fresh checkout.

mod dist;
mod peers;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

type Result<T> = std::result::Result<T, String>;

const USAGE: &str = "\
Usage: cargo xtask <COMMAND>

Commands:
  test [--no-clippy] [-- ARGS...]
      Install the end-to-end test peers under target/e2e/ (the Python `mcp` SDK in a venv,
      @modelcontextprotocol/server-everything, the Linode MCP server from shared/reference,
      playwright-core, Node 22 and the MCP
      conformance suite) and check for redis-server, openssl and chromium (apt-installed when
      running as root), then run
        cargo clippy --workspace --all-targets -- -D warnings
        cargo test --workspace ARGS...
      A peer the tests cannot find fails them (never a skip).
      Needs python3, node and npm on PATH. Exits with cargo's exit code.

      --no-clippy   skip the clippy step
      -- ARGS...    passed on to `cargo test`, e.g. `cargo xtask test -- e2e -- --nocapture`

  dist [--pgo [--calls N]]
      Build `warden` as it should ship, to target/dist/warden: `cargo build --release -p
      warden-cli`, copied. This is the build that meets the gateway's targets against nginx
      (CPU, calls/s and p99; docs/PERFORMANCE.md).

      --pgo         profile-guided instead: a release build that is instrumented, trained by
                    target/release/pgo_train (16 clients x N calls of a mixed MCP load through
                    `warden serve` with examples/demo.pol in front of the example rmcp
                    server), and rebuilt with the profile (-Cprofile-use). About 10% less CPU
                    per call, but a longer latency tail: p99 0.10 ms under nginx's against
                    the plain build's 0.28 ms under (docs/PERFORMANCE.md). Needs an
                    llvm-profdata that reads rustc's profiles (LLVM 19 or later; `rustup
                    component add llvm-tools`, Debian's llvm-19, or $LLVM_PROFDATA). Two full
                    release builds: ~15 min on two cores. Its work files are under target/pgo/.
      --calls N     training calls per client with --pgo (default 2000)
      --no-pgo      the default; accepted for scripts written when --pgo was

Environment (each replaces the default the tests use; xtask checks it instead of installing):
  WARDEN_E2E_PYTHON      a Python that can `import mcp, httpx2`
                         (default: target/e2e/venv/bin/python)
  WARDEN_E2E_EVERYTHING  server-everything's entry point, run with node (default:
                         target/e2e/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js)
  WARDEN_E2E_REDIS       a redis-server binary (default: redis-server on PATH)
  WARDEN_E2E_CHROMIUM    a Chromium for the console's browser tests (default: /usr/bin/chromium)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        None => usage_ok(),
        Some((cmd, _)) if matches!(cmd.as_str(), "-h" | "--help" | "help") => usage_ok(),
        Some((cmd, rest)) if cmd == "test" => match test(rest) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("xtask: {e}");
                ExitCode::FAILURE
            }
        },
        Some((cmd, rest)) if cmd == "dist" => {
            if rest.iter().any(|a| a == "-h" || a == "--help") {
                return usage_ok();
            }
            match workspace_root().and_then(|root| dist::dist(&root, rest)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("xtask: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some((cmd, _)) => usage_err(&format!("unknown subcommand `{cmd}`")),
    }
}

fn usage_ok() -> ExitCode {
    println!("{USAGE}");
    ExitCode::SUCCESS
}

/// Usage mistakes exit 2, like clap, so scripts can tell them from test failures.
pub(crate) fn usage_err(why: &str) -> ExitCode {
    eprintln!("xtask: {why}\n\n{USAGE}");
    ExitCode::from(2)
}

fn test(args: &[String]) -> Result<ExitCode> {
    let (ours, cargo_args) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let mut clippy = true;
    for a in ours {
        match a.as_str() {
            "--no-clippy" => clippy = false,
            "-h" | "--help" => return Ok(usage_ok()),
            other => return Ok(usage_err(&format!("unknown `test` option `{other}`"))),
        }
    }

    let started = Instant::now();
    let root = workspace_root()?;
    step("end-to-end clients: Python MCP SDK (mcp 2.x)", || {
        peers::python(&root)
    })?;
    step(
        "end-to-end upstream: @modelcontextprotocol/server-everything",
        || peers::everything(&root),
    )?;
    step(
        "end-to-end upstream: the Linode MCP server (shared/reference)",
        || peers::linode(&root),
    )?;
    step("redis-server", || peers::redis(&root))?;
    step("openssl (the TLS tests' old-protocol client)", || {
        peers::openssl(&root)
    })?;
    step(
        "console browser tests: Chromium and playwright-core",
        || peers::browser(&root),
    )?;
    step(
        "MCP conformance suite: Node 22 and @modelcontextprotocol/conformance",
        || peers::conformance(&root),
    )?;

    // `cargo run` exports CARGO: the same toolchain that built xtask runs the checks.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    if clippy {
        let mut c = command(&root, &cargo);
        c.args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]);
        let code = step(
            "lints: cargo clippy --workspace --all-targets -- -D warnings",
            || status(&mut c),
        )?;
        if code != 0 {
            return Ok(exit(code));
        }
    }
    let mut c = command(&root, &cargo);
    // Every test binary runs even after a failure, so one run shows every broken test.
    c.args(["test", "--workspace", "--no-fail-fast"])
        .args(cargo_args);
    let code = step(&format!("tests: {}", describe(&c)), || status(&mut c))?;
    println!("== total {:.1}s", started.elapsed().as_secs_f64());
    Ok(exit(code))
}

/// xtask lives at crates/xtask, so the workspace root is two levels up; every command runs
/// there so the relative target/e2e paths mean the same as in the tests.
fn workspace_root() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dir.canonicalize()
        .map_err(|e| format!("workspace root {}: {e}", dir.display()))
}

/// Prints the `== title` progress line, runs the step, and prints how long it took (also
/// when it failed, since a slow failure is worth seeing).
fn step<T>(title: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    println!("== {title}");
    let t = Instant::now();
    let r = f();
    println!("   ({:.1}s)", t.elapsed().as_secs_f64());
    r
}

fn exit(code: i32) -> ExitCode {
    // Codes outside 0..=255 (none on Unix) and deaths by signal (no code) become 1.
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn command(root: &Path, program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new(program);
    c.current_dir(root);
    c
}

/// The command line as text, for progress lines and error messages.
fn describe(c: &Command) -> String {
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs with inherited stdio and returns the exit code (-1 when killed by a signal).
fn status(c: &mut Command) -> Result<i32> {
    let st = c
        .status()
        .map_err(|e| format!("cannot run `{}`: {e}", describe(c)))?;
    Ok(st.code().unwrap_or(-1))
}

/// Runs with inherited stdio; a non-zero exit is an error.
fn run(c: &mut Command) -> Result<()> {
    match status(c)? {
        0 => Ok(()),
        code => Err(format!("`{}` failed (exit code {code})", describe(c))),
    }
}

/// Whether the command starts and exits 0; its output is discarded (used for probes).
fn succeeds(c: &mut Command) -> bool {
    c.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a probe and returns its trimmed stdout, or `None` when it cannot start or fails.
fn output(c: &mut Command) -> Option<String> {
    let out = c.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
