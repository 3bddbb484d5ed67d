//! Parse + lower + validate a generated 10,000-rule `.pol`, against loading the same policy
//! from its JSON form in the same run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

const VERBS: &[&str] = &[
    "create", "update", "reboot", "resize", "attach", "detach", "clone", "rebuild",
];
const NOUNS: &[&str] = &[
    "instance", "volume", "domain", "firewall", "bucket", "database", "token", "vpc",
];

/// `rules` tool blocks: a mix of plain allows, limits, conditions and approvals, after one
/// statement of each other kind (resources, prompts, server requests).
fn generated(rules: usize) -> String {
    let mut pol = String::from(
        "version 1\ndefault deny\ndefault allow prompts\nhide [delete_*]\nhide resources [\"secret://*\"]\n\nall tools {\n  limit 600 per minute per grant as calls\n}\n\ntool get_*, list_* { }\n\nresource \"file:///srv/*\" {\n  limit 60 per minute per grant as reads\n}\n\nallow server_request \"roots/list\"\n",
    );
    for i in 0..rules {
        let name = format!(
            "{}_{}_{i}",
            VERBS[i % VERBS.len()],
            NOUNS[(i / VERBS.len()) % NOUNS.len()]
        );
        match i % 4 {
            0 => writeln!(pol, "\ntool {name} {{ }}").unwrap(),
            1 => writeln!(pol, "\ntool {name} {{\n  limit 30 per minute per grant as writes\n}}").unwrap(),
            2 => writeln!(
                pol,
                "\ntool {name} {{\n  require args.region in [\"us-east\", \"eu-west\"] else \"Two regions only\"\n  deny if args.type matches /^g6-dedicated/ because \"Dedicated plans need a person\"\n  limit 5 per hour per grant as {name}_rate\n}}"
            )
            .unwrap(),
            _ => writeln!(pol, "\ntool {name} {{\n  deny if args.size > 100 and args.force == true because \"Too big\"\n}}").unwrap(),
        }
    }
    pol
}

fn compile(c: &mut Criterion) {
    let pol = generated(10_000);
    let json =
        serde_json::to_string(&warden_dsl::compile(&pol).unwrap().policy.to_value()).unwrap();
    eprintln!(
        ".pol {} KiB, JSON {} KiB",
        pol.len() / 1024,
        json.len() / 1024
    );

    let mut g = c.benchmark_group("compile_10000_rules");
    g.sample_size(20);
    g.bench_function("baseline: policy.json load + validate", |b| {
        b.iter(|| warden_policy::Policy::from_json_str(black_box(&json)).unwrap())
    });
    g.bench_function(".pol parse + lower + validate", |b| {
        b.iter(|| warden_dsl::compile(black_box(&pol)).unwrap())
    });
    let policy = warden_dsl::compile(&pol).unwrap().policy;
    g.bench_function("validate only", |b| {
        b.iter(|| warden_policy::validate(black_box(&policy)))
    });
    g.bench_function(".pol parse only", |b| {
        b.iter(|| warden_dsl::parse(black_box(&pol)).unwrap())
    });
    g.bench_function(".pol parse only, pest's reader", |b| {
        b.iter(|| warden_dsl::parse_with_pest(black_box(&pol)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
