//! Round trips over generated policies: json → pol → json and pol → json → pol.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Value, json};
use warden_policy::*;

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,8}(_[a-z]{1,8}){0,2}",
        "[a-z]{2,6}_\\*",
        "[a-z ./-]{1,10}",
    ]
}

/// Resource URIs and globs, prompt names, and words of the language (which print quoted).
fn entry_name() -> impl Strategy<Value = String> {
    prop_oneof![
        name(),
        "(file|demo)://[a-z/]{0,8}\\*?",
        prop::sample::select(vec![
            "default", "tool", "resource", "allow", "prompts", "all"
        ])
        .prop_map(str::to_owned),
    ]
}

fn action() -> impl Strategy<Value = Option<DefaultAction>> {
    prop::option::of(prop_oneof![
        Just(DefaultAction::Allow),
        Just(DefaultAction::Deny)
    ])
}

fn defaults() -> impl Strategy<Value = Defaults> {
    (action(), action(), action(), action(), action()).prop_map(
        |(tools, resources, prompts, methods, server_requests)| Defaults {
            tools,
            resources,
            prompts,
            methods,
            server_requests,
        },
    )
}

/// The sections beyond tools, drawn as (hide lists, entries of each kind).
type Beyond = (
    Option<Defaults>,
    Option<Lists>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    [Option<Vec<(String, ToolRule)>>; 3],
);

fn beyond() -> impl Strategy<Value = Beyond> {
    let entries = |names: BoxedStrategy<String>| {
        prop::option::of(prop::collection::vec((names, tool_rule()), 0..4))
    };
    let requests = prop::sample::select(SERVER_REQUESTS.to_vec())
        .prop_map(str::to_owned)
        .boxed();
    (
        prop::option::of(defaults()),
        prop::option::of(prop_oneof![Just(Lists::Callable), Just(Lists::All)]),
        prop::option::of(prop::collection::vec(entry_name(), 0..3)),
        prop::option::of(prop::collection::vec(entry_name(), 0..3)),
        (
            entries(entry_name().boxed()),
            entries(entry_name().boxed()),
            entries(requests),
        ),
    )
        .prop_map(
            |(defaults, lists, hide_resources, hide_prompts, (r, p, s))| {
                (defaults, lists, hide_resources, hide_prompts, [r, p, s])
            },
        )
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-zA-Z0-9 \"\\\\#/-]{0,8}".prop_map(Value::String),
        (-1000i64..1000).prop_map(|n| json!(n)),
        (-100.0f64..100.0).prop_map(|f| json!((f * 4.0).round() / 4.0)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn condition() -> impl Strategy<Value = Condition> {
    let path = prop_oneof![
        "args\\.[a-z]{1,6}(\\.[a-z0-9]{1,4}){0,2}",
        "args\\.[a-z]{1,3}\\.\"?[a-z ]{1,4}\"?"
    ]
    .prop_filter("valid path", |p| !p.contains('"'));
    let number = prop_oneof![
        (-1000i64..1000).prop_map(|n| json!(n)),
        (0u32..999).prop_map(|n| json!(n.to_string()))
    ];
    let op_value = prop_oneof![
        scalar().prop_map(|v| (Op::Eq, v)),
        scalar().prop_map(|v| (Op::Neq, v)),
        prop::collection::vec(scalar(), 0..4).prop_map(|v| (Op::In, Value::Array(v))),
        prop::collection::vec(scalar(), 0..4).prop_map(|v| (Op::NotIn, Value::Array(v))),
        number.clone().prop_map(|v| (Op::Lt, v)),
        number.clone().prop_map(|v| (Op::Lte, v)),
        number.clone().prop_map(|v| (Op::Gt, v)),
        number.prop_map(|v| (Op::Gte, v)),
        prop_oneof!["\\^[a-z]{1,5}", "[a-z]{1,3}/[0-9]", "a\\.b\\$"]
            .prop_map(|r| (Op::Regex, Value::String(r))),
        scalar().prop_map(|v| (Op::Contains, v)),
        any::<bool>().prop_map(|b| (Op::Exists, Value::Bool(b))),
    ];
    (path, op_value).prop_map(|(path, (op, value))| Condition { path, op, value })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::collection::vec(condition(), 0..3),
        prop::option::of("[A-Za-z .\"]{0,20}"),
    )
        .prop_map(|(conditions, on_deny)| Rule {
            conditions,
            on_deny,
        })
}

fn window() -> impl Strategy<Value = Window> {
    prop_oneof![
        Just(Window::Minute),
        Just(Window::Hour),
        Just(Window::Day),
        (1u64..100_000).prop_map(Window::Seconds)
    ]
}

fn scope() -> impl Strategy<Value = Option<Scope>> {
    prop::option::of(prop_oneof![
        Just(Scope::Grant),
        Just(Scope::Session),
        Just(Scope::Global),
        Just(Scope::Ip),
        Just(Scope::Claim)
    ])
}

fn limit() -> impl Strategy<Value = Limit> {
    (
        1u64..10_000,
        window(),
        scope(),
        prop::option::of("args\\.[a-z]{1,5}"),
        "[a-z]{1,5}(\\.[a-z]{1,3})?",
        prop::option::of("[ -~]{0,12}"),
        any::<bool>(),
    )
        .prop_map(
            |(max, window, scope, cost, claim, on_deny, refund_on_error)| Limit {
                counter: String::new(),
                window,
                max,
                scope,
                cost,
                claim: (scope == Some(Scope::Claim)).then_some(claim),
                on_deny,
                refund_on_error,
            },
        )
}

fn tool_rule() -> impl Strategy<Value = ToolRule> {
    (
        prop::option::of(prop::collection::vec(rule(), 0..3)),
        prop::option::of(prop::collection::vec(rule(), 0..3)),
        prop::option::of(prop::collection::vec(limit(), 0..3)),
        prop::option::of((
            prop::option::of(1u64..1000),
            prop::option::of(prop_oneof![Just(OnTimeout::Deny), Just(OnTimeout::Allow)]),
            prop::option::of(prop_oneof![
                Just(ApprovalVia::Queue),
                Just(ApprovalVia::Client),
                Just(ApprovalVia::ClientOrQueue)
            ]),
            prop::collection::vec("args\\.[a-z]{1,5}(\\.[a-z]{1,3})?", 0..3),
        )),
        prop::option::of(prop_oneof![Just(Mode::Enforce), Just(Mode::Shadow)]),
    )
        .prop_map(|(require, deny_if, limits, approval, mode)| ToolRule {
            require,
            deny_if,
            limits,
            approval: approval.map(|(timeout, on_timeout, via, redact)| Approval {
                timeout,
                on_timeout,
                via,
                redact,
            }),
            mode,
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::option::of(prop_oneof![
            Just(DefaultAction::Allow),
            Just(DefaultAction::Deny)
        ]),
        prop::option::of(prop_oneof![Just(Mode::Enforce), Just(Mode::Shadow)]),
        prop::option::of(prop::collection::vec(name(), 0..3)),
        prop::option::of((
            prop::option::of(prop::collection::vec(limit(), 0..2)),
            prop::option::of(prop::collection::vec(rule(), 0..2)),
            prop::option::of(prop::collection::vec(rule(), 0..2)),
        )),
        prop::option::of(prop::collection::vec((name(), tool_rule()), 0..6)),
        any::<bool>(),
        beyond(),
    )
        .prop_map(
            |(default, mode, hide, all_tools, tools, default_counters, beyond)| {
                let (
                    defaults,
                    lists,
                    hide_resources,
                    hide_prompts,
                    [resources, prompts, server_requests],
                ) = beyond;
                let mut n = 0;
                // Unique counter names keep quotas from conflicting; some use the `as`-less default.
                let mut name_counter = |l: &mut Limit, kind: Kind, entry: &str| {
                    n += 1;
                    l.counter = if default_counters && n % 2 == 0 {
                        warden_dsl::default_counter_for(kind, entry)
                    } else {
                        format!("c{n}")
                    };
                };
                let all_tools = all_tools.map(|(limits, require, deny_if)| {
                    let mut limits = limits;
                    for l in limits.iter_mut().flatten() {
                        name_counter(l, Kind::Tool, "all_tools");
                    }
                    AllTools {
                        require,
                        deny_if,
                        limits,
                    }
                });
                let mut table = |kind: Kind, entries: Option<Vec<(String, ToolRule)>>| {
                    entries.map(|entries| {
                        let mut map = indexmap::IndexMap::new();
                        for (name, mut rule) in entries {
                            if map.contains_key(&name)
                                || name.contains('*')
                                    && map.keys().any(|k: &String| k.contains('*'))
                            {
                                continue;
                            }
                            // Only tool calls can ask the person at the client.
                            if let Some(a) = &mut rule.approval
                                && kind != Kind::Tool
                            {
                                a.via = a.via.filter(|v| !v.asks_client());
                            }
                            for l in rule.limits.iter_mut().flatten() {
                                name_counter(l, kind, &name);
                            }
                            map.insert(name, rule);
                        }
                        map
                    })
                };
                let tools = table(Kind::Tool, tools);
                let resources = table(Kind::Resource, resources);
                let prompts = table(Kind::Prompt, prompts);
                let server_requests = table(Kind::ServerRequest, server_requests);
                Policy {
                    version: "1".into(),
                    default,
                    mode,
                    hide,
                    all_tools,
                    tools,
                    defaults,
                    lists,
                    hide_resources,
                    hide_prompts,
                    resources,
                    prompts,
                    server_requests,
                }
            },
        )
        .prop_filter("valid policy", |p| validate(p).is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn json_to_pol_to_json(p in policy()) {
        let json = p.to_value();
        let pol = warden_dsl::decompile(&p);
        let back = warden_dsl::compile(&pol).map_err(|e| TestCaseError::fail(format!("{}\n{pol}", e.render("gen.pol", &pol, false))))?;
        prop_assert_eq!(back.policy.to_value(), json, "{}", pol);
    }

    #[test]
    fn pol_to_json_to_pol(p in policy()) {
        let pol = warden_dsl::decompile(&p);
        prop_assert_eq!(warden_dsl::format(&pol).map_err(|e| TestCaseError::fail(e.render("gen.pol", &pol, false)))?, pol.clone());
        let via_json = Policy::from_json_str(&p.to_value().to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(warden_dsl::decompile(&via_json), pol);
    }
}
