//! Several `warden serve` replicas sharing one real `redis-server`: one quota for all of
//! them, fail-closed while Redis is down, recovery without a restart, and approvals asked on
//! one replica answered on another. The upstream is @modelcontextprotocol/server-everything.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod redis_server;
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use serde_json::{Value, json};

const POLICY: &str = r#"version 1
default deny

tool echo {
  limit 30 per minute per grant
}

tool get-sum {
  require approval timeout 30 seconds
}
"#;

fn replica(
    warden: &Path,
    policy: &Path,
    upstream: &str,
    redis: &str,
    admin: u16,
) -> support::Running {
    let mut cmd = support::serve_command(warden, policy, upstream);
    cmd.args(support::ALICE_AND_BOB)
        .args(["--redis", redis, "--redis-prefix", "e2e:"])
        .args([
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--admin-token",
            "admin-secret",
        ]);
    support::start(cmd)
}

fn admin_get(port: u16, path: &str) -> (u16, String) {
    let (status, _, body) = support::http(
        &format!("http://127.0.0.1:{port}"),
        "GET",
        path,
        &[("authorization", "Bearer admin-secret")],
        "",
    );
    (status, body)
}

fn admin_post(port: u16, path: &str) -> u16 {
    support::http(
        &format!("http://127.0.0.1:{port}"),
        "POST",
        path,
        &[("authorization", "Bearer admin-secret")],
        "",
    )
    .0
}

/// Waits (bounded) for the first pending approval whose tool is `tool`, seen on `admin`.
fn pending_on(admin: u16, tool: &str, except: &[String]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = admin_get(admin, "/approvals");
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if let Some(p) = v["pending"].as_array().and_then(|p| {
            p.iter()
                .find(|r| r["tool"] == tool && !except.iter().any(|e| r["id"] == **e))
        }) {
            return p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no pending approval on {admin}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_replicas_share_one_quota_fail_closed_without_redis_and_share_approvals() {
    let warden = support::warden().expect("warden binary");
    let js = support::everything().expect("server-everything");
    let mut redis = RedisServer::start();
    let dir = support::scratch("replicas");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = support::start_everything(&js);
    let admins: Vec<u16> = (0..3).map(|_| support::free_port()).collect();
    let replicas: Vec<support::Running> = admins
        .iter()
        .map(|a| replica(&warden, &policy, &upstream.url, &redis.url(), *a))
        .collect();
    for a in &admins {
        let (status, body) = admin_get(*a, "/healthz");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"store\":\"redis\""), "{body}");
    }

    // 120 concurrent calls by alice, 40 through each replica, released together.
    let sessions: Vec<String> = replicas
        .iter()
        .map(|r| support::session(&r.url, "alice-token"))
        .collect();
    let barrier = Arc::new(Barrier::new(120));
    let workers: Vec<_> = (0..120u32)
        .map(|i| {
            let url = replicas[i as usize % 3].url.clone();
            let sid = sessions[i as usize % 3].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                support::call_text(
                    &url,
                    "alice-token",
                    &sid,
                    100 + i,
                    "echo",
                    json!({"message": format!("m{i}")}),
                )
            })
        })
        .collect();
    let texts: Vec<String> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let echoed = texts.iter().filter(|t| t.starts_with("Echo: m")).count();
    let limited = texts
        .iter()
        .filter(|t| t.starts_with("[POLICY DENIED] rate limit `"))
        .count();
    assert_eq!(echoed, 30, "calls that reached the upstream: {texts:?}");
    assert_eq!(limited, 90, "{texts:?}");

    // Redis down: bob has quota left, but it cannot be checked, so nothing is forwarded.
    let bob = support::session(&replicas[1].url, "bob-token");
    assert_eq!(
        support::call_text(
            &replicas[1].url,
            "bob-token",
            &bob,
            300,
            "echo",
            json!({"message": "before"})
        ),
        "Echo: before"
    );
    redis.stop();
    for (i, r) in replicas.iter().enumerate() {
        let text = support::call_text(
            &r.url,
            "bob-token",
            &bob,
            301 + i as u32,
            "echo",
            json!({"message": "during"}),
        );
        assert!(
            text.starts_with("[POLICY DENIED]") && text.contains("rate-limit store is unavailable"),
            "replica {i}: {text}"
        );
    }
    let (status, body) = admin_get(admins[0], "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains("redis://"), "no URL in health: {body}");

    // Redis back (empty: nothing was persisted): calls pass again, no restart.
    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 400;
    loop {
        n += 1;
        let text = support::call_text(
            &replicas[2].url,
            "bob-token",
            &bob,
            n,
            "echo",
            json!({"message": "after"}),
        );
        if text == "Echo: after" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused 15 s after Redis came back: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // An approval asked through replica A is answered on replica B's admin address.
    let (url_a, sid_a) = (replicas[0].url.clone(), sessions[0].clone());
    let waiting = std::thread::spawn(move || {
        support::call_text(
            &url_a,
            "alice-token",
            &sid_a,
            500,
            "get-sum",
            json!({"a": 2, "b": 3}),
        )
    });
    let asked = pending_on(admins[1], "get-sum", &[]);
    assert_eq!(asked["grant"], "alice");
    assert_eq!(asked["args"], json!({"a": 2, "b": 3}));
    let id = asked["id"].as_str().unwrap().to_owned();
    // Replica C's console shows it too, with the values, to a person logged in there.
    let console = format!("http://127.0.0.1:{}", admins[2]);
    let (status, headers, _) = support::http(
        &console,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "token=admin-secret",
    );
    assert_eq!(status, 303);
    let cookie = headers
        .iter()
        .find(|(k, _)| k == "set-cookie")
        .and_then(|(_, v)| v.split(';').next())
        .unwrap()
        .to_owned();
    let (_, _, page) = support::http(
        &console,
        "GET",
        "/console/approvals",
        &[("cookie", &cookie)],
        "",
    );
    assert!(
        page.contains(&id) && page.contains("&quot;b&quot;: 3"),
        "{page}"
    );
    assert_eq!(
        admin_post(admins[1], &format!("/approvals/{id}/approve")),
        200
    );
    assert_eq!(waiting.join().unwrap(), "The sum of 2 and 3 is 5.");

    // The same answer again releases nothing: not this id, not a call with other arguments.
    let (url_a, sid_a) = (replicas[0].url.clone(), sessions[0].clone());
    let other = std::thread::spawn(move || {
        support::call_text(
            &url_a,
            "alice-token",
            &sid_a,
            501,
            "get-sum",
            json!({"a": 2, "b": 300}),
        )
    });
    let second = pending_on(admins[2], "get-sum", std::slice::from_ref(&id));
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_ne!(second_id, id);
    assert_eq!(
        admin_post(admins[1], &format!("/approvals/{id}/approve")),
        404
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !other.is_finished(),
        "an old answer released a different call"
    );
    assert_eq!(
        admin_post(admins[2], &format!("/approvals/{second_id}/deny")),
        200
    );
    let text = other.join().unwrap();
    assert!(text.starts_with("[POLICY DENIED]"), "{text}");
    drop(replicas);
}

#[test]
fn a_redis_password_never_reaches_the_logs_and_a_bad_url_is_refused_up_front() {
    let warden = support::warden().expect("warden binary");
    let js = support::everything().expect("server-everything");
    // This server has no password, so AUTH fails: the store stays down and says why.
    let redis = RedisServer::start();
    let dir = support::scratch("redis-secret");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = support::start_everything(&js);
    let log = dir.join("stderr.log");
    let url = format!("redis://:sekret-pw@127.0.0.1:{}/0", redis.port);
    let mut cmd = Command::new(&warden);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream.url,
    ])
    .args(["--grant-token", "alice=alice-token", "--redis", &url])
    .arg("--policy")
    .arg(&policy)
    .env("WARDEN_LOG", "info");
    let gw = support::start_with_stderr(cmd, std::fs::File::create(&log).unwrap().into());
    let sid = support::session(&gw.url, "alice-token");
    let text = support::call_text(
        &gw.url,
        "alice-token",
        &sid,
        2,
        "echo",
        json!({"message": "m"}),
    );
    assert!(text.contains("rate-limit store is unavailable"), "{text}");
    std::thread::sleep(Duration::from_millis(1500));
    drop(gw);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains(":***@127.0.0.1"),
        "the redacted URL is logged: {logged}"
    );
    assert!(
        !logged.contains("sekret-pw"),
        "the password leaked: {logged}"
    );

    let out = Command::new(&warden)
        .args(["serve", "--upstream", &upstream.url, "--no-auth"])
        .args(["--redis", "http://:sekret-pw@127.0.0.1:1/"])
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("expected redis://"), "{stderr}");
    assert!(!stderr.contains("sekret-pw"), "{stderr}");
}

#[test]
fn warden_stdio_shares_counters_and_approvals_with_serve_replicas() {
    let warden = support::warden().expect("warden binary");
    let js = support::everything().expect("server-everything");
    let redis = RedisServer::start();
    let dir = support::scratch("stdio-redis");
    let policy = dir.join("policy.pol");
    std::fs::write(
        &policy,
        POLICY.replace("limit 30 per minute", "limit 2 per minute"),
    )
    .unwrap();
    let upstream = support::start_everything(&js);
    let admin = support::free_port();
    let serve = replica(&warden, &policy, &upstream.url, &redis.url(), admin);

    // alice spends her whole quota through `serve`...
    let sid = support::session(&serve.url, "alice-token");
    for i in 0..2 {
        let text = support::call_text(
            &serve.url,
            "alice-token",
            &sid,
            10 + i,
            "echo",
            json!({"message": "s"}),
        );
        assert_eq!(text, "Echo: s");
    }
    // ...so `stdio`, calling as alice too, finds it spent.
    let url = redis.url();
    let args = [
        "--grant",
        "alice",
        "--redis",
        &url,
        "--redis-prefix",
        "e2e:",
        "--policy",
    ];
    let mut args = args.to_vec();
    args.push(policy.to_str().unwrap());
    let mut gate = support::StdioGate::start(&warden, &args, &js);
    gate.initialize();
    let text = gate.call(2, "echo", json!({"message": "x"}));
    assert!(text.starts_with("[POLICY DENIED] rate limit"), "{text}");

    // An approval asked by `stdio` is answered on the `serve` replica's admin address.
    gate.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"get-sum","arguments":{"a":4,"b":5}}}"#);
    let asked = pending_on(admin, "get-sum", &[]);
    let id = asked["id"].as_str().unwrap();
    assert_eq!(admin_post(admin, &format!("/approvals/{id}/approve")), 200);
    assert_eq!(
        gate.answer(3)["result"]["content"][0]["text"],
        "The sum of 4 and 5 is 9."
    );
    drop(gate);
    drop(serve);
}
