//! `gantryd`: the Gantry daemon.

use std::io::Write;
use std::path::PathBuf;

use clap::Parser;

/// The Gantry daemon: owns the job queue and all state, serves the client API
/// over mTLS, asks the scheduler for plans and drives the gates.
///
/// Configuration comes from the TOML file, then GANTRY_* environment variables
/// (nested keys with `__`, e.g. GANTRY_TLS__CERT), then these flags.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The TOML configuration file.
    #[arg(long, env = "GANTRY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve on; overrides `listen` in the configuration.
    #[arg(long)]
    listen: Option<String>,
    /// Write the bound address here once serving (for supervisors and tests).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

/// mimalloc rather than glibc's malloc: gantryd's batches allocate and free
/// many small rows (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    gantry_proto::tls::install_crypto_provider();
    let telemetry = gantry_proto::telemetry::init("gantryd", "info,sqlx=warn,h2=warn,tower=warn");
    let args = Args::parse();
    let result = async {
        let mut config = gantry_core::Config::load(args.config.as_deref())?;
        if let Some(listen) = args.listen {
            config.listen = listen;
        }
        if args.print_config {
            println!("{}", toml::to_string_pretty(&config)?);
            return Ok(());
        }
        gantry_core::server::run(config, args.ready_file).await
    }
    .await;
    if let Err(e) = result {
        // Not eprintln!: it panics when stderr is on a full disk.
        let _ = writeln!(std::io::stderr(), "gantryd: error: {e:#}");
        // exit() runs no destructor: send the spans still queued first.
        drop(telemetry);
        std::process::exit(1);
    }
}
