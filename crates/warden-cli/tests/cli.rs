//! The `warden` binary as a user runs it: exit codes, stdout and stderr.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::warden;

#[test]
fn check_accepts_a_valid_policy() {
    let (code, out, err) = warden(&["check", "kinds.pol"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "kinds.pol: ok (2 tool entries, default deny)\n", "")
    );
}

#[test]
fn check_notes_that_default_deny_now_denies_resources_and_prompts() {
    // Policies written for tools alone, in both languages: one note each, with the fix in
    // the file's own language. A policy that rules any other kind gets none.
    let (code, out, err) = warden(&["check", "instances.json", "tested.pol", "kinds.pol"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "instances.json: ok (3 tool entries, default deny)\ntested.pol: ok (2 tool entries, default deny)\nkinds.pol: ok (2 tool entries, default deny)\n"
    );
    insta::assert_snapshot!("check_kinds_note", err);
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
fn explain_a_warden_toml_asks_the_gateway_policy_after_the_servers() {
    let call = |grant: &str, region: &str| {
        let args = format!(r#"{{"region": "{region}"}}"#);
        let (code, out, err) = warden(&[
            "explain",
            "gateway.toml",
            "--tool",
            "cloud_create_instance",
            "--args",
            &args,
            "--grant",
            grant,
        ]);
        assert_eq!(code, 0, "{err}");
        out
    };
    // The server allows; then the gateway's policy refuses this caller.
    insta::assert_snapshot!("explain_gateway_denies", call("intern", "eu-west"));
    // Both allow: each charges its own counter.
    insta::assert_snapshot!("explain_gateway_allows", call("ci", "eu-west"));
    // The server refuses: the gateway's policy is never asked.
    let out = call("intern", "mars");
    assert!(!out.contains("gateway-wide"), "{out}");
    let (_, json, _) = warden(&[
        "explain",
        "gateway.toml",
        "--tool",
        "cloud_create_instance",
        "--args",
        r#"{"region": "eu-west"}"#,
        "--grant",
        "intern",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["decision"], "allow", "{v}");
    assert_eq!(v["gateway"]["decision"], "deny", "{v}");
    assert_eq!(v["gateway"]["rule"], "/all_tools/deny_if/0", "{v}");
}

#[test]
fn explain_resources_and_prompts() {
    let (code, out, err) = warden(&[
        "explain",
        "kinds.pol",
        "--resource",
        "file:///srv/ledger",
        "--grant",
        "bot",
    ]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("explain_resource", out);
    let (code, out, err) = warden(&[
        "explain",
        "kinds.pol",
        "--prompt",
        "summarize",
        "--args",
        r#"{"temperature": 1}"#,
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("explain_prompt_json", out);
    // A resource under its hide list, and one no entry names.
    for (uri, rule) in [
        ("secret://keys", "(hidden)"),
        ("file:///etc/passwd", "(default deny)"),
    ] {
        let (_, out, _) = warden(&[
            "explain",
            "kinds.pol",
            "--resource",
            uri,
            "--format",
            "json",
        ]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            (
                v["kind"].as_str(),
                v["decision"].as_str(),
                v["rule"].as_str()
            ),
            (Some("resource"), Some("deny"), Some(rule)),
            "{uri}"
        );
    }
    // Exactly one thing is called; a resource takes no arguments but its URI.
    for args in [
        &["explain", "kinds.pol"][..],
        &["explain", "kinds.pol", "--tool", "a", "--prompt", "b"],
        &[
            "explain",
            "kinds.pol",
            "--resource",
            "a://b",
            "--args",
            "{}",
        ],
    ] {
        let (code, out, err) = warden(args);
        assert_eq!((code, out.as_str()), (2, ""), "{args:?}");
        assert!(err.contains("Usage: warden explain"), "{err}");
    }
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

#[test]
fn check_with_tools_warns_about_rules_that_never_take_effect() {
    let (code, out, err) = warden(&["check", "lint.pol", "--tools", "tools.json"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "lint.pol: ok (7 tool entries, default deny, 6 warnings)\n"
        ),
        "{err}"
    );
    insta::assert_snapshot!(err);
}

#[test]
fn check_without_tools_still_finds_contradictions_and_hidden_blocks() {
    let (code, out, _) = warden(&["check", "lint.pol"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "lint.pol: ok (7 tool entries, default deny, 3 warnings)\n"
        )
    );
}

#[test]
fn check_refuses_a_tools_file_that_is_not_a_tool_list() {
    let (code, out, err) = warden(&["check", "lint.pol", "--tools", "instances.json"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("expected a tools/list answer"), "{err}");
}

#[test]
fn compile_for_policylayer_expands_globs_and_lowers_approval() {
    let (code, out, err) = warden(&[
        "compile",
        "hosted.pol",
        "--target",
        "policylayer",
        "--tools",
        "tools.json",
    ]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!(out);
}

#[test]
fn compile_for_policylayer_refuses_what_it_cannot_express() {
    let (code, out, err) = warden(&["compile", "unhosted.pol", "--target", "policylayer"]);
    assert_eq!((code, out.as_str()), (1, ""));
    insta::assert_snapshot!(err);
    // Globs without a catalog are refused too, at the glob.
    let (code, _, err) = warden(&["compile", "hosted.pol", "--target", "policylayer"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "hosted.pol:5:6: the hosted format has no globs: `get_*` needs a tool catalog"
        ),
        "{err}"
    );
}

/// The real Linode MCP server's tools/list, from the shared reference material beside the
/// checkout (CI has it). Missing, the test fails: it could not check what it claims to.
fn linode_tools() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/linode-tools-list.json"
    );
    assert!(
        std::path::Path::new(path).exists(),
        "{path} is missing: these tests need the shared reference material beside the checkout"
    );
    path.to_string()
}

#[test]
fn linode_example_names_only_real_tools_and_compiles_for_policylayer() {
    let tools = linode_tools();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/linode.pol");
    let (code, out, err) = warden(&["check", example, "--tools", &tools]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("default deny)"),
        "no warnings expected: {out}{err}"
    );

    // The hosted format cannot say who may create tokens: refused where it is written.
    let (code, _, err) = warden(&[
        "compile",
        example,
        "--target",
        "policylayer",
        "--tools",
        &tools,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("linode.pol:14:11: the hosted format cannot read"),
        "{err}"
    );
    // Without that rule, the rest compiles for the hosted product.
    let text = std::fs::read_to_string(example).unwrap();
    let hosted: String = text
        .lines()
        .filter(|l| !l.contains("caller."))
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("warden-cli-linode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let hosted_path = dir.join("linode-hosted.pol");
    std::fs::write(&hosted_path, hosted).unwrap();
    let (code, out, err) = warden(&[
        "compile",
        hosted_path.to_str().unwrap(),
        "--target",
        "policylayer",
        "--tools",
        &tools,
    ]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json["tools"]["create_personal_access_token"],
        serde_json::json!({"limits": [{"counter": "create_personal_access_token_rate",
                                       "window": "minute", "max": 30, "scope": "grant"}]})
    );
    // Globs are gone: every key is a real tool name.
    let tools = json["tools"].as_object().unwrap();
    assert!(tools.len() > 200, "{}", tools.len());
    assert!(tools.keys().all(|k| !k.contains('*')), "{out}");
}

#[test]
fn explain_reads_the_caller_from_grant_and_claims() {
    let decide = |tool: &str, grant: &str, claims: &str| {
        let (code, out, err) = warden(&[
            "explain", "who.pol", "--tool", tool, "--grant", grant, "--claims", claims, "--format",
            "json",
        ]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        (
            v["decision"].as_str().unwrap().to_owned(),
            v["message"].as_str().unwrap_or("").to_owned(),
        )
    };
    let ops = r#"{"groups": ["ops", "oncall"], "scope": "instances:write"}"#;
    let dev = r#"{"groups": ["dev"], "scp": ["instances:read"]}"#;
    assert_eq!(decide("delete_instance", "alice", ops).0, "allow");
    assert_eq!(
        decide("delete_instance", "bob", dev),
        ("deny".into(), "only the ops team deletes instances".into())
    );
    assert_eq!(decide("create_instance", "alice", ops).0, "allow");
    assert_eq!(
        decide("create_instance", "bob", dev).1,
        "needs the instances:write scope"
    );
    assert_eq!(
        decide("create_instance", "intern", ops).1,
        "interns do not create instances"
    );
    // No claims at all: a claim condition is false, so `require` denies.
    let (code, out, _) = warden(&["explain", "who.pol", "--tool", "delete_instance"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("DENY"), "{out}");
    // Claims that are not a JSON object are refused with a clear message.
    let (code, _, err) = warden(&[
        "explain",
        "who.pol",
        "--tool",
        "delete_instance",
        "--claims",
        "[1]",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("--claims must be a JSON object"), "{err}");
}

#[test]
fn the_hosted_target_refuses_caller_conditions_where_they_are_written() {
    let (code, _, err) = warden(&["compile", "who.pol", "--target", "policylayer"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("who.pol:6:11: the hosted format cannot read the caller"),
        "{err}"
    );
    assert!(err.contains("who.pol:10:11"), "{err}");
    assert!(err.contains("who.pol:11:11"), "{err}");
}

#[test]
fn test_runs_the_examples_tests() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    let (code, out, err) = warden(&[
        "test",
        &format!("{root}/linode.test.pol"),
        &format!("{root}/payments.test.pol"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("9 passed, 0 failed"), "{out}");
}

#[test]
fn test_steps_of_a_warden_toml_name_a_server_either_way() {
    // `cloud_create_instance` and `create_instance on cloud` are one tool under one policy
    // with one counter: the third call is limited. A server that is not there fails its
    // step where `on` names it.
    let (code, out, err) = warden(&["test", "servers.test.pol"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("ok    servers.test.pol :: either way of naming a server's tool (4 calls)"),
        "{out}"
    );
    assert!(out.contains("servers.test.pol:13:36: call 1 of 1"), "{out}");
    assert!(
        out.contains("`on nowhere`: no such server here (the policy must be a warden.toml; its servers are cloud, pay)"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed"), "{out}");
    // Under one policy there are no servers to name.
    let (code, out, err) = warden(&["test", "on-no-servers.test.pol"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(
            "`on linode`: this policy names no servers (`on SERVER` goes with a warden.toml)"
        ),
        "{out}"
    );
}

#[test]
fn test_files_under_a_gateway_policy_decide_each_step_by_both_policies() {
    let (code, out, err) = warden(&["test", "gateway.test.pol"]);
    assert_eq!(code, 1, "{out}{err}");
    // The intern's three refusals by the gateway gave the server's `creates` its charge
    // back: without that the third would be limited by the server's policy.
    assert!(
        out.contains(
            "ok    gateway.test.pol :: the gateway's policy decides after the server's (7 calls)"
        ),
        "{out}"
    );
    assert!(
        out.contains("decided by /all_tools/deny_if/0 (gateway.pol:5:3)"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed"), "{out}");
}

#[test]
fn diff_of_two_warden_tomls_compares_their_gateway_policies_too() {
    let (code, out, err) = warden(&[
        "diff",
        "gateway.toml",
        "gateway-edited.toml",
        "--fail-on-change",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.contains("== gateway-wide policy: gateway.pol → gateway-edited.pol"),
        "{out}"
    );
    // An `all tools` condition is a rule like any other: its removal is a change.
    assert!(
        out.contains("rules removed (1)\n  - /all_tools/deny_if/0 (gateway.pol:5:3)"),
        "{out}"
    );
    let (code, out, _) = warden(&["diff", "gateway.toml", "servers.toml"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("== gateway-wide policy: removed (it was gateway.pol)"),
        "{out}"
    );
}

#[test]
fn test_reports_passing_failing_and_broken_files() {
    let (code, out, err) = warden(&["test", "tested.test.pol"]);
    assert_eq!(code, 0, "{out}{err}");
    insta::assert_snapshot!("test_passing", out);

    let (code, out, err) = warden(&["test", "failing.test.pol"]);
    assert_eq!(code, 1, "{out}{err}");
    insta::assert_snapshot!("test_failing", out);

    let (code, out, err) = warden(&["test", "broken.test.pol"]);
    assert_eq!(code, 1, "{out}{err}");
    insta::assert_snapshot!("test_broken", format!("{out}\n{err}"));

    // A counter the policy does not have: located, with a suggestion, before anything runs.
    let (code, out, err) = warden(&["test", "typo.test.pol"]);
    assert_eq!(code, 1, "{out}{err}");
    insta::assert_snapshot!("test_unknown_counter", err);

    // Coverage: the rules no test looked at, where they are written.
    let (code, out, _) = warden(&["test", "failing.test.pol", "--coverage"]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(
        "test_coverage",
        out.split("\ncoverage").nth(1).unwrap_or(&out)
    );

    // For CI systems and tools.
    let (code, out, _) = warden(&["test", "failing.test.pol", "--format", "junit"]);
    assert_eq!(code, 1);
    assert!(
        out.contains(r#"<testsuites name="warden test" tests="2" failures="1">"#),
        "{out}"
    );
    assert!(
        out.contains("<failure message=\"failing.test.pol:3:"),
        "{out}"
    );
    let (_, out, _) = warden(&["test", "failing.test.pol", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["failure"]["actual"]["outcome"], "limited");
    assert_eq!(v[0]["failure"]["call"], 3);
    assert!(v[1]["failure"].is_null());
}

#[test]
fn test_runs_resource_prompt_and_server_request_steps() {
    let (code, out, err) = warden(&["test", "kinds.test.pol", "--coverage"]);
    assert_eq!(code, 0, "{out}{err}");
    insta::assert_snapshot!("test_kinds", out);
    let (code, out, err) = warden(&["test", "kinds-failing.test.pol"]);
    assert_eq!(code, 1, "{out}{err}");
    insta::assert_snapshot!("test_kinds_failing", out);
}

#[test]
fn diff_reports_defaults_and_entries_of_each_kind() {
    let (code, out, err) = warden(&["diff", "kinds.pol", "kinds-edited.pol"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("diff_kinds", out);
    // From a policy of tools alone: what its default denies, said once.
    let (code, out, err) = warden(&["diff", "tested.pol", "kinds.pol"]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("diff_from_tools_only", out);
    let (code, out, _) = warden(&["diff", "kinds.pol", "kinds.pol", "--fail-on-change"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "kinds.pol → kinds.pol: 1 tools compared (named by either policy)\n\nno change\n"
        )
    );
}

#[test]
fn replay_decides_each_recorded_call_as_its_kind() {
    let (code, out, err) = warden(&["replay", "--policy", "kinds.pol", "recorded-kinds.jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("recorded-kinds.jsonl:8: not a recorded call (unknown variant `tooling`"),
        "{err}"
    );
    insta::assert_snapshot!("replay_kinds", out);
}

#[test]
fn diff_shows_what_an_edit_changes_tool_by_tool() {
    let old = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/linode.pol");
    let tools = linode_tools();
    let (code, out, err) = warden(&["diff", old, "linode-edited.pol", "--tools", &tools]);
    assert_eq!(code, 0, "{err}");
    insta::assert_snapshot!("diff_linode", out.replace(old, "examples/linode.pol"));
    // As a CI gate; and the same policy in its two forms is no change.
    let (code, _, _) = warden(&["diff", old, "linode-edited.pol", "--fail-on-change"]);
    assert_eq!(code, 2);
    let (code, out, _) = warden(&["diff", "tested.pol", "tested.pol", "--fail-on-change"]);
    assert_eq!(code, 0);
    // No change, and one note that a policy of tools alone denies the other kinds.
    assert!(out.contains("\n\nno change\n\nnote: tested.pol: "), "{out}");
    assert_eq!(out.matches("note:").count(), 1, "{out}");
}

#[test]
fn replay_reports_what_a_policy_would_decide_differently() {
    let (code, out, err) = warden(&["replay", "--policy", "tested.pol", "recorded.jsonl"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("recorded.jsonl:8: not a recorded call"),
        "{err}"
    );
    insta::assert_snapshot!("replay_report", out);
    let (code, _, _) = warden(&[
        "replay",
        "--policy",
        "tested.pol",
        "recorded.jsonl",
        "--fail-on-change",
    ]);
    assert_eq!(code, 2);
}

/// The hosted tool page's FAQ: "setting max: 10 and window: 60 limits the tool to 10 calls
/// per minute … tracked per agent session"; "Set action: deny … include a reason field".
#[test]
fn hosted_faq_forms_load_and_mean_what_the_page_says() {
    let page = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/policylayer-tool-page.txt"
    ))
    .expect("the hosted tool page in ../shared/reference");
    assert!(page.contains("setting max: 10 and window: 60 limits the tool to 10 calls per minute"));
    assert!(page.contains("Rate limits are tracked per agent session"));
    assert!(page.contains("Set action: deny") && page.contains("include a reason field"));

    let (code, out, err) = warden(&["check", "faq.json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 hosted form(s) read as canonical"), "{out}");
    insta::assert_snapshot!("faq_check_notes", err);
    // Decided as the page says, through the gateway's code.
    let (code, out, err) = warden(&["test", "faq.test.pol"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = warden(&["decompile", "faq.json"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("faq_decompiled", out);
    // Back to the hosted product: the per-session limit is its `rate_limit` block again.
    let (code, out, err) = warden(&["compile", "faq.json", "--target", "policylayer"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["tools"]["create_personal_access_token"],
        serde_json::json!({"rate_limit": {"max": 10, "window": 60}})
    );
    assert_eq!(
        v["tools"]["delete_instance"]["deny_if"][0]["on_deny"],
        "Deleting instances needs a ticket"
    );
}

#[test]
fn completions_man_page_and_color_follow_the_clap_definitions() {
    for (shell, marker) in [
        ("bash", "_warden()"),
        ("zsh", "#compdef warden"),
        ("fish", "complete -c warden"),
    ] {
        let (code, out, err) = warden(&["completions", shell]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(marker), "{shell}: {out}");
        // Every verb is completed.
        for verb in ["check", "test", "diff", "replay", "serve"] {
            assert!(out.contains(verb), "{shell} lacks {verb}");
        }
    }
    let (code, out, _) = warden(&["man"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(".ie") && out.contains(".TH warden 1"),
        "{out}"
    );
    // Colour: never by default off a terminal (NO_COLOR is set here too), always on request.
    let (_, _, plain) = warden(&["check", "bad.json"]);
    assert!(!plain.contains('\u{1b}'), "{plain}");
    let (_, _, coloured) = warden(&["--color", "always", "check", "bad.json"]);
    assert!(coloured.contains("\u{1b}["), "{coloured}");
    let (_, _, never) = warden(&["check", "bad.json", "--color", "never"]);
    assert!(!never.contains('\u{1b}'));
}
