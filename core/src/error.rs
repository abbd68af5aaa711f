//! gantryd's errors and the one place that turns them into gRPC statuses.

use tonic::{Code, Status};

/// A field of a request that is not valid, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's path, e.g. `resources.memory`.
    pub field: String,
    /// What is wrong and what a valid value looks like.
    pub message: String,
}

impl FieldError {
    /// A new field error.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Everything that can go wrong in gantryd's domain.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request is invalid.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// No such job, or not visible to the caller.
    #[error("job {0} does not exist")]
    JobNotFound(u64),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The caller's identity is unusable.
    #[error("{0}")]
    Unauthenticated(String),
    /// The object is in a state that does not allow this.
    #[error("{0}")]
    Precondition(String),
    /// The database failed; retrying later may succeed.
    #[error("the database is unavailable: {0}")]
    Database(#[from] sqlx::Error),
    /// The database refuses writes (a full disk, a failed sync, a lost
    /// server) until the writer has recovered; nothing was acknowledged.
    #[error("{0}")]
    Store(crate::store::Fault),
    /// gantryd is shutting down or a component it needs is down.
    #[error("{0}")]
    Unavailable(String),
    /// A local file operation failed.
    #[error("{0}")]
    Io(String),
    /// A bug: a state transition not in the table.
    #[error(transparent)]
    Transition(#[from] crate::job::state::InvalidTransition),
}

/// Result of gantryd's domain operations.
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

impl From<CoreError> for Status {
    fn from(err: CoreError) -> Self {
        let code = match &err {
            CoreError::Invalid(_) => Code::InvalidArgument,
            CoreError::JobNotFound(_) => Code::NotFound,
            CoreError::Forbidden(_) => Code::PermissionDenied,
            CoreError::Unauthenticated(_) => Code::Unauthenticated,
            CoreError::Precondition(_) => Code::FailedPrecondition,
            CoreError::Store(fault) if fault.kind == crate::store::FaultKind::Full => {
                Code::ResourceExhausted
            }
            CoreError::Database(_) | CoreError::Unavailable(_) | CoreError::Store(_) => {
                Code::Unavailable
            }
            CoreError::Io(_) | CoreError::Transition(_) => {
                tracing::error!(error = %err, "internal error");
                return Status::internal("internal error; see gantryd's log");
            }
        };
        if matches!(code, Code::Unavailable | Code::ResourceExhausted) {
            tracing::warn!(error = %err, "unavailable");
        }
        Status::new(code, err.to_string())
    }
}
