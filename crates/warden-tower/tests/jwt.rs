//! JWT grants: keys made here (RSA and EC), a JWKS from a file and from a loopback URL, and
//! every way a token can be wrong. Through the layer, nothing a bad token sends reaches the
//! handler.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use warden_tower::jwt::{JwksSource, JwtConfig, JwtVerifier, MAX_TOKEN_BYTES, Rejection};

const ISS: &str = "https://idp.test/";
const AUD: &str = "warden";

struct Keys {
    rsa: rsa::RsaPrivateKey,
    other_rsa: rsa::RsaPrivateKey,
    ec: p256::SecretKey,
}

/// RSA key generation is slow: once per test binary.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::thread_rng();
        Keys {
            rsa: rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            other_rsa: rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            ec: p256::SecretKey::random(&mut rng),
        }
    })
}

fn rsa_jwk(key: &rsa::RsaPrivateKey, kid: &str) -> Value {
    let p = key.to_public_key();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
           "n": B64.encode(p.n().to_bytes_be()), "e": B64.encode(p.e().to_bytes_be())})
}

fn ec_jwk(key: &p256::SecretKey, kid: &str) -> Value {
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key.public_key(), false);
    json!({"kty": "EC", "kid": kid, "crv": "P-256", "use": "sig",
           "x": B64.encode(point.x().unwrap()), "y": B64.encode(point.y().unwrap())})
}

fn jwks(extra: &[Value]) -> Value {
    let k = keys();
    let mut all = vec![rsa_jwk(&k.rsa, "rsa1"), ec_jwk(&k.ec, "ec1")];
    all.extend_from_slice(extra);
    json!({"keys": all})
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": ISS, "aud": AUD, "exp": now() + 600, "iat": now(), "team": "ops"})
}

fn rsa_token(key: &rsa::RsaPrivateKey, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    let der = key.to_pkcs1_der().unwrap();
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_der(der.as_bytes())).unwrap()
}

fn ec_token(kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    let der = keys().ec.to_pkcs8_der().unwrap();
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_ec_der(der.as_bytes())).unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("warden-jwt-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn file_verifier(name: &str) -> (JwtVerifier, std::path::PathBuf) {
    let path = scratch(name).join("jwks.json");
    std::fs::write(&path, jwks(&[]).to_string()).unwrap();
    let v = JwtVerifier::new(JwtConfig::new(JwksSource::File(path.clone()), ISS, AUD))
        .await
        .unwrap();
    (v, path)
}

#[tokio::test]
async fn valid_rsa_and_ec_tokens_give_the_claim_as_grant() {
    let (v, _) = file_verifier("valid").await;
    let ok = v
        .verify(&rsa_token(&keys().rsa, "rsa1", &claims("agent-7")))
        .await
        .unwrap();
    assert_eq!(ok.grant, "agent-7");
    assert_eq!(ok.claims["team"], "ops");
    let ok = v
        .verify(&ec_token("ec1", &claims("agent-8")))
        .await
        .unwrap();
    assert_eq!(ok.grant, "agent-8");

    let path = scratch("claim").join("jwks.json");
    std::fs::write(&path, jwks(&[]).to_string()).unwrap();
    let by_team =
        JwtVerifier::new(JwtConfig::new(JwksSource::File(path), ISS, AUD).grant_claim("team"))
            .await
            .unwrap();
    let ok = by_team
        .verify(&ec_token("ec1", &claims("x")))
        .await
        .unwrap();
    assert_eq!(ok.grant, "ops");
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason() {
    let (v, _) = file_verifier("bad").await;
    let k = keys();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("a");
        f(&mut c);
        rsa_token(&k.rsa, "rsa1", &c)
    };
    let hs_confusion = {
        // The RSA public key used as an HMAC secret: the classic algorithm confusion.
        let public_pem = k
            .rsa
            .to_public_key()
            .to_pkcs1_pem(Default::default())
            .unwrap();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rsa1".into());
        jsonwebtoken::encode(
            &h,
            &claims("a"),
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap()
    };
    let unsigned = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        B64.encode(claims("a").to_string())
    );
    let unsigned_upper = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"NONE","kid":"rsa1"}"#),
        B64.encode(claims("a").to_string())
    );
    let cases: Vec<(&str, String, Rejection)> = vec![
        (
            "expired",
            with(&|c| c["exp"] = json!(now() - 3600)),
            Rejection::Expired,
        ),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(now() + 3600)),
            Rejection::NotYetValid,
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil/")),
            Rejection::Issuer,
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("someone-else")),
            Rejection::Audience,
        ),
        (
            "no audience",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            Rejection::Claim("aud".into()),
        ),
        (
            "no exp",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            Rejection::Claim("exp".into()),
        ),
        (
            "no sub",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            Rejection::Claim("sub".into()),
        ),
        (
            "unknown kid",
            rsa_token(&k.rsa, "who", &claims("a")),
            Rejection::UnknownKey,
        ),
        (
            "bad signature",
            rsa_token(&k.other_rsa, "rsa1", &claims("a")),
            Rejection::Signature,
        ),
        (
            "EC key named by an RSA token",
            rsa_token(&k.rsa, "ec1", &claims("a")),
            Rejection::Algorithm("RS256".into()),
        ),
        ("alg none", unsigned, Rejection::Unsigned),
        ("alg NONE", unsigned_upper, Rejection::Unsigned),
        (
            "HS256 with the RSA public key",
            hs_confusion,
            Rejection::Algorithm("HS256".into()),
        ),
        (
            "over 16 KiB",
            "a".repeat(MAX_TOKEN_BYTES + 1),
            Rejection::TooLarge,
        ),
        (
            "malformed base64",
            "%%%.e30.sig".into(),
            Rejection::Malformed,
        ),
        ("two parts", "e30.e30".into(), Rejection::Malformed),
        (
            "header not JSON",
            format!("{}.e30.x", B64.encode("nope")),
            Rejection::Malformed,
        ),
        ("empty", String::new(), Rejection::Malformed),
        (
            "tampered claims",
            {
                let t = rsa_token(&k.rsa, "rsa1", &claims("a"));
                let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
                parts[1] = B64.encode(claims("admin").to_string());
                parts.join(".")
            },
            Rejection::Signature,
        ),
    ];
    for (name, token, want) in cases {
        let got = v.verify(&token).await.err();
        assert_eq!(got.as_ref(), Some(&want), "{name}: {got:?}");
        assert!(!want.to_string().is_empty());
    }
}

#[tokio::test]
async fn a_jwks_file_is_reloaded_when_it_changes() {
    let (v, path) = file_verifier("reload").await;
    v.watch(Duration::from_millis(100));
    let k = keys();
    let token = rsa_token(&k.other_rsa, "rsa2", &claims("b"));
    assert_eq!(v.verify(&token).await.err(), Some(Rejection::UnknownKey));
    std::fs::write(&path, jwks(&[rsa_jwk(&k.other_rsa, "rsa2")]).to_string()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while v.verify(&token).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "new key not picked up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A broken edit keeps the last good keys.
    std::fs::write(&path, "{not json").unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        v.verify(&rsa_token(&k.rsa, "rsa1", &claims("c")))
            .await
            .is_ok()
    );
}

/// Serves a JWKS on loopback, counting fetches; `set` changes what it serves.
struct JwksServer {
    url: String,
    doc: Arc<std::sync::Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks_server(doc: Value) -> JwksServer {
    let doc = Arc::new(std::sync::Mutex::new(doc));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (d, f) = (doc.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (d, f) = (d.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(d.lock().unwrap().clone())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwksServer {
        url: format!("http://{addr}/jwks"),
        doc,
        fetches,
    }
}

#[tokio::test]
async fn a_jwks_url_is_fetched_at_start_and_again_for_an_unknown_kid_at_most_once_per_period() {
    let server = jwks_server(jwks(&[])).await;
    let mut config = JwtConfig::new(JwksSource::parse(&server.url).unwrap(), ISS, AUD);
    config.refetch_every = Duration::from_millis(500);
    let v = JwtVerifier::new(config).await.unwrap();
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    let k = keys();
    assert!(v.verify(&ec_token("ec1", &claims("a"))).await.is_ok());

    // The provider rotates in a new key; the first token naming it waits for the period.
    *server.doc.lock().unwrap() = jwks(&[rsa_jwk(&k.other_rsa, "rsa2")]);
    let token = rsa_token(&k.other_rsa, "rsa2", &claims("b"));
    assert_eq!(v.verify(&token).await.err(), Some(Rejection::UnknownKey));
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "refetched too soon"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(v.verify(&token).await.unwrap().grant, "b");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    // Unknown kids in a burst cost at most one fetch per period.
    for i in 0..20 {
        let _ = v
            .verify(&rsa_token(&k.rsa, &format!("nope{i}"), &claims("c")))
            .await;
    }
    assert!(server.fetches.load(Ordering::SeqCst) <= 3);
}

#[tokio::test]
async fn a_missing_or_empty_jwks_stops_the_start() {
    let dead = format!("http://127.0.0.1:{}/jwks", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let err = JwtVerifier::new(JwtConfig::new(JwksSource::parse(&dead).unwrap(), ISS, AUD))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unreachable"), "{err}");
    let path = scratch("empty").join("jwks.json");
    std::fs::write(&path, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap();
    let err = JwtVerifier::new(JwtConfig::new(JwksSource::File(path), ISS, AUD))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no usable signing key"), "{err}");
    // https needs the `tls` feature; without it the URL is refused at start.
    assert_eq!(
        JwksSource::parse("https://idp/jwks").is_ok(),
        cfg!(feature = "tls")
    );
}

/// A handler behind `PolicyLayer` with the verifier's grant extractor; counts what reaches it.
struct Gate {
    svc: tower::util::BoxCloneService<
        http::Request<warden_tower::Body>,
        http::Response<warden_tower::Body>,
        std::convert::Infallible,
    >,
    reached: Arc<AtomicUsize>,
}

impl Gate {
    fn new(v: &JwtVerifier, pol: &str) -> Gate {
        use tower::Layer;
        let policy =
            warden_policy::CompiledPolicy::new(&warden_dsl::compile(pol).unwrap().policy).unwrap();
        let reached = Arc::new(AtomicUsize::new(0));
        let r = reached.clone();
        let handler = tower::service_fn(move |_req: http::Request<warden_tower::Body>| {
            r.fetch_add(1, Ordering::SeqCst);
            async {
                Ok::<_, std::convert::Infallible>(http::Response::new(warden_tower::Body::full(
                    r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#,
                )))
            }
        });
        let svc = warden_tower::PolicyLayer::new(policy)
            .grant_extractor(v.grant_extractor())
            .layer(handler);
        Gate {
            svc: tower::util::BoxCloneService::new(svc),
            reached,
        }
    }

    /// A `tools/call` of `echo` with `token`; the answer's text.
    async fn send(&self, token: String) -> String {
        use tower::ServiceExt;
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
        let req = http::Request::post("/mcp")
            .header("authorization", format!("Bearer {token}"))
            .body(warden_tower::Body::full(call))
            .unwrap();
        let resp = self.svc.clone().oneshot(req).await.unwrap();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }
}

#[tokio::test]
async fn through_the_layer_a_bad_token_reaches_nothing() {
    let (v, _) = file_verifier("layer").await;
    let gate = Gate::new(
        &v,
        "version 1\ndefault deny\ntool echo {\n  limit 100 per minute per grant\n}\n",
    );
    let k = keys();
    let mut expired = claims("a");
    expired["exp"] = json!(now() - 3600);
    for bad in [
        rsa_token(&k.other_rsa, "rsa1", &claims("a")),
        rsa_token(&k.rsa, "rsa1", &expired),
        "garbage".to_owned(),
    ] {
        let body = gate.send(bad).await;
        assert!(body.contains("[POLICY DENIED]"), "{body}");
    }
    assert_eq!(
        gate.reached.load(Ordering::SeqCst),
        0,
        "a bad token reached the handler"
    );
    let body = gate.send(rsa_token(&k.rsa, "rsa1", &claims("a"))).await;
    assert!(!body.contains("DENIED"), "{body}");
    assert_eq!(gate.reached.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_layer_reads_claims_from_a_jwt_for_caller_conditions() {
    let (v, _) = file_verifier("claims").await;
    let gate = Gate::new(
        &v,
        "version 1\ndefault deny\ntool echo {\n  require caller.claims.team == \"ops\" else \"ops only\"\n  limit 1 per minute per claim team\n}\n",
    );
    let k = keys();
    let mut dev = claims("d");
    dev["team"] = json!("dev");
    assert!(
        gate.send(rsa_token(&k.rsa, "rsa1", &dev))
            .await
            .contains("ops only")
    );
    assert!(
        !gate
            .send(rsa_token(&k.rsa, "rsa1", &claims("a")))
            .await
            .contains("DENIED")
    );
    // The team's budget (1 a minute) is spent, whichever ops agent calls next.
    let body = gate.send(ec_token("ec1", &claims("b"))).await;
    assert!(body.contains("rate limit"), "{body}");
}

#[tokio::test]
async fn hs256_only_with_a_configured_secret() {
    let path = scratch("hs").join("jwks.json");
    std::fs::write(&path, jwks(&[]).to_string()).unwrap();
    let mut config = JwtConfig::new(JwksSource::File(path), ISS, AUD);
    config.hs_secret = Some(b"a-shared-secret-of-at-least-32-bytes!".to_vec());
    let v = JwtVerifier::new(config).await.unwrap();
    let hs = |secret: &[u8]| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims("hs-agent"),
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let ok = v
        .verify(&hs(b"a-shared-secret-of-at-least-32-bytes!"))
        .await
        .unwrap();
    assert_eq!(ok.grant, "hs-agent");
    assert_eq!(
        v.verify(&hs(b"another-secret-entirely-xxxxxxxxxxxx"))
            .await
            .err(),
        Some(Rejection::Signature)
    );
    // Asymmetric keys keep working beside it.
    assert!(v.verify(&ec_token("ec1", &claims("a"))).await.is_ok());
}
