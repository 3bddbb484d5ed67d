//! Added cost of `PolicyLayer` per `tools/call`, in process: the same service with and
//! without the layer in one run, a 1 KiB request, and tower_governor's cost for a plain
//! global rate limit as a reference.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Handler, policy, request_bytes, run};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::Layer;
use warden_tower::PolicyLayer;

fn overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = request_bytes("create_instance");
    assert_eq!(body.len(), 1024);
    let allow = policy("version 1\ndefault deny\ntool create_instance { }\n");
    // A quota that never runs out during the run, so every iteration is charged and allowed.
    let limited = policy(
        "version 1\ndefault deny\ntool create_instance {\n  require args.region in [\"us-east\", \"eu-west\"]\n  limit 4000000000 per minute per grant\n}\n",
    );

    let mut g = c.benchmark_group("tools_call_1KiB");
    g.bench_function("baseline: handler alone", |b| {
        b.iter(|| run(&rt, &Handler, &body))
    });
    let with_allow = PolicyLayer::new(allow).layer(Handler);
    g.bench_function("PolicyLayer: exact allow", |b| {
        b.iter(|| run(&rt, &with_allow, &body))
    });
    let with_limit = PolicyLayer::new(limited).layer(Handler);
    g.bench_function("PolicyLayer: condition + grant rate limit", |b| {
        b.iter(|| run(&rt, &with_limit, &body))
    });
    let governor = tower_governor::governor::GovernorConfigBuilder::default()
        .key_extractor(tower_governor::key_extractor::GlobalKeyExtractor)
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .finish()
        .unwrap();
    let with_governor = tower_governor::GovernorLayer::new(governor).layer(Handler);
    g.bench_function("reference: tower_governor global limit", |b| {
        b.iter(|| run(&rt, &with_governor, &body))
    });
    g.finish();
}

criterion_group!(benches, overhead);
criterion_main!(benches);
