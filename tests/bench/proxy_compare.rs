//! Side by side: `warden serve` against nginx and haproxy as plain reverse proxies in front
//! of the same MCP server, under the same load, in one run.
//!
//! ```sh
//! cargo build --release -p warden-cli -p warden-e2e
//! target/release/proxy_compare                 # prints the table for docs/PERFORMANCE.md
//! target/release/proxy_compare --workers 2    # nginx, haproxy and warden with 2 each
//! target/release/proxy_compare --tls          # warden and nginx with TLS (below)
//! target/release/proxy_compare --aggregate    # a warden.toml's /mcp against --upstream
//! target/release/proxy_compare --traces       # OTLP export on against off
//! ```
//!
//! Arguments after `--` go to `warden serve`. nginx and haproxy come from Debian's packages
//! (installed with apt-get when missing; this needs root and is not part of CI).
//!
//! The upstream is the project's rmcp example server (`axum_mcp --no-policy`). Every path
//! gets `--clients` keep-alive connections, each with its own MCP session, sending
//! `tools/call echo` back to back; warden charges a per-grant limit on every call
//! (`examples/bench.pol`, a bearer token). The CPU of each proxy process is the sum of
//! `/proc/PID/task/*/schedstat` (nanoseconds on a CPU, every thread) across the measured
//! calls only. Rounds interleave the paths, and the table shows each path's median round, so
//! drift on a shared machine shows up in every row alike; with more than one round, a
//! second table gives each path's ratios to nginx (and its p99's difference from nginx's)
//! taken within each round (median and range), which is steadier than comparing medians,
//! and the difference of the p99s over every call of every round: a round's p99 moves by a
//! millisecond or more on a shared machine, a p99 of 320,000 calls far less. That last
//! figure comes with a 90 % interval from resampling the rounds: when the interval spans
//! the target, the run did not settle the question. `--latencies FILE` writes every
//! measured call (path, round, client, start and latency in µs) as CSV, to see whether a
//! tail is single slow calls or stalls that hold every client at once.
//! Each round's figures also go to stderr. The last column counts the connections the
//! clients opened beyond their first (hyper's pool, as under reqwest): answers a proxy sends
//! in pieces can keep the pool from reusing a connection, and it then opens another. Every
//! loop is bounded by a call count and a deadline.
//!
//! CPU time moves by 10-20 % between rounds on a shared machine; for comparing two builds
//! to the instruction, see `tests/bench/instructions.py` (callgrind).
//!
//! # `--tls`: what TLS costs warden and nginx (issue 27)
//!
//! ```sh
//! target/release/proxy_compare --tls --rounds 16    # 2 × the 8 rows: every row in every place twice
//! ```
//!
//! Instead of the rows above, warden and nginx only (haproxy is left out), each with
//! `--workers` workers, in four tables measured in the same interleaved rounds:
//!
//! 0. **No TLS**, as above: the reference that says what TLS adds to each.
//! 1. **TLS clients, plain upstream.** The clients reach each proxy over TLS on their
//!    keep-alive connections; both proxies serve the same certificate and key (a test CA
//!    made fresh by `tests/pki.rs`): nginx with `listen … ssl`, `ssl_protocols TLSv1.2
//!    TLSv1.3` (`tests/bench/nginx-tls.conf.in`), warden with `--tls-cert/--tls-key`. The
//!    clients (rustls, aws-lc-rs) offer TLS 1.3 only, one cipher suite
//!    (`TLS13_AES_128_GCM_SHA256`) and one key exchange (X25519), so both servers negotiate
//!    the same (left to itself rustls would offer X25519MLKEM768, which Debian 12's OpenSSL
//!    lacks); the header says what each actually negotiated, and what each picks from
//!    rustls's default offer.
//! 2. **Plain clients, https upstream.** Both proxies reach the upstream over TLS with pooled
//!    connections, through one more nginx that terminates TLS in front of `axum_mcp` (its CPU
//!    is not counted; pinned to TLS 1.3, `TLS_AES_128_GCM_SHA256` and X25519, and
//!    `keepalive_requests 100000` so that it does not close the proxies' connections
//!    itself): nginx with `proxy_pass https://` to a keep-alive pool, `proxy_ssl_verify on`
//!    against the CA, `proxy_ssl_name localhost`, `proxy_ssl_server_name on` (SNI, as
//!    warden sends it), `proxy_ssl_session_reuse on` and `proxy_ssl_protocols TLSv1.2
//!    TLSv1.3` (nginx 1.22's default has no TLS 1.3 upstream); warden with `--upstream
//!    https://localhost:PORT/mcp --upstream-ca CA`. An extra column gives the connections
//!    the terminator accepted per 1,000 measured calls (its `stub_status`; the warm-up has
//!    grown each pool to the clients' number): a pool that keeps its connections stays near
//!    0 (nginx closes an upstream connection after 1,000 requests, its `keepalive_requests`
//!    default, so ~1 for it).
//! 3. **A new TLS connection per call.** Against the proxies of (1), each client opens a
//!    fresh connection for every call with a full handshake (its rustls session resumption
//!    disabled), sends one `tools/call` (with `connection: close`, on an MCP session opened
//!    beforehand) and reads the answer; the server closes. `--handshakes` calls per client
//!    and round (a tenth of that as warm-up). The table gives connections per second and
//!    the proxy's CPU per connection (the handshake, the call and the close).
//!
//! `--baseline` adds an earlier build's rows to every table (it must know `--tls-cert`).
//! The targets of issue 27 (CPU per call ≤ 1.1× nginx's and calls/s ≥ 0.95× nginx's for
//! 1 and 2, connections/s ≥ 0.9× nginx's for 3) are checked at the end, from the ratios
//! within rounds.
//!
//! # `--aggregate`: several servers behind one endpoint (issue 28)
//!
//! The aggregated `/mcp` of a `warden.toml` with three servers against a single-upstream
//! `warden serve`, then the memory an idle client session costs: see
//! `tests/bench/aggregate.rs`. `--only TEXT` measures only the rows whose name contains
//! `TEXT` (in any mode), to profile one; `--only 'A|B'`, those that contain either.

#[path = "aggregate.rs"]
mod aggregate;
#[path = "common.rs"]
mod common;
#[path = "../pki.rs"]
mod pki;
#[path = "traces.rs"]
mod traces;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{
    CONNECTIONS, Http, Https, Proc, close_session, free_port, https_client, open_session,
    open_session_tls, post, post_once, spawn, tls_client_config, tls_default_config, tls_probe,
};

const TOKEN: &str = "bench-token-0123456789";
/// The tool every client calls (under `<server>_echo` on the aggregated `/mcp`).
const ECHO: &str = "echo";
const DEADLINE: Duration = Duration::from_secs(120);

struct Opts {
    clients: usize,
    calls: usize,
    warmup: usize,
    rounds: usize,
    /// nginx workers, haproxy threads and warden workers alike.
    workers: usize,
    /// Only warden's row (with nginx's as the yardstick): for profiling.
    warden_only: bool,
    /// An earlier build of warden, measured in the same run as a row of its own.
    baseline: Option<PathBuf>,
    /// Where to write every measured call's start and latency, for looking at the tail.
    latencies: Option<PathBuf>,
    /// warden and nginx with TLS: clients over TLS, an https upstream, a handshake per call.
    tls: bool,
    /// With `--tls`: calls on a new TLS connection each, per client and round.
    handshakes: usize,
    /// The aggregated `/mcp` of a three-server `warden.toml` against `--upstream`.
    aggregate: bool,
    /// With `--aggregate`: idle sessions opened per batch for the memory figures.
    sessions: usize,
    /// Export off against export on with three samplers (issue 29).
    traces: bool,
    /// Only the rows whose name contains this are measured: for profiling one.
    only: Option<String>,
    warden_args: Vec<String>,
}

fn opts() -> Result<Opts, String> {
    let mut o = Opts {
        clients: 16,
        calls: 2_000,
        warmup: 200,
        rounds: 3,
        workers: 1,
        warden_only: false,
        baseline: None,
        latencies: None,
        tls: false,
        handshakes: 200,
        aggregate: false,
        sessions: 2_000,
        traces: false,
        only: None,
        warden_args: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} takes a positive number"))
        };
        match a.as_str() {
            "--clients" => o.clients = num("--clients")?,
            "--calls" => o.calls = num("--calls")?,
            "--warmup" => o.warmup = num("--warmup")?,
            "--rounds" => o.rounds = num("--rounds")?,
            "--workers" => o.workers = num("--workers")?,
            "--handshakes" => o.handshakes = num("--handshakes")?,
            "--sessions" => o.sessions = num("--sessions")?,
            "--warden-only" => o.warden_only = true,
            "--tls" => o.tls = true,
            "--aggregate" => o.aggregate = true,
            "--traces" => o.traces = true,
            "--only" => o.only = Some(args.next().ok_or("--only takes part of a row's name")?),
            "--baseline" => {
                o.baseline = Some(
                    args.next()
                        .map(PathBuf::from)
                        .ok_or("--baseline takes a path to a warden binary")?,
                )
            }
            "--latencies" => {
                o.latencies = Some(
                    args.next()
                        .map(PathBuf::from)
                        .ok_or("--latencies takes a file to write")?,
                )
            }
            "--" => {
                o.warden_args = args.by_ref().collect();
            }
            "-h" | "--help" => {
                println!(
                    "proxy_compare [--clients N] [--calls N per client] [--warmup N] [--rounds N] [--workers N] [--warden-only] [--baseline OLD-WARDEN-BINARY] [--latencies CSV-FILE] [--tls [--handshakes N per client]] [--aggregate [--sessions N per batch]] [--traces] [--only PART-OF-A-ROW-NAME[|ANOTHER]] [-- WARDEN SERVE ARGS]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if o.traces && (o.tls || o.aggregate || o.baseline.is_some()) {
        return Err("--traces goes with none of --tls, --aggregate, --baseline".into());
    }
    if o.aggregate && (o.tls || o.baseline.is_some()) {
        return Err("--aggregate goes with neither --tls nor --baseline".into());
    }
    Ok(o)
}

/// Nanoseconds every thread of `pid` and of its child processes (nginx's workers) has
/// spent on a CPU.
fn cpu_ns(pid: u32) -> Result<Cpu, String> {
    let mut total = Cpu {
        ns: threads_cpu_ns(pid)?,
        ..Cpu::default()
    };
    total.add_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default());
    for entry in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // The parent pid is the 2nd field after the command, which is in parentheses.
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            total.ns += threads_cpu_ns(child).unwrap_or(0);
            total.add_ticks(&stat);
        }
    }
    Ok(total)
}

/// CPU time in nanoseconds, and its user/system split in clock ticks (coarser).
#[derive(Default, Clone, Copy)]
struct Cpu {
    ns: u64,
    user_ticks: u64,
    system_ticks: u64,
}

impl Cpu {
    /// utime and stime: fields 14 and 15 of /proc/PID/stat (12 and 13 after the command).
    fn add_ticks(&mut self, stat: &str) {
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| {
                rest.split_whitespace()
                    .map(|f| f.parse().unwrap_or(0))
                    .collect()
            })
            .unwrap_or_default();
        self.user_ticks += fields.get(11).copied().unwrap_or(0);
        self.system_ticks += fields.get(12).copied().unwrap_or(0);
    }
}

fn threads_cpu_ns(pid: u32) -> Result<u64, String> {
    let dir = format!("/proc/{pid}/task");
    let mut total = 0;
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{dir}: {e}"))? {
        let path = entry.map_err(|e| e.to_string())?.path().join("schedstat");
        // A thread may end between the listing and the read; its time is then lost (noise).
        if let Ok(s) = std::fs::read_to_string(&path) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(bin))
        .find(|p| p.exists())
}

/// nginx and haproxy from Debian's packages, installed on first use.
fn proxies() -> Result<(PathBuf, PathBuf), String> {
    if which("nginx").is_none() || which("haproxy").is_none() {
        eprintln!("installing nginx and haproxy from Debian's packages (apt-get)…");
        for args in [
            &["update", "-qq"][..],
            &["install", "-y", "-qq", "nginx-light", "haproxy"][..],
        ] {
            let ok = Command::new("apt-get")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!(
                    "apt-get {} failed: install nginx and haproxy yourself (needs root)",
                    args.join(" ")
                ));
            }
        }
    }
    match (which("nginx"), which("haproxy")) {
        (Some(n), Some(h)) => Ok((n, h)),
        _ => Err("nginx or haproxy still missing after apt-get install".into()),
    }
}

fn version(bin: &Path, arg: &str) -> String {
    Command::new(bin)
        .arg(arg)
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// nginx as `tests/bench/nginx.conf.in` configures it (as an MCP reverse proxy usually is).
fn nginx(
    bin: &Path,
    dir: &Path,
    upstream_port: u16,
    workers: usize,
) -> Result<(Proc, u16), String> {
    let port = free_port();
    let conf = include_str!("nginx.conf.in")
        // One worker: a single process to measure; more: the master and its workers.
        .replace(
            "@MASTER@",
            if workers == 1 {
                "master_process off;"
            } else {
                ""
            },
        )
        .replace("@WORKERS@", &workers.to_string())
        .replace("@DIR@", &dir.display().to_string())
        .replace("@UPSTREAM@", &upstream_port.to_string())
        .replace("@PORT@", &port.to_string());
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let p = spawn(
        Command::new(bin)
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&path),
        port,
        false,
    )?;
    Ok((p, port))
}

/// haproxy in HTTP mode with connection reuse to the upstream.
fn haproxy(
    bin: &Path,
    dir: &Path,
    upstream_port: u16,
    workers: usize,
) -> Result<(Proc, u16), String> {
    let port = free_port();
    let conf = format!(
        r#"global
  nbthread {workers}
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option http-keep-alive
  http-reuse always
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  server s 127.0.0.1:{upstream_port}
"#
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let p = spawn(
        Command::new(bin).arg("-db").arg("-f").arg(&path),
        port,
        false,
    )?;
    Ok((p, port))
}

fn warden(
    bin: &Path,
    repo: &Path,
    upstream: &str,
    // `None` for a build from before `--workers` existed.
    workers: Option<usize>,
    extra: &[String],
) -> Result<(Proc, u16), String> {
    let port = free_port();
    let p = spawn(
        Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", upstream])
            .arg("--policy")
            .arg(repo.join("examples/bench.pol"))
            .args(["--grant-token", &format!("bench={TOKEN}")])
            .args(
                workers
                    .map(|w| ["--workers".to_owned(), w.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .args(extra)
            .env("WARDEN_LOG", "warn"),
        port,
        false,
    )?;
    Ok((p, port))
}

/// One nginx of `tests/bench/nginx-tls.conf.in`.
struct NginxTls<'a> {
    /// Tells its files apart from the other instances'.
    name: &'a str,
    upstream_port: u16,
    /// The upstream's scheme: `https` for one behind TLS.
    scheme: &'a str,
    /// The `Host` the upstream is sent.
    host: String,
    /// The listener speaks TLS.
    ssl: bool,
    /// Lines for the server block, the location and the http block.
    server: String,
    location: String,
    http: String,
    workers: usize,
}

fn nginx_tls(bin: &Path, dir: &Path, c: &NginxTls) -> Result<(Proc, u16), String> {
    let port = free_port();
    let conf = include_str!("nginx-tls.conf.in")
        .replace(
            "@MASTER@",
            if c.workers == 1 {
                "master_process off;"
            } else {
                ""
            },
        )
        .replace("@WORKERS@", &c.workers.to_string())
        .replace("@DIR@", &dir.display().to_string())
        .replace("@NAME@", c.name)
        .replace("@UPSTREAM@", &c.upstream_port.to_string())
        .replace("@PORT@", &port.to_string())
        .replace("@SSL@", if c.ssl { " ssl" } else { "" })
        .replace("@SCHEME@", c.scheme)
        .replace("@HOST@", &c.host)
        .replace("@SERVER@", &c.server)
        .replace("@LOCATION@", &c.location)
        .replace("@HTTP@", &c.http);
    let path = dir.join(format!("nginx-{}.conf", c.name));
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let p = spawn(
        Command::new(bin)
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(&path),
        port,
        false,
    )?;
    Ok((p, port))
}

/// The connections an nginx has accepted so far, from its `stub_status` page on `port`
/// (which counts the connection that asks, too).
fn accepted(port: u16) -> Result<u64, String> {
    use std::io::Read as _;
    let status = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    };
    let text = status().map_err(|e| format!("the TLS terminator's status page: {e}"))?;
    // "server accepts handled requests", then " 12 12 345".
    text.lines()
        .skip_while(|l| !l.starts_with("server accepts"))
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("the TLS terminator's status page: {text:?}"))
}

/// A client's connection: plain, or TLS.
enum Client {
    Plain(Http),
    Tls(Https),
}

impl Client {
    async fn post(
        &self,
        url: &str,
        sid: Option<&str>,
        body: String,
    ) -> Result<(Option<String>, Bytes), String> {
        match self {
            Client::Plain(c) => post(c, url, sid, Some(TOKEN), body).await,
            Client::Tls(c) => post(c, url, sid, Some(TOKEN), body).await,
        }
    }

    async fn close(&self, url: &str, sid: &str) -> Result<(), String> {
        match self {
            Client::Plain(c) => close_session(c, url, sid, TOKEN).await,
            Client::Tls(c) => close_session(c, url, sid, TOKEN).await,
        }
    }
}

/// One MCP session on its own connection.
struct Session {
    client: Client,
    url: Arc<str>,
    sid: String,
    /// The tool it calls (`echo`; on the aggregated `/mcp`, `<server>_echo`).
    tool: Arc<str>,
    /// `params._meta` of its calls.
    meta: Option<Arc<str>>,
}

async fn open(
    url: Arc<str>,
    tls: Option<&Arc<rustls::ClientConfig>>,
    tool: Arc<str>,
    meta: Option<Arc<str>>,
) -> Result<Session, String> {
    let (client, sid) = match tls {
        None => {
            let (c, sid) = open_session(&url, TOKEN, "load").await?;
            (Client::Plain(c), sid)
        }
        Some(config) => {
            let (c, sid) = open_session_tls(&url, TOKEN, "load", config.clone()).await?;
            (Client::Tls(c), sid)
        }
    };
    Ok(Session {
        client,
        url,
        sid,
        tool,
        meta,
    })
}

/// One measured call: when it started and how long it took.
#[derive(Clone, Copy)]
struct Call {
    client: usize,
    started: Instant,
    took: Duration,
}

fn call_body(i: usize, tool: &str, meta: Option<&str>) -> String {
    match meta {
        None => format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"hello"}}}}}}"#,
            i + 2
        ),
        Some(meta) => format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"hello"}},"_meta":{meta}}}}}"#,
            i + 2
        ),
    }
}

fn check(answer: &[u8]) -> Result<(), String> {
    if answer.windows(5).any(|w| w == b"hello") {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer: {}",
            String::from_utf8_lossy(answer)
        ))
    }
}

/// `n` calls on the session's own connection; with `fresh`, each on a new connection of
/// that client instead (the session is still the same).
async fn calls(
    s: Arc<Session>,
    fresh: Option<Https>,
    client: usize,
    n: usize,
    deadline: Instant,
) -> Result<Vec<Call>, String> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        if Instant::now() > deadline {
            return Err("deadline passed".into());
        }
        let body = call_body(i, &s.tool, s.meta.as_deref());
        let started = Instant::now();
        let (_, answer) = match &fresh {
            None => s.client.post(&s.url, Some(&s.sid), body).await?,
            Some(c) => post_once(c, &s.url, Some(&s.sid), Some(TOKEN), body).await?,
        };
        lat.push(Call {
            client,
            started,
            took: started.elapsed(),
        });
        check(&answer)?;
    }
    Ok(lat)
}

#[derive(Clone, Copy)]
struct Run {
    /// Calls per second (connections per second for a path that opens one per call).
    throughput: f64,
    p50: Duration,
    p99: Duration,
    /// CPU of the proxy process per call; `None` for the direct path.
    cpu_us: Option<f64>,
    /// The share of that CPU spent in user space (the rest: the kernel, for the sockets).
    user_share: Option<f64>,
    /// Connections the clients opened beyond their first, per 1,000 calls (warm-up and
    /// measured): each should keep its one. For a path that opens one per call: the
    /// connections opened per call (1).
    reconnects: f64,
    /// Connections the upstream (the TLS terminator) accepted, per 1,000 measured calls.
    upstream_conns: Option<f64>,
}

impl Run {
    /// A path skipped by `--warden-only`.
    const SKIPPED: Run = Run {
        throughput: f64::NAN,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        cpu_us: None,
        user_share: None,
        reconnects: f64::NAN,
        upstream_conns: None,
    };
}

async fn all_calls(
    sessions: &[Arc<Session>],
    fresh: Option<&Https>,
    n: usize,
) -> Result<Vec<Call>, String> {
    let deadline = Instant::now() + DEADLINE;
    let tasks: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(c, s)| tokio::spawn(calls(s.clone(), fresh.cloned(), c, n, deadline)))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// What a row measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Each client's one keep-alive connection and MCP session, calls back to back.
    Calls,
    /// A new connection, with a full TLS handshake, for every call.
    Connections,
}

/// One path through one proxy, measured once a round.
struct Row {
    /// In the tables.
    label: String,
    /// Unique across a run: for stderr and `--latencies`.
    name: String,
    /// The MCP endpoint the clients call.
    url: String,
    /// The process whose CPU is counted; `None` for the direct path.
    pid: Option<u32>,
    /// The clients' TLS, for an https `url`.
    tls: Option<Arc<rustls::ClientConfig>>,
    load: Load,
    /// The status page of an upstream whose accepted connections are counted.
    upstream_status: Option<u16>,
    /// The tool client `c` calls: `tools[c % tools.len()]`.
    tools: Vec<Arc<str>>,
    /// `params._meta` of every call (JSON), if any: a trace context, with `--traces`.
    meta: Option<Arc<str>>,
}

/// One round of one path: its figures, its calls as made, and when the measured ones began.
async fn measure(row: &Row, o: &Opts) -> Result<(Run, Vec<Call>, Instant), String> {
    let url: Arc<str> = row.url.as_str().into();
    let mut sessions = Vec::new();
    for c in 0..o.clients {
        let tool = row.tools[c % row.tools.len()].clone();
        sessions.push(Arc::new(
            open(url.clone(), row.tls.as_ref(), tool, row.meta.clone()).await?,
        ));
    }
    // A client that keeps no connection: each call opens (and handshakes) its own.
    let fresh = match (row.load, &row.tls) {
        (Load::Calls, _) => None,
        (Load::Connections, Some(config)) => Some(https_client(config.clone(), false)),
        (Load::Connections, None) => return Err("a new connection per call is over TLS".into()),
    };
    let (warmup, n) = match row.load {
        Load::Calls => (o.warmup, o.calls),
        Load::Connections => ((o.handshakes / 10).max(1), o.handshakes),
    };
    let conns0 = CONNECTIONS.load(Ordering::Relaxed);
    all_calls(&sessions, fresh.as_ref(), warmup).await?;
    // Over the measured calls only: a pool grows to the clients' number in the warm-up.
    let up0 = row.upstream_status.map(accepted).transpose()?;
    let cpu0 = row.pid.map(cpu_ns).transpose()?;
    let started = Instant::now();
    let made = all_calls(&sessions, fresh.as_ref(), n).await?;
    let elapsed = started.elapsed();
    let cpu1 = row.pid.map(cpu_ns).transpose()?;
    let up1 = row.upstream_status.map(accepted).transpose()?;
    let conns = CONNECTIONS.load(Ordering::Relaxed) - conns0;
    // Sessions left open piled up in the upstream over a run and slowed every path a
    // little more each round.
    for s in &sessions {
        s.client.close(&s.url, &s.sid).await?;
    }
    let all = (o.clients * (warmup + n)) as f64;
    let mut lat: Vec<Duration> = made.iter().map(|c| c.took).collect();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let run = Run {
        throughput: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        cpu_us: match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some(b.ns.saturating_sub(a.ns) as f64 / 1e3 / lat.len() as f64),
            _ => None,
        },
        user_share: match (cpu0, cpu1) {
            (Some(a), Some(b)) => {
                let user = b.user_ticks.saturating_sub(a.user_ticks) as f64;
                let system = b.system_ticks.saturating_sub(a.system_ticks) as f64;
                (user + system > 0.0).then(|| user / (user + system))
            }
            _ => None,
        },
        reconnects: match row.load {
            Load::Calls => conns as f64 * 1e3 / all,
            Load::Connections => conns as f64 / all,
        },
        // The second status request is one of the connections counted.
        upstream_conns: match (up0, up1) {
            (Some(a), Some(b)) => {
                Some(b.saturating_sub(a).saturating_sub(1) as f64 * 1e3 / (o.clients * n) as f64)
            }
            _ => None,
        },
    };
    Ok((run, made, started))
}

/// The median round by throughput (its latencies and CPU with it), so one row is one
/// real measurement, not a blend.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    runs[runs.len() / 2]
}

/// A table of rows against nginx's.
struct Table {
    /// A heading (with `--tls`: which of the three it is).
    title: Option<String>,
    /// Indices into the rows; `yard` is nginx's.
    rows: Vec<usize>,
    yard: usize,
    load: Load,
    /// Checked against issue 27's targets.
    targets: bool,
    /// What the yardstick is called in the headers: `nginx`.
    vs: &'static str,
}

/// The processes of a run (kept alive until it ends), what to measure, and what the
/// output says first.
struct Setup {
    rows: Vec<Row>,
    tables: Vec<Table>,
    _procs: Vec<Proc>,
    header: String,
    /// With `--aggregate`: what the memory figures are taken of, after the rounds.
    memory: Option<aggregate::Memory>,
}

/// Where the binaries and scratch files are.
struct Env {
    repo: PathBuf,
    warden: PathBuf,
    nginx: PathBuf,
    haproxy: PathBuf,
    dir: PathBuf,
    /// `axum_mcp`'s port and pid.
    up: u16,
    up_pid: u32,
}

fn main() -> Result<(), String> {
    let o = opts()?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bins = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let (warden_bin, axum_mcp) = (bins.join("warden"), bins.join("axum_mcp"));
    for b in [&warden_bin, &axum_mcp] {
        if !b.exists() {
            return Err(format!(
                "{} missing: cargo build --release -p warden-cli -p warden-e2e",
                b.display()
            ));
        }
    }
    let (nginx_bin, haproxy_bin) = proxies()?;
    let dir = std::env::temp_dir().join(format!("warden-proxy-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    let up = free_port();
    let upstream = spawn(
        Command::new(&axum_mcp)
            .args(["--no-policy", "--listen", &format!("127.0.0.1:{up}")])
            .env("RUST_LOG", "error"),
        up,
        true,
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let env = Env {
        repo,
        warden: warden_bin,
        nginx: nginx_bin,
        haproxy: haproxy_bin,
        dir: dir.clone(),
        up,
        up_pid: upstream.0.id(),
    };
    let mut collector = None;
    let setup = if o.tls {
        tls_setup(&o, &env, &rt)?
    } else if o.aggregate {
        aggregate::setup(&o, &env)?
    } else if o.traces {
        let (setup, c) = traces::setup(&o, &env)?;
        collector = Some(c);
        setup
    } else {
        plain_setup(&o, &env)?
    };
    let rows = &setup.rows;
    println!("{}", setup.header);

    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); rows.len()];
    // Each round's latencies, per path, as a histogram: enough for the p99 of all rounds,
    // and cheap to resample rounds with.
    let mut hists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); rows.len()];
    let mut csv = match &o.latencies {
        Some(f) => {
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(f).map_err(|e| format!("{}: {e}", f.display()))?,
            );
            writeln!(w, "path,round,client,start_us,latency_us").map_err(|e| e.to_string())?;
            Some(w)
        }
        None => None,
    };
    for round in 0..o.rounds {
        eprintln!("round {}/{}", round + 1, o.rounds);
        // A path measured right after another (or always last) runs on a machine in another
        // state, which moved a build's CPU per call by a few percent when the order was
        // fixed. So even rounds go through the paths forwards and odd ones backwards, each
        // starting one path later than the last round that went the same way: over 2 × the
        // number of paths rounds, every path is in every place twice and follows each of its
        // neighbours as often as it precedes it.
        let n = rows.len();
        for k in 0..n {
            let shift = round / 2;
            let i = if round % 2 == 0 {
                (k + shift) % n
            } else {
                (2 * n - 1 - k - shift % n) % n
            };
            let row = &rows[i];
            let name = &row.name;
            let skipped =
                (o.warden_only && !name.starts_with("warden") && !name.starts_with("nginx"))
                    || o.only
                        .as_ref()
                        .is_some_and(|parts| !parts.split('|').any(|part| name.contains(part)));
            if skipped {
                runs[i].push(Run::SKIPPED);
                continue;
            }
            let (run, made, started) = rt.block_on(measure(row, &o))?;
            hists[i].push(histogram(made.iter().map(|c| c.took)));
            if let Some(out) = &mut csv {
                for c in made {
                    writeln!(
                        out,
                        "{name},{round},{},{},{}",
                        c.client,
                        c.started.duration_since(started).as_micros(),
                        c.took.as_micros()
                    )
                    .map_err(|e| format!("writing latencies: {e}"))?;
                }
            }
            let (unit, churn) = match row.load {
                Load::Calls => (
                    "call",
                    format!("{:.1} new connections per 1k calls", run.reconnects),
                ),
                Load::Connections => (
                    "connection",
                    format!("{:.2} connections per call", run.reconnects),
                ),
            };
            eprintln!(
                "  {name}: {:.0} {unit}s/s, p99 {:.2} ms, {}, {churn}{}",
                run.throughput,
                run.p99.as_secs_f64() * 1e3,
                run.cpu_us
                    .map_or("—".to_owned(), |c| format!("{c:.1} µs CPU per {unit}")),
                run.upstream_conns.map_or(String::new(), |u| format!(
                    ", {u:.1} upstream connections per 1k calls"
                )),
            );
            runs[i].push(run);
        }
    }
    if let Some(mut w) = csv {
        w.flush().map_err(|e| format!("writing latencies: {e}"))?;
    }
    let medians: Vec<Run> = runs.iter().cloned().map(median).collect();
    for t in &setup.tables {
        if let Some(title) = &t.title {
            println!("{title}\n");
        }
        print!("{}", table(t, rows, &medians));
        if o.rounds > 1 {
            println!("{}", paired_ratios(t, rows, &runs, &hists));
        } else if t.title.is_some() {
            println!();
        }
    }
    if o.tls {
        println!("{}", targets(&setup.tables, rows, &runs));
    }
    if o.aggregate {
        println!("{}", aggregate::targets(&setup.tables, rows, &runs, &hists));
    }
    if let Some(c) = &collector {
        println!("{}", traces::targets(rows, &runs, c.spans()));
    }
    if let Some(m) = &setup.memory {
        println!("{}", rt.block_on(aggregate::memory(m, &o, &env))?);
    }
    drop(setup);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Does this build of warden know `flag` (`warden serve --help`)?
fn knows(bin: &Path, flag: &str) -> bool {
    Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
}

/// The plain rows: direct, nginx, haproxy, warden (and the baseline build).
fn plain_setup(o: &Opts, env: &Env) -> Result<Setup, String> {
    let up = env.up;
    let upstream = format!("http://127.0.0.1:{up}/mcp");
    let (ng, ng_port) = nginx(&env.nginx, &env.dir, up, o.workers)?;
    let (ha, ha_port) = haproxy(&env.haproxy, &env.dir, up, o.workers)?;
    let (wd, wd_port) = warden(
        &env.warden,
        &env.repo,
        &upstream,
        Some(o.workers),
        &o.warden_args,
    )?;
    let mut paths: Vec<(&str, u16, Option<u32>)> = vec![
        ("direct", up, None),
        ("nginx", ng_port, Some(ng.0.id())),
        ("haproxy", ha_port, Some(ha.0.id())),
        ("warden serve", wd_port, Some(wd.0.id())),
    ];
    let mut procs = vec![ng, ha, wd];
    if let Some(bin) = &o.baseline {
        // The same workers, if the build knows the flag.
        let workers = knows(bin, "--workers").then_some(o.workers);
        let (p, port) = warden(bin, &env.repo, &upstream, workers, &[])?;
        paths.push(("warden serve (baseline build)", port, Some(p.0.id())));
        procs.push(p);
    }
    let rows: Vec<Row> = paths
        .into_iter()
        .map(|(name, port, pid)| Row {
            label: name.to_owned(),
            name: name.to_owned(),
            url: format!("http://127.0.0.1:{port}/mcp"),
            pid,
            tls: None,
            load: Load::Calls,
            upstream_status: None,
            tools: vec![ECHO.into()],
            meta: None,
        })
        .collect();
    let header = format!(
        "{} clients (one keep-alive connection and MCP session each) x {} tools/call, after {} warm-up calls each; {} rounds, median round shown\n{}; {}; warden serve {}\n",
        o.clients,
        o.calls,
        o.warmup,
        o.rounds,
        version(&env.nginx, "-v"),
        version(&env.haproxy, "-v"),
        warden_args(o),
    );
    Ok(Setup {
        tables: vec![Table {
            title: None,
            rows: (0..rows.len()).collect(),
            yard: 1,
            load: Load::Calls,
            targets: false,
            vs: "nginx",
        }],
        rows,
        _procs: procs,
        header,
        memory: None,
    })
}

fn warden_args(o: &Opts) -> String {
    if o.warden_args.is_empty() {
        "(defaults)".to_owned()
    } else {
        o.warden_args.join(" ")
    }
}

/// The line of `nginx -V` that names its OpenSSL.
fn openssl(nginx: &Path) -> String {
    Command::new(nginx)
        .arg("-V")
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| l.contains("OpenSSL"))
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

/// One build of warden three times over: without TLS, with TLS clients, with the https
/// upstream (each process and its port).
struct Wardens {
    label: &'static str,
    plain: (Proc, u16),
    front: (Proc, u16),
    back: (Proc, u16),
}

/// With `--tls`: a test CA and two server certificates, the TLS terminator in front of the
/// upstream, nginx and warden with TLS clients, with the https upstream and without TLS,
/// and the rows of the four tables.
fn tls_setup(o: &Opts, env: &Env, rt: &tokio::runtime::Runtime) -> Result<Setup, String> {
    let (dir, up) = (&env.dir, env.up);
    let ca = pki::Ca::new(dir, "bench");
    let ca_pem = ca.cert_path("bench");
    // What the clients see (both proxies the same), and what the proxies see upstream.
    let front = ca.issue("front", pki::Leaf::Server);
    let back = ca.issue("back", pki::Leaf::Server);
    let path = |p: &Path| p.display().to_string();

    let status = free_port();
    let (terminator, tport) = nginx_tls(
        &env.nginx,
        dir,
        &NginxTls {
            name: "terminator",
            upstream_port: up,
            scheme: "http",
            host: format!("127.0.0.1:{up}"),
            ssl: true,
            server: format!(
                "    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.3;\n    ssl_ecdh_curve X25519;\n    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;\n    keepalive_requests 100000;\n    keepalive_timeout 300s;",
                path(&back.cert),
                path(&back.key)
            ),
            location: String::new(),
            http: format!(
                "  server {{\n    listen 127.0.0.1:{status};\n    location = /status {{ stub_status; }}\n  }}"
            ),
            workers: o.workers,
        },
    )?;
    let (ng_front, ng_front_port) = nginx_tls(
        &env.nginx,
        dir,
        &NginxTls {
            name: "front",
            upstream_port: up,
            scheme: "http",
            host: format!("127.0.0.1:{up}"),
            ssl: true,
            server: format!(
                "    ssl_certificate {};\n    ssl_certificate_key {};\n    ssl_protocols TLSv1.2 TLSv1.3;",
                path(&front.cert),
                path(&front.key)
            ),
            location: String::new(),
            http: String::new(),
            workers: o.workers,
        },
    )?;
    let (ng_back, ng_back_port) = nginx_tls(
        &env.nginx,
        dir,
        &NginxTls {
            name: "back",
            upstream_port: tport,
            scheme: "https",
            host: format!("localhost:{tport}"),
            ssl: false,
            server: String::new(),
            location: format!(
                "      proxy_ssl_protocols TLSv1.2 TLSv1.3;\n      proxy_ssl_trusted_certificate {};\n      proxy_ssl_verify on;\n      proxy_ssl_name localhost;\n      proxy_ssl_server_name on;\n      proxy_ssl_session_reuse on;",
                path(&ca_pem)
            ),
            http: String::new(),
            workers: o.workers,
        },
    )?;
    let plain_upstream = format!("http://127.0.0.1:{up}/mcp");
    let tls_upstream = format!("https://localhost:{tport}/mcp");
    let front_args = |extra: &[String]| -> Vec<String> {
        let mut a = vec![
            "--tls-cert".to_owned(),
            path(&front.cert),
            "--tls-key".to_owned(),
            path(&front.key),
        ];
        a.extend_from_slice(extra);
        a
    };
    let back_args = |extra: &[String]| -> Vec<String> {
        let mut a = vec!["--upstream-ca".to_owned(), path(&ca_pem)];
        a.extend_from_slice(extra);
        a
    };
    let mut wardens = vec![Wardens {
        label: "warden serve",
        plain: warden(
            &env.warden,
            &env.repo,
            &plain_upstream,
            Some(o.workers),
            &o.warden_args,
        )?,
        front: warden(
            &env.warden,
            &env.repo,
            &plain_upstream,
            Some(o.workers),
            &front_args(&o.warden_args),
        )?,
        back: warden(
            &env.warden,
            &env.repo,
            &tls_upstream,
            Some(o.workers),
            &back_args(&o.warden_args),
        )?,
    }];
    if let Some(bin) = &o.baseline {
        if !knows(bin, "--tls-cert") {
            return Err(format!(
                "{}: this build has no --tls-cert, which --tls needs",
                bin.display()
            ));
        }
        let workers = knows(bin, "--workers").then_some(o.workers);
        wardens.push(Wardens {
            label: "warden serve (baseline build)",
            plain: warden(bin, &env.repo, &plain_upstream, workers, &[])?,
            front: warden(bin, &env.repo, &plain_upstream, workers, &front_args(&[]))?,
            back: warden(bin, &env.repo, &tls_upstream, workers, &back_args(&[]))?,
        });
    }
    // And nginx without TLS, for reference.
    let (ng_plain, ng_plain_port) = nginx(&env.nginx, dir, up, o.workers)?;

    let keep = tls_client_config(&ca_pem, true)?;
    let fresh = tls_client_config(&ca_pem, false)?;
    let https = |port: u16| format!("https://127.0.0.1:{port}/mcp");
    let http = |port: u16| format!("http://127.0.0.1:{port}/mcp");
    // What the clients negotiate with each, and what each picks from rustls's own offer.
    let defaults = tls_default_config(&ca_pem)?;
    let probe = |port: u16, config: &Arc<rustls::ClientConfig>| {
        rt.block_on(tls_probe(&format!("127.0.0.1:{port}"), config.clone()))
    };
    let mut negotiated = format!(
        "negotiated with the clients: nginx {}; warden serve {}\nfrom rustls's default offer (X25519MLKEM768 first): nginx {}; warden serve {}\nthe TLS terminator (both proxies' https upstream) from rustls's default offer: {}",
        probe(ng_front_port, &keep)?,
        probe(wardens[0].front.1, &keep)?,
        probe(ng_front_port, &defaults)?,
        probe(wardens[0].front.1, &defaults)?,
        probe(tport, &defaults)?,
    );
    if let Some(w) = wardens.get(1) {
        negotiated.push_str(&format!(
            "\nwarden serve (baseline build) with the clients: {}",
            probe(w.front.1, &keep)?
        ));
    }

    let mut rows = Vec::new();
    let mut tables = Vec::new();
    let mut group = |title: &str,
                     load: Load,
                     what: &str,
                     nginx: (u32, String),
                     tls: Option<&Arc<rustls::ClientConfig>>,
                     status: Option<u16>,
                     targets: bool,
                     wardens: Vec<(&str, u32, String)>| {
        let first = rows.len();
        for (label, pid, url) in std::iter::once(("nginx", nginx.0, nginx.1)).chain(wardens) {
            rows.push(Row {
                label: label.to_owned(),
                name: format!("{label} ({what})"),
                url,
                pid: Some(pid),
                tls: tls.cloned(),
                load,
                upstream_status: status,
                tools: vec![ECHO.into()],
                meta: None,
            });
        }
        tables.push(Table {
            title: Some(title.to_owned()),
            rows: (first..rows.len()).collect(),
            yard: first,
            load,
            targets,
            vs: "nginx",
        });
    };
    group(
        "**0. Plain clients, plain upstream** (no TLS, for reference)",
        Load::Calls,
        "no TLS",
        (ng_plain.0.id(), http(ng_plain_port)),
        None,
        None,
        false,
        wardens
            .iter()
            .map(|w| (w.label, w.plain.0.0.id(), http(w.plain.1)))
            .collect(),
    );
    group(
        "**1. TLS clients, plain upstream** (keep-alive)",
        Load::Calls,
        "TLS clients",
        (ng_front.0.id(), https(ng_front_port)),
        Some(&keep),
        None,
        true,
        wardens
            .iter()
            .map(|w| (w.label, w.front.0.0.id(), https(w.front.1)))
            .collect(),
    );
    group(
        "**2. Plain clients, https upstream** (pooled TLS connections to the terminator)",
        Load::Calls,
        "https upstream",
        (ng_back.0.id(), http(ng_back_port)),
        None,
        Some(status),
        true,
        wardens
            .iter()
            .map(|w| (w.label, w.back.0.0.id(), http(w.back.1)))
            .collect(),
    );
    group(
        "**3. A new TLS connection per call** (full handshake, then one `tools/call`)",
        Load::Connections,
        "TLS handshake per call",
        (ng_front.0.id(), https(ng_front_port)),
        Some(&fresh),
        None,
        true,
        wardens
            .iter()
            .map(|w| (w.label, w.front.0.0.id(), https(w.front.1)))
            .collect(),
    );

    let header = format!(
        "{} clients (one keep-alive connection and MCP session each) x {} tools/call, after {} warm-up calls each; for 3, {} clients x {} calls on a new TLS connection each, after {}; {} rounds, median round shown\n{} ({}); warden serve {}\n{negotiated}\n",
        o.clients,
        o.calls,
        o.warmup,
        o.clients,
        o.handshakes,
        (o.handshakes / 10).max(1),
        o.rounds,
        version(&env.nginx, "-v"),
        openssl(&env.nginx),
        warden_args(o),
    );
    let mut procs = vec![terminator, ng_front, ng_back, ng_plain];
    for w in wardens {
        procs.extend([w.plain.0, w.front.0, w.back.0]);
    }
    Ok(Setup {
        rows,
        tables,
        _procs: procs,
        header,
        memory: None,
    })
}

/// A table's median rounds against nginx's (the table's yardstick).
fn table(t: &Table, rows: &[Row], medians: &[Run]) -> String {
    let yard = medians[t.yard];
    let (unit, churn) = match t.load {
        Load::Calls => ("call", "new connections per 1k calls"),
        Load::Connections => ("connection", "connections per call"),
    };
    let upstream = t.rows.iter().any(|&i| rows[i].upstream_status.is_some());
    let vs = t.vs;
    let mut out = format!(
        "| path | {unit}s/s | p50 | p99 | CPU per {unit} (proxy process) | {unit}s/s vs {vs} | CPU vs {vs} | p99 − {vs}'s | {churn} |{}\n|---|---:|---:|---:|---:|---:|---:|---:|---:|{}\n",
        if upstream {
            " upstream connections per 1k calls |"
        } else {
            ""
        },
        if upstream { "---:|" } else { "" },
    );
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    for &i in &t.rows {
        let (row, r) = (&rows[i], medians[i]);
        let cpu = match (r.cpu_us, r.user_share) {
            (Some(c), Some(u)) => format!("{c:.1} µs ({:.0}% user)", u * 100.0),
            (Some(c), None) => format!("{c:.1} µs"),
            _ => "—".to_owned(),
        };
        let vs_cpu = match (r.cpu_us, yard.cpu_us) {
            (Some(c), Some(n)) if row.pid.is_some() => format!("{:.2}×", c / n),
            _ => "—".to_owned(),
        };
        let dp99 = if row.pid.is_none() {
            "—".to_owned()
        } else {
            let d = r.p99.as_secs_f64() - yard.p99.as_secs_f64();
            format!("{:+.2} ms", d * 1e3)
        };
        let churn = match t.load {
            Load::Calls => format!("{:.1}", r.reconnects),
            Load::Connections => format!("{:.2}", r.reconnects),
        };
        out.push_str(&format!(
            "| {} | {:.0} | {} | {} | {cpu} | {:.2}× | {vs_cpu} | {dp99} | {churn} |{}\n",
            row.label,
            r.throughput,
            ms(r.p50),
            ms(r.p99),
            r.throughput / yard.throughput,
            match (upstream, r.upstream_conns) {
                (false, _) => String::new(),
                (true, Some(u)) => format!(" {u:.1} |"),
                (true, None) => " — |".to_owned(),
            },
        ));
    }
    out
}

/// A row's ratios to nginx's within each round: CPU per call, and calls per second.
fn ratios(row: &[Run], yard: &[Run]) -> (Vec<f64>, Vec<f64>) {
    let pairs = row.iter().zip(yard);
    let cpu = pairs
        .clone()
        .filter_map(|(r, n)| Some(r.cpu_us? / n.cpu_us?))
        .collect();
    let calls = pairs.map(|(r, n)| r.throughput / n.throughput).collect();
    (cpu, calls)
}

/// The median of the finite values.
fn median_of(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Each path against nginx within the same round, over all rounds: the median (and range)
/// of those ratios. A round measures every path within seconds, so a ratio taken inside it
/// shares the machine's state; the medians of the table above do not.
fn paired_ratios(t: &Table, rows: &[Row], runs: &[Vec<Run>], hists: &[Vec<Vec<u32>>]) -> String {
    let unit = match t.load {
        Load::Calls => "call",
        Load::Connections => "connection",
    };
    let vs = t.vs;
    let mut out = format!(
        "\nAgainst {vs} within each round (median, lowest–highest over the rounds), and p99 over every {unit} of every round:\n\n| path | CPU per {unit} vs {vs} | {unit}s/s vs {vs} | p99 − {vs}'s | p99 of all rounds − {vs}'s (90 % interval) |\n|---|---:|---:|---:|---:|\n",
    );
    // The median with its unit, then the range: "1.10× (0.98–1.21)", "+0.08 ms (−0.10–+0.30)".
    let spread = |mut v: Vec<f64>, unit: &str, sign: bool| {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return "—".to_owned();
        }
        v.sort_by(f64::total_cmp);
        let f = |x: f64| {
            if sign {
                format!("{x:+.2}")
            } else {
                format!("{x:.2}")
            }
        };
        format!(
            "{}{unit} ({}–{})",
            f(v[v.len() / 2]),
            f(v[0]),
            f(v[v.len() - 1])
        )
    };
    let summary = |v: Vec<f64>| spread(v, "×", false);
    let ms = |v: Vec<f64>| spread(v, " ms", true);
    let y = t.yard;
    for &i in t.rows.iter().filter(|&&i| i != y && rows[i].pid.is_some()) {
        let (cpu, calls) = ratios(&runs[i], &runs[y]);
        // A path skipped by --warden-only has no latencies (and a NaN throughput).
        let p99 = runs[i]
            .iter()
            .zip(&runs[y])
            .filter(|(r, _)| r.throughput.is_finite())
            .map(|(r, n)| (r.p99.as_secs_f64() - n.p99.as_secs_f64()) * 1e3)
            .collect();
        // A path skipped by --warden-only has no rounds.
        let all = match (hists[i].len(), hists[y].len()) {
            (r, n) if r > 0 && r == n => {
                let every: Vec<usize> = (0..r).collect();
                let d = p99_of(&hists[i], &every) - p99_of(&hists[y], &every);
                let d = format!("{d:+.2} ms");
                match p99_interval(&hists[i], &hists[y]) {
                    Some((lo, hi)) => format!("{d} ({lo:+.2}–{hi:+.2})"),
                    None => d,
                }
            }
            _ => "—".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {all} |\n",
            rows[i].label,
            summary(cpu),
            summary(calls),
            ms(p99)
        ));
    }
    out
}

/// Issue 27's targets, against the median of the ratios within rounds.
fn targets(tables: &[Table], rows: &[Row], runs: &[Vec<Run>]) -> String {
    let mut out = String::from(
        "Targets (issue 27), from the median ratio to nginx within a round: CPU per call ≤ 1.10× and calls/s ≥ 0.95× (1 and 2), new TLS connections/s ≥ 0.90× (3)\n",
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let fmt = |x: Option<f64>| x.map_or("—".to_owned(), |x| format!("{x:.2}×"));
    for t in tables.iter().filter(|t| t.targets) {
        for &i in t.rows.iter().filter(|&&i| i != t.yard) {
            let (cpu, calls) = ratios(&runs[i], &runs[t.yard]);
            let (cpu, calls) = (median_of(cpu), median_of(calls));
            let line = match t.load {
                Load::Calls => format!(
                    "- {}: CPU per call {} ({}), calls/s {} ({})\n",
                    rows[i].name,
                    fmt(cpu),
                    verdict(cpu.is_some_and(|c| c <= 1.10)),
                    fmt(calls),
                    verdict(calls.is_some_and(|c| c >= 0.95)),
                ),
                Load::Connections => format!(
                    "- {}: connections/s {} ({}); CPU per connection {} (no target)\n",
                    rows[i].name,
                    fmt(calls),
                    verdict(calls.is_some_and(|c| c >= 0.90)),
                    fmt(cpu),
                ),
            };
            out.push_str(&line);
        }
    }
    out
}

/// Latencies in 10 µs buckets, to 200 ms (slower calls count in the last): a round's
/// latencies in a form that is cheap to add up many times over.
const BUCKET_US: u64 = 10;
const BUCKETS: usize = 20_000;

fn histogram(lat: impl IntoIterator<Item = Duration>) -> Vec<u32> {
    let mut h = vec![0u32; BUCKETS];
    for l in lat {
        let i = (l.as_micros() as u64 / BUCKET_US) as usize;
        h[i.min(BUCKETS - 1)] += 1;
    }
    h
}

/// The p99 in ms of one path's rounds `picks` (a round may be picked more than once), to
/// the middle of its bucket.
fn p99_of(rounds: &[Vec<u32>], picks: &[usize]) -> f64 {
    let mut sum = vec![0u64; BUCKETS];
    for &r in picks {
        for (s, c) in sum.iter_mut().zip(&rounds[r]) {
            *s += u64::from(*c);
        }
    }
    let rank = sum.iter().sum::<u64>() * 99 / 100;
    let mut seen = 0;
    for (i, c) in sum.iter().enumerate() {
        seen += c;
        if seen > rank {
            return (i as u64 * BUCKET_US + BUCKET_US / 2) as f64 / 1e3;
        }
    }
    f64::NAN
}

/// A 90 % interval for the difference between a path's p99 over all rounds and nginx's,
/// from resampling whole rounds (a bootstrap): how much the figure owes to which rounds
/// happened to be slow. A round's two paths are kept together, as they shared the
/// machine's state. `None` below three rounds.
fn p99_interval(path: &[Vec<u32>], nginx: &[Vec<u32>]) -> Option<(f64, f64)> {
    let r = path.len();
    if r < 3 || nginx.len() != r {
        return None;
    }
    // xorshift64, fixed seed: the same latencies give the same interval.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut diffs: Vec<f64> = (0..1_000)
        .map(|_| {
            let picks: Vec<usize> = (0..r).map(|_| (next() % r as u64) as usize).collect();
            p99_of(path, &picks) - p99_of(nginx, &picks)
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    Some((diffs[50], diffs[949]))
}
