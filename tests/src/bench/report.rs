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

    /// Write the figures as a Markdown page with the machine, date and
    /// commit. A run of `only` some scenarios updates the page at `path`
    /// instead: their rows are replaced (the rest, and the machine's limits
    /// they were read against, stay as the last full run wrote them) and a
    /// line under the header says when and at which commit they were measured.
    pub fn write_markdown(&self, path: &Path, quick: bool, only: &[String]) -> anyhow::Result<()> {
        let md = match std::fs::read_to_string(path) {
            Ok(page) if !only.is_empty() && !quick => self.merged_into(&page, only),
            _ => self.page(quick)?,
        };
        std::fs::write(path, md)?;
        Ok(())
    }

    /// `page` with this run's rows of the scenarios in `only` in place of its own.
    fn merged_into(&self, page: &str, only: &[String]) -> String {
        let measured = |scenario: &str| scenario != "machine" && only.iter().any(|s| s == scenario);
        let run = format!("- `scripts/bench --only {}`:", only.join(","));
        let stamp = format!(
            "{run} {} at {}",
            sh("date -u +%Y-%m-%dT%H:%MZ"),
            sh("git rev-parse --short HEAD")
        );
        let rows_of = |scenario: &str| -> Vec<String> {
            let mine = self.figures.iter().filter(|f| f.scenario == scenario);
            mine.map(row).collect()
        };
        let mut placed: Vec<&str> = Vec::new();
        let mut out: Vec<String> = Vec::new();
        for line in page.lines() {
            let scenario = line.strip_prefix("| ").and_then(|r| r.split(" | ").next());
            if line.starts_with(&run) {
                continue;
            } else if line.starts_with("- cpu:") {
                out.extend([line.to_string(), stamp.clone()]);
            } else if let Some(s) = scenario.filter(|s| measured(s)) {
                // The run's rows in place of the first of the page's own.
                if !placed.contains(&s) {
                    placed.push(s);
                    out.extend(rows_of(s));
                }
            } else {
                out.push(line.to_string());
            }
        }
        // Scenarios the page did not have yet go at the end of its table.
        for s in only
            .iter()
            .filter(|s| measured(s) && !placed.contains(&s.as_str()))
        {
            out.extend(rows_of(s));
        }
        out.join("\n") + "\n"
    }

    /// The whole page.
    fn page(&self, quick: bool) -> anyhow::Result<String> {
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
        for f in &self.figures {
            writeln!(md, "{}", row(f))?;
        }
        Ok(md)
    }
}

/// One figure as a row of the page's table.
fn row(f: &Figure) -> String {
    let two = |r: Option<f64>| r.map_or(String::new(), |r| format!("{r:.2}"));
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
    format!(
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
    )
}

/// The output of a shell command, trimmed (empty when it fails).
fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(scenario: &str, metric: &str, value: f64) -> Figure {
        Figure {
            scenario: scenario.into(),
            metric: metric.into(),
            value,
            unit: "jobs/s".into(),
            target: String::new(),
            spread: None,
            peer: None,
            peer_value: None,
            limit: None,
            limit_value: None,
        }
    }

    #[test]
    fn a_run_of_some_scenarios_replaces_only_their_rows() {
        let page = "# Benchmarks\n\n- date: then\n- cpu: AMD\n- `scripts/bench --only e2e,cloud`: earlier\n\n\
                    | scenario | metric |\n|---|---|\n\
                    | machine | xargs | 1.0 |\n| e2e | old one | 2.0 |\n| e2e | old two | 3.0 |\n| slurm | kept | 4.0 |\n";
        let mut report = Report::new(true);
        report.figures = vec![
            figure("machine", "xargs", 9.0),
            figure("e2e", "new", 5.0),
            figure("cloud", "cold", 6.0),
        ];
        let only = ["e2e".to_string(), "cloud".to_string()];
        let merged = report.merged_into(page, &only);
        let lines: Vec<&str> = merged.lines().collect();
        assert!(
            lines[4].starts_with("- `scripts/bench --only e2e,cloud`: 20"),
            "{merged}"
        );
        assert_eq!(lines[5], "", "{merged}");
        let rows: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| scenario"))
            .collect();
        assert_eq!(rows.len(), 4, "{merged}");
        assert!(
            rows[0].starts_with("| machine | xargs | 1.0 |"),
            "the full run's limits stay"
        );
        assert!(
            rows[1].starts_with("| e2e | new | 5.0 |"),
            "in the old rows' place"
        );
        assert!(rows[2].starts_with("| slurm | kept | 4.0 |"));
        assert!(
            rows[3].starts_with("| cloud | cold | 6.0 |"),
            "new scenarios at the end"
        );
    }
}
