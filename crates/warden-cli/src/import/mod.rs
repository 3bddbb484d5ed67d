//! `warden import`: policies written for other products, as `.pol`.

mod intercept;
mod yaml;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use intercept::Flavor;

use crate::error::CliError;
use crate::source::Source;

/// Imports each file; `out` is the output file (one input) or directory (several).
pub fn run(
    flavor: Flavor,
    files: &[PathBuf],
    out: Option<&Path>,
    lossy: bool,
) -> Result<ExitCode, CliError> {
    if files.len() > 1 && out.is_some_and(|o| !o.is_dir() && o.extension().is_some()) {
        return Err(CliError::Usage(
            "with several files, -o names a directory (each FILE.yaml becomes FILE.pol there)"
                .into(),
        ));
    }
    if files.len() > 1 && out.is_none() {
        return Err(CliError::Usage(
            "with several files, give -o DIR (each FILE.yaml becomes FILE.pol there)".into(),
        ));
    }
    let mut failed = 0usize;
    for file in files {
        let src = Source::read(file)?;
        let imported = intercept::translate(&src.text, flavor, lossy);
        let errors = imported.problems.iter().filter(|d| !d.warning).count();
        for d in &imported.problems {
            crate::report::emit(&src, d);
        }
        if errors > 0 {
            eprintln!("{}: {errors} problem(s); nothing written", file.display());
            failed += 1;
            continue;
        }
        // What was written must be a valid policy: anything else is a bug of the importer.
        if let Err(e) = warden_dsl::compile(&imported.text) {
            eprintln!(
                "{}: the imported policy does not compile (a bug in `warden import`, please report it): {e}",
                file.display()
            );
            failed += 1;
            continue;
        }
        match (out, files.len()) {
            (None, _) => print!("{}", imported.text),
            (Some(o), 1) if !o.is_dir() => write(o, &imported.text)?,
            (Some(dir), _) => {
                std::fs::create_dir_all(dir).map_err(|source| CliError::Write {
                    path: dir.to_owned(),
                    source,
                })?;
                let name = file
                    .file_stem()
                    .map_or_else(|| "policy".into(), |s| s.to_owned());
                let target = dir.join(name).with_extension("pol");
                write(&target, &imported.text)?;
                eprintln!("{} -> {}", file.display(), target.display());
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn write(path: &Path, text: &str) -> Result<(), CliError> {
    std::fs::write(path, text).map_err(|source| CliError::Write {
        path: path.to_owned(),
        source,
    })
}
