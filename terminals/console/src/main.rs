//! `gantry`: the command-line console of Gantry.

use std::process::ExitCode;

use clap::Parser;
use gantry::cli::Cli;
use gantry::output;

/// Print an error as one `gantry: error:` line; extra lines (a log tail) follow it.
fn print_error(error: &anyhow::Error) {
    let text = format!("{error:#}");
    let mut lines = text.lines();
    eprintln!("gantry: error: {}", lines.next().unwrap_or("unknown error"));
    for line in lines {
        eprintln!("{line}");
    }
}

fn main() -> ExitCode {
    gantry_proto::tls::install_crypto_provider();
    gantry_proto::telemetry::init_logs("warn");
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            print_error(&error.into());
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(gantry::cmd::run(cli)) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        // Its reader went away (`gantry logs 7 | head`): end quietly.
        Err(error) if output::is_broken_pipe(&error) => ExitCode::from(output::BROKEN_PIPE_EXIT),
        Err(error) => {
            print_error(&error);
            ExitCode::FAILURE
        }
    }
}
