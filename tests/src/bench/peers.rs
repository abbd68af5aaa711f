//! The peers measured beside Gantry in the same run: the machine's own
//! process rate (`xargs`), HyperQueue's LocalCluster, and `sbatch` on a
//! throwaway single-node Slurm (`scripts/slurm`). Each returns `None` when
//! the peer cannot run here; the report then says "not measured".

use std::time::Instant;

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

/// `sbatch` against a single-node Slurm started for the purpose.
pub fn sbatch(args: &Args, n: usize) -> Option<Sbatch> {
    let script = args.repo.join("scripts/slurm");
    let dir = std::env::temp_dir().join(format!("gantry-bench-slurm-{}", std::process::id()));
    let dir_arg = dir.display().to_string();
    let started = std::process::Command::new(&script)
        .args(["start", &dir_arg])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let conf = String::from_utf8_lossy(&started.stdout).trim().to_string();
    let out = std::process::Command::new(args.repo.join("scripts/peers/sbatch_bench.sh"))
        .arg(n.to_string())
        .env("SLURM_CONF", &conf)
        .stderr(std::process::Stdio::null())
        .output();
    let _ = std::process::Command::new(&script)
        .args(["stop", &dir_arg])
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.ok().filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{'))?;
    Some(Sbatch {
        jobs: n,
        submit_per_s: n as f64 / json_number(line, "submit_s")?,
        complete_per_s: n as f64 / json_number(line, "total_s")?,
    })
}

/// `xargs -P<cores> /bin/true`: the machine's own limit.
pub fn xargs(args: &Args, n: usize, cores: u32) -> Option<f64> {
    if args.no_peers {
        return None;
    }
    let start = Instant::now();
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("seq {n} | xargs -P{cores} -I{{}} /bin/true")])
        .status()
        .ok()?;
    status
        .success()
        .then(|| n as f64 / start.elapsed().as_secs_f64())
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
