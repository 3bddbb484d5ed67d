//! Grants from JWTs an identity provider issued (feature `jwt`).
//!
//! A [`JwtVerifier`] checks a bearer token against the provider's JWKS: signature by a key
//! chosen by `kid` (RS256/384/512, PS256/384/512, ES256/384, EdDSA — never `none`, never
//! HS* unless a shared secret is configured), `exp` and `nbf` with a small leeway, `iss`,
//! `aud`. The grant is the configured claim (`sub` by default). Every refusal has a short
//! reason for the 401 body and the log; none echoes the token.
//!
//! ```no_run
//! # async fn f() -> Result<(), warden_tower::Error> {
//! use warden_tower::jwt::{JwksSource, JwtConfig, JwtVerifier};
//! let verifier = JwtVerifier::new(JwtConfig::new(
//!     JwksSource::File("jwks.json".into()),
//!     "https://idp.example/",
//!     "warden",
//! ))
//! .await?;
//! let layer = warden_tower::PolicyLayer::new(todo!()).grant_extractor(verifier.grant_extractor());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use http::request::Parts;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::grant::{Grant, GrantExtractor, bearer_token};

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Where the provider's public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A JWKS document on disk, reloaded when it changes.
    File(PathBuf),
    /// An `http://` or (feature `tls`) `https://` URL, fetched at start and again (at most
    /// once a minute) when a token names a key it does not know.
    Url(http::Uri),
}

impl JwksSource {
    /// A path, or a URL.
    pub fn parse(text: &str) -> Result<JwksSource, crate::Error> {
        if cfg!(not(feature = "tls")) && text.starts_with("https://") {
            return Err(crate::Error::Config(format!(
                "JWKS {text}: https needs warden-tower's `tls` feature; or save the document \
                 to a file (`curl -o jwks.json {text}`) and pass the file: it is reloaded when it changes"
            )));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            let uri = text
                .parse::<http::Uri>()
                .map_err(|e| crate::Error::Config(format!("JWKS URL {text}: {e}")))?;
            return Ok(JwksSource::Url(uri));
        }
        Ok(JwksSource::File(PathBuf::from(text)))
    }
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub jwks: JwksSource,
    pub issuer: String,
    pub audience: String,
    /// The claim whose value is the grant.
    pub grant_claim: String,
    /// Allowed clock difference for `exp` and `nbf`.
    pub leeway: Duration,
    /// HS256/384/512 are accepted only with this shared secret.
    pub hs_secret: Option<Vec<u8>>,
    /// A JWKS URL is fetched again for an unknown `kid` at most this often.
    pub refetch_every: Duration,
    /// How an `https://` JWKS URL is verified (a private CA for an in-house IdP).
    #[cfg(feature = "tls")]
    pub tls: crate::tls::ClientTls,
}

impl JwtConfig {
    pub fn new(jwks: JwksSource, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        JwtConfig {
            jwks,
            issuer: issuer.into(),
            audience: audience.into(),
            grant_claim: "sub".into(),
            leeway: Duration::from_secs(30),
            hs_secret: None,
            refetch_every: Duration::from_secs(60),
            #[cfg(feature = "tls")]
            tls: crate::tls::ClientTls::default(),
        }
    }

    pub fn grant_claim(mut self, claim: impl Into<String>) -> Self {
        self.grant_claim = claim.into();
        self
    }
}

/// Why a token was refused: the text a 401 body and a log line carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("token over {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("not a JWT (three base64url parts with a JSON header)")]
    Malformed,
    #[error("unsigned tokens (alg none) are not accepted")]
    Unsigned,
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    #[error("no key with this kid in the JWKS")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("token has no usable `{0}` claim")]
    Claim(String),
}

/// A token that passed: its grant and every claim.
#[derive(Debug, Clone)]
pub struct Verified {
    pub grant: String,
    pub claims: Arc<Value>,
    /// `exp`, seconds since the epoch.
    expires: u64,
}

pub use crate::grant::Claims;

struct Key {
    key: DecodingKey,
    alg: Algorithm,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Arc<Key>>,
    /// Keys without a `kid`: tried only for tokens without one.
    unnamed: Vec<Arc<Key>>,
    /// The file's modification time and length when it was read.
    stamp: Option<(SystemTime, u64)>,
}

/// Checks tokens against a JWKS; cheap to clone.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: JwtConfig,
    keys: ArcSwap<Keys>,
    last_fetch: Mutex<Option<Instant>>,
    /// Valid tokens by SHA-256, until their `exp`: a signature is checked once per token.
    cache: Mutex<HashMap<[u8; 32], Verified>>,
}

const CACHE_MAX: usize = 10_000;

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("jwks", &self.inner.config.jwks)
            .field("issuer", &self.inner.config.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Loads the JWKS now: a source that cannot be read, or holds no usable key, is an error
    /// (the gateway refuses to start without keys).
    pub async fn new(config: JwtConfig) -> Result<JwtVerifier, crate::Error> {
        let keys = load(&config).await?;
        if keys.by_kid.is_empty() && keys.unnamed.is_empty() {
            return Err(crate::Error::Config(format!(
                "JWKS {}: no usable signing key (RSA, EC P-256/P-384 or Ed25519)",
                describe(&config.jwks)
            )));
        }
        Ok(JwtVerifier {
            inner: Arc::new(Inner {
                config,
                keys: ArcSwap::from_pointee(keys),
                last_fetch: Mutex::new(Some(Instant::now())),
                cache: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &JwtConfig {
        &self.inner.config
    }

    /// Re-reads a JWKS file when it changed (checked every `every`); a bad new file keeps
    /// the last good keys. Stops when every clone is dropped.
    pub fn watch(&self, every: Duration) {
        let JwksSource::File(path) = &self.inner.config.jwks else {
            return;
        };
        let path = path.clone();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                if stamp(&path) == inner.keys.load().stamp {
                    continue;
                }
                match load(&inner.config).await {
                    Ok(keys) => {
                        inner.keys.store(Arc::new(keys));
                        tracing::info!(target: "warden::gateway", path = %path.display(), "JWKS reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(target: "warden::gateway", error = %e, "JWKS not reloaded; the last good keys stay");
                    }
                }
            }
        });
    }

    /// Checks one token (without the `Bearer ` prefix). A `kid` the keys do not have makes
    /// a JWKS URL be fetched again (at most once per `refetch_every`) before it is refused.
    pub async fn verify(&self, token: &str) -> Result<Verified, Rejection> {
        match self.verify_now(token) {
            Err(Rejection::UnknownKey) if self.refetch().await => self.verify_now(token),
            other => other,
        }
    }

    /// [`Self::verify`] without waiting: an unknown `kid` is refused at once.
    pub fn verify_now(&self, token: &str) -> Result<Verified, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now_secs();
        if let Some(v) = self.cached(&digest, now) {
            return Ok(v);
        }
        let header = header(token)?;
        let key = self.key(&header)?;
        let verified = self.check(token, &key)?;
        let mut cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, v| v.expires > now);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(digest, verified.clone());
        Ok(verified)
    }

    fn cached(&self, digest: &[u8; 32], now: u64) -> Option<Verified> {
        let cache = self.inner.cache.lock().unwrap_or_else(|e| e.into_inner());
        // The leeway is not granted here: a cached token stops at its own `exp`.
        cache.get(digest).filter(|v| v.expires > now).cloned()
    }

    /// The key a header names, for an algorithm it may be used with.
    fn key(&self, header: &Header) -> Result<Arc<Key>, Rejection> {
        if header.alg.starts_with("HS") {
            let Some(secret) = &self.inner.config.hs_secret else {
                return Err(Rejection::Algorithm(header.alg.clone()));
            };
            let alg = algorithm(&header.alg).ok_or(Rejection::Algorithm(header.alg.clone()))?;
            return Ok(Arc::new(Key {
                key: DecodingKey::from_secret(secret),
                alg,
            }));
        }
        let keys = self.inner.keys.load();
        let key = match &header.kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            None if keys.unnamed.len() == 1 => keys.unnamed.first().cloned(),
            None => None,
        }
        .ok_or(Rejection::UnknownKey)?;
        if algorithm(&header.alg) != Some(key.alg) {
            return Err(Rejection::Algorithm(header.alg.clone()));
        }
        Ok(key)
    }

    /// Fetches a JWKS URL again, at most once a minute; true if new keys were stored.
    async fn refetch(&self) -> bool {
        if !matches!(self.inner.config.jwks, JwksSource::Url(_)) {
            return false;
        }
        {
            let mut last = self
                .inner
                .last_fetch
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.inner.config.refetch_every) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match load(&self.inner.config).await {
            Ok(keys) => {
                self.inner.keys.store(Arc::new(keys));
                tracing::info!(target: "warden::gateway", "JWKS fetched again for an unknown kid");
                true
            }
            Err(e) => {
                tracing::warn!(target: "warden::gateway", error = %e, "JWKS fetch failed; the last good keys stay");
                false
            }
        }
    }

    fn check(&self, token: &str, key: &Key) -> Result<Verified, Rejection> {
        let config = &self.inner.config;
        let mut v = Validation::new(key.alg);
        v.leeway = config.leeway.as_secs();
        v.validate_nbf = true;
        v.set_issuer(&[&config.issuer]);
        v.set_audience(&[&config.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Value>(token, &key.key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => Rejection::Expired,
                K::ImmatureSignature => Rejection::NotYetValid,
                K::InvalidIssuer => Rejection::Issuer,
                K::InvalidAudience => Rejection::Audience,
                K::InvalidAlgorithm => Rejection::Algorithm(format!("{:?}", key.alg)),
                K::MissingRequiredClaim(c) | K::InvalidClaimFormat(c) => {
                    Rejection::Claim(c.clone())
                }
                K::InvalidSignature
                | K::InvalidEcdsaKey
                | K::InvalidEddsaKey
                | K::InvalidRsaKey(_)
                | K::InvalidKeyFormat => Rejection::Signature,
                _ => Rejection::Malformed,
            }
        })?;
        let claims = data.claims;
        let grant = match claims.get(&config.grant_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(Rejection::Claim(config.grant_claim.clone())),
        };
        let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok(Verified {
            grant,
            claims: Arc::new(claims),
            expires,
        })
    }

    /// A [`GrantExtractor`] for [`crate::PolicyLayer`]: the request's [`Grant`] extension if
    /// an earlier layer set one, else the grant (and claims, for `caller.` conditions) of a
    /// valid bearer JWT. A missing or invalid token leaves the caller anonymous
    /// (grant-scoped limits then deny, `caller.claims` conditions are false); to answer it
    /// with 401 instead, check [`Self::verify`] in an auth layer before this one, as the
    /// gateway does.
    pub fn grant_extractor(&self) -> JwtGrant {
        JwtGrant(self.clone())
    }

    fn bearer(&self, parts: &Parts) -> Option<Verified> {
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)?;
        self.verify_now(token).ok()
    }
}

/// [`JwtVerifier::grant_extractor`]: grants and claims from bearer JWTs.
#[derive(Debug, Clone)]
pub struct JwtGrant(JwtVerifier);

impl GrantExtractor for JwtGrant {
    fn grant(&self, parts: &Parts) -> Option<Grant> {
        self.identify(parts).0
    }

    fn identify(&self, parts: &Parts) -> (Option<Grant>, Option<Arc<Value>>) {
        if let Some(g) = parts.extensions.get::<Grant>() {
            return (Some(g.clone()), None);
        }
        match self.0.bearer(parts) {
            Some(v) => (Some(Grant::new(v.grant)), Some(v.claims)),
            None => (None, None),
        }
    }
}

fn now_secs() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// The parts of a token's header this module reads, parsed by hand so that `alg: none` and
/// unknown algorithms get their own answer.
struct Header {
    alg: String,
    kid: Option<String>,
}

fn header(token: &str) -> Result<Header, Rejection> {
    use base64::Engine;
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| Rejection::Malformed)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| Rejection::Malformed)?;
    let alg = v
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Rejection::Malformed)?
        .to_owned();
    if alg.eq_ignore_ascii_case("none") {
        return Err(Rejection::Unsigned);
    }
    if algorithm(&alg).is_none() {
        return Err(Rejection::Algorithm(alg));
    }
    let kid = v.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok(Header { alg, kid })
}

fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The one algorithm a JWK may verify: its `alg` if given, else the usual one for its type.
fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if let Some(alg) = jwk.common.key_algorithm {
        return Some(match alg {
            KeyAlgorithm::RS256 => Algorithm::RS256,
            KeyAlgorithm::RS384 => Algorithm::RS384,
            KeyAlgorithm::RS512 => Algorithm::RS512,
            KeyAlgorithm::PS256 => Algorithm::PS256,
            KeyAlgorithm::PS384 => Algorithm::PS384,
            KeyAlgorithm::PS512 => Algorithm::PS512,
            KeyAlgorithm::ES256 => Algorithm::ES256,
            KeyAlgorithm::ES384 => Algorithm::ES384,
            KeyAlgorithm::EdDSA => Algorithm::EdDSA,
            // A JWKS never legitimately carries symmetric or encryption keys for us.
            _ => return None,
        });
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        AlgorithmParameters::OctetKey(_) => None,
    }
}

/// Why a URL could not be fetched; a certificate problem in words.
fn unreachable(e: &(dyn std::error::Error + 'static)) -> String {
    #[cfg(feature = "tls")]
    if let Some(why) = crate::tls::explain(e) {
        return why;
    }
    format!("unreachable ({e})")
}

fn describe(source: &JwksSource) -> String {
    match source {
        JwksSource::File(p) => p.display().to_string(),
        JwksSource::Url(u) => u.to_string(),
    }
}

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reads and parses a JWKS; unusable keys (symmetric, unknown curves) are skipped.
async fn load(config: &JwtConfig) -> Result<Keys, crate::Error> {
    let source = &config.jwks;
    let fail = |why: String| crate::Error::Config(format!("JWKS {}: {why}", describe(source)));
    let (bytes, stamp) = match source {
        JwksSource::File(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| fail(e.to_string()))?;
            (bytes, stamp(path))
        }
        JwksSource::Url(uri) => (fetch(uri, config).await.map_err(fail)?, None),
    };
    let set: JwkSet =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("not a JWKS: {e}")))?;
    let mut keys = Keys {
        stamp,
        ..Keys::default()
    };
    for jwk in &set.keys {
        let (Some(alg), Ok(key)) = (jwk_algorithm(jwk), DecodingKey::from_jwk(jwk)) else {
            continue;
        };
        let key = Arc::new(Key { key, alg });
        match &jwk.common.key_id {
            Some(kid) => {
                keys.by_kid.insert(kid.clone(), key);
            }
            None => keys.unnamed.push(key),
        }
    }
    Ok(keys)
}

async fn fetch(uri: &http::Uri, config: &JwtConfig) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt;
    #[cfg(feature = "tls")]
    let client = crate::tls::https_client::<http_body_util::Empty<bytes::Bytes>>(&config.tls)
        .map_err(|e| e.to_string())?;
    #[cfg(not(feature = "tls"))]
    let client = {
        let _ = config;
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::Empty<bytes::Bytes>>()
    };
    let req = http::Request::get(uri.clone())
        .header(http::header::ACCEPT, "application/json")
        .body(http_body_util::Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| "no answer within 10 s".to_owned())?
        .map_err(|e| unreachable(&e))?;
    if !resp.status().is_success() {
        return Err(format!("answered {}", resp.status()));
    }
    let body = http_body_util::Limited::new(resp.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| format!("unreadable answer ({e})"))?;
    Ok(body.to_bytes().to_vec())
}
