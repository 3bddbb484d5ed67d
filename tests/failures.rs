//! `warden serve` in front of upstreams that fail (fake ones, written here): every failure
//! gets a JSON-RPC answer naming the request's id, with an HTTP status for plain clients,
//! and the gateway keeps serving meanwhile. The HTTP/1 strictness (smuggling) and upstream
//! failure tests run twice: on a plain listener and on a TLS one (`--tls-cert`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod pki;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const POLICY: &str = "version 1\ndefault allow\nhide [secret_*]\n";

/// A fake upstream: `answer` gets each connection once its request head and body are read.
fn fake(answer: fn(&mut TcpStream, &str)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut length = 0usize;
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                answer(&mut conn, &String::from_utf8_lossy(&body));
            });
        }
    });
    url
}

/// How the tests reach the gateway: in the clear, or over TLS trusting this CA file.
#[derive(Clone, Copy)]
enum Via<'a> {
    Plain,
    Tls(&'a Path),
}

/// A gateway with a TLS listener (a new test CA in its own directory); the CA file.
fn tls_gateway(warden: &Path, upstream: &str, extra: &[&str]) -> (support::Running, PathBuf) {
    let dir = support::scratch(&format!("failures-tls-{}", support::free_port()));
    let ca = pki::Ca::new(&dir, "test");
    let pair = ca.issue("gateway", pki::Leaf::Server);
    let mut args = vec![
        "--tls-cert",
        pair.cert.to_str().unwrap(),
        "--tls-key",
        pair.key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (gateway(warden, upstream, &args), ca.cert_path("test"))
}

trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

/// A connection to `addr` (`127.0.0.1:PORT`), reads time out after 5 s.
fn open(addr: &str, via: Via<'_>) -> Box<dyn Io> {
    match via {
        Via::Plain => {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Box::new(s)
        }
        Via::Tls(ca) => {
            let port = addr.rsplit(':').next().unwrap().parse().unwrap();
            let s = pki::connect(port, ca);
            s.sock
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Box::new(s)
        }
    }
}

fn gateway(warden: &Path, upstream: &str, extra: &[&str]) -> support::Running {
    // A directory per gateway: tests run in parallel, and `scratch` empties its directory.
    let dir = support::scratch(&format!("failures-{}", support::free_port()));
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let mut cmd = support::serve_command(warden, &policy, upstream);
    cmd.arg("--no-auth").args(extra).env("WARDEN_LOG", "error");
    support::start(cmd)
}

fn post(url: &str, body: &str, extra: &[(&str, &str)]) -> (u16, Vec<(String, String)>, String) {
    let mut h = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    h.extend_from_slice(extra);
    support::http(url, "POST", "/mcp", &h, body)
}

fn call(id: u64, tool: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
        .to_string()
}

fn rpc_error(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn an_unreachable_resetting_or_garbled_upstream_is_a_json_rpc_502_with_the_id() {
    failing_upstreams(false);
}

#[test]
fn an_unreachable_resetting_or_garbled_upstream_is_a_json_rpc_502_over_tls_too() {
    failing_upstreams(true);
}

/// Each failing upstream behind a gateway (with a TLS listener when `tls`; then also an
/// `https://` upstream that does not speak TLS).
fn failing_upstreams(tls: bool) {
    let warden = support::warden().expect("warden binary");
    let refused = format!("http://127.0.0.1:{}/mcp", support::free_port());
    let resetting = fake(|conn, _| {
        let _ = conn.shutdown(std::net::Shutdown::Both);
    });
    let garbled = fake(|conn, _| {
        let _ = conn.write_all(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
    });
    let mut cases = vec![
        ("refused", refused),
        ("reset", resetting.clone()),
        ("garbage", garbled),
    ];
    if tls {
        cases.push((
            "no TLS at an https URL",
            resetting.replace("http://", "https://"),
        ));
    }
    for (name, upstream) in cases {
        let (gw, ca) = if tls {
            let (gw, ca) = tls_gateway(&warden, &upstream, &[]);
            (gw, Some(ca))
        } else {
            (gateway(&warden, &upstream, &[]), None)
        };
        let via = ca.as_deref().map_or(Via::Plain, Via::Tls);
        let addr = authority(&gw.url);
        let (status, body) = exchange(
            &addr,
            via,
            &head(&call(41, "echo"), "connection: close\r\n"),
        );
        assert_eq!(status, 502, "{name}: {body}");
        let v = rpc_error(&body);
        assert_eq!(v["jsonrpc"], "2.0", "{name}: {body}");
        assert_eq!(v["id"], 41, "{name}: {body}");
        assert_eq!(v["error"]["code"], -32603, "{name}: {body}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("upstream"),
            "{name}: {body}"
        );
        // A batch gets one error per request.
        let batch = format!("[{},{}]", call(1, "echo"), call(2, "echo"));
        let (status, body) = exchange(&addr, via, &head(&batch, "connection: close\r\n"));
        assert_eq!(status, 502, "{name}: {body}");
        let ids: Vec<Value> = rpc_error(&body)
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].clone())
            .collect();
        assert_eq!(ids, [json!(1), json!(2)], "{name}: {body}");
    }
}

/// One request, written as given; the answer's status and body.
fn exchange(addr: &str, via: Via<'_>, request: &str) -> (u16, String) {
    let answer = raw_via(addr, via, request.as_bytes());
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_owned())
}

#[test]
fn a_silent_upstream_times_out_with_504_and_others_are_served_meanwhile() {
    let warden = support::warden().expect("warden binary");
    let silent = fake(|_conn, _| std::thread::sleep(Duration::from_secs(30)));
    let gw = gateway(&warden, &silent, &["--upstream-timeout", "2"]);
    let url = gw.url.clone();
    let started = Instant::now();
    let waiting = std::thread::spawn(move || post(&url, &call(7, "echo"), &[]));
    // While that call waits, a call the gate answers itself is answered at once.
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let (status, _, body) = post(&gw.url, &call(8, "secret_thing"), &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("[POLICY DENIED]"), "{body}");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    let (status, _, body) = waiting.join().unwrap();
    let took = started.elapsed();
    assert_eq!(status, 504, "{body}");
    let v = rpc_error(&body);
    assert_eq!(v["id"], 7, "{body}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("within 2 s"),
        "{body}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

/// A `tools/list` answer with a hidden tool, as SSE with the given line end.
fn sse_list(conn: &mut TcpStream, body: &str, eol: &str) {
    let id = serde_json::from_str::<Value>(body)
        .map(|v| v["id"].clone())
        .unwrap_or(json!(null));
    let list = json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
        {"name": "echo"}, {"name": "secret_keys"}]}});
    let event = format!("event: message{eol}data: {list}{eol}{eol}");
    // A server that buffers its answer sends SSE with a Content-Length.
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{event}",
        event.len()
    );
}

#[test]
fn a_tools_list_sse_answer_is_filtered_and_framed_right_whatever_its_line_ends() {
    let warden = support::warden().expect("warden binary");
    let upstreams = [
        ("LF", fake(|c, b| sse_list(c, b, "\n"))),
        ("CRLF", fake(|c, b| sse_list(c, b, "\r\n"))),
        ("CR", fake(|c, b| sse_list(c, b, "\r"))),
    ];
    for (name, upstream) in upstreams {
        let gw = gateway(&warden, &upstream, &[]);
        let list = r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#;
        let (status, headers, body) = post(&gw.url, list, &[]);
        assert_eq!(status, 200, "{name}: {body}");
        assert!(
            body.contains("\"echo\"") && !body.contains("secret_keys"),
            "{name}: {body}"
        );
        if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
            assert_eq!(
                len.parse::<usize>().unwrap(),
                body.len(),
                "{name}: {headers:?}"
            );
        }
    }
}

#[test]
fn bodies_the_gate_cannot_read_are_refused_with_json_rpc_errors() {
    let warden = support::warden().expect("warden binary");
    let upstream = fake(|conn, _| {
        let _ = conn.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n");
        panic!("nothing may reach the upstream here");
    });
    let gw = gateway(&warden, &upstream, &[]);
    // A call smuggled in a PUT body.
    let (status, _, body) = support::http(
        &gw.url,
        "PUT",
        "/mcp",
        &[("content-type", "application/json")],
        &call(3, "secret_thing"),
    );
    assert_eq!(status, 405, "{body}");
    assert_eq!(rpc_error(&body)["error"]["code"], -32600, "{body}");
    // A compressed body cannot be inspected.
    let (status, _, body) = post(&gw.url, &call(4, "echo"), &[("content-encoding", "gzip")]);
    assert_eq!(status, 415, "{body}");
    let v = rpc_error(&body);
    assert_eq!(v["jsonrpc"], "2.0", "{body}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("compressed"),
        "{body}"
    );
}

#[test]
fn warden_stdio_answers_an_oversized_message_with_its_id_and_goes_on() {
    let warden = support::warden().expect("warden binary");
    let js = support::everything().expect("server-everything");
    let dir = support::scratch("stdio-big");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let p = policy.to_str().unwrap();

    // The default limit (16 MiB) lets a 1 MiB call (a file as base64, say) through.
    let mut gate = support::StdioGate::start(&warden, &["--policy", p], &js);
    gate.initialize();
    let big = "x".repeat(1 << 20);
    let text = gate.call(2, "echo", json!({"message": big}));
    assert_eq!(text.len(), big.len() + "Echo: ".len());
    drop(gate);

    // Past --max-message-bytes: a JSON-RPC error naming the id, and the session goes on.
    let mut gate = support::StdioGate::start(
        &warden,
        &["--policy", p, "--max-message-bytes", "65536"],
        &js,
    );
    gate.initialize();
    gate.send(
        &json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call",
                      "params": {"name": "echo", "arguments": {"message": big}}})
        .to_string(),
    );
    let answer = gate.answer(77);
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over the limit of 65536 bytes"),
        "{answer}"
    );
    assert_eq!(
        gate.call(78, "echo", json!({"message": "small"})),
        "Echo: small"
    );
    drop(gate);

    // The server's answers are bounded too: its tools/list (~7.5 KiB) over a 4 KiB limit is
    // an error for that id, not a client left waiting; smaller answers keep flowing.
    let mut gate = support::StdioGate::start(
        &warden,
        &["--policy", p, "--max-message-bytes", "4096"],
        &js,
    );
    gate.initialize();
    gate.send(r#"{"jsonrpc":"2.0","id":90,"method":"tools/list"}"#);
    let answer = gate.answer(90);
    assert_eq!(answer["error"]["code"], -32603, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over the gateway's limit of 4096 bytes"),
        "{answer}"
    );
    assert_eq!(
        gate.call(91, "echo", json!({"message": "after"})),
        "Echo: after"
    );
}

/// Reads until the peer closes or `within` passes; true if it closed.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn authority(url: &str) -> String {
    url.trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[test]
fn slow_idle_and_surplus_clients_are_bounded() {
    let warden = support::warden().expect("warden binary");
    let upstream = fake(|conn, _| {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    });
    let gw = gateway(
        &warden,
        &upstream,
        &["--header-read-timeout", "1", "--max-connections", "2"],
    );
    let addr = authority(&gw.url);
    // A client that sends half a request head, and one that sends nothing: both are cut.
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nhost: x\r\n")
        .unwrap();
    let mut idle = TcpStream::connect(&addr).unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(5)),
        "slow header kept open"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)),
        "idle connection kept open"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Two connections held open (slowly): a third waits, and is served once one goes.
    let mut a = TcpStream::connect(&addr).unwrap();
    a.write_all(b"POST /mcp HTTP/1.1\r\n").unwrap();
    let mut b = TcpStream::connect(&addr).unwrap();
    b.write_all(b"POST /mcp HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let url = gw.url.clone();
    let third = std::thread::spawn(move || {
        let t = Instant::now();
        let r = post(&url, &call(9, "echo"), &[]);
        (r, t.elapsed())
    });
    // The held ones are cut by the header deadline; then the third gets in.
    let ((status, _, body), waited) = third.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        waited >= Duration::from_millis(300),
        "the third was not held back: {waited:?}"
    );
    drop((a, b));
}

#[test]
fn request_ids_reach_the_audit_and_cors_answers_allowed_origins() {
    let warden = support::warden().expect("warden binary");
    let upstream = fake(|conn, _| {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    });
    let dir = support::scratch("reqid");
    let audit = dir.join("audit.jsonl");
    let gw = gateway(
        &warden,
        &upstream,
        &[
            "--audit",
            audit.to_str().unwrap(),
            "--cors-origin",
            "http://localhost:6274",
        ],
    );
    // The policy reads no arguments, so the layer does not build them; the audit still
    // names their keys (never their values).
    let with_args = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"region": "us-east", "note": "hunter2"}}});
    let (status, headers, _) = post(&gw.url, &with_args.to_string(), &[]);
    assert_eq!(status, 200);
    let id = headers
        .iter()
        .find(|(k, _)| k == "x-request-id")
        .map(|(_, v)| v.clone())
        .expect("x-request-id on the answer");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(&id)) {
            assert!(line.contains("region,note"), "argument keys in {line}");
            assert!(!text.contains("hunter2"), "an argument value in {text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "request id {id} not in the audit: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let preflight = |origin: &str| {
        support::http(
            &gw.url,
            "OPTIONS",
            "/mcp",
            &[
                ("origin", origin),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ],
            "",
        )
    };
    let (status, headers, _) = preflight("http://localhost:6274");
    assert!(status < 300, "{status}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "access-control-allow-origin" && v == "http://localhost:6274"),
        "{headers:?}"
    );
    let (_, headers, _) = preflight("http://evil.example");
    assert!(
        !headers
            .iter()
            .any(|(k, _)| k == "access-control-allow-origin"),
        "{headers:?}"
    );
}

#[test]
fn sigterm_lets_calls_in_flight_finish_then_exits_0() {
    let warden = support::warden().expect("warden binary");
    let upstream = fake(|conn, _| {
        std::thread::sleep(Duration::from_millis(1500));
        let body =
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"late"}]}}"#;
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
    });
    let mut gw = gateway(&warden, &upstream, &[]);
    let url = gw.url.clone();
    let in_flight = std::thread::spawn(move || post(&url, &call(1, "echo"), &[]));
    std::thread::sleep(Duration::from_millis(400));
    let pid = gw.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (status, _, body) = in_flight.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("late"), "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "warden did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code}");
    assert!(
        TcpStream::connect(authority(&gw.url)).is_err(),
        "still accepting"
    );
}

static UPSTREAM_SAW_CLOSE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

#[test]
fn a_client_that_goes_away_cancels_its_upstream_request() {
    let warden = support::warden().expect("warden binary");
    // An upstream that never answers, and notes when the gateway hangs up on it.
    let upstream = fake(|conn, _| {
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 64];
        if matches!(conn.read(&mut buf), Ok(0)) {
            UPSTREAM_SAW_CLOSE.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let gw = gateway(&warden, &upstream, &[]);
    let mut client = TcpStream::connect(authority(&gw.url)).unwrap();
    let req = call(1, "echo");
    write!(
        client,
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: {}\r\n\r\n{req}",
        req.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(client);
    wait_for(
        &UPSTREAM_SAW_CLOSE,
        "the upstream request outlived its client",
    );
}

/// Waits up to 10 s for `flag`; fails with `why` if it stays down.
fn wait_for(flag: &std::sync::atomic::AtomicBool, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Set by the streaming test once its client has read the first event.
static FIRST_EVENT_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A chunked SSE answer: one event, then (once the client has it, or after 10 s) another.
fn sse_in_two_steps(conn: &mut TcpStream, _: &str) {
    let chunk = |c: &mut TcpStream, s: &str| {
        let _ = write!(c, "{:x}\r\n{s}\r\n", s.len());
        let _ = c.flush();
    };
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    chunk(
        conn,
        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !FIRST_EVENT_SEEN.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    chunk(
        conn,
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
    );
    let _ = write!(conn, "0\r\n\r\n");
}

/// The same answer written at once, in two chunks (what rmcp and most SDKs do).
fn sse_at_once(conn: &mut TcpStream, _: &str) {
    let events = [
        "data: \nid: 0\nretry: 3000\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
    ];
    let mut out = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    for e in events {
        out.push_str(&format!("{:x}\r\n{e}\r\n", e.len()));
    }
    out.push_str("0\r\n\r\n");
    let _ = conn.write_all(out.as_bytes());
}

#[test]
fn streams_pass_as_they_arrive_and_an_answer_already_there_goes_out_whole() {
    let warden = support::warden().expect("warden binary");
    // A progress event reaches the client while the upstream is still working.
    let gw = gateway(&warden, &fake(sse_in_two_steps), &[]);
    let mut conn = TcpStream::connect(authority(&gw.url)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = call(1, "slow");
    write!(
        conn,
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut seen = Vec::new();
    let started = Instant::now();
    read_until(
        &mut conn,
        &mut seen,
        "notifications/progress",
        "the first event must arrive before the upstream sends the second",
    );
    assert!(
        !String::from_utf8_lossy(&seen).contains("\"result\""),
        "the second event cannot be there yet"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    FIRST_EVENT_SEEN.store(true, std::sync::atomic::Ordering::SeqCst);
    read_until(&mut conn, &mut seen, "\"result\"", "the second event");

    // An answer that arrived whole leaves whole, with a length (one write, not three).
    let gw = gateway(&warden, &fake(sse_at_once), &[]);
    let (status, headers, body) = post(&gw.url, &call(1, "echo"), &[]);
    assert_eq!(status, 200, "{body}");
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .unwrap_or_else(|| panic!("sent chunked: {headers:?}"));
    assert_eq!(length.1.parse::<usize>().unwrap(), body.len());
    assert!(
        body.starts_with("data: \nid: 0\nretry: 3000\n\ndata: {"),
        "{body:?}"
    );
}

/// Set by the next test once its client has read an answer's head.
static HEAD_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

const ONLY_EVENT: &str = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

/// A chunked SSE answer whose head is sent on its own, a moment before its only event (as
/// hyper-based servers such as rmcp's write a streamed answer).
fn head_then_event(conn: &mut TcpStream, _: &str) {
    let _ = conn.set_nodelay(true);
    let _ = conn.write_all(SSE_HEAD.as_bytes());
    std::thread::sleep(Duration::from_millis(1));
    let _ = write!(conn, "{:x}\r\n{ONLY_EVENT}\r\n0\r\n\r\n", ONLY_EVENT.len());
}

/// A head, then nothing until the client has read it (or 10 s), then the event.
fn head_then_silence(conn: &mut TcpStream, _: &str) {
    let _ = conn.set_nodelay(true);
    let _ = conn.write_all(SSE_HEAD.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !HEAD_SEEN.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = write!(conn, "{:x}\r\n{ONLY_EVENT}\r\n0\r\n\r\n", ONLY_EVENT.len());
}

#[test]
fn an_answer_s_head_waits_briefly_for_its_body_but_never_for_long() {
    let warden = support::warden().expect("warden binary");
    // The head and the event that follows it leave together: a whole answer, with a length
    // (a head written alone would have had to promise a chunked body).
    let gw = gateway(&warden, &fake(head_then_event), &[]);
    let (status, headers, body) = post(&gw.url, &call(1, "echo"), &[]);
    assert_eq!(status, 200, "{body}");
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .unwrap_or_else(|| panic!("the head left before the body: {headers:?}"));
    assert_eq!(length.1.parse::<usize>().unwrap(), body.len());
    assert_eq!(body, ONLY_EVENT);

    // A stream that says nothing yet gets its head anyway, long before its first event.
    let gw = gateway(&warden, &fake(head_then_silence), &[]);
    let mut client = sse_call(&gw.url);
    let mut seen = Vec::new();
    read_until(
        &mut client,
        &mut seen,
        "\r\n\r\n",
        "the head must not wait for the first event",
    );
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(
        !text.contains("\"result\""),
        "the event cannot be there yet: {text}"
    );
    HEAD_SEEN.store(true, std::sync::atomic::Ordering::SeqCst);
    read_until(&mut client, &mut seen, "\"result\"", "the event, once sent");
}

/// A raw connection to the gateway at `url` that has sent a `tools/call` accepting SSE.
fn sse_call(url: &str) -> TcpStream {
    let mut client = TcpStream::connect(authority(url)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .write_all(head(&call(1, "slow"), "accept: text/event-stream\r\n").as_bytes())
        .unwrap();
    client
}

/// Reads from `conn` into `seen` until it holds `needle`; `what` is what failed to come.
fn read_until(conn: &mut TcpStream, seen: &mut Vec<u8>, needle: &str, what: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(needle) {
        let n = conn.read(&mut buf).expect(what);
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(seen));
        seen.extend_from_slice(&buf[..n]);
    }
}

/// Counts the requests the HTTP/1.1 test's upstream got.
static HTTP1_SEEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Answers every call with how many body bytes it got, then closes the connection without
/// having said so (as Node does to idle kept-alive connections).
fn body_length(conn: &mut TcpStream, body: &str) {
    HTTP1_SEEN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let id = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null);
    let text = format!("got {} bytes", body.len());
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}})
        .to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
        answer.len()
    );
}

/// Writes `bytes` to the gateway and reads until it closes (or 5 s pass).
fn raw_via(addr: &str, via: Via<'_>, bytes: &[u8]) -> String {
    let mut s = open(addr, via);
    s.write_all(bytes).unwrap();
    s.flush().unwrap();
    let mut out = Vec::new();
    // A TLS peer that closes without close_notify is an error to rustls; what came counts.
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn head(body: &str, extra: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn requests_are_read_strictly_chunked_pipelined_continued_and_in_http_1_0() {
    let warden = support::warden().expect("warden binary");
    let gw = gateway(&warden, &fake(body_length), &[]);
    strict_reading(&authority(&gw.url), Via::Plain);
}

#[test]
fn requests_are_read_as_strictly_over_tls() {
    let warden = support::warden().expect("warden binary");
    let (gw, ca) = tls_gateway(&warden, &fake(body_length), &[]);
    strict_reading(&authority(&gw.url), Via::Tls(&ca));
}

fn strict_reading(addr: &str, via: Via<'_>) {
    let raw = |addr: &str, bytes: &[u8]| raw_via(addr, via, bytes);
    let addr = addr.to_owned();

    // A chunked body is read whole, decided, and forwarded with its length.
    let body = call(1, "echo");
    let (a, b) = body.split_at(10);
    let chunked = format!(
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let answer = raw(&addr, chunked.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.contains(&format!("got {} bytes", body.len())),
        "{answer}"
    );
    // ... and a hidden tool in one is refused like any other.
    let body = call(2, "secret_thing");
    let chunked = format!(
        "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\naccept: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let answer = raw(&addr, chunked.as_bytes());
    assert!(!answer.contains("bytes"), "forwarded: {answer}");
    assert!(answer.contains("secret_thing"), "{answer}");

    // Two requests in one write: two answers, in order.
    let both = head(&call(7, "echo"), "") + &head(&call(8, "echo"), "connection: close\r\n");
    let answer = raw(&addr, both.as_bytes());
    let (first, second) = (answer.find(r#""id":7"#), answer.find(r#""id":8"#));
    assert!(
        first.is_some() && second.is_some() && first < second,
        "{answer}"
    );
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");

    // `Expect: 100-continue`: the client is told to go on before it sends the body.
    let body = call(9, "echo");
    let mut s = open(&addr, via);
    let request = head(&body, "expect: 100-continue\r\nconnection: close\r\n");
    let (head_only, _) = request.split_at(request.len() - body.len());
    s.write_all(head_only.as_bytes()).unwrap();
    s.flush().unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).unwrap();
    s.flush().unwrap();
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest);
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");

    // HTTP/1.0: answered with a length, then closed.
    let body = call(10, "echo");
    let request = format!(
        "POST /mcp HTTP/1.0\r\ncontent-type: application/json\r\naccept: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(&addr, request.as_bytes());
    assert!(answer.contains(r#""id":10"#), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");

    // What two HTTP readers could read two ways is refused, and never reaches the upstream.
    let seen = HTTP1_SEEN.load(std::sync::atomic::Ordering::SeqCst);
    let smuggled = call(11, "secret_thing");
    for request in [
        format!(
            "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /mcp HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n{smuggled}"
        ),
        format!(
            "POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\ncontent-length: 30\r\n\r\n{smuggled}"
        ),
        "POST /mcp HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"
            .to_owned(),
        "POST /mcp HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}".to_owned(),
    ] {
        let answer = raw(&addr, request.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{request:?}: {answer}"
        );
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        assert_eq!(rpc_error(body)["error"]["code"], -32600, "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
    }
    assert_eq!(
        HTTP1_SEEN.load(std::sync::atomic::Ordering::SeqCst),
        seen,
        "a refused request reached the upstream"
    );
}

#[test]
fn an_upstream_that_closes_kept_alive_connections_costs_no_call_an_error() {
    let warden = support::warden().expect("warden binary");
    // Every upstream connection carries one answer and is then closed, unannounced.
    let gw = gateway(&warden, &fake(body_length), &[]);
    for i in 0..40u64 {
        let (status, _, body) = post(&gw.url, &call(i, "echo"), &[]);
        assert_eq!(status, 200, "call {i}: {body}");
        assert!(body.contains("bytes"), "call {i}: {body}");
        if i % 4 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

static STREAM_SAW_CLOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts an SSE answer, then waits for the gateway to hang up on it.
fn sse_then_wait(conn: &mut TcpStream, _: &str) {
    let event = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n";
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n",
        event.len()
    );
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    if matches!(conn.read(&mut buf), Ok(0) | Err(_)) {
        STREAM_SAW_CLOSE.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_client_that_leaves_a_stream_closes_the_upstream_stream() {
    let warden = support::warden().expect("warden binary");
    let gw = gateway(&warden, &fake(sse_then_wait), &[]);
    let mut client = sse_call(&gw.url);
    read_until(
        &mut client,
        &mut Vec::new(),
        "notifications/progress",
        "the first event",
    );
    drop(client);
    wait_for(&STREAM_SAW_CLOSE, "the upstream stream outlived its client");
}

/// An answer written as rmcp writes one: the head with an SSE priming event, then, a moment
/// later, the result and the end.
fn priming_then_result(conn: &mut TcpStream, body: &str) {
    let _ = conn.set_nodelay(true);
    let id = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null);
    let priming = "data: \nid: 0\nretry: 3000\n\n";
    let _ = write!(conn, "{SSE_HEAD}{:x}\r\n{priming}\r\n", priming.len());
    std::thread::sleep(Duration::from_millis(3));
    let event = format!(
        "data: {}\n\n",
        json!({"jsonrpc": "2.0", "id": id, "result": {}})
    );
    let _ = write!(conn, "{:x}\r\n{event}\r\n0\r\n\r\n", event.len());
}

/// hyper's pooled client (the one under reqwest, and so under rmcp's client) keeps making
/// back-to-back calls on its one kept-alive connection. Passed on piece by piece, answers
/// like rmcp's let busy clients see an answer's end before its connection was idle again,
/// and they opened a new connection every few calls (under `proxy_compare`'s load, one per
/// 5-8 calls; nginx and haproxy: none).
#[test]
fn pooled_clients_keep_one_connection_each_for_back_to_back_calls() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;

    const CLIENTS: u64 = 16;
    const CALLS: u64 = 30;
    let warden = support::warden().expect("warden binary");
    let admin_port = support::free_port();
    let admin = format!("127.0.0.1:{admin_port}");
    let gw = gateway(
        &warden,
        &fake(priming_then_result),
        &["--admin", &admin, "--admin-token", "admin-secret"],
    );
    // As an agent host runs them: many clients on one event loop, each with its own pool.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let clients = (0..CLIENTS).map(|_| {
            let url = gw.url.clone();
            tokio::spawn(async move {
                let client: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(1)
                        .build(HttpConnector::new());
                for id in 1..=CALLS {
                    let req = http::Request::post(&url)
                        .header("content-type", "application/json")
                        .header("accept", "application/json, text/event-stream")
                        .body(Full::new(Bytes::from(call(id, "echo"))))
                        .unwrap();
                    let resp = client.request(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let body = resp.into_body().collect().await.unwrap().to_bytes();
                    let body = String::from_utf8_lossy(&body);
                    assert!(body.contains(&format!("\"id\":{id}")), "{body}");
                }
            })
        });
        for c in clients.collect::<Vec<_>>() {
            c.await.unwrap();
        }
    });
    let (status, _, metrics) = support::http(
        &format!("http://{admin}"),
        "GET",
        "/metrics",
        &[("authorization", "Bearer admin-secret")],
        "",
    );
    assert_eq!(status, 200, "{metrics}");
    let accepted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("warden_connections_accepted_total "))
        .unwrap_or_else(|| panic!("no connection count: {metrics}"))
        .trim()
        .parse()
        .unwrap();
    // One each, and a few more for a machine so loaded that an answer's pieces came further
    // apart than the gateway waits to gather them (20 ms).
    assert!(
        accepted <= CLIENTS + 4,
        "{CLIENTS} pooled clients made {accepted} connections for {} calls",
        CLIENTS * CALLS
    );
}
