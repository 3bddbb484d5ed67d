//! The hosted product's documents load, mean the same, and serialize back unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use warden_policy::{Call, CompiledPolicy, Policy};

/// The `policy.json` block of the hosted page in `shared/reference`, read from there.
fn seed_text() -> Option<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/policylayer-tool-page.txt"
    );
    let page = std::fs::read_to_string(path).ok()?;
    let start = page.find("policy.json\n")? + "policy.json\n".len();
    let rest = &page[start..];
    // The block is the first balanced {...} after the heading.
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(rest[..=i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

const SEED_COPY: &str = r#"{
  "version": "1",
  "default": "deny",
  "tools": {
    "create_personal_access_token": {
      "limits": [{"counter": "create_personal_access_token_rate", "window": "minute", "max": 30, "scope": "grant"}]
    }
  }
}"#;

#[test]
fn seed_policy_round_trips() {
    let text = match seed_text() {
        Some(t) => t,
        None => {
            eprintln!(
                "shared/reference not beside the repository: checking the inline copy of the seed only"
            );
            SEED_COPY.to_string()
        }
    };
    let original: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        original,
        serde_json::from_str::<Value>(SEED_COPY).unwrap(),
        "the seed changed upstream"
    );
    let policy = Policy::from_json_str(&text).unwrap();
    assert_eq!(policy.to_value(), original);

    let compiled = CompiledPolicy::new(&policy).unwrap();
    let d = compiled.decide(&Call::new("create_personal_access_token").grant("alice"));
    assert!(d.is_allow());
    assert_eq!(d.rule(), "/tools/create_personal_access_token");
    let [charge] = d.charges() else {
        panic!("one limit expected: {:?}", d.charges())
    };
    assert_eq!(
        charge.limit.counter_name,
        "create_personal_access_token_rate"
    );
    assert_eq!(
        (
            charge.limit.quota.max,
            charge.limit.quota.window_secs,
            charge.cost
        ),
        (30, 60, 1)
    );
    assert_eq!(
        compiled.decide(&Call::new("delete_linode_instance")).rule(),
        "(default deny)"
    );
}

#[test]
fn design_example_round_trips() {
    let text = r#"{
      "version": "1",
      "default": "deny",
      "hide": ["delete_instance"],
      "all_tools": { "limits": [ {"counter": "calls", "window": "minute", "max": 120, "scope": "grant"} ] },
      "tools": {
        "get_tag": {},
        "create_personal_access_token": {
          "limits": [ {"counter": "create_personal_access_token_rate", "window": "minute", "max": 30, "scope": "grant"} ]
        },
        "create_instance": {
          "require": [ {"conditions": [ {"path": "args.region", "op": "in", "value": ["us-east", "eu-west"]} ],
                        "on_deny": "Only us-east and eu-west"} ],
          "deny_if": [ {"conditions": [ {"path": "args.type", "op": "regex", "value": "^g6-dedicated"} ],
                        "on_deny": "Dedicated plans need a person"} ],
          "limits":  [ {"counter": "instances", "window": "hour", "max": 5, "scope": "grant"} ]
        },
        "transfer": { "deny_if": [ {"conditions": [], "on_deny": "Requires human approval."} ] },
        "list_*": { "limits": [], "mode": "shadow" },
        "spend": { "limits": [ {"counter": "usd", "window": 86400, "max": 500, "scope": "global", "cost": "args.amount"} ],
                   "approval": {"timeout": 60, "on_timeout": "deny"} }
      }
    }"#;
    let policy = Policy::from_json_str(text).unwrap();
    assert_eq!(
        policy.to_value(),
        serde_json::from_str::<Value>(text).unwrap()
    );
    // Through serde's own entry point too.
    let via_serde: Policy = serde_json::from_str(text).unwrap();
    assert_eq!(via_serde, policy);
}
