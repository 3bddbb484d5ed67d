//! The hosted policy page's own `policy.json` in front of the real Linode MCP server
//! (shared/reference/, 416 tools), its API pointed at a fake on loopback that counts what
//! reaches it: the list the agent gets shrinks to the one tool it may call, and a loop of
//! 100 calls creates exactly 30 tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

/// The policy.json the hosted page shows, read from the page itself.
fn page_policy() -> String {
    let page = support::repo().join("../shared/reference/policylayer-tool-page.txt");
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

/// A fake Linode API: answers every request with a token-shaped object and counts the
/// `POST /v4/profile/tokens` that reach it.
fn fake_linode_api() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v4", listener.local_addr().unwrap());
    let tokens = Arc::new(AtomicUsize::new(0));
    let counted = tokens.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let request = line.trim().to_owned();
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if request.starts_with("POST /v4/profile/tokens") {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    let answer = json!({"id": 1, "label": "agent", "scopes": "*",
                        "token": "fake-token", "created": "2026-12-07T00:00:00", "expiry": null})
                    .to_string();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    );
                    if stream.write_all(head.as_bytes()).is_err()
                        || stream.write_all(answer.as_bytes()).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, tokens)
}

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
    std::fs::write(&policy, page_policy()).unwrap();
    let (api, tokens) = fake_linode_api();

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
