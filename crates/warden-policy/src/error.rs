use crate::problem::Problems;

/// Everything that can go wrong turning text into a [`crate::CompiledPolicy`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not JSON (or repeats a key, which JSON parsers disagree on).
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// The JSON is not a valid policy; every problem found is listed.
    #[error("{problems}")]
    Invalid { problems: Problems },
}

impl From<Problems> for Error {
    fn from(problems: Problems) -> Self {
        Error::Invalid { problems }
    }
}
