//! `cargo xtask dist`: the `warden` binary as it should ship, to `target/dist/warden`.
//!
//! By default that is a plain release build (fat LTO, one codegen unit: the workspace's
//! release profile). `--pgo` builds it with profile-guided optimisation instead: it runs an
//! instrumented `warden serve` through a mixed MCP load (`tests/bench/pgo_train.rs`), and
//! the final build uses what it counted to lay out and inline the hot path. That build
//! spends about 10% less CPU per call, but its latency tail is longer: over 70 rounds its
//! p99 was 0.10 ms under nginx's with an interval reaching 0.14 ms over, where the plain
//! build's was 0.28 ms under with its whole interval under (docs/PERFORMANCE.md). The p99
//! is one of the gateway's targets, so PGO is there for CPU-bound deployments, not the
//! default.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::{Result, command, describe, output, run, step, usage_err};

/// Calls per training client (16 clients) with `--pgo`: a few seconds of load.
const TRAINING_CALLS: usize = 2_000;

pub(crate) fn dist(root: &Path, args: &[String]) -> Result<ExitCode> {
    let mut pgo = false;
    let mut calls = None;
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pgo" => pgo = true,
            "--no-pgo" => pgo = false,
            "--calls" => match args.next().and_then(|n| n.parse().ok()).filter(|n| *n > 0) {
                Some(n) => calls = Some(n),
                None => return Ok(usage_err("--calls takes a positive number")),
            },
            other => return Ok(usage_err(&format!("unknown `dist` option `{other}`"))),
        }
    }
    if calls.is_some() && !pgo {
        return Ok(usage_err(
            "--calls sets the training load of a profile-guided build: add --pgo",
        ));
    }
    let calls = calls.unwrap_or(TRAINING_CALLS);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = target_dir(root);
    let out_dir = target.join("dist");
    let built = if pgo {
        pgo_build(root, &target, &cargo, calls)?
    } else {
        let mut c = command(root, &cargo);
        c.args(["build", "--release", "-p", "warden-cli"]);
        step(&describe(&c), || run(&mut c))?;
        target.join("release/warden")
    };
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let dest = out_dir.join("warden");
    std::fs::copy(&built, &dest)
        .map_err(|e| format!("copying {} to {}: {e}", built.display(), dest.display()))?;
    println!(
        "== {}: {}",
        if pgo {
            "built with profile-guided optimisation"
        } else {
            "built"
        },
        dest.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Where cargo puts what it builds here: `CARGO_TARGET_DIR` when set (relative to the
/// workspace root, as cargo reads it), else `target/`. A copy from anywhere else could be a
/// stale binary.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

fn pgo_build(root: &Path, target: &Path, cargo: &std::ffi::OsStr, calls: usize) -> Result<PathBuf> {
    let pgo = target.join("pgo");
    let profiles = pgo.join("profiles");
    let merged = pgo.join("warden.profdata");
    // Found before the long builds, so a missing tool fails in seconds.
    let tools = step("llvm-profdata candidates", || profdata_candidates(root))?;

    let mut c = command(root, cargo);
    c.args(["build", "--release", "-p", "warden-e2e"]).args([
        "--bin",
        "pgo_train",
        "--bin",
        "axum_mcp",
    ]);
    step(
        &format!("the trainer and its upstream: {}", describe(&c)),
        || run(&mut c),
    )?;

    let mut c = warden_build(
        root,
        cargo,
        &format!("-Cprofile-generate={}", profiles.display()),
        &pgo.join("generate"),
    );
    step(&format!("instrumented: {}", describe(&c)), || run(&mut c))?;

    // Emptied after the build: its build scripts are instrumented too, and write profiles
    // of their own as they run.
    if profiles.exists() {
        std::fs::remove_dir_all(&profiles)
            .map_err(|e| format!("emptying {}: {e}", profiles.display()))?;
    }
    let mut c = command(root, target.join("release/pgo_train"));
    c.arg("--warden")
        .arg(pgo.join("generate/release/warden"))
        .args(["--calls", &calls.to_string()]);
    step(&format!("training: {}", describe(&c)), || run(&mut c))?;

    step("merging the profile", || merge(&tools, &profiles, &merged))?;

    let mut c = warden_build(
        root,
        cargo,
        &format!("-Cprofile-use={}", merged.display()),
        &pgo.join("use"),
    );
    step(&format!("optimised: {}", describe(&c)), || run(&mut c))?;
    Ok(pgo.join("use/release/warden"))
}

/// A release build of `warden` with `flag` added to the RUSTFLAGS it would have had, in its
/// own target directory: other RUSTFLAGS would rebuild target/release each time.
fn warden_build(root: &Path, cargo: &std::ffi::OsStr, flag: &str, target_dir: &Path) -> Command {
    let mut flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    if !flags.is_empty() {
        flags.push(' ');
    }
    flags.push_str(flag);
    let mut c = command(root, cargo);
    // Cargo prefers the encoded form when both are set, which would drop ours.
    c.env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", flags)
        .args(["build", "--release", "-p", "warden-cli", "--target-dir"])
        .arg(target_dir);
    c
}

/// The `llvm-profdata`s to try, best first: `$LLVM_PROFDATA`, the toolchain's own
/// (`rustup component add llvm-tools`), then versioned system ones from rustc's LLVM down
/// to 19 (older ones cannot read the raw profiles today's rustc writes), then any.
fn profdata_candidates(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if let Some(p) = std::env::var_os("LLVM_PROFDATA") {
        found.push(PathBuf::from(p));
    }
    let version = output(command(root, "rustc").arg("-vV")).unwrap_or_default();
    let field = |name: &str| {
        version
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    if let (Some(sysroot), Some(host)) = (
        output(command(root, "rustc").args(["--print", "sysroot"])),
        field("host:"),
    ) {
        found.push(PathBuf::from(format!(
            "{sysroot}/lib/rustlib/{host}/bin/llvm-profdata"
        )));
    }
    let major = field("LLVM version:")
        .and_then(|v| v.split('.').next().and_then(|m| m.parse::<u32>().ok()))
        .unwrap_or(19);
    for v in (19..=major.max(19)).rev() {
        found.push(PathBuf::from(format!("llvm-profdata-{v}")));
        found.push(PathBuf::from(format!(
            "/usr/lib/llvm-{v}/bin/llvm-profdata"
        )));
    }
    found.push(PathBuf::from("llvm-profdata"));
    found.retain(|p| output(Command::new(p).arg("--version")).is_some());
    if found.is_empty() {
        return Err(NO_PROFDATA.into());
    }
    for p in &found {
        println!("   {}", p.display());
    }
    Ok(found)
}

const NO_PROFDATA: &str = "no llvm-profdata found. Install one that reads rustc's profiles: \
     `rustup component add llvm-tools`, or LLVM 19 or later (Debian: apt-get install llvm-19), \
     or set LLVM_PROFDATA; or build without PGO: cargo xtask dist";

/// Merges the raw profiles with the first candidate that can read them.
fn merge(tools: &[PathBuf], profiles: &Path, merged: &Path) -> Result<()> {
    let raw: Vec<PathBuf> = std::fs::read_dir(profiles)
        .map_err(|e| {
            format!(
                "{}: {e} (did the training run write no profile?)",
                profiles.display()
            )
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "profraw"))
        .collect();
    if raw.is_empty() {
        return Err(format!(
            "no .profraw in {}: the instrumented warden did not write its profile",
            profiles.display()
        ));
    }
    let mut tried = Vec::new();
    for tool in tools {
        let out = Command::new(tool)
            .arg("merge")
            .arg("-o")
            .arg(merged)
            .args(&raw)
            .output()
            .map_err(|e| format!("{}: {e}", tool.display()))?;
        if out.status.success() {
            println!("   merged {} profile(s) with {}", raw.len(), tool.display());
            return Ok(());
        }
        tried.push(format!(
            "{}: {}",
            tool.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Err(format!(
        "no llvm-profdata could read the profiles (an older LLVM than rustc's cannot):\n  {}\n{NO_PROFDATA}",
        tried.join("\n  ")
    ))
}
