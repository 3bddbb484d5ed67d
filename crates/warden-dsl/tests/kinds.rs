//! Resources, prompts and server requests in `.pol`: what each form means, that files written
//! before they existed read as before, where problems are reported, and canonical output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;
use warden_policy::{Policy, to_policylayer};

fn json(text: &str) -> serde_json::Value {
    match warden_dsl::compile(text) {
        Ok(c) => c.policy.to_value(),
        Err(e) => panic!("{}", e.render("t.pol", text, false)),
    }
}

fn error(text: &str) -> String {
    match warden_dsl::compile(text) {
        Ok(_) => panic!("compiled: {text}"),
        Err(e) => e.render("t.pol", text, false),
    }
}

const EVERY_FORM: &str = r#"default deny
default allow resources, prompts
default deny methods
lists all
hide resources ["secret://*", "file:///etc/*"]
hide prompts [debug_*]
allow resource "demo://resource/static/*", "file:///srv/docs/*"
allow prompt simple-prompt, "complex_prompt"
allow server_request "roots/list"
resource "file:///srv/ledger", "file:///srv/payroll/*" {
  require approval timeout 60 seconds
  limit 10 per minute per grant as reads
  deny if caller.grant == "bot" because "bots do not read the ledger"
}
prompt summarize { require args.temperature <= 1 else "too hot" }
server_request "sampling/createMessage" { deny always because "servers may not use the client's model" }
tool get_x { limit 10 per minute per grant as reads }
"#;

#[test]
fn every_form_compiles_to_its_section() {
    insta::assert_json_snapshot!("every_form", json(EVERY_FORM));
    insta::assert_snapshot!(
        "every_form_decompiled",
        warden_dsl::decompile(&warden_dsl::compile(EVERY_FORM).unwrap().policy)
    );
}

#[test]
fn files_from_before_read_as_before() {
    // A tool named like a kind word, at the end of `allow` or before a comma.
    assert_eq!(
        json("allow resource\ntool x {}\n")["tools"],
        json!({"resource": {}, "x": {}})
    );
    assert_eq!(
        json("allow prompt, resource\n")["tools"],
        json!({"prompt": {}, "resource": {}})
    );
    assert_eq!(
        json("allow server_request")["tools"],
        json!({"server_request": {}})
    );
    assert_eq!(
        json("allow prompt # a tool\nversion 1\n")["tools"],
        json!({"prompt": {}})
    );
    assert_eq!(
        json("tool resource, prompt { limit 1 per minute }")["tools"]["prompt"]["limits"][0]["counter"],
        json!("prompt_rate")
    );
    assert_eq!(
        json("hide [resource, prompts]")["hide"],
        json!(["resource", "prompts"])
    );
    // `default deny` followed by an empty table, on one line or two.
    for text in ["default deny tools {}", "default deny\ntools {}"] {
        assert_eq!(
            json(text),
            json!({"version": "1", "default": "deny", "tools": {}})
        );
    }
    assert_eq!(
        json("default allow tools\ntools {}"),
        json!({"version": "1", "tools": {}, "defaults": {"tools": "allow"}})
    );
    assert_eq!(
        json("default allow resources resources {}"),
        json!({"version": "1", "defaults": {"resources": "allow"}, "resources": {}})
    );
}

#[test]
fn limits_without_a_counter_name_count_per_kind() {
    let p = json(
        "tool p { limit 1 per minute }\nprompt p { limit 2 per minute }\nresource \"a://b\" { limit 3 per minute }\nserver_request \"roots/list\" { limit 4 per minute }",
    );
    assert_eq!(p["tools"]["p"]["limits"][0]["counter"], "p_rate");
    assert_eq!(p["prompts"]["p"]["limits"][0]["counter"], "prompt:p_rate");
    assert_eq!(
        p["resources"]["a://b"]["limits"][0]["counter"],
        "resource:a://b_rate"
    );
    assert_eq!(
        p["server_requests"]["roots/list"]["limits"][0]["counter"],
        "server_request:roots/list_rate"
    );
    // Each name of a block has its own, so the decompiler keeps such entries apart.
    let text = "prompt a, b {\n  limit 2 per minute\n}\n";
    let out = warden_dsl::decompile(&warden_dsl::compile(text).unwrap().policy);
    assert_eq!(
        out,
        "version 1\n\nprompt a {\n  limit 2 per minute\n}\n\nprompt b {\n  limit 2 per minute\n}\n"
    );
}

#[test]
fn names_that_are_keywords_are_quoted() {
    let p = Policy::from_json_str(
        &json!({
            "version": "1",
            "tools": {"prompt": {}, "resource": {}, "limit": {}},
            "prompts": {"default": {}, "tool": {"deny_if": [{"conditions": []}]}, "ok-name": {}},
            "resources": {"*": {}},
            "hide_prompts": ["allow"],
        })
        .to_string(),
    )
    .unwrap();
    let text = warden_dsl::decompile(&p);
    assert_eq!(
        text,
        r#"version 1
hide prompts ["allow"]

allow "prompt", "resource", limit

allow resource *

allow prompt "default"

prompt "tool" {
  deny always
}

allow prompt ok-name
"#
    );
    assert_eq!(warden_dsl::compile(&text).unwrap().policy, p);
}

#[test]
fn each_section_maps_back_to_its_source() {
    let c = warden_dsl::compile(EVERY_FORM).unwrap();
    let at = |pointer: &str| {
        let span = c
            .source_map
            .span(pointer)
            .unwrap_or_else(|| panic!("{pointer}"));
        &EVERY_FORM[span]
    };
    assert_eq!(at("/defaults"), "default allow resources, prompts");
    assert_eq!(at("/defaults/prompts"), "prompts");
    assert_eq!(at("/defaults/methods"), "methods");
    assert_eq!(at("/lists"), "all");
    assert_eq!(at("/hide_resources/1"), "\"file:///etc/*\"");
    assert_eq!(at("/hide_prompts/0"), "debug_*");
    assert!(at("/resources").starts_with("allow resource \"demo:"));
    assert_eq!(
        at("/resources/file:~1~1~1srv~1payroll~1*"),
        "\"file:///srv/payroll/*\""
    );
    assert_eq!(
        at("/resources/file:~1~1~1srv~1ledger/deny_if/0/conditions/0/value"),
        "\"bot\""
    );
    assert_eq!(
        at("/resources/file:~1~1~1srv~1ledger/approval/timeout"),
        "60"
    );
    assert_eq!(at("/prompts/summarize/require/0/on_deny"), "\"too hot\"");
    assert!(at("/server_requests/sampling~1createMessage/deny_if/0").starts_with("deny always"));

    // The hosted format refuses each section where it is written.
    let problems = to_policylayer(&c.policy, None).unwrap_err();
    let located: Vec<String> = problems
        .iter()
        .map(|p| {
            let d = warden_dsl::problem_diagnostic(p, &c.source_map, EVERY_FORM);
            let (line, col) = d.line_col(EVERY_FORM);
            format!("{line}:{col} {}", d.message)
        })
        .collect();
    insta::assert_debug_snapshot!("hosted_refuses_each_section", located);
}

#[test]
fn mistakes_are_told_as_such() {
    for (text, expected) in [
        ("default allow resource", "unknown kind `resource`"),
        ("default allow resource\nallow x", "unknown kind `resource`"),
        ("default deny prompt, tools", "unknown kind `prompt`"),
        ("default allow tools, method", "unknown kind `method`"),
        ("hide prompt [x]", "found `prompt`"),
        ("allow prompts summarize", "allows a tool named `prompts`"),
        (
            "allow server_request roots/list",
            "`roots/list` must be written as a string",
        ),
        (
            "resource file:///x { deny always }",
            "`file:///x` must be written as a string",
        ),
        (
            "allow resource tool",
            "a resource named `tool` is written as a string",
        ),
    ] {
        let rendered = error(text);
        assert!(rendered.contains(expected), "{text}:\n{rendered}");
    }
    // A valid start is not taken for a mistake: the error is where it was.
    let rendered = error("default allow tool x {\n  limt 3 per minute\n}\n");
    assert!(rendered.contains("found `limt`"), "{rendered}");
}

#[test]
fn formatter_keeps_comments_of_each_kind_apart() {
    let messy = r#"prompt x { # the prompt
  limit 1 per minute   # prompt's limit
}
tool x {   # the tool
  limit 2 per minute  # tool's limit
}
default allow prompts   # prompts open
# resources too
default allow resources
allow resource "a://b"  # one resource
lists callable
"#;
    let once = warden_dsl::format(messy).unwrap();
    insta::assert_snapshot!("formatted_kinds", once);
    assert_eq!(warden_dsl::format(&once).unwrap(), once);
}
