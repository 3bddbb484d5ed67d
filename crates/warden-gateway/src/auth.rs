//! Grants: who may call through the gateway. Tokens are kept as SHA-256 digests only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::Error;

/// Token digests → grant names; `None` means `--no-auth` (everyone is `anonymous`).
#[derive(Debug, Clone, Default)]
pub struct Grants {
    // `Arc`: each admitted call puts its grant on the request without copying the name.
    by_digest: HashMap<[u8; 32], Arc<str>>,
}

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
        // Hashed every time: the raw token is never kept, not even to skip the hash (which
        // the CPU's SHA extensions make cheap; under valgrind it looked expensive).
        self.by_digest.get(&digest(token)).cloned()
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
    fn tokens_are_found_by_their_digest_and_wrong_ones_never() {
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
    }
}
