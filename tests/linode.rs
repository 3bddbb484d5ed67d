//! The hosted policy page's own `policy.json` in front of the real Linode MCP server
//! (shared/reference/, 416 tools), its API pointed at a fake on loopback that counts what
//! reaches it: the list the agent gets shrinks to the one tool it may call, and a loop of
//! 100 calls creates exactly 30 tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

/// `tools/list` over a fresh session at `url`: the bytes of the answer's body and the
/// number of tools in it.
fn tools_list(url: &str, token: &str) -> (usize, usize) {
    let sid = support::session(url, token);
    let auth = format!("Bearer {token}");
    let h = support::mcp_headers(&auth, Some(&sid));
    let (status, _, body) = support::http(
        url,
        "POST",
        "/mcp",
        &h,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    );
    assert_eq!(status, 200, "{body}");
    // JSON or one SSE event: the message is the line that holds it.
    let message = body
        .lines()
        .map(|l| l.strip_prefix("data: ").unwrap_or(l))
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no message in {body}"));
    let v: Value = serde_json::from_str(message).unwrap();
    (body.len(), v["result"]["tools"].as_array().unwrap().len())
}

#[test]
fn the_pages_policy_shrinks_the_list_to_one_tool_and_lets_30_of_100_calls_through() {
    let (Some(warden), Some(linode), Some(python)) =
        (support::warden(), support::linode(), support::python())
    else {
        return;
    };
    let dir = support::scratch("linode");
    let policy = dir.join("policy.json");
    std::fs::write(&policy, support::page_policy()).unwrap();
    let (api, tokens) = support::fake_linode_api();

    let port = support::free_port();
    let mut server = Command::new("node");
    server
        .arg(&linode)
        .args(["--transport", "http", "--port", &port.to_string()])
        .env("LINODE_API_TOKEN", "x")
        .env("LINODE_API_ROOT", &api)
        .stdout(std::process::Stdio::null());
    let server = support::Running {
        child: server.spawn().expect("node"),
        url: format!("http://127.0.0.1:{port}"),
    };
    support::wait_for_port(port);
    let gw = support::start({
        let mut cmd = support::serve_command(&warden, &policy, &format!("{}/mcp", server.url));
        cmd.args(support::ALICE_AND_BOB);
        cmd
    });

    let (direct_bytes, direct_tools) = tools_list(&server.url, "unused");
    let (gated_bytes, gated_tools) = tools_list(&gw.url, "alice-token");
    eprintln!(
        "tools/list: {direct_tools} tools in {direct_bytes} bytes direct, \
         {gated_tools} in {gated_bytes} bytes through the gateway"
    );
    assert_eq!(direct_tools, 416);
    assert!(direct_bytes > 100_000, "{direct_bytes}");
    assert_eq!(gated_tools, 1);
    assert!(
        gated_bytes < 1024,
        "{gated_bytes} bytes through the gateway"
    );

    let calls: Vec<Value> = (0..100)
        .map(|_| json!(["create_personal_access_token", {"label": "agent", "scopes": ["*"]}]))
        .collect();
    let out = support::run_python(
        &python,
        "gateway_scenario.py",
        &[
            &format!("{}/mcp", gw.url),
            "legacy",
            "alice-token",
            &Value::Array(calls).to_string(),
        ],
    );
    assert_eq!(
        out["tools"],
        json!(["create_personal_access_token"]),
        "{out}"
    );
    let results = out["calls"].as_array().unwrap();
    let passed = results
        .iter()
        .filter(|c| !c["text"].as_str().unwrap().starts_with("[POLICY DENIED]"))
        .count();
    assert_eq!(passed, 30, "{out}");
    assert!(
        results[30]["text"]
            .as_str()
            .unwrap()
            .contains("rate limit `create_personal_access_token_rate` reached"),
        "{}",
        results[30]
    );
    assert_eq!(
        tokens.load(Ordering::SeqCst),
        30,
        "tokens the Linode API created"
    );
}
