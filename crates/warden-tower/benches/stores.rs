//! The layer's cost per `tools/call` with each counter store, in one run: the handler alone,
//! then a condition plus a per-grant limit charged in memory, then the same charged in a
//! local `redis-server` this bench starts (one script round trip over loopback).
//!
//! ```sh
//! cargo bench -p warden-tower --features redis --bench stores
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../../tests/redis_server.rs"]
mod redis_server;

use common::{Handler, policy, request_bytes, run};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::Layer;
use warden_tower::PolicyLayer;
use warden_tower::redis::{Redis, RedisConfig, RedisStore};

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = redis_server::RedisServer::start();
    let body = request_bytes("create_instance");
    // A quota that never runs out during the run, so every iteration is charged and allowed.
    let text = "version 1\ndefault deny\ntool create_instance {\n  require args.region in [\"us-east\", \"eu-west\"]\n  limit 4000000000 per minute per grant\n}\n";

    let mut g = c.benchmark_group("tools_call_1KiB_by_store");
    g.bench_function("baseline: handler alone", |b| {
        b.iter(|| run(&rt, &Handler, &body))
    });
    let memory = PolicyLayer::new(policy(text)).layer(Handler);
    g.bench_function("PolicyLayer + limit: memory store", |b| {
        b.iter(|| run(&rt, &memory, &body))
    });
    let redis = rt.block_on(async {
        let r = Redis::connect(RedisConfig::new(server.url()).prefix("bench:")).unwrap();
        r.ping().await.unwrap();
        r
    });
    let shared = PolicyLayer::new(policy(text))
        .counter_store(RedisStore::new(redis))
        .layer(Handler);
    // Every call must really be charged in Redis, or the figure means nothing.
    run(&rt, &shared, &body);
    assert_ne!(
        server.command(&["DBSIZE"]),
        ":0",
        "the Redis store charged nothing"
    );
    g.bench_function("PolicyLayer + limit: Redis store (loopback)", |b| {
        b.iter(|| run(&rt, &shared, &body))
    });
    g.finish();
}

criterion_group!(benches, stores);
criterion_main!(benches);
