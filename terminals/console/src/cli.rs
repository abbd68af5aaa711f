//! The command line: global flags and the subcommands.

use clap::{Parser, Subcommand};

use crate::cmd;

/// gantry — send compute jobs to this machine, Slurm or the cloud through gantryd.
#[derive(Parser, Debug)]
#[command(
    name = "gantry",
    version,
    propagate_version = true,
    after_help = "\
Getting started:
  gantry dev                     # in one terminal: a local gantryd, scheduler and gate
  gantry submit -- echo hello    # in another: run a job
  gantry ls                      # see your jobs
  gantry logs 1                  # its output
  gantry wait 1                  # exit with the job's exit status

gantry finds gantryd from GANTRY_ADDR + GANTRY_CA + GANTRY_CERT + GANTRY_KEY, else
the profile file named by GANTRY_PROFILE, else the profile `gantry dev` writes."
)]
pub struct Cli {
    /// Print JSON instead of tables and text (for scripts)
    #[arg(long, global = true)]
    pub json: bool,
    /// The command to run
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Submit a job: a command after `--`, or a script file
    Submit(Box<cmd::submit::SubmitArgs>),
    /// List your jobs, newest first
    Ls(cmd::ls::LsArgs),
    /// Show every field of a job and its history of events
    Show(cmd::show::ShowArgs),
    /// Cancel jobs
    Cancel(cmd::cancel::CancelArgs),
    /// Keep a queued job from being scheduled until it is released
    Hold(cmd::hold::HoldArgs),
    /// Let a held job be scheduled
    Release(cmd::release::ReleaseArgs),
    /// Print a job's stdout (or stderr) as raw bytes
    Logs(cmd::logs::LogsArgs),
    /// Wait for a job to end and exit with its exit status
    Wait(cmd::wait::WaitArgs),
    /// Follow job events as they happen (a line each, or JSON lines)
    Watch(cmd::watch::WatchArgs),
    /// Reach a port on a running job's machine from a local port (like ssh -L)
    Forward(cmd::forward::ForwardArgs),
    /// Download an ended job's output files
    Outputs(cmd::outputs::OutputsArgs),
    /// List the sites jobs can run on, with their health and flavors
    Sites(cmd::sites::SitesArgs),
    /// Create an installation's certificates
    Pki(cmd::pki::PkiArgs),
    /// Run gantryd, the scheduler and a local gate on this machine for development
    Dev(cmd::dev::DevArgs),
}
