//! How people name a job: `42`, or `17_3` for the task with index 3 of
//! array 17 (Slurm's `JOBID_TASKID`).

use std::fmt;
use std::str::FromStr;

/// A job id, or an array id with a task index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRef {
    /// The job's id, or the array's when `index` is set.
    pub id: u64,
    /// The task's index in array `id`.
    pub index: Option<u32>,
}

impl FromStr for JobRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a job: write a job id (42) or ARRAY_INDEX (17_3)");
        let (id, index) = match s.split_once('_') {
            Some((id, index)) => (id, Some(index.parse::<u32>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let id = id.parse::<u64>().map_err(|_| bad())?;
        if id == 0 {
            return Err(bad());
        }
        Ok(Self { id, index })
    }
}

impl fmt::Display for JobRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(index) => write!(f, "{}_{index}", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_tasks() {
        assert_eq!(
            "42".parse(),
            Ok(JobRef {
                id: 42,
                index: None
            })
        );
        assert_eq!(
            "17_3".parse(),
            Ok(JobRef {
                id: 17,
                index: Some(3)
            })
        );
        assert_eq!("17_3".parse::<JobRef>().unwrap().to_string(), "17_3");
        for bad in ["", "0", "x", "17_", "_3", "17_-1", "1_2_3"] {
            assert!(bad.parse::<JobRef>().is_err(), "{bad}");
        }
    }
}
