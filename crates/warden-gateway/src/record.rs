//! `--record FILE`: every decided `tools/call`, arguments included, as JSON lines, for
//! `warden replay` to run against another policy. The file holds argument values (the audit
//! log never does), so it is created readable by its owner only (0600) and recording is
//! off unless asked for.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use warden_tower::{RecordedCall, Recorder};

use crate::Error;

/// Clones write to the same file (a gateway of several servers records them all in one).
#[derive(Clone)]
pub struct FileRecorder {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    out: Mutex<BufWriter<File>>,
    /// One warning if writing fails, not one per call.
    failed: AtomicBool,
}

impl FileRecorder {
    pub fn open(path: &Path) -> Result<FileRecorder, Error> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|e| {
            Error::Io(format!(
                "cannot open the record file {}: {e}",
                path.display()
            ))
        })?;
        Ok(FileRecorder {
            inner: std::sync::Arc::new(Inner {
                out: Mutex::new(BufWriter::new(file)),
                failed: AtomicBool::new(false),
            }),
        })
    }
}

impl Recorder for FileRecorder {
    fn record(&self, call: &RecordedCall) {
        let mut out = self.inner.out.lock().unwrap_or_else(|e| e.into_inner());
        // A whole line or nothing a reader would mistake for one; flushed per call so a
        // crash loses at most the call in flight.
        let written = serde_json::to_writer(&mut *out, call)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            if !self.inner.failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(target: "warden::gateway", error = %e, "cannot write the record file; calls are no longer recorded");
            }
        }
    }
}
