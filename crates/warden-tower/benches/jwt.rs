//! What JWT grants cost per `tools/call`, in one run: the handler alone, the layer with a
//! static bearer token, the layer with a JWT (cached after its first check, as every call
//! of an agent's session is), and a first check of a token never seen (ES256 and RS256).
//!
//! ```sh
//! cargo bench -p warden-tower --features jwt --bench jwt
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::{Handler, policy, request_bytes};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceExt};
use warden_tower::jwt::{JwksSource, JwtConfig, JwtVerifier};
use warden_tower::{Body, PolicyLayer};

const ISS: &str = "https://idp.bench/";
const AUD: &str = "bench";

fn claims(i: usize) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"sub": "agent-7", "iss": ISS, "aud": AUD, "exp": now + 3600, "jti": i,
           "groups": ["dev"], "scope": "tools:call"})
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, i: usize) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims(i), key).unwrap()
}

fn send<S>(rt: &tokio::runtime::Runtime, svc: &S, body: &bytes::Bytes, auth: &str)
where
    S: Service<Request<Body>, Response = http::Response<Body>, Error = std::convert::Infallible>
        + Clone,
{
    let req = Request::post("/mcp")
        .header("content-type", "application/json")
        .header("authorization", auth)
        .body(Body::full(body.clone()))
        .unwrap();
    rt.block_on(async {
        let resp = svc.clone().oneshot(req).await.unwrap();
        let text = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(
            !text.windows(6).any(|w| w == b"DENIED"),
            "the bench call was denied"
        );
    });
}

fn jwt(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rng = rand::thread_rng();
    let ec = p256::SecretKey::random(&mut rng);
    let rsa_key = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&ec.public_key(), false);
    let public = rsa_key.to_public_key();
    let jwks = json!({"keys": [
        {"kty": "EC", "kid": "ec", "crv": "P-256", "alg": "ES256",
         "x": B64.encode(point.x().unwrap()), "y": B64.encode(point.y().unwrap())},
        {"kty": "RSA", "kid": "rsa", "alg": "RS256",
         "n": B64.encode(public.n().to_bytes_be()), "e": B64.encode(public.e().to_bytes_be())}
    ]});
    let path = std::env::temp_dir().join(format!("warden-bench-jwks-{}.json", std::process::id()));
    std::fs::write(&path, jwks.to_string()).unwrap();
    let config = JwtConfig::new(JwksSource::File(path.clone()), ISS, AUD);
    let verifier = || rt.block_on(JwtVerifier::new(config.clone())).unwrap();
    let ec_key = EncodingKey::from_ec_der(ec.to_pkcs8_der().unwrap().as_bytes());
    let rsa_enc = EncodingKey::from_rsa_der(rsa_key.to_pkcs1_der().unwrap().as_bytes());

    let body = request_bytes("create_instance");
    let text = "version 1\ndefault deny\ntool create_instance {\n  require args.region in [\"us-east\", \"eu-west\"]\n  limit 4000000000 per minute per grant\n}\n";
    let mut g = c.benchmark_group("tools_call_1KiB_by_credential");
    g.bench_function("baseline: handler alone", |b| {
        b.iter(|| common::run(&rt, &Handler, &body))
    });
    let static_layer = PolicyLayer::new(policy(text)).layer(Handler);
    g.bench_function("PolicyLayer + limit: static bearer token", |b| {
        b.iter(|| send(&rt, &static_layer, &body, "Bearer static-token"))
    });
    let v = verifier();
    let jwt_layer = PolicyLayer::new(policy(text))
        .grant_extractor(v.grant_extractor())
        .layer(Handler);
    let token = format!("Bearer {}", sign(Algorithm::ES256, "ec", &ec_key, 0));
    g.bench_function(
        "PolicyLayer + limit: JWT (checked once, then cached)",
        |b| b.iter(|| send(&rt, &jwt_layer, &body, &token)),
    );
    g.finish();

    // A token's first check: a fresh verifier per pass, so nothing is cached.
    let mut g = c.benchmark_group("jwt_first_check");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for (name, alg, kid, key) in [
        ("ES256", Algorithm::ES256, "ec", &ec_key),
        ("RS256", Algorithm::RS256, "rsa", &rsa_enc),
    ] {
        let tokens: Vec<String> = (0..400).map(|i| sign(alg, kid, key, i)).collect();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0u64;
                while done < iters {
                    let fresh = verifier();
                    let n = (iters - done).min(tokens.len() as u64) as usize;
                    let started = Instant::now();
                    for t in &tokens[..n] {
                        fresh.verify_now(t).unwrap();
                    }
                    total += started.elapsed();
                    done += n as u64;
                }
                total
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, jwt);
criterion_main!(benches);
