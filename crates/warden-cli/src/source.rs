//! Reading a policy file into the model, with its text kept for diagnostics.

use std::path::{Path, PathBuf};

use warden_policy::{Error, Policy, Problem};

use crate::error::CliError;
use crate::report;

/// A policy file's text.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
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
        })
    }

    pub fn name(&self) -> String {
        self.path.display().to_string()
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
    let src = Source::read(path)?;
    if is_pol {
        return match warden_dsl::compile(&src.text) {
            Ok(c) => Ok((src, c.policy)),
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
        Err(Error::Syntax {
            line,
            column,
            message,
        }) => {
            let message = if src.text.trim().is_empty() {
                "the file is empty: a policy needs at least {\"version\": \"1\"}".to_string()
            } else {
                message
            };
            report::json_syntax(&src, line, column, &message);
            Err(CliError::Invalid {
                path: path.to_owned(),
                count: 1,
            })
        }
        Err(Error::Invalid { problems }) => {
            let count = problems.len();
            for p in problems.iter() {
                report::json_problem(&src, p);
            }
            Err(CliError::Invalid {
                path: path.to_owned(),
                count,
            })
        }
    }
}

/// A problem's place in the file, for callers that only want the location.
#[allow(dead_code)]
pub fn locate(src: &Source, p: &Problem) -> Option<(usize, usize)> {
    warden_policy::locate::span(&src.text, &p.pointer, p.target)
        .map(|r| warden_policy::locate::line_col(&src.text, r.start))
}
