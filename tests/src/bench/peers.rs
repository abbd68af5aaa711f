//! The peers measured beside Gantry in the same run: the machine's own
//! process rate (`xargs`), HyperQueue's LocalCluster, and `sbatch` on a
//! throwaway single-node Slurm (`scripts/slurm`). Each returns `None` when
//! the peer cannot run here; the report then says "not measured".

use super::Args;

/// What `sbatch` did: submissions per second (one process per job, in a
/// row) and trivial jobs completed per second.
#[derive(Debug, Clone, Copy)]
pub struct Sbatch {
    /// How many jobs.
    pub jobs: usize,
    /// Submissions per second.
    pub submit_per_s: f64,
    /// Jobs from first submit to all completed, per second.
    pub complete_per_s: f64,
}

/// The number after `"key": ` in a one-line JSON object.
fn json_number(line: &str, key: &str) -> Option<f64> {
    line.split(&format!("\"{key}\": "))
        .nth(1)?
        .split([',', '}'])
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A throwaway single-node Slurm (`scripts/slurm`), stopped when dropped.
pub struct SlurmCluster {
    script: std::path::PathBuf,
    dir: std::path::PathBuf,
    /// Its slurm.conf.
    pub conf: std::path::PathBuf,
}

impl SlurmCluster {
    /// slurmctld's log (its lines carry millisecond timestamps).
    pub fn ctld_log(&self) -> std::path::PathBuf {
        self.dir.join("slurmctld.log")
    }

    /// Returns just after one of Slurm's scheduling passes: one `true` job
    /// by sbatch, seen COMPLETED. Slurm starts batch jobs only on its passes
    /// (about one a second here), so a burst begun at a random moment gains
    /// or loses up to a pass, two jobs' worth, by luck; begun just after
    /// one, a burst by sbatch and one through Gantry meet Slurm's cycle at
    /// the same phase.
    pub fn after_a_pass(&self) -> anyhow::Result<()> {
        let run = |program: &str, args: &[&str]| -> anyhow::Result<String> {
            let out = std::process::Command::new(program)
                .args(args)
                .env("SLURM_CONF", &self.conf)
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "{program} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let submitted = run(
            "sbatch",
            &[
                "--parsable",
                "--wrap",
                "true",
                "-o",
                "/dev/null",
                "-J",
                "bench-pass",
            ],
        )?;
        let id = submitted.split(';').next().unwrap_or_default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match run("squeue", &["-h", "-t", "all", "-j", id, "-o", "%T"])?.as_str() {
                "COMPLETED" => return Ok(()),
                "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" => {}
                other => anyhow::bail!("Slurm job {id} (a pass marker) ended {other:?}"),
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "Slurm job {id} (a pass marker) did not complete within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Start one; `None` when Slurm cannot run here.
    pub fn start(args: &Args, name: &str) -> Option<Self> {
        let script = args.repo.join("scripts/slurm");
        let dir = std::env::temp_dir().join(format!("gantry-bench-{name}-{}", std::process::id()));
        let started = std::process::Command::new(&script)
            .arg("start")
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let conf = String::from_utf8_lossy(&started.stdout).trim().into();
        Some(Self { script, dir, conf })
    }
}

impl Drop for SlurmCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `sbatch` against a single-node Slurm started for the purpose.
pub fn sbatch(args: &Args, n: usize) -> Option<Sbatch> {
    let cluster = SlurmCluster::start(args, "slurm")?;
    sbatch_on(args, &cluster, n)
}

/// `n` trivial `sbatch` jobs on `cluster`, one submission after another.
pub fn sbatch_on(args: &Args, cluster: &SlurmCluster, n: usize) -> Option<Sbatch> {
    let out = std::process::Command::new(args.repo.join("scripts/peers/sbatch_bench.sh"))
        .arg(n.to_string())
        .env("SLURM_CONF", &cluster.conf)
        // Slurm here runs about two such jobs a second.
        .env("SBATCH_BENCH_TIMEOUT", (120 + n).to_string())
        // As often as the bench's Slurm gate polls (tests/src/lib.rs).
        .env("SBATCH_BENCH_POLL", "0.25")
        .stderr(std::process::Stdio::null())
        .output();
    let out = out.ok().filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{'))?;
    Some(Sbatch {
        jobs: n,
        submit_per_s: n as f64 / json_number(line, "submit_s")?,
        complete_per_s: n as f64 / json_number(line, "total_s")?,
    })
}

/// HyperQueue's LocalCluster with the same count and cores.
pub fn hyperqueue(args: &Args, n: usize, cores: u32) -> Option<f64> {
    if args.no_peers {
        return None;
    }
    let script = args.repo.join("scripts/peers/hyperqueue_bench.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .args([n.to_string(), cores.to_string()])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{'))?;
    Some(n as f64 / json_number(line, "total_s")?)
}
