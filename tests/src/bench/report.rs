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
    /// The peer measured beside it.
    pub peer: Option<String>,
    /// The peer's value.
    pub peer_value: Option<f64>,
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
                "{:<10} {:<44} {:>14} {:<8} {:<12} {:>22}",
                "scenario", "metric", "value", "unit", "target", "peer"
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
            println!(
                "{{\"scenario\": {}, \"metric\": {}, \"value\": {}, \"unit\": {}, \"peer\": {}, \"peer_value\": {}}}",
                json_str(&figure.scenario),
                json_str(&figure.metric),
                num(figure.value),
                json_str(&figure.unit),
                figure
                    .peer
                    .as_deref()
                    .map(json_str)
                    .unwrap_or_else(|| "null".into()),
                figure.peer_value.map(num).unwrap_or_else(|| "null".into()),
            );
        } else {
            let peer = match (&figure.peer, figure.peer_value) {
                (Some(p), Some(v)) => format!("{p}: {v:.1}"),
                (Some(p), None) => format!("{p}: n/a"),
                _ => String::new(),
            };
            println!(
                "{:<10} {:<44} {:>14.1} {:<8} {:<12} {:>22}",
                figure.scenario, figure.metric, figure.value, figure.unit, figure.target, peer
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
            "| scenario | metric | Gantry | unit | target | peer (same run) | Gantry / peer |"
        )?;
        writeln!(md, "|---|---|---:|---|---|---|---:|")?;
        for f in &self.figures {
            let (peer, ratio) = match (&f.peer, f.peer_value) {
                (Some(p), Some(v)) if v > 0.0 => {
                    (format!("{p}: {v:.1}"), format!("{:.2}", f.value / v))
                }
                (Some(p), _) => (format!("{p}: not measured"), String::new()),
                _ => (String::new(), String::new()),
            };
            writeln!(
                md,
                "| {} | {} | {:.1} | {} | {} | {} | {} |",
                f.scenario, f.metric, f.value, f.unit, f.target, peer, ratio
            )?;
        }
        std::fs::write(path, md)?;
        Ok(())
    }
}
