//! `gantry-gate-conformance ADDR --name SITE --pki-dir DIR`: check a gate
//! against the gate contract, as gantryd would call it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gantry_gate_conformance::{Config, check};

/// Checks a gate against the gate contract (proto/gantry/v1/gate.proto),
/// calling it as gantryd does, and prints one row per named check: pass,
/// FAIL with what it saw, or skipped with why. Exits 0 when nothing failed,
/// 1 when a check failed, 2 when the gate could not be checked at all.
/// It makes partitions and jobs on the gate and cleans them up at the end.
#[derive(Debug, Parser)]
#[command(name = "gantry-gate-conformance", version)]
struct Args {
    /// The gate's address: host:port or https://host:port.
    address: String,
    /// The gate's site name; its certificate must name gate/<NAME>.
    #[arg(long)]
    name: String,
    /// The installation's PKI directory: the kit calls as gantryd with
    /// ca.pem, core.pem and core.key, and reads `installation`; it also
    /// tries scheduler.pem, when there, as an identity the gate must refuse.
    #[arg(long)]
    pki_dir: PathBuf,
    /// The flavor to make partitions of (default: the first available).
    #[arg(long)]
    flavor: Option<String>,
    /// The longest wait for a partition to be READY or a job to end, in
    /// seconds (raise it for a batch system that queues or boots).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// The walltime the walltime check gives its job, in seconds (Slurm
    /// counts whole minutes: give 60 and --timeout above 150).
    #[arg(long, default_value_t = 2)]
    walltime: u64,
    /// Run only the checks whose names start with this (repeatable), e.g.
    /// `--only job. --only watch.`.
    #[arg(long)]
    only: Vec<String>,
    /// A shell command that kills the gate with SIGKILL and starts it again
    /// on the same address, returning once it is started (the kit then
    /// waits for Describe). With it, restart.keeps_attempts checks that
    /// every attempt keeps its true state across the restart.
    #[arg(long, value_name = "CMD")]
    restart_cmd: Option<String>,
    /// Print one JSON object per check instead of the table.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = Config {
        address: args.address,
        name: args.name,
        pki_dir: args.pki_dir,
        flavor: args.flavor,
        timeout: Duration::from_secs(args.timeout),
        walltime: args.walltime,
        only: args.only,
        restart_cmd: args.restart_cmd,
    };
    match check(&config).await {
        Ok(report) => {
            print!(
                "{}",
                if args.json {
                    report.json_lines()
                } else {
                    report.table()
                }
            );
            if report.failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("gantry-gate-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}
