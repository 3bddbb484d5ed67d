//! The end-to-end peers the tests drive: the Python MCP SDK (client), server-everything
//! (third-party upstream) and redis-server. Each is installed only when missing, so a warm
//! `cargo xtask test` spends no time here. Paths match what tests/support.rs looks for.

use std::path::{Path, PathBuf};

use super::{Result, command, output, run, succeeds};

const VENV: &str = "target/e2e/venv";
const NPM_PREFIX: &str = "target/e2e/npm";
const EVERYTHING_JS: &str =
    "target/e2e/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js";

/// The venv at target/e2e/venv with `mcp>=2,<3`, or the interpreter in WARDEN_E2E_PYTHON.
pub fn python(root: &Path) -> Result<()> {
    let usable = |py: &Path| succeeds(command(root, py).args(["-c", "import mcp, httpx2"]));
    let py = match std::env::var_os("WARDEN_E2E_PYTHON") {
        // The tests try an override first; check it rather than install a copy nobody uses.
        Some(p) => {
            let p = PathBuf::from(p);
            if !usable(&p) {
                return Err(format!(
                    "WARDEN_E2E_PYTHON={} cannot `import mcp, httpx2`; install `mcp>=2,<3` \
                     into it or unset it",
                    p.display()
                ));
            }
            println!("   using WARDEN_E2E_PYTHON={}", p.display());
            p
        }
        None => {
            let py = root.join(VENV).join("bin/python");
            if usable(&py) {
                println!("   already installed in {VENV}");
            } else {
                require(
                    root,
                    "python3",
                    "Python 3 with venv (e.g. `apt-get install python3-venv`)",
                )?;
                run(command(root, "python3").args(["-m", "venv", VENV]))?;
                run(command(root, root.join(VENV).join("bin/pip")).args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "mcp>=2,<3",
                ]))?;
                if !usable(&py) {
                    return Err(format!(
                        "{} still cannot `import mcp, httpx2` after installing",
                        py.display()
                    ));
                }
                println!("   installed in {VENV}");
            }
            py
        }
    };
    let version = output(command(root, &py).args([
        "-c",
        "import importlib.metadata as m; print('mcp', m.version('mcp'))",
    ]))
    .ok_or_else(|| format!("{} cannot report the mcp version", py.display()))?;
    println!("   {version}");
    Ok(())
}

/// server-everything under target/e2e/npm, or the entry point in WARDEN_E2E_EVERYTHING.
/// node is needed either way: the tests run the entry point with it.
pub fn everything(root: &Path) -> Result<()> {
    let node = require(root, "node", "Node.js (e.g. `apt-get install nodejs npm`)")?;
    println!("   node {node}");
    if let Some(p) = std::env::var_os("WARDEN_E2E_EVERYTHING") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(format!(
                "WARDEN_E2E_EVERYTHING={} is not a file; point it at server-everything's \
                 dist/index.js or unset it",
                p.display()
            ));
        }
        println!("   using WARDEN_E2E_EVERYTHING={}", p.display());
        return Ok(());
    }
    let js = root.join(EVERYTHING_JS);
    if js.is_file() {
        println!("   already installed in {NPM_PREFIX}");
        return Ok(());
    }
    require(root, "npm", "npm (e.g. `apt-get install npm`)")?;
    run(command(root, "npm").args([
        "install",
        "--silent",
        "--no-audit",
        "--no-fund",
        "--prefix",
        NPM_PREFIX,
        "@modelcontextprotocol/server-everything",
    ]))?;
    if !js.is_file() {
        return Err(format!(
            "npm install finished but {} is missing",
            js.display()
        ));
    }
    println!("   installed in {NPM_PREFIX}");
    Ok(())
}

/// redis-server from PATH (apt-installed when we are root), or the binary in WARDEN_E2E_REDIS.
pub fn redis(root: &Path) -> Result<()> {
    let overridden = std::env::var_os("WARDEN_E2E_REDIS").map(PathBuf::from);
    let bin = overridden
        .clone()
        .unwrap_or_else(|| PathBuf::from("redis-server"));
    let version = || output(command(root, &bin).arg("--version"));
    let v = match (version(), overridden) {
        (Some(v), _) => v,
        (None, Some(p)) => {
            return Err(format!(
                "WARDEN_E2E_REDIS={} does not run (`--version` failed); point it at a \
                 redis-server binary or unset it",
                p.display()
            ));
        }
        (None, None) => {
            let is_root = output(command(root, "id").arg("-u")).is_some_and(|u| u == "0");
            if !is_root || !succeeds(command(root, "apt-get").arg("--version")) {
                return Err(
                    "redis-server not found; install it with `sudo apt-get install \
                            redis-server` (or set WARDEN_E2E_REDIS to a redis-server binary)"
                        .into(),
                );
            }
            println!("   installing redis-server with apt-get");
            run(command(root, "apt-get").args(["update", "-qq"]))?;
            run(command(root, "apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["install", "-y", "-qq", "redis-server"]))?;
            version().ok_or("redis-server still does not run after `apt-get install`")?
        }
    };
    println!("   {v}");
    Ok(())
}

/// `tool --version`, or an error naming what to install.
fn require(root: &Path, tool: &str, install: &str) -> Result<String> {
    output(command(root, tool).arg("--version")).ok_or_else(|| {
        format!("`{tool}` not found on PATH (or `{tool} --version` failed); install {install}")
    })
}
