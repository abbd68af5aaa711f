//! `#GANTRY` directives: job flags written at the top of a script, read the
//! way `sbatch` reads `#SBATCH` lines.
//!
//! Directive lines start with `#GANTRY` followed by flags, split like a
//! shell would (`#GANTRY --name "my job" --cpus 4`). Reading stops at the
//! first line that is neither blank nor a comment, so the `#!` line and
//! ordinary comments may come first. Flags given on the command line
//! override directives.

use clap::Parser;

use crate::cmd::submit::JobFlags;

/// Why a script's directives cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DirectiveError {
    /// Unbalanced quotes or a stray escape on a directive line.
    #[error("line {line}: cannot split `{text}` into words (unbalanced quotes?)")]
    Split {
        /// 1-based line number.
        line: usize,
        /// The directive's text.
        text: String,
    },
    /// A flag that `gantry submit` does not take, or a bad value.
    #[error("line {line}: {message}")]
    Flag {
        /// 1-based line number (0 when no single line is at fault).
        line: usize,
        /// clap's message.
        message: String,
    },
}

/// The prefix of a directive line.
pub const PREFIX: &str = "#GANTRY";

#[derive(Parser, Debug)]
#[command(
    name = "#GANTRY",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true
)]
struct DirectiveLine {
    #[command(flatten)]
    flags: JobFlags,
}

/// The words of each directive line, with its 1-based line number.
fn directive_words(script: &str) -> Result<Vec<(usize, Vec<String>)>, DirectiveError> {
    let mut lines = Vec::new();
    for (index, line) in script.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix(PREFIX)
            && (rest.is_empty() || rest.starts_with(char::is_whitespace))
        {
            let words = shlex::split(rest).ok_or_else(|| DirectiveError::Split {
                line: index + 1,
                text: rest.trim().to_string(),
            })?;
            lines.push((index + 1, words));
            continue;
        }
        if !trimmed.starts_with('#') {
            break;
        }
    }
    Ok(lines)
}

fn parse_words(words: &[String], line: usize) -> Result<JobFlags, DirectiveError> {
    DirectiveLine::try_parse_from(words)
        .map(|d| d.flags)
        .map_err(|e| DirectiveError::Flag {
            line,
            message: first_line(&e.to_string()),
        })
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// The job flags of a script's `#GANTRY` lines. Later lines override earlier
/// ones for single-valued flags; repeatable flags accumulate.
pub fn read(script: &str) -> Result<JobFlags, DirectiveError> {
    let lines = directive_words(script)?;
    let all: Vec<String> = lines.iter().flat_map(|(_, w)| w.iter().cloned()).collect();
    match parse_words(&all, 0) {
        Ok(flags) => Ok(flags),
        Err(error) => {
            // Name the first line that is wrong on its own, if there is one.
            for (line, words) in &lines {
                parse_words(words, *line)?;
            }
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flags_until_the_first_command() {
        let script = "#!/bin/bash\n\
                      # a comment\n\
                      \n\
                      #GANTRY --name 'my job' --cpus 4\n\
                      #GANTRY --mem 8GiB --label team=physics\n\
                      #GANTRY --after 3,4 --after 5\n\
                      echo hello\n\
                      #GANTRY --gpus 2\n";
        let flags = read(script).unwrap();
        assert_eq!(flags.name.as_deref(), Some("my job"));
        assert_eq!(flags.cpus, Some(4));
        assert_eq!(flags.mem.as_deref(), Some("8GiB"));
        assert_eq!(flags.labels, vec![("team".into(), "physics".into())]);
        assert_eq!(flags.after, vec![3, 4, 5]);
        assert_eq!(
            flags.gpus, None,
            "directives after the first command are ignored"
        );
    }

    #[test]
    fn later_lines_override_earlier() {
        let flags = read("#GANTRY --cpus 2\n#GANTRY --cpus 8 --hold --retries 0\n").unwrap();
        assert_eq!(flags.cpus, Some(8));
        assert!(flags.hold);
        assert_eq!(flags.retries, Some(0));
    }

    #[test]
    fn lookalike_comments_are_not_directives() {
        let flags = read("#GANTRYX --cpus 2\n  #GANTRY --cpus 3\n## GANTRY --cpus 4\n").unwrap();
        assert_eq!(flags, JobFlags::default());
    }

    #[test]
    fn errors_name_the_line() {
        let err = read("#!/bin/sh\n#GANTRY --cpus 2\n#GANTRY --bogus\n").unwrap_err();
        assert!(matches!(err, DirectiveError::Flag { line: 3, .. }), "{err}");
        assert!(err.to_string().contains("--bogus"), "{err}");
        let err = read("#GANTRY --name 'open\n").unwrap_err();
        assert!(
            matches!(err, DirectiveError::Split { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn no_directives_is_empty() {
        assert_eq!(read("echo hi\n").unwrap(), JobFlags::default());
        assert_eq!(read("").unwrap(), JobFlags::default());
    }
}
