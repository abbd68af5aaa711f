//! The SDK's one error type: what went wrong, in words a person can act on.

use std::path::PathBuf;

use gantry_proto::tls::TlsError;

/// Everything that can go wrong talking to gantryd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable configuration: the message says what to set or start.
    #[error("{0}")]
    Config(String),
    /// A profile file exists but cannot be used.
    #[error("profile {path}: {message}")]
    Profile {
        /// The profile file.
        path: PathBuf,
        /// What is wrong with it and how to fix it.
        message: String,
    },
    /// The TLS files of the configuration cannot be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// gantryd could not be reached (refused, timed out, TLS handshake failed).
    #[error("cannot reach gantryd at {address}: {reason}")]
    Connect {
        /// The address dialled.
        address: String,
        /// The innermost cause, for people (e.g. "connection refused").
        reason: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// gantryd (or the transport under a call) answered with a gRPC error.
    /// Not a `source`: its message is already the whole story, and a
    /// chain printed with `{:#}` would say it twice.
    #[error("{}", status_message(.0))]
    Status(tonic::Status),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// gantryd sent something that breaks the contract (e.g. a response
    /// without its job).
    #[error("gantryd sent an invalid answer: {0}")]
    Protocol(String),
    /// An output file's path would land outside the destination directory.
    #[error("refusing to write output `{0}`: only relative paths without `..` are allowed")]
    UnsafePath(String),
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Status(status)
    }
}

/// Result of SDK calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn status_message(status: &tonic::Status) -> String {
    let message = status.message().replace('\n', " ");
    match (status.code(), message.is_empty()) {
        (code, true) => format!("gantryd answered {code:?}: {}", code.description()),
        (tonic::Code::Unavailable, false) => format!("gantryd unavailable: {message}"),
        (_, false) => message,
    }
}

impl Error {
    /// The gRPC code of the error, when there is one. A failure to connect
    /// counts as `UNAVAILABLE`.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status(status) => Some(status.code()),
            Error::Connect { .. } => Some(tonic::Code::Unavailable),
            _ => None,
        }
    }

    /// Whether trying again may succeed: gantryd said `UNAVAILABLE`, or the
    /// connection broke under the call. Only idempotent calls (and submits
    /// carrying a `client_request_id`) should be retried.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Status(status) => is_retryable_status(status),
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// A status is retryable when gantryd says so (`UNAVAILABLE`) or when it was
/// made on this side from a broken connection (it then carries a source error;
/// statuses decoded from gantryd's answers never do).
pub(crate) fn is_retryable_status(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    match status.code() {
        tonic::Code::Unavailable => true,
        tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::Cancelled => {
            status.source().is_some()
        }
        _ => false,
    }
}

/// The innermost cause of a transport error, phrased for people.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    loop {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let known = match io.kind() {
                ConnectionRefused => Some("connection refused"),
                TimedOut => Some("connection timed out"),
                ConnectionReset => Some("connection reset"),
                HostUnreachable => Some("host unreachable"),
                NetworkUnreachable => Some("network unreachable"),
                _ => None,
            };
            if let Some(text) = known {
                return text.to_string();
            }
        }
        match current.source() {
            Some(next) => current = next,
            None => return current.to_string().replace('\n', " "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_statuses_are_not_retryable_except_unavailable() {
        assert!(Error::Status(tonic::Status::unavailable("restarting")).is_retryable());
        assert!(!Error::Status(tonic::Status::internal("boom")).is_retryable());
        assert!(!Error::Status(tonic::Status::invalid_argument("x")).is_retryable());
    }

    #[test]
    fn a_status_is_said_once_in_an_error_chain() {
        let error = Error::from(tonic::Status::resource_exhausted(
            "the database disk is full: /var/lib/gantry",
        ));
        assert_eq!(
            error.to_string(),
            "the database disk is full: /var/lib/gantry"
        );
        assert!(std::error::Error::source(&error).is_none());
    }

    #[test]
    fn status_display_is_the_message() {
        let e = Error::Status(tonic::Status::not_found("job 4 not found"));
        assert_eq!(e.to_string(), "job 4 not found");
        assert_eq!(e.code(), Some(tonic::Code::NotFound));
        let e = Error::Status(tonic::Status::unavailable("draining"));
        assert_eq!(e.to_string(), "gantryd unavailable: draining");
    }

    #[test]
    fn root_cause_names_refused_connections() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(root_cause(&io), "connection refused");
    }
}
