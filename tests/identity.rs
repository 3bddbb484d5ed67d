//! `warden serve --jwt-*`: callers with JWTs from an identity provider (keys made here),
//! JWKS from a file and from a loopback URL, 401s with reasons that reach nothing upstream,
//! and the RFC 9728 discovery document.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use serde_json::{Value, json};

const ISS: &str = "https://idp.test/";
const AUD: &str = "mcp-gateway";
const POLICY: &str = "version 1\ndefault deny\n\ntool echo {\n  limit 2 per minute per grant\n}\n\ntool get-sum {\n  require caller.claims.team == \"ops\" else \"ops only\"\n}\n\ntool get-env {\n  limit 2 per minute per claim team\n}\n";

struct Idp {
    key: p256::SecretKey,
}

impl Idp {
    fn new() -> Idp {
        Idp {
            key: p256::SecretKey::random(&mut rand::thread_rng()),
        }
    }

    fn jwks(&self) -> String {
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &self.key.public_key(),
            false,
        );
        json!({"keys": [{"kty": "EC", "kid": "k1", "crv": "P-256", "alg": "ES256",
            "x": B64.encode(point.x().unwrap()), "y": B64.encode(point.y().unwrap())}]})
        .to_string()
    }

    fn token(&self, claims: Value) -> String {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some("k1".into());
        let der = self.key.to_pkcs8_der().unwrap();
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(der.as_bytes())).unwrap()
    }

    fn claims(sub: &str) -> Value {
        let now = jsonwebtoken::get_current_timestamp();
        json!({"sub": sub, "iss": ISS, "aud": AUD, "exp": now + 600, "team": "ops"})
    }
}

/// An upstream that only counts connections: nothing should ever reach it here.
fn counting_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            s.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (url, seen)
}

/// Serves one document at any path, on loopback, for as long as the test runs.
fn serve_document(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

fn gateway(warden: &Path, policy: &Path, upstream: &str, jwks: &str) -> support::Running {
    let mut cmd = support::serve_command(warden, policy, upstream);
    cmd.args(["--grant-token", "static=static-token"])
        .args([
            "--jwt-jwks",
            jwks,
            "--jwt-issuer",
            ISS,
            "--jwt-audience",
            AUD,
        ])
        .args(["--jwt-scope", "tools:call"])
        .arg("--audit")
        .arg(policy.with_extension("audit.jsonl"));
    support::start(cmd)
}

fn call_status(url: &str, token: Option<&str>) -> (u16, Vec<(String, String)>, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut h = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    if let Some(a) = &auth {
        h.push(("authorization", a));
    }
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"m"}}}"#;
    support::http(url, "POST", "/mcp", &h, body)
}

#[test]
fn bad_tokens_get_401_with_a_reason_and_reach_nothing_and_discovery_points_to_the_issuer() {
    let warden = support::warden().expect("warden binary");
    let idp = Idp::new();
    let dir = support::scratch("identity-401");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, idp.jwks()).unwrap();
    let (upstream, seen) = counting_upstream();
    let gw = gateway(&warden, &policy, &upstream, jwks.to_str().unwrap());

    let now = jsonwebtoken::get_current_timestamp();
    let mut expired = Idp::claims("a");
    expired["exp"] = json!(now - 3600);
    let mut wrong_aud = Idp::claims("a");
    wrong_aud["aud"] = json!("someone-else");
    let forged = Idp::new().token(Idp::claims("a"));
    let unsigned = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","kid":"k1"}"#),
        B64.encode(Idp::claims("a").to_string())
    );
    let cases = [
        ("no token", None, "send Authorization"),
        (
            "unknown static token",
            Some("nope".to_owned()),
            "send Authorization",
        ),
        ("expired", Some(idp.token(expired)), "token expired"),
        (
            "wrong audience",
            Some(idp.token(wrong_aud)),
            "wrong audience",
        ),
        ("forged", Some(forged), "bad signature"),
        ("alg none", Some(unsigned), "alg none"),
        ("malformed", Some("a.b.c".to_owned()), "not a JWT"),
        (
            "huge",
            Some(format!("a.{}.c", "b".repeat(20_000))),
            "over 16384 bytes",
        ),
    ];
    for (name, token, reason) in &cases {
        let (status, headers, body) = call_status(&gw.url, token.as_deref());
        assert_eq!(status, 401, "{name}: {body}");
        assert!(body.contains(reason), "{name}: {body}");
        let rpc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(rpc["jsonrpc"], "2.0", "{name}: {body}");
        let challenge = headers
            .iter()
            .find(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer resource_metadata=\"http://127.0.0.1:")
                && challenge.contains("/.well-known/oauth-protected-resource\""),
            "{name}: {challenge}"
        );
        if token.as_deref().is_some_and(|t| t.contains('.')) {
            assert!(
                challenge.contains("error=\"invalid_token\""),
                "{name}: {challenge}"
            );
        }
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "a refused call reached the upstream"
    );

    let (status, _, body) = support::http(
        &gw.url,
        "GET",
        "/.well-known/oauth-protected-resource",
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["authorization_servers"], json!([ISS]));
    assert_eq!(doc["scopes_supported"], json!(["tools:call"]));
    assert!(doc["resource"].as_str().unwrap().ends_with("/mcp"), "{doc}");
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));

    // The audit of refusals never carries a token; the gateway is still up.
    let (status, _, _) = call_status(&gw.url, None);
    assert_eq!(status, 401);
}

#[test]
fn jwt_callers_are_grants_of_their_claim_with_a_jwks_file_or_url() {
    let warden = support::warden().expect("warden binary");
    let js = support::everything().expect("server-everything");
    let idp = Idp::new();
    let dir = support::scratch("identity-ok");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let upstream = support::start_everything(&js);
    let file = dir.join("jwks.json");
    std::fs::write(&file, idp.jwks()).unwrap();
    let url = serve_document(idp.jwks());

    for jwks in [file.to_str().unwrap().to_owned(), url] {
        let gw = gateway(&warden, &policy, &upstream.url, &jwks);
        let ops = idp.token(Idp::claims("agent-ops"));
        let mut dev_claims = Idp::claims("agent-dev");
        dev_claims["team"] = json!("dev");
        let dev = idp.token(dev_claims);
        let sid = support::session(&gw.url, &ops);
        // Two calls a minute per grant: agent-ops uses both, agent-dev still has its own.
        for id in 0..2 {
            let text = support::call_text(
                &gw.url,
                &ops,
                &sid,
                10 + id,
                "echo",
                json!({"message": "o"}),
            );
            assert_eq!(text, "Echo: o", "{jwks}");
        }
        let text = support::call_text(&gw.url, &ops, &sid, 12, "echo", json!({"message": "o"}));
        assert!(
            text.starts_with("[POLICY DENIED] rate limit"),
            "{jwks}: {text}"
        );
        let text = support::call_text(&gw.url, &dev, &sid, 13, "echo", json!({"message": "d"}));
        assert_eq!(text, "Echo: d", "{jwks}");
        // Static tokens keep working beside JWTs.
        let text = support::call_text(
            &gw.url,
            "static-token",
            &sid,
            14,
            "echo",
            json!({"message": "s"}),
        );
        assert_eq!(text, "Echo: s", "{jwks}");
    }

    // A JWKS that cannot be fetched stops the start, with a clear error.
    let dead = format!("http://127.0.0.1:{}/jwks.json", support::free_port());
    let out = Command::new(&warden)
        .args([
            "serve",
            "--upstream",
            &upstream.url,
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--jwt-jwks",
            &dead,
            "--jwt-issuer",
            ISS,
            "--jwt-audience",
            AUD,
        ])
        .arg("--policy")
        .arg(&policy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("JWKS") && stderr.contains("unreachable"),
        "{stderr}"
    );
}

#[test]
fn warden_stdio_takes_its_grant_from_a_jwt_in_the_environment() {
    let warden = support::warden().expect("warden binary");
    let js = support::everything().expect("server-everything");
    let idp = Idp::new();
    let dir = support::scratch("identity-stdio");
    let policy = dir.join("policy.pol");
    std::fs::write(&policy, POLICY).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, idp.jwks()).unwrap();
    let args = [
        "--policy",
        policy.to_str().unwrap(),
        "--jwt-jwks",
        jwks.to_str().unwrap(),
        "--jwt-issuer",
        ISS,
        "--jwt-audience",
        AUD,
    ];
    let token = idp.token(Idp::claims("agent-ops"));
    let mut gate =
        support::StdioGate::start_with_env(&warden, &args, &js, &[("WARDEN_TOKEN", &token)]);
    gate.initialize();
    assert_eq!(gate.call(2, "echo", json!({"message": "hi"})), "Echo: hi");
    drop(gate);

    let mut expired = Idp::claims("agent-ops");
    expired["exp"] = json!(jsonwebtoken::get_current_timestamp() - 3600);
    let out = Command::new(&warden)
        .arg("stdio")
        .args(args)
        .env("WARDEN_TOKEN", idp.token(expired))
        .args(["--", "node"])
        .arg(&js)
        .arg("stdio")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("$WARDEN_TOKEN: token expired"), "{stderr}");
}

#[test]
fn the_python_sdk_calls_with_two_teams_tokens_and_the_policy_tells_them_apart() {
    let warden = support::warden().expect("warden binary");
    let js = support::everything().expect("server-everything");
    let python = support::python().expect("python with the mcp SDK");
    let idp = Idp::new();
    let dir = support::scratch("identity-python");
    let policy = dir.join("policy.pol");
    std::fs::write(
        &policy,
        "version 1\ndefault deny\nallow echo\n\ntool get-sum {\n  require caller.claims.team == \"ops\" else \"ops only\"\n}\n\ntool get-env {\n  limit 1 per minute per claim team\n}\n",
    )
    .unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, idp.jwks()).unwrap();
    let upstream = support::start_everything(&js);
    let gw = gateway(&warden, &policy, &upstream.url, jwks.to_str().unwrap());
    let url = format!("{}/mcp", gw.url);
    let calls =
        json!([["get-sum", {"a": 2, "b": 2}], ["get-env", {}], ["get-env", {}]]).to_string();
    let token = |sub: &str, team: &str| {
        let mut c = Idp::claims(sub);
        c["team"] = json!(team);
        idp.token(c)
    };
    let run = |t: String| {
        support::run_python(
            &python,
            "gateway_scenario.py",
            &[&url, "legacy", &t, &calls],
        )
    };
    let texts = |out: &Value| -> Vec<String> {
        out["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_owned())
            .collect()
    };

    let ops = run(token("agent-ops", "ops"));
    assert_eq!(ops["echo"]["text"], "Echo: hello", "{ops}");
    // Each caller's list holds what its claims let it call.
    assert_eq!(ops["tools"], json!(["echo", "get-env", "get-sum"]), "{ops}");
    let t = texts(&ops);
    assert_eq!(t[0], "The sum of 2 and 2 is 4.", "{ops}");
    assert!(!t[1].contains("DENIED"), "{ops}");
    assert!(t[2].starts_with("[POLICY DENIED] rate limit"), "{ops}");

    // Another ops agent shares the team's (spent) budget; dev has its own, and no get-sum.
    let ops2 = texts(&run(token("agent-ops-2", "ops")));
    assert!(
        ops2[1].starts_with("[POLICY DENIED] rate limit"),
        "{ops2:?}"
    );
    let dev = run(token("agent-dev", "dev"));
    assert_eq!(dev["tools"], json!(["echo", "get-env"]), "{dev}");
    let dev = texts(&dev);
    assert_eq!(dev[0], "[POLICY DENIED] ops only", "{dev:?}");
    assert!(!dev[1].contains("DENIED"), "{dev:?}");

    // An expired token: the SDK sees the 401.
    let mut old = Idp::claims("agent-ops");
    let expired_token = {
        old["exp"] = json!(jsonwebtoken::get_current_timestamp() - 3600);
        idp.token(old)
    };
    let out = run(expired_token.clone());
    assert_eq!(out["error"], "unauthorized", "{out}");

    // The audit names grants (the `sub` claim) and the one claim the policy reads, `team`;
    // never a token, never the other claims.
    let audit = std::fs::read_to_string(policy.with_extension("audit.jsonl")).unwrap();
    let line = audit
        .lines()
        .find(|l| l.contains("get-sum") && l.contains("agent-dev"))
        .unwrap_or_else(|| panic!("no audit line for agent-dev's get-sum: {audit}"));
    let v: Value = serde_json::from_str(line).unwrap();
    let fields = if v["fields"].is_object() {
        &v["fields"]
    } else {
        &v
    };
    assert_eq!(fields["claims"], r#"{"team":"dev"}"#, "{line}");
    assert!(
        !audit.contains(ISS) && !audit.contains("\"exp\""),
        "{audit}"
    );
    assert!(
        !audit.contains(&expired_token[..40]),
        "a token reached the audit"
    );
}
