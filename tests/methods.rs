//! Every MCP method under the policy (issue 26), end to end: `warden serve` in front of
//! @modelcontextprotocol/server-everything, driven by the official Python SDK, and raw HTTP
//! where the SDK has no way to send a message.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Tools, resources, prompts and the server's sampling requests, each with a rule of every
/// kind: allowed, denied with a reason, hidden, limited, approved, by caller.
const POLICY: &str = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "echo": {},
    "trigger-sampling-request": {},
    "get-env": {"require": [{"conditions": [{"path": "caller.grant", "op": "eq", "value": "bob"}],
                             "on_deny": "only bob reads the environment"}]}
  },
  "hide_resources": ["demo://resource/static/document/structure.md"],
  "resources": {
    "demo://resource/static/document/*": {},
    "demo://resource/static/document/architecture.md": {
      "deny_if": [{"conditions": [], "on_deny": "the architecture document is internal"}]},
    "demo://resource/dynamic/text/*": {
      "limits": [{"counter": "dynamic", "window": "minute", "max": 2}]},
    "demo://resource/static/document/startup.md": {"approval": {"timeout": 20}},
    "demo://resource/dynamic/blob/*": {
      "require": [{"conditions": [{"path": "args.uri", "op": "regex", "value": "/[12]$"}],
                   "on_deny": "blobs 1 and 2 only"}]}
  },
  "prompts": {
    "simple-prompt": {},
    "completable-prompt": {},
    "args-prompt": {
      "require": [{"conditions": [{"path": "args.city", "op": "in", "value": ["Paris", "Rome"]}],
                   "on_deny": "weather only for Paris and Rome"}]},
    "resource-prompt": {
      "require": [{"conditions": [{"path": "caller.grant", "op": "eq", "value": "alice"}]}]}
  },
  "server_requests": {
    "sampling/createMessage": {
      "deny_if": [{"conditions": [{"path": "caller.grant", "op": "eq", "value": "alice"}],
                   "on_deny": "servers may not use alice's model"}]}
  }
}"#;

fn peers() -> Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    Some((
        support::warden()?,
        support::everything()?,
        support::python()?,
    ))
}

fn serve(warden: &Path, policy: &Path, upstream: &str, admin_port: u16) -> support::Running {
    let mut cmd = support::serve_command(warden, policy, upstream);
    cmd.args(support::ALICE_AND_BOB)
        .args(["--admin", &format!("127.0.0.1:{admin_port}")])
        .args(["--admin-token", "admin-secret", "--audit"])
        .arg(policy.with_extension("audit.jsonl"));
    support::start(cmd)
}

fn scenario(python: &Path, url: &str, token: &str, steps: Value) -> Value {
    support::run_python(
        python,
        "everything_scenario.py",
        &[url, token, &steps.to_string()],
    )
}

/// `{"ok", "text", "code"}` of a step, as (ok, text).
fn outcome(v: &Value) -> (bool, String) {
    (
        v["ok"].as_bool().unwrap(),
        v["text"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn resources_prompts_and_lists_follow_the_policy_per_caller() {
    let Some((warden, js, python)) = peers() else {
        return;
    };
    let dir = support::scratch("methods");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = support::start_everything(&js);
    let gw = serve(&warden, &policy, &upstream.url, support::free_port());
    let url = format!("{}/mcp", gw.url);

    let out = scenario(
        &python,
        &url,
        "alice-token",
        json!([
            ["tools"], ["resources"], ["templates"], ["prompts"],
            ["read", "demo://resource/static/document/features.md"],
            ["read", "demo://resource/static/document/architecture.md"],
            ["read", "demo://resource/static/document/structure.md"],
            ["read", "demo://resource/dynamic/text/1"],
            ["read", "demo://resource/dynamic/text/2"],
            ["read", "demo://resource/dynamic/text/3"],
            ["read", "demo://resource/dynamic/blob/3"],
            ["subscribe", "demo://resource/static/document/architecture.md"],
            ["prompt", "simple-prompt", {}],
            ["prompt", "args-prompt", {"city": "Oslo"}],
            ["prompt", "args-prompt", {"city": "Rome"}],
            ["complete", "completable-prompt", "department", "E"],
            ["call", "get-env", {}],
            ["call", "trigger-sampling-request", {"prompt": "write a poem"}],
            ["read", "demo://resource/dynamic/blob/1"]
        ]),
    );
    let s = out["steps"].as_array().unwrap();
    // Lists: only what alice could call. 13 tools, 7 documents, 2 templates, 4 prompts
    // upstream; the hidden, denied and default-denied ones are gone.
    assert_eq!(s[0], json!(["echo", "trigger-sampling-request"]), "{out}");
    assert_eq!(
        s[1],
        json!([
            "demo://resource/static/document/extension.md",
            "demo://resource/static/document/features.md",
            "demo://resource/static/document/how-it-works.md",
            "demo://resource/static/document/instructions.md",
            "demo://resource/static/document/startup.md"
        ]),
        "{out}"
    );
    assert_eq!(
        s[2],
        json!([
            "demo://resource/dynamic/blob/{resourceId}",
            "demo://resource/dynamic/text/{resourceId}"
        ]),
        "{out}"
    );
    assert_eq!(
        s[3],
        json!([
            "args-prompt",
            "completable-prompt",
            "resource-prompt",
            "simple-prompt"
        ]),
        "{out}"
    );
    // Reads: allowed, denied with the policy's reason, hidden, limited, default-denied.
    assert!(
        outcome(&s[4]).0 && outcome(&s[4]).1.contains("Server Features"),
        "{out}"
    );
    assert_eq!(
        outcome(&s[5]),
        (
            false,
            "[POLICY DENIED] the architecture document is internal".into()
        )
    );
    assert_eq!(s[5]["code"], -32001);
    assert!(outcome(&s[6]).1.contains("is not available"), "{out}");
    assert!(outcome(&s[7]).0 && outcome(&s[8]).0, "{out}");
    assert!(
        outcome(&s[9])
            .1
            .starts_with("[POLICY DENIED] rate limit `dynamic` reached"),
        "{out}"
    );
    // `args.uri` is the URI: a rule on it decides reads built from a template.
    assert_eq!(
        outcome(&s[10]),
        (false, "[POLICY DENIED] blobs 1 and 2 only".into())
    );
    assert!(outcome(&s[18]).0, "{out}");
    assert!(!outcome(&s[11]).0, "subscribing is reading: {out}");
    // Prompts: allowed, a condition on the arguments, completion of an allowed one.
    assert_eq!(
        outcome(&s[12]),
        (true, "This is a simple prompt without arguments.".into())
    );
    assert_eq!(
        outcome(&s[13]),
        (
            false,
            "[POLICY DENIED] weather only for Paris and Rome".into()
        )
    );
    assert_eq!(outcome(&s[14]), (true, "What's weather in Rome?".into()));
    assert_eq!(outcome(&s[15]), (true, "Engineering".into()));
    assert_eq!(
        outcome(&s[16]),
        (
            false,
            "[POLICY DENIED] only bob reads the environment".into()
        )
    );
    // The server asked alice's client to sample: refused at the gate, answered to the
    // server with the reason, and the client never saw the request.
    assert_eq!(out["sampled"], 0, "{out}");
    assert!(
        outcome(&s[17])
            .1
            .contains("[POLICY DENIED] servers may not use alice's model"),
        "{out}"
    );

    // bob sees another list and may be sampled.
    let out = scenario(
        &python,
        &url,
        "bob-token",
        json!([
            ["tools"], ["prompts"],
            ["call", "trigger-sampling-request", {"prompt": "write a poem"}],
            ["prompt", "resource-prompt", {"resourceType": "Text", "resourceId": "1"}]
        ]),
    );
    let s = out["steps"].as_array().unwrap();
    assert_eq!(
        s[0],
        json!(["echo", "get-env", "trigger-sampling-request"]),
        "{out}"
    );
    assert_eq!(
        s[1],
        json!(["args-prompt", "completable-prompt", "simple-prompt"]),
        "{out}"
    );
    assert_eq!(out["sampled"], 1, "{out}");
    assert!(outcome(&s[2]).1.contains("sampled by the client"), "{out}");
    assert!(!outcome(&s[3]).0, "{out}");

    // Every decision is audited with its kind; no argument values.
    let audit = std::fs::read_to_string(policy.with_extension("audit.jsonl")).unwrap();
    for needle in [
        r#""kind":"resource""#,
        r#""kind":"prompt""#,
        r#""kind":"server request""#,
    ] {
        assert!(audit.contains(needle), "{needle} not in {audit}");
    }
    assert!(
        !audit.contains("Oslo") && !audit.contains("write a poem"),
        "{audit}"
    );
}

#[test]
fn unknown_methods_are_denied_and_a_resource_waits_for_approval() {
    let Some((warden, js, _)) = peers() else {
        return;
    };
    let dir = support::scratch("methods-approval");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = support::start_everything(&js);
    let admin_port = support::free_port();
    let gw = serve(&warden, &policy, &upstream.url, admin_port);
    let sid = support::session(&gw.url, "alice-token");
    let auth = "Bearer alice-token";
    let h = support::mcp_headers(auth, Some(&sid));

    // A method the gate does not know: denied under `default deny`, with its id and why.
    let (status, _, body) = support::http(
        &gw.url,
        "POST",
        "/mcp",
        &h,
        r#"{"jsonrpc":"2.0","id":"x-7","method":"experimental/teleport","params":{}}"#,
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(v["id"], "x-7");
    assert_eq!(v["error"]["code"], -32001);
    assert_eq!(
        v["error"]["message"],
        "[POLICY DENIED] method `experimental/teleport` is not allowed by this policy"
    );
    // Batches are decided message by message: one denied read refuses the whole batch.
    let (_, _, body) = support::http(
        &gw.url,
        "POST",
        "/mcp",
        &h,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},
            {"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"demo://resource/static/document/architecture.md"}}]"#,
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("internal"),
        "{body}"
    );
    assert!(
        v[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another call"),
        "{body}"
    );
    // ping, logging and notifications pass.
    let (status, _, body) = support::http(
        &gw.url,
        "POST",
        "/mcp",
        &h,
        r#"{"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"info"}}"#,
    );
    assert!(status == 200 && !body.contains("POLICY DENIED"), "{body}");

    // A read that needs a person: approved over the admin API with a bare `curl -X POST`.
    let (url, sid2) = (gw.url.clone(), sid.clone());
    let pending = std::thread::spawn(move || {
        let h = support::mcp_headers("Bearer alice-token", Some(&sid2));
        support::http(
            &url,
            "POST",
            "/mcp",
            &h,
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/read","params":{"uri":"demo://resource/static/document/startup.md"}}"#,
        )
    });
    let admin = format!("http://127.0.0.1:{admin_port}");
    let admin_auth = [("authorization", "Bearer admin-secret")];
    let deadline = Instant::now() + Duration::from_secs(15);
    let id = loop {
        let (_, _, body) = support::http(&admin, "GET", "/approvals", &admin_auth, "");
        let v: Value = serde_json::from_str(&body).unwrap();
        if let Some(p) = v["pending"].as_array().and_then(|p| p.first()) {
            assert_eq!(
                p["tool"], "demo://resource/static/document/startup.md",
                "{body}"
            );
            break p["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no pending approval: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let curl = |extra: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", "Authorization: Bearer admin-secret"])
            .args(extra)
            .arg(format!("{admin}/approvals/{id}/approve"))
            .output()
            .expect("curl (Debian package curl)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        curl(&["-d", "not json"]),
        "400",
        "a body that is not JSON is refused"
    );
    assert_eq!(curl(&[]), "200", "no body is no note");
    let (status, _, body) = pending.join().unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("Startup Process"), "{body}");
}

#[test]
fn a_reload_that_removes_a_tool_tells_open_sessions_and_the_next_list_lacks_it() {
    let Some((warden, js, python)) = peers() else {
        return;
    };
    let dir = support::scratch("methods-list-changed");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = support::start_everything(&js);
    let gw = serve(&warden, &policy, &upstream.url, support::free_port());
    let url = format!("{}/mcp", gw.url);
    let edited = POLICY.replace(r#""echo": {},"#, "");
    assert_ne!(edited, POLICY);
    let out = support::run_python(
        &python,
        "list_changed_scenario.py",
        &[&url, "alice-token", policy.to_str().unwrap(), &edited],
    );
    // server-everything lists its sampling tool only to clients that can sample, and this
    // one cannot: echo is all alice may call.
    assert_eq!(out["before"], json!(["echo"]), "{out}");
    assert_eq!(out["notified"], true, "no tools/list_changed: {out}");
    assert_eq!(out["after"], json!([]), "{out}");
}

#[test]
fn stdio_refuses_the_servers_sampling_and_filters_lists_from_a_pol_policy() {
    let Some((warden, js, _)) = peers() else {
        return;
    };
    let dir = support::scratch("methods-stdio");
    let policy = dir.join("policy.pol");
    std::fs::write(
        &policy,
        r#"version 1
default deny
allow echo, trigger-sampling-request
allow resource "demo://resource/static/document/*"
hide resources ["demo://resource/static/document/architecture.md"]

server_request "sampling/createMessage" {
  deny always because "no sampling over stdio"
}
"#,
    )
    .unwrap();
    let mut gate = support::StdioGate::start(&warden, &["--policy", policy.to_str().unwrap()], &js);
    gate.send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"e2e","version":"0"}}}"#);
    gate.answer(1);
    gate.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    gate.send(r#"{"jsonrpc":"2.0","id":102,"method":"tools/list"}"#);
    let names = |v: &Value, key: &str, name: &str| -> Vec<String> {
        let mut n: Vec<String> = v["result"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t[name].as_str().unwrap().to_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&gate.answer(102), "tools", "name"),
        ["echo", "trigger-sampling-request"]
    );
    gate.send(r#"{"jsonrpc":"2.0","id":103,"method":"resources/list"}"#);
    let resources = names(&gate.answer(103), "resources", "uri");
    assert_eq!(resources.len(), 6, "{resources:?}");
    assert!(
        !resources.iter().any(|r| r.ends_with("architecture.md")),
        "{resources:?}"
    );
    let text = gate.call(104, "trigger-sampling-request", json!({"prompt": "hi"}));
    assert!(
        text.contains("[POLICY DENIED] no sampling over stdio"),
        "the server should have got the refusal: {text}"
    );
    assert!(
        !gate
            .answers
            .values()
            .any(|v| v["method"] == "sampling/createMessage"),
        "a refused sampling request reached the client: {:?}",
        gate.answers
    );
    assert!(gate.finish().success());
}

#[test]
fn a_stream_opened_after_a_reload_is_told_at_once_to_list_again() {
    let Some((warden, js, _)) = peers() else {
        return;
    };
    let dir = support::scratch("methods-stale-list");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = support::start_everything(&js);
    let gw = serve(&warden, &policy, &upstream.url, support::free_port());
    let sid = support::session(&gw.url, "alice-token");
    let h = support::mcp_headers("Bearer alice-token", Some(&sid));
    let (status, _, body) = support::http(
        &gw.url,
        "POST",
        "/mcp",
        &h,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    );
    assert!(status == 200 && body.contains("\"echo\""), "{body}");
    // The policy changes before the session opens its standalone stream.
    std::fs::write(&policy, POLICY.replace(r#""echo": {},"#, "")).unwrap();
    support::until_echo_denied(&gw.url, "alice-token", &sid, 3);
    let stream = support::send(
        &gw.url,
        "GET",
        "/mcp",
        &[
            ("authorization", "Bearer alice-token"),
            ("accept", "text/event-stream"),
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        "",
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let told = std::io::BufRead::lines(std::io::BufReader::new(stream))
        .map_while(Result::ok)
        .take(50)
        .any(|l| l.contains("notifications/tools/list_changed"));
    assert!(told, "the stream was not told that its tool list changed");
}
