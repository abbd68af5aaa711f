//! A harness that runs the real Gantry binaries as separate processes on
//! loopback, each with its own directory and log, over real mTLS with
//! certificates made at test time. Binaries are found next to the test
//! executable (`target/<profile>/`); build them first (`scripts/test` does).

pub mod accounts;
pub mod as_alice;
pub mod cloud;
mod database;
pub mod ec2_faults;
pub mod echo;
pub mod faults;
pub mod kit;
mod process;
pub mod services;

use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_client::{Client, ClientConfig};
use gantry_proto::Principal;
use gantry_proto::pki::Pki;
use gantry_proto::tls::TlsFiles;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use database::{Postgres, create_database, shared_postgres};
pub use process::Process;

pub mod bench;

/// Run a command to its end: exit code (-1 if killed), stdout, stderr.
pub fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("run the command");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where the binaries are: `GANTRY_BIN_DIR`, else the profile folder of the running test or binary.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GANTRY_BIN_DIR") {
        return PathBuf::from(dir);
    }
    // A test runs from <profile>/deps, a binary of this crate from <profile>.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("profile dir").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// Poll `probe` every 100 ms until it gives a value; after `within`, fail
/// naming `what` and showing the last thing the probe saw (its `Err`).
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = match probe().await {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; last seen:\n{seen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The host of the ssh_config `scripts/sshd` writes.
pub const SSH_HOST: &str = "gantry-test-login";

/// Options for a cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// CPUs the local gate offers.
    pub cpus: u32,
    /// Admin user names.
    pub admins: Vec<String>,
    /// Extra gate entries in gantryd's config that point at the local
    /// gate's address under another name (an impostor, to test identity).
    pub aliases: Vec<String>,
    /// Extra gate entries in gantryd's config: a name and a port of
    /// 127.0.0.1 where the test serves a gate of its own.
    pub other_gates: Vec<(String, u16)>,
    /// gantryd's database; `None` picks the suite's default
    /// (see [`shared_postgres`]).
    pub database_url: Option<String>,
    /// Run jobs on the Slurm cluster of this `slurm.conf` (site `slurm`,
    /// `gantry-gate-slurm`) instead of this machine (site `local`).
    pub slurm_conf: Option<PathBuf>,
    /// With `slurm_conf`: reach the cluster the way a gate reaches a login
    /// node, over SSH to the host `gantry-test-login` of this ssh_config
    /// (written by `scripts/sshd`), its work directory in the login user's
    /// home (or `gate_work_dir`, on this same machine).
    pub ssh_config: Option<PathBuf>,
    /// With `ssh_config`: the account to log in as (`root` for jobs run as
    /// their owners); `None`: the ssh_config's.
    pub ssh_login: Option<String>,
    /// Run jobs on the Grid Engine cell of this `sge.env` (site `sge`,
    /// `gantry-gate-sge`; see [`services::sge_env`]); with `ssh_config`,
    /// over SSH as with Slurm.
    pub sge_env: Option<PathBuf>,
    /// gantryd's state directory (its SQLite database, logs and outputs);
    /// `None`: `core/` in the cluster's directory.
    pub core_state_dir: Option<PathBuf>,
    /// A command gantryd runs under (see [`Process::start_wrapped`]).
    pub core_wrapper: Vec<String>,
    /// The gate's work directory (on this machine); `None`: a directory
    /// named after the site in the cluster's directory.
    pub gate_work_dir: Option<PathBuf>,
    /// The local gate's `--queue-factor`; `None`: its default.
    pub queue_factor: Option<u32>,
    /// Run jobs on EC2 (site `aws`, `gantry-gate-aws`) against moto, with
    /// a [`cloud::MachinePlayer`] playing the machines.
    pub aws: Option<AwsSite>,
    /// The gate's flags of whose account jobs run as (`--run-as`,
    /// `--user-map`, ...): by default `--run-as gate`, since the suite's
    /// users (alice, bob) have no Unix accounts.
    pub run_as: Vec<String>,
    /// Serve Prometheus metrics from gantryd, the scheduler and the gate
    /// (`--metrics-listen` / `metrics_listen` on free ports; see
    /// [`Cluster::metrics`]).
    pub metrics: bool,
    /// Environment variables for every process the cluster starts (e.g.
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub env: Vec<(String, String)>,
}

/// Where a cluster's processes serve their metrics (`127.0.0.1:PORT`).
#[derive(Debug, Clone)]
pub struct MetricsAddrs {
    /// gantryd's.
    pub core: String,
    /// gantry-sched's.
    pub sched: String,
    /// The gate's.
    pub gate: String,
}

/// The AWS site of a cluster.
#[derive(Debug, Clone)]
pub struct AwsSite {
    /// moto's endpoint ([`cloud::moto_endpoint`]).
    pub endpoint: String,
    /// The instance types offered (`--instance-types`).
    pub instance_types: String,
    /// The AMI machines boot (`--image`).
    pub image: String,
    /// gantryd's idle timeout for the site's partitions, in seconds.
    pub idle_timeout_seconds: u64,
    /// More flags for the gate (e.g. `--agent-timeout 5`).
    pub gate_args: Vec<String>,
    /// Stage files through an S3 bucket (`--bucket`, named after the
    /// installation and made in moto before the gate starts).
    pub staging: bool,
    /// Whether [`Cluster::start`] waits for the site to be healthy (false
    /// for tests of a gate whose settings EC2 refuses).
    pub healthy: bool,
}

impl AwsSite {
    /// The site on moto at `endpoint`, offering t3.micro and t3.small.
    pub fn on(endpoint: String) -> Self {
        Self {
            endpoint,
            instance_types: "t3.micro,t3.small".into(),
            image: cloud::TEST_IMAGE.into(),
            idle_timeout_seconds: 300,
            gate_args: Vec::new(),
            staging: true,
            healthy: true,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cpus: 2,
            admins: vec!["root".into()],
            aliases: Vec::new(),
            other_gates: Vec::new(),
            database_url: None,
            slurm_conf: None,
            ssh_config: None,
            ssh_login: None,
            sge_env: None,
            core_state_dir: None,
            core_wrapper: Vec::new(),
            gate_work_dir: None,
            queue_factor: None,
            aws: None,
            run_as: vec!["--run-as".into(), "gate".into()],
            metrics: false,
            env: Vec::new(),
        }
    }
}

/// gantryd, gantry-sched and a gate (gantry-gate-local, or
/// gantry-gate-slurm), each a real process.
pub struct Cluster {
    dir: tempfile::TempDir,
    pki: Pki,
    /// The gate's work directory (on this machine; over SSH see `remote`).
    work_dir: PathBuf,
    /// The gate's site name: `local` or `slurm`.
    pub site: String,
    /// The core.
    pub core: Process,
    /// The scheduler.
    pub sched: Process,
    /// The local gate.
    pub gate: Process,
    /// Over SSH: the ssh_config and the gate's work directory on the login node.
    pub remote: Option<(PathBuf, String)>,
    /// The installation's name (`e2e`; unique per cluster on AWS, whose
    /// tags moto shares among the tests).
    pub installation: String,
    /// On AWS: the stand-in that plays the machines.
    pub machines: Option<cloud::MachinePlayer>,
    /// With [`Options::metrics`]: where each process serves them.
    pub metrics: Option<MetricsAddrs>,
}

impl Drop for Cluster {
    /// Stop the processes, then the local gate's supervisor (it outlives
    /// its gate by design, and would stop only once idle), before the
    /// directory goes.
    fn drop(&mut self) {
        self.core.stop();
        self.gate.stop();
        self.sched.stop();
        if let Some((config, work)) = &self.remote {
            let _ = std::process::Command::new("ssh")
                .args([
                    "-F",
                    &config.display().to_string(),
                    SSH_HOST,
                    "rm",
                    "-rf",
                    work,
                ])
                .status();
        }
        let lock = self.work_dir.join("supervisor.lock");
        if let Some(pid) = std::fs::read_to_string(lock)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let stat = format!("/proc/{pid}/stat");
            let runs = || {
                std::fs::read_to_string(&stat)
                    .is_ok_and(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while runs() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn tls_of(pki: &Pki, principal: &Principal) -> TlsFiles {
    let paths = pki.ensure(principal, &[]).expect("issue certificate");
    TlsFiles {
        ca: pki.ca_path(),
        cert: paths.cert,
        key: paths.key,
    }
}

impl Cluster {
    /// Start the three processes and wait until each is ready.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        gantry_proto::tls::install_crypto_provider();
        let dir = tempfile::Builder::new().prefix("gantry-e2e-").tempdir()?;
        let installation = match &options.aws {
            None => "e2e".to_string(),
            Some(_) => {
                let name = dir.path().file_name().expect("named").to_string_lossy();
                name.trim_start_matches("gantry-").to_ascii_lowercase()
            }
        };
        let pki = Pki::init(&dir.path().join("pki"), &installation)?;
        let site = if options.slurm_conf.is_some() {
            "slurm"
        } else if options.sge_env.is_some() {
            "sge"
        } else if options.aws.is_some() {
            "aws"
        } else {
            "local"
        };
        for p in [
            Principal::Core,
            Principal::Scheduler,
            Principal::Gate(site.into()),
        ] {
            pki.issue(&p, &[])?;
        }
        let pki_dir = dir.path().join("pki");
        let pki_arg = pki_dir.display().to_string();
        let metrics = options.metrics.then(|| {
            // Three distinct ports: each held until all are chosen.
            let held: Vec<std::net::TcpListener> = (0..3)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
                .collect();
            let addr = |i: usize| held[i].local_addr().expect("bound").to_string();
            MetricsAddrs {
                core: addr(0),
                sched: addr(1),
                gate: addr(2),
            }
        });
        let mut sched_args = vec!["--listen", "127.0.0.1:0", "--pki-dir", &pki_arg];
        if let Some(m) = &metrics {
            sched_args.extend(["--metrics-listen", m.sched.as_str()]);
        }
        let extra: Vec<(&str, &str)> = options
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let sched =
            Process::start_with_env("gantry-sched", dir.path(), &sched_args, &extra).await?;
        let work = options
            .gate_work_dir
            .clone()
            .unwrap_or_else(|| dir.path().join(site))
            .display()
            .to_string();
        let common = [
            "--name",
            site,
            "--listen",
            "127.0.0.1:0",
            "--pki-dir",
            &pki_arg,
        ];
        let remote = options.ssh_config.as_ref().map(|config| {
            let name = dir.path().file_name().expect("named").to_string_lossy();
            let work = match &options.gate_work_dir {
                Some(work) => work.display().to_string(),
                None => format!("gantry-e2e/{name}"),
            };
            (config.clone(), work)
        });
        let ssh_config = remote.as_ref().map(|(c, _)| c.display().to_string());
        let destination = match &options.ssh_login {
            Some(login) => format!("{login}@{SSH_HOST}"),
            None => SSH_HOST.to_string(),
        };
        let common = match (&remote, &ssh_config) {
            (Some((_, work)), Some(config)) => [
                &common[..],
                &[
                    "--work-dir",
                    work,
                    "--ssh",
                    &destination,
                    "--ssh-config",
                    config,
                ],
            ]
            .concat(),
            _ => [&common[..], &["--work-dir", &work]].concat(),
        };
        let common = match &metrics {
            Some(m) => [&common[..], &["--metrics-listen", m.gate.as_str()]].concat(),
            None => common,
        };
        let gate = match (&options.slurm_conf, &options.aws) {
            (_, Some(aws)) => {
                pki.issue_agent_issuer(site)?;
                let agent_listen = format!("127.0.0.1:{}", free_port());
                let state = dir.path().join("aws-state").display().to_string();
                let mut args: Vec<&str> = vec![
                    "--name",
                    site,
                    "--listen",
                    "127.0.0.1:0",
                    "--pki-dir",
                    &pki_arg,
                    "--agent-listen",
                    &agent_listen,
                    "--state-dir",
                    &state,
                    "--instance-types",
                    &aws.instance_types,
                    "--image",
                    &aws.image,
                    "--endpoint-url",
                    &aws.endpoint,
                ];
                if aws.staging {
                    cloud::create_bucket(&aws.endpoint, &installation).await;
                    args.extend(["--bucket", installation.as_str()]);
                }
                args.extend(aws.gate_args.iter().map(String::as_str));
                if let Some(m) = &metrics {
                    args.extend(["--metrics-listen", m.gate.as_str()]);
                }
                let env = [&cloud::AWS_ENV[..], &extra].concat();
                Process::start_with_env("gantry-gate-aws", dir.path(), &args, &env).await?
            }
            (None, None) if options.sge_env.is_some() => {
                let vars = services::sge_vars(options.sge_env.as_deref().expect("checked"));
                let mut env: Vec<(&str, &str)> =
                    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                env.extend(&extra);
                let mut args = [&common[..], &["--poll", "0.25"]].concat();
                args.extend(options.run_as.iter().map(String::as_str));
                Process::start_with_env("gantry-gate-sge", dir.path(), &args, &env).await?
            }
            (None, None) => {
                let cpus = options.cpus.to_string();
                let mut args = [&common[..], &["--cpus", &cpus]].concat();
                let factor = options.queue_factor.map(|f| f.to_string());
                if let Some(factor) = &factor {
                    args.extend(["--queue-factor", factor.as_str()]);
                }
                args.extend(options.run_as.iter().map(String::as_str));
                Process::start_with_env("gantry-gate-local", dir.path(), &args, &extra).await?
            }
            (Some(conf), None) => {
                let conf = conf.display().to_string();
                let mut args = [&common[..], &["--slurm-conf", &conf, "--poll", "0.25"]].concat();
                args.extend(options.run_as.iter().map(String::as_str));
                Process::start_with_env("gantry-gate-slurm", dir.path(), &args, &extra).await?
            }
        };
        let config = dir.path().join("gantryd.toml");
        let core_tls = tls_of(&pki, &Principal::Core);
        let admins: Vec<String> = options.admins.iter().map(|a| format!("{a:?}")).collect();
        std::fs::write(
            &config,
            format!(
                "installation = {installation:?}\nlisten = \"127.0.0.1:0\"\nstate_dir = {:?}\nadmins = [{}]\n\
                 [tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n\
                 [scheduler]\naddress = \"https://127.0.0.1:{}\"\n\
                 [[gates]]\nname = {site:?}\naddress = \"https://127.0.0.1:{}\"\nidle_timeout_seconds = {}\n\
                 [[services]]\nname = \"jupyterhub\"\nact_for_users = true\n\
                 [[services]]\nname = \"monitor\"\n",
                options
                    .core_state_dir
                    .clone()
                    .unwrap_or_else(|| dir.path().join("core")),
                admins.join(", "),
                core_tls.ca,
                core_tls.cert,
                core_tls.key,
                sched.addr.port(),
                gate.addr.port(),
                options.aws.as_ref().map_or(300, |a| a.idle_timeout_seconds),
            ),
        )?;
        let mut text = std::fs::read_to_string(&config)?;
        let aliases = options.aliases.iter().map(|a| (a, gate.addr.port()));
        for (name, port) in aliases.chain(options.other_gates.iter().map(|(n, p)| (n, *p))) {
            text.push_str(&format!(
                "[[gates]]\nname = {name:?}\naddress = \"https://127.0.0.1:{port}\"\n"
            ));
        }
        let database_url = match options.database_url.clone() {
            Some(url) => Some(url),
            None => database::database_for_cluster()?,
        };
        if let Some(url) = database_url {
            // A top-level key: it must come before the first [table].
            text.insert_str(0, &format!("database_url = {url:?}\n"));
        }
        if let Some(m) = &metrics {
            text.insert_str(0, &format!("metrics_listen = {:?}\n", m.core));
        }
        std::fs::write(&config, text)?;
        let core = Process::launch(
            &options.core_wrapper,
            "gantryd",
            dir.path(),
            &["--config", &config.display().to_string()],
            &extra,
        )
        .await?;
        let machines = match &options.aws {
            Some(aws) => Some(cloud::MachinePlayer::start(
                cloud::ec2_client(&aws.endpoint).await,
                &installation,
                dir.path(),
            )),
            None => None,
        };
        let cluster = Self {
            installation,
            machines,
            work_dir: PathBuf::from(&work),
            dir,
            pki,
            site: site.to_string(),
            core,
            sched,
            gate,
            remote,
            metrics,
        };
        if options.aws.as_ref().is_none_or(|aws| aws.healthy) {
            cluster.wait_site_healthy().await?;
        }
        Ok(cluster)
    }

    /// The scratch directory of this cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The PKI of this cluster.
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// Client settings for a user (the certificate is issued on first use).
    pub fn config_for(&self, principal: &Principal) -> ClientConfig {
        ClientConfig {
            address: format!("https://127.0.0.1:{}", self.core.addr.port()),
            tls: tls_of(&self.pki, principal),
        }
    }

    /// A connected client for user `name`.
    pub async fn user(&self, name: &str) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.config_for(&Principal::User(name.into()))).await?)
    }

    /// The `gantry` CLI, set up to act as user `name`.
    pub fn cli(&self, name: &str) -> std::process::Command {
        let config = self.config_for(&Principal::User(name.into()));
        let mut cmd = std::process::Command::new(bin_dir().join("gantry"));
        cmd.env("GANTRY_ADDR", &config.address)
            .env("GANTRY_CA", &config.tls.ca)
            .env("GANTRY_CERT", &config.tls.cert)
            .env("GANTRY_KEY", &config.tls.key)
            .current_dir(self.dir.path());
        cmd
    }

    /// Wait until gantryd reports the gate's site healthy.
    pub async fn wait_site_healthy(&self) -> anyhow::Result<()> {
        let client = self.user("root").await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let sites = client.sites().await?;
            if sites.iter().any(|s| s.name == self.site && s.healthy) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "site {} never became healthy: {sites:?}\n{}\n{}",
                    self.site,
                    self.core.log_tail(),
                    self.gate.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
