//! Figures as a table, as JSON lines, and as docs/benchmarks.md.

use std::fmt::Write as _;
use std::path::Path;

/// One measured figure, with the peer's figure from the same run when there is one.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The scenario, e.g. `submit`.
    pub scenario: String,
    /// What was measured, e.g. `jobs/s, 64 clients`.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// The target from the issue, for people (e.g. `>= 10000`).
    pub target: String,
    /// Its spread, when it is the median of several runs.
    pub spread: Option<Spread>,
    /// The peer measured beside it.
    pub peer: Option<String>,
    /// The peer's value.
    pub peer_value: Option<f64>,
    /// This machine's limit that bounds it, measured in the same run.
    pub limit: Option<String>,
    /// The limit's value.
    pub limit_value: Option<f64>,
}

/// The least and greatest of several runs (the figure is their median).
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// The least.
    pub min: f64,
    /// The greatest.
    pub max: f64,
    /// How many runs.
    pub runs: usize,
}

impl Spread {
    /// The median of `values` and their spread; `None` when there are none.
    pub fn median_of(values: &[f64]) -> Option<(f64, Spread)> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => return None,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        let spread = Spread {
            min: sorted[0],
            max: sorted[n - 1],
            runs: n,
        };
        Some((median, spread))
    }
}

/// `value / of`, when both are known.
fn ratio(value: f64, of: Option<f64>) -> Option<f64> {
    of.filter(|v| *v > 0.0 && v.is_finite() && value.is_finite())
        .map(|v| value / v)
}

/// Collects and prints figures.
pub struct Report {
    json: bool,
    figures: Vec<Figure>,
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

impl Report {
    /// A report printing as it goes.
    pub fn new(json: bool) -> Self {
        if !json {
            println!(
                "{:<10} {:<58} {:>10} {:<17} {:<9} {:<10} {:>9}  peer",
                "scenario", "metric", "value", "min-max (runs)", "unit", "target", "/ limit"
            );
        }
        Self {
            json,
            figures: Vec::new(),
        }
    }

    /// Record and print one figure.
    pub fn add(&mut self, figure: Figure) {
        if self.json {
            let opt_num = |v: Option<f64>| v.map(num).unwrap_or_else(|| "null".into());
            let opt_str = |v: Option<&str>| v.map(json_str).unwrap_or_else(|| "null".into());
            println!(
                "{{\"scenario\": {}, \"metric\": {}, \"value\": {}, \"min\": {}, \"max\": {}, \"runs\": {}, \"unit\": {}, \"limit\": {}, \"limit_value\": {}, \"ratio_to_limit\": {}, \"peer\": {}, \"peer_value\": {}}}",
                json_str(&figure.scenario),
                json_str(&figure.metric),
                num(figure.value),
                opt_num(figure.spread.map(|s| s.min)),
                opt_num(figure.spread.map(|s| s.max)),
                figure.spread.map_or(1, |s| s.runs),
                json_str(&figure.unit),
                opt_str(figure.limit.as_deref()),
                opt_num(figure.limit_value),
                opt_num(ratio(figure.value, figure.limit_value)),
                opt_str(figure.peer.as_deref()),
                opt_num(figure.peer_value),
            );
        } else {
            let peer = match (&figure.peer, figure.peer_value) {
                (Some(p), Some(v)) => format!("{p}: {v:.1}"),
                (Some(p), None) => format!("{p}: n/a"),
                _ => String::new(),
            };
            let spread = figure.spread.map_or(String::new(), |s| {
                format!("{:.0}-{:.0} ({})", s.min, s.max, s.runs)
            });
            let limit = ratio(figure.value, figure.limit_value)
                .map_or(String::new(), |r| format!("{r:.2}"));
            println!(
                "{:<10} {:<58} {:>10.1} {:<17} {:<9} {:<10} {:>9}  {}",
                figure.scenario,
                figure.metric,
                figure.value,
                spread,
                figure.unit,
                figure.target,
                limit,
                peer
            );
        }
        self.figures.push(figure);
    }

    /// Write the figures as a Markdown page with the machine, date and commit.
    pub fn write_markdown(&self, path: &Path, quick: bool) -> anyhow::Result<()> {
        let sh = |cmd: &str| {
            std::process::Command::new("sh")
                .args(["-c", cmd])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
                .unwrap_or_default()
        };
        let mut md = String::new();
        writeln!(md, "# Benchmarks\n")?;
        writeln!(
            md,
            "Written by `scripts/bench{}`; do not edit by hand.\n",
            if quick { " --quick" } else { "" }
        )?;
        writeln!(md, "- date: {}", sh("date -u +%Y-%m-%dT%H:%MZ"))?;
        writeln!(md, "- commit: {}", sh("git rev-parse --short HEAD"))?;
        writeln!(
            md,
            "- machine: {} cores, {} memory, {}",
            sh("nproc"),
            sh("free -h | awk '/Mem:/{print $2}'"),
            sh("uname -sr")
        )?;
        writeln!(
            md,
            "- cpu: {}\n",
            sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
        )?;
        writeln!(
            md,
            "Each figure with a spread is the median of that many runs, with the least and \
             the greatest. The `machine` rows are this machine's own limits, measured in the \
             same run; \"/ limit\" is a Gantry figure over the limit that bounds it.\n"
        )?;
        writeln!(
            md,
            "| scenario | metric | Gantry | min–max (runs) | unit | target | limit (same run) | Gantry / limit | peer (same run) | Gantry / peer |"
        )?;
        writeln!(md, "|---|---|---:|---|---|---|---|---:|---|---:|")?;
        let two = |r: Option<f64>| r.map_or(String::new(), |r| format!("{r:.2}"));
        for f in &self.figures {
            let peer = match (&f.peer, f.peer_value) {
                (Some(p), Some(v)) => format!("{p}: {v:.1}"),
                (Some(p), None) => format!("{p}: not measured"),
                _ => String::new(),
            };
            let limit = match (&f.limit, f.limit_value) {
                (Some(l), Some(v)) => format!("{l}: {v:.1}"),
                (Some(l), None) => format!("{l}: not measured"),
                _ => String::new(),
            };
            let spread = f.spread.map_or(String::new(), |s| {
                format!("{:.1}–{:.1} ({})", s.min, s.max, s.runs)
            });
            writeln!(
                md,
                "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
                f.scenario,
                f.metric,
                f.value,
                spread,
                f.unit,
                f.target,
                limit,
                two(ratio(f.value, f.limit_value)),
                peer,
                two(ratio(f.value, f.peer_value))
            )?;
        }
        std::fs::write(path, md)?;
        Ok(())
    }
}
