//! Side by side: `warden serve` against nginx and haproxy as plain reverse proxies in front
//! of the same MCP server, under the same load, in one run.
//!
//! ```sh
//! cargo build --release -p warden-cli -p warden-e2e
//! target/release/proxy_compare                 # prints the table for docs/PERFORMANCE.md
//! target/release/proxy_compare --workers 2    # nginx, haproxy and warden with 2 each
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

#[path = "common.rs"]
mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{CONNECTIONS, Http, Proc, close_session, free_port, open_session, post, spawn};

const TOKEN: &str = "bench-token-0123456789";
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
            "--warden-only" => o.warden_only = true,
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
                    "proxy_compare [--clients N] [--calls N per client] [--warmup N] [--rounds N] [--workers N] [--warden-only] [--baseline OLD-WARDEN-BINARY] [--latencies CSV-FILE] [-- WARDEN SERVE ARGS]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
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
    upstream_port: u16,
    // `None` for a build from before `--workers` existed.
    workers: Option<usize>,
    extra: &[String],
) -> Result<(Proc, u16), String> {
    let port = free_port();
    let p = spawn(
        Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--upstream",
                &format!("http://127.0.0.1:{upstream_port}/mcp"),
            ])
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

/// One MCP session on its own connection.
struct Session {
    client: Http,
    url: Arc<str>,
    sid: String,
}

async fn open(url: Arc<str>) -> Result<Session, String> {
    let (client, sid) = open_session(&url, TOKEN, "load").await?;
    Ok(Session { client, url, sid })
}

/// One measured call: when it started and how long it took.
#[derive(Clone, Copy)]
struct Call {
    client: usize,
    started: Instant,
    took: Duration,
}

async fn calls(
    s: Arc<Session>,
    client: usize,
    n: usize,
    deadline: Instant,
) -> Result<Vec<Call>, String> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        if Instant::now() > deadline {
            return Err("deadline passed".into());
        }
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hello"}}}}}}"#,
            i + 2
        );
        let started = Instant::now();
        let (_, answer) = post(&s.client, &s.url, Some(&s.sid), Some(TOKEN), body).await?;
        lat.push(Call {
            client,
            started,
            took: started.elapsed(),
        });
        if !answer.windows(5).any(|w| w == b"hello") {
            return Err(format!(
                "unexpected answer: {}",
                String::from_utf8_lossy(&answer)
            ));
        }
    }
    Ok(lat)
}

#[derive(Clone, Copy)]
struct Run {
    throughput: f64,
    p50: Duration,
    p99: Duration,
    /// CPU of the proxy process per call; `None` for the direct path.
    cpu_us: Option<f64>,
    /// The share of that CPU spent in user space (the rest: the kernel, for the sockets).
    user_share: Option<f64>,
    /// Connections the clients opened beyond their first, per 1,000 calls (warm-up and
    /// measured): each should keep its one.
    reconnects: f64,
}

async fn all_calls(sessions: &[Arc<Session>], n: usize) -> Result<Vec<Call>, String> {
    let deadline = Instant::now() + DEADLINE;
    let tasks: Vec<_> = sessions
        .iter()
        .enumerate()
        .map(|(c, s)| tokio::spawn(calls(s.clone(), c, n, deadline)))
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(all)
}

/// One round of one path: its figures, its calls as made, and when the measured ones began.
async fn measure(
    url: &str,
    pid: Option<u32>,
    o: &Opts,
) -> Result<(Run, Vec<Call>, Instant), String> {
    let url: Arc<str> = url.into();
    let mut sessions = Vec::new();
    for _ in 0..o.clients {
        sessions.push(Arc::new(open(url.clone()).await?));
    }
    let conns0 = CONNECTIONS.load(Ordering::Relaxed);
    all_calls(&sessions, o.warmup).await?;
    let cpu0 = pid.map(cpu_ns).transpose()?;
    let started = Instant::now();
    let made = all_calls(&sessions, o.calls).await?;
    let elapsed = started.elapsed();
    let cpu1 = pid.map(cpu_ns).transpose()?;
    let conns = CONNECTIONS.load(Ordering::Relaxed) - conns0;
    // Sessions left open piled up in the upstream over a run and slowed every path a
    // little more each round.
    for s in &sessions {
        close_session(&s.client, &s.url, &s.sid, TOKEN).await?;
    }
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
        reconnects: conns as f64 * 1e3 / (o.clients * (o.warmup + o.calls)) as f64,
    };
    Ok((run, made, started))
}

/// The median round by throughput (its latencies and CPU with it), so one row is one
/// real measurement, not a blend.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    runs[runs.len() / 2]
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
    let _upstream = spawn(
        Command::new(&axum_mcp)
            .args(["--no-policy", "--listen", &format!("127.0.0.1:{up}")])
            .env("RUST_LOG", "error"),
        up,
        true,
    )?;
    let (ng, ng_port) = nginx(&nginx_bin, &dir, up, o.workers)?;
    let (ha, ha_port) = haproxy(&haproxy_bin, &dir, up, o.workers)?;
    let (wd, wd_port) = warden(&warden_bin, &repo, up, Some(o.workers), &o.warden_args)?;
    let mut paths: Vec<(&str, u16, Option<u32>)> = vec![
        ("direct", up, None),
        ("nginx", ng_port, Some(ng.0.id())),
        ("haproxy", ha_port, Some(ha.0.id())),
        ("warden serve", wd_port, Some(wd.0.id())),
    ];
    let _baseline = match &o.baseline {
        Some(bin) => {
            // The same workers, if the build knows the flag.
            let knows_workers = Command::new(bin)
                .args(["serve", "--help"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--workers"));
            let (p, port) = warden(bin, &repo, up, knows_workers.then_some(o.workers), &[])?;
            paths.push(("warden serve (baseline build)", port, Some(p.0.id())));
            Some(p)
        }
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    println!(
        "{} clients (one keep-alive connection and MCP session each) x {} tools/call, after {} warm-up calls each; {} rounds, median round shown",
        o.clients, o.calls, o.warmup, o.rounds
    );
    println!(
        "{}; {}; warden serve {}\n",
        version(&nginx_bin, "-v"),
        version(&haproxy_bin, "-v"),
        if o.warden_args.is_empty() {
            "(defaults)".to_owned()
        } else {
            o.warden_args.join(" ")
        }
    );
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); paths.len()];
    // Each round's latencies, per path, as a histogram: enough for the p99 of all rounds,
    // and cheap to resample rounds with.
    let mut hists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); paths.len()];
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
        let n = paths.len();
        for k in 0..n {
            let shift = round / 2;
            let i = if round % 2 == 0 {
                (k + shift) % n
            } else {
                (2 * n - 1 - k - shift % n) % n
            };
            let (name, port, pid) = &paths[i];
            if o.warden_only && !name.starts_with("warden") && *name != "nginx" {
                runs[i].push(Run {
                    throughput: f64::NAN,
                    p50: Duration::ZERO,
                    p99: Duration::ZERO,
                    cpu_us: None,
                    user_share: None,
                    reconnects: f64::NAN,
                });
                continue;
            }
            let url = format!("http://127.0.0.1:{port}/mcp");
            let (run, made, started) = rt.block_on(measure(&url, *pid, &o))?;
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
            eprintln!(
                "  {name}: {:.0} calls/s, p99 {:.2} ms, {}, {:.1} new connections per 1k calls",
                run.throughput,
                run.p99.as_secs_f64() * 1e3,
                run.cpu_us
                    .map_or("—".to_owned(), |c| format!("{c:.1} µs CPU per call")),
                run.reconnects
            );
            runs[i].push(run);
        }
    }
    if let Some(mut w) = csv {
        w.flush().map_err(|e| format!("writing latencies: {e}"))?;
    }
    let paired = paired_ratios(&paths, &runs, &hists);
    let runs: Vec<Run> = runs.into_iter().map(median).collect();
    let nginx_run = runs[1];
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1e3);
    println!(
        "| path | calls/s | p50 | p99 | CPU per call (proxy process) | calls/s vs nginx | CPU vs nginx | p99 − nginx's | new connections per 1k calls |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((name, _, _), r) in paths.iter().zip(&runs) {
        let cpu = match (r.cpu_us, r.user_share) {
            (Some(c), Some(u)) => format!("{c:.1} µs ({:.0}% user)", u * 100.0),
            (Some(c), None) => format!("{c:.1} µs"),
            _ => "—".to_owned(),
        };
        let vs_cpu = match (r.cpu_us, nginx_run.cpu_us) {
            (Some(c), Some(n)) if *name != "direct" => format!("{:.2}×", c / n),
            _ => "—".to_owned(),
        };
        let dp99 = if *name == "direct" {
            "—".to_owned()
        } else {
            let d = r.p99.as_secs_f64() - nginx_run.p99.as_secs_f64();
            format!("{:+.2} ms", d * 1e3)
        };
        println!(
            "| {name} | {:.0} | {} | {} | {cpu} | {:.2}× | {vs_cpu} | {dp99} | {:.1} |",
            r.throughput,
            ms(r.p50),
            ms(r.p99),
            r.throughput / nginx_run.throughput,
            r.reconnects,
        );
    }
    if o.rounds > 1 {
        println!("{paired}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Each path against nginx within the same round, over all rounds: the median (and range)
/// of those ratios. A round measures every path within seconds, so a ratio taken inside it
/// shares the machine's state; the medians of the table above do not.
fn paired_ratios(
    paths: &[(&str, u16, Option<u32>)],
    runs: &[Vec<Run>],
    hists: &[Vec<Vec<u32>>],
) -> String {
    let mut out = String::from(
        "\nAgainst nginx within each round (median, lowest–highest over the rounds), and p99 over every call of every round:\n\n| path | CPU per call vs nginx | calls/s vs nginx | p99 − nginx's | p99 of all rounds − nginx's (90 % interval) |\n|---|---:|---:|---:|---:|\n",
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
    for (i, (name, _, _)) in paths.iter().enumerate().skip(2) {
        let pairs = runs[i].iter().zip(&runs[1]);
        let cpu = pairs
            .clone()
            .filter_map(|(r, n)| Some(r.cpu_us? / n.cpu_us?))
            .collect();
        let calls = pairs
            .clone()
            .map(|(r, n)| r.throughput / n.throughput)
            .collect();
        // A path skipped by --warden-only has no latencies (and a NaN throughput).
        let p99 = pairs
            .filter(|(r, _)| r.throughput.is_finite())
            .map(|(r, n)| (r.p99.as_secs_f64() - n.p99.as_secs_f64()) * 1e3)
            .collect();
        // A path skipped by --warden-only has no rounds.
        let all = match (hists[i].len(), hists[1].len()) {
            (r, n) if r > 0 && r == n => {
                let every: Vec<usize> = (0..r).collect();
                let d = p99_of(&hists[i], &every) - p99_of(&hists[1], &every);
                let d = format!("{d:+.2} ms");
                match p99_interval(&hists[i], &hists[1]) {
                    Some((lo, hi)) => format!("{d} ({lo:+.2}–{hi:+.2})"),
                    None => d,
                }
            }
            _ => "—".to_owned(),
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {all} |\n",
            summary(cpu),
            summary(calls),
            ms(p99)
        ));
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
