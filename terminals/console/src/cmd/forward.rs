//! `gantry forward`: reach a port on a running job's machine from this one.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gantry_client::{Client, JobState, is_end_state, state_name};
use tokio::net::{TcpListener, TcpStream};

use crate::cmd::{Ctx, job_id};

/// How often the job's state is looked at while forwarding.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// Arguments of `gantry forward`.
#[derive(Args, Debug)]
#[command(after_help = "\
Like `ssh -L`: a connection to the local port reaches PORT on the job's machine
as the job's own processes reach it (its loopback where the site can). The
bytes go through gantryd and the job's gate; the machine accepts no inbound
connection, so this is how a server in a job on a cloud machine is reached.
Waits for a queued job to run; stops when the job ends. Prints the local
address on stdout.

Examples:
  gantry forward 42 8888                   # then open http://127.0.0.1:8888
  gantry forward 42 8888 --local-port 0    # any free local port")]
pub struct ForwardArgs {
    /// The job id
    id: gantry_client::JobRef,
    /// The TCP port on the job's machine
    port: u16,
    /// The local port on 127.0.0.1 (default: the same as PORT; 0 picks a free one)
    #[arg(long)]
    local_port: Option<u16>,
}

/// Run `gantry forward`.
pub async fn run(ctx: &Ctx, args: ForwardArgs) -> anyhow::Result<i32> {
    let client = Arc::new(ctx.connect().await?);
    let id = job_id(&client, args.id).await?;
    if !wait_running(&client, id).await? {
        return Ok(1);
    }
    let local = args.local_port.unwrap_or(args.port);
    let listener = TcpListener::bind(("127.0.0.1", local))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{local}: {e}"))?;
    let address = listener.local_addr()?;
    crate::out!("{address}");
    eprintln!(
        "Forwarding {address} to port {} of job {id} (Ctrl-C to stop)",
        args.port
    );
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (conn, _) = accepted?;
                tokio::spawn(carry(client.clone(), id, args.port, conn));
            }
            ended = until_ended(&client, id) => {
                let state = ended?;
                eprintln!("job {id} is {}; forwarding stopped", state_name(state));
                return Ok(0);
            }
        }
    }
}

/// Wait until job `id` runs; false (having said why) when it ended first.
async fn wait_running(client: &Client, id: u64) -> anyhow::Result<bool> {
    let mut said = false;
    loop {
        let job = client.get(id).await?;
        match job.state() {
            JobState::Running => return Ok(true),
            state if is_end_state(state) => {
                eprintln!("job {id} is {}; nothing to forward to", state_name(state));
                return Ok(false);
            }
            state => {
                if !said {
                    eprintln!("job {id} is {}; waiting for it to run", state_name(state));
                    said = true;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The state job `id` ended in, once it ended.
async fn until_ended(client: &Client, id: u64) -> anyhow::Result<JobState> {
    loop {
        tokio::time::sleep(LOOK_EVERY).await;
        let state = client.get(id).await?.state();
        if is_end_state(state) {
            return Ok(state);
        }
    }
}

/// Carry one local connection to the job's port.
async fn carry(client: Arc<Client>, id: u64, port: u16, mut conn: TcpStream) {
    match client.connect_port(id, port).await {
        Ok(mut remote) => {
            let _ = tokio::io::copy_bidirectional(&mut conn, &mut remote).await;
        }
        Err(e) => eprintln!("gantry: port {port} of job {id}: {e}"),
    }
}
