//! The `warden` binary as a user runs it: exit codes, stdout and stderr.

use std::process::Command;

fn warden(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
        .env("NO_COLOR", "1")
        .output()
        .expect("run warden");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_valid_policy() {
    let (code, out, err) = warden(&["check", "instances.json"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "instances.json: ok (3 tool entries, default deny)\n", "")
    );
}

#[test]
fn check_reports_every_problem_located() {
    let (code, out, err) = warden(&["check", "bad.json"]);
    assert_eq!((code, out.as_str()), (1, ""));
    insta::assert_snapshot!(err);
}

#[test]
fn check_reports_missing_files_and_unknown_types() {
    let (code, _, err) = warden(&["check", "missing.json", "instances.json"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: cannot read missing.json: "),
        "{err}"
    );
    let (code, _, err) = warden(&["check", "cli.yaml"]);
    assert_eq!(code, 1);
    assert!(err.contains("unsupported file type"), "{err}");
}

#[test]
fn explain_json_has_decision_rule_message() {
    let (code, out, _) = warden(&[
        "explain",
        "instances.json",
        "--tool",
        "create_instance",
        "--args",
        r#"{"region": "ap-south"}"#,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"], "deny");
    assert_eq!(v["rule"], "/tools/create_instance/require/0");
    assert_eq!(v["message"], "Only us-east and eu-west");

    for (tool, decision, rule) in [
        ("list_instances", "allow", "/tools/list_*"),
        ("delete_instance", "deny", "(hidden)"),
        ("reboot", "deny", "(default deny)"),
        ("transfer_funds", "approval", "/tools/transfer_funds"),
    ] {
        let (_, out, _) = warden(&[
            "explain",
            "instances.json",
            "--tool",
            tool,
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (v["decision"].as_str(), v["rule"].as_str()),
            (Some(decision), Some(rule)),
            "{tool}"
        );
    }
}

#[test]
fn explain_text_shows_the_steps() {
    let (code, out, _) = warden(&[
        "explain",
        "instances.json",
        "--tool",
        "create_instance",
        "--args",
        r#"{"region": "eu-west"}"#,
        "--grant",
        "ci",
    ]);
    assert_eq!(code, 0);
    insta::assert_snapshot!(out);
}

#[test]
fn explain_refuses_bad_arguments() {
    let (code, _, err) = warden(&[
        "explain",
        "instances.json",
        "--tool",
        "x",
        "--args",
        "{\"a\": 1, \"a\": 2}",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("duplicate key"), "{err}");
}

#[test]
fn schema_prints_the_committed_schema() {
    let (code, out, _) = warden(&["schema"]);
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/policy.schema.json"
    ))
    .unwrap_or_default();
    assert!(
        out == committed,
        "docs/policy.schema.json is stale: run `cargo run -- schema > docs/policy.schema.json`"
    );
}
