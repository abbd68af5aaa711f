//! `gantry-supervisor --dir WORK_DIR`: starts and watches the local gate's
//! jobs; the gate starts it (see `gantry_gate_local::supervisor`). Prints
//! `ready` on stdout once it accepts connections, exits once no gate is
//! connected and no job runs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Start, watch and end the jobs of the local gate whose work directory is
/// `--dir`; it outlives the gate, so a restarted gate loses nothing.
#[derive(Debug, Parser)]
#[command(name = "gantry-supervisor", version)]
struct Cli {
    /// The gate's work directory.
    #[arg(long)]
    dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match gantry_gate_local::supervisor::run(&cli.dir, std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            // Not eprintln!: it panics when the log's disk is full.
            let _ = writeln!(std::io::stderr(), "gantry-supervisor: {msg}");
            ExitCode::FAILURE
        }
    }
}
