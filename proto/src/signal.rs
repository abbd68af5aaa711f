//! Signals on the wire: named without "SIG" ("USR1"), Linux numbering, as
//! in `JobSpec.signal` and `Task.warn_signal`.

use nix::sys::signal::Signal;

/// The longest warning, in seconds, as Slurm's `--signal` allows.
pub const MAX_WARN_SECONDS: u32 = 65_535;
/// The warning's default lead, in seconds, as Slurm's.
pub const DEFAULT_WARN_SECONDS: u32 = 60;

/// The canonical name of a signal given as "USR1", "SIGUSR1", "usr1" or
/// its number ("10").
pub fn parse_name(text: &str) -> Result<String, String> {
    let text = text.trim();
    let signal = match text.parse::<i32>() {
        Ok(n) => Signal::try_from(n).ok(),
        Err(_) => {
            let upper = text.to_ascii_uppercase();
            let name = upper.strip_prefix("SIG").unwrap_or(&upper);
            format!("SIG{name}").parse::<Signal>().ok()
        }
    };
    let signal = signal.ok_or_else(|| {
        format!("{text:?} is not a signal; give a name such as USR1 or TERM, or a number")
    })?;
    Ok(signal.as_str().trim_start_matches("SIG").to_string())
}

/// The number of a canonical signal name ("USR1" → 10).
pub fn number(name: &str) -> Option<i32> {
    format!("SIG{name}")
        .parse::<Signal>()
        .ok()
        .map(|s| s as i32)
}

/// The canonical name of signal `number` (15 → "TERM").
pub fn name(number: i32) -> Option<String> {
    Signal::try_from(number)
        .ok()
        .map(|s| s.as_str().trim_start_matches("SIG").to_string())
}

/// The signal an exit code says killed a process, by the 128+N convention
/// gates report with (143 → "TERM"); `None` below 129 or for no signal.
pub fn killed_by(exit_code: i32) -> Option<String> {
    exit_code.checked_sub(128).and_then(name)
}

/// `SIG[@SECONDS]` as `sbatch --signal` takes it: the canonical name and
/// the seconds before the walltime (default 60).
pub fn parse_warning(text: &str) -> Result<(String, u32), String> {
    let (name, seconds) = match text.split_once('@') {
        Some((name, seconds)) => {
            let seconds = seconds
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|s| (1..=MAX_WARN_SECONDS).contains(s))
                .ok_or_else(|| {
                    format!(
                        "{seconds:?} is not a number of seconds in 1..{MAX_WARN_SECONDS} (as in USR1@120)"
                    )
                })?;
            (name, seconds)
        }
        None => (text, DEFAULT_WARN_SECONDS),
    };
    Ok((parse_name(name)?, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_leads() {
        assert_eq!(parse_name("USR1").unwrap(), "USR1");
        assert_eq!(parse_name("sigusr2").unwrap(), "USR2");
        assert_eq!(parse_name("15").unwrap(), "TERM");
        assert!(parse_name("NOPE").is_err());
        assert!(parse_name("0").is_err());
        assert_eq!(number("USR1"), Some(Signal::SIGUSR1 as i32));
        assert_eq!(number("NOPE"), None);
        assert_eq!(name(15).as_deref(), Some("TERM"));
        assert_eq!(name(0), None);
        assert_eq!(killed_by(143).as_deref(), Some("TERM"));
        assert_eq!(killed_by(3), None);
        assert_eq!(parse_warning("USR1").unwrap(), ("USR1".into(), 60));
        assert_eq!(parse_warning("SIGINT@5").unwrap(), ("INT".into(), 5));
        assert!(parse_warning("USR1@0").unwrap_err().contains("\"0\""));
        assert!(parse_warning("USR1@x").is_err());
        assert!(parse_warning("@5").is_err());
    }
}
