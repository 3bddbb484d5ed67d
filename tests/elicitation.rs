//! Approval in the agent's own MCP client (`require approval via client`): the official
//! Python SDK, as a client that declares elicitation, answers the gateway's question on
//! both protocol revisions it speaks — on the call's own SSE stream (2025-11-25) and by
//! retrying the call with the answer (2026-07-28) — and, where it can open links, is sent
//! to the console's page for the approval. The upstream is tests/conformance/server.py
//! (the Python SDK serving both revisions). Forged answers are tried by hand.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;

use serde_json::{Value, json};

const POLICY: &str = r#"version 1
default allow

tool test_simple_text {
  require approval via client timeout 30 seconds
}
tool test_sampling {
  require approval via client timeout 30 seconds redact args.prompt
}
tool test_error_handling {
  require approval via client or queue timeout 30 seconds
}
"#;

struct Setup {
    python: std::path::PathBuf,
    _upstream: support::Running,
    gate: support::Running,
}

fn setup(name: &str, admin: Option<u16>) -> Setup {
    let python = support::python().expect("python with mcp");
    let warden = support::warden().expect("warden binary");
    let upstream = support::conformance_server(&python);
    let dir = support::scratch(name);
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let mut cmd = support::serve_command(&warden, &policy, &upstream.url);
    cmd.args(support::ALICE_AND_BOB);
    if let Some(port) = admin {
        cmd.args([
            "--admin",
            &format!("127.0.0.1:{port}"),
            "--admin-token",
            "adm",
        ]);
    }
    let gate = support::start(cmd);
    Setup {
        python,
        _upstream: upstream,
        gate,
    }
}

fn scenario(
    python: &Path,
    url: &str,
    mode: &str,
    answers: Value,
    calls: Value,
    admin: &[&str],
) -> Value {
    let endpoint = format!("{url}/mcp");
    let (answers, calls) = (answers.to_string(), calls.to_string());
    let mut args = vec![endpoint.as_str(), mode, "alice-token", &answers, &calls];
    args.extend_from_slice(admin);
    support::run_python(python, "elicit_scenario.py", &args)
}

const SIMPLE: &str = "This is a simple text response for testing.";

#[test]
fn the_person_at_the_client_approves_or_declines_on_both_protocol_revisions() {
    let s = setup("elicit-both", None);
    for (mode, revision) in [("legacy", "2025-11-25"), ("2026-07-28", "2026-07-28")] {
        let out = scenario(
            &s.python,
            &s.gate.url,
            mode,
            json!(["accept", "decline", "cancel"]),
            json!([
                ["test_simple_text", {}],
                ["test_simple_text", {}],
                ["test_simple_text", {}],
                ["test_sampling", {"prompt": "the secret plan"}]
            ]),
            &[],
        );
        assert_eq!(out["protocol_version"], revision, "{out:#}");
        let calls = out["calls"].as_array().unwrap();
        assert_eq!(calls[0]["text"], SIMPLE, "{mode}: accepted: {out:#}");
        assert_eq!(calls[0]["is_error"], false);
        assert_eq!(
            calls[1]["text"], "[POLICY DENIED] the person at the MCP client declined this call",
            "{mode}: declined: {out:#}"
        );
        assert_eq!(calls[1]["is_error"], true);
        assert_eq!(
            calls[2]["text"], "[POLICY DENIED] the person at the MCP client dismissed the approval",
            "{mode}: cancelled: {out:#}"
        );
        // A fourth question (answered `cancel` by the script): redacted values are not shown.
        assert_eq!(calls[3]["is_error"], true, "{out:#}");
        let asked = out["elicitations"].as_array().unwrap();
        assert_eq!(asked.len(), 4, "{mode}: one question per call: {out:#}");
        assert!(asked.iter().all(|e| e["mode"] == "form"), "{out:#}");
        let first = asked[0]["message"].as_str().unwrap();
        assert!(
            first.contains("Tool: test_simple_text") && first.contains("/tools/test_simple_text"),
            "the person sees the tool and the rule: {first}"
        );
        let sampling = asked[3]["message"].as_str().unwrap();
        assert!(
            sampling.contains("[redacted]") && !sampling.contains("secret plan"),
            "redacted arguments stay hidden from the person too: {sampling}"
        );
    }
}

#[test]
fn a_client_that_cannot_be_asked_is_refused_or_queued_as_the_rule_says() {
    let s = setup("elicit-incapable", None);
    // gateway_scenario.py's client declares no elicitation.
    let calls = json!([["test_simple_text", {}], ["test_error_handling", {}]]).to_string();
    for mode in ["legacy", "2026-07-28"] {
        let out = support::run_python(
            &s.python,
            "gateway_scenario.py",
            &[&format!("{}/mcp", s.gate.url), mode, "alice-token", &calls],
        );
        let calls = out["calls"].as_array().unwrap();
        assert!(
            calls[0]["text"].as_str().unwrap().contains(
                "this client cannot be asked (it did not declare the elicitation capability)"
            ),
            "{mode}: {out:#}"
        );
        // `or queue`: the queue, which without an admin address refuses (hosted behaviour).
        assert_eq!(
            calls[1]["text"], "[POLICY DENIED] Requires human approval.",
            "{mode}: {out:#}"
        );
    }
}

#[test]
fn a_client_that_can_open_links_is_sent_to_the_console_page_of_its_approval() {
    let admin = support::free_port();
    let s = setup("elicit-url", Some(admin));
    let admin_url = format!("http://127.0.0.1:{admin}");
    let out = scenario(
        &s.python,
        &s.gate.url,
        "2026-07-28",
        json!(["console:approve", "console:deny"]),
        json!([["test_simple_text", {}], ["test_simple_text", {}]]),
        &[&admin_url, "adm"],
    );
    let asked = out["elicitations"].as_array().unwrap();
    assert_eq!(asked.len(), 2, "{out:#}");
    for e in asked {
        assert_eq!(e["mode"], "url", "{out:#}");
        assert!(
            e["url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{admin_url}/console/approvals#")),
            "{out:#}"
        );
    }
    let calls = out["calls"].as_array().unwrap();
    assert_eq!(calls[0]["text"], SIMPLE, "approved on the console: {out:#}");
    assert_eq!(calls[1]["is_error"], true, "denied on the console: {out:#}");
    // The 2025-11-25 client gets the form on its stream even with a console.
    let out = scenario(
        &s.python,
        &s.gate.url,
        "legacy",
        json!(["accept"]),
        json!([["test_simple_text", {}]]),
        &[],
    );
    assert_eq!(out["elicitations"][0]["mode"], "form", "{out:#}");
    assert_eq!(out["calls"][0]["text"], SIMPLE, "{out:#}");
}

/// Initializes a 2025-11-25 session whose client declares elicitation; returns its id.
fn elicit_session(url: &str, auth: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {"elicitation": {"form": {}}},
        "clientInfo": {"name": "e2e", "version": "0"}}})
    .to_string();
    let (status, headers, body) = support::http(
        url,
        "POST",
        "/mcp",
        &support::mcp_headers(auth, None),
        &init,
    );
    assert_eq!(status, 200, "{body}");
    let sid = headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone())
        .expect("session id");
    let (status, _, _) = support::http(
        url,
        "POST",
        "/mcp",
        &support::mcp_headers(auth, Some(&sid)),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(status, 202);
    sid
}

/// The JSON of each `data:` line of an SSE answer read so far.
fn next_event(lines: &mut impl Iterator<Item = String>) -> Value {
    lines
        .find_map(|l| {
            l.strip_prefix("data: ")
                .and_then(|d| serde_json::from_str(d).ok())
        })
        .expect("an event")
}

#[test]
fn an_agent_cannot_answer_an_approval_it_was_not_sent() {
    let s = setup("elicit-forged", None);
    let url = &s.gate.url;
    let (alice, bob) = ("Bearer alice-token", "Bearer bob-token");

    // 2025-11-25: a made-up id is refused, and never reaches the upstream.
    let sid = elicit_session(url, alice);
    let forged = r#"{"jsonrpc":"2.0","id":"warden-approval-00000000000000000000000000000000","result":{"action":"accept"}}"#;
    let (status, _, body) = support::http(
        url,
        "POST",
        "/mcp",
        &support::mcp_headers(alice, Some(&sid)),
        forged,
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("no approval with this id was asked of this client"),
        "{body}"
    );

    // A real question, answered by another caller on the asker's session: refused; the
    // asker's own answer still decides.
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "test_simple_text", "arguments": {}}})
    .to_string();
    let stream = support::send(
        url,
        "POST",
        "/mcp",
        &support::mcp_headers(alice, Some(&sid)),
        &call,
    );
    let mut lines = BufReader::new(stream).lines().map_while(Result::ok);
    let ask = next_event(&mut lines);
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    let id = ask["id"].as_str().unwrap().to_owned();
    let accept = json!({"jsonrpc": "2.0", "id": id, "result": {"action": "accept"}}).to_string();
    let (status, _, body) = support::http(
        url,
        "POST",
        "/mcp",
        &support::mcp_headers(bob, Some(&sid)),
        &accept,
    );
    assert_eq!(status, 400, "another caller's answer: {body}");
    let decline = json!({"jsonrpc": "2.0", "id": id, "result": {"action": "decline"}}).to_string();
    let (status, _, body) = support::http(
        url,
        "POST",
        "/mcp",
        &support::mcp_headers(alice, Some(&sid)),
        &decline,
    );
    assert_eq!(status, 202, "{body}");
    let answer = next_event(&mut lines);
    assert_eq!(answer["id"], 7, "{answer}");
    assert_eq!(
        answer["result"]["content"][0]["text"],
        "[POLICY DENIED] the person at the MCP client declined this call"
    );
    // Answered once: the same answer again is refused.
    let (status, _, _) = support::http(
        url,
        "POST",
        "/mcp",
        &support::mcp_headers(alice, Some(&sid)),
        &accept,
    );
    assert_eq!(status, 400);

    // 2026-07-28: the state handed out is bound to the call and used once.
    let headers = |auth: &'static str| {
        vec![
            ("authorization", auth),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
        ]
    };
    let meta = json!({"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "0"}});
    let call = |id: u32, prompt: &str, back: Option<(&str, &str)>| {
        let mut params =
            json!({"name": "test_sampling", "arguments": {"prompt": prompt}, "_meta": meta});
        if let Some((state, action)) = back {
            params["requestState"] = json!(state);
            params["inputResponses"] = json!({"warden_approval": {"action": action}});
        }
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string()
    };
    let text = |v: &Value| {
        v["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let post = |auth: &'static str, body: &str| -> Value {
        let (status, _, body) = support::http(url, "POST", "/mcp", &headers(auth), body);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    let stale = "this approval is unknown, expired, already used or for another call";

    let made_up = post(
        alice,
        &call(1, "x", Some(("warden-approval-1234", "accept"))),
    );
    assert!(text(&made_up).contains(stale), "{made_up}");

    let first = post(alice, &call(2, "x", None));
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    // Other arguments, another caller: refused, and the state is spent.
    let other_args = post(alice, &call(3, "y", Some((&state, "accept"))));
    assert!(text(&other_args).contains(stale), "{other_args}");
    let again = post(alice, &call(4, "x", Some((&state, "accept"))));
    assert!(text(&again).contains(stale), "used once: {again}");

    let first = post(alice, &call(5, "x", None));
    let state = first["result"]["requestState"].as_str().unwrap().to_owned();
    let by_bob = post(bob, &call(6, "x", Some((&state, "accept"))));
    assert!(text(&by_bob).contains(stale), "{by_bob}");
}
