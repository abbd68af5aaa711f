//! ForwardPort: a connection to a port of a running job, relayed to the
//! job's gate as the gate API's ForwardPort. Only bytes pass through
//! gantryd; nothing is stored.

use gantry_proto::v1::{ForwardPortRequest, ForwardPortResponse, GateForwardPortRequest, JobState};
use tokio_stream::StreamExt;
use tonic::{Status, Streaming};

use super::{GantryService, ResponseStream};
use crate::auth::Caller;
use crate::error::{CoreError, FieldError};
use crate::job::state;

impl GantryService {
    /// Relay the connection the caller's first message asks for.
    pub(super) async fn forward(
        &self,
        caller: &Caller,
        mut messages: Streaming<ForwardPortRequest>,
    ) -> Result<ResponseStream<ForwardPortResponse>, Status> {
        let first = messages.message().await?.ok_or_else(|| {
            CoreError::from(FieldError::new(
                "job_id",
                "the first message must name the job and port",
            ))
        })?;
        if first.port == 0 || first.port > u32::from(u16::MAX) {
            let message = format!("{} is not a TCP port; give one from 1 to 65535", first.port);
            return Err(CoreError::from(FieldError::new("port", message)).into());
        }
        let job = self.visible_job(caller, first.job_id).await?;
        if job.state != JobState::Running {
            return Err(CoreError::Precondition(format!(
                "job {} is {}; a port can be forwarded only while the job runs",
                job.id,
                state::name(job.state)
            ))
            .into());
        }
        let site = self.ctx.sites.get(&job.site).unwrap_or_default();
        if !site.can_forward_ports() {
            return Err(CoreError::Precondition(format!(
                "site {} cannot forward ports (its gate does not offer \
                 Capabilities.port_forward); reach the job's node directly",
                job.site
            ))
            .into());
        }
        let mut gate = self.ctx.gate(&job.site).ok_or_else(|| {
            CoreError::Unavailable(format!("site {} is not configured", job.site))
        })?;
        let head = GateForwardPortRequest {
            attempt_id: job.attempt_id.clone(),
            port: first.port,
            data: first.data,
        };
        // A broken client stream ends what goes to the gate; the gate's side
        // is dropped with the answer when the client goes away.
        let rest = messages
            .map_while(Result::ok)
            .map(|m| GateForwardPortRequest {
                data: m.data,
                ..Default::default()
            });
        let answer = gate
            .forward_port(tokio_stream::iter([head]).chain(rest))
            .await
            .map_err(|s| Status::new(s.code(), format!("site {}: {}", job.site, s.message())))?;
        let out = answer
            .into_inner()
            .map(|m| m.map(|m| ForwardPortResponse { data: m.data }));
        Ok(Box::pin(out))
    }
}
