//! The benchmark scenarios of issue 8, each against the real gantryd,
//! gantry-sched and gantry-gate-local over mTLS on loopback (and `cloud`,
//! issue 23's, against gantry-gate-aws and gantry-agent on moto), with this
//! machine's own limits and the peers measured in the same run, and the
//! headline figures as the median of several runs. Timings are reported,
//! never asserted.

mod arrays;
mod cloud;
mod limits;
mod peers;
mod report;
mod scenarios;
mod sched_pass;
mod schedule;
mod slurm;
mod spawner;

use std::path::PathBuf;

pub use report::{Figure, Report, Spread};

/// Flags of `gantry-bench`.
#[derive(clap::Parser, Debug, Clone)]
#[command(about = "Gantry's benchmark scenarios over the real binaries")]
pub struct Args {
    /// Every scenario at a reduced size (a few minutes in all).
    #[arg(long)]
    pub quick: bool,
    /// Print one JSON object per figure instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only these scenarios (submit, array, e2e, latency, queue, schedule, logs, slurm, cloud, spawner); default all.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Write the results as Markdown to this file (scripts/bench passes
    /// docs/benchmarks.md); with --only, update the rows of those scenarios
    /// in it.
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// Measure Gantry only, not the peers (for quick comparisons while
    /// working; the report then shows no ratios).
    #[arg(long)]
    pub no_peers: bool,
    /// Runs of each headline figure (submit, e2e); the figure is their
    /// median, shown with the least and the greatest.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// A slow disk for the SQLite submit runs: gantryd runs under strace,
    /// which delays each of its fsync/fdatasync calls by this many
    /// microseconds (group commit should keep many clients' rate nearly
    /// where it was; one client pays every delay).
    #[arg(long, value_name = "MICROSECONDS")]
    pub slow_fsync_us: Option<u64>,
    /// The repository root, for the peer scripts.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
}

impl Args {
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }

    fn size(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }
}

/// Run the scenarios the flags ask for.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut report = Report::new(args.json);
    // What bounds the figures on this machine today, measured first.
    let limits = limits::measure(&args, &mut report).await?;
    // The sbatch peer, once for the scenarios that show it.
    let sbatch = if !args.no_peers && (args.wants("submit") || args.wants("e2e")) {
        peers::sbatch(&args, args.size(200, 20))
    } else {
        None
    };
    if args.wants("submit") {
        scenarios::submit(&args, &mut report, sbatch, &limits).await?;
    }
    if args.wants("array") {
        arrays::arrays(&args, &mut report).await?;
    }
    if args.wants("e2e") {
        scenarios::end_to_end(&args, &mut report, sbatch, &limits).await?;
    }
    if args.wants("latency") {
        scenarios::latency(&args, &mut report).await?;
    }
    if args.wants("queue") {
        scenarios::queue(&args, &mut report).await?;
        sched_pass::scheduler_pass(&args, &mut report).await?;
    }
    if args.wants("schedule") {
        schedule::schedule(&args, &mut report).await?;
    }
    if args.wants("logs") {
        scenarios::logs(&args, &mut report).await?;
    }
    if args.wants("slurm") {
        slurm::slurm(&args, &mut report).await?;
    }
    if args.wants("cloud") {
        cloud::cloud(&args, &mut report).await?;
    }
    if args.wants("spawner") {
        spawner::spawner(&args, &mut report).await?;
    }
    if let Some(path) = &args.write {
        report.write_markdown(path, args.quick, &args.only)?;
    }
    Ok(())
}
