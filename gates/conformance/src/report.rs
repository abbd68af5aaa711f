//! The kit's verdicts: one row per named check, printed as a table or JSON.

use std::future::Future;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The gate did what the contract says; what was seen, briefly.
    Pass(String),
    /// It did not: what was expected and what was seen.
    Fail(String),
    /// Not checked: why (a capability the gate does not flag, a check it
    /// needs that failed, or `--only`).
    Skip(String),
}

impl Outcome {
    /// A pass with nothing more to say.
    pub fn pass() -> Self {
        Outcome::Pass(String::new())
    }

    /// A failure, saying what was seen.
    pub fn fail(seen: impl Into<String>) -> Self {
        Outcome::Fail(seen.into())
    }

    fn word(&self) -> &'static str {
        match self {
            Outcome::Pass(_) => "pass",
            Outcome::Fail(_) => "FAIL",
            Outcome::Skip(_) => "skipped",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Outcome::Pass(s) | Outcome::Fail(s) | Outcome::Skip(s) => s,
        }
    }
}

/// Turns `Result<(), String>` (the shape checks are easiest written in)
/// into an outcome.
impl From<Result<String, String>> for Outcome {
    fn from(result: Result<String, String>) -> Self {
        match result {
            Ok(seen) => Outcome::Pass(seen),
            Err(seen) => Outcome::Fail(seen),
        }
    }
}

/// One check's name and verdict.
#[derive(Debug, Clone)]
pub struct Row {
    /// The check's name, e.g. `start.idempotent`.
    pub name: String,
    /// Its verdict.
    pub outcome: Outcome,
}

/// Every check's verdict, in the order they ran.
#[derive(Debug, Default)]
pub struct Report {
    /// The rows.
    pub rows: Vec<Row>,
    only: Vec<String>,
}

impl Report {
    /// A report that runs only the checks whose names start with one of
    /// `only` (all when empty).
    pub fn new(only: Vec<String>) -> Self {
        Self {
            rows: Vec::new(),
            only,
        }
    }

    /// Run `check` as `name` (unless `--only` leaves it out) and record it.
    /// The check is a future, so nothing runs until it is selected.
    pub async fn check(&mut self, name: &str, check: impl Future<Output = Outcome>) {
        let outcome = if self.selected(name) {
            check.await
        } else {
            Outcome::Skip("not selected (--only)".into())
        };
        self.rows.push(Row {
            name: name.into(),
            outcome,
        });
    }

    /// Run `check` as `name` whatever `--only` says: others need what it
    /// makes (the READY partition).
    pub async fn prerequisite(&mut self, name: &str, check: impl Future<Output = Outcome>) {
        let outcome = check.await;
        self.rows.push(Row {
            name: name.into(),
            outcome,
        });
    }

    fn selected(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.rows
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Fail(_)))
    }

    /// The verdicts as a table, with a count of each kind after it.
    pub fn table(&self) -> String {
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(["check", "result", "what it saw"]);
        if table.width().is_none() {
            // Not a terminal: wrap as a wide one would.
            table.set_width(120);
        }
        for row in &self.rows {
            table.add_row([row.name.as_str(), row.outcome.word(), row.outcome.detail()]);
        }
        let count = |word| {
            self.rows
                .iter()
                .filter(|r| r.outcome.word() == word)
                .count()
        };
        format!(
            "{table}\n{} passed, {} failed, {} skipped\n",
            count("pass"),
            count("FAIL"),
            count("skipped")
        )
    }

    /// One JSON object per check, one per line.
    pub fn json_lines(&self) -> String {
        self.rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "check": r.name,
                    "result": match r.outcome {
                        Outcome::Pass(_) => "pass",
                        Outcome::Fail(_) => "fail",
                        Outcome::Skip(_) => "skip",
                    },
                    "detail": r.outcome.detail(),
                })
                .to_string()
                    + "\n"
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_runs_the_selected_checks_and_a_failure_fails_the_report() {
        let mut report = Report::new(vec!["job.".into()]);
        report
            .check("describe.identity", async { Outcome::pass() })
            .await;
        report
            .check("job.exit_code", async { Outcome::fail("exit 0") })
            .await;
        assert!(matches!(report.rows[0].outcome, Outcome::Skip(_)));
        assert!(report.failed());
        assert!(report.table().contains("0 passed, 1 failed, 1 skipped"));
        assert!(report.json_lines().contains("\"result\":\"fail\""));
    }
}
