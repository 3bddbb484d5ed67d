//! `warden serve` and `warden stdio` in front of a real third-party MCP server
//! (@modelcontextprotocol/server-everything), driven by the official Python SDK and by raw
//! HTTP where timing matters.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const POLICY: &str = r#"version 1
default deny
hide [gzip-*, toggle-*]

allow echo, get-sum, trigger-long-running-operation

tool get-env {
  limit 3 per minute per grant
}
"#;

/// Everything a gateway test needs, or `None` (reason printed) when a peer is missing.
fn peers() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    Some((support::warden()?, support::everything()?))
}

fn serve(warden: &Path, policy: &Path, upstream: &str) -> support::Running {
    let mut cmd = support::serve_command(warden, policy, upstream);
    cmd.args(support::ALICE_AND_BOB)
        .arg("--audit")
        .arg(policy.with_extension("audit.jsonl"));
    support::start(cmd)
}

fn texts(out: &Value) -> Vec<(String, String)> {
    out["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["tool"].as_str().unwrap().to_owned(),
                c["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn serve_allows_denies_hides_limits_per_grant_and_refuses_unknown_tokens() {
    let Some((warden, js)) = peers() else { return };
    let Some(python) = support::python() else {
        return;
    };
    let dir = support::scratch("serve");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = support::start_everything(&js);
    let gw = serve(&warden, &policy, &upstream.url);
    let url = format!("{}/mcp", gw.url);

    let calls = json!([
        ["get-sum", {"a": 2, "b": 40}],
        ["get-env", {}], ["get-env", {}], ["get-env", {}], ["get-env", {}],
        ["gzip-file-as-resource", {"name": "x", "data": "y"}],
        ["get-tiny-image", {}]
    ])
    .to_string();
    let out = support::run_python(
        &python,
        "gateway_scenario.py",
        &[&url, "legacy", "alice-token", &calls],
    );
    assert_eq!(out["protocol_version"], "2025-11-25");
    assert_eq!(
        out["echo"],
        json!({"text": "Echo: hello", "is_error": false}),
        "upstream answers pass through"
    );
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    // Lists show what the caller may call: get-tiny-image is named by no rule, so
    // `default deny` leaves it out (it is still denied when called, below).
    assert_eq!(
        tools,
        [
            "echo",
            "get-env",
            "get-sum",
            "trigger-long-running-operation"
        ],
        "{tools:?}"
    );
    assert!(
        !tools
            .iter()
            .any(|t| t.starts_with("gzip-") || t.starts_with("toggle-")),
        "hidden tools listed: {tools:?}"
    );
    let t = texts(&out);
    assert_eq!(t[0].1, "The sum of 2 and 40 is 42.");
    assert!(
        !t[1].1.starts_with("[POLICY DENIED]") && !t[3].1.starts_with("[POLICY DENIED]"),
        "{t:?}"
    );
    assert!(
        t[4].1
            .starts_with("[POLICY DENIED] rate limit `get-env_rate` reached; retry in"),
        "{t:?}"
    );
    assert!(
        t[5].1.starts_with("[POLICY DENIED]"),
        "hidden tool called: {t:?}"
    );
    assert!(
        t[6].1.starts_with("[POLICY DENIED]"),
        "unnamed tool called: {t:?}"
    );

    // bob has his own bucket; the SDK's automatic protocol choice falls back through the
    // gateway (the upstream's 400 passes through).
    let out = support::run_python(
        &python,
        "gateway_scenario.py",
        &[&url, "auto", "bob-token", r#"[["get-env", {}]]"#],
    );
    assert_eq!(out["protocol_version"], "2025-11-25");
    assert!(!texts(&out)[0].1.starts_with("[POLICY DENIED]"), "{out}");

    let out = support::run_python(
        &python,
        "gateway_scenario.py",
        &[&url, "legacy", "nobody-token"],
    );
    assert_eq!(out, json!({"error": "unauthorized"}));

    // The audit log has one line per decision: grant names, no tokens, no argument values.
    let audit = std::fs::read_to_string(policy.with_extension("audit.jsonl")).unwrap();
    assert!(audit.lines().count() >= 9, "{audit}");
    assert!(
        audit.contains("\"grant\":\"alice\"") && audit.contains("\"decision\":\"limited\""),
        "{audit}"
    );
    assert!(
        !audit.contains("alice-token") && !audit.contains("\"b\":40"),
        "{audit}"
    );
}

#[test]
fn serve_streams_sse_answers_as_they_come() {
    let Some((warden, js)) = peers() else { return };
    let dir = support::scratch("sse");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = support::start_everything(&js);
    let gw = serve(&warden, &policy, &upstream.url);
    let sid = support::session(&gw.url, "alice-token");
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":2,"steps":4},"_meta":{"progressToken":"p"}}}"#;
    let lines = support::http_timed(
        &gw.url,
        "/mcp",
        &support::mcp_headers("Bearer alice-token", Some(&sid)),
        body,
    );
    let first_progress = lines
        .iter()
        .find(|(_, l)| l.contains("notifications/progress"))
        .map(|(t, _)| *t);
    let result = lines
        .iter()
        .find(|(_, l)| l.contains("\"result\""))
        .map(|(t, _)| *t);
    let (Some(progress), Some(result)) = (first_progress, result) else {
        panic!("no progress or no result: {lines:?}")
    };
    // Progress is every 0.5 s over 2 s: buffered, it would arrive with the result.
    assert!(
        result.saturating_sub(progress) >= Duration::from_millis(800),
        "progress at {progress:?}, result at {result:?}"
    );
}

#[test]
fn serve_reloads_an_edited_policy_without_dropping_the_session() {
    let Some((warden, js)) = peers() else { return };
    let dir = support::scratch("reload");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = support::start_everything(&js);
    let gw = serve(&warden, &policy, &upstream.url);
    let sid = support::session(&gw.url, "alice-token");
    assert_eq!(
        support::call_text(
            &gw.url,
            "alice-token",
            &sid,
            2,
            "echo",
            json!({"message": "one"})
        ),
        "Echo: one"
    );

    // Take `echo` out of the policy: within a few seconds, the same session is refused.
    std::fs::write(&policy, POLICY.replace("allow echo, ", "allow ")).unwrap();
    support::until_echo_denied(&gw.url, "alice-token", &sid, 3);
    // A broken edit keeps the policy in force: echo still denied, get-sum still allowed.
    std::fs::write(
        &policy,
        "version 1\ntool echo {\n  limit 30 per fortnight\n}\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        support::call_text(
            &gw.url,
            "alice-token",
            &sid,
            100,
            "echo",
            json!({"message": "x"})
        )
        .starts_with("[POLICY DENIED]")
    );
    assert_eq!(
        support::call_text(
            &gw.url,
            "alice-token",
            &sid,
            101,
            "get-sum",
            json!({"a": 1, "b": 2})
        ),
        "The sum of 1 and 2 is 3."
    );
}

#[test]
fn stdio_wraps_a_launched_server() {
    let Some((warden, js)) = peers() else { return };
    let dir = support::scratch("stdio");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let policy_arg = policy.to_str().unwrap();
    let mut gate = support::StdioGate::start(&warden, &["--policy", policy_arg], &js);
    gate.initialize();
    gate.send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    let tools = gate.answer(2);
    let tools: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"echo") && !tools.iter().any(|t| t.starts_with("gzip-")),
        "{tools:?}"
    );
    assert_eq!(
        gate.call(3, "echo", json!({"message": "hello"})),
        "Echo: hello"
    );
    for (id, tool) in [(4, "get-tiny-image"), (5, "gzip-file-as-resource")] {
        let text = gate.call(id, tool, json!({}));
        assert!(text.starts_with("[POLICY DENIED]"), "{tool}: {text}");
    }
    // The per-grant limit holds on stdio too: the 4th get-env in a minute is refused.
    for id in 6..=9 {
        let text = gate.call(id, "get-env", json!({}));
        assert_eq!(
            text.starts_with("[POLICY DENIED] rate limit"),
            id == 9,
            "{id}: {text}"
        );
    }
    // Editing the policy changes decisions in the running session.
    std::fs::write(&policy, POLICY.replace("allow echo, ", "allow ")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut id = 10;
    loop {
        if gate
            .call(id, "echo", json!({"message": "again"}))
            .starts_with("[POLICY DENIED]")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the edit was not picked up");
        std::thread::sleep(Duration::from_millis(200));
        id += 1;
    }
    // Closing stdin ends the server, and warden exits with its status.
    let status = gate.finish();
    assert!(status.success(), "exit status {status}");
}

#[test]
fn scan_writes_a_starter_policy_that_checks_clean_against_the_server() {
    let Some((warden, js)) = peers() else { return };
    let dir = support::scratch("scan");
    let upstream = support::start_everything(&js);
    let (pol, tools) = (dir.join("http.pol"), dir.join("tools.json"));
    let out = Command::new(&warden)
        .args(["scan", "--upstream", &upstream.url, "-o"])
        .arg(&pol)
        .arg("--save-tools")
        .arg(&tools)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&pol).unwrap();
    // server-everything marks its reads readOnlyHint: they are allowed; the rest is capped.
    assert!(
        text.contains("# echo: Echoes back the input string\n"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("allow ") && l.contains("get-sum")),
        "{text}"
    );
    assert!(
        text.contains("limit 30 per minute per grant as writes"),
        "{text}"
    );
    let check = Command::new(&warden)
        .arg("check")
        .arg(&pol)
        .arg("--tools")
        .arg(&tools)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        check.status.success() && !stdout.contains("warning"),
        "{stdout}{stderr}"
    );
    // The starter policy allows the resources and prompts the server lists, by name.
    assert!(
        text.contains("allow resource \"demo://resource/static/document/")
            && text.contains("allow prompt ")
            && text.contains("simple-prompt"),
        "{text}"
    );
    assert!(!stderr.contains("note:"), "{stderr}");
    // The saved scan holds them too: check names those a tools-only policy's `default deny`
    // now denies.
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&tools).unwrap()).unwrap();
    assert_eq!(
        saved["prompts"].as_array().map(Vec::len),
        Some(4),
        "{saved}"
    );
    assert_eq!(
        saved["resources"].as_array().map(Vec::len),
        Some(7),
        "{saved}"
    );
    let old = dir.join("tools-only.pol");
    std::fs::write(&old, "version 1\ndefault deny\nallow echo\n").unwrap();
    let check = Command::new(&warden)
        .arg("check")
        .arg(&old)
        .arg("--tools")
        .arg(&tools)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("the server's resources it denies (7): demo://resource/static/document/")
            && stderr.contains("the server's prompts it denies (4): ")
            && stderr.contains("simple-prompt"),
        "{stderr}"
    );
    // It refuses to overwrite, and the stdio route gives the same policy body.
    let again = Command::new(&warden)
        .args(["scan", "--upstream", &upstream.url, "-o"])
        .arg(&pol)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let stdio = Command::new(&warden)
        .args(["scan", "--", "node"])
        .arg(&js)
        .arg("stdio")
        .output()
        .unwrap();
    assert!(
        stdio.status.success(),
        "{}",
        String::from_utf8_lossy(&stdio.stderr)
    );
    let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&String::from_utf8_lossy(&stdio.stdout)), body(&text));
}

#[test]
fn admin_serves_health_metrics_policy_and_the_approval_queue() {
    let Some((warden, js)) = peers() else { return };
    let dir = support::scratch("admin");
    let policy = dir.join("policy.pol");
    std::fs::write(
        &policy,
        format!("{POLICY}\ntool get-sum {{\n  require approval timeout 20 seconds\n}}\n")
            .replace("allow echo, get-sum, ", "allow echo, "),
    )
    .unwrap();
    let upstream = support::start_everything(&js);
    let admin_port = support::free_port();
    let mut cmd = Command::new(&warden);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url,
        "--grant-token",
        "alice=alice-token",
    ])
    .args([
        "--admin",
        &format!("127.0.0.1:{admin_port}"),
        "--admin-token",
        "admin-secret",
        "--policy",
    ])
    .arg(&policy)
    .env("WARDEN_LOG", "warn");
    let gw = support::start(cmd);
    let admin = format!("http://127.0.0.1:{admin_port}");
    let auth = [("authorization", "Bearer admin-secret")];
    assert_eq!(
        support::http(&admin, "GET", "/healthz", &[], "").0,
        401,
        "admin needs its token"
    );
    assert_eq!(support::http(&admin, "GET", "/healthz", &auth, "").0, 200);

    let sid = support::session(&gw.url, "alice-token");
    assert_eq!(
        support::call_text(
            &gw.url,
            "alice-token",
            &sid,
            2,
            "echo",
            json!({"message": "m"})
        ),
        "Echo: m"
    );
    // get-sum waits for a person: answer it from the admin address while the call is open.
    let (url, sid2) = (gw.url.clone(), sid.clone());
    let pending = std::thread::spawn(move || {
        support::call_text(
            &url,
            "alice-token",
            &sid2,
            3,
            "get-sum",
            json!({"a": 1, "b": 1}),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        let (_, _, body) = support::http(&admin, "GET", "/approvals", &auth, "");
        let v: Value = serde_json::from_str(&body).unwrap();
        if let Some(p) = v["pending"].as_array().and_then(|p| p.first()) {
            assert_eq!(p["tool"], "get-sum");
            assert_eq!(p["grant"], "alice");
            // The approver sees the values it approves (issue 13).
            assert_eq!(p["args"], json!({"a": 1, "b": 1}), "{body}");
            break p["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no pending approval: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, _, _) = support::http(
        &admin,
        "POST",
        &format!("/approvals/{id}/approve"),
        &auth,
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(pending.join().unwrap(), "The sum of 1 and 1 is 2.");
    assert_eq!(
        support::http(
            &admin,
            "POST",
            &format!("/approvals/{id}/approve"),
            &auth,
            ""
        )
        .0,
        404,
        "answers are used once"
    );

    let (_, _, metrics) = support::http(&admin, "GET", "/metrics", &auth, "");
    assert!(metrics.contains("warden_decisions_total"), "{metrics}");
    let (_, _, body) = support::http(&admin, "GET", "/policy", &auth, "");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["source"].as_str().unwrap().contains("require approval"),
        "{body}"
    );
    assert!(
        v["policy"]["tools"]["get-sum"]["approval"].is_object(),
        "{body}"
    );
}

#[test]
fn serve_records_calls_for_replay_against_an_edited_policy() {
    let Some((warden, js)) = peers() else { return };
    let upstream = support::start_everything(&js);
    let dir = support::scratch("record");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let record = dir.join("calls.jsonl");
    let mut cmd = support::serve_command(&warden, &policy, &upstream.url);
    cmd.args(support::ALICE_AND_BOB)
        .arg("--record")
        .arg(&record);
    let gw = support::start(cmd);
    let sid = support::session(&gw.url, "alice-token");
    for i in 0..3 {
        support::call_text(
            &gw.url,
            "alice-token",
            &sid,
            10 + i,
            "echo",
            json!({"message": "hi"}),
        );
    }
    for i in 0..4 {
        support::call_text(&gw.url, "alice-token", &sid, 20 + i, "get-env", json!({}));
    }
    support::call_text(
        &gw.url,
        "alice-token",
        &sid,
        30,
        "get-sum",
        json!({"a": 7, "b": 8}),
    );
    drop(gw);

    // Argument values are in it, so only its owner may read it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&record).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let text = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8, "{text}");
    assert_eq!(lines[0]["tool"], "echo");
    assert_eq!(lines[0]["args"], json!({"message": "hi"}));
    assert_eq!(lines[0]["grant"], "alice");
    assert_eq!(lines[6]["decision"], "limited", "{text}");

    // A truncated last line (the gateway was killed mid-write) is reported and skipped.
    std::fs::write(&record, format!("{text}{{\"at_ms\": 1, \"too")).unwrap();
    // The edit: echo is no longer allowed, get-env gets 5 a minute, get-sum needs a person.
    let edited = dir.join("edited.pol");
    std::fs::write(
        &edited,
        POLICY
            .replace("allow echo, get-sum,", "allow")
            .replace("limit 3 per minute", "limit 5 per minute")
            + "tool get-sum {\n  require approval\n}\n",
    )
    .unwrap();
    let out = Command::new(&warden)
        .args(["replay", "--policy"])
        .arg(&edited)
        .arg(&record)
        .arg("--fail-on-change")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("calls.jsonl:9: not a recorded call"),
        "{stderr}"
    );
    assert!(stdout.starts_with("8 recorded calls replayed"), "{stdout}");
    assert!(
        stdout.contains("allow → deny: 3 call(s)\n  echo: 3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("limited → allow: 1 call(s)\n  get-env: 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("allow → approval: 1 call(s)\n  get-sum: 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("{\"a\":7,\"b\":8}"),
        "an example shows the arguments: {stdout}"
    );
}

/// `cargo xtask dist --pgo` trains its profile-guided build with `pgo_train`, which checks every
/// answer of its mixed load (a hidden tool, a failed condition, a limit, a missing token)
/// and that SIGTERM ends the gateway with status 0, which is when the profile is written.
/// Run here against the debug build, so that a change to the gateway's answers breaks this
/// test instead of quietly training the release build on error paths.
#[test]
fn the_pgo_training_load_gets_the_answers_it_expects_and_stops_the_gateway_cleanly() {
    let Some(warden) = support::warden() else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_pgo_train"))
        .arg("--warden")
        .arg(&warden)
        .args(["--calls", "150"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pgo_train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2400 calls"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_reads_its_flags_from_warden_toml_and_the_command_line_wins() {
    let (warden, everything) = peers().expect("peers");
    let dir = support::scratch("gateway-config");
    std::fs::write(dir.join("policy.pol"), POLICY).unwrap();
    let upstream = support::start_everything(&everything);
    let config = dir.join("warden.toml");
    // The file's listen address is taken; the command line's replaces it. The token comes
    // from the environment.
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\ngrant-token = [\"alice=${{WARDEN_E2E_ALICE}}\"]\nupstream-timeout = 30\nserver-names = \"never\"\n\n[servers.everything]\nurl = \"{}\"\npolicy = \"policy.pol\"\nheaders = {{ X-Upstream-Key = \"k\" }}\n",
            upstream.url
        ),
    )
    .unwrap();
    let stdout = support::check_passes(&warden, &config);
    assert!(stdout.contains("1 server(s): everything with"), "{stdout}");
    assert!(stdout.contains("policy.pol: ok"), "{stdout}");

    let mut cmd = Command::new(&warden);
    cmd.args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", "127.0.0.1:0"])
        .env("WARDEN_E2E_ALICE", "from-the-environment")
        .env("WARDEN_LOG", "warn");
    let gw = support::start(cmd);
    let sid = support::session(&gw.url, "from-the-environment");
    let text = support::call_text(
        &gw.url,
        "from-the-environment",
        &sid,
        2,
        "echo",
        json!({"message": "toml"}),
    );
    assert!(text.contains("Echo: toml"), "{text}");

    // A broken file: every problem at its line and column, nothing started.
    std::fs::write(
        &config,
        "listn = \"127.0.0.1:0\"\n[servers.a]\nurl = \"ftp://x\"\npolicy = \"missing.pol\"\n",
    )
    .unwrap();
    let out = Command::new(&warden)
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for expected in [
        "warden.toml:1:1: unknown key `listn`",
        "did you mean `listen`?",
        "warden.toml:3:7: \"ftp://x\" is not an http:// or https:// URL",
        "missing.pol does not exist",
    ] {
        assert!(stderr.contains(expected), "{expected:?} not in:\n{stderr}");
    }
    let out = Command::new(&warden)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key `listn`"));
    // An unset variable is named where it is used.
    std::fs::write(
        &config,
        format!("grant-token = [\"a=${{WARDEN_E2E_SURELY_UNSET}}\"]\n[servers.a]\nurl = \"{}\"\npolicy = \"policy.pol\"\n", upstream.url),
    )
    .unwrap();
    // `check` (in CI, without the secrets) says so and passes; `serve` refuses to start.
    let out = Command::new(&warden)
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warden.toml:1:16: ${WARDEN_E2E_SURELY_UNSET} is not set"),
        "{stderr}"
    );
    let out = Command::new(&warden)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("${WARDEN_E2E_SURELY_UNSET} is not set"),
        "{stderr}"
    );
}
