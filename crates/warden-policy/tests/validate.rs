//! Every problem a broken document can have, as the user reads it (insta snapshots).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use warden_policy::{Error, Policy};

fn problems(text: &str) -> String {
    match Policy::from_json_str(text) {
        Ok(_) => "ok".into(),
        Err(Error::Syntax {
            line,
            column,
            message,
        }) => format!("syntax {line}:{column}: {message}"),
        Err(Error::Invalid { problems }) => problems.to_string(),
    }
}

#[test]
fn unknown_fields_suggest_the_nearest() {
    insta::assert_snapshot!(problems(
        r#"{"version": "1", "tool": {}, "defualt": "deny", "banana": 1,
        "tools": {"x": {"limit": [], "deny_if": [{"conditions": [], "ondeny": "m"}]}}}"#
    ));
}

#[test]
fn keywords_and_types() {
    insta::assert_snapshot!(problems(
        r#"{"version": 1, "default": "block", "mode": "shadw", "hide": "x",
        "tools": {"a": {"limits": [{"counter": "c", "window": "mintue", "max": "30", "scope": "user"}]},
                  "b": {"require": [{"conditions": [{"path": "args.x", "op": "equals", "value": 1}]}]},
                  "c": [],
                  "d": {"limits": [{"window": "fortnight", "max": -3}, {"counter": "k", "window": 0, "max": 1.5}]}}}"#
    ));
}

#[test]
fn semantic_problems() {
    insta::assert_snapshot!(problems(
        r#"{"version": "2", "default": "deny",
        "tools": {
          "a": {"require": [{"conditions": [
              {"path": "args.region", "op": "in", "value": "us-east"},
              {"path": "args.n", "op": "gt", "value": "many"},
              {"path": "args.t", "op": "regex", "value": "(unclosed"},
              {"path": "args.e", "op": "exists", "value": "yes"},
              {"path": "region", "op": "eq", "value": "x"},
              {"path": "args.r", "op": "eq", "value": ["a", "b"]},
              {"path": "args.r", "op": "in", "value": ["a", ["b"]]},
              {"path": "counter.sharde", "op": "lt", "value": 3}
          ]}],
          "limits": [{"counter": "shared", "window": "minute", "max": 30, "scope": "grant", "cost": "amount"}]},
          "b": {"limits": [{"counter": "shared", "window": "hour", "max": 30}]},
          "list_*": {}, "*_inst": {}, "a_*": {}, "b_*": {}, "*": {}
        }}"#
    ));
}

#[test]
fn syntax_errors_and_repeated_keys() {
    insta::assert_snapshot!(problems(
        "{\"version\": \"1\",\n \"tools\": {\n \"a\": {},\n \"a\": {\"deny_if\": []}}}"
    ));
    insta::assert_snapshot!(problems("{\"version\": \"1\", "));
    insta::assert_snapshot!(problems(""));
    insta::assert_snapshot!(problems("[]"));
}

#[test]
fn max_zero_and_missing_fields() {
    insta::assert_snapshot!(problems(
        r#"{"tools": {"a": {"limits": [{"counter": "c", "window": "day", "max": 0}],
        "deny_if": [{"on_deny": "x"}, {"conditions": [{"op": "eq"}]}]}}}"#
    ));
}

#[test]
fn never_panics_on_odd_documents() {
    for text in [
        "null",
        "1",
        "\"x\"",
        "{\"version\": \"1\", \"tools\": null}",
        "{\"version\": \"1\", \"tools\": {\"\": {}}}",
        "{\"version\": \"1\", \"hide\": [1, null, \"\"]}",
        "{\"version\": \"1\", \"tools\": {\"a\": {\"approval\": {\"timeout\": 0}}}}",
        &format!("{}1{}", "[".repeat(5000), "]".repeat(5000)),
    ] {
        let _ = problems(text);
    }
}

#[test]
fn limits_per_claim_name_their_claim() {
    let limit = |extra: &str| {
        problems(&format!(
            r#"{{"version": "1", "default": "deny", "tools": {{"t": {{"limits": [
                {{"counter": "c", "window": "hour", "max": 5{extra}}}]}}}}}}"#
        ))
    };
    assert!(
        limit(r#", "scope": "claim""#)
            .contains("/tools/t/limits/0/scope: a limit per claim needs `claim`")
    );
    assert!(limit(r#", "scope": "claim", "claim": "a..b""#).contains("invalid claim name"));
    assert!(limit(r#", "claim": "team""#).contains("`claim` is only for limits per claim"));
    assert_eq!(limit(r#", "scope": "claim", "claim": "team""#), "ok");
}

#[test]
fn hosted_faq_forms_misused() {
    insta::assert_snapshot!(problems(
        r#"{"version": "1", "tools": {
        "a": {"action": "allow", "reason": "why"},
        "b": {"action": "block"},
        "c": {"rate_limit": {"max": 0, "window": "fortnight", "burst": 2}}}}"#
    ));
}
