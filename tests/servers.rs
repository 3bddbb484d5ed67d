//! One `warden serve` in front of several MCP servers from one `warden.toml` (issue 28, as
//! far as it goes): server-everything and the rmcp example, each at `/mcp/NAME` with its
//! own policy; a limit in one server's policy never charges the other's calls (in Redis,
//! where both policies name the same counter); every audit line names its server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod redis_server;
mod support;

use std::process::Command;

use serde_json::{Value, json};

const EVERYTHING: &str = "version 1\ndefault deny\nallow echo\ntool get-sum {\n  limit 2 per minute per grant as calls\n}\n";
const RMCP: &str = "version 1\ndefault deny\ntool add {\n  limit 2 per minute per grant as calls\n}\ntool create_token {\n  require approval timeout 20 seconds\n}\n";

#[test]
fn two_servers_behind_one_gateway_each_with_its_policy_and_counters() {
    let warden = support::warden().expect("warden binary");
    let everything = support::everything().expect("server-everything");
    let redis = redis_server::RedisServer::start();
    let dir = support::scratch("servers");
    std::fs::write(dir.join("everything.pol"), EVERYTHING).unwrap();
    std::fs::write(dir.join("rmcp.pol"), RMCP).unwrap();
    let ev = support::start_everything(&everything);
    let rmcp = rmcp_example();
    let admin = support::free_port();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:0"
grant-token = ["alice=alice-token"]
audit = "{audit}"
redis = "{redis}"
redis-prefix = "servers-e2e:"
record = "{record}"
admin = "127.0.0.1:{admin}"
admin-token = "admin-secret"

[servers.everything]
url = "{ev}"
policy = "everything.pol"

[servers.rmcp]
url = "{rmcp}"
policy = "rmcp.pol"
timeout = 20
"#,
            audit = dir.join("audit.jsonl").display(),
            record = dir.join("calls.jsonl").display(),
            redis = redis.url(),
            ev = ev.url,
            rmcp = rmcp.url,
        ),
    )
    .unwrap();
    let stdout = support::check_passes(&warden, &config);
    assert!(stdout.contains("2 server(s): everything with"), "{stdout}");

    let gw = serve_config(&warden, &config);
    let (ev_url, rmcp_url) = (
        format!("{}/mcp/everything", gw.url),
        format!("{}/mcp/rmcp", gw.url),
    );

    // Each endpoint is its own server, under its own policy.
    let call = |base: &str, sid: &str, id: u32, tool: &str, args: Value| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}})
        .to_string();
        let auth = "Bearer alice-token".to_owned();
        let h = support::mcp_headers(&auth, Some(sid));
        let path = base.trim_start_matches(&gw.url).to_owned();
        let (status, _, text) = support::http(&gw.url, "POST", &path, &h, &body);
        assert_eq!(status, 200, "{text}");
        text
    };
    let ev_sid = session(&gw.url, "/mcp/everything");
    let rmcp_sid = session(&gw.url, "/mcp/rmcp");
    let text = call(&ev_url, &ev_sid, 2, "echo", json!({"message": "one"}));
    assert!(text.contains("Echo: one"), "{text}");
    let text = call(&rmcp_url, &rmcp_sid, 2, "echo", json!({"text": "two"}));
    assert!(
        text.contains("POLICY DENIED"),
        "rmcp's policy allows no echo: {text}"
    );
    let text = call(&rmcp_url, &rmcp_sid, 3, "add", json!({"a": 2, "b": 3}));
    assert!(text.contains('5'), "{text}");

    // Both policies limit a counter named `calls` to 2 a minute: each server has its own.
    let text = call(&rmcp_url, &rmcp_sid, 4, "add", json!({"a": 1, "b": 1}));
    assert!(!text.contains("POLICY DENIED"), "{text}");
    let text = call(&rmcp_url, &rmcp_sid, 5, "add", json!({"a": 1, "b": 1}));
    assert!(
        text.contains("POLICY DENIED"),
        "the third add passed: {text}"
    );
    for id in 10..12 {
        let text = call(&ev_url, &ev_sid, id, "get-sum", json!({"a": 1, "b": 2}));
        assert!(
            text.contains('3') && !text.contains("POLICY DENIED"),
            "rmcp's calls charged everything's: {text}"
        );
    }
    let text = call(&ev_url, &ev_sid, 12, "get-sum", json!({"a": 1, "b": 2}));
    assert!(text.contains("POLICY DENIED"), "{text}");

    // An approval names the server the call is for.
    let asking = {
        let (url, sid) = (rmcp_url.clone(), rmcp_sid.clone());
        let base = gw.url.clone();
        std::thread::spawn(move || {
            let body = r#"{"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"create_token","arguments":{"name":"t"}}}"#;
            let auth = "Bearer alice-token".to_owned();
            let h = support::mcp_headers(&auth, Some(&sid));
            support::http(&base, "POST", url.trim_start_matches(&base), &h, body).2
        })
    };
    let admin_url = format!("http://127.0.0.1:{admin}");
    let bearer = [("authorization", "Bearer admin-secret")];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let pending = loop {
        let (_, _, body) = support::http(&admin_url, "GET", "/approvals", &bearer, "");
        let v: Value = serde_json::from_str(&body).unwrap();
        if let Some(p) = v["pending"].as_array().and_then(|p| p.first()).cloned() {
            break p;
        }
        if asking.is_finished() || std::time::Instant::now() > deadline {
            panic!(
                "no approval asked: {body}; the call answered {:?}",
                asking.join().unwrap()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(pending["server"], "rmcp", "{pending}");
    assert_eq!(pending["tool"], "create_token", "{pending}");
    let id = pending["id"].as_str().unwrap();
    let (status, _, _) = support::http(
        &admin_url,
        "POST",
        &format!("/approvals/{id}/deny"),
        &bearer,
        "",
    );
    assert_eq!(status, 200);
    let text = asking.join().unwrap();
    assert!(text.contains("POLICY DENIED"), "{text}");

    // Metrics count each server's decisions apart.
    let (_, _, metrics) = support::http(&admin_url, "GET", "/metrics", &bearer, "");
    for server in ["everything", "rmcp"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("warden_decisions_total")
                    && l.contains(&format!("server=\"{server}\""))),
            "{metrics}"
        );
    }

    // Another path: a 404 that lists the endpoints.
    let (status, _, body) = support::http(
        &gw.url,
        "POST",
        "/mcp/nope",
        &[
            ("authorization", "Bearer alice-token"),
            ("content-type", "application/json"),
        ],
        "{}",
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("/mcp/everything, /mcp/rmcp"), "{body}");

    // The recording names each call's server; replayed against the same file, every call
    // is decided as it was, each by its server's policy and counters.
    let out = Command::new(&warden)
        .args(["replay", "--policy"])
        .arg(&config)
        .arg(dir.join("calls.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("decided the same, 0 differently"),
        "{stdout}"
    );
    // The same calls against one server's policy alone: everything's calls are not its.
    std::fs::write(
        dir.join("stricter.toml"),
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("policy = \"rmcp.pol\"", "policy = \"everything.pol\""),
    )
    .unwrap();
    let out = Command::new(&warden)
        .args(["replay", "--policy"])
        .arg(dir.join("stricter.toml"))
        .arg(dir.join("calls.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rmcp: add"), "{stdout}");
    // `diff` of the two files: server by server.
    let out = Command::new(&warden)
        .arg("diff")
        .arg(&config)
        .arg(dir.join("stricter.toml"))
        .arg("--fail-on-change")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("== server rmcp: ") && stdout.contains("rmcp.pol → "),
        "{stdout}"
    );
    assert!(
        stdout.contains("allowed → denied") || stdout.contains("→ denied"),
        "{stdout}"
    );

    // Every audit line names its server.
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let server_of = |tool: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.to_string().contains(&format!("\"{tool}\"")))
            .map(|l| l.to_string())
            .collect()
    };
    assert!(
        server_of("get-sum")
            .iter()
            .all(|l| l.contains(r#""server":"everything""#)),
        "{audit}"
    );
    assert!(
        server_of("add")
            .iter()
            .all(|l| l.contains(r#""server":"rmcp""#)),
        "{audit}"
    );
    assert!(!server_of("add").is_empty(), "{audit}");
}

/// Initializes a session at `path`; its id.
fn session(base: &str, path: &str) -> String {
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}}"#;
    let auth = "Bearer alice-token".to_owned();
    let h = support::mcp_headers(&auth, None);
    let (status, headers, body) = support::http(base, "POST", path, &h, init);
    assert_eq!(status, 200, "{body}");
    let sid = headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("session id");
    let h = support::mcp_headers(&auth, Some(&sid));
    let (status, _, _) = support::http(
        base,
        "POST",
        path,
        &h,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(status, 202);
    sid
}

/// server-everything on `port` (the same one again after a restart).
fn everything_on(js: &std::path::Path, port: u16) -> support::Running {
    let child = Command::new("node")
        .arg(js)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start server-everything");
    support::wait_for_port(port);
    support::Running {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

fn wait_for_file(path: &std::path::Path, text: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(path).unwrap_or_default().trim() != text {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never said {text:?}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn one_mcp_endpoint_for_linode_everything_and_rmcp_through_the_python_sdk() {
    let warden = support::warden().expect("warden binary");
    let everything = support::everything().expect("server-everything");
    let linode = support::linode().expect("the Linode MCP server");
    let python = support::python().expect("python with the mcp SDK");
    let dir = support::scratch("servers-aggregate");
    std::fs::write(dir.join("linode.json"), support::page_policy()).unwrap();
    std::fs::write(
        dir.join("everything.pol"),
        "version 1\ndefault deny\nallow echo\n",
    )
    .unwrap();
    std::fs::write(dir.join("rmcp.pol"), "version 1\ndefault deny\nallow add\n").unwrap();

    // The real Linode server as a stdio child of the gateway (one per client session), its
    // API a fake that counts the tokens created.
    let (api, tokens) = support::fake_linode_api();
    let ev_port = support::free_port();
    let mut ev = everything_on(&everything, ev_port);
    let rmcp = rmcp_example();
    let admin = support::free_port();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "grant-token = [\"alice=alice-token\"]\nadmin = \"127.0.0.1:{admin}\"\nadmin-token = \"admin-secret\"\n\n[servers.linode]\ncommand = [\"node\", {linode:?}]\nenv = {{ LINODE_API_TOKEN = \"x\", LINODE_API_ROOT = \"{api}\" }}\npolicy = \"linode.json\"\n\n[servers.everything]\nurl = \"{}\"\npolicy = \"everything.pol\"\n\n[servers.rmcp]\nurl = \"{}\"\npolicy = \"rmcp.pol\"\n",
            ev.url, rmcp.url
        ),
    )
    .unwrap();
    let health = || {
        let (_, _, body) = support::http(
            &format!("http://127.0.0.1:{admin}"),
            "GET",
            "/healthz",
            &[("authorization", "Bearer admin-secret")],
            "",
        );
        serde_json::from_str::<Value>(&body).unwrap()
    };
    let mut cmd = Command::new(&warden);
    cmd.args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .env("WARDEN_LOG", "warn");
    let gw = support::start(cmd);

    let mut calls: Vec<Value> = vec![
        json!(["everything_echo", {"message": "hi"}]),
        json!(["rmcp_add", {"a": 2, "b": 3}]),
    ];
    calls.extend((0..100).map(
        |_| json!(["linode_create_personal_access_token", {"label": "agent", "scopes": ["*"]}]),
    ));
    let control = dir.join("control");
    std::fs::write(&control, "").unwrap();
    let url = format!("{}/mcp", gw.url);
    let calls = Value::Array(calls).to_string();
    let script = {
        let (python, url, calls, control) =
            (python.clone(), url.clone(), calls.clone(), control.clone());
        std::thread::spawn(move || {
            support::run_python(
                &python,
                "aggregate_scenario.py",
                &[&url, "alice-token", &calls, control.to_str().unwrap(), "3"],
            )
        })
    };
    // Round 2 with server-everything down, round 3 with it back on its port.
    wait_for_file(&control, "paused 1");
    drop(ev);
    std::fs::write(&control, "go 1").unwrap();
    wait_for_file(&control, "paused 2");
    // /healthz names the server that is down, and why; the gateway stays in rotation.
    let h = health();
    let down: Vec<&Value> = h["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["ok"] == false)
        .collect();
    assert_eq!(down.len(), 1, "{h}");
    assert_eq!(down[0]["name"], "everything", "{h}");
    assert!(
        down[0]["detail"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{h}"
    );
    ev = everything_on(&everything, ev_port);
    std::fs::write(&control, "go 2").unwrap();
    let out = script.join().unwrap();
    let h = health();
    assert_eq!(h["status"], "ok", "{h}");
    drop(ev);

    // One list of every server's tools, each filtered by its own policy.
    assert_eq!(
        out["tools"],
        json!([
            "everything_echo",
            "linode_create_personal_access_token",
            "rmcp_add"
        ]),
        "{out}"
    );
    let texts = |round: &Value| -> Vec<String> {
        round
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = texts(&out["calls"]);
    assert_eq!(first[0], "Echo: hi");
    assert_eq!(first[1], "5");
    // The page's policy on the Linode server: 30 of 100 pass.
    let passed = first[2..]
        .iter()
        .filter(|t| !t.starts_with("[POLICY DENIED]"))
        .count();
    assert_eq!(passed, 30, "{first:?}");
    assert!(
        first[32].contains("rate limit `create_personal_access_token_rate` reached"),
        "{}",
        first[32]
    );

    // server-everything down: its call fails naming it; the others answer.
    let down = texts(&out["rounds"][0]);
    assert!(down[0].contains("server everything"), "{}", down[0]);
    assert_eq!(out["rounds"][0][0]["is_error"], true);
    assert_eq!(down[1], "5");
    // (Linode's limit refills as GCRA does, one call per two seconds: a later round may
    // get one or two through.)
    // Back: used again in the same client session.
    let back = texts(&out["rounds"][1]);
    assert_eq!(back[0], "Echo: hi", "{back:?}");
    assert_eq!(back[1], "5");
    let later = [&down, &back]
        .iter()
        .map(|r| {
            r[2..]
                .iter()
                .filter(|t| !t.starts_with("[POLICY DENIED]"))
                .count()
        })
        .sum::<usize>();
    assert!(
        later <= 10,
        "the limit did not hold in the later rounds: {later} passed"
    );
    assert_eq!(
        tokens.load(std::sync::atomic::Ordering::SeqCst),
        30 + later,
        "tokens the Linode API created against the calls the gate let through"
    );
}

/// A stdio MCP server for the failure cases: answers `initialize` and `tools/list`, and
/// exits without answering `tools/call`.
const DYING: &str = r#"
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("method") == "initialize":
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "dying", "version": "0"}}}), flush=True)
    elif m.get("method") == "tools/list":
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "result": {"tools": [{"name": "crash", "inputSchema": {"type": "object"}}]}}), flush=True)
    elif m.get("method") == "tools/call":
        sys.exit(3)
"#;

fn post(url: &str, sid: Option<&str>, body: &str) -> (u16, Vec<(String, String)>, String) {
    let auth = "Bearer alice-token".to_owned();
    let h = support::mcp_headers(&auth, sid);
    support::http(url, "POST", "/mcp/echoes", &h, body)
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}}"#;

fn sid_of(headers: &[(String, String)]) -> String {
    headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("session id")
}

#[test]
fn launched_stdio_servers_get_a_child_per_session_bounded_and_a_dead_one_owes_errors() {
    let warden = support::warden().expect("warden binary");
    let everything = support::everything().expect("server-everything");
    let dir = support::scratch("servers-children");
    std::fs::write(
        dir.join("echoes.pol"),
        "version 1\ndefault deny\nallow echo\n",
    )
    .unwrap();
    std::fs::write(dir.join("dying.pol"), "version 1\ndefault allow\n").unwrap();
    std::fs::write(dir.join("dying.py"), DYING).unwrap();
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ngrant-token = [\"alice=alice-token\"]\n\n[servers.echoes]\ncommand = [\"node\", {everything:?}, \"stdio\"]\npolicy = \"echoes.pol\"\nmax-children = 2\n\n[servers.dying]\ncommand = [\"python3\", \"dying.py\"]\ncwd = \".\"\npolicy = \"dying.pol\"\n"
        ),
    )
    .unwrap();
    let gw = serve_config(&warden, &dir.join("warden.toml"));

    // Two sessions, a child each; a third is refused with a JSON-RPC error, not a fork.
    let (status, headers, body) = post(&gw.url, None, INIT);
    assert_eq!(status, 200, "{body}");
    let a = sid_of(&headers);
    let (status, headers, body) = post(&gw.url, None, INIT);
    assert_eq!(status, 200, "{body}");
    let b = sid_of(&headers);
    assert_ne!(a, b);
    let (status, _, body) = post(&gw.url, None, INIT);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("max-children") && body.contains("\"id\":1"),
        "{body}"
    );

    // Each session's calls reach its own child, through the policy.
    for sid in [&a, &b] {
        let (status, _, _) = post(
            &gw.url,
            Some(sid),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        );
        assert_eq!(status, 202);
        let (_, _, body) = post(
            &gw.url,
            Some(sid),
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"child"}}}"#,
        );
        assert!(body.contains("Echo: child"), "{body}");
        let (_, _, body) = post(
            &gw.url,
            Some(sid),
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get-env","arguments":{}}}"#,
        );
        assert!(body.contains("POLICY DENIED"), "{body}");
    }

    // Ending a session stops its child: a new session fits again.
    let auth = "Bearer alice-token".to_owned();
    let h = support::mcp_headers(&auth, Some(&a));
    let (status, _, _) = support::http(&gw.url, "DELETE", "/mcp/echoes", &h, "");
    assert_eq!(status, 204);
    let (status, _, body) = post(
        &gw.url,
        Some(&a),
        r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#,
    );
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = post(&gw.url, None, INIT);
    assert_eq!(status, 200, "{body}");

    // A child that dies owes its call a JSON-RPC error naming the server; the next session
    // gets a new child.
    let dying = |sid: Option<&str>, body: &str| {
        let auth = "Bearer alice-token".to_owned();
        let h = support::mcp_headers(&auth, sid);
        support::http(&gw.url, "POST", "/mcp/dying", &h, body)
    };
    let (status, headers, body) = dying(None, INIT);
    assert_eq!(status, 200, "{body}");
    let d = sid_of(&headers);
    let (_, _, body) = dying(
        Some(&d),
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"crash","arguments":{}}}"#,
    );
    assert!(
        body.contains("\"id\":7") && body.contains("server dying") && body.contains("exited"),
        "{body}"
    );
    let (status, _, _) = dying(
        Some(&d),
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#,
    );
    assert_eq!(status, 404);
    let (status, headers, body) = dying(None, INIT);
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = dying(
        Some(&sid_of(&headers)),
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#,
    );
    assert!(body.contains("crash"), "{body}");
}

/// One request to the aggregated `/mcp`; the JSON-RPC message it answered with.
fn rpc(url: &str, sid: Option<&str>, body: &str) -> (Option<String>, Value) {
    rpc_as(url, "alice-token", sid, body)
}

/// [`rpc`] as the caller `token` names.
fn rpc_as(url: &str, token: &str, sid: Option<&str>, body: &str) -> (Option<String>, Value) {
    let auth = format!("Bearer {token}");
    let h = support::mcp_headers(&auth, sid);
    let (status, headers, text) = support::http(url, "POST", "/mcp", &h, body);
    assert!(status == 200 || status == 202, "{status}: {text}");
    let sid = headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone());
    let message = text
        .lines()
        .map(|l| l.strip_prefix("data: ").unwrap_or(l))
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v.get("result").is_some() || v.get("error").is_some())
        .unwrap_or(Value::Null);
    (sid, message)
}

#[test]
fn names_two_servers_share_are_prefixed_on_collision_and_stop_the_start_under_never() {
    let warden = support::warden().expect("warden binary");
    let everything = support::everything().expect("server-everything");
    let dir = support::scratch("servers-names");
    std::fs::write(
        dir.join("everything.pol"),
        "version 1\ndefault deny\nallow echo, get-sum\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rmcp.pol"),
        "version 1\ndefault deny\nallow echo, add\n",
    )
    .unwrap();
    let ev = support::start_everything(&everything);
    let rmcp = rmcp_example();
    let config = |mode: &str| {
        let path = dir.join(format!("{mode}.toml"));
        std::fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:0\"\ngrant-token = [\"alice=alice-token\"]\nserver-names = \"{mode}\"\n\n[servers.everything]\nurl = \"{}\"\npolicy = \"everything.pol\"\n\n[servers.rmcp]\nurl = \"{}\"\npolicy = \"rmcp.pol\"\n",
                ev.url, rmcp.url
            ),
        )
        .unwrap();
        path
    };

    // Both servers have `echo`: under `never`, the start stops and says so.
    let out = Command::new(&warden)
        .args(["serve", "--config"])
        .arg(config("never"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("tool `echo` (everything, rmcp)"),
        "{stderr}"
    );

    // `on-collision`: only `echo` is prefixed; every name still reaches its server.
    let gw = serve_config(&warden, &config("on-collision"));
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}}"#;
    let (sid, answer) = rpc(&gw.url, None, init);
    let sid = sid.expect("a session");
    assert!(
        answer["result"]["capabilities"]["tools"].is_object(),
        "{answer}"
    );
    let (_, list) = rpc(
        &gw.url,
        Some(&sid),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    );
    let mut names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["add", "everything_echo", "get-sum", "rmcp_echo"],
        "{list}"
    );
    let call = |id: u32, name: &str, args: Value| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}});
        rpc(&gw.url, Some(&sid), &body.to_string()).1.to_string()
    };
    assert!(call(3, "add", json!({"a": 1, "b": 2})).contains('3'));
    assert!(call(4, "get-sum", json!({"a": 2, "b": 2})).contains('4'));
    assert!(call(5, "everything_echo", json!({"message": "e"})).contains("Echo: e"));
    assert!(call(6, "rmcp_echo", json!({"text": "r"})).contains('r'));
    let unknown = call(7, "echo", json!({}));
    assert!(unknown.contains("belongs to no server"), "{unknown}");
}

#[test]
fn requests_the_servers_send_the_client_find_their_way_back_through_the_aggregated_endpoint() {
    let warden = support::warden().expect("warden binary");
    let python = support::python().expect("python with the mcp SDK");
    let cf = support::conformance_server(&python);
    let rmcp = rmcp_example();
    let dir = support::scratch("servers-asking");
    std::fs::write(
        dir.join("cf.pol"),
        "version 1\ndefault allow\ntool test_simple_text {\n  require approval via client timeout 30 seconds\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("rmcp.pol"), "version 1\ndefault allow\n").unwrap();
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ngrant-token = [\"alice=alice-token\"]\n\n[servers.cf]\nurl = \"{}\"\npolicy = \"cf.pol\"\n\n[servers.rmcp]\nurl = \"{}\"\npolicy = \"rmcp.pol\"\n",
            cf.url, rmcp.url
        ),
    )
    .unwrap();
    let gw = serve_config(&warden, &dir.join("warden.toml"));
    // The gate's own question (an approval asked in the client) and the server's (its
    // elicitation), each on a call's stream, each answered by the person at the client.
    let calls = json!([
        ["cf_test_simple_text", {}],
        ["cf_test_elicitation", {"message": "who are you?"}],
        ["rmcp_add", {"a": 1, "b": 1}]
    ]);
    let out = support::run_python(
        &python,
        "elicit_scenario.py",
        &[
            &format!("{}/mcp", gw.url),
            "legacy",
            "alice-token",
            r#"["accept", "accept"]"#,
            &calls.to_string(),
        ],
    );
    let asked = out["elicitations"].as_array().unwrap();
    assert_eq!(asked.len(), 2, "{out:#}");
    assert!(
        asked[0]["message"]
            .as_str()
            .unwrap()
            .contains("Tool: test_simple_text"),
        "{out:#}"
    );
    assert_eq!(asked[1]["message"], "who are you?", "{out:#}");
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(
        calls[0]["text"], "This is a simple text response for testing.",
        "{out:#}"
    );
    assert!(
        calls[1]["text"]
            .as_str()
            .unwrap()
            .starts_with("User response"),
        "{out:#}"
    );
    assert_eq!(calls[1]["is_error"], false, "{out:#}");
    assert_eq!(calls[2]["text"], "2", "{out:#}");
}

#[test]
fn a_policy_reload_on_one_server_tells_the_aggregated_stream_to_list_again() {
    let warden = support::warden().expect("warden binary");
    let everything = support::everything().expect("server-everything");
    let python = support::python().expect("python with the mcp SDK");
    let dir = support::scratch("servers-list-changed");
    std::fs::write(
        dir.join("everything.pol"),
        "version 1\ndefault deny\nallow echo\n",
    )
    .unwrap();
    std::fs::write(dir.join("rmcp.pol"), "version 1\ndefault deny\nallow add\n").unwrap();
    let ev = support::start_everything(&everything);
    let rmcp = rmcp_example();
    std::fs::write(
        dir.join("warden.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ngrant-token = [\"alice=alice-token\"]\n\n[servers.everything]\nurl = \"{}\"\npolicy = \"everything.pol\"\n\n[servers.rmcp]\nurl = \"{}\"\npolicy = \"rmcp.pol\"\n",
            ev.url, rmcp.url
        ),
    )
    .unwrap();
    let gw = serve_config(&warden, &dir.join("warden.toml"));
    // The merged GET stream carries everything's gate's `list_changed` after its policy
    // changes; the next merged list lacks what that policy took away.
    let policy = dir.join("everything.pol");
    let out = support::run_python(
        &python,
        "list_changed_scenario.py",
        &[
            &format!("{}/mcp", gw.url),
            "alice-token",
            policy.to_str().unwrap(),
            "version 1\ndefault deny\n",
        ],
    );
    assert_eq!(
        out["before"],
        json!(["everything_echo", "rmcp_add"]),
        "{out}"
    );
    assert_eq!(
        out["notified"], true,
        "no tools/list_changed through /mcp: {out}"
    );
    assert_eq!(out["after"], json!(["rmcp_add"]), "{out}");
}

/// The rmcp example without its own policy: an upstream of the gateway.
fn rmcp_example() -> support::Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_axum_mcp"));
    cmd.args(["--listen", "127.0.0.1:0", "--no-policy"]);
    support::start(cmd)
}

/// `warden serve --config FILE`, logging warnings.
fn serve_config(warden: &std::path::Path, config: &std::path::Path) -> support::Running {
    let mut cmd = Command::new(warden);
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("WARDEN_LOG", "warn");
    support::start(cmd)
}

/// An MCP server of the test's own over HTTP: a session per `initialize` (`up-1`, `up-2`,
/// …), an empty tool list, and every `DELETE`'s session id noted.
fn session_counting_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let deleted: Arc<Mutex<Vec<String>>> = Arc::default();
    let opened = AtomicUsize::new(0);
    let noted = deleted.clone();
    let addr = support::fake_http(move |taken| {
        let msg: Value = serde_json::from_slice(&taken.body).unwrap_or(Value::Null);
        if taken.line.starts_with("DELETE") {
            let session = taken.header("mcp-session-id").unwrap_or_default();
            noted.lock().unwrap().push(session.to_owned());
            return ("200 OK".into(), String::new(), String::new());
        }
        if msg.get("id").is_none() {
            return ("202 Accepted".into(), String::new(), String::new());
        }
        let (header, result) = match msg["method"].as_str() {
            Some("initialize") => {
                let n = opened.fetch_add(1, Ordering::SeqCst) + 1;
                (
                    format!("mcp-session-id: up-{n}\r\n"),
                    json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                        "serverInfo": {"name": "counting", "version": "0"}}),
                )
            }
            Some("tools/list") => (String::new(), json!({"tools": []})),
            _ => (String::new(), json!({})),
        };
        let answer = json!({"jsonrpc": "2.0", "id": msg["id"], "result": result});
        ("200 OK".into(), header, answer.to_string())
    });
    (format!("http://{addr}/mcp"), deleted)
}

#[test]
fn a_session_pushed_out_past_max_sessions_is_closed_on_its_servers_too() {
    let warden = support::warden().expect("warden binary");
    let dir = support::scratch("servers-max-sessions");
    std::fs::write(dir.join("all.pol"), "version 1\ndefault allow\n").unwrap();
    let (url, deleted) = session_counting_server();
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ngrant-token = [\"alice=alice-token\"]\nmax-sessions = 2\n\n[servers.counting]\nurl = \"{url}\"\npolicy = \"all.pol\"\n"
        ),
    )
    .unwrap();
    let gw = serve_config(&warden, &config);
    let open = || rpc(&gw.url, None, INIT).0.expect("a session");
    let ping = |sid: &str| {
        let h = support::mcp_headers("Bearer alice-token", Some(sid));
        let body = r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#;
        support::http(&gw.url, "POST", "/mcp", &h, body).0
    };
    let first = open();
    let second = open();
    assert_eq!(ping(&first), 200);
    assert!(deleted.lock().unwrap().is_empty());
    // A third session: the longest idle (the second; the first was used since) makes room.
    let third = open();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while deleted.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(*deleted.lock().unwrap(), ["up-2"]);
    assert_eq!(ping(&second), 404);
    assert_eq!(ping(&first), 200);
    assert_eq!(ping(&third), 200);
    // A client's own DELETE closes its server session as before.
    let h = support::mcp_headers("Bearer alice-token", Some(&third));
    assert_eq!(support::http(&gw.url, "DELETE", "/mcp", &h, "").0, 204);
    assert_eq!(*deleted.lock().unwrap(), ["up-2", "up-3"]);
}

#[test]
fn a_gateway_policy_rules_every_servers_calls_with_one_budget_for_all() {
    let warden = support::warden().expect("warden binary");
    let dir = support::scratch("servers-gateway-policy");
    std::fs::write(
        dir.join("a.pol"),
        "version 1\ndefault deny\nallow echo, add\n",
    )
    .unwrap();
    // b's own limit shows that a call the gateway's policy refuses is given back to it.
    std::fs::write(
        dir.join("b.pol"),
        "version 1\ndefault deny\ntool echo {\n  limit 1 per minute per grant as b_calls\n}\n",
    )
    .unwrap();
    let gateway_policy = "version 1\ndefault allow\n\nall tools {\n  deny if args.text == \"stop\" because \"stopped at the gateway\"\n  deny if caller.grant == \"bob\" because \"bob is on leave\"\n  limit 3 per minute per grant as everywhere\n}\n";
    std::fs::write(dir.join("all.pol"), gateway_policy).unwrap();
    let (a, b) = (rmcp_example(), rmcp_example());
    // In this process, then in Redis (where its buckets live under `server:*:`).
    let config = |name: &str, store: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "listen = \"127.0.0.1:0\"\ngrant-token = [\"alice=alice-token\", \"bob=bob-token\"]\ngateway-policy = \"all.pol\"\n{store}\n[servers.a]\nurl = \"{}\"\npolicy = \"a.pol\"\n\n[servers.b]\nurl = \"{}\"\npolicy = \"b.pol\"\n",
                a.url, b.url
            ),
        )
        .unwrap();
        path
    };
    let admin_port = support::free_port();
    let config_file = config(
        "memory.toml",
        &format!("admin = \"127.0.0.1:{admin_port}\"\nadmin-token = \"admin-secret\"\n"),
    );
    // `warden check` reads the gateway's policy with the servers'.
    let said = support::check_passes(&warden, &config_file);
    assert!(
        said.contains("gateway-wide policy") && said.contains("all.pol"),
        "{said}"
    );
    // With one `--upstream` there is nothing for it to sit above.
    let out = Command::new(&warden)
        .args(["serve", "--no-auth", "--upstream", &a.url, "--policy"])
        .arg(dir.join("a.pol"))
        .arg("--gateway-policy")
        .arg(dir.join("all.pol"))
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && why.contains("--gateway-policy goes with"),
        "{why}"
    );

    let policy_shown = gateway_policy_scenario(
        &warden,
        &config_file,
        &dir.join("all.pol"),
        gateway_policy,
        Some(admin_port),
    );
    // The admin address shows it beside the servers' (after the reload, without bob's rule).
    let shown: Value = serde_json::from_str(&policy_shown.unwrap()).unwrap();
    assert_eq!(shown["servers"], json!(["a", "b", "*"]), "{shown}");
    let source = shown["source"].as_str().unwrap();
    assert!(
        source.contains("everywhere") && !source.contains("on leave"),
        "{source}"
    );
    let redis = redis_server::RedisServer::start();
    let in_redis = config(
        "redis.toml",
        &format!("redis = \"{}\"\nredis-prefix = \"gw-e2e:\"\n", redis.url()),
    );
    gateway_policy_scenario(
        &warden,
        &in_redis,
        &dir.join("all.pol"),
        gateway_policy,
        None,
    );
    // The shared budget's buckets live under the gateway policy's own prefix (a literal
    // `*`, escaped in the pattern); `KEYS` answers with their count first.
    let found = redis.command(&["KEYS", "gw-e2e:server:\\*:*everywhere*"]);
    assert!(found.starts_with('*') && found != "*0", "{found}");
}

/// Two servers under `policy` (at `path`, written again first): a refusal behind a
/// server's gate gives its charge back, one budget for both servers, a caller condition,
/// a reload.
/// With `admin_port`, what `GET /policy?server=*` answered at the end.
fn gateway_policy_scenario(
    warden: &std::path::Path,
    config: &std::path::Path,
    path: &std::path::Path,
    policy: &str,
    admin_port: Option<u16>,
) -> Option<String> {
    std::fs::write(path, policy).unwrap();
    let gw = serve_config(warden, config);
    let alice = rpc_as(&gw.url, "alice-token", None, INIT)
        .0
        .expect("a session");
    let call = |token: &str, sid: &str, id: u32, name: &str, args: Value| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}});
        rpc_as(&gw.url, token, Some(sid), &body.to_string())
            .1
            .to_string()
    };
    // The gateway refuses what b's gate let through; b's charge is given back.
    let stopped = call("alice-token", &alice, 2, "b_echo", json!({"text": "stop"}));
    assert!(stopped.contains("stopped at the gateway"), "{stopped}");
    let echoed = call("alice-token", &alice, 3, "b_echo", json!({"text": "one"}));
    assert!(
        echoed.contains("one") && !echoed.contains("POLICY DENIED"),
        "{echoed}"
    );
    // One budget for both servers: b's call, then two of a's, then none.
    assert!(
        !call("alice-token", &alice, 4, "a_echo", json!({"text": "two"})).contains("POLICY DENIED")
    );
    assert!(
        !call("alice-token", &alice, 5, "a_add", json!({"a": 1, "b": 2})).contains("POLICY DENIED")
    );
    let over = call("alice-token", &alice, 6, "a_echo", json!({"text": "four"}));
    assert!(over.contains("rate limit `everywhere` reached"), "{over}");
    // A condition on the caller, for every server.
    let bob = rpc_as(&gw.url, "bob-token", None, INIT)
        .0
        .expect("a session");
    let refused = call("bob-token", &bob, 2, "a_echo", json!({"text": "hi"}));
    assert!(refused.contains("bob is on leave"), "{refused}");
    // Reloaded on change like a server's policy: bob is back.
    std::fs::write(
        path,
        policy.replace(
            "  deny if caller.grant == \"bob\" because \"bob is on leave\"\n",
            "",
        ),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut answer = String::new();
    for id in 3.. {
        answer = call("bob-token", &bob, id, "a_echo", json!({"text": "back"}));
        if !answer.contains("on leave") || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        answer.contains("back") && !answer.contains("POLICY DENIED"),
        "{answer}"
    );
    admin_port.map(|port| {
        let auth = [("authorization", "Bearer admin-secret")];
        let admin = format!("http://127.0.0.1:{port}");
        support::http(&admin, "GET", "/policy?server=*", &auth, "").2
    })
}

/// A server that restarted forgets its sessions and answers them 404: the gateway opens it
/// again for the client's session and sends the call once more, charged once.
#[test]
fn a_server_that_forgot_the_session_is_opened_again_and_the_call_sent_once_more() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let warden = support::warden().expect("warden binary");
    let dir = support::scratch("servers-forgot-session");
    std::fs::write(
        dir.join("s.pol"),
        "version 1\ndefault deny\ntool echo {\n  limit 2 per minute per grant as calls\n}\n",
    )
    .unwrap();
    let known: Arc<Mutex<HashSet<String>>> = Arc::default();
    let opened = AtomicUsize::new(0);
    let sessions = known.clone();
    let addr = support::fake_http(move |taken| {
        let msg: Value = serde_json::from_slice(&taken.body).unwrap_or(Value::Null);
        if msg["method"] == "initialize" {
            let sid = format!("up-{}", opened.fetch_add(1, Ordering::SeqCst) + 1);
            sessions.lock().unwrap().insert(sid.clone());
            let result = json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                "serverInfo": {"name": "forgetful", "version": "0"}});
            let answer = json!({"jsonrpc": "2.0", "id": msg["id"], "result": result});
            return (
                "200 OK".into(),
                format!("mcp-session-id: {sid}\r\n"),
                answer.to_string(),
            );
        }
        let sid = taken
            .header("mcp-session-id")
            .unwrap_or_default()
            .to_owned();
        if !sessions.lock().unwrap().contains(&sid) {
            return ("404 Not Found".into(), String::new(), String::new());
        }
        if msg.get("id").is_none() {
            return ("202 Accepted".into(), String::new(), String::new());
        }
        let text = format!("ran {} in {sid}", msg["params"]["name"]);
        let result = json!({"content": [{"type": "text", "text": text}]});
        let answer = json!({"jsonrpc": "2.0", "id": msg["id"], "result": result});
        ("200 OK".into(), String::new(), answer.to_string())
    });
    let config = dir.join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ngrant-token = [\"alice=alice-token\"]\n\n[servers.s]\nurl = \"http://{addr}/mcp\"\npolicy = \"s.pol\"\n"
        ),
    )
    .unwrap();
    let gw = serve_config(&warden, &config);
    let sid = rpc(&gw.url, None, INIT).0.expect("a session");
    let call = |id: u32| {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "s_echo", "arguments": {}}});
        rpc(&gw.url, Some(&sid), &body.to_string()).1
    };
    let text = |answer: &Value| {
        answer["result"]["content"][0]["text"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(text(&call(2)).as_deref(), Some("ran \"echo\" in up-1"));
    // The server restarts: every session it knew is gone.
    known.lock().unwrap().clear();
    let again = call(3);
    assert_eq!(
        text(&again).as_deref(),
        Some("ran \"echo\" in up-2"),
        "{again}"
    );
    // Charged once (the 404 gave the first try's charge back): the limit of 2 holds the third.
    let third = call(4);
    let refusal = third["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(refusal.contains("rate limit `calls` reached"), "{third}");
}
