//! A Gantry gate that runs jobs on a Slurm cluster through Slurm's own
//! commands (`sinfo`, `sbatch --parsable`, `squeue --json`, `scontrol show
//! job`, `scancel`), run on the gate's host or on a login node over SSH
//! (one multiplexed connection for the commands and, over SFTP, the files).
//!
//! Each Slurm partition is a flavor; a Gantry partition of it is a share of
//! that partition, READY at once (Slurm queues what does not fit). Each
//! attempt is one batch job started in `work-dir/attempts/<id>/work` with its
//! output in that directory, so the work directory must be on a file system
//! the compute nodes share. The Slurm job carries `--comment=gantry:<attempt>`
//! and its id is kept in `attempt.json`: a restarted gate finds every job
//! again and submits nothing twice.

mod commands;
mod provider;
mod records;
pub mod script;
mod states;

pub use provider::{SlurmConfig, SlurmProvider};
