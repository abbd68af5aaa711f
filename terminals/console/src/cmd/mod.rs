//! One module per subcommand; [`run`] dispatches.

pub mod cancel;
pub mod dev;
pub mod forward;
pub mod hold;
pub mod logs;
pub mod ls;
pub mod outputs;
pub mod pki;
pub mod release;
pub mod show;
pub mod sites;
pub mod submit;
pub mod wait;
pub mod watch;

use gantry_client::{Client, ClientConfig, JobRef};

use crate::cli::{Cli, Command};

/// The job id `reference` names: itself, or the task of an array (`17_3`).
pub async fn job_id(client: &Client, reference: JobRef) -> anyhow::Result<u64> {
    Ok(match reference.index {
        None => reference.id,
        Some(_) => client.resolve(reference).await?.id,
    })
}

/// What every command may use: the global flags and a way to connect.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Print JSON instead of text.
    pub json: bool,
}

impl Ctx {
    /// Find gantryd and connect to it; a failure says what to do.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let config = ClientConfig::discover()?;
        Client::connect(&config).await.map_err(|error| match error {
            gantry_client::Error::Connect { .. } => {
                anyhow::anyhow!("{error} — is `gantry dev` running?")
            }
            other => other.into(),
        })
    }
}

/// Run the command line; the answer is the process's exit status.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let ctx = Ctx { json: cli.json };
    match cli.command {
        Command::Submit(args) => submit::run(&ctx, *args).await,
        Command::Ls(args) => ls::run(&ctx, args).await,
        Command::Show(args) => show::run(&ctx, args).await,
        Command::Cancel(args) => cancel::run(&ctx, args).await,
        Command::Hold(args) => hold::run(&ctx, args).await,
        Command::Release(args) => release::run(&ctx, args).await,
        Command::Logs(args) => logs::run(&ctx, args).await,
        Command::Wait(args) => wait::run(&ctx, args).await,
        Command::Watch(args) => watch::run(&ctx, args).await,
        Command::Forward(args) => forward::run(&ctx, args).await,
        Command::Outputs(args) => outputs::run(&ctx, args).await,
        Command::Sites(args) => sites::run(&ctx, args).await,
        Command::Pki(args) => pki::run(&ctx, args),
        Command::Dev(args) => dev::run(&ctx, args).await,
    }
}
