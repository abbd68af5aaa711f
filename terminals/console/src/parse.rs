//! Parsers for the small value syntaxes of the command line: `KEY=VALUE`,
//! `PATH[:DEST]`, job states.

use std::path::PathBuf;

use gantry_client::JobState;

/// Parse `KEY=VALUE` (the value may be empty and may contain `=`).
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("`{text}` is not KEY=VALUE (e.g. team=physics)")),
    }
}

/// A local file to upload and where it goes in the job's working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputArg {
    /// The local file.
    pub local: PathBuf,
    /// Its path relative to the job's working directory; `None` for the
    /// local file's name.
    pub dest: Option<String>,
}

/// Parse `PATH[:DEST]`, splitting at the first `:`.
pub fn input(text: &str) -> Result<InputArg, String> {
    let (local, dest) = match text.split_once(':') {
        Some((local, dest)) => (local, Some(dest)),
        None => (text, None),
    };
    if local.is_empty() {
        return Err(format!(
            "`{text}` has no local path; use PATH or PATH:DEST (e.g. data.csv:in/data.csv)"
        ));
    }
    if dest == Some("") {
        return Err(format!(
            "`{text}` has an empty destination; use PATH or PATH:DEST (e.g. data.csv:in/data.csv)"
        ));
    }
    Ok(InputArg {
        local: PathBuf::from(local),
        dest: dest.map(str::to_string),
    })
}

/// Parse a job state name (`running`, `RUNNING`, `JOB_STATE_RUNNING`).
pub fn state(text: &str) -> Result<JobState, String> {
    gantry_client::parse_state(text).ok_or_else(|| {
        format!(
            "`{text}` is not a job state; use one of QUEUED, SCHEDULED, PROVISIONING, \
             STAGING_IN, RUNNING, STAGING_OUT, COMPLETED, FAILED, CANCELLED"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values() {
        assert_eq!(key_value("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(key_value("a=").unwrap(), ("a".into(), String::new()));
        assert!(key_value("novalue").is_err());
        assert!(key_value("=x").unwrap_err().contains("KEY=VALUE"));
    }

    #[test]
    fn inputs() {
        assert_eq!(
            input("data.csv").unwrap(),
            InputArg {
                local: "data.csv".into(),
                dest: None
            }
        );
        assert_eq!(
            input("../d/data.csv:in/x.csv").unwrap(),
            InputArg {
                local: "../d/data.csv".into(),
                dest: Some("in/x.csv".into())
            }
        );
        assert!(input(":x").is_err());
        assert!(input("x:").is_err());
    }

    #[test]
    fn states() {
        assert_eq!(state("running").unwrap(), JobState::Running);
        assert!(state("nope").unwrap_err().contains("QUEUED"));
    }
}
