//! `warden`: check, explain and (soon) compile, format and serve MCP tool policies.

mod cli;
mod commands;
mod config;
mod diff;
mod error;
mod gateway;
mod import;
mod policy_tests;
mod replay;
mod report;
mod simulate;
mod source;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // `serve --config FILE`: the file's flags first, the command line's after them (and
    // winning).
    let argv = match config::expand_serve(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            report::error(&e);
            return ExitCode::from(e.exit_code());
        }
    };
    let cli = cli::Cli::parse_from(argv);
    report::set_color(cli.color);
    match commands::run(cli) {
        Ok(code) => code,
        // A reader that stopped early (`warden compile x.pol | head`) is not an error.
        Err(error::CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            report::error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}
