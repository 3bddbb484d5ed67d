//! The policy file the gateway serves, reloaded when it changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use warden_policy::CompiledPolicy;
use warden_tower::PolicyHandle;

/// Reads and compiles a `.pol` or `.json` policy; the error is every diagnostic, rendered
/// with file:line:column.
pub fn load(path: &Path) -> Result<(CompiledPolicy, String), String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let file = warden_dsl::load(&name, &text).map_err(|e| e.render(&name, &text, false))?;
    let compiled = CompiledPolicy::new(&file.policy).map_err(|e| format!("{name}: {e}"))?;
    Ok((compiled, text))
}

/// The file behind the running policy, and its text (for the admin endpoint).
#[derive(Clone)]
pub struct Live {
    pub path: PathBuf,
    pub source: Arc<RwLock<String>>,
    pub handle: PolicyHandle,
    pub status: Arc<RwLock<LoadStatus>>,
}

/// When the policy in force was loaded, and the last edit that was refused (if it came after).
#[derive(Debug, Clone)]
pub struct LoadStatus {
    pub loaded_at: SystemTime,
    /// When, and every diagnostic; cleared by the next good load.
    pub refused: Option<(SystemTime, String)>,
}

impl Live {
    pub fn new(path: PathBuf, text: String, handle: PolicyHandle) -> Live {
        Live {
            path,
            source: Arc::new(RwLock::new(text)),
            handle,
            status: Arc::new(RwLock::new(LoadStatus {
                loaded_at: SystemTime::now(),
                refused: None,
            })),
        }
    }

    pub fn status(&self) -> LoadStatus {
        self.status
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Recompiles the file; on success the new policy takes over (counters of unchanged
    /// limits kept), on failure the old one stays and the diagnostics are logged.
    pub fn reload(&self, why: &str) -> bool {
        match load(&self.path) {
            Ok((compiled, text)) => {
                self.handle.swap(compiled);
                if let Ok(mut s) = self.source.write() {
                    *s = text;
                }
                if let Ok(mut st) = self.status.write() {
                    *st = LoadStatus {
                        loaded_at: SystemTime::now(),
                        refused: None,
                    };
                }
                tracing::info!(target: "warden::gateway", path = %self.path.display(), why, "policy reloaded");
                true
            }
            Err(diagnostics) => {
                if let Ok(mut st) = self.status.write() {
                    st.refused = Some((SystemTime::now(), diagnostics.clone()));
                }
                tracing::warn!(
                    target: "warden::gateway",
                    path = %self.path.display(),
                    why,
                    "new policy refused; the previous one stays in force:\n{diagnostics}"
                );
                metrics::counter!("warden_policy_reload_errors_total").increment(1);
                false
            }
        }
    }

    pub fn source(&self) -> String {
        self.source.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Reloads on SIGHUP and whenever the file's contents change (checked every `every`).
    pub fn watch(self, every: Duration) {
        let polled = self.clone();
        tokio::spawn(async move {
            let mut last = stamp(&polled.path);
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let now = stamp(&polled.path);
                if now != last {
                    last = now;
                    polled.reload("file changed");
                }
            }
        });
        #[cfg(unix)]
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                self.reload("SIGHUP");
            }
        });
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
