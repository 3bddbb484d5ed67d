//! Decision order (DESIGN.md section 4) end to end on the public API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{Value, json};
use warden_policy::{Call, CompiledPolicy, Kind, Outcome, Policy};

fn compile(doc: Value) -> CompiledPolicy {
    CompiledPolicy::new(&Policy::from_value(&doc).unwrap()).unwrap()
}

fn decide(p: &CompiledPolicy, tool: &str, args: Value) -> (Outcome, String, String) {
    let d = p.decide(&Call::new(tool).args(&args).grant("g"));
    (d.outcome(), d.rule().to_string(), d.message().to_string())
}

#[test]
fn hide_beats_everything_and_star_hides_all() {
    let p = compile(
        json!({"version": "1", "default": "allow", "hide": ["delete_instance", "drop_*"],
        "tools": {"delete_instance": {}, "drop_*": {}}}),
    );
    assert_eq!(decide(&p, "delete_instance", json!({})).1, "(hidden)");
    assert_eq!(decide(&p, "drop_table", json!({})).1, "(hidden)");
    assert_eq!(decide(&p, "list_things", json!({})).1, "(default allow)");
    assert!(p.is_hidden("drop_x") && !p.is_hidden("list_x"));

    let all = compile(
        json!({"version": "1", "default": "allow", "hide": ["*"], "tools": {"get_tag": {}}}),
    );
    for tool in ["get_tag", "anything", ""] {
        let (o, rule, _) = decide(&all, tool, json!({}));
        assert_eq!((o, rule.as_str()), (Outcome::Deny, "(hidden)"), "{tool}");
    }
}

#[test]
fn default_allow_and_deny() {
    let deny = compile(json!({"version": "1", "default": "deny", "tools": {"get_tag": {}}}));
    assert_eq!(decide(&deny, "get_tag", json!({})).0, Outcome::Allow);
    assert_eq!(
        decide(&deny, "other", json!({})),
        (
            Outcome::Deny,
            "(default deny)".into(),
            "tool `other` is not allowed by this policy".into()
        )
    );
    let absent = compile(json!({"version": "1"}));
    assert_eq!(
        decide(&absent, "x", json!({})).1,
        "(default deny)",
        "no default means deny"
    );
    let allow = compile(json!({"version": "1", "default": "allow",
        "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 5}]}}));
    let d = allow.decide(&Call::new("x").grant("g"));
    assert_eq!((d.outcome(), d.rule()), (Outcome::Allow, "(default allow)"));
    assert_eq!(
        d.charges().len(),
        1,
        "all_tools limits apply to default-allowed tools"
    );
}

#[test]
fn glob_precedence_exact_then_most_specific() {
    let p = compile(json!({"version": "1", "tools": {
        "*": {"deny_if": [{"conditions": [], "on_deny": "catch-all"}]},
        "create_*": {"deny_if": [{"conditions": [], "on_deny": "creates"}]},
        "create_domain_*": {},
        "create_domain_zone": {"deny_if": [{"conditions": [], "on_deny": "exact"}]}
    }}));
    assert_eq!(
        decide(&p, "create_domain_record", json!({})).1,
        "/tools/create_domain_*"
    );
    assert_eq!(decide(&p, "create_domain_zone", json!({})).2, "exact");
    assert_eq!(decide(&p, "create_instance", json!({})).2, "creates");
    assert_eq!(decide(&p, "reboot", json!({})).2, "catch-all");
}

#[test]
fn deny_if_then_require_in_order_with_unknown_against_the_caller() {
    let p = compile(json!({"version": "1", "tools": {"create_instance": {
        "deny_if": [
            {"conditions": [{"path": "args.type", "op": "regex", "value": "^g6-dedicated"}], "on_deny": "dedicated"},
            {"conditions": [{"path": "args.count", "op": "gt", "value": 3}, {"path": "args.region", "op": "eq", "value": "us-east"}], "on_deny": "too many in us-east"}
        ],
        "require": [
            {"conditions": [{"path": "args.region", "op": "in", "value": ["us-east", "eu-west"]}], "on_deny": "region"},
            {"conditions": [{"path": "args.count", "op": "lte", "value": 10}], "on_deny": "count"}
        ]
    }}}));
    let ok = json!({"type": "g6-standard-2", "region": "eu-west", "count": "5"});
    assert_eq!(decide(&p, "create_instance", ok).0, Outcome::Allow);
    assert_eq!(
        decide(
            &p,
            "create_instance",
            json!({"type": "g6-dedicated-8", "region": "eu-west", "count": 1})
        )
        .2,
        "dedicated"
    );
    assert_eq!(
        decide(
            &p,
            "create_instance",
            json!({"region": "us-east", "count": "4"})
        )
        .2,
        "too many in us-east"
    );
    // Unknown (count is not a number) counts as true in deny_if...
    assert_eq!(
        decide(
            &p,
            "create_instance",
            json!({"region": "us-east", "count": "lots"})
        )
        .2,
        "too many in us-east"
    );
    // ...and as false in require.
    assert_eq!(
        decide(
            &p,
            "create_instance",
            json!({"region": "eu-west", "count": "lots"})
        )
        .2,
        "count"
    );
    // Missing: deny_if does not fire, require fails.
    assert_eq!(
        decide(&p, "create_instance", json!({"count": 1})).1,
        "/tools/create_instance/require/0"
    );
    assert_eq!(
        decide(&p, "create_instance", json!({"region": "eu-west"})).1,
        "/tools/create_instance/require/1"
    );
}

#[test]
fn nested_argument_paths() {
    let p = compile(json!({"version": "1", "tools": {"tag": {
        "require": [{"conditions": [{"path": "args.metadata.owner", "op": "exists", "value": true}]}]}}}));
    assert_eq!(
        decide(&p, "tag", json!({"metadata": {"owner": "ops"}})).0,
        Outcome::Allow
    );
    let (o, rule, msg) = decide(&p, "tag", json!({"metadata": {}}));
    assert_eq!(
        (o, rule.as_str(), msg.as_str()),
        (
            Outcome::Deny,
            "/tools/tag/require/0",
            "denied by rule /tools/tag/require/0"
        )
    );
}

#[test]
fn limits_charge_tool_then_all_tools_and_need_their_scope_key() {
    let p = compile(json!({"version": "1",
    "all_tools": {"limits": [{"counter": "calls", "window": "minute", "max": 120, "scope": "session"}]},
    "tools": {
        "spend": {"limits": [{"counter": "usd", "window": "day", "max": 1000, "scope": "global", "cost": "args.amount"}]},
        "tok": {"limits": [{"counter": "tok", "window": 10, "max": 3}]}
    }}));
    let args = json!({"amount": "12.5"});
    let d = p.decide(&Call::new("spend").args(&args).session("s1"));
    assert!(d.is_allow());
    let charged: Vec<_> = d
        .charges()
        .iter()
        .map(|c| (c.limit.counter_name.as_str(), c.cost))
        .collect();
    assert_eq!(
        charged,
        [("usd", 13), ("calls", 1)],
        "costs round up; tool limits first"
    );

    let d = p.decide(
        &Call::new("spend")
            .args(&json!({"amount": -1}))
            .session("s1"),
    );
    assert_eq!(
        (d.outcome(), d.rule()),
        (Outcome::Deny, "/tools/spend/limits/0"),
        "a cost that can't be charged denies"
    );
    let d = p.decide(&Call::new("spend").args(&args));
    assert_eq!(
        d.rule(),
        "/all_tools/limits/0",
        "no session id for a session-scoped limit"
    );
    let d = p.decide(&Call::new("tok").session("s"));
    assert_eq!(
        d.rule(),
        "/tools/tok/limits/0",
        "scope defaults to grant, and there is no grant"
    );
    assert!(
        p.decide(&Call::new("tok").session("s").grant("g"))
            .is_allow()
    );
}

#[test]
fn approval_and_shadow() {
    let p = compile(json!({"version": "1", "tools": {
        "transfer": {"approval": {"timeout": 30}},
        "risky": {"mode": "shadow", "deny_if": [{"conditions": [], "on_deny": "no"}]}
    }}));
    let d = p.decide(&Call::new("transfer"));
    assert_eq!(d.outcome(), Outcome::Approval);
    assert_eq!(d.approval().map(|a| a.timeout_secs()), Some(30));
    let d = p.decide(&Call::new("risky"));
    assert!(
        d.is_deny() && d.is_shadow(),
        "shadow keeps the real decision"
    );
    assert!(!p.decide(&Call::new("transfer")).is_shadow());
    let all = compile(json!({"version": "1", "mode": "shadow"}));
    assert!(all.decide(&Call::new("x")).is_shadow());
    // The layer keeps a call's arguments for the person who approves it only when asked.
    assert!(p.asks_approval());
    assert!(!all.asks_approval());
}

#[test]
fn explain_lists_the_steps() {
    let p = compile(json!({"version": "1", "tools": {"create_instance": {
        "require": [{"conditions": [{"path": "args.region", "op": "in", "value": ["us-east"]}], "on_deny": "region"}]}}}));
    let e = p.explain(&Call::new("create_instance").args(&json!({"region": "eu"})));
    insta::assert_snapshot!(e.to_string());
    insta::assert_json_snapshot!(e);
}

#[test]
fn a_tools_own_mode_wins_over_the_policys() {
    let p = compile(json!({"version": "1", "mode": "shadow", "tools": {
        "strict": {"mode": "enforce", "deny_if": [{"conditions": []}]},
        "loose": {"deny_if": [{"conditions": []}]}
    }}));
    assert!(!p.decide(&Call::new("strict")).is_shadow());
    assert!(p.decide(&Call::new("loose")).is_shadow());
}

#[test]
fn equal_windows_written_differently_share_a_counter() {
    let doc = json!({"version": "1", "tools": {
        "a": {"limits": [{"counter": "c", "window": "minute", "max": 5}]},
        "b": {"limits": [{"counter": "c", "window": 60, "max": 5}]}
    }});
    assert!(warden_policy::validate(&Policy::from_value(&doc).unwrap()).is_empty());
}

#[test]
fn a_limit_per_claim_charges_the_claims_value_and_denies_without_it() {
    let p = compile(
        json!({"version": "1", "default": "deny", "tools": {"write": {
        "limits": [{"counter": "team_writes", "window": "hour", "max": 5,
                    "scope": "claim", "claim": "org.team"}]}}}),
    );
    let ops = json!({"org": {"team": "ops"}});
    let d = p.decide(&Call::new("write").grant("alice").claims(&ops));
    assert_eq!(d.outcome(), Outcome::Allow);
    let key = d.charges()[0]
        .limit
        .scope_key(&Call::new("write").claims(&ops));
    assert_eq!(key.as_deref(), Some("ops"));
    assert_eq!(d.charges()[0].key, "ops");
    assert_eq!(d.charges()[0].limit.claim(), Some("org.team"));
    // No claims, or a claim that names no single value: no bucket to charge, so deny.
    let list = json!({"org": {"team": ["a", "b"]}});
    for call in [
        Call::new("write").grant("alice"),
        Call::new("write").claims(&list),
    ] {
        let d = p.decide(&call);
        assert_eq!(d.outcome(), Outcome::Deny);
        assert!(
            d.message()
                .contains("counted per claim, and this call has no claim `org.team`"),
            "{}",
            d.message()
        );
    }
}

/// A caller may skip building a call's arguments when the policy says it does not read
/// them (the tower layer does, on its hot path): the answer must then be the same.
#[test]
fn a_policy_that_reads_no_arguments_decides_the_same_without_them() {
    let reads = |doc: Value| compile(doc).reads_arguments();
    assert!(reads(json!({"version": "1", "tools": {"t": {"deny_if": [
        {"conditions": [{"path": "args.a", "op": "eq", "value": 1}]}]}}})));
    assert!(reads(json!({"version": "1", "all_tools": {"require": [
        {"conditions": [{"path": "args.a.b", "op": "eq", "value": true}]}]}})));
    assert!(reads(json!({"version": "1", "tools": {"t": {"limits": [
        {"counter": "c", "window": "minute", "max": 9, "cost": "args.n"}]}}})));
    assert!(!reads(json!({"version": "1", "tools": {"t": {"deny_if": [
        {"conditions": [{"path": "caller.grant", "op": "eq", "value": "x"}]}],
        "limits": [{"counter": "c", "window": "minute", "max": 9}]}}})));

    let arguments = [
        json!({}),
        json!({"region": "ap-south", "a": 1, "n": 3}),
        json!({"region": "us-east", "a": {"b": true}}),
    ];
    let linode: Value =
        serde_json::from_str(include_str!("../../../examples/linode.json")).unwrap();
    let without_args = [
        json!({"version": "1", "default": "allow", "hide": ["drop_*"],
            "all_tools": {"limits": [{"counter": "all", "window": "minute", "max": 2}]},
            "tools": {"t": {"deny_if": [
                {"conditions": [{"path": "caller.grant", "op": "eq", "value": "g"}]}]},
              "u*": {"limits": [{"counter": "u", "window": "hour", "max": 1, "scope": "session"}]}}}),
    ];
    assert!(compile(linode.clone()).reads_arguments());
    for doc in without_args {
        let p = compile(doc);
        assert!(!p.reads_arguments());
        for tool in ["t", "u1", "drop_x", "other", "create_instance"] {
            let bare = p.decide(&Call::new(tool).grant("g").session("s"));
            for args in &arguments {
                let with = p.decide(&Call::new(tool).args(args).grant("g").session("s"));
                assert_eq!(
                    (
                        with.outcome(),
                        with.rule(),
                        with.message(),
                        with.is_shadow()
                    ),
                    (
                        bare.outcome(),
                        bare.rule(),
                        bare.message(),
                        bare.is_shadow()
                    ),
                    "{tool} {args}"
                );
                let charges = |d: &warden_policy::Decision<'_>| {
                    d.charges()
                        .iter()
                        .map(|c| (c.limit.index, c.key.clone(), c.cost))
                        .collect::<Vec<_>>()
                };
                assert_eq!(charges(&with), charges(&bare), "{tool} {args}");
            }
        }
    }
}

// --- resources, prompts, other methods and server requests --------------------------------

fn decide_as(p: &CompiledPolicy, kind: Kind, name: &str, args: Value) -> (Outcome, String, String) {
    let d = p.decide(&Call::of(kind, name).args(&args).grant("g"));
    (d.outcome(), d.rule().to_string(), d.message().to_string())
}

#[test]
fn default_deny_covers_every_kind_but_server_requests() {
    let p = compile(json!({"version": "1", "default": "deny", "tools": {"echo": {}}}));
    for (kind, name) in [
        (Kind::Resource, "demo://resource/static/document/a.md"),
        (Kind::Prompt, "simple-prompt"),
        (Kind::Method, "experimental/thing"),
    ] {
        let (o, rule, message) = decide_as(&p, kind, name, json!({}));
        assert_eq!(
            (o, rule.as_str()),
            (Outcome::Deny, "(default deny)"),
            "{kind}"
        );
        assert_eq!(
            message,
            format!("{kind} `{name}` is not allowed by this policy")
        );
    }
    let (o, ..) = decide_as(&p, Kind::ServerRequest, "sampling/createMessage", json!({}));
    assert_eq!(
        o,
        Outcome::Allow,
        "server requests pass unless a policy says otherwise"
    );
    // A tool named like a resource is still a tool: the sections do not mix.
    assert_eq!(
        decide_as(&p, Kind::Prompt, "echo", json!({})).0,
        Outcome::Deny
    );
}

#[test]
fn a_default_per_kind_overrides_the_policys() {
    let p = compile(json!({"version": "1", "default": "deny",
        "defaults": {"resources": "allow", "server_requests": "deny"}}));
    assert_eq!(
        decide_as(&p, Kind::Resource, "file:///a", json!({})).1,
        "(default allow)"
    );
    assert_eq!(
        decide_as(&p, Kind::Prompt, "p", json!({})).1,
        "(default deny)"
    );
    assert_eq!(
        decide_as(&p, Kind::Tool, "t", json!({})).1,
        "(default deny)"
    );
    assert_eq!(
        decide_as(&p, Kind::ServerRequest, "roots/list", json!({})).1,
        "(default deny)"
    );
    let open =
        compile(json!({"version": "1", "default": "allow", "defaults": {"methods": "deny"}}));
    assert_eq!(
        decide_as(&open, Kind::Method, "x/y", json!({})).0,
        Outcome::Deny
    );
    assert_eq!(
        decide_as(&open, Kind::Prompt, "p", json!({})).0,
        Outcome::Allow
    );
}

#[test]
fn resources_by_uri_glob_prompts_by_name_with_the_verbs_of_tools() {
    let p = compile(json!({"version": "1", "default": "deny",
        "hide_resources": ["secret://*"],
        "resources": {
            "demo://resource/static/*": {},
            "demo://resource/static/document/private*": {
                "deny_if": [{"conditions": [], "on_deny": "private documents stay private"}]},
            "file:///srv/docs/*": {"limits": [{"counter": "reads", "window": "minute", "max": 2}]},
            "file:///srv/ledger": {"approval": {}}
        },
        "prompts": {
            "complex_prompt": {"require": [{"conditions": [
                {"path": "args.temperature", "op": "lte", "value": 1}], "on_deny": "too hot"}]},
            "simple*": {}
        },
        "tools": {"get": {"limits": [{"counter": "reads", "window": "minute", "max": 2}]}}
    }));
    let r = |uri: &str| decide_as(&p, Kind::Resource, uri, json!({"uri": uri}));
    assert_eq!(r("demo://resource/static/document/a.md").0, Outcome::Allow);
    assert_eq!(
        r("demo://resource/static/document/private.md"),
        (
            Outcome::Deny,
            "/resources/demo:~1~1resource~1static~1document~1private*/deny_if/0".into(),
            "private documents stay private".into()
        )
    );
    assert_eq!(r("secret://keys").1, "(hidden)");
    assert_eq!(
        r("secret://keys").2,
        "resource `secret://keys` is not available"
    );
    assert_eq!(r("demo://resource/dynamic/1").1, "(default deny)");
    assert_eq!(r("file:///srv/ledger").0, Outcome::Approval);
    // The tool and the resource name one counter: they share one bucket.
    let read = p.decide(&Call::of(Kind::Resource, "file:///srv/docs/a").grant("g"));
    let tool = p.decide(&Call::new("get").grant("g"));
    assert_eq!(
        read.charges()[0].limit.counter,
        tool.charges()[0].limit.counter
    );

    let prompt = |name: &str, args: Value| decide_as(&p, Kind::Prompt, name, args);
    assert_eq!(
        prompt("complex_prompt", json!({"temperature": "0.5"})).0,
        Outcome::Allow
    );
    assert_eq!(
        prompt("complex_prompt", json!({"temperature": "2"})).2,
        "too hot"
    );
    assert_eq!(prompt("simple-prompt", json!({})).0, Outcome::Allow);
    assert_eq!(prompt("resource-prompt", json!({})).1, "(default deny)");
}

#[test]
fn lists_keep_what_this_caller_could_ever_call() {
    let p = compile(json!({"version": "1", "default": "deny",
    "hide": ["delete_*"],
    "tools": {
        "echo": {},
        "delete_all": {},
        "ops_only": {"require": [{"conditions": [
            {"path": "caller.claims.team", "op": "eq", "value": "ops"}]}]},
        "not_for_bots": {"deny_if": [{"conditions": [
            {"path": "caller.grant", "op": "eq", "value": "bot"}]}]},
        "blocked": {"deny_if": [{"conditions": [], "on_deny": "never"}]},
        "by_argument": {"deny_if": [{"conditions": [
            {"path": "args.x", "op": "eq", "value": 1}]}]},
        "mixed": {"require": [{"conditions": [
            {"path": "caller.grant", "op": "eq", "value": "alice"},
            {"path": "args.x", "op": "exists", "value": true}]}]},
        "limited": {"limits": [{"counter": "c", "window": "minute", "max": 1}]},
        "approved": {"approval": {}},
        "tried": {"mode": "shadow", "deny_if": [{"conditions": [], "on_deny": "no"}]}
    }}));
    let ops = json!({"team": "ops"});
    let seen = |grant: &str, claims: &Value| -> Vec<&str> {
        [
            "echo",
            "delete_all",
            "ops_only",
            "not_for_bots",
            "blocked",
            "by_argument",
            "mixed",
            "limited",
            "approved",
            "tried",
            "unnamed",
        ]
        .into_iter()
        .filter(|t| p.visible(&Call::new(t).grant(grant).claims(claims)))
        .collect()
    };
    assert_eq!(
        seen("alice", &ops),
        [
            "echo",
            "ops_only",
            "not_for_bots",
            "by_argument",
            "mixed",
            "limited",
            "approved",
            "tried"
        ]
    );
    assert_eq!(
        seen("bot", &json!({})),
        ["echo", "by_argument", "limited", "approved", "tried"]
    );

    // `lists: all` shows everything but what is hidden.
    let all = compile(json!({"version": "1", "default": "deny", "lists": "all",
        "hide_prompts": ["debug*"], "prompts": {"p": {}}}));
    assert!(all.visible(&Call::of(Kind::Prompt, "other")));
    assert!(!all.visible(&Call::of(Kind::Prompt, "debug-prompt")));
}

#[test]
fn server_request_keys_and_sections_are_validated_and_located() {
    let err = Policy::from_json_str(
        r#"{"version": "1", "server_requests": {"sampling/createMesage": {}},
            "resources": {"a*": {}, "*b": {}},
            "prompts": {"p": {"approval": {"via": "client"}}}}"#,
    )
    .unwrap_err()
    .to_string();
    let structural = Policy::from_json_str(r#"{"version": "1", "defaults": {"prompt": "allow"}}"#)
        .unwrap_err()
        .to_string();
    let err = format!("{err}\n{structural}");
    for expected in [
        "/server_requests/sampling~1createMesage",
        "did you mean `sampling/createMessage`?",
        "/resources/*b",
        "/defaults/prompt",
        "did you mean `prompts`?",
        "/prompts/p/approval/via",
    ] {
        assert!(err.contains(expected), "{expected} missing from:\n{err}");
    }
}
