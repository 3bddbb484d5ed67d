//! Shared by the end-to-end tests: starting processes on loopback, finding the test clients.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Running {
    pub child: Child,
    pub url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd`, which prints `listening on URL` on stdout once it accepts connections.
pub fn start(cmd: Command) -> Running {
    start_with_stderr(cmd, Stdio::inherit())
}

/// [`start`], with the process's stderr (its logs) sent to `stderr`.
pub fn start_with_stderr(mut cmd: Command, stderr: Stdio) -> Running {
    cmd.stdout(Stdio::piped()).stderr(stderr);
    let mut child = cmd.spawn().expect("start server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("listening on ") {
                let url = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('/');
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("server did not report its address within 60 s")
        });
    Running { child, url }
}

/// The Python interpreter with the `mcp` SDK: `WARDEN_E2E_PYTHON`, else the virtualenv that
/// `cargo xtask test` creates. Neither working fails the test.
pub fn python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("WARDEN_E2E_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([repo().join("target/e2e/venv/bin/python")])
        .collect();
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", "import mcp, httpx2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(p.clone());
        }
    }
    missing(&format!(
        "no Python with the `mcp` SDK (tried {candidates:?}); set WARDEN_E2E_PYTHON"
    ));
    None
}

/// A missing peer fails the test with what to install: a test that could not run must not
/// be reported as passed. `cargo xtask test` provisions every peer.
pub fn missing(why: &str) {
    panic!("{why} (`cargo xtask test` installs every test peer)");
}

/// Runs a Python scenario script and parses the JSON it prints.
pub fn run_python(python: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let started = Instant::now();
    let out = Command::new(python)
        .arg(repo().join("tests/python").join(script))
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} {args:?} failed after {:?}:\n{stdout}\n{stderr}",
        started.elapsed()
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{script}: {e}\n{stdout}\n{stderr}"))
}

/// Opens a loopback connection and sends one `connection: close` request on it.
pub fn send(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::net::TcpStream {
    use std::io::Write;
    let authority = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("");
    let mut s = std::net::TcpStream::connect(authority).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    s
}

/// One HTTP/1.1 request over a fresh loopback connection: (status, headers, body).
pub fn http(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::Read;
    let mut s = send(url, method, path, headers, body);
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    parse_response(&raw)
}

/// An HTTP/1 answer read whole: its status, its headers (names lowercased) and its body.
pub fn parse_response(raw: &str) -> (u16, Vec<(String, String)>, String) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// Each line of a POST's response as it arrives, with the time since the request was sent.
pub fn http_timed(
    url: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Vec<(Duration, String)> {
    let started = Instant::now();
    let s = send(url, "POST", path, headers, body);
    BufReader::new(s)
        .lines()
        .map_while(Result::ok)
        .map(|l| (started.elapsed(), l))
        .collect()
}

/// A loopback port nobody is listening on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits (bounded) until something accepts connections on `port`.
pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listening on {port} after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `warden` binary built beside this test (cargo test --workspace builds it).
pub fn warden() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe
        .parent()?
        .parent()?
        .join(format!("warden{}", std::env::consts::EXE_SUFFIX));
    if bin.exists() {
        Some(bin)
    } else {
        missing(&format!(
            "{} is not built; run `cargo test --workspace` (or `cargo build -p warden-cli` first)",
            bin.display()
        ));
        None
    }
}

/// server-everything's entry point: `WARDEN_E2E_EVERYTHING`, else the copy `cargo xtask test` installs.
pub fn everything() -> Option<PathBuf> {
    let path = std::env::var_os("WARDEN_E2E_EVERYTHING")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo().join(
                "target/e2e/npm/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
            )
        });
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if node && path.exists() {
        Some(path)
    } else {
        missing(&format!(
            "node or {} missing; set WARDEN_E2E_EVERYTHING",
            path.display()
        ));
        None
    }
}

/// server-everything over Streamable HTTP on a free loopback port.
///
/// A port found free can be taken before node binds it (by a `--listen 127.0.0.1:0`
/// elsewhere in the suite, or an outgoing connection), and then something else answers on
/// it: so the server's own "listening" line is waited for, and a port it could not bind is
/// tried again with another.
pub fn start_everything(js: &Path) -> Running {
    for _ in 0..5 {
        let port = free_port();
        let mut child = Command::new("node")
            .arg(js)
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server-everything");
        // It says where it listens, or why it cannot, on stderr.
        let stderr = child.stderr.take().expect("server-everything's stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
            let listening = lines.any(|l| l.contains("listening on port"));
            let _ = tx.send(listening);
            // Read on, so that the server never blocks on a full pipe.
            lines.for_each(drop);
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(true) => {
                return Running {
                    child,
                    url: format!("http://127.0.0.1:{port}/mcp"),
                };
            }
            Ok(false) => {
                // It exited without listening: the port was taken meanwhile.
                let _ = child.kill();
                let _ = child.wait();
            }
            Err(_) => {
                let _ = child.kill();
                panic!("server-everything did not say it was listening on {port} within 60 s");
            }
        }
    }
    panic!("server-everything could not bind a free port in 5 tries");
}

/// `warden serve --listen 127.0.0.1:0 --upstream UPSTREAM --policy POLICY` with
/// `WARDEN_LOG=warn`; callers add the options their test is about, then [`start`] it.
pub fn serve_command(warden: &Path, policy: &Path, upstream: &str) -> Command {
    let mut cmd = Command::new(warden);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .arg("--policy")
        .arg(policy)
        .env("WARDEN_LOG", "warn");
    cmd
}

/// `--grant-token alice=alice-token --grant-token bob=bob-token`: the callers of the
/// end-to-end tests.
pub const ALICE_AND_BOB: [&str; 4] = [
    "--grant-token",
    "alice=alice-token",
    "--grant-token",
    "bob=bob-token",
];

/// A scratch directory for one test, under target/.
pub fn scratch(name: &str) -> PathBuf {
    let dir = repo()
        .join("target/e2e/scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Initializes a session by hand; returns its id.
pub fn session(url: &str, token: &str) -> String {
    let auth = format!("Bearer {token}");
    let h = mcp_headers(&auth, None);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}}"#;
    let (status, resp_headers, body) = http(url, "POST", "/mcp", &h, init);
    assert_eq!(status, 200, "{body}");
    let sid = resp_headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("session id");
    let h = mcp_headers(&auth, Some(&sid));
    let (status, _, _) = http(
        url,
        "POST",
        "/mcp",
        &h,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(status, 202);
    sid
}

pub fn mcp_headers<'a>(auth: &'a str, sid: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("authorization", auth),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    if let Some(s) = sid {
        h.push(("mcp-session-id", s));
    }
    h
}

/// The text of a `tools/call` answer, from the gateway's JSON or the server's SSE.
pub fn call_text(url: &str, token: &str, sid: &str, id: u32, tool: &str, args: Value) -> String {
    let auth = &format!("Bearer {token}");
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string();
    let (status, _, raw) = http(url, "POST", "/mcp", &mcp_headers(auth, Some(sid)), &body);
    assert_eq!(status, 200, "{raw}");
    // JSON from the layer, SSE from the server: find the answer either way.
    let answer = raw
        .lines()
        .map(|l| l.strip_prefix("data: ").unwrap_or(l))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no answer to {id} in {raw}"));
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// `warden stdio ARGS -- node <server-everything> stdio`, driven one JSON-RPC line at a time.
pub struct StdioGate {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: std::sync::mpsc::Receiver<Value>,
    /// Every answer read so far, by id.
    pub answers: std::collections::BTreeMap<u64, Value>,
}

impl StdioGate {
    pub fn start(warden: &Path, args: &[&str], everything: &Path) -> StdioGate {
        Self::start_with_env(warden, args, everything, &[])
    }

    /// [`Self::start`] with extra environment variables (a token, say).
    pub fn start_with_env(
        warden: &Path,
        args: &[&str],
        everything: &Path,
        env: &[(&str, &str)],
    ) -> StdioGate {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(warden)
            .envs(env.iter().copied())
            .arg("stdio")
            .args(args)
            .args(["--", "node"])
            .arg(everything)
            .arg("stdio")
            .env("WARDEN_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start warden stdio");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON on stdout ({e}): {line}"));
                let _ = tx.send(v);
            }
        });
        StdioGate {
            child,
            stdin,
            lines,
            answers: Default::default(),
        }
    }

    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to warden stdio");
        stdin.flush().expect("flush");
    }

    /// `initialize` and `notifications/initialized`, as a client starts.
    pub fn initialize(&mut self) {
        self.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}}"#);
        self.answer(1);
        self.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    }

    /// Waits (30 s at most) for the answer to `id`.
    pub fn answer(&mut self, id: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.answers.contains_key(&id) {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {id}; so far: {:?}", self.answers));
            if let Some(got) = v["id"].as_u64() {
                self.answers.insert(got, v);
            }
        }
        self.answers[&id].clone()
    }

    /// Calls `tool` as request `id`; the answer's text.
    pub fn call(&mut self, id: u64, tool: &str, args: Value) -> String {
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                          "params": {"name": tool, "arguments": args}})
            .to_string(),
        );
        self.answer(id)["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Closes stdin (the client leaves) and waits for warden to exit.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        self.child.wait().expect("wait for warden stdio")
    }
}

impl Drop for StdioGate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tests/conformance/server.py (the Python SDK serving both protocol revisions), once it
/// prints `READY URL`.
pub fn conformance_server(python: &Path) -> Running {
    let mut child = Command::new(python)
        .arg(repo().join("tests/conformance/server.py"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tests/conformance/server.py");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("READY ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("tests/conformance/server.py printed no READY line within 60 s")
        });
    Running { child, url }
}

/// The Linode MCP server's entry point (`cargo xtask test` unpacks it from
/// shared/reference/ into target/e2e/linode), or `None` after failing the test.
pub fn linode() -> Option<PathBuf> {
    let js = repo().join("target/e2e/linode/dist/index.js");
    if js.is_file() && repo().join("target/e2e/linode/node_modules").is_dir() {
        return Some(js);
    }
    missing(&format!("no Linode MCP server at {}", js.display()));
    None
}

/// Calls `echo` on the session (ids from `first_id` up) until the gateway denies it, for at
/// most 15 s: how a test waits for a policy edit that takes `echo` out to be picked up.
/// Returns the next unused id.
pub fn until_echo_denied(url: &str, token: &str, sid: &str, first_id: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut id = first_id;
    loop {
        let text = call_text(url, token, sid, id, "echo", json!({"message": "m"}));
        id += 1;
        if text.starts_with("[POLICY DENIED]") {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "the edit was not picked up: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The policy.json the hosted page shows, read from the page itself.
pub fn page_policy() -> String {
    let page = repo().join("../shared/reference/policylayer-tool-page.txt");
    let text = std::fs::read_to_string(&page)
        .unwrap_or_else(|e| panic!("{}: {e} (the project's shared/reference/)", page.display()));
    let start = text
        .find("policy.json\n{")
        .expect("the page shows a policy.json")
        + 12;
    // The document ends at the first line that is a lone closing brace.
    let end = start + text[start..].find("\n}\n").expect("end of the policy") + 2;
    let policy = &text[start..end];
    serde_json::from_str::<Value>(policy).expect("the page's policy is JSON");
    policy.to_owned()
}

/// One request a [`fake_http`] server took: its request line (`POST /mcp HTTP/1.1`), its
/// headers (names lowercase) and its body.
pub struct Taken {
    pub line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Taken {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 server of a test's own on a free loopback port (keep-alive, bodies by
/// `content-length`): `answer` gives each request's status line (`200 OK`), extra header
/// lines (each ending in `\r\n`) and body. Its address, `127.0.0.1:PORT`.
pub fn fake_http(
    answer: impl Fn(&Taken) -> (String, String, String) + Send + Sync + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                        }
                    }
                    let length = headers
                        .iter()
                        .find(|(k, _)| k == "content-length")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let taken = Taken {
                        line: line.trim().to_owned(),
                        headers,
                        body,
                    };
                    let (status, extra, text) = answer(&taken);
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n",
                        text.len()
                    );
                    if stream.write_all(head.as_bytes()).is_err()
                        || stream.write_all(text.as_bytes()).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A fake Linode API: answers every request with a token-shaped object and counts the
/// `POST /v4/profile/tokens` that reach it.
pub fn fake_linode_api() -> (String, Arc<AtomicUsize>) {
    let tokens = Arc::new(AtomicUsize::new(0));
    let counted = tokens.clone();
    let addr = fake_http(move |taken| {
        if taken.line.starts_with("POST /v4/profile/tokens") {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        let answer = json!({"id": 1, "label": "agent", "scopes": "*",
            "token": "fake-token", "created": "2026-12-07T00:00:00", "expiry": null});
        ("200 OK".into(), String::new(), answer.to_string())
    });
    (format!("http://{addr}/v4"), tokens)
}

/// `warden check FILE`, which must pass: what it printed.
pub fn check_passes(warden: &Path, file: &Path) -> String {
    let out = Command::new(warden)
        .arg("check")
        .arg(file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
