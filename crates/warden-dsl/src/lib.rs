//! The `.pol` policy language.
//!
//! ```
//! let text = r#"
//! default deny
//! tool create_personal_access_token {
//!   limit 30 per minute per grant
//! }
//! "#;
//! let compiled = warden_dsl::compile(text).unwrap();
//! assert_eq!(compiled.policy.to_value(), serde_json::json!({
//!     "version": "1",
//!     "default": "deny",
//!     "tools": {"create_personal_access_token": {"limits": [
//!         {"counter": "create_personal_access_token_rate", "window": "minute", "max": 30, "scope": "grant"}
//!     ]}}
//! }));
//! // And back: JSON → canonical .pol.
//! assert_eq!(warden_dsl::decompile(&compiled.policy),
//!     "version 1\ndefault deny\n\ntool create_personal_access_token {\n  limit 30 per minute per grant\n}\n");
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

// pest without its `std` feature (see Cargo.toml) generates code that names `alloc`.
extern crate alloc;

pub mod ast;
mod comments;
mod decompile;
mod diagnostic;
mod file;
mod format;
mod lower;
mod parser;
mod testfile;

pub use decompile::{decompile, entry_name, tool_name};
pub use diagnostic::{Diagnostic, Error};
pub use file::{PolicyFile, is_pol, json_diagnostic, load};
pub use format::format;
pub use lower::{SourceMap, default_counter, default_counter_for};
pub use parser::{MAX_SOURCE_BYTES, parse, parse_with_pest};
pub use testfile::{Expect, Step, TestCase, TestFile, parse_tests};

use warden_policy::{Policy, Problem};

/// A `.pol` file compiled to the policy model, with the map back to its source.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub policy: Policy,
    pub source_map: SourceMap,
}

/// Parses, lowers and validates `.pol` text. Every problem comes back located.
pub fn compile(text: &str) -> Result<Compiled, Error> {
    let ast = parser::parse(text).map_err(|diagnostics| Error { diagnostics })?;
    let (policy, source_map) =
        lower::lower(ast, text).map_err(|diagnostics| Error { diagnostics })?;
    let problems = warden_policy::validate(&policy);
    if !problems.is_empty() {
        let diagnostics = problems
            .iter()
            .map(|p| problem_diagnostic(p, &source_map, text))
            .collect();
        return Err(Error { diagnostics });
    }
    Ok(Compiled { policy, source_map })
}

/// A problem stated on the model (validation, lint, lowering to hosted) at the `.pol`
/// span it came from.
pub fn problem_diagnostic(p: &Problem, map: &SourceMap, text: &str) -> Diagnostic {
    let span = map.span(&p.pointer).unwrap_or(0..text.len().min(1));
    let mut d = Diagnostic::new(span, p.message.clone());
    d.help = p.help.clone();
    d
}
