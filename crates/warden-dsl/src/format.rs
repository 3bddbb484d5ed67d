//! `warden fmt`: canonical layout with comments kept, proven not to change the policy.

use crate::comments::Comments;
use crate::diagnostic::{Diagnostic, Error};

/// Formats `.pol` text. The output is re-parsed and must lower to the same policy, or
/// nothing is returned: a formatter that changes meaning must never write.
pub fn format(text: &str) -> Result<String, Error> {
    let compiled = crate::compile(text)?;
    let mut comments = Comments::collect(text, compiled.source_map.ast());
    let out = crate::decompile::print(&compiled.policy, &mut comments);
    match crate::compile(&out) {
        Ok(again) if again.policy == compiled.policy => Ok(out),
        _ => Err(Error {
            diagnostics: vec![Diagnostic::new(0..0, "internal error: the formatted text would not mean the same policy; the file was left unchanged")
                .with_help("please report this file to the Warden developers")],
        }),
    }
}
