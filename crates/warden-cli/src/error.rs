use std::path::PathBuf;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: unsupported file type (expected .pol or .json)", path.display())]
    FileType { path: PathBuf },
    /// Problems were already printed; this only carries the count.
    #[error("{count} problem(s) in {}", path.display())]
    Invalid { path: PathBuf, count: usize },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--args: {0}")]
    Args(String),
    #[error("{0}")]
    Gateway(#[from] warden_gateway::Error),
    #[error("{0}")]
    Usage(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        1
    }
}
