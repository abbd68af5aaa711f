//! The one error type of gate operations and the gRPC code each variant maps to.

use std::sync::Mutex;

use tonic::Status;

/// Why a gate operation failed. Providers return it; [`GateService`](crate::GateService)
/// turns it into a `tonic::Status` with the code the gate contract asks for.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A request field is invalid and the request can never succeed.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The field, e.g. `task.argv`.
        field: String,
        /// What is wrong and what a valid value looks like.
        message: String,
    },
    /// The gate has no such object.
    #[error("{kind} `{id}` is not known to this gate")]
    NotFound {
        /// What was looked up: `attempt`, `partition`.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// A quota or the capacity is full now; retrying later may succeed.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The object is not in a state that allows the call (e.g. staging out a running attempt).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The provider cannot answer now; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// The gate does not offer this optional feature (see `Capabilities`).
    #[error("this gate does not support {0}")]
    Unimplemented(&'static str),
    /// A file operation failed unexpectedly.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Any other unexpected failure.
    #[error("{0}")]
    Internal(String),
}

/// Result of gate operations.
pub type Result<T, E = GateError> = std::result::Result<T, E>;

impl GateError {
    /// An [`GateError::InvalidArgument`] for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A [`GateError::NotFound`] for an attempt.
    pub fn no_attempt(id: impl Into<String>) -> Self {
        Self::NotFound {
            kind: "attempt",
            id: id.into(),
        }
    }

    /// A [`GateError::NotFound`] for a partition.
    pub fn no_partition(id: impl Into<String>) -> Self {
        Self::NotFound {
            kind: "partition",
            id: id.into(),
        }
    }

    /// Releasing an attempt that still runs.
    pub fn release_running(attempt: impl std::fmt::Display) -> Self {
        Self::FailedPrecondition(format!(
            "attempt `{attempt}` has not ended; cancel it and wait for its end first"
        ))
    }

    /// Staging files in for an attempt that has started.
    pub fn stage_in_started(attempt: impl std::fmt::Display) -> Self {
        Self::FailedPrecondition(format!(
            "attempt `{attempt}` has started; stage files in before StartJob"
        ))
    }

    /// Staging files out of an attempt that has not ended.
    pub fn stage_out_running(attempt: impl std::fmt::Display) -> Self {
        Self::FailedPrecondition(format!(
            "attempt `{attempt}` has not ended; stage out after it ends"
        ))
    }

    /// An [`GateError::Io`] with `context` (what was done, to which path).
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// `value`, or NOT_FOUND for `attempt` when there is none (an attempt the
/// gate never started or has released).
pub fn attempt_found<T>(value: Option<T>, attempt: impl std::fmt::Display) -> Result<T> {
    value.ok_or_else(|| GateError::no_attempt(attempt.to_string()))
}

impl From<GateError> for Status {
    fn from(err: GateError) -> Self {
        match err {
            GateError::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
            GateError::NotFound { .. } => Status::not_found(err.to_string()),
            GateError::ResourceExhausted(m) => Status::resource_exhausted(m),
            GateError::FailedPrecondition(m) => Status::failed_precondition(m),
            GateError::Unavailable(m) => {
                log_unavailable(&m);
                Status::unavailable(m)
            }
            GateError::Unimplemented(_) => Status::unimplemented(err.to_string()),
            GateError::Io { .. } | GateError::Internal(_) => {
                tracing::error!(error = %err, "internal gate error");
                Status::internal("internal gate error; see the gate's log")
            }
        }
    }
}

/// What a gate last said in its log about its provider not answering.
#[derive(Debug, Default)]
struct Unanswered {
    /// The last reason logged; empty once the provider answered.
    last: String,
}

impl Unanswered {
    /// Whether `reason` is news: a provider that keeps failing the same
    /// way is logged once, not on every call that meets it.
    fn is_news(&mut self, reason: &str) -> bool {
        if self.last == reason {
            return false;
        }
        self.last = reason.to_string();
        true
    }

    /// The provider answered; whether it had been failing.
    fn answered(&mut self) -> bool {
        !std::mem::take(&mut self.last).is_empty()
    }
}

static UNANSWERED: Mutex<Unanswered> = Mutex::new(Unanswered {
    last: String::new(),
});

/// Say in the gate's own log why its provider does not answer (Slurm's
/// controller down, an unreachable login node) and not only in gantryd's.
fn log_unavailable(reason: &str) {
    if UNANSWERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_news(reason)
    {
        tracing::warn!(reason, "the provider does not answer");
    }
}

/// The provider answered (Describe succeeded): its next failure is logged
/// again, even for the same reason.
pub(crate) fn provider_answered() {
    if UNANSWERED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .answered()
    {
        tracing::info!("the provider answers again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn a_provider_failing_the_same_way_is_logged_once_until_it_answers() {
        let mut log = Unanswered::default();
        assert!(log.is_news("sinfo: slurmctld does not answer"));
        assert!(!log.is_news("sinfo: slurmctld does not answer"));
        assert!(log.is_news("ssh: connection refused"));
        assert!(log.answered());
        assert!(!log.answered(), "said once");
        assert!(
            log.is_news("ssh: connection refused"),
            "a new outage is news"
        );
    }

    #[test]
    fn maps_each_variant_to_its_code() {
        let cases = [
            (
                GateError::invalid("task.argv", "empty"),
                Code::InvalidArgument,
            ),
            (GateError::no_attempt("a1"), Code::NotFound),
            (
                GateError::ResourceExhausted("full".into()),
                Code::ResourceExhausted,
            ),
            (
                GateError::FailedPrecondition("running".into()),
                Code::FailedPrecondition,
            ),
            (GateError::Unavailable("later".into()), Code::Unavailable),
            (GateError::Unimplemented("staging"), Code::Unimplemented),
            (GateError::Internal("boom".into()), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
    }

    #[test]
    fn invalid_argument_names_the_field_and_internal_is_opaque() {
        let status = Status::from(GateError::invalid("attempt_id", "must not be empty"));
        assert_eq!(status.message(), "attempt_id: must not be empty");
        let status = Status::from(GateError::Internal("secret path /x".into()));
        assert!(!status.message().contains("/x"));
    }
}
