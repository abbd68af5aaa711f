//! The Rust SDK terminals use to talk to gantryd: finding it
//! ([`ClientConfig::discover`]), connecting over mTLS ([`Client::connect`]),
//! submitting with safe retries, waiting for jobs, reading logs and moving
//! files.
//!
//! ```no_run
//! # async fn example() -> gantry_client::Result<()> {
//! use gantry_client::{Client, ClientConfig, JobSpec};
//!
//! let client = Client::connect(&ClientConfig::discover()?).await?;
//! let job = client
//!     .submit(JobSpec { argv: vec!["echo".into(), "hello".into()], ..Default::default() })
//!     .await?;
//! let ended = client.wait(job.id, |event| println!("{:?}", event.to_state())).await?;
//! std::process::exit(gantry_client::exit_status(&ended));
//! # }
//! ```
#![warn(missing_docs)]

mod client;
mod config;
mod error;
mod files;
mod forward;
mod job_ref;
mod retry;
mod watch;

pub use client::{Client, MAX_MESSAGE_SIZE};
pub use config::{ClientConfig, DEV_PROFILE_FILE, ENV_VARS, PROFILE_ENV, default_dev_state_dir};
pub use error::{Error, Result};
pub use files::{UPLOAD_CHUNK, safe_relative};
pub use gantry_proto::tls::TlsFiles;
pub use gantry_proto::v1::gantry_client::GantryClient;
pub use gantry_proto::v1::{
    ArraySummary, Capacity, CoreStatus, Flavor, InputFile, Job, JobEvent, JobSpec, JobState,
    ListJobsRequest, ListJobsResponse, ListSitesResponse, LogChunk, LogStream, ResourceRequest,
    Site, SubmitJobRequest, SubmitJobResponse,
};
pub use job_ref::JobRef;
pub use tonic::transport::Channel;

/// Whether `state` is an end state: COMPLETED, FAILED or CANCELLED.
pub fn is_end_state(state: JobState) -> bool {
    matches!(
        state,
        JobState::Completed | JobState::Failed | JobState::Cancelled
    )
}

/// The exit status a command waiting for `job` should end with: 0 for
/// COMPLETED; the job's exit code for FAILED or CANCELLED when a process ran
/// and exited non-zero (codes outside 1..=255 become 1); otherwise 1 for
/// FAILED and 130 (as for Ctrl-C) for CANCELLED. A job that has not ended
/// gives 1.
pub fn exit_status(job: &Job) -> i32 {
    let code = job.exit_code.filter(|c| (1..=255).contains(c));
    match job.state() {
        JobState::Completed => 0,
        JobState::Failed => code.unwrap_or(1),
        JobState::Cancelled => code.unwrap_or(130),
        _ => 1,
    }
}

/// A job state's short name, as people and JSON see it: `RUNNING`,
/// `COMPLETED`, ... (`UNSPECIFIED` for the zero value).
pub fn state_name(state: JobState) -> &'static str {
    let name = state.as_str_name();
    name.strip_prefix("JOB_STATE_").unwrap_or(name)
}

/// Parse a state name as people type it: `running`, `RUNNING` or
/// `JOB_STATE_RUNNING`.
pub fn parse_state(text: &str) -> Option<JobState> {
    let upper = text.trim().to_ascii_uppercase();
    let full = if upper.starts_with("JOB_STATE_") {
        upper
    } else {
        format!("JOB_STATE_{upper}")
    };
    JobState::from_str_name(&full).filter(|s| *s != JobState::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState, exit_code: Option<i32>) -> Job {
        Job {
            state: state as i32,
            exit_code,
            ..Default::default()
        }
    }

    #[test]
    fn exit_status_follows_the_job() {
        assert_eq!(exit_status(&job(JobState::Completed, Some(0))), 0);
        assert_eq!(exit_status(&job(JobState::Failed, Some(3))), 3);
        assert_eq!(exit_status(&job(JobState::Failed, None)), 1);
        assert_eq!(exit_status(&job(JobState::Failed, Some(0))), 1);
        assert_eq!(exit_status(&job(JobState::Cancelled, Some(143))), 143);
        assert_eq!(exit_status(&job(JobState::Cancelled, None)), 130);
        assert_eq!(exit_status(&job(JobState::Running, None)), 1);
    }

    #[test]
    fn end_states() {
        assert!(is_end_state(JobState::Cancelled));
        assert!(!is_end_state(JobState::StagingOut));
    }

    #[test]
    fn state_names_round_trip() {
        assert_eq!(state_name(JobState::StagingIn), "STAGING_IN");
        assert_eq!(parse_state("staging_in"), Some(JobState::StagingIn));
        assert_eq!(parse_state("JOB_STATE_QUEUED"), Some(JobState::Queued));
        assert_eq!(parse_state("unspecified"), None);
        assert_eq!(parse_state("bogus"), None);
    }
}
