//! Parsing of the human forms of sizes and durations in job specs, with
//! errors that say what a valid value looks like.

/// Parse a memory size. Binary units as Slurm uses them: `512M`, `4G`,
/// `4GiB`, `1.5T`, `2048K`; a bare number is MiB (as `sbatch --mem`).
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a size; use e.g. \"512MiB\" or \"4G\"");
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 0,
        "k" | "kb" | "kib" => 10,
        "" | "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let bytes = number * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parse a walltime: Slurm's forms (`30` minutes, `MM:SS`, `HH:MM:SS`,
/// `D-HH`, `D-HH:MM`, `D-HH:MM:SS`) or a humantime duration (`90s`, `1h30m`).
pub fn parse_walltime(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a duration; use e.g. \"90s\", \"1h30m\", \"01:30:00\" or \"2-00:00:00\""
        )
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let seconds = if t
        .chars()
        .all(|c| c.is_ascii_digit() || c == ':' || c == '-')
    {
        slurm_walltime(t).ok_or_else(bad)?
    } else {
        humantime::parse_duration(t).map_err(|_| bad())?.as_secs()
    };
    if seconds == 0 {
        return Err(format!(
            "{text:?} is zero; a walltime must be at least one second"
        ));
    }
    Ok(seconds)
}

fn slurm_walltime(t: &str) -> Option<u64> {
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (num(d)?, Some(r)),
        None => (0, None),
    };
    let parts: Vec<&str> = rest.unwrap_or(t).split(':').collect();
    let parts: Vec<u64> = parts.iter().map(|p| num(p)).collect::<Option<_>>()?;
    let secs = match (rest.is_some(), parts.as_slice()) {
        (false, [m]) => m * 60,
        (false, [m, s]) => m * 60 + s,
        (false, [h, m, s]) => h * 3600 + m * 60 + s,
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        (true, [h, m, s]) => h * 3600 + m * 60 + s,
        _ => return None,
    };
    Some(days * 86_400 + secs)
}

/// A size for people in binary units: `512 MiB`, `4 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_forms() {
        assert_eq!(parse_memory("512MiB"), Ok(512 << 20));
        assert_eq!(parse_memory("4G"), Ok(4 << 30));
        assert_eq!(parse_memory("4gb"), Ok(4 << 30));
        assert_eq!(parse_memory("100"), Ok(100 << 20));
        assert_eq!(parse_memory("1.5G"), Ok(3 << 29));
        assert!(parse_memory("12XB").unwrap_err().contains("not a size"));
        assert!(parse_memory("").is_err());
        assert!(parse_memory("0").is_err());
    }

    #[test]
    fn walltime_forms() {
        assert_eq!(parse_walltime("90s"), Ok(90));
        assert_eq!(parse_walltime("1h30m"), Ok(5400));
        assert_eq!(parse_walltime("01:30:00"), Ok(5400));
        assert_eq!(parse_walltime("30"), Ok(1800));
        assert_eq!(parse_walltime("5:30"), Ok(330));
        assert_eq!(parse_walltime("2-00:00:00"), Ok(172_800));
        assert_eq!(parse_walltime("1-12"), Ok(129_600));
        assert!(
            parse_walltime("abc")
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse_walltime("1:2:3:4").is_err());
        assert!(parse_walltime("0").is_err());
    }

    #[test]
    fn formats_binary_sizes() {
        assert_eq!(format_bytes(512 << 30), "512 GiB");
        assert_eq!(format_bytes(1536 << 20), "1.5 GiB");
    }
}
