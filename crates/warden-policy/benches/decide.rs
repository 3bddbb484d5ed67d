//! `decide()` on policies shaped like a real server's: verb_noun tool names, a mix of
//! plain, limited and conditioned entries, a few globs. The baseline in the same run is
//! a bare `HashMap<String, usize>` lookup of the tool name: the floor any engine pays.
//!
//! cargo bench -p warden-policy --bench decide

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Map, json};
use warden_policy::{Call, CompiledPolicy, Policy};

const VERBS: &[&str] = &[
    "list", "get", "create", "update", "delete", "reboot", "boot", "shutdown", "resize", "rebuild",
    "attach", "detach", "clone", "migrate", "enable", "disable", "reset", "rescue",
];
const NOUNS: &[&str] = &[
    "instance",
    "instances",
    "domain",
    "domain_record",
    "domain_records",
    "volume",
    "volumes",
    "firewall",
    "firewall_rules",
    "nodebalancer",
    "nodebalancer_config",
    "image",
    "images",
    "stackscript",
    "object_storage_bucket",
    "object_storage_key",
    "lke_cluster",
    "lke_node_pool",
    "database_mysql",
    "database_postgres",
    "vpc",
    "vpc_subnet",
    "placement_group",
    "personal_access_token",
    "ssh_key",
    "user",
    "account_setting",
];

/// Tool names `verb_noun`, then `verb_noun_N` once the pairs run out.
fn tool_names(n: usize) -> Vec<String> {
    let pairs: Vec<String> = NOUNS
        .iter()
        .flat_map(|noun| VERBS.iter().map(move |v| format!("{v}_{noun}")))
        .collect();
    (0..n)
        .map(|i| {
            if i < pairs.len() {
                pairs[i].clone()
            } else {
                format!("{}_{}", pairs[i % pairs.len()], i / pairs.len())
            }
        })
        .collect()
}

/// Every 4th entry limited, every 7th conditioned (three conditions), the rest plain;
/// reads by glob, deletes hidden.
fn policy(n: usize) -> (CompiledPolicy, Vec<String>) {
    let names = tool_names(n);
    let mut tools = Map::new();
    tools.insert("list_*".into(), json!({}));
    tools.insert("get_*".into(), json!({}));
    tools.insert(
        "*_ssh_key".into(),
        json!({"limits": [{"counter": "keys", "window": "hour", "max": 10}]}),
    );
    for (i, name) in names.iter().enumerate() {
        if name.starts_with("list_") || name.starts_with("get_") {
            continue;
        }
        let entry = if i % 7 == 3 {
            json!({"require": [{"conditions": [
                {"path": "args.region", "op": "in", "value": ["us-east", "eu-west", "ap-south"]},
                {"path": "args.count", "op": "lte", "value": 10},
                {"path": "args.type", "op": "regex", "value": "^g6-(standard|nanode)"}
            ], "on_deny": "region, count or type not allowed"}]})
        } else if i % 4 == 1 {
            json!({"limits": [{"counter": format!("{name}_rate"), "window": "minute", "max": 30, "scope": "grant"}]})
        } else {
            json!({})
        };
        tools.insert(name.clone(), entry);
    }
    // Three conditions about the caller: a claim list, the token's scopes, the grant.
    tools.insert(
        "create_personal_access_token".into(),
        json!({"require": [{"conditions": [
            {"path": "caller.claims.groups", "op": "contains", "value": "security"},
            {"path": "caller.scopes", "op": "contains", "value": "tokens:write"},
            {"path": "caller.grant", "op": "in", "value": ["agent-7", "agent-8"]}
        ], "on_deny": "security team only"}]}),
    );
    let doc = json!({"version": "1", "default": "deny", "hide": ["delete_*"], "tools": tools});
    let compiled = CompiledPolicy::new(&Policy::from_value(&doc).expect("generated policy loads"))
        .expect("and compiles");
    (compiled, names)
}

/// The name of an entry of the given kind (i % 7 == 3: conditioned; otherwise plain).
fn pick(names: &[String], conditioned: bool) -> String {
    names
        .iter()
        .enumerate()
        .rev()
        .find(|(i, n)| {
            let plain_write = !n.starts_with("list_")
                && !n.starts_with("get_")
                && !n.starts_with("delete_")
                && !n.ends_with("ssh_key");
            plain_write
                && if conditioned {
                    i % 7 == 3
                } else {
                    i % 7 != 3 && i % 4 != 1
                }
        })
        .map(|(_, n)| n.clone())
        .expect("such an entry exists")
}

fn decide(c: &mut Criterion) {
    let args =
        json!({"region": "eu-west", "count": "3", "type": "g6-standard-2", "label": "web-1"});
    let claims = json!({"sub": "agent-7", "groups": ["dev", "security"],
                        "scope": "tools:read tokens:write", "iss": "https://idp/", "exp": 1});
    let mut group = c.benchmark_group("decide");
    for n in [416usize, 10_000] {
        let (compiled, names) = policy(n);
        let index: HashMap<String, usize> = names
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, n)| (n, i))
            .collect();
        let plain = pick(&names, false);
        let conditioned = pick(&names, true);
        assert!(compiled.decide(&Call::new(&plain).grant("g")).is_allow());
        assert!(
            compiled
                .decide(&Call::new(&conditioned).args(&args).grant("g"))
                .is_allow()
        );
        assert!(
            compiled
                .decide(&Call::new("list_volumes_3").grant("g"))
                .is_allow()
        );

        group.bench_with_input(
            BenchmarkId::new("baseline_hashmap_lookup", n),
            &plain,
            |b, t| b.iter(|| index.get(black_box(t.as_str()))),
        );
        group.bench_with_input(BenchmarkId::new("exact_allow", n), &plain, |b, t| {
            b.iter(|| {
                compiled
                    .decide(&Call::new(black_box(t)).grant("g"))
                    .is_allow()
            })
        });
        group.bench_with_input(
            BenchmarkId::new("three_conditions_allow", n),
            &conditioned,
            |b, t| {
                b.iter(|| {
                    compiled
                        .decide(&Call::new(black_box(t)).args(&args).grant("g"))
                        .is_allow()
                })
            },
        );
        let token_call = || {
            Call::new("create_personal_access_token")
                .grant("agent-7")
                .claims(&claims)
        };
        assert!(compiled.decide(&token_call()).is_allow());
        group.bench_with_input(
            BenchmarkId::new("three_caller_conditions_allow", n),
            &(),
            |b, _| b.iter(|| compiled.decide(black_box(&token_call())).is_allow()),
        );
        group.bench_with_input(
            BenchmarkId::new("glob_allow", n),
            "list_volumes_3",
            |b, t| {
                b.iter(|| {
                    compiled
                        .decide(&Call::new(black_box(t)).grant("g"))
                        .is_allow()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("default_deny", n),
            "transfer_everything",
            |b, t| {
                b.iter(|| {
                    compiled
                        .decide(&Call::new(black_box(t)).grant("g"))
                        .is_deny()
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = decide
}
criterion_main!(benches);
