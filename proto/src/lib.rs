//! Gantry's wire: the generated gRPC contracts of package `gantry.v1`, and
//! the mTLS pieces every Gantry process shares (identity from certificates,
//! TLS configuration, the dev PKI, logging setup).
//!
//! The `.proto` files in `proto/gantry/v1/` are the documentation of the
//! contracts; this crate only generates code from them.

pub mod client_tls;
pub mod identity;
pub mod metrics;
pub mod per_call;
pub mod pki;
pub mod reflection;
pub mod rpc_trace;
pub mod secrets;
pub mod serve;
pub mod server_tls;
pub mod signal;
pub mod splice;
pub mod telemetry;
pub mod tls;

/// Generated types and services of package `gantry.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("gantry.v1");

    /// The encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("gantry_descriptor");
}

impl v1::GateJobState {
    /// True for the states an attempt never leaves: SUCCEEDED, FAILED and
    /// CANCELLED (gate.proto).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// Whether `name` can name a job's environment variable (`JobSpec.env`):
/// letters, digits and `_`, not starting with a digit.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The API version string this build speaks, as exchanged in `Describe`.
pub const API_VERSION: &str = "gantry.v1";

pub use identity::{AgentName, Principal};
