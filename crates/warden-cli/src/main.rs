//! `warden`: check, explain and (soon) compile, format and serve MCP tool policies.

mod cli;
mod commands;
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
    let cli = cli::Cli::parse();
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
