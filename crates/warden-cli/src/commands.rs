//! One function per verb.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use warden_policy::{Call, Kind};

use crate::cli::{Cli, Command, Format, Target};
use crate::error::CliError;
use crate::report;
use crate::source;

pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Completions { shell } => {
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            let shell = match shell {
                crate::cli::Shell::Bash => clap_complete::Shell::Bash,
                crate::cli::Shell::Zsh => clap_complete::Shell::Zsh,
                crate::cli::Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut cmd, "warden", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            files,
            tools,
            config,
        } => check(&files, tools.as_deref(), config.as_deref()),
        Command::Explain {
            file,
            tool,
            resource,
            prompt,
            args,
            grant,
            session,
            ip,
            claims,
            format,
        } => {
            // clap's group makes exactly one of them present.
            let called = match (tool, resource, prompt) {
                (Some(t), _, _) => (Kind::Tool, t),
                (_, Some(r), _) => (Kind::Resource, r),
                (_, _, Some(p)) => (Kind::Prompt, p),
                (None, None, None) => {
                    return Err(CliError::Usage(
                        "name what is called: --tool, --resource or --prompt".into(),
                    ));
                }
            };
            explain(
                &file,
                (called.0, &called.1),
                &args,
                &Caller {
                    grant: &grant,
                    session: &session,
                    ip,
                    claims: claims.as_deref(),
                },
                format,
            )
        }
        Command::Compile {
            file,
            output,
            target,
            tools,
        } => compile(&file, output.as_deref(), target, tools.as_deref()),
        Command::Fmt { files, check } => fmt(&files, check),
        Command::Diff {
            old,
            new,
            tools,
            fail_on_change,
        } => crate::diff::run(&old, &new, tools.as_deref(), fail_on_change),
        Command::Replay {
            policy,
            files,
            fail_on_change,
        } => crate::replay::run(&policy, &files, fail_on_change),
        Command::Test {
            files,
            format,
            coverage,
            tools,
        } => crate::policy_tests::run(&files, format, coverage, tools.as_deref()),
        Command::Decompile { file } => {
            let (_, policy) = source::load(&file)?;
            std::io::stdout().write_all(warden_dsl::decompile(&policy).as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Import {
            from,
            files,
            output,
            lossy,
        } => {
            let flavor = match from {
                crate::cli::ImportFrom::Intercept => crate::import::Flavor::Intercept,
                crate::cli::ImportFrom::Policylayer => crate::import::Flavor::PolicyLayer,
            };
            crate::import::run(flavor, &files, output.as_deref(), lossy)
        }
        Command::Serve(args) => crate::gateway::serve(*args),
        Command::Scan {
            config: Some(config),
            headers,
            upstream_tls,
            ..
        } => crate::gateway::scan_config(&config, headers, &upstream_tls),
        Command::Scan {
            upstream,
            headers,
            upstream_tls,
            output,
            save_tools,
            command,
            config: None,
        } => crate::gateway::scan(
            upstream,
            headers,
            &upstream_tls,
            output,
            save_tools,
            command,
        ),
        Command::Stdio(args) => crate::gateway::stdio(*args),
        Command::Schema => {
            std::io::stdout().write_all(warden_policy::json_schema().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(
    files: &[PathBuf],
    tools: Option<&Path>,
    config: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let catalog = tools.map(source::catalog).transpose()?;
    let mut failed = 0;
    // A warden.toml is checked, then each policy it names like a file given here (with
    // --config, against the tools its server lists now).
    let mut policies: Vec<(PathBuf, Option<warden_policy::Catalog>)> = Vec::new();
    let configs = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "toml"))
        .map(|f| (f.as_path(), false))
        .chain(config.map(|c| (c, true)));
    for file in files
        .iter()
        .filter(|f| f.extension().is_none_or(|e| e != "toml"))
    {
        policies.push((file.clone(), catalog.clone()));
    }
    for (file, live) in configs {
        {
            match crate::config::load(file, crate::config::Purpose::Check) {
                Ok((config, text)) => {
                    let name = file.display().to_string();
                    for d in &config.warnings {
                        eprintln!("{}", d.render(&name, &text, report::color()));
                    }
                    println!(
                        "{}: ok ({} server(s): {})",
                        file.display(),
                        config.servers.len(),
                        config
                            .servers
                            .iter()
                            .map(|s| format!("{} with {}", s.name, s.policy.display()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    if let Some(p) = config.gateway_policy {
                        println!("{}: gateway-wide policy {}", file.display(), p.display());
                        // Above every server: no one server's tool list to check it against.
                        policies.push((p, None));
                    }
                    for server in config.servers {
                        if !live {
                            policies.push((server.policy, catalog.clone()));
                            continue;
                        }
                        match crate::gateway::server_catalog(&server) {
                            Ok(c) => {
                                eprintln!(
                                    "servers.{}: {} tools listed by {}",
                                    server.name,
                                    c.tools.len(),
                                    server.url
                                );
                                policies.push((server.policy, Some(c)));
                            }
                            Err(e) => {
                                failed += 1;
                                eprintln!("error: servers.{}: {e}", server.name);
                            }
                        }
                    }
                }
                Err((problems, text)) => {
                    let name = file.display().to_string();
                    for d in &problems {
                        eprintln!("{}", d.render(&name, &text, report::color()));
                    }
                    failed += 1;
                }
            }
        }
    }
    for (file, catalog) in &policies {
        let checked = source::load_compiled(file).map(|(src, policy, compiled)| {
            let warnings = warden_policy::lint(&compiled, catalog.as_ref());
            for w in warnings.iter() {
                report::warning(&src, w);
            }
            // Hosted FAQ forms are fine; say what they are read as.
            let notes = match src.file.as_ref().and_then(|f| f.map.as_ref()) {
                None => serde_json::from_str::<serde_json::Value>(&src.text)
                    .map(|doc| warden_policy::faq_notes(&doc))
                    .unwrap_or_default(),
                Some(_) => Vec::new(),
            };
            for n in &notes {
                report::warning(&src, n);
            }
            if let Some(note) = report::beyond_tools_note(&src, &policy, catalog.as_ref()) {
                eprintln!("{note}");
            }
            (policy, warnings.len(), notes.len())
        });
        match checked {
            Ok((policy, warnings, notes)) => {
                let tools = policy.tools.as_ref().map_or(0, |t| t.len());
                let warnings = match warnings {
                    0 => String::new(),
                    1 => ", 1 warning".into(),
                    n => format!(", {n} warnings"),
                };
                let notes = match notes {
                    0 => String::new(),
                    n => format!(", {n} hosted form(s) read as canonical"),
                };
                println!(
                    "{}: ok ({tools} tool entries, default {}{warnings}{notes})",
                    file.display(),
                    policy.default_action()
                );
            }
            Err(e) => {
                failed += 1;
                report::error(&e);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Who `explain` pretends is calling.
struct Caller<'a> {
    grant: &'a str,
    session: &'a str,
    ip: std::net::IpAddr,
    claims: Option<&'a str>,
}

/// The policy of the server a `<server>_<name>` belongs to in a warden.toml (the longest
/// server name that fits), and the name the server knows. A resource (a URI) is not renamed:
/// it needs `<server>_` in front here too.
fn server_of<'n>(
    config: &Path,
    kind: Kind,
    name: &'n str,
) -> Result<(PathBuf, &'n str, Option<PathBuf>), CliError> {
    let (config_file, _) = crate::config::load_reported(config, crate::config::Purpose::Check)?;
    let gateway = config_file.gateway_policy.clone();
    let found = config_file
        .servers
        .iter()
        .filter_map(|s| {
            let rest = name.strip_prefix(s.name.as_str())?.strip_prefix('_')?;
            Some((s, rest))
        })
        .max_by_key(|(s, _)| s.name.len());
    match found {
        Some((s, bare)) => {
            eprintln!(
                "server {} ({}), {} `{bare}`",
                s.name,
                s.policy.display(),
                kind.noun()
            );
            Ok((s.policy.clone(), bare, gateway))
        }
        None => Err(CliError::Usage(format!(
            "{name:?} names no server of {}: write <server>_<name>, the servers being {}",
            config.display(),
            config_file
                .servers
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn explain(
    file: &Path,
    (kind, name): (Kind, &str),
    args: &str,
    caller: &Caller<'_>,
    format: Format,
) -> Result<ExitCode, CliError> {
    let args =
        warden_policy::strict_json::from_str(args).map_err(|e| CliError::Args(e.to_string()))?;
    if !args.is_object() {
        return Err(CliError::Args(
            "the arguments must be a JSON object, e.g. '{\"region\": \"eu-west\"}'".into(),
        ));
    }
    let args = crate::simulate::args_of(kind, name, Some(args)).unwrap_or_default();
    let claims = match caller.claims {
        None => None,
        Some(text) => {
            let v = warden_policy::strict_json::from_str(text)
                .map_err(|e| CliError::Args(format!("--claims: {e}")))?;
            if !v.is_object() {
                return Err(CliError::Args(
                    "--claims must be a JSON object, e.g. '{\"team\": \"ops\"}'".into(),
                ));
            }
            Some(v)
        }
    };
    // A warden.toml: the name as the aggregated `/mcp` shows it (`<server>_<name>`) picks
    // the server, whose policy decides the name the server knows; a gateway-wide policy
    // decides after it.
    let (file, name, gateway) = match file.extension().is_some_and(|e| e == "toml") {
        false => (file.to_owned(), name, None),
        true => server_of(file, kind, name)?,
    };
    let mut call = Call::of(kind, name)
        .args(&args)
        .grant(caller.grant)
        .session(caller.session)
        .ip(caller.ip);
    call.claims = claims.as_ref();
    let explained = |file: &Path| -> Result<warden_policy::Explanation, CliError> {
        let (src, _, compiled) = source::load_compiled(file)?;
        let mut explanation = compiled.explain(&call);
        explanation.source = src.location(&explanation.rule);
        Ok(explanation)
    };
    let explanation = explained(&file)?;
    // What the server's policy refuses never reaches the gateway-wide one.
    let asked = gateway.filter(|_| explanation.decision != warden_policy::Outcome::Deny);
    let above = asked.as_deref().map(explained).transpose()?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => {
            write!(
                out,
                "{}",
                crate::simulate::explanation_text(kind, &explanation)
            )?;
            if let (Some(path), Some(above)) = (&asked, &above) {
                writeln!(out, "\nthen the gateway-wide policy, {}:", path.display())?;
                write!(out, "{}", crate::simulate::explanation_text(kind, above))?;
            }
        }
        Format::Json => {
            #[derive(serde::Serialize)]
            struct Explained<'a> {
                kind: Kind,
                #[serde(flatten)]
                explanation: &'a warden_policy::Explanation,
                /// The gateway-wide policy's, when it is asked (both must allow).
                #[serde(skip_serializing_if = "Option::is_none")]
                gateway: Option<&'a warden_policy::Explanation>,
            }
            let doc = Explained {
                kind,
                explanation: &explanation,
                gateway: above.as_ref(),
            };
            serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn compile(
    file: &Path,
    output: Option<&Path>,
    target: Target,
    tools: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let catalog = tools.map(source::catalog).transpose()?;
    let (src, policy) = source::load(file)?;
    let doc = match target {
        Target::Warden => policy.to_value(),
        Target::Policylayer => warden_policy::to_policylayer_json(&policy, catalog.as_ref())
            .map_err(|problems| src.invalid(&problems))?,
    };
    let mut json = serde_json::to_string_pretty(&doc).map_err(std::io::Error::from)?;
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

fn fmt(files: &[PathBuf], check: bool) -> Result<ExitCode, CliError> {
    let mut changed = 0;
    let mut failed = 0;
    for file in files {
        if file.extension().and_then(|e| e.to_str()) != Some("pol") {
            report::error(&CliError::FileType { path: file.clone() });
            failed += 1;
            continue;
        }
        let src = source::Source::read(file)?;
        let formatted = match warden_dsl::format(&src.text) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{}", e.render(&src.name(), &src.text, report::color()));
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
