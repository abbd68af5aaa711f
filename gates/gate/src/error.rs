//! The one error type of gate operations and the gRPC code each variant maps to.

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
    /// The job's owner may not run jobs here (no Unix account the gate may use).
    #[error("{0}")]
    PermissionDenied(String),
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
                crate::health::unavailable(&m);
                Status::unavailable(m)
            }
            GateError::PermissionDenied(m) => Status::permission_denied(m),
            GateError::Unimplemented(_) => Status::unimplemented(err.to_string()),
            GateError::Io { .. } | GateError::Internal(_) => {
                tracing::error!(error = %err, "internal gate error");
                Status::internal("internal gate error; see the gate's log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

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
            (
                GateError::PermissionDenied("no account".into()),
                Code::PermissionDenied,
            ),
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
