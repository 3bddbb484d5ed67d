//! Grants: who may call through the gateway. Tokens are kept as SHA-256 digests only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

use sha2::{Digest, Sha256};

use crate::Error;

/// Token digests → grant names; `None` means `--no-auth` (everyone is `anonymous`).
#[derive(Debug, Clone, Default)]
pub struct Grants {
    // `Arc`: each admitted call puts its grant on the request without copying the name.
    by_digest: HashMap<[u8; 32], Arc<str>>,
    known: Known,
}

/// Tokens already found in `by_digest`, so that a caller's every call after its first
/// costs a hash lookup rather than a SHA-256 (which was a sixteenth of a call's
/// instructions). Only tokens that matched a digest get in, so it holds at most one entry
/// per configured grant; keys compare in constant time.
#[derive(Clone, Default)]
struct Known(Arc<Mutex<HashMap<Token, Arc<str>>>>);

impl std::fmt::Debug for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Known(..)")
    }
}

struct Token(Box<[u8]>);

impl std::hash::Hash for Token {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Equal tokens are equal bytes, so hashing the bytes agrees with `eq`.
        self.0.hash(h);
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        // A wrong token whose hash lands on a known one's slot must not learn, from the
        // time the comparison takes, how much of it is right.
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Token {}

pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Grants {
    /// `NAME=TOKEN`, as given on the command line.
    pub fn add_token(&mut self, spec: &str) -> Result<(), Error> {
        let (name, token) = spec
            .split_once('=')
            .filter(|(n, t)| !n.trim().is_empty() && !t.is_empty())
            .ok_or_else(|| {
                Error::Config(format!(
                    "--grant-token wants NAME=TOKEN, got {:?}",
                    redact(spec)
                ))
            })?;
        self.by_digest.insert(digest(token), name.trim().into());
        Ok(())
    }

    /// A grants file: one `NAME SHA256-HEX` per line (`#` comments), as printed by
    /// `warden grant NAME`.
    pub fn add_file(&mut self, path: &Path) -> Result<(), Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = || {
                Error::Config(format!(
                    "{}:{}: expected `NAME SHA256-HEX`",
                    path.display(),
                    i + 1
                ))
            };
            let mut parts = line.split_whitespace();
            let (Some(name), Some(hash), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad());
            };
            let hash = hash.strip_prefix("sha256:").unwrap_or(hash);
            if hash.len() != 64 {
                return Err(bad());
            }
            let mut d = [0u8; 32];
            for (j, byte) in d.iter_mut().enumerate() {
                *byte = u8::from_str_radix(hash.get(2 * j..2 * j + 2).ok_or_else(bad)?, 16)
                    .map_err(|_| bad())?;
            }
            self.by_digest.insert(d, name.into());
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The grant of an `Authorization: Bearer …` header value, if the token is known.
    pub fn lookup(&self, authorization: Option<&str>) -> Option<Arc<str>> {
        self.lookup_token(warden_tower::bearer_token(authorization?)?)
    }

    /// The grant of a bare token (no `Bearer ` prefix).
    pub fn lookup_token(&self, token: &str) -> Option<Arc<str>> {
        let key = Token(token.as_bytes().into());
        let mut known = self.known.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(grant) = known.get(&key) {
            return Some(Arc::clone(grant));
        }
        let grant = Arc::clone(self.by_digest.get(&digest(token))?);
        known.insert(key, Arc::clone(&grant));
        Some(grant)
    }
}

fn redact(spec: &str) -> String {
    match spec.split_once('=') {
        Some((n, _)) => format!("{n}=…"),
        None => "…".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_again_from_memory_and_a_wrong_one_never_is() {
        let mut g = Grants::default();
        g.add_token("alice=alice-token").unwrap();
        g.add_token("bob=bob-token").unwrap();
        for _ in 0..2 {
            assert_eq!(g.lookup_token("alice-token").as_deref(), Some("alice"));
            assert_eq!(g.lookup(Some("Bearer bob-token")).as_deref(), Some("bob"));
            for wrong in [
                "alice-token ",
                "alice-toke",
                "alice-tokeN",
                "",
                "bob-token\0",
            ] {
                assert_eq!(g.lookup_token(wrong), None, "{wrong:?}");
            }
        }
        // Only tokens that matched a digest are remembered.
        let known = g.known.0.lock().unwrap();
        assert_eq!(known.len(), 2);
        // A copy shares what it learnt.
        drop(known);
        assert_eq!(
            g.clone().lookup_token("alice-token").as_deref(),
            Some("alice")
        );
    }
}
