//! Diagnostics on stderr: miette reports with the file, line, column and source line.

use std::io::IsTerminal;

use warden_dsl::Diagnostic;
use warden_policy::Problem;

use crate::error::CliError;
use crate::source::Source;

static CHOICE: std::sync::OnceLock<crate::cli::ColorChoice> = std::sync::OnceLock::new();

/// `--color`, set once at start.
pub fn set_color(choice: crate::cli::ColorChoice) {
    let _ = CHOICE.set(choice);
}

/// Colour only for a person at a terminal (or when asked with `--color always`); NO_COLOR
/// turns `auto` off.
pub fn color() -> bool {
    match CHOICE
        .get()
        .copied()
        .unwrap_or(crate::cli::ColorChoice::Auto)
    {
        crate::cli::ColorChoice::Always => true,
        crate::cli::ColorChoice::Never => false,
        crate::cli::ColorChoice::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    }
}

pub fn emit(src: &Source, d: &Diagnostic) {
    eprintln!("{}", d.render(&src.name(), &src.text, color()));
}

/// A warning about a valid policy, at its place in the file.
pub fn warning(src: &Source, p: &Problem) {
    emit(src, &src.diagnostic(p).warning());
}

/// A failure that is not a located problem (already-printed problems end in a summary).
pub fn error(e: &CliError) {
    eprintln!("error: {e}");
}

/// For a policy under `default deny` that says nothing of resources or prompts (written,
/// say, before Warden ruled them): they are denied now, and how to keep them open. `None`
/// when the policy rules them or allows by default.
pub fn beyond_tools_note(
    src: &Source,
    policy: &warden_policy::Policy,
    catalog: Option<&warden_policy::Catalog>,
) -> Option<String> {
    if policy.rules_beyond_tools() || policy.default_action() != warden_policy::DefaultAction::Deny
    {
        return None;
    }
    // With a saved scan, the server's own resources and prompts this now denies, by name.
    let named = |what: &str, names: &[String]| -> String {
        const SHOWN: usize = 8;
        if names.is_empty() {
            return String::new();
        }
        let mut list: Vec<&str> = names.iter().take(SHOWN).map(String::as_str).collect();
        let more = names.len().saturating_sub(SHOWN);
        let mut text = format!("\n  the server's {what} it denies ({}): {}", names.len(), {
            list.dedup();
            list.join(", ")
        });
        if more > 0 {
            text.push_str(&format!(" and {more} more"));
        }
        text
    };
    let listed = catalog.map_or(String::new(), |c| {
        named("resources", &c.resources) + &named("prompts", &c.prompts)
    });
    let keep = match warden_dsl::is_pol(&src.name()) {
        Some(true) => "`default allow resources, prompts, methods`",
        _ => {
            "`\"defaults\": {\"resources\": \"allow\", \"prompts\": \"allow\", \"methods\": \"allow\"}`"
        }
    };
    Some(format!(
        "note: {}: the policy says nothing of resources, prompts or other methods, so its default (deny) denies them too (resources/read, prompts/get, and methods the gate does not know){listed}\n  to keep them open as before, add {keep}",
        src.name()
    ))
}
