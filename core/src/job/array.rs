//! Array indices in Slurm's `--array` syntax: `0-99999`, `1,3,10-20:2`.

use crate::error::FieldError;

/// The most tasks one array may have.
pub const MAX_TASKS: usize = 100_000;

/// Expand `text` into its indices, ascending; each index may appear once.
pub fn parse_indices(text: &str) -> Result<Vec<u32>, FieldError> {
    let bad = |message: String| FieldError::new("array", message);
    let number = |s: &str| -> Result<u32, FieldError> {
        s.trim().parse::<u32>().map_err(|_| {
            bad(format!(
                "{s:?} is not an index; use whole numbers 0..=4294967295, as in \"0-99\" or \"1,3,10-20:2\""
            ))
        })
    };
    let mut indices: Vec<u32> = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return Err(bad(format!(
                "{text:?} has an empty element; separate indices and ranges with single commas"
            )));
        }
        let (range, step) = match part.split_once(':') {
            Some((range, step)) => (range, number(step)?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(bad(format!("{part:?}: the step must be at least 1")));
        }
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let i = number(range)?;
                (i, i)
            }
        };
        if first > last {
            return Err(bad(format!(
                "{part:?}: the range runs backwards; write it low-high"
            )));
        }
        let count = (last - first) as usize / step as usize + 1;
        if indices.len() + count > MAX_TASKS {
            return Err(bad(format!(
                "{text:?} has more than {MAX_TASKS} tasks; split the work into several arrays"
            )));
        }
        indices.extend((first..=last).step_by(step as usize));
    }
    indices.sort_unstable();
    if let Some(w) = indices.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(format!("index {} appears twice in {text:?}", w[0])));
    }
    Ok(indices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_ranges_steps_and_lists() {
        assert_eq!(parse_indices("0-3").unwrap(), [0, 1, 2, 3]);
        assert_eq!(parse_indices("7").unwrap(), [7]);
        assert_eq!(parse_indices("10-20:5, 1,3").unwrap(), [1, 3, 10, 15, 20]);
        assert_eq!(parse_indices("0-99999").unwrap().len(), 100_000);
    }

    #[test]
    fn refuses_what_slurm_would_and_says_why() {
        for (text, says) in [
            ("", "empty element"),
            ("1,,2", "empty element"),
            ("a-3", "not an index"),
            ("5-1", "backwards"),
            ("0-9:0", "step"),
            ("1,1", "appears twice"),
            ("0-100000", "more than 100000"),
            ("-1", "not an index"),
        ] {
            let err = parse_indices(text).unwrap_err();
            assert_eq!(err.field, "array");
            assert!(err.message.contains(says), "{text}: {}", err.message);
        }
    }
}
