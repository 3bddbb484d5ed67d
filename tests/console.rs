//! The console in a real browser (headless Chromium through playwright-core), with the
//! Python MCP SDK as the agent whose calls wait for a person: log in, see the arguments,
//! approve (the call completes), deny (the agent reads the note), watch a decision arrive
//! live, and a wrong token refused. Screenshots of every page go to target/e2e/console/.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

const POLICY: &str = "version 1
default allow

# Sums need a person, who does not see `b`; the agent may ask 30 times a minute.
tool get-sum {
  require approval timeout 120 seconds redact args.b
  limit 30 per minute per grant as sums
}
";

/// playwright-core under target/e2e/npm and Chromium: both provisioned by `cargo xtask test`.
fn browser_peers() -> (PathBuf, PathBuf) {
    let modules = support::repo().join("target/e2e/npm/node_modules");
    if !modules.join("playwright-core").is_dir() {
        support::missing(&format!(
            "playwright-core is not installed in {}",
            modules.display()
        ));
    }
    let chromium = std::env::var_os("WARDEN_E2E_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.exists() {
        support::missing(&format!(
            "no Chromium at {} (apt-get install chromium, or set WARDEN_E2E_CHROMIUM)",
            chromium.display()
        ));
    }
    (modules, chromium)
}

struct Browser {
    modules: PathBuf,
    chromium: PathBuf,
    admin: String,
    gateway: String,
    shots: PathBuf,
}

impl Browser {
    fn step(&self, step: &str, arg: &str) -> Value {
        let out = Command::new("node")
            .arg(support::repo().join("tests/console/browser.mjs"))
            .args([
                step,
                &self.admin,
                &self.gateway,
                "admin-secret",
                "alice-token",
            ])
            .arg(&self.shots)
            .arg(arg)
            .env("WARDEN_E2E_NODE_MODULES", &self.modules)
            .env("WARDEN_E2E_CHROMIUM", &self.chromium)
            .output()
            .expect("run node tests/console/browser.mjs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "browser step {step}: {e}\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(
            out.status.success() && v["ok"] == true,
            "browser step {step}: {v:#}"
        );
        v
    }
}

/// The agent's call, made by the Python SDK in the background: it waits for a person.
fn agent_call(python: &Path, url: &str, args: Value) -> std::thread::JoinHandle<Value> {
    let (python, url) = (python.to_owned(), url.to_owned());
    std::thread::spawn(move || {
        let calls = json!([["get-sum", args]]).to_string();
        support::run_python(
            &python,
            "gateway_scenario.py",
            &[&url, "auto", "alice-token", &calls],
        )
    })
}

/// A chat webhook stand-in: answers 200 to each POST and hands its JSON body over.
fn hook() -> (String, std::sync::mpsc::Receiver<Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut line, mut length) = (String::new(), 0usize);
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut conn = conn;
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tx.send(serde_json::from_slice(&body).unwrap_or(Value::Null));
        }
    });
    (url, rx)
}

#[test]
fn a_person_approves_and_denies_calls_in_the_console_and_sees_the_gate_at_work() {
    let warden = support::warden().expect("warden binary");
    let python = support::python().expect("python with mcp");
    let js = support::everything().expect("server-everything");
    let (modules, chromium) = browser_peers();
    let upstream = support::start_everything(&js);
    let dir = support::scratch("console");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let audit = dir.join("audit.jsonl");
    let admin_port = support::free_port();
    let mut cmd = support::serve_command(&warden, &policy, &upstream.url);
    cmd.args([
        "--grant-token",
        "alice=alice-token",
        "--admin-token",
        "admin-secret",
    ])
    .args(["--admin", &format!("127.0.0.1:{admin_port}")])
    .arg("--audit")
    .arg(&audit);
    let (hook_url, announced) = hook();
    cmd.args(["--approval-notify", &hook_url]);
    let gw = support::start(cmd);
    let shots = support::repo().join("target/e2e/console");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = Browser {
        modules,
        chromium,
        admin: format!("http://127.0.0.1:{admin_port}"),
        gateway: format!("{}/mcp", gw.url),
        shots: shots.clone(),
    };

    // Approve: the person sees the values, and the waiting call completes.
    let call = agent_call(&python, &browser.gateway, json!({"a": 2, "b": 3}));
    let seen = browser.step("approve", "\"a\": 2");
    // `b` is redacted for the approver; the call still gets it (the sum is 5).
    let shown = seen["args_shown"].as_str().unwrap();
    assert!(
        shown.contains("\"b\": \"[redacted]\"") && !shown.contains("\"b\": 3"),
        "{seen}"
    );
    assert!(
        seen["limits_text"].as_str().unwrap().contains("sums"),
        "{seen}"
    );
    assert!(
        seen["policy_text"]
            .as_str()
            .unwrap()
            .contains("require approval"),
        "{seen}"
    );
    let done = call.join().unwrap();
    let result = &done["calls"][0];
    assert_eq!(result["is_error"], false, "{done}");
    // The request was announced with a link to its page on the console.
    let note = announced
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(note["tool"], "get-sum", "{note}");
    assert_eq!(note["args"], json!({"a": 2, "b": "[redacted]"}), "{note}");
    let link = note["console_url"].as_str().unwrap();
    assert_eq!(
        link,
        format!(
            "{}/console/approvals#{}",
            browser.admin,
            note["id"].as_str().unwrap()
        )
    );
    assert!(result["text"].as_str().unwrap().contains('5'), "{done}");

    // Deny with a note: the agent reads it.
    let call = agent_call(&python, &browser.gateway, json!({"a": 40, "b": 2}));
    browser.step("deny", "too large for an agent");
    let done = call.join().unwrap();
    let result = &done["calls"][0];
    assert_eq!(result["is_error"], true, "{done}");
    assert!(
        result["text"]
            .as_str()
            .unwrap()
            .contains("too large for an agent"),
        "{done}"
    );

    // Who answered, how, with what note: in the audit log (and no argument values).
    let log = std::fs::read_to_string(&audit).unwrap();
    let answers: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "approval answered")
        .collect();
    assert_eq!(answers.len(), 2, "{log}");
    assert_eq!(answers[0]["author"], "console");
    assert_eq!(answers[0]["approved"], true);
    assert_eq!(answers[0]["note"], "checked the sum with finance");
    assert_eq!(answers[0]["tool"], "get-sum");
    assert_eq!(answers[1]["approved"], false);
    assert!(
        !log.contains("\"a\":40") && !log.contains("\"a\": 40"),
        "{log}"
    );

    // A full live buffer: 1,000 decisions, then time the pages (figures, not assertions:
    // docs/PERFORMANCE.md records them).
    let sid = support::session(&gw.url, "alice-token");
    for i in 0..1000 {
        let _ = support::call_text(
            &gw.url,
            "alice-token",
            &sid,
            100 + i,
            "echo",
            json!({"message": "x"}),
        );
    }
    let load = browser.step("load", "");
    std::fs::write(shots.join("timings.json"), load["timings_ms"].to_string()).unwrap();
    eprintln!("console page loads (ms): {}", load["timings_ms"]);
    for page in [
        "approvals.png",
        "approvals-phone.png",
        "decisions.png",
        "limits.png",
        "policy.png",
        "login-refused.png",
    ] {
        assert!(shots.join(page).is_file(), "no screenshot {page}");
    }
}
