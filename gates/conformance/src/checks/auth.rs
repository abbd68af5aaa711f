//! Only gantryd may call a gate: the core's certificate from the
//! installation's CA, nothing else.

use gantry_proto::tls::TlsFiles;
use gantry_proto::v1::DescribeRequest;
use gantry_proto::v1::gate_client::GateClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::report::Outcome;
use crate::run::{Run, said};

async fn refused(client: anyhow::Result<GateClient<Channel>>, allowed: &[Code]) -> Outcome {
    let mut client = match client {
        Ok(client) => client,
        Err(e) => return Outcome::Skip(format!("cannot make the caller: {e:#}")),
    };
    match client.describe(DescribeRequest::default()).await {
        Ok(_) => Outcome::fail("Describe answered"),
        Err(status) if allowed.is_empty() || allowed.contains(&status.code()) => {
            Outcome::Pass(said("Describe", &status))
        }
        Err(status) => Outcome::fail(format!(
            "refused, but with {} (expected PERMISSION_DENIED or UNAUTHENTICATED)",
            said("Describe", &status)
        )),
    }
}

/// Another identity of the installation (the scheduler's) is refused
/// with PERMISSION_DENIED or UNAUTHENTICATED.
pub async fn core_only(run: &Run) -> Outcome {
    let tls = TlsFiles::in_dir(&run.target.pki_dir, "scheduler");
    if !tls.cert.exists() {
        return Outcome::Skip(format!(
            "{} not found: no other identity to try",
            tls.cert.display()
        ));
    }
    refused(
        run.target.client_as(&tls),
        &[Code::PermissionDenied, Code::Unauthenticated],
    )
    .await
}

/// A caller with no certificate gets nothing (the handshake or the call fails).
pub async fn no_certificate(run: &Run) -> Outcome {
    refused(run.target.anonymous_client(), &[]).await
}

/// A `core` certificate from another CA gets nothing.
pub async fn foreign_ca(run: &Run) -> Outcome {
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return Outcome::Skip(format!("no scratch directory: {e}")),
    };
    refused(run.target.foreign_core_client(scratch.path()), &[]).await
}
