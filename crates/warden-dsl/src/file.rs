//! A policy file of either kind (`.pol` or `.json`, by extension), with every problem as a
//! located [`Diagnostic`] — what the CLI prints and the gateway logs on a bad reload.

use warden_policy::{Error as PolicyError, Policy, Problem, locate};

use crate::diagnostic::{Diagnostic, Error};
use crate::lower::SourceMap;

/// A loaded, validated policy and, for `.pol`, the map back to its source.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    pub policy: Policy,
    pub map: Option<SourceMap>,
}

/// Which language a file name says it is in.
pub fn is_pol(name: &str) -> Option<bool> {
    match std::path::Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
    {
        Some("pol") => Some(true),
        Some("json") => Some(false),
        _ => None,
    }
}

/// Parses and validates `text`, named `name` (its extension picks the language).
pub fn load(name: &str, text: &str) -> Result<PolicyFile, Error> {
    let Some(pol) = is_pol(name) else {
        return Err(Error {
            diagnostics: vec![Diagnostic::new(
                0..0,
                "unsupported file type (expected .pol or .json)",
            )],
        });
    };
    if pol {
        let c = crate::compile(text)?;
        return Ok(PolicyFile {
            policy: c.policy,
            map: Some(c.source_map),
        });
    }
    match Policy::from_json_str(text) {
        Ok(policy) => Ok(PolicyFile { policy, map: None }),
        Err(PolicyError::Syntax {
            line,
            column,
            message,
        }) => {
            let message = if text.trim().is_empty() {
                "the file is empty: a policy needs at least {\"version\": \"1\"}".to_string()
            } else {
                message
            };
            let at = locate::offset(text, line, column);
            Err(Error {
                diagnostics: vec![Diagnostic::new(at..at, format!("invalid JSON: {message}"))],
            })
        }
        Err(PolicyError::Invalid { problems }) => Err(Error {
            diagnostics: problems.iter().map(|p| json_diagnostic(text, p)).collect(),
        }),
    }
}

/// A problem stated on the model, at the place its JSON Pointer names in `text`.
pub fn json_diagnostic(text: &str, p: &Problem) -> Diagnostic {
    let span = locate::span(text, &p.pointer, p.target)
        .map(|r| r.start..r.end.min(r.start + 200).max(r.start))
        .unwrap_or(0..0);
    let at = if p.pointer.is_empty() {
        "(document)"
    } else {
        &p.pointer
    };
    let mut d = Diagnostic::new(span, format!("{at}: {}", p.message));
    d.help = p.help.clone();
    d
}

impl PolicyFile {
    /// A problem found later (lint, lowering to hosted) at its place in the source.
    pub fn diagnostic(&self, text: &str, p: &Problem) -> Diagnostic {
        match &self.map {
            Some(map) => crate::problem_diagnostic(p, map, text),
            None => json_diagnostic(text, p),
        }
    }
}
