//! Warden for Rust services: one dependency, one layer.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::routing::post;
//!
//! // `.pol` or `policy.json`; an invalid file is an error listing every problem with
//! // file:line:column.
//! let gate = warden::PolicyLayer::from_path("policy.pol")?;
//! let app: axum::Router = axum::Router::new()
//!     .route("/mcp", post(|| async { "an MCP server here" }))
//!     .layer(gate.clone());
//! // Optional: reload when the file changes. Counters of unchanged limits are kept; an
//! // invalid edit keeps the policy in force and logs why.
//! gate.watch()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! ## TLS
//!
//! The layer needs none: it sits behind whatever terminates TLS for the service. With
//! axum, [axum-server](https://docs.rs/axum-server) over rustls does it in one call:
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::routing::post;
//! use axum_server::tls_rustls::RustlsConfig;
//!
//! // The provider `warden serve` uses (post-quantum key exchange first).
//! let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
//! let gate = warden::PolicyLayer::from_path("policy.pol")?;
//! let app: axum::Router = axum::Router::new()
//!     .route("/mcp", post(|| async { "an MCP server here" }))
//!     .layer(gate);
//! let tls = RustlsConfig::from_pem_file("cert.pem", "key.pem").await?;
//! // A renewed certificate: `tls.reload_from_pem_file(...)`, from a timer or a file watcher;
//! // connections already open keep theirs.
//! axum_server::bind_rustls("0.0.0.0:8443".parse()?, tls)
//!     .serve(app.into_make_service())
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! For plain HTTP routes (each `METHOD /route` a tool) add `.http_mode()`. Everything the
//! tower crate offers stays reachable: [`tower_layer`] re-exports it, [`policy`] the model
//! and [`dsl`] the language.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

pub use warden_dsl as dsl;
pub use warden_policy as policy;
pub use warden_tower as tower_layer;
pub use warden_tower::{
    Answer, ApprovalQueue, Approver, Body, Grant, GrantExtractor, PolicyService, Webhook,
};

/// The README snippets (this crate's and the project's), compiled so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct CrateReadme;

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ProjectReadme;

/// Why a policy could not be loaded or watched.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is invalid; the text is every diagnostic, rendered with file:line:column.
    #[error("{0}")]
    Invalid(String),
    #[error("cannot start the policy watcher: {0}")]
    Watch(std::io::Error),
}

/// Reads and compiles a `.pol` or `.json` policy file.
pub fn load(path: &Path) -> Result<warden_policy::CompiledPolicy, Error> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let file = warden_dsl::load(&name, &text)
        .map_err(|e| Error::Invalid(e.render(&name, &text, false)))?;
    warden_policy::CompiledPolicy::new(&file.policy)
        .map_err(|e| Error::Invalid(format!("{name}: {e}")))
}

/// The gate: [`warden_tower::PolicyLayer`] loaded from a file, which it can watch.
/// Clones share the policy and its counters.
#[derive(Clone)]
pub struct PolicyLayer {
    inner: warden_tower::PolicyLayer,
    path: Arc<PathBuf>,
    watching: Arc<AtomicBool>,
}

impl std::fmt::Debug for PolicyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyLayer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PolicyLayer {
    /// Loads `path` (`.pol` or `.json`).
    pub fn from_path(path: impl AsRef<Path>) -> Result<PolicyLayer, Error> {
        let path = path.as_ref().to_owned();
        let compiled = load(&path)?;
        Ok(PolicyLayer {
            inner: warden_tower::PolicyLayer::new(compiled),
            path: Arc::new(path),
            watching: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Reloads the file whenever its contents change (checked every second, on a thread of
    /// its own: no runtime needed). A valid edit takes over, keeping the counters of limits
    /// whose name, quota and scope are unchanged; an invalid one is logged (`tracing`, warn)
    /// and the policy in force stays. Calling it again does nothing.
    pub fn watch(&self) -> Result<(), Error> {
        self.watch_every(Duration::from_secs(1))
    }

    /// [`PolicyLayer::watch`] with another period.
    pub fn watch_every(&self, every: Duration) -> Result<(), Error> {
        if self.watching.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let (path, handle) = (self.path.clone(), self.inner.handle());
        std::thread::Builder::new()
            .name("warden-policy-watch".into())
            .spawn(move || {
                let mut last = stamp(&path);
                loop {
                    std::thread::sleep(every);
                    let now = stamp(&path);
                    if now == last {
                        continue;
                    }
                    last = now;
                    match load(&path) {
                        Ok(compiled) => {
                            handle.swap(compiled);
                            tracing::info!(target: "warden::policy", path = %path.display(), "policy reloaded");
                        }
                        Err(e) => tracing::warn!(
                            target: "warden::policy",
                            path = %path.display(),
                            "new policy refused; the previous one stays in force:\n{e}"
                        ),
                    }
                }
            })
            .map_err(Error::Watch)?;
        Ok(())
    }

    /// Plain HTTP routes instead of MCP: each `METHOD /route` is a tool.
    pub fn http_mode(mut self) -> Self {
        self.inner = self.inner.http_mode();
        self
    }

    /// Who is calling (a bearer token, a header, a JWT).
    pub fn grant_extractor(mut self, grants: impl GrantExtractor) -> Self {
        self.inner = self.inner.grant_extractor(grants);
        self
    }

    /// Who answers `require approval` rules (a queue, a webhook).
    pub fn approver(mut self, approver: impl Approver) -> Self {
        self.inner = self.inner.approver(approver);
        self
    }

    /// The tower layer itself, for everything else it offers.
    pub fn into_inner(self) -> warden_tower::PolicyLayer {
        self.inner
    }
}

impl<S> tower::Layer<S> for PolicyLayer {
    type Service = PolicyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.inner.layer(inner)
    }
}

/// What changes when the file is edited: time, size and a digest of the contents (editors
/// that write twice within the clock's resolution still get noticed).
fn stamp(path: &Path) -> Option<(SystemTime, u64, String)> {
    let meta = std::fs::metadata(path).ok()?;
    let text = std::fs::read(path).ok()?;
    Some((
        meta.modified().ok()?,
        meta.len(),
        warden_tower::short_hash(&text),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_file_is_an_error_with_every_problem_located() {
        let dir = std::env::temp_dir().join(format!("warden-facade-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.pol");
        std::fs::write(&path, "version 1\ndefualt deny\n").unwrap();
        let e = PolicyLayer::from_path(&path).unwrap_err().to_string();
        assert!(e.contains("bad.pol:2:1"), "{e}");
        let missing = PolicyLayer::from_path(dir.join("nope.pol")).unwrap_err();
        assert!(matches!(missing, Error::Read { .. }), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
