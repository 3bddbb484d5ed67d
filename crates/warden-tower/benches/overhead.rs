//! Added cost of `PolicyLayer` per `tools/call`, in process: the same service with and
//! without the layer in one run, a 1 KiB request, and tower_governor's cost for a plain
//! global rate limit as a reference.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::{Layer, Service, ServiceExt};
use warden_tower::{Body, PolicyLayer};

/// A handler that reads the request and answers a small tool result, like a real one.
#[derive(Clone)]
struct Handler;

impl Service<Request<Body>> for Handler {
    type Response = Response<axum::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Body>) -> Self::Future {
        Box::pin(async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            black_box(body);
            Ok(Response::new(axum::body::Body::from(
                r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#,
            )))
        })
    }
}

/// A `tools/call` of exactly 1 KiB.
fn request_bytes(tool: &str) -> Bytes {
    let head = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"region":"us-east","note":""#
    );
    let tail = r#""}}}"#;
    let pad = "x".repeat(1024 - head.len() - tail.len());
    Bytes::from(format!("{head}{pad}{tail}"))
}

fn policy(text: &str) -> warden_policy::CompiledPolicy {
    warden_policy::CompiledPolicy::new(&warden_dsl::compile(text).unwrap().policy).unwrap()
}

fn run<S, B>(rt: &tokio::runtime::Runtime, svc: &S, body: &Bytes)
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("authorization", "Bearer bench-token")
        .body(Body::full(body.clone()))
        .unwrap();
    rt.block_on(async {
        let resp = svc.clone().oneshot(req).await.unwrap();
        black_box(resp.into_body().collect().await.unwrap());
    });
}

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
