//! The example rmcp server behind `PolicyLayer`, driven by the official Python MCP SDK over
//! real loopback HTTP, in both protocol negotiations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;

fn server() -> support::Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_axum_mcp"));
    cmd.args(["--listen", "127.0.0.1:0", "--policy"])
        .arg(support::repo().join("examples/demo.pol"));
    support::start(cmd)
}

fn scenario(mode: &str, want_version: &str) {
    let Some(python) = support::python() else {
        return;
    };
    let server = server();
    let out = support::run_python(&python, "tower_scenario.py", &[&server.url, mode]);
    assert_eq!(out["protocol_version"], want_version, "{out}");
    // The list holds what this caller may call: hidden and default-denied tools are gone
    // (reboot_instance is still denied when called, below).
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        ["add", "create_token", "echo", "get_weather", "transfer"],
        "{tools:?}"
    );
    assert_eq!(
        out["echo"],
        serde_json::json!({"text": "hello", "is_error": false})
    );
    let calls = out["calls"].as_array().unwrap();
    let text = |i: usize| calls[i]["text"].as_str().unwrap();
    assert!(
        text(0).starts_with("[POLICY DENIED]") && calls[0]["is_error"] == true,
        "{out}"
    );
    assert!(
        text(1).starts_with("[POLICY DENIED]"),
        "hidden tool called: {out}"
    );
    assert_eq!(text(2), "[POLICY DENIED] Transfers over 100 need a person");
    assert_eq!(text(3), "sent 50 to bob");
    // 30 per minute per grant: the 31st call is limited, with a retry time.
    assert_eq!(out["limited_at"], 31, "{out}");
    let limited = out["limited_text"].as_str().unwrap();
    assert!(
        limited.contains("rate limit `create_token_rate` reached; retry in"),
        "{limited}"
    );
    // Another credential has its own bucket.
    assert_eq!(
        out["other_grant"],
        serde_json::json!({"text": "token for bob: tok_example", "is_error": false})
    );
}

#[test]
fn python_sdk_legacy_handshake_2025_11_25() {
    scenario("legacy", "2025-11-25");
}

#[test]
fn python_sdk_2026_07_28_discovery() {
    scenario("2026-07-28", "2026-07-28");
}

#[test]
fn axum_rest_example_in_http_mode() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_axum_rest"));
    cmd.args(["--listen", "127.0.0.1:0", "--policy"])
        .arg(support::repo().join("examples/rest.pol"));
    let server = support::start(cmd);
    let auth = [
        ("authorization", "Bearer alice"),
        ("content-type", "application/json"),
    ];
    let (status, _, body) = support::http(&server.url, "GET", "/items/7", &auth, "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"id\":7"), "{body}");
    let (status, _, body) = support::http(&server.url, "DELETE", "/items/7", &auth, "");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("[POLICY DENIED]"), "{body}");
    let (status, _, body) = support::http(&server.url, "POST", "/items", &auth, r#"{"size": 1}"#);
    assert_eq!(
        (status, body.contains("An item needs a name")),
        (403, true),
        "{body}"
    );
    for _ in 0..2 {
        let (status, _, body) =
            support::http(&server.url, "POST", "/items", &auth, r#"{"name": "a"}"#);
        assert_eq!(status, 200, "{body}");
    }
    let (status, headers, body) =
        support::http(&server.url, "POST", "/items", &auth, r#"{"name": "a"}"#);
    assert_eq!(status, 429, "{body}");
    let retry: u64 = headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    assert!((1..=30).contains(&retry), "retry-after {retry}");
}

#[test]
fn resources_and_prompts_are_ruled_behind_the_layer() {
    let Some(python) = support::python() else {
        return;
    };
    let server = server();
    let out = support::run_python(
        &python,
        "everything_scenario.py",
        &[
            &server.url,
            "alice-token",
            &serde_json::json!([
                ["resources"], ["prompts"],
                ["read", "docs://public/readme"],
                ["read", "docs://internal/payroll"],
                ["prompt", "greet", {"name": "ada"}],
                ["prompt", "greet", {"name": "root"}],
                ["prompt", "debug_dump", {}]
            ])
            .to_string(),
        ],
    );
    let s = out["steps"].as_array().unwrap();
    assert_eq!(s[0], serde_json::json!(["docs://public/readme"]), "{out}");
    assert_eq!(s[1], serde_json::json!(["greet"]), "{out}");
    assert_eq!(s[2]["text"], "Warden demo: a public document.", "{out}");
    assert_eq!(
        s[3]["text"],
        "[POLICY DENIED] resource `docs://internal/payroll` is not allowed by this policy",
        "{out}"
    );
    assert_eq!(s[4]["text"], "Say hello to ada.", "{out}");
    assert_eq!(s[5]["text"], "[POLICY DENIED] Nobody greets root", "{out}");
    assert_eq!(
        s[6]["text"], "[POLICY DENIED] prompt `debug_dump` is not available",
        "{out}"
    );
}
