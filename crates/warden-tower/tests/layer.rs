//! The layer in-process, around a recording inner service: what reaches it, and what the
//! client gets back. Every fail-closed case asserts that nothing reached the service.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};
use warden_tower::{ApprovalQueue, Body, DenyStyle, Grant, PolicyLayer};

const POLICY: &str = r#"
version 1
default deny
hide [delete_*]

tool get_*, list_*, get-env { }
tool create_token {
  limit 3 per minute per grant
}
tool pay {
  require approval timeout 1 seconds
}
tool "GET /items/{id}" { }
tool "POST /items" {
  limit 1 per minute per grant
}
"#;

fn compiled(text: &str) -> warden_policy::CompiledPolicy {
    let c = warden_dsl::compile(text).unwrap();
    warden_policy::CompiledPolicy::new(&c.policy).unwrap()
}

/// What the inner service saw, and what it answers.
#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<(String, Bytes)>>>,
    answer: Arc<Mutex<Option<(String, String)>>>,
    status: Arc<Mutex<Option<StatusCode>>>,
    session: Arc<Mutex<Option<String>>>,
}

impl Upstream {
    /// Answers every request in this MCP session (`mcp-session-id`).
    fn answer_session(&self, id: &str) {
        *self.session.lock().unwrap() = Some(id.into());
    }
    fn seen(&self) -> Vec<(String, Bytes)> {
        self.seen.lock().unwrap().clone()
    }
    fn answer_with(&self, content_type: &str, body: String) {
        *self.answer.lock().unwrap() = Some((content_type.into(), body));
    }
    fn answer_status(&self, status: StatusCode) {
        *self.status.lock().unwrap() = Some(status);
    }
}

impl Service<Request<Body>> for Upstream {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>,
    >;
    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let line = format!("{} {}", req.method(), req.uri().path());
            let bytes = req.into_body().collect().await.unwrap().to_bytes();
            this.seen.lock().unwrap().push((line, bytes));
            let (ct, body) = this.answer.lock().unwrap().clone().unwrap_or((
                "application/json".into(),
                r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#.into(),
            ));
            let status = this.status.lock().unwrap().unwrap_or(StatusCode::OK);
            let mut resp = Response::builder()
                .status(status)
                .header("content-type", ct);
            if let Some(id) = this.session.lock().unwrap().clone() {
                resp = resp.header("mcp-session-id", id);
            }
            Ok(resp.body(Body::full(body)).unwrap())
        })
    }
}

/// The answer of `svc` (a gate, or gates stacked) to `req`.
async fn respond<S>(svc: &mut S, req: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Error: std::fmt::Debug,
{
    ServiceExt::<Request<Body>>::ready(svc)
        .await
        .unwrap()
        .call(req)
        .await
        .unwrap()
}

async fn send(
    svc: &mut warden_tower::PolicyService<Upstream>,
    req: Request<Body>,
) -> (StatusCode, http::HeaderMap, String) {
    let resp = respond(svc, req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn post(body: &str) -> Request<Body> {
    Request::post("/mcp")
        .header("content-type", "application/json")
        .header("authorization", "Bearer alice-token")
        .body(Body::full(body.to_owned()))
        .unwrap()
}

fn call(id: i64, tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string()
}

fn setup(layer: PolicyLayer) -> (warden_tower::PolicyService<Upstream>, Upstream) {
    let up = Upstream::default();
    (layer.layer(up.clone()), up)
}

fn denied_text(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["result"]["isError"], true, "{body}");
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn allowed_calls_reach_the_service_byte_for_byte() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)));
    // Odd spacing and key order survive: the service gets the very bytes sent.
    let body = r#"{ "params": {"name": "get_instance", "arguments": {"id": 1}}, "id": 7, "method": "tools/call", "jsonrpc": "2.0" }"#;
    let (status, _, _) = send(&mut svc, post(body)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        up.seen(),
        vec![("POST /mcp".to_string(), Bytes::from(body))]
    );
}

#[tokio::test]
async fn denied_and_hidden_calls_are_answered_locally() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)));
    let (status, _, body) = send(&mut svc, post(&call(5, "reboot_instance", json!({})))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["id"], 5);
    assert!(denied_text(&body).starts_with("[POLICY DENIED] "), "{body}");
    let (_, _, body) = send(&mut svc, post(&call(6, "delete_instance", json!({})))).await;
    assert!(denied_text(&body).starts_with("[POLICY DENIED]"), "{body}");
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn denials_can_be_json_rpc_errors() {
    let (mut svc, up) =
        setup(PolicyLayer::new(compiled(POLICY)).deny_style(DenyStyle::JsonRpcError));
    let (_, _, body) = send(&mut svc, post(&call(5, "reboot_instance", json!({})))).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], warden_tower::POLICY_DENIED_CODE);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("[POLICY DENIED]")
    );
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn fail_closed_on_what_cannot_be_read_with_certainty() {
    let cases: Vec<(&str, Request<Body>, StatusCode, Option<i64>)> = vec![
        (
            "invalid JSON",
            post(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call""#),
            StatusCode::BAD_REQUEST,
            Some(-32700),
        ),
        (
            "duplicate method key",
            post(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"reboot"}}"#,
            ),
            StatusCode::BAD_REQUEST,
            Some(-32700),
        ),
        (
            "duplicate tool name key",
            post(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_a","name":"reboot"}}"#,
            ),
            StatusCode::BAD_REQUEST,
            Some(-32700),
        ),
        (
            "non-string tool name",
            post(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["get_a"]}}"#),
            StatusCode::BAD_REQUEST,
            Some(-32600),
        ),
        (
            "compressed body",
            Request::post("/mcp")
                .header("content-encoding", "gzip")
                .body(Body::full(call(1, "get_a", json!({}))))
                .unwrap(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
        (
            "body over the limit",
            post(&call(1, "get_a", json!({"pad": "x".repeat(2048)}))),
            StatusCode::PAYLOAD_TOO_LARGE,
            None,
        ),
        (
            "Mcp-Method disagrees with the body",
            Request::post("/mcp")
                .header("mcp-method", "tools/list")
                .body(Body::full(call(1, "reboot", json!({}))))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some(-32020),
        ),
        (
            "Mcp-Name disagrees with the body",
            Request::post("/mcp")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "get_a")
                .body(Body::full(call(1, "reboot", json!({}))))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            Some(-32020),
        ),
    ];
    for (what, req, want_status, want_code) in cases {
        let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)).max_body_bytes(1024));
        let (status, _, body) = send(&mut svc, req).await;
        assert_eq!(status, want_status, "{what}: {body}");
        if let Some(code) = want_code {
            assert_eq!(
                serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
                code,
                "{what}"
            );
        }
        assert!(up.seen().is_empty(), "{what} reached the service");
    }
}

#[tokio::test]
async fn matching_2026_headers_pass() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)));
    let req = Request::post("/mcp")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "get_a")
        .body(Body::full(call(1, "get_a", json!({}))))
        .unwrap();
    let (status, _, _) = send(&mut svc, req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn tool_names_compare_as_decoded_strings() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)));
    let escaped =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get\u002denv"}}"#;
    send(&mut svc, post(escaped)).await;
    assert_eq!(
        up.seen().len(),
        1,
        "`get\\u002denv` is `get-env`, which is allowed"
    );
    let hidden = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"delete\u005finstance"}}"#;
    let (_, _, body) = send(&mut svc, post(hidden)).await;
    assert!(denied_text(&body).contains("[POLICY DENIED]"));
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn a_batch_with_a_denied_call_is_answered_whole_and_not_forwarded() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)));
    let batch = format!(
        "[{},{},{},{}]",
        call(1, "get_a", json!({})),
        call(2, "reboot", json!({})),
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#
    );
    let (_, _, body) = send(&mut svc, post(&batch)).await;
    let answers: Vec<Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answers.len(),
        3,
        "every request answered, the notification not: {body}"
    );
    assert!(
        answers[0]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("another call in this batch was denied")
    );
    assert!(
        answers[1]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("[POLICY DENIED]")
    );
    assert_eq!(answers[2]["id"], 3);
    assert!(answers[2]["error"].is_object());
    assert!(up.seen().is_empty());
    // An all-allowed batch goes through as sent.
    let ok = format!(
        "[{},{}]",
        call(1, "get_a", json!({})),
        call(2, "list_b", json!({}))
    );
    send(&mut svc, post(&ok)).await;
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn streams_notifications_and_client_responses_pass_untouched() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)));
    send(&mut svc, Request::get("/mcp").body(Body::empty()).unwrap()).await;
    send(
        &mut svc,
        Request::delete("/mcp").body(Body::empty()).unwrap(),
    )
    .await;
    send(
        &mut svc,
        post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
    )
    .await;
    send(
        &mut svc,
        post(r#"{"jsonrpc":"2.0","id":"elicit-1","result":{"action":"accept"}}"#),
    )
    .await;
    let seen: Vec<String> = up.seen().into_iter().map(|(l, _)| l).collect();
    assert_eq!(seen, ["GET /mcp", "DELETE /mcp", "POST /mcp", "POST /mcp"]);
}

#[tokio::test]
async fn limits_hold_per_grant_and_say_when_to_retry() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)));
    for i in 0..3 {
        let (_, _, body) = send(&mut svc, post(&call(i, "create_token", json!({})))).await;
        assert!(!body.contains("POLICY DENIED"), "{body}");
    }
    let (_, _, body) = send(&mut svc, post(&call(4, "create_token", json!({})))).await;
    let text = denied_text(&body);
    assert!(
        text.contains("rate limit `create_token_rate` reached; retry in 20 seconds"),
        "{text}"
    );
    assert_eq!(up.seen().len(), 3);
    // Another grant has its own bucket.
    let mut other = post(&call(5, "create_token", json!({})));
    other
        .headers_mut()
        .insert("authorization", "Bearer bob-token".parse().unwrap());
    let (_, _, body) = send(&mut svc, other).await;
    assert!(!body.contains("POLICY DENIED"), "{body}");
    // No grant at all: a grant-scoped limit cannot be charged, so the call is denied.
    let mut anonymous = post(&call(6, "create_token", json!({})));
    anonymous.headers_mut().remove("authorization");
    let (_, _, body) = send(&mut svc, anonymous).await;
    assert!(denied_text(&body).contains("[POLICY DENIED]"));
    assert_eq!(up.seen().len(), 4);
}

#[tokio::test]
async fn a_limit_speaks_its_own_words_and_rules_for_all_tools_hold_everywhere() {
    let policy = r#"version 1
default allow

all tools {
  deny if args.recursive == true because "Recursive operations are not allowed"
}

tool create_refund {
  limit 1 per day global as refunds else "Daily refund limit reached"
}
"#;
    let (mut svc, up) = setup(PolicyLayer::new(compiled(policy)));
    let (_, _, body) = send(&mut svc, post(&call(1, "create_refund", json!({})))).await;
    assert!(!body.contains("POLICY DENIED"), "{body}");
    let (_, _, body) = send(&mut svc, post(&call(2, "create_refund", json!({})))).await;
    let text = denied_text(&body);
    assert!(
        text.contains("Daily refund limit reached (retry in "),
        "{text}"
    );
    // `all tools` rules: for a named tool and for one only `default allow` lets through.
    for (id, tool) in [(3, "create_refund"), (4, "list_files")] {
        let (_, _, body) = send(&mut svc, post(&call(id, tool, json!({"recursive": true})))).await;
        assert!(
            denied_text(&body).contains("Recursive operations are not allowed"),
            "{tool}: {body}"
        );
    }
    let (_, _, body) = send(
        &mut svc,
        post(&call(5, "list_files", json!({"recursive": false}))),
    )
    .await;
    assert!(!body.contains("POLICY DENIED"), "{body}");
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn a_call_the_server_fails_gives_its_charge_back_where_the_limit_says_so() {
    let policy = r#"version 1
default allow

tool pay {
  limit 1 per day global as payments refund on error
  limit 5 per day global as kept
}
"#;
    let (mut svc, up) = setup(PolicyLayer::new(compiled(policy)));
    // The server fails the call (JSON, then SSE): the `payments` charge comes back each time.
    up.answer_with(
        "application/json",
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"card declined"}}"#.into(),
    );
    let (_, _, body) = send(&mut svc, post(&call(1, "pay", json!({})))).await;
    assert!(
        body.contains("card declined"),
        "the answer passes unchanged: {body}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    up.answer_with(
        "text/event-stream",
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32000,\"message\":\"declined\"}}\n\n".into(),
    );
    let (_, _, body) = send(&mut svc, post(&call(2, "pay", json!({})))).await;
    assert!(body.contains("declined"), "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // Success keeps it: the next call is over the limit.
    up.answer_with(
        "application/json",
        r#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#.into(),
    );
    let (_, _, body) = send(&mut svc, post(&call(3, "pay", json!({})))).await;
    assert!(!body.contains("POLICY DENIED"), "{body}");
    let (_, _, body) = send(&mut svc, post(&call(4, "pay", json!({})))).await;
    assert!(
        denied_text(&body).contains("rate limit `payments` reached"),
        "{body}"
    );
    // `kept` has no refund: three calls forwarded, three charged.
    assert_eq!(up.seen().len(), 3);
}

#[tokio::test]
async fn a_call_in_a_session_the_server_does_not_know_costs_nothing() {
    let policy = r#"version 1
default allow

tool pay {
  limit 1 per day global as payments
}
"#;
    let (mut svc, up) = setup(PolicyLayer::new(compiled(policy)));
    let in_session = |id| {
        let mut req = post(&call(id, "pay", json!({})));
        req.headers_mut()
            .insert("mcp-session-id", http::HeaderValue::from_static("lost"));
        req
    };
    // The server lost the session (it restarted): it ran nothing, so nothing is charged.
    up.answer_status(StatusCode::NOT_FOUND);
    up.answer_with(
        "application/json",
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"Session not found"}}"#
            .into(),
    );
    let (status, _, _) = send(&mut svc, in_session(1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The same call in the new session is the one charged: the next is over the limit.
    up.answer_status(StatusCode::OK);
    up.answer_with(
        "application/json",
        r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#.into(),
    );
    let (_, _, body) = send(&mut svc, in_session(1)).await;
    assert!(!body.contains("POLICY DENIED"), "{body}");
    let (_, _, body) = send(&mut svc, in_session(2)).await;
    assert!(
        denied_text(&body).contains("rate limit `payments` reached"),
        "{body}"
    );
    assert_eq!(up.seen().len(), 2);
    // Outside a session a 404 is not the server forgetting one: the charge stays.
    let (mut svc, up) = setup(PolicyLayer::new(compiled(policy)));
    up.answer_status(StatusCode::NOT_FOUND);
    send(&mut svc, post(&call(1, "pay", json!({})))).await;
    let (_, _, body) = send(&mut svc, post(&call(2, "pay", json!({})))).await;
    assert!(
        denied_text(&body).contains("rate limit `payments` reached"),
        "{body}"
    );
}

#[tokio::test]
async fn a_call_a_gate_behind_refuses_costs_nothing_in_the_gate_in_front() {
    // A server's gate in front of a gateway-wide one (`warden serve --gateway-policy`):
    // what the one behind refuses never reached the server, so the one in front gives its
    // charge back.
    let front = r#"version 1
default allow

tool pay {
  limit 1 per day global as payments
}
"#;
    let behind = r#"version 1
default allow

all tools {
  deny if args.to == "mallory" because "not to mallory"
}
"#;
    let up = Upstream::default();
    let mut svc = PolicyLayer::new(compiled(front))
        .layer(PolicyLayer::new(compiled(behind)).layer(up.clone()));
    let send = call_through;
    for id in 1..=3 {
        let body = send(&mut svc, call(id, "pay", json!({"to": "mallory"}))).await;
        assert!(denied_text(&body).contains("not to mallory"), "{body}");
    }
    let body = send(&mut svc, call(4, "pay", json!({"to": "bob"}))).await;
    assert!(!body.contains("POLICY DENIED"), "{body}");
    let body = send(&mut svc, call(5, "pay", json!({"to": "bob"}))).await;
    assert!(
        denied_text(&body).contains("rate limit `payments` reached"),
        "{body}"
    );
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn a_call_a_person_refuses_behind_keeps_the_charge_in_front_as_it_would_in_one_gate() {
    // The call was tried: somebody was asked. Both gates keep their charges, so a limit in
    // front bounds how often an agent in a loop has somebody asked behind.
    let front = "version 1\ndefault allow\ntool pay {\n  limit 1 per day global as payments\n}\n";
    let behind = "version 1\ndefault allow\ntool pay {\n  require approval timeout 5 seconds\n}\n";
    let queue = ApprovalQueue::new();
    let up = Upstream::default();
    let mut svc = PolicyLayer::new(compiled(front)).layer(
        PolicyLayer::new(compiled(behind))
            .approver(queue.clone())
            .layer(up.clone()),
    );
    let q = queue.clone();
    let person = tokio::spawn(async move {
        for _ in 0..300 {
            if let Some(r) = q.list().first() {
                return q.deny(&r.id, Some("not today".into()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    });
    let body = call_through(&mut svc, call(1, "pay", json!({}))).await;
    assert!(person.await.unwrap(), "the approval was never asked");
    assert!(denied_text(&body).contains("not today"), "{body}");
    let body = call_through(&mut svc, call(2, "pay", json!({}))).await;
    assert!(
        denied_text(&body).contains("rate limit `payments` reached"),
        "{body}"
    );
    assert!(queue.list().is_empty(), "nobody is asked twice");
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn a_call_approved_in_the_client_that_a_gate_behind_refuses_costs_nothing_in_front() {
    // Approved on the call's own stream (protocol 2025-11-25), then refused by the rules of
    // the gate behind: it never ran, so the gate in front gives its charge back.
    let front = "version 1\ndefault allow\ntool pay {\n  limit 1 per day global as payments\n  require approval via client timeout 5 seconds\n}\n";
    let behind = "version 1\ndefault allow\nall tools {\n  deny if args.to == \"mallory\" because \"not to mallory\"\n}\n";
    let up = Upstream::default();
    up.answer_session("s1");
    let mut svc = PolicyLayer::new(compiled(front))
        .layer(PolicyLayer::new(compiled(behind)).layer(up.clone()));
    let request = |body: String| {
        Request::post("/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", "s1")
            .body(Body::full(body))
            .unwrap()
    };
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "t", "version": "0"}}});
    let mut init_req = request(init.to_string());
    init_req.headers_mut().remove("mcp-session-id");
    let resp = respond(&mut svc, init_req).await;
    assert_eq!(resp.headers()["mcp-session-id"], "s1");
    resp.into_body().collect().await.unwrap();
    // The first event of a call's stream: the person is asked.
    async fn asked(
        svc: &mut warden_tower::PolicyService<warden_tower::PolicyService<Upstream>>,
        req: Request<Body>,
    ) -> (Body, Value) {
        let mut body = respond(svc, req).await.into_body();
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let text = String::from_utf8_lossy(&frame).into_owned();
        let data = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("not an event: {text}"));
        (body, serde_json::from_str(data).unwrap())
    }
    let (body, ask) = asked(&mut svc, request(call(1, "pay", json!({"to": "mallory"})))).await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    let accept = json!({"jsonrpc": "2.0", "id": ask["id"], "result": {"action": "accept"}});
    let resp = respond(&mut svc, request(accept.to_string())).await;
    assert!(resp.status().is_success(), "{:?}", resp.status());
    let rest = body.collect().await.unwrap().to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("not to mallory"), "{rest}");
    // Not charged: the next call is asked about, not refused by the limit.
    let (_, ask) = asked(&mut svc, request(call(2, "pay", json!({"to": "bob"})))).await;
    assert_eq!(ask["method"], "elicitation/create", "{ask}");
    assert!(
        up.seen()
            .iter()
            .all(|(_, b)| !String::from_utf8_lossy(b).contains("tools/call"))
    );
}

#[tokio::test]
async fn a_call_refused_before_anybody_was_asked_costs_nothing_in_front() {
    // The gate behind asks the person at the client, who cannot be asked (no elicitation
    // capability): nobody was, so the gate in front gives its charge back.
    let front = "version 1\ndefault allow\ntool pay {\n  limit 1 per day global as payments\n}\n";
    let behind = "version 1\ndefault allow\ntool pay {\n  require approval via client timeout 5 seconds\n}\n";
    let up = Upstream::default();
    let mut svc = PolicyLayer::new(compiled(front))
        .layer(PolicyLayer::new(compiled(behind)).layer(up.clone()));
    for id in 1..=3 {
        let body = call_through(&mut svc, call(id, "pay", json!({}))).await;
        assert!(denied_text(&body).contains("cannot be asked"), "{body}");
    }
    assert!(up.seen().is_empty());
    // And in one gate: its own limit is not used up either.
    let one = "version 1\ndefault allow\ntool pay {\n  limit 1 per day global as payments\n  require approval via client timeout 5 seconds\n}\n";
    let (mut svc, _) = setup(PolicyLayer::new(compiled(one)));
    for id in 1..=3 {
        let (_, _, body) = send(&mut svc, post(&call(id, "pay", json!({})))).await;
        assert!(denied_text(&body).contains("cannot be asked"), "{body}");
    }
}

async fn call_through(
    svc: &mut warden_tower::PolicyService<warden_tower::PolicyService<Upstream>>,
    body: String,
) -> String {
    let resp = respond(svc, post(&body)).await;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn a_condition_reads_what_the_caller_has_used_of_another_tools_counter() {
    let policy = r#"version 1
default allow

tool pay {
  limit 1000 per day global as spend cost args.amount
}

tool refund {
  require counter.spend < 600 else "Refunds pause once today's spend passes 600"
}
"#;
    let (mut svc, up) = setup(PolicyLayer::new(compiled(policy)));
    let (_, _, body) = send(&mut svc, post(&call(1, "refund", json!({})))).await;
    assert!(!body.contains("POLICY DENIED"), "nothing spent yet: {body}");
    let (_, _, body) = send(&mut svc, post(&call(2, "pay", json!({"amount": 700})))).await;
    assert!(!body.contains("POLICY DENIED"), "{body}");
    let (_, _, body) = send(&mut svc, post(&call(3, "refund", json!({})))).await;
    assert!(
        denied_text(&body).contains("Refunds pause once today's spend passes 600"),
        "{body}"
    );
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn a_grant_extension_from_the_app_is_used() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)));
    for i in 0..4 {
        let mut req = post(&call(i, "create_token", json!({})));
        req.headers_mut().remove("authorization");
        req.extensions_mut().insert(Grant::new("carol"));
        send(&mut svc, req).await;
    }
    assert_eq!(up.seen().len(), 3);
}

#[tokio::test]
async fn hot_swap_keeps_unchanged_counters_and_resets_changed_ones() {
    let layer = PolicyLayer::new(compiled(POLICY));
    let handle = layer.handle();
    let (mut svc, up) = setup(layer);
    for i in 0..4 {
        send(&mut svc, post(&call(i, "create_token", json!({})))).await;
    }
    assert_eq!(up.seen().len(), 3);
    // Same counter, same quota: still exhausted after the swap.
    handle.swap(compiled(&format!("{POLICY}\ntool extra {{ }}\n")));
    let (_, _, body) = send(&mut svc, post(&call(9, "create_token", json!({})))).await;
    assert!(body.contains("rate limit"), "{body}");
    // A new quota is a new bucket.
    handle.swap(compiled(&POLICY.replace(
        "limit 3 per minute per grant",
        "limit 5 per minute per grant",
    )));
    let (_, _, body) = send(&mut svc, post(&call(10, "create_token", json!({})))).await;
    assert!(!body.contains("POLICY DENIED"), "{body}");
    // And decisions follow the new policy.
    handle.swap(compiled("version 1\ndefault deny\n"));
    let (_, _, body) = send(&mut svc, post(&call(11, "get_a", json!({})))).await;
    assert!(body.contains("POLICY DENIED"), "{body}");
    assert_eq!(up.seen().len(), 4);
}

#[tokio::test]
async fn tools_list_answers_lose_hidden_tools_json_and_sse() {
    let tools = json!({"jsonrpc": "2.0", "id": 3, "result": {"tools": [{"name": "get_a"}, {"name": "delete_a"}]}});
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)));
    up.answer_with("application/json", tools.to_string());
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    let (_, headers, body) = send(&mut svc, post(list)).await;
    assert!(
        body.contains("get_a") && !body.contains("delete_a"),
        "{body}"
    );
    assert!(
        headers
            .get("content-length")
            .is_none_or(|l| l.to_str().unwrap() == body.len().to_string())
    );
    up.answer_with(
        "text/event-stream",
        format!("event: message\ndata: {tools}\n\n"),
    );
    let (_, _, body) = send(&mut svc, post(list)).await;
    assert!(body.starts_with("event: message\ndata: "), "{body}");
    assert!(
        body.contains("get_a") && !body.contains("delete_a"),
        "{body}"
    );
}

#[tokio::test]
async fn shadow_mode_forwards_but_keeps_the_decision() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)).shadow(true));
    let (_, _, body) = send(&mut svc, post(&call(1, "reboot", json!({})))).await;
    assert!(!body.contains("POLICY DENIED"));
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn redacted_values_are_masked_for_the_approver_and_the_real_call_goes_through() {
    let policy = compiled(
        "version 1\ndefault deny\ntool pay {\n  require approval timeout 5 seconds redact args.card.number, args.cvv\n}\n",
    );
    let queue = ApprovalQueue::new();
    let (svc, up) = setup(PolicyLayer::new(policy).approver(queue.clone()));
    let q = queue.clone();
    let approver = tokio::spawn(async move {
        for _ in 0..200 {
            if let Some(r) = q.list().first() {
                let shown = r.args.clone().unwrap_or_default();
                assert_eq!(
                    shown,
                    json!({"amount": 12, "card": {"number": "[redacted]", "name": "A"}, "cvv": "[redacted]"})
                );
                return q.approve(&r.id);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    });
    let args =
        json!({"amount": 12, "card": {"number": "4111111111111111", "name": "A"}, "cvv": 123});
    let mut s = svc.clone();
    let (_, _, body) = send(&mut s, post(&call(1, "pay", args.clone()))).await;
    assert!(approver.await.unwrap());
    assert!(!body.contains("POLICY DENIED"), "{body}");
    // The upstream gets the real values: redaction is for eyes, not for the call.
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    assert!(
        String::from_utf8_lossy(&seen[0].1).contains("4111111111111111"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn approvals_release_exactly_the_call_asked_for() {
    let queue = ApprovalQueue::new();
    let (svc, up) = setup(PolicyLayer::new(compiled(POLICY)).approver(queue.clone()));
    // Approve the pending request as soon as it shows up.
    let q = queue.clone();
    let approver = tokio::spawn(async move {
        for _ in 0..100 {
            if let Some(r) = q.list().first() {
                assert_eq!(r.tool, "pay");
                assert_eq!(r.arg_keys, ["amount"]);
                // The approver sees the values it is asked about.
                assert!(
                    r.args.as_ref().is_some_and(|a| a["amount"].is_number()),
                    "{r:?}"
                );
                return q.approve(&r.id);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    });
    let mut s1 = svc.clone();
    let (_, _, body) = send(&mut s1, post(&call(1, "pay", json!({"amount": 5})))).await;
    assert!(approver.await.unwrap());
    assert!(!body.contains("POLICY DENIED"), "{body}");
    assert_eq!(up.seen().len(), 1);
    // Nobody answers the next one: it times out (1 second) and is denied.
    let mut s2 = svc.clone();
    let (_, _, body) = send(&mut s2, post(&call(2, "pay", json!({"amount": 5})))).await;
    assert!(
        denied_text(&body).contains("no approval within 1 seconds"),
        "{body}"
    );
    assert_eq!(up.seen().len(), 1);
}

#[tokio::test]
async fn the_default_approver_refuses_like_the_hosted_product() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)));
    let (_, _, body) = send(&mut svc, post(&call(1, "pay", json!({"amount": 5})))).await;
    assert_eq!(
        denied_text(&body),
        "[POLICY DENIED] Requires human approval."
    );
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn http_mode_answers_403_and_429_with_retry_after() {
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)).http_mode());
    let get = |path: &str| {
        Request::get(path)
            .header("authorization", "Bearer t")
            .body(Body::empty())
            .unwrap()
    };
    // Without a router there is no matched route, so the raw path is the tool name.
    let (status, _, _) = send(&mut svc, get("/items/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(&mut svc, get("/admin")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let post_item = || {
        Request::post("/items")
            .header("authorization", "Bearer t")
            .header("content-type", "application/json")
            .body(Body::full(r#"{"name":"x"}"#))
            .unwrap()
    };
    assert_eq!(send(&mut svc, post_item()).await.0, StatusCode::OK);
    let (status, headers, _) = send(&mut svc, post_item()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "60");
    assert!(headers["ratelimit"].to_str().unwrap().contains("t=60"));
    assert_eq!(up.seen().len(), 2);
}

#[tokio::test]
async fn keys_stay_bounded_when_clients_invent_them() {
    let policy = compiled("version 1\ntool t {\n  limit 5 per minute per session\n}\n");
    let layer = PolicyLayer::new(policy).max_keys_per_counter(10);
    let handle = layer.handle();
    let (mut svc, up) = setup(layer);
    let mut refused = 0;
    for i in 0..50 {
        let mut req = post(&call(i, "t", json!({})));
        req.headers_mut()
            .insert("mcp-session-id", format!("s{i}").parse().unwrap());
        let (_, _, body) = send(&mut svc, req).await;
        if body.contains("tracking too many callers") {
            refused += 1;
        }
    }
    assert_eq!(handle.live_keys(), 10);
    assert_eq!((up.seen().len(), refused), (10, 40));
}

#[tokio::test]
async fn denials_carry_result_type_from_protocol_2026_07_28_on() {
    let (mut svc, _) = setup(PolicyLayer::new(compiled(POLICY)));
    let mut req = post(&call(1, "reboot", json!({})));
    req.headers_mut()
        .insert("mcp-protocol-version", "2026-07-28".parse().unwrap());
    let (_, _, body) = send(&mut svc, req).await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["result"]["resultType"],
        "complete"
    );
    let mut req = post(&call(1, "reboot", json!({})));
    req.headers_mut()
        .insert("mcp-protocol-version", "2025-11-25".parse().unwrap());
    let (_, _, body) = send(&mut svc, req).await;
    assert!(
        serde_json::from_str::<Value>(&body).unwrap()["result"]
            .get("resultType")
            .is_none()
    );
}

/// Collects formatted tracing output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn one_event_per_decision_with_argument_keys_never_values() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (mut svc, _) = setup(PolicyLayer::new(compiled(POLICY)).shadow(true));
    send(
        &mut svc,
        post(&call(1, "reboot", json!({"secret_value": "hunter2"}))),
    )
    .await;
    send(
        &mut svc,
        post(&call(2, "get_a", json!({"id": "visible-only-as-key"}))),
    )
    .await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("warden::decision"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains("tool=\"reboot\"") || lines[0].contains("tool=reboot"),
        "{log}"
    );
    assert!(
        lines[0].contains("decision=\"deny\"") || lines[0].contains("decision=deny"),
        "{log}"
    );
    assert!(
        lines[0].contains("would_block=true"),
        "shadow keeps the real decision: {log}"
    );
    assert!(lines[0].contains("arg_keys=secret_value"), "{log}");
    assert!(
        lines[0].contains("grant=\"token:") || lines[0].contains("grant=token:"),
        "{log}"
    );
    assert!(
        !log.contains("hunter2")
            && !log.contains("visible-only-as-key")
            && !log.contains("alice-token"),
        "{log}"
    );
}

#[tokio::test]
async fn webhook_approver_asks_over_http_and_binds_the_answer() {
    use axum::routing::post as route_post;
    // A webhook that approves amounts under 10 and says why otherwise.
    let app = axum::Router::new().route(
        "/approve",
        route_post(|axum::Json(req): axum::Json<Value>| async move {
            assert!(req.get("call_hash").is_some() && req.get("arg_keys").is_some());
            assert!(req.to_string().find("amount").is_some());
            axum::Json(json!({"approved": false, "reason": "finance says no"}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let webhook = warden_tower::Webhook::new(&format!("http://{addr}/approve")).unwrap();
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)).approver(webhook));
    let (_, _, body) = send(&mut svc, post(&call(1, "pay", json!({"amount": 50})))).await;
    assert_eq!(denied_text(&body), "[POLICY DENIED] finance says no");
    assert!(up.seen().is_empty());
    // An unreachable webhook is a refusal, not an approval.
    let dead = warden_tower::Webhook::new("http://127.0.0.1:9/approve").unwrap();
    let (mut svc, up) = setup(PolicyLayer::new(compiled(POLICY)).approver(dead));
    let (_, _, body) = send(&mut svc, post(&call(1, "pay", json!({"amount": 5})))).await;
    assert!(
        denied_text(&body).contains("approval webhook: unreachable"),
        "{body}"
    );
    assert!(up.seen().is_empty());
    // https needs the `tls` feature; other schemes never work.
    assert_eq!(
        warden_tower::Webhook::new("https://example.com/x").is_ok(),
        cfg!(feature = "tls")
    );
    assert!(warden_tower::Webhook::new("ftp://example.com/x").is_err());
}
