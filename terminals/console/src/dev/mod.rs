//! The `gantry dev` supervisor: a PKI, then gantry-sched, gantry-gate-local
//! and gantryd as separate processes, a client profile, and an orderly stop.

mod child;
pub mod files;
mod pdeathsig;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use gantry_proto::Principal;
use gantry_proto::identity::is_valid_name;
use gantry_proto::pki::Pki;
use gantry_proto::tls::TlsFiles;
use tokio::signal::unix::{Signal, SignalKind, signal};

use child::Child;
use files::{Endpoint, GantrydConfig, Layout, NamedEndpoint, https};

/// A line for the person who started `gantry dev`. Should nobody read any
/// more (`gantry dev | head`), the processes run on until Ctrl-C stops them
/// in order: a failed write is ignored, not fatal.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// How long a process may take to write its ready file.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How many restarts of children within a minute `gantry dev` tolerates.
const MAX_RESTARTS: usize = 5;
/// How long a process may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What `gantry dev` was asked to do.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// The state directory.
    pub state_dir: PathBuf,
    /// Delete the state directory first.
    pub fresh: bool,
    /// CPUs the local gate offers.
    pub cpus: Option<u32>,
    /// Where the server binaries are.
    pub bin_dir: PathBuf,
}

/// SIGINT and SIGTERM, as one stream.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// The dev user's name: `$USER` when it is a valid name, else `dev`.
fn dev_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| is_valid_name(u))
        .unwrap_or_else(|| "dev".into())
}

/// Run until a signal or a child's death; stops everything in order.
pub async fn run(options: DevOptions) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let layout = Layout {
        root: options.state_dir.clone(),
    };
    if options.fresh {
        layout.wipe()?;
    }
    layout.create()?;
    let lock_file = std::fs::File::create(layout.lock())?;
    let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|_| {
            anyhow::anyhow!(
                "another `gantry dev` is running with state directory {}; stop it first",
                layout.root.display()
            )
        })?;
    let user = dev_user();
    let (pki, user_tls) = make_pki(&layout, &user)?;
    let mut children: Vec<Child> = Vec::new();
    let started = tokio::select! {
        result = start(&layout, &options, &pki, &mut children) => result,
        _ = signals.recv() => Err(anyhow::anyhow!("interrupted while starting")),
    };
    let address = match started {
        Ok(address) => address,
        Err(error) => {
            stop_all(&mut children, &mut signals).await;
            return Err(error);
        }
    };
    let profile = layout.profile();
    files::write_atomic(&profile, &files::profile_text(Some(&address), &user_tls)?)?;
    print_welcome(&layout, &address, pki.installation(), &user);

    let outcome = supervise(&mut children, &mut signals).await;
    eprintln!("gantry dev: stopping");
    stop_all(&mut children, &mut signals).await;
    files::write_atomic(&profile, &files::profile_text(None, &user_tls)?)?;
    outcome
}

/// The CA and the certificates of every process and the dev user.
fn make_pki(layout: &Layout, user: &str) -> anyhow::Result<(Pki, TlsFiles)> {
    let pki = Pki::init(&layout.pki(), "gantry")?;
    for principal in [
        Principal::Core,
        Principal::Scheduler,
        Principal::Gate("local".into()),
        Principal::User(user.into()),
    ] {
        pki.ensure(&principal, &[])?;
    }
    let user_tls = TlsFiles::in_dir(&layout.pki(), &format!("user-{user}"));
    Ok((pki, user_tls))
}

/// Start the scheduler, the gate and gantryd, each once the previous is
/// ready; the answer is gantryd's address.
async fn start(
    layout: &Layout,
    options: &DevOptions,
    pki: &Pki,
    children: &mut Vec<Child>,
) -> anyhow::Result<String> {
    let run = layout.run();
    let pki_dir = layout.pki().display().to_string();
    let arg = |p: PathBuf| p.display().to_string();
    for stale in ["sched.addr", "gate-local.addr", "gantryd.addr"] {
        let _ = std::fs::remove_file(run.join(stale));
    }

    let sched_ready = run.join("sched.addr");
    let args = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--ready-file".into(),
        arg(sched_ready.clone()),
        "--pki-dir".into(),
        pki_dir.clone(),
    ];
    let sched = spawn(children, options, layout, "gantry-sched", &args)?;
    let sched_addr = sched.wait_ready(&sched_ready, READY_TIMEOUT).await?;

    let gate_ready = run.join("gate-local.addr");
    let mut args = vec![
        "--name".into(),
        "local".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--ready-file".into(),
        arg(gate_ready.clone()),
        "--pki-dir".into(),
        pki_dir,
        "--work-dir".into(),
        arg(layout.local()),
        // One person's installation: every job is theirs and runs as them.
        "--run-as".into(),
        "gate".into(),
    ];
    if let Some(cpus) = options.cpus {
        args.extend(["--cpus".into(), cpus.to_string()]);
    }
    let gate = spawn(children, options, layout, "gantry-gate-local", &args)?;
    let gate_addr = gate.wait_ready(&gate_ready, READY_TIMEOUT).await?;

    let config = GantrydConfig {
        installation: pki.installation().to_string(),
        listen: "127.0.0.1:0".into(),
        state_dir: layout.core(),
        admins: Vec::new(),
        tls: TlsFiles::in_dir(&layout.pki(), "core"),
        scheduler: Endpoint {
            address: https(sched_addr),
        },
        gates: vec![NamedEndpoint {
            name: "local".into(),
            address: https(gate_addr),
        }],
    };
    let config_path = layout.gantryd_config();
    files::write_atomic(&config_path, &toml::to_string(&config)?)?;
    let core_ready = run.join("gantryd.addr");
    let args = vec![
        "--config".into(),
        arg(config_path),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--ready-file".into(),
        arg(core_ready.clone()),
    ];
    let core = spawn(children, options, layout, "gantryd", &args)?;
    Ok(https(core.wait_ready(&core_ready, READY_TIMEOUT).await?))
}

/// Start one binary from the bin directory and keep it in `children`.
fn spawn<'a>(
    children: &'a mut Vec<Child>,
    options: &DevOptions,
    layout: &Layout,
    name: &str,
    args: &[String],
) -> anyhow::Result<&'a mut Child> {
    let child = Child::spawn(&options.bin_dir.join(name), args, &layout.log(name))?;
    children.push(child);
    Ok(children.last_mut().expect("just pushed"))
}

/// Wait for a signal (a clean stop). A child that dies is started again on
/// its address, as a service manager would, and recovers its state from
/// disk; one that keeps dying (more than `MAX_RESTARTS` within a minute) ends
/// `gantry dev` with an error.
async fn supervise(children: &mut [Child], signals: &mut Signals) -> anyhow::Result<()> {
    let mut restarts: Vec<std::time::Instant> = Vec::new();
    loop {
        let exits = children
            .iter_mut()
            .enumerate()
            .map(|(i, child)| Box::pin(async move { (i, child.exited().await) }));
        let died = tokio::select! {
            _ = signals.recv() => None,
            ((index, status), _, _) = futures::future::select_all(exits) => Some((index, status)),
        };
        let Some((index, status)) = died else {
            return Ok(());
        };
        let child = &mut children[index];
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        restarts.retain(|t| t.elapsed() < Duration::from_secs(60));
        if restarts.len() >= MAX_RESTARTS {
            bail!(
                "{} exited unexpectedly ({status}) and keeps dying; {}",
                child.name,
                child.tail()
            );
        }
        restarts.push(std::time::Instant::now());
        eprintln!(
            "gantry dev: {} exited unexpectedly ({status}); starting it again",
            child.name
        );
        tokio::select! {
            result = child.restart(READY_TIMEOUT) => result?,
            _ = signals.recv() => return Ok(()),
        }
        eprintln!("gantry dev: {} is back", child.name);
    }
}

/// Stop the children in reverse start order (gantryd, gate, scheduler). A
/// second signal kills whatever is left at once.
async fn stop_all(children: &mut [Child], signals: &mut Signals) {
    let stopping = async {
        for child in children.iter_mut().rev() {
            child.stop(STOP_GRACE).await;
        }
    };
    let interrupted = tokio::select! {
        _ = stopping => false,
        _ = signals.recv() => true,
    };
    if interrupted {
        eprintln!("gantry dev: killing everything");
        for child in children.iter_mut() {
            child.kill();
        }
        for child in children.iter_mut() {
            let _ = child.exited().await;
        }
    }
}

fn print_welcome(layout: &Layout, address: &str, installation: &str, user: &str) {
    let profile = layout.profile();
    let default = gantry_client::default_dev_state_dir().join(gantry_client::DEV_PROFILE_FILE);
    say!(
        "gantry dev: gantryd is ready at {address} (installation `{installation}`, you are user/{user})"
    );
    say!();
    if profile == default {
        say!(
            "  profile  {} (gantry finds it by itself)",
            profile.display()
        );
    } else {
        say!("  profile  {}", profile.display());
        say!("           export GANTRY_PROFILE={}", profile.display());
    }
    say!(
        "  logs     {}/{{gantryd,gantry-sched,gantry-gate-local}}.log",
        layout.logs().display()
    );
    say!("  state    {}", layout.root.display());
    say!();
    say!("Try, in another terminal:");
    say!("  gantry submit -- echo hello");
    say!("  gantry ls");
    say!("  gantry logs 1");
    say!("  gantry sites");
    say!();
    say!("Press Ctrl-C to stop.");
}
