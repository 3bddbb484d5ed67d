//! Who is calling: the `grant` scope of limits.

use std::sync::Arc;

use http::request::Parts;
use sha2::{Digest, Sha256};

/// A caller's grant (credential name). Put one in the request extensions from your own auth
/// layer and [`DefaultGrant`] uses it as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Grant(pub Arc<str>);

impl Grant {
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Grant(name.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The claims of the caller's validated token, set as a request extension beside its
/// [`Grant`] by whatever checked the token (the gateway, [`crate::jwt`], or the app's own
/// auth layer); `caller.claims.*` conditions read them.
#[derive(Debug, Clone)]
pub struct Claims(pub std::sync::Arc<serde_json::Value>);

/// Finds the grant of a request. `None` means anonymous: grant-scoped limits then deny.
pub trait GrantExtractor: Send + Sync + 'static {
    fn grant(&self, parts: &Parts) -> Option<Grant>;

    /// The grant and the caller's token claims (for `caller.claims.*` conditions and
    /// `per claim` limits) together, so an extractor that checks a token does it once.
    /// Most extractors have no claims.
    fn identify(
        &self,
        parts: &Parts,
    ) -> (Option<Grant>, Option<std::sync::Arc<serde_json::Value>>) {
        (self.grant(parts), None)
    }
}

impl<F> GrantExtractor for F
where
    F: Fn(&Parts) -> Option<Grant> + Send + Sync + 'static,
{
    fn grant(&self, parts: &Parts) -> Option<Grant> {
        self(parts)
    }
}

/// A [`Grant`] extension set by an earlier layer, else the bearer token, hashed.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultGrant;

impl GrantExtractor for DefaultGrant {
    fn grant(&self, parts: &Parts) -> Option<Grant> {
        parts
            .extensions
            .get::<Grant>()
            .cloned()
            .or_else(|| BearerGrant.grant(parts))
    }
}

/// The bearer token, hashed: `token:` and 16 hex digits of its SHA-256. The raw token never
/// reaches logs or counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct BearerGrant;

impl GrantExtractor for BearerGrant {
    fn grant(&self, parts: &Parts) -> Option<Grant> {
        let value = parts
            .headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let token = bearer_token(value)?;
        let mut hex = [0u8; 16];
        let hex = hex_digest(token.trim().as_bytes(), &mut hex);
        // Built in place: this runs on every call.
        let mut name = [0u8; 6 + 16];
        name[..6].copy_from_slice(b"token:");
        name[6..].copy_from_slice(hex.as_bytes());
        Some(Grant::new(std::str::from_utf8(&name).ok()?))
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive), if
/// there is a non-empty one.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The value of a header, as sent (for gateways that already authenticate callers).
#[derive(Debug, Clone)]
pub struct HeaderGrant(pub http::HeaderName);

impl GrantExtractor for HeaderGrant {
    fn grant(&self, parts: &Parts) -> Option<Grant> {
        let v = parts.headers.get(&self.0)?.to_str().ok()?.trim();
        (!v.is_empty()).then(|| Grant::new(v))
    }
}

/// 16 hex digits of SHA-256: enough to tell grants apart, useless for recovering a token.
pub fn short_hash(bytes: &[u8]) -> String {
    let mut out = [0u8; 16];
    hex_digest(bytes, &mut out).to_owned()
}

/// The first `out.len() / 2` bytes of the SHA-256 of `bytes`, in hex, written into `out`.
fn hex_digest<'o>(bytes: &[u8], out: &'o mut [u8]) -> &'o str {
    let digest = Sha256::digest(bytes);
    let n = (out.len() / 2).min(digest.len());
    base16ct::lower::encode_str(&digest[..n], out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = http::Request::builder();
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn bearer_tokens_are_hashed_and_extensions_win() {
        let g = DefaultGrant
            .grant(&parts(Some("Bearer s3cret")))
            .map(|g| g.0.to_string());
        assert_eq!(g.as_deref().map(str::len), Some(22));
        assert!(!g.unwrap_or_default().contains("s3cret"));
        assert_eq!(DefaultGrant.grant(&parts(Some("Basic abc"))), None);
        assert_eq!(DefaultGrant.grant(&parts(None)), None);
        let mut p = parts(Some("Bearer s3cret"));
        p.extensions.insert(Grant::new("alice"));
        assert_eq!(DefaultGrant.grant(&p), Some(Grant::new("alice")));
    }
}
