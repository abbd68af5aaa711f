//! Port forwarding (`ForwardPort`): checking a port, and connecting to one
//! on this machine for a running attempt.

use gantry_proto::v1::{GateJob, GateJobState};
use tokio::net::TcpStream;

use crate::error::{GateError, Result};
use crate::ids::AttemptId;
use crate::provider::Connection;

/// `port` as a TCP port, 1-65535.
pub fn port_number(field: &str, port: u32) -> Result<u16> {
    match u16::try_from(port) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(GateError::invalid(
            field,
            format!("{port} is not a TCP port; give one from 1 to 65535"),
        )),
    }
}

/// Connect to `port` on this machine's loopback for `job`, which must be
/// running: how the local gate and node agents forward a port.
pub async fn connect_loopback(
    attempt: &AttemptId,
    job: &GateJob,
    port: u16,
) -> Result<Box<dyn Connection>> {
    if job.state() != GateJobState::Running {
        return Err(GateError::FailedPrecondition(format!(
            "attempt {attempt} is not running; a port can be forwarded only while it runs"
        )));
    }
    match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream))
        }
        Err(e) => Err(GateError::Unavailable(format!(
            "nothing answers on port {port} of attempt {attempt}'s machine ({e}); \
             is its server listening yet?"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_one_to_65535() {
        assert_eq!(port_number("port", 8888).unwrap(), 8888);
        for bad in [0, 65536, u32::MAX] {
            let err = port_number("port", bad).unwrap_err().to_string();
            assert!(err.starts_with("port: "), "{err}");
        }
    }
}
