//! Who may call a gate: only the core of the gate's own installation.

use gantry_proto::Principal;
use gantry_proto::identity::IdentityError;
use tonic::{Request, Status};

/// Allow the call only when the peer's certificate names the core of
/// `installation`: no usable identity is UNAUTHENTICATED, anyone else is
/// PERMISSION_DENIED.
pub fn authorize_core<T>(request: &Request<T>, installation: &str) -> Result<(), Status> {
    match Principal::from_request(request, installation) {
        Ok(Principal::Core) => Ok(()),
        Ok(other) => Err(Status::permission_denied(format!(
            "only the core ({}) may call a gate; the caller is {other}",
            Principal::Core.uri(installation)
        ))),
        Err(err @ IdentityError::WrongInstallation { .. }) => {
            Err(Status::permission_denied(err.to_string()))
        }
        Err(err) => Err(Status::unauthenticated(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn a_request_without_a_certificate_is_unauthenticated() {
        let err = authorize_core(&Request::new(()), "gantry").unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
}
