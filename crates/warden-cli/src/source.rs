//! Reading policy and catalog files, with their text kept for diagnostics.

use std::path::{Path, PathBuf};

use warden_dsl::{Diagnostic, PolicyFile};
use warden_policy::{Catalog, Error, Policy, Problems};

use crate::error::CliError;
use crate::report;

/// A file's text, and for a policy the loaded file (with its `.pol` source map).
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    pub file: Option<PolicyFile>,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, CliError> {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Source {
            path: path.to_owned(),
            text,
            file: None,
        })
    }

    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn failed(&self, diagnostics: &[Diagnostic]) -> CliError {
        for d in diagnostics {
            report::emit(self, d);
        }
        CliError::Invalid {
            path: self.path.clone(),
            count: diagnostics.len(),
        }
    }

    /// Prints `problems` located in this file and turns them into the command's error.
    pub fn invalid(&self, problems: &Problems) -> CliError {
        let diagnostics: Vec<Diagnostic> = problems.iter().map(|p| self.diagnostic(p)).collect();
        self.failed(&diagnostics)
    }

    /// A problem stated on the model, at its place in this file.
    pub fn diagnostic(&self, p: &warden_policy::Problem) -> Diagnostic {
        match &self.file {
            Some(f) => f.diagnostic(&self.text, p),
            None => warden_dsl::json_diagnostic(&self.text, p),
        }
    }

    /// `file:line:column` where the JSON Pointer `pointer` was written, if it was.
    pub fn location(&self, pointer: &str) -> Option<String> {
        if !pointer.starts_with('/') {
            return None; // `(hidden)`, `(default deny)`: not a place in the file
        }
        let start = match self.file.as_ref().and_then(|f| f.map.as_ref()) {
            Some(map) => map.span(pointer)?.start,
            None => {
                warden_policy::locate::span(&self.text, pointer, warden_policy::Target::Value)?
                    .start
            }
        };
        let (line, col) = warden_policy::locate::line_col(&self.text, start);
        Some(format!("{}:{line}:{col}", self.name()))
    }
}

/// Loads and validates a policy file, printing every problem it has.
pub fn load(path: &Path) -> Result<(Source, Policy), CliError> {
    if warden_dsl::is_pol(&path.display().to_string()).is_none() {
        return Err(CliError::FileType {
            path: path.to_owned(),
        });
    }
    let mut src = Source::read(path)?;
    match warden_dsl::load(&src.name(), &src.text) {
        Ok(file) => {
            let policy = file.policy.clone();
            src.file = Some(file);
            Ok((src, policy))
        }
        Err(e) => Err(src.failed(&e.diagnostics)),
    }
}

/// [`load`], then [`compiled`]: a policy file ready to decide, every problem printed.
pub fn load_compiled(
    path: &Path,
) -> Result<(Source, Policy, warden_policy::CompiledPolicy), CliError> {
    let (src, policy) = load(path)?;
    let compiled = compiled(&src, &policy)?;
    Ok((src, policy, compiled))
}

/// Reads a server's `tools/list` answer (`--tools`).
pub fn catalog(path: &Path) -> Result<Catalog, CliError> {
    let src = Source::read(path)?;
    match Catalog::from_json_str(&src.text) {
        Ok(c) => Ok(c),
        Err(Error::Syntax {
            line,
            column,
            message,
        }) => {
            let at = warden_policy::locate::offset(&src.text, line, column);
            Err(src.failed(&[Diagnostic::new(at..at, format!("invalid JSON: {message}"))]))
        }
        Err(Error::Invalid { problems }) => Err(src.invalid(&problems)),
    }
}

/// A loaded policy compiled for deciding. `load` found its problems already, so this only
/// fails on what validation alone cannot see; such a problem is reported in this file.
pub fn compiled(
    src: &Source,
    policy: &warden_policy::Policy,
) -> Result<warden_policy::CompiledPolicy, CliError> {
    warden_policy::CompiledPolicy::new(policy).map_err(|e| match e {
        warden_policy::Error::Invalid { problems } => src.invalid(&problems),
        warden_policy::Error::Syntax { .. } => CliError::Invalid {
            path: src.path.clone(),
            count: 1,
        },
    })
}
