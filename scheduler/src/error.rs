//! The scheduler's errors and the one place they become gRPC statuses.

/// A field of a `SessionRequest` that does not hold a valid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidField {
    /// The field's path, e.g. `jobs[3].resources`.
    pub field: String,
    /// What is wrong and what a valid value looks like.
    pub problem: String,
}

impl InvalidField {
    /// An error for `field` saying `problem`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Why a session cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A message held an invalid value; nothing of that message was applied.
    #[error("invalid SessionRequest (seq {seq}): {source}")]
    Invalid {
        /// The message's `seq`.
        seq: u64,
        /// The field at fault.
        source: InvalidField,
    },
    /// The session did not start with a full picture.
    #[error(
        "the first SessionRequest of a session must have `reset` set and start the full picture"
    )]
    NoReset,
}

/// Result of session operations.
pub type Result<T> = std::result::Result<T, SessionError>;

impl From<SessionError> for tonic::Status {
    fn from(error: SessionError) -> Self {
        tonic::Status::invalid_argument(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_is_invalid_argument_naming_the_field() {
        let status = tonic::Status::from(SessionError::Invalid {
            seq: 7,
            source: InvalidField::new("jobs[0].state", "must be QUEUED, ACTIVE or GONE"),
        });
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("jobs[0].state"),
            "{}",
            status.message()
        );
    }
}
