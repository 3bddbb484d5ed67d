//! TLS everywhere (issue 27), with certificates made here by a test CA (`pki.rs`):
//! - an https upstream (server-everything behind a rustls terminator) reached through
//!   `warden serve --upstream https://… --upstream-ca`, its connections pooled, and every bad
//!   certificate answered as a JSON-RPC error with the request's id and a log line naming
//!   the cause; mutual TLS with and without the client certificate;
//! - `--tls-cert/--tls-key`: the Python SDK over https, a plain-HTTP request refused in
//!   words, TLS 1.1 refused, a certificate swapped on disk served to new connections while
//!   an SSE answer already streaming goes on, and the console's cookie `Secure`;
//! - `rediss://` to Debian's redis-server with `--tls-port`: two replicas share one limit,
//!   and a wrong CA fails closed with the reason in `/healthz`;
//! - a JWKS served over https and rotated, and an approval webhook delivered over https.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod pki;
mod redis_server;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pki::{Ca, Leaf, Pair};
use serde_json::{Value, json};

const POLICY: &str = "version 1\ndefault deny\nallow echo, trigger-long-running-operation\n";

// ---------------------------------------------------------------------------------------
// Peers written for these tests: a TLS terminator in front of a plain server, and a small
// https server that serves a JWKS and takes webhook POSTs.

/// A TLS terminator on a loopback port in front of `127.0.0.1:to` (what nginx does in front
/// of an MCP server), counting the connections it accepts.
struct Terminator {
    port: u16,
    accepted: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

fn terminator(config: Arc<rustls::ServerConfig>, to: u16) -> Terminator {
    let (rt, listener, port) = loopback();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    Terminator {
        port,
        accepted,
        _rt: rt,
    }
}

/// A runtime of its own for a peer written here, and a listener on a free loopback port.
fn loopback() -> (tokio::runtime::Runtime, tokio::net::TcpListener, u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    (rt, listener, port)
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap()
}

type TlsStream = pki::TlsStream;

fn tls_connect(port: u16, ca: &Path) -> TlsStream {
    pki::connect(port, ca)
}

/// The certificate a server presents to a new connection (DER).
fn served_certificate(port: u16, ca: &Path) -> Vec<u8> {
    let s = tls_connect(port, ca);
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

/// One `connection: close` request over TLS: status, headers, body.
fn https(
    port: u16,
    ca: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = tls_connect(port, ca);
    write_request(&mut s, port, method, path, headers, body, true);
    let mut raw = Vec::new();
    // A peer that closes without close_notify is an error to rustls; what was read counts.
    let _ = s.read_to_end(&mut raw);
    support::parse_response(&String::from_utf8_lossy(&raw))
}

fn write_request(
    s: &mut impl Write,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    close: bool,
) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost:{port}\r\ncontent-length: {}\r\n",
        body.len()
    );
    if close {
        req.push_str("connection: close\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    s.flush().unwrap();
}

const MCP: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

const INIT: &str = r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"tls-e2e","version":"0"}}}"#;

/// `warden serve` with its stderr (logs at `info`) in `log`.
fn gateway(
    warden: &Path,
    dir: &Path,
    upstream: &str,
    extra: &[&str],
    log: &Path,
) -> support::Running {
    let policy = dir.join("policy.pol");
    if !policy.exists() {
        std::fs::write(&policy, POLICY).unwrap();
    }
    let mut cmd = support::serve_command(warden, &policy, upstream);
    if !extra.contains(&"--jwt-jwks") {
        cmd.arg("--no-auth");
    }
    cmd.args(extra).env("WARDEN_LOG", "info");
    support::start_with_stderr(cmd, Stdio::from(std::fs::File::create(log).unwrap()))
}

fn wait_for_log(log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never logged:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------

#[test]
fn an_https_upstream_is_verified_pooled_and_every_bad_certificate_is_a_json_rpc_error() {
    let warden = support::warden().expect("warden binary");
    let everything = support::everything().expect("server-everything");
    let python = support::python().expect("python with the mcp SDK");
    let dir = support::scratch("tls-upstream");
    let good = Ca::new(&dir, "good");
    let other = Ca::new(&dir, "other");
    let server = good.issue("server", Leaf::Server);
    let client = good.issue("client", Leaf::Client);
    let upstream = support::start_everything(&everything);
    let to = port_of(&upstream.url);

    // The good case, through the Python SDK: tools listed (filtered) and a call answered.
    let tls = terminator(pki::server_config(&server, None), to);
    let url = format!("https://localhost:{}/mcp", tls.port);
    let log = dir.join("good.log");
    let gw = gateway(
        &warden,
        &dir,
        &url,
        &["--upstream-ca", path_str(&good.cert_path("good"))],
        &log,
    );
    let out = support::run_python(&python, "gateway_scenario.py", &[&gw.url, "auto", "unused"]);
    assert_eq!(
        out["tools"],
        json!(["echo", "trigger-long-running-operation"]),
        "{out}"
    );
    assert_eq!(out["echo"]["text"], "Echo: hello", "{out}");

    // `warden scan` over the same https URL: a starter policy; without the CA, the reason.
    let scanned = Command::new(&warden)
        .args(["scan", "--upstream", &url, "--upstream-ca"])
        .arg(good.cert_path("good"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&scanned.stdout);
    assert!(
        scanned.status.success(),
        "{}",
        String::from_utf8_lossy(&scanned.stderr)
    );
    assert!(text.contains("echo"), "{text}");
    let refused = Command::new(&warden)
        .args(["scan", "--upstream", &url])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("unknown authority"),
        "{err}"
    );

    // Pooled: forty calls one after another open no new upstream connection each.
    let sid = support::session(&gw.url, "unused");
    let before = tls.accepted.load(Ordering::SeqCst);
    for i in 0..40 {
        let text = support::call_text(
            &gw.url,
            "unused",
            &sid,
            100 + i,
            "echo",
            json!({"message": "p"}),
        );
        assert!(text.contains("Echo: p"), "{text}");
    }
    let opened = tls.accepted.load(Ordering::SeqCst) - before;
    assert!(
        opened <= 2,
        "40 calls opened {opened} TLS connections upstream"
    );
    drop(gw);

    // Each bad certificate: a JSON-RPC error with the id, 502, and the cause in the log.
    let unknown = other.issue("unknown", Leaf::Server);
    let expired = good.issue("expired", Leaf::Expired);
    let wrong_name = good.issue("wrong-name", Leaf::WrongName);
    let cases: [(&str, Pair, bool, &str); 4] = [
        ("unknown CA", unknown, false, "unknown authority"),
        ("expired", expired, false, "has expired"),
        (
            "wrong host name",
            wrong_name,
            false,
            "not valid for the host name",
        ),
        (
            "mutual TLS without a client certificate",
            server.clone(),
            true,
            "requires a client certificate",
        ),
    ];
    for (name, pair, mutual, cause) in cases {
        let ca = good.cert_path("good");
        let t = terminator(
            pki::server_config(&pair, mutual.then_some(ca.as_path())),
            to,
        );
        let log = dir.join(format!("{}.log", name.replace(' ', "-")));
        let gw = gateway(
            &warden,
            &dir,
            &format!("https://localhost:{}/mcp", t.port),
            &["--upstream-ca", path_str(&ca)],
            &log,
        );
        let (status, _, body) = support::http(&gw.url, "POST", "/mcp", &MCP, INIT);
        assert_eq!(status, 502, "{name}: {body}");
        let rpc: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}: {body}"));
        assert_eq!(rpc["id"], 7, "{name}: {body}");
        let message = rpc["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(cause), "{name}: {message}");
        let logged = wait_for_log(&log, "upstream failed");
        assert!(
            logged
                .lines()
                .any(|l| l.contains("upstream failed") && l.contains(cause)),
            "{name}: the log does not name the cause:\n{logged}"
        );
    }

    // Mutual TLS with the client certificate works.
    let ca = good.cert_path("good");
    let t = terminator(pki::server_config(&server, Some(&ca)), to);
    let gw = gateway(
        &warden,
        &dir,
        &format!("https://localhost:{}/mcp", t.port),
        &[
            "--upstream-ca",
            path_str(&ca),
            "--upstream-client-cert",
            path_str(&client.cert),
            "--upstream-client-key",
            path_str(&client.key),
        ],
        &dir.join("mtls.log"),
    );
    let (status, _, body) = support::http(&gw.url, "POST", "/mcp", &MCP, INIT);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("serverInfo"), "{body}");

    // Without --upstream-ca, the test CA is not trusted: Mozilla's roots are.
    let gw = gateway(
        &warden,
        &dir,
        &format!("https://localhost:{}/mcp", tls.port),
        &[],
        &dir.join("public-roots.log"),
    );
    let (status, _, body) = support::http(&gw.url, "POST", "/mcp", &MCP, INIT);
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("unknown authority"), "{body}");
}

#[test]
fn bad_tls_flags_stop_the_start_with_the_file_named() {
    let warden = support::warden().expect("warden binary");
    let dir = support::scratch("tls-flags");
    std::fs::write(dir.join("policy.pol"), POLICY).unwrap();
    std::fs::write(dir.join("empty.pem"), "nothing here\n").unwrap();
    let good = Ca::new(&dir, "good");
    let a = good.issue("a", Leaf::Server);
    let b = good.issue("b", Leaf::Server);
    let run = |args: &[&str]| {
        let out = Command::new(&warden)
            .args(["serve", "--no-auth", "--listen", "127.0.0.1:0", "--policy"])
            .arg(dir.join("policy.pol"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let empty = dir.join("empty.pem");
    let good_ca = good.cert_path("good");
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec![
                "--upstream",
                "https://localhost:1/mcp",
                "--upstream-ca",
                path_str(&empty),
            ],
            format!("{}: no PEM certificate", empty.display()),
        ),
        (
            vec![
                "--upstream",
                "http://localhost:1/mcp",
                "--upstream-ca",
                path_str(&good_ca),
            ],
            "are for an https:// upstream".into(),
        ),
        (
            vec!["--upstream", "ftp://localhost/mcp"],
            "expected an http:// or https:// URL".into(),
        ),
        (
            vec![
                "--upstream",
                "http://localhost:1/mcp",
                "--tls-cert",
                path_str(&a.cert),
                "--tls-key",
                path_str(&b.key),
            ],
            "the key does not go with the certificate".into(),
        ),
        (
            vec![
                "--upstream",
                "http://localhost:1/mcp",
                "--tls-cert",
                path_str(&a.cert),
                "--tls-key",
                "/nonexistent.key",
            ],
            "/nonexistent.key".into(),
        ),
        (
            vec![
                "--upstream",
                "http://localhost:1/mcp",
                "--redis",
                "redis://127.0.0.1:1",
                "--redis-ca",
                path_str(&good_ca),
            ],
            "need a rediss:// (TLS) URL".into(),
        ),
    ];
    for (args, expected) in cases {
        let err = run(&args);
        assert!(err.contains(&expected), "{args:?}: {err}");
    }
    // --tls-cert alone is a usage error from the argument parser.
    let err = run(&[
        "--upstream",
        "http://localhost:1/mcp",
        "--tls-cert",
        path_str(&a.cert),
    ]);
    assert!(err.contains("--tls-key"), "{err}");
}

#[test]
fn the_listener_serves_https_and_a_new_certificate_without_dropping_a_stream() {
    let warden = support::warden().expect("warden binary");
    let everything = support::everything().expect("server-everything");
    let python = support::python().expect("python with the mcp SDK");
    let dir = support::scratch("tls-listener");
    let ca = Ca::new(&dir, "good");
    let first = ca.issue("first", Leaf::Server);
    let second = ca.issue("second", Leaf::Server);
    let served = Pair {
        cert: dir.join("served.pem"),
        key: dir.join("served.key"),
    };
    std::fs::copy(&first.cert, &served.cert).unwrap();
    std::fs::copy(&first.key, &served.key).unwrap();
    let ca_pem = ca.cert_path("good");
    let upstream = support::start_everything(&everything);
    let admin = support::free_port();
    let log = dir.join("gateway.log");
    let gw = gateway(
        &warden,
        &dir,
        &upstream.url,
        &[
            "--tls-cert",
            path_str(&served.cert),
            "--tls-key",
            path_str(&served.key),
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--admin-token",
            "admin-secret",
        ],
        &log,
    );
    assert!(gw.url.starts_with("https://127.0.0.1:"), "{}", gw.url);
    let port = port_of(&gw.url);
    let url = format!("https://localhost:{port}/mcp");

    // The Python SDK over https, trusting the test CA.
    let out = Command::new(&python)
        .arg(support::repo().join("tests/python/gateway_scenario.py"))
        .args([&url, "auto", "unused"])
        .env("WARDEN_E2E_CA", &ca_pem)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["echo"]["text"], "Echo: hello", "{v}");

    // Plain HTTP to the TLS port: told to use https, at once.
    let (status, _, body) = support::http(
        &gw.url.replace("https://", "http://"),
        "GET",
        "/mcp",
        &[],
        "",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("use an https:// URL"), "{body}");

    // Nothing older than TLS 1.2 exists in rustls: a TLS 1.1 client gets no session.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-tls1_1",
            "-CAfile",
            path_str(&ca_pem),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl (Debian's openssl package) to try a TLS 1.1 handshake");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && !text.contains("Cipher is ECDHE"),
        "TLS 1.1 negotiated:\n{text}"
    );

    // A stream under way: a long call answering over SSE with progress.
    let mut stream = tls_connect(port, &ca_pem);
    let sid = {
        let (status, headers, body) = https(port, &ca_pem, "POST", "/mcp", &MCP, INIT);
        assert_eq!(status, 200, "{body}");
        headers
            .iter()
            .find(|(k, _)| k == "mcp-session-id")
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let mut headers = MCP.to_vec();
    headers.push(("mcp-session-id", &sid));
    headers.push(("mcp-protocol-version", "2025-11-25"));
    let notified = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let (status, _, _) = https(port, &ca_pem, "POST", "/mcp", &headers, notified);
    assert_eq!(status, 202);
    let long = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":4,"steps":4},"_meta":{"progressToken":"p"}}}"#;
    write_request(&mut stream, port, "POST", "/mcp", &headers, long, true);
    let mut reader = BufReader::new(stream);
    let mut seen = String::new();
    while !seen.contains("notifications/progress") {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "stream ended: {seen}"
        );
        seen.push_str(&line);
    }

    // The certificate changes on disk (the key first, then the certificate, as an ACME
    // client might); new connections get it soon after.
    let old = served_certificate(port, &ca_pem);
    std::fs::copy(&second.key, &served.key).unwrap();
    std::fs::copy(&second.cert, &served.cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_certificate(port, &ca_pem) == old {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        served_certificate(port, &ca_pem),
        std::fs::read(&second.cert)
            .ok()
            .map(|pem| {
                use rustls_pki_types::pem::PemObject;
                rustls_pki_types::CertificateDer::from_pem_slice(&pem)
                    .unwrap()
                    .to_vec()
            })
            .unwrap()
    );
    wait_for_log(&log, "TLS certificate reloaded");

    // The stream opened under the old certificate finishes with its answer.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("the stream was cut after the reload: {seen}");
        }
        seen.push_str(&line);
        if line.contains(r#""id":9"#) && line.contains("result") {
            break;
        }
    }
    assert!(seen.contains("Long running operation completed"), "{seen}");

    // The admin address serves TLS too, and the console's cookie is Secure.
    let (status, headers, _) = https(
        admin,
        &ca_pem,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=admin-secret",
    );
    assert_eq!(status, 303);
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let (status, _, body) = https(
        admin,
        &ca_pem,
        "GET",
        "/healthz",
        &[("authorization", "Bearer admin-secret")],
        "",
    );
    assert_eq!(status, 200, "{body}");
}

// ---------------------------------------------------------------------------------------

/// Debian's redis-server serving only TLS on a free port.
struct TlsRedis {
    child: std::process::Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tls_redis(pair: &Pair, ca: &Path) -> TlsRedis {
    let port = support::free_port();
    let child = Command::new(redis_server::redis_binary())
        .args(["--port", "0", "--tls-port", &port.to_string()])
        .args([
            "--tls-cert-file",
            path_str(&pair.cert),
            "--tls-key-file",
            path_str(&pair.key),
        ])
        .args([
            "--tls-ca-cert-file",
            path_str(ca),
            "--tls-auth-clients",
            "no",
        ])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--daemonize", "no", "--loglevel", "warning"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start redis-server");
    support::wait_for_port(port);
    TlsRedis { child, port }
}

#[test]
fn replicas_share_a_limit_over_rediss_and_a_wrong_ca_fails_closed() {
    let warden = support::warden().expect("warden binary");
    let everything = support::everything().expect("server-everything");
    let dir = support::scratch("tls-redis");
    let ca = Ca::new(&dir, "good");
    let other = Ca::new(&dir, "other");
    let pair = ca.issue("redis", Leaf::Server);
    let redis = tls_redis(&pair, &ca.cert_path("good"));
    let url = format!("rediss://localhost:{}/0", redis.port);
    std::fs::write(
        dir.join("policy.pol"),
        "version 1\ndefault deny\ntool echo {\n  limit 5 per minute per grant\n}\n",
    )
    .unwrap();
    let upstream = support::start_everything(&everything);
    let replica = |name: &str, ca_file: &Path, admin: u16| {
        gateway(
            &warden,
            &dir,
            &upstream.url,
            &[
                "--redis",
                &url,
                "--redis-ca",
                path_str(ca_file),
                "--redis-prefix",
                "tls-e2e:",
                "--admin",
                &format!("127.0.0.1:{admin}"),
                "--admin-token",
                "admin-secret",
            ],
            &dir.join(format!("{name}.log")),
        )
    };
    let (admin_a, admin_b, admin_c) = (
        support::free_port(),
        support::free_port(),
        support::free_port(),
    );
    let a = replica("a", &ca.cert_path("good"), admin_a);
    let b = replica("b", &ca.cert_path("good"), admin_b);
    let healthy = |admin: u16| {
        support::http(
            &format!("http://127.0.0.1:{admin}"),
            "GET",
            "/healthz",
            &[("authorization", "Bearer admin-secret")],
            "",
        )
    };
    for admin in [admin_a, admin_b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _, body) = healthy(admin);
            if status == 200 {
                break;
            }
            assert!(Instant::now() < deadline, "never healthy: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Five calls in all pass, alternating replicas; the sixth, on either, is refused.
    let (sa, sb) = (support::session(&a.url, "x"), support::session(&b.url, "x"));
    let mut texts = Vec::new();
    for i in 0..6u32 {
        let (url, sid) = if i % 2 == 0 {
            (&a.url, &sa)
        } else {
            (&b.url, &sb)
        };
        texts.push(support::call_text(
            url,
            "x",
            sid,
            10 + i,
            "echo",
            json!({"message": "r"}),
        ));
    }
    let passed = texts.iter().filter(|t| t.contains("Echo: r")).count();
    assert_eq!(passed, 5, "{texts:#?}");
    assert!(texts[5].contains("POLICY DENIED"), "{}", texts[5]);

    // A replica that trusts another CA cannot reach Redis: unhealthy, with the reason, and
    // a limited call is refused (fail closed).
    let c = replica("c", &other.cert_path("other"), admin_c);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, _, body) = healthy(admin_c);
        if status == 503 && body.contains("unknown authority") {
            break body;
        }
        assert!(Instant::now() < deadline, "healthz: {status} {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!body.contains("admin-secret"), "{body}");
    let sc = support::session(&c.url, "x");
    let text = support::call_text(&c.url, "x", &sc, 50, "echo", json!({"message": "c"}));
    assert!(text.contains("POLICY DENIED"), "{text}");
}

// ---------------------------------------------------------------------------------------

/// A https server on loopback: `GET /jwks.json` answers the current document, `POST /hook`
/// records the body.
struct Idp {
    port: u16,
    jwks: Arc<Mutex<String>>,
    hooks: Arc<Mutex<Vec<String>>>,
    fetches: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

fn https_idp(pair: &Pair, jwks: String) -> Idp {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (rt, listener, port) = loopback();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki::server_config(pair, None));
    let doc = Arc::new(Mutex::new(jwks));
    let hooks = Arc::new(Mutex::new(Vec::new()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (d, h, f) = (doc.clone(), hooks.clone(), fetches.clone());
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, d, h, f) = (acceptor.clone(), d.clone(), h.clone(), f.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // One request: the head, then as many body bytes as it says.
                let (head, body_at, len) = loop {
                    let Ok(n) = s.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (head, at + 4, len);
                    }
                };
                while buf.len() < body_at + len {
                    let Ok(n) = s.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = if head.starts_with("get /jwks.json") {
                    f.fetch_add(1, Ordering::SeqCst);
                    d.lock().unwrap().clone()
                } else {
                    h.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[body_at..body_at + len]).into_owned());
                    "{}".to_owned()
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    Idp {
        port,
        jwks: doc,
        hooks,
        fetches,
        _rt: rt,
    }
}

mod keys {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use p256::pkcs8::EncodePrivateKey;
    use serde_json::{Value, json};

    pub const ISS: &str = "https://idp.test/";
    pub const AUD: &str = "mcp-gateway";

    pub struct Key {
        key: p256::SecretKey,
        kid: &'static str,
    }

    impl Key {
        pub fn new(kid: &'static str) -> Key {
            Key {
                key: p256::SecretKey::random(&mut rand::thread_rng()),
                kid,
            }
        }

        pub fn jwks(&self) -> String {
            let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &self.key.public_key(),
                false,
            );
            json!({"keys": [{"kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
                "x": B64.encode(point.x().unwrap()), "y": B64.encode(point.y().unwrap())}]})
            .to_string()
        }

        pub fn token(&self, sub: &str) -> String {
            let now = jsonwebtoken::get_current_timestamp();
            let claims: Value = json!({"sub": sub, "iss": ISS, "aud": AUD, "exp": now + 600});
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some(self.kid.into());
            let der = self.key.to_pkcs8_der().unwrap();
            jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(der.as_bytes())).unwrap()
        }
    }
}

#[test]
fn a_jwks_over_https_is_fetched_and_rotated_and_a_webhook_is_delivered_over_https() {
    let warden = support::warden().expect("warden binary");
    let everything = support::everything().expect("server-everything");
    let dir = support::scratch("tls-idp");
    let ca = Ca::new(&dir, "idp");
    let pair = ca.issue("idp", Leaf::Server);
    let first = keys::Key::new("k1");
    let idp = https_idp(&pair, first.jwks());
    std::fs::write(
        dir.join("policy.pol"),
        "version 1\ndefault deny\nallow echo\ntool get-sum {\n  require approval timeout 20 seconds\n}\n",
    )
    .unwrap();
    let upstream = support::start_everything(&everything);
    let admin = support::free_port();
    let ca_pem = ca.cert_path("idp");
    let gw = gateway(
        &warden,
        &dir,
        &upstream.url,
        &[
            "--jwt-jwks",
            &format!("https://localhost:{}/jwks.json", idp.port),
            "--jwt-jwks-ca",
            path_str(&ca_pem),
            "--jwt-jwks-refetch",
            "1",
            "--jwt-issuer",
            keys::ISS,
            "--jwt-audience",
            keys::AUD,
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--admin-token",
            "admin-secret",
            "--approval-notify",
            &format!("https://localhost:{}/hook", idp.port),
            "--approval-notify-ca",
            path_str(&ca_pem),
        ],
        &dir.join("gateway.log"),
    );
    assert!(
        idp.fetches.load(Ordering::SeqCst) >= 1,
        "the JWKS was not fetched at start"
    );

    // A token signed by the first key is accepted.
    let token = first.token("alice");
    let sid = support::session(&gw.url, &token);
    let text = support::call_text(&gw.url, &token, &sid, 2, "echo", json!({"message": "k1"}));
    assert!(text.contains("Echo: k1"), "{text}");

    // The IdP rotates: a token naming the new key makes the gateway fetch the JWKS again
    // (at most once a second here, by --jwt-jwks-refetch).
    let second = keys::Key::new("k2");
    *idp.jwks.lock().unwrap() = second.jwks();
    std::thread::sleep(Duration::from_millis(1100));
    let token = second.token("alice");
    let sid = support::session(&gw.url, &token);
    let text = support::call_text(&gw.url, &token, &sid, 3, "echo", json!({"message": "k2"}));
    assert!(text.contains("Echo: k2"), "{text}");
    assert!(idp.fetches.load(Ordering::SeqCst) >= 2);

    // An approval is announced to the webhook over https; the call waits for a person.
    let url = gw.url.clone();
    let t = token.clone();
    let waiting = std::thread::spawn(move || {
        let sid = support::session(&url, &t);
        support::call_text(&url, &t, &sid, 4, "get-sum", json!({"a": 1, "b": 2}))
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let hook = loop {
        if let Some(h) = idp.hooks.lock().unwrap().first().cloned() {
            break h;
        }
        assert!(Instant::now() < deadline, "no webhook delivered over https");
        std::thread::sleep(Duration::from_millis(100));
    };
    let v: Value = serde_json::from_str(&hook).unwrap();
    assert_eq!(v["tool"], "get-sum", "{v}");
    assert!(
        v["console_url"]
            .as_str()
            .unwrap()
            .contains("/console/approvals#"),
        "{v}"
    );
    let id = v["id"].as_str().unwrap();
    let (status, _, body) = support::http(
        &format!("http://127.0.0.1:{admin}"),
        "POST",
        &format!("/approvals/{id}/approve"),
        &[("authorization", "Bearer admin-secret")],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let text = waiting.join().unwrap();
    assert!(text.contains('3'), "{text}");
}
