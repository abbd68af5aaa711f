//! Reaching a port on a running job's machine (ForwardPort): how a server in
//! a job on a cloud machine, which accepts no inbound connection, is reached.

use gantry_proto::splice::{SPLICE_BUFFER, SPLICE_CHUNK, splice};
use gantry_proto::v1::ForwardPortRequest;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::Client;
use crate::error::Result;

impl Client {
    /// A connection to `port` on the machine of running job `job_id`, as the
    /// job's own processes reach it, carried through gantryd and the job's
    /// gate. Read and write it as a TCP stream; dropping it closes the
    /// connection. Fails at once when the job does not run, its site cannot
    /// forward ports, or nothing listens on the port (UNAVAILABLE: retry).
    pub async fn connect_port(&self, job_id: u64, port: u16) -> Result<DuplexStream> {
        let (out, rx) = mpsc::channel(SPLICE_BUFFER);
        let first = ForwardPortRequest {
            job_id,
            port: u32::from(port),
            data: Vec::new(),
        };
        out.try_send(Ok(first)).expect("an empty channel has room");
        let sent = ReceiverStream::new(rx).map_while(|m: Result<_, tonic::Status>| m.ok());
        let answer = self.raw().forward_port(sent).await?.into_inner();
        let incoming = answer.map(|m| m.map(|m| m.data));
        let (near, far) = tokio::io::duplex(2 * SPLICE_CHUNK);
        tokio::spawn(splice(far, incoming, out, |data| ForwardPortRequest {
            data,
            ..Default::default()
        }));
        Ok(near)
    }
}
