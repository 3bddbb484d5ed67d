//! Reading policy and catalog files, with their text kept for diagnostics.

use std::path::{Path, PathBuf};

use warden_dsl::SourceMap;
use warden_policy::{Catalog, Error, Policy};

use crate::error::CliError;
use crate::report;

/// A file's text, and for `.pol` the map from JSON Pointers back into it.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    pub map: Option<SourceMap>,
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
            map: None,
        })
    }

    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// `file:line:column` where the JSON Pointer `pointer` was written, if it was.
    pub fn location(&self, pointer: &str) -> Option<String> {
        if !pointer.starts_with('/') {
            return None; // `(hidden)`, `(default deny)`: not a place in the file
        }
        let start = match &self.map {
            Some(map) => map.span(pointer)?.start,
            None => {
                warden_policy::locate::span(&self.text, pointer, warden_policy::Target::Value)?
                    .start
            }
        };
        let (line, col) = warden_policy::locate::line_col(&self.text, start);
        Some(format!("{}:{line}:{col}", self.name()))
    }

    /// Prints `problems` located in this file and turns them into the command's error.
    pub fn invalid(&self, problems: &warden_policy::Problems) -> CliError {
        for p in problems.iter() {
            report::problem(self, p, false);
        }
        CliError::Invalid {
            path: self.path.clone(),
            count: problems.len(),
        }
    }

    /// A JSON parse failure, printed at its place.
    fn syntax(&self, line: usize, column: usize, message: String) -> CliError {
        report::json_syntax(self, line, column, &message);
        CliError::Invalid {
            path: self.path.clone(),
            count: 1,
        }
    }
}

/// Loads and validates a policy file, printing every problem it has.
pub fn load(path: &Path) -> Result<(Source, Policy), CliError> {
    let is_pol = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => false,
        Some("pol") => true,
        _ => {
            return Err(CliError::FileType {
                path: path.to_owned(),
            });
        }
    };
    let mut src = Source::read(path)?;
    if is_pol {
        return match warden_dsl::compile(&src.text) {
            Ok(c) => {
                src.map = Some(c.source_map);
                Ok((src, c.policy))
            }
            Err(e) => {
                eprintln!("{}", e.render(&src.name(), &src.text, report::color()));
                Err(CliError::Invalid {
                    path: path.to_owned(),
                    count: e.diagnostics.len(),
                })
            }
        };
    }
    match Policy::from_json_str(&src.text) {
        Ok(policy) => Ok((src, policy)),
        Err(Error::Syntax { line, column, .. }) if src.text.trim().is_empty() => Err(src.syntax(
            line,
            column,
            "the file is empty: a policy needs at least {\"version\": \"1\"}".into(),
        )),
        Err(Error::Syntax {
            line,
            column,
            message,
        }) => Err(src.syntax(line, column, message)),
        Err(Error::Invalid { problems }) => Err(src.invalid(&problems)),
    }
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
        }) => Err(src.syntax(line, column, message)),
        Err(Error::Invalid { problems }) => Err(src.invalid(&problems)),
    }
}
