//! Traces (issue 29): every MCP message through `warden serve` as an OpenTelemetry span,
//! exported over OTLP/HTTP to a receiver in the test (tests/otlp.rs decodes it with the
//! `opentelemetry-proto` types), joined to the client's trace and handed on to the server's.

mod otlp;
mod pki;
mod redis_server;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use otlp::{Received, Receiver};
use serde_json::Value;

const POLICY: &str = r#"version 1
default deny
allow echo
allow slow_fail

tool create_token {
  limit 2 per minute per grant
}

tool transfer {
  require approval timeout 60 seconds
}
"#;

/// The client's trace: the SDK carries it in `params._meta.traceparent`.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID: &str = "00f067aa0ba902b7";
/// Session B's, in the `traceparent` header.
const HEADER_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const HEADER_SPAN_ID: &str = "b7ad6b7169203331";
/// In every argument: it must appear in no span.
const SECRET: &str = "argvalue-9f3Kq";

fn traced_upstream(record: &Path) -> support::Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_traced_mcp"));
    cmd.args(["--listen", "127.0.0.1:0", "--record"])
        .arg(record);
    support::start(cmd)
}

/// The server span (the gateway's own) of `name` in `trace`.
fn server_spans<'a>(spans: &'a [Received], trace: &str, name: &str) -> Vec<&'a Received> {
    spans
        .iter()
        .filter(|s| s.trace_id() == trace && s.span.name == name && s.span.kind == 2)
        .collect()
}

fn approve_when_asked(admin: String) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let auth = [("authorization", "Bearer admin-secret")];
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let (_, _, body) = support::http(&admin, "GET", "/approvals", &auth, "");
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if let Some(id) = v["pending"][0]["id"].as_str() {
                let path = format!("/approvals/{id}/approve");
                let (status, _, body) = support::http(&admin, "POST", &path, &auth, "");
                assert_eq!(status, 200, "{body}");
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no approval was asked within 60 s");
    })
}

#[test]
fn each_decision_is_a_span_under_the_clients_trace_and_the_server_sees_the_gateways() {
    let (Some(warden), Some(python)) = (support::warden(), support::python()) else {
        return;
    };
    let dir = support::scratch("traces");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let record = dir.join("upstream.jsonl");
    let upstream = traced_upstream(&record);
    let receiver = Receiver::start(0);
    let admin_port = support::free_port();
    let audit = dir.join("audit.jsonl");
    let mut cmd = support::serve_command(&warden, &policy, &upstream.url);
    cmd.args(support::ALICE_AND_BOB)
        .args(["--admin", &format!("127.0.0.1:{admin_port}")])
        .args(["--admin-token", "admin-secret", "--audit"])
        .arg(&audit)
        .args(["--otlp-endpoint", &receiver.url])
        // Export every 100 ms rather than every 5 s, so the test need not wait.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_SERVICE_NAME", "warden-e2e")
        // A vendor's key, percent-encoded as the specification has it.
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-api-key=k%3Dvendor%2Csecret , x-team=ops",
        );
    let gw = support::start(cmd);
    let approver = approve_when_asked(format!("http://127.0.0.1:{admin_port}"));
    let out = support::run_python(
        &python,
        "traces_scenario.py",
        &[
            &format!("{}/mcp", gw.url),
            "alice-token",
            TRACE_ID,
            SPAN_ID,
            HEADER_TRACE_ID,
            HEADER_SPAN_ID,
            SECRET,
        ],
    );
    approver.join().unwrap();
    let errors: Vec<bool> = out["a"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["error"].as_bool().unwrap())
        .collect();
    // echo, reboot_instance (denied), create_token ×3 (the third limited), transfer.
    assert_eq!(errors, [false, true, false, false, true, false], "{out}");
    assert_eq!(out["b"][0]["error"], false, "{out}");

    let spans = receiver.wait_for(20, |s| {
        server_spans(s, TRACE_ID, "tools/call transfer").len() == 1
            && server_spans(s, HEADER_TRACE_ID, "tools/call echo").len() == 1
    });
    let names: Vec<(String, String)> = spans
        .iter()
        .map(|s| (s.trace_id(), s.span.name.clone()))
        .collect();
    assert!(spans.iter().all(|s| s.service == "warden-e2e"), "{names:?}");
    let sent = receiver.last_headers();
    assert_eq!(sent["x-api-key"], "k=vendor,secret");
    assert_eq!(sent["x-team"], "ops");

    // Each call is a server span under the client's own span, with the conventions'
    // attributes and Warden's decision.
    let one = |name: &str| -> Received {
        let found = server_spans(&spans, TRACE_ID, name);
        assert!(!found.is_empty(), "no span {name:?}: {names:?}");
        found[0].clone()
    };
    for (name, tool, decision) in [
        ("tools/call echo", "echo", "allow"),
        ("tools/call reboot_instance", "reboot_instance", "deny"),
        ("tools/call transfer", "transfer", "approved"),
    ] {
        let s = one(name);
        assert_eq!(
            s.parent_id(),
            SPAN_ID,
            "{name}: the client's span is the parent"
        );
        assert_eq!(s.attr("mcp.method.name").as_deref(), Some("tools/call"));
        assert_eq!(s.attr("gen_ai.tool.name").as_deref(), Some(tool));
        assert_eq!(
            s.attr("gen_ai.operation.name").as_deref(),
            Some("execute_tool")
        );
        assert_eq!(s.attr("network.transport").as_deref(), Some("tcp"));
        assert!(s.attr("mcp.protocol.version").is_some(), "{name}");
        assert!(s.attr("jsonrpc.request.id").is_some(), "{name}");
        assert!(s.attr("mcp.session.id").is_some(), "{name}");
        assert_eq!(
            s.attr("warden.decision").as_deref(),
            Some(decision),
            "{name}"
        );
        assert!(s.attr("warden.rule").is_some(), "{name}");
        assert_eq!(s.attr("warden.grant").as_deref(), Some("alice"), "{name}");
    }
    let denied = one("tools/call reboot_instance");
    assert_eq!(denied.attr("error.type").as_deref(), Some("tool_error"));
    let status = denied.span.status.clone().unwrap_or_default();
    assert_eq!(status.code, 2, "a denial is an error span");
    assert!(status.message.contains("not allowed"), "{status:?}");

    let tokens = server_spans(&spans, TRACE_ID, "tools/call create_token");
    assert_eq!(tokens.len(), 3, "{names:?}");
    let decisions: Vec<String> = tokens
        .iter()
        .map(|s| s.attr("warden.decision").unwrap_or_default())
        .collect();
    assert_eq!(
        decisions.iter().filter(|d| *d == "allow").count(),
        2,
        "{decisions:?}"
    );
    let limited = tokens
        .iter()
        .find(|s| s.attr("warden.decision").as_deref() == Some("limited"))
        .expect("a limited call");
    assert!(limited.attr("warden.limit.counter").is_some());
    assert!(limited.attr("warden.limit.retry_after_s").is_some());
    let allowed = tokens
        .iter()
        .find(|s| s.attr("warden.decision").as_deref() == Some("allow"))
        .unwrap();
    assert!(allowed.attr("warden.limit.counters").is_some());
    assert!(allowed.attr("warden.limit.remaining").is_some());

    // The approval's wait is a child of the call's span.
    let transfer = one("tools/call transfer");
    let wait = spans
        .iter()
        .find(|s| s.span.name == "warden approval")
        .expect("an approval span");
    assert_eq!(wait.parent_id(), transfer.span_id());
    assert_eq!(
        wait.attr("warden.approval.answer").as_deref(),
        Some("approved")
    );

    // The upstream call is a client span under the call's; the server got its context,
    // in the header and in `_meta`.
    let echo = one("tools/call echo");
    let upstream_span = spans
        .iter()
        .find(|s| s.parent_id() == echo.span_id() && s.span.kind == 3)
        .expect("a client span for the upstream call");
    assert_eq!(upstream_span.span.name, "tools/call echo");
    let want = format!("00-{TRACE_ID}-{}-01", upstream_span.span_id());
    let seen: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first_echo = seen
        .iter()
        .find(|c| c["tool"] == "echo")
        .expect("echo reached the server");
    assert_eq!(first_echo["header"], want, "{seen:?}");
    assert_eq!(first_echo["meta"], want, "{seen:?}");
    assert!(
        seen.iter().all(|c| c["tool"] != "reboot_instance"),
        "a denied call never reaches the server"
    );

    // Session B: the header's trace.
    let b = &server_spans(&spans, HEADER_TRACE_ID, "tools/call echo")[0];
    assert_eq!(b.parent_id(), HEADER_SPAN_ID);

    // Nothing exported holds a token or an argument's value.
    let raw = receiver.raw();
    let holds = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!holds(SECRET), "an argument value reached a span");
    assert!(!holds("alice-token"), "a token reached a span");

    // The audit line names the trace, so a person can go from a denial to its trace.
    let audit = std::fs::read_to_string(&audit).unwrap();
    let denial = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|l| l["fields"]["tool"] == "reboot_instance" || l["tool"] == "reboot_instance")
        .unwrap_or_else(|| panic!("no audit line for the denial: {audit}"));
    let text = denial.to_string();
    assert!(text.contains(TRACE_ID), "{text}");
}

/// RSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `n` echo calls on one kept-alive connection; the slowest one's time.
fn calls(url: &str, sid: &str, n: u32, first_id: u32) -> Duration {
    let mut slowest = Duration::ZERO;
    for i in 0..n {
        let started = Instant::now();
        let text = support::call_text(
            url,
            "alice-token",
            sid,
            first_id + i,
            "echo",
            serde_json::json!({"text": "x"}),
        );
        assert!(text.contains('x'), "{text}");
        slowest = slowest.max(started.elapsed());
    }
    slowest
}

/// The sum of a metric's samples whose line starts with `name`, and the lines about traces.
fn metric(admin: &str, name: &str) -> (f64, String) {
    let (_, _, body) = support::http(
        admin,
        "GET",
        "/metrics",
        &[("authorization", "Bearer admin-secret")],
        "",
    );
    let sum = body
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let lines: Vec<&str> = body.lines().filter(|l| l.contains("trace")).collect();
    (sum, lines.join("\n"))
}

#[test]
fn a_collector_that_goes_away_costs_calls_nothing_and_its_spans_are_dropped_and_counted() {
    let Some(warden) = support::warden() else {
        return;
    };
    let dir = support::scratch("traces-down");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = traced_upstream(&dir.join("upstream.jsonl"));
    let mut receiver = Receiver::start(0);
    let admin_port = support::free_port();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let mut cmd = support::serve_command(&warden, &policy, &upstream.url);
    cmd.args(support::ALICE_AND_BOB)
        .args(["--admin", &format!("127.0.0.1:{admin_port}")])
        .args(["--admin-token", "admin-secret"])
        .args(["--otlp-endpoint", &receiver.url])
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_BSP_MAX_QUEUE_SIZE", "64");
    let gw = support::start(cmd);
    let sid = support::session(&gw.url, "alice-token");
    calls(&gw.url, &sid, 50, 10);
    let spans = receiver.wait_for(20, |s| s.len() >= 100);
    assert!(
        spans.len() >= 100,
        "spans arrive while the collector is up: {}",
        spans.len()
    );

    let port: u16 = receiver.url.rsplit(':').next().unwrap().parse().unwrap();
    receiver.stop();
    // First a collector that takes connections and never answers (exports wait out their
    // 10 s timeout: the queue of 64 fills), then none at all (refused at once).
    let hanging = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    hanging.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let held = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut open = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match hanging.accept() {
                    Ok((tcp, _)) => open.push(tcp),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            // Returning closes the port and every connection held.
        })
    };
    // Calls go on at their pace all the while: none waits for an export, the spans are
    // dropped and counted, and the gateway's memory stays where it was.
    let slowest = calls(&gw.url, &sid, 600, 1000);
    let (queue_full, lines) = metric(
        &admin,
        "warden_trace_spans_dropped_total{reason=\"queue_full\"}",
    );
    assert!(
        queue_full >= 500.0,
        "a hanging collector fills the queue, and what does not fit is counted: {queue_full}\n{lines}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    held.join().unwrap();
    let rss_before = rss_kib(gw.child.id());
    let slowest_after = calls(&gw.url, &sid, 600, 3000);
    let rss_after = rss_kib(gw.child.id());
    assert!(
        slowest.max(slowest_after) < Duration::from_secs(2),
        "a call waited for the collector: {slowest:?}, {slowest_after:?}"
    );
    // Two spans a call (the gateway's and the upstream call's).
    let (dropped, lines) = metric(&admin, "warden_trace_spans_dropped_total");
    assert!(
        dropped >= 2000.0,
        "dropped spans are counted: {dropped}\n{lines}"
    );
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew by {} KiB over 600 calls with the collector down",
        rss_after.saturating_sub(rss_before)
    );

    // Back: spans arrive again.
    let back = Receiver::start(port);
    calls(&gw.url, &sid, 20, 9000);
    let spans = back.wait_for(30, |s| !s.is_empty());
    assert!(!spans.is_empty(), "no span after the collector came back");
}

#[test]
fn warden_stdio_spans_each_message_and_hands_the_context_on_in_meta() {
    let Some(warden) = support::warden() else {
        return;
    };
    let dir = support::scratch("traces-stdio");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let record = dir.join("upstream.jsonl");
    let receiver = Receiver::start(0);
    let mut child = Command::new(&warden)
        .args(["stdio", "--policy"])
        .arg(&policy)
        .args(["--otlp-endpoint", &receiver.url])
        .args([
            "--",
            env!("CARGO_BIN_EXE_traced_mcp"),
            "--stdio",
            "--record",
        ])
        .arg(&record)
        .env("WARDEN_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let parent = format!("00-{TRACE_ID}-{SPAN_ID}-01");
    let lines = [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}}"#.to_owned(),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned(),
        format!(r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{SECRET}"}},"_meta":{{"traceparent":"{parent}"}}}}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"reboot_instance","arguments":{{"text":"{SECRET}"}},"_meta":{{"traceparent":"{parent}"}}}}}}"#),
        format!(r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"slow_fail","arguments":{{"text":"{SECRET}"}},"_meta":{{"traceparent":"{parent}"}}}}}}"#),
    ];
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut answers = std::collections::BTreeMap::new();
    for line in &lines {
        use std::io::Write;
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        if let Some(id) = serde_json::from_str::<Value>(line).unwrap()["id"].as_u64() {
            while !answers.contains_key(&id) {
                let v = rx.recv_timeout(Duration::from_secs(30)).expect("an answer");
                if let Some(got) = v["id"].as_u64() {
                    answers.insert(got, v);
                }
            }
        }
    }
    assert_eq!(
        answers[&2]["result"]["content"][0]["text"], SECRET,
        "{answers:?}"
    );
    assert_eq!(answers[&3]["result"]["isError"], true, "{answers:?}");
    assert_eq!(answers[&4]["result"]["isError"], true, "{answers:?}");
    // The client leaves: warden stdio sends what is queued before it exits.
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "warden stdio exits as its server did: {status:?}"
    );
    let spans = receiver.wait_for(10, |s| {
        s.iter()
            .any(|s| s.span.name == "tools/call reboot_instance")
            && s.iter()
                .filter(|s| s.span.name == "tools/call slow_fail")
                .count()
                == 2
    });
    let names: Vec<String> = spans.iter().map(|s| s.span.name.clone()).collect();
    let echo = server_spans(&spans, TRACE_ID, "tools/call echo");
    assert_eq!(echo.len(), 1, "{names:?}");
    let echo = echo[0];
    assert_eq!(echo.parent_id(), SPAN_ID);
    assert_eq!(echo.attr("network.transport").as_deref(), Some("pipe"));
    assert_eq!(echo.attr("warden.decision").as_deref(), Some("allow"));
    let denied = &server_spans(&spans, TRACE_ID, "tools/call reboot_instance")[0];
    assert_eq!(denied.attr("warden.decision").as_deref(), Some("deny"));
    // A forwarded call's spans end with the server's answer, which says how it went: the
    // tool took 300 ms and failed.
    let failed = &server_spans(&spans, TRACE_ID, "tools/call slow_fail")[0];
    assert_eq!(failed.attr("warden.decision").as_deref(), Some("allow"));
    assert_eq!(failed.attr("error.type").as_deref(), Some("tool_error"));
    let took = |s: &Received| s.span.end_time_unix_nano - s.span.start_time_unix_nano;
    assert!(took(failed) >= 300_000_000, "{} ns", took(failed));
    let upstream = spans
        .iter()
        .find(|s| s.span.name == "tools/call slow_fail" && s.parent_id() == failed.span_id())
        .expect("the upstream call's span");
    assert!(took(upstream) >= 300_000_000, "{} ns", took(upstream));
    // Messages without a trace context are spans too, each the root of its own trace.
    assert!(names.iter().any(|n| n == "initialize"), "{names:?}");
    assert!(
        names.iter().any(|n| n == "notifications/initialized"),
        "{names:?}"
    );
    // Through a stdio server, `_meta` carries the context: the upstream call's span is
    // the server's parent.
    let upstream_span = spans
        .iter()
        .find(|s| s.parent_id() == echo.span_id() && s.span.kind == 3)
        .expect("the upstream call's span");
    let seen: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tools: Vec<&str> = seen.iter().filter_map(|s| s["tool"].as_str()).collect();
    assert_eq!(
        tools,
        ["echo", "slow_fail"],
        "only the allowed calls reached the server: {seen:?}"
    );
    assert_eq!(
        seen[0]["meta"],
        format!("00-{TRACE_ID}-{}-01", upstream_span.span_id()),
        "{seen:?}"
    );
    let raw = receiver.raw();
    assert!(!raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
}

#[test]
fn the_round_trip_to_redis_is_a_child_span_of_the_call_it_charges() {
    let Some(warden) = support::warden() else {
        return;
    };
    let redis = redis_server::RedisServer::start();
    let dir = support::scratch("traces-redis");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = traced_upstream(&dir.join("upstream.jsonl"));
    let receiver = Receiver::start(0);
    let mut cmd = support::serve_command(&warden, &policy, &upstream.url);
    cmd.args(support::ALICE_AND_BOB)
        .args(["--redis", &redis.url()])
        .args(["--otlp-endpoint", &receiver.url])
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let gw = support::start(cmd);
    let sid = support::session(&gw.url, "alice-token");
    let auth = "Bearer alice-token";
    let parent = format!("00-{HEADER_TRACE_ID}-{HEADER_SPAN_ID}-01");
    let mut h = support::mcp_headers(auth, Some(&sid));
    h.push(("traceparent", &parent));
    let body = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"create_token","arguments":{"text":"x"}}}"#;
    let (status, _, raw) = support::http(&gw.url, "POST", "/mcp", &h, body);
    assert_eq!(status, 200, "{raw}");
    assert!(raw.contains("token for"), "{raw}");
    let spans = receiver.wait_for(20, |s| s.iter().any(|s| s.span.name == "warden counters"));
    let names: Vec<String> = spans.iter().map(|s| s.span.name.clone()).collect();
    let call = server_spans(&spans, HEADER_TRACE_ID, "tools/call create_token");
    assert_eq!(call.len(), 1, "{names:?}");
    let store = spans
        .iter()
        .find(|s| s.span.name == "warden counters")
        .unwrap_or_else(|| panic!("no span for the Redis round trip: {names:?}"));
    assert_eq!(store.parent_id(), call[0].span_id());
    assert_eq!(store.span.kind, 3, "a client span");
    assert_eq!(store.attr("db.system.name").as_deref(), Some("redis"));
    assert!(call[0].attr("warden.limit.counters").is_some());
}

#[test]
fn an_approval_asked_in_the_mcp_client_is_a_span_and_the_call_goes_on_under_the_upstream_span() {
    let (Some(warden), Some(python)) = (support::warden(), support::python()) else {
        return;
    };
    let upstream = support::conformance_server(&python);
    let dir = support::scratch("traces-elicit");
    let policy = dir.join("policy.pol");
    std::fs::write(
        &policy,
        "version 1\ndefault allow\n\ntool test_simple_text {\n  require approval via client timeout 30 seconds\n}\n",
    )
    .unwrap();
    let receiver = Receiver::start(0);
    let mut cmd = support::serve_command(&warden, &policy, &upstream.url);
    cmd.args(support::ALICE_AND_BOB)
        .args(["--otlp-endpoint", &receiver.url])
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let gw = support::start(cmd);
    let out = support::run_python(
        &python,
        "elicit_scenario.py",
        &[
            &format!("{}/mcp", gw.url),
            "legacy",
            "alice-token",
            r#"["accept"]"#,
            r#"[["test_simple_text", {}]]"#,
        ],
    );
    assert_eq!(out["calls"][0]["is_error"], false, "{out:#}");
    let spans = receiver.wait_for(20, |s| {
        s.iter().any(|s| s.span.name == "warden approval")
            && s.iter()
                .any(|s| s.span.name == "tools/call test_simple_text" && s.span.kind == 3)
    });
    let names: Vec<String> = spans.iter().map(|s| s.span.name.clone()).collect();
    let call = spans
        .iter()
        .find(|s| s.span.name == "tools/call test_simple_text" && s.span.kind == 2)
        .unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(call.attr("warden.decision").as_deref(), Some("approved"));
    let wait = spans
        .iter()
        .find(|s| s.span.name == "warden approval")
        .unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(wait.parent_id(), call.span_id());
    assert_eq!(wait.attr("warden.approval.via").as_deref(), Some("client"));
    assert_eq!(
        wait.attr("warden.approval.answer").as_deref(),
        Some("approved")
    );
    let forwarded = spans
        .iter()
        .find(|s| s.span.name == "tools/call test_simple_text" && s.span.kind == 3)
        .unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(forwarded.parent_id(), call.span_id());
}

#[test]
fn trace_settings_the_gateway_cannot_follow_stop_the_start_with_the_reason() {
    let Some(warden) = support::warden() else {
        return;
    };
    let dir = support::scratch("traces-bad");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let run = |flags: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(&warden)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-auth"])
            .args(["--upstream", "http://127.0.0.1:9/mcp", "--policy"])
            .arg(&policy)
            .args(flags)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flags:?} {env:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let why = run(&["--otlp-endpoint", "ftp://collector"], &[]);
    assert!(
        why.contains("--otlp-endpoint") && why.contains("http://"),
        "{why}"
    );
    let why = run(
        &["--otlp-endpoint", "http://127.0.0.1:4317"],
        &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
    );
    assert!(why.contains("http/protobuf"), "{why}");
    let why = run(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
        ],
    );
    assert!(why.contains("OTEL_TRACES_EXPORTER=zipkin"), "{why}");
    let collector = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")];
    let why = run(
        &[],
        &[collector[0], ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")],
    );
    assert!(
        why.contains("OTEL_EXPORTER_OTLP_COMPRESSION=gzip") && why.contains("uncompressed"),
        "{why}"
    );
    let why = run(
        &[],
        &[collector[0], ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "5s")],
    );
    assert!(
        why.contains("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=5s") && why.contains("milliseconds"),
        "{why}"
    );
    // A header that cannot be sent is named by its key; its value (a secret) is not shown.
    let why = run(
        &[],
        &[
            collector[0],
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=sec%0Aret"),
        ],
    );
    assert!(
        why.contains("OTEL_EXPORTER_OTLP_HEADERS")
            && why.contains("\"api-key\"")
            && !why.contains("sec"),
        "{why}"
    );
    let why = run(
        &[],
        &[collector[0], ("OTEL_EXPORTER_OTLP_HEADERS", "api-key")],
    );
    assert!(why.contains("key=value"), "{why}");
    let why = run(
        &[],
        &[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "collector:4318/v1/traces",
        )],
    );
    assert!(why.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), "{why}");
    assert!(why.contains("\"collector:4318/v1/traces\""), "{why}");
}

#[test]
fn spans_go_to_an_https_collector_verified_against_the_ca_given() {
    let Some(warden) = support::warden() else {
        return;
    };
    let dir = support::scratch("traces-https");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let ca = pki::Ca::new(&dir, "collector");
    let pair = ca.issue("collector", pki::Leaf::Server);
    let receiver = Receiver::start_tls(pki::server_config(&pair, None));
    let upstream = traced_upstream(&dir.join("upstream.jsonl"));
    let gateway = |trust: Option<&Path>, admin_port: u16| {
        let mut cmd = support::serve_command(&warden, &policy, &upstream.url);
        cmd.args(support::ALICE_AND_BOB)
            .args(["--admin", &format!("127.0.0.1:{admin_port}")])
            .args(["--admin-token", "admin-secret"])
            .args(["--otlp-endpoint", &receiver.url])
            .env("OTEL_BSP_SCHEDULE_DELAY", "100");
        if let Some(ca) = trust {
            cmd.arg("--otlp-ca").arg(ca);
        }
        support::start(cmd)
    };
    // Trusting the collector's CA: the spans arrive.
    let trusted = gateway(Some(&ca.cert_path("collector")), support::free_port());
    let sid = support::session(&trusted.url, "alice-token");
    support::call_text(
        &trusted.url,
        "alice-token",
        &sid,
        2,
        "echo",
        serde_json::json!({"text": "x"}),
    );
    let spans = receiver.wait_for(20, |s| s.iter().any(|s| s.span.name == "tools/call echo"));
    assert!(
        spans.iter().any(|s| s.span.name == "tools/call echo"),
        "no span over https"
    );
    drop(trusted);

    // Trusting only Mozilla's roots, the test CA's certificate is refused: nothing arrives,
    // and what was not sent is counted.
    let before = receiver.count();
    let admin_port = support::free_port();
    let untrusted = gateway(None, admin_port);
    let sid = support::session(&untrusted.url, "alice-token");
    support::call_text(
        &untrusted.url,
        "alice-token",
        &sid,
        2,
        "echo",
        serde_json::json!({"text": "x"}),
    );
    let admin = format!("http://127.0.0.1:{admin_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let failed = loop {
        let (failed, lines) = metric(
            &admin,
            "warden_trace_spans_dropped_total{reason=\"export_failed\"}",
        );
        if failed > 0.0 {
            break failed;
        }
        assert!(
            Instant::now() < deadline,
            "no failed export counted: {lines}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(failed >= 1.0);
    assert_eq!(
        receiver.count(),
        before,
        "a collector the gateway cannot verify got spans"
    );

    // A CA with a plain http:// collector is a mistake, said at start.
    let out = Command::new(&warden)
        .args(["serve", "--listen", "127.0.0.1:0", "--no-auth"])
        .args(["--upstream", &upstream.url, "--policy"])
        .arg(&policy)
        .args(["--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-ca"])
        .arg(ca.cert_path("collector"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        why.contains("--otlp-ca goes with an https:// collector"),
        "{why}"
    );
}
