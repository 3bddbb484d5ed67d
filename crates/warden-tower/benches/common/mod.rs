//! What both layer benches share: a realistic handler, a 1 KiB `tools/call`, one request.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use tower::{Service, ServiceExt};
use warden_tower::Body;

/// A handler that reads the request and answers a small tool result, like a real one.
#[derive(Clone)]
pub struct Handler;

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
pub fn request_bytes(tool: &str) -> Bytes {
    let head = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"region":"us-east","note":""#
    );
    let tail = r#""}}}"#;
    let pad = "x".repeat(1024 - head.len() - tail.len());
    Bytes::from(format!("{head}{pad}{tail}"))
}

pub fn policy(text: &str) -> warden_policy::CompiledPolicy {
    warden_policy::CompiledPolicy::new(&warden_dsl::compile(text).unwrap().policy).unwrap()
}

pub fn run<S, B>(rt: &tokio::runtime::Runtime, svc: &S, body: &Bytes)
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
