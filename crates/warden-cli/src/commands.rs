//! One function per verb.

use std::io::Write;
use std::process::ExitCode;

use warden_policy::{Call, CompiledPolicy};

use crate::cli::{Cli, Command, Format};
use crate::error::CliError;
use crate::source;

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Check { files } => check(&files),
        Command::Explain {
            file,
            tool,
            args,
            grant,
            session,
            ip,
            format,
        } => explain(&file, &tool, &args, &grant, &session, ip, format),
        Command::Compile { file, output } => compile(&file, output.as_deref()),
        Command::Fmt { files, check } => fmt(&files, check),
        Command::Decompile { file } => {
            let (_, policy) = source::load(&file)?;
            std::io::stdout().write_all(warden_dsl::decompile(&policy).as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Schema => {
            std::io::stdout().write_all(warden_policy::json_schema().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(files: &[std::path::PathBuf]) -> Result<ExitCode, CliError> {
    let mut failed = 0;
    for file in files {
        match source::load(file).and_then(|(src, policy)| {
            CompiledPolicy::new(&policy).map_err(|_| CliError::Invalid {
                path: src.path.clone(),
                count: 1,
            })?;
            Ok(policy)
        }) {
            Ok(policy) => {
                let tools = policy.tools.as_ref().map_or(0, |t| t.len());
                println!(
                    "{}: ok ({tools} tool entries, default {})",
                    file.display(),
                    policy.default_action()
                );
            }
            Err(e) => {
                failed += 1;
                crate::report::error(&e);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn explain(
    file: &std::path::Path,
    tool: &str,
    args: &str,
    grant: &str,
    session: &str,
    ip: std::net::IpAddr,
    format: Format,
) -> Result<ExitCode, CliError> {
    let args =
        warden_policy::strict_json::from_str(args).map_err(|e| CliError::Args(e.to_string()))?;
    if !args.is_object() {
        return Err(CliError::Args(
            "the arguments must be a JSON object, e.g. '{\"region\": \"eu-west\"}'".into(),
        ));
    }
    let (src, policy) = source::load(file)?;
    let compiled = CompiledPolicy::new(&policy).map_err(|_| CliError::Invalid {
        path: src.path.clone(),
        count: 1,
    })?;
    let call = Call::new(tool)
        .args(&args)
        .grant(grant)
        .session(session)
        .ip(ip);
    let explanation = compiled.explain(&call);
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => write!(out, "{explanation}")?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &explanation).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn compile(file: &std::path::Path, output: Option<&std::path::Path>) -> Result<ExitCode, CliError> {
    let (_, policy) = source::load(file)?;
    let mut json =
        serde_json::to_string_pretty(&policy.to_value()).map_err(std::io::Error::from)?;
    json.push('\n');
    match output {
        Some(out) => std::fs::write(out, json).map_err(|source| CliError::Write {
            path: out.to_owned(),
            source,
        })?,
        None => std::io::stdout().write_all(json.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn fmt(files: &[std::path::PathBuf], check: bool) -> Result<ExitCode, CliError> {
    let mut changed = 0;
    let mut failed = 0;
    for file in files {
        if file.extension().and_then(|e| e.to_str()) != Some("pol") {
            crate::report::error(&CliError::FileType { path: file.clone() });
            failed += 1;
            continue;
        }
        let src = source::Source::read(file)?;
        let formatted = match warden_dsl::format(&src.text) {
            Ok(f) => f,
            Err(e) => {
                eprintln!(
                    "{}",
                    e.render(&src.name(), &src.text, crate::report::color())
                );
                failed += 1;
                continue;
            }
        };
        if formatted == src.text {
            continue;
        }
        changed += 1;
        if check {
            println!("{}", file.display());
        } else {
            std::fs::write(file, formatted).map_err(|source| CliError::Write {
                path: file.clone(),
                source,
            })?;
            eprintln!("formatted {}", file.display());
        }
    }
    Ok(if failed > 0 || (check && changed > 0) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
