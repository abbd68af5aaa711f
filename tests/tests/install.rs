//! The production install of docs/install.md: the service units in
//! `deploy/systemd/` pass `systemd-analyze verify`, and their command lines,
//! with `deploy/gantryd.toml`, run Gantry as separate processes that take a
//! job to its end. systemd itself does not run here: the units' ExecStart
//! lines are what runs, with the installation's paths moved into a
//! temporary directory and its ports onto free ones.

use std::path::{Path, PathBuf};

use gantry_client::{Client, ClientConfig, JobSpec, JobState};
use gantry_e2e::accounts::{UnixAccount, searchable_dir};
use gantry_e2e::services::repo_file;
use gantry_e2e::{Process, bin_dir, free_port, run};
use gantry_proto::tls::TlsFiles;

/// The units, by file name, with their text.
fn units() -> Vec<(String, String)> {
    let mut units: Vec<(String, String)> = std::fs::read_dir(repo_file("deploy/systemd"))
        .expect("deploy/systemd")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    units.sort();
    units
}

/// The single ExecStart line of `unit`.
fn exec_start(unit: &str) -> String {
    let lines: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .collect();
    assert_eq!(lines.len(), 1, "one ExecStart in {unit}");
    lines[0].to_string()
}

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let units = units();
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "gantryd.service",
        "gantry-sched.service",
        "gantry-gate-local.service",
        "gantry-gate-slurm.service",
        "gantry-gate-sge.service",
        "gantry-gate-aws.service",
    ] {
        assert!(names.contains(&expected), "deploy/systemd has {names:?}");
    }
    let bins = format!("{}/", bin_dir().display());
    let mut paths = Vec::new();
    for (name, text) in &units {
        // The binaries as built here, where the units say /usr/local/bin.
        let path = dir.path().join(name);
        std::fs::write(&path, text.replace("/usr/local/bin/", &bins)).unwrap();
        paths.push(path);
    }
    let (code, out, err) = run(std::process::Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths));
    // systemd-analyze may also warn about the host's own units; ours must be clean.
    let said = format!("{out}\n{err}");
    let about_ours: Vec<&str> = said
        .lines()
        .filter(|l| names.iter().any(|n| l.contains(n)))
        .collect();
    assert!(about_ours.is_empty(), "{said}");
    assert_eq!(code, 0, "{said}");
    // The local gate's supervisor and jobs outlive a gate restart.
    let local = &units
        .iter()
        .find(|(n, _)| n == "gantry-gate-local.service")
        .unwrap()
        .1;
    assert!(local.lines().any(|l| l == "KillMode=process"), "{local}");
    for (name, text) in &units {
        if name != "gantry-gate-local.service" {
            assert!(text.lines().any(|l| l == "ProtectSystem=strict"), "{name}");
            assert!(text.lines().any(|l| l == "NoNewPrivileges=yes"), "{name}");
        }
    }
}

/// `text` with the installation moved under `root` and onto `ports`
/// (gantryd, gantry-sched, the local gate).
fn relocate(text: &str, root: &Path, ports: [u16; 3]) -> String {
    let root = root.display();
    text.replace("/etc/gantry", &format!("{root}/etc/gantry"))
        .replace("/var/lib/", &format!("{root}/var/lib/"))
        .replace("0.0.0.0:7070", &format!("0.0.0.0:{}", ports[0]))
        .replace("127.0.0.1:7071", &format!("127.0.0.1:{}", ports[1]))
        .replace("127.0.0.1:7072", &format!("127.0.0.1:{}", ports[2]))
}

/// The account `unit` runs as (`User=`), made when missing; `None` for root.
fn unit_user(unit: &str) -> Option<UnixAccount> {
    unit.lines()
        .find_map(|l| l.strip_prefix("User="))
        .filter(|user| *user != "root")
        .map(|user| UnixAccount::ensure(user, &[]))
}

/// `setpriv` as `account`, with its groups: what `User=` does.
fn as_account(account: &UnixAccount) -> Vec<String> {
    let name = &account.name;
    [
        "setpriv",
        &format!("--reuid={name}"),
        &format!("--regid={name}"),
        "--init-groups",
    ]
    .map(String::from)
    .to_vec()
}

/// Start the program of `unit`'s ExecStart line, relocated, as its `User=`.
async fn start_unit(unit: &str, root: &Path, ports: [u16; 3], log_dir: &Path) -> Process {
    let line = relocate(&exec_start(unit), root, ports);
    let mut words = line.split_whitespace();
    let program = PathBuf::from(words.next().unwrap());
    let name = program.file_name().unwrap().to_string_lossy().into_owned();
    let args: Vec<&str> = words.collect();
    let wrapper = unit_user(unit).map(|a| as_account(&a)).unwrap_or_default();
    Process::launch(&wrapper, &name, log_dir, &args, &[])
        .await
        .unwrap_or_else(|e| panic!("{line}: {e:#}"))
}

/// `path`'s owner and group become `uid`/`gid` (`None`: unchanged), its mode `mode`.
fn own(path: &Path, uid: Option<u32>, gid: Option<u32>, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(path, uid, gid).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_units_command_lines_run_a_job_to_its_end() {
    gantry_proto::tls::install_crypto_provider();
    // As root (the suite runs as root), the local gate runs each job as its
    // owner's account of the same name.
    let owner = UnixAccount::ensure("gantry-ia", &[]);
    let root = searchable_dir();
    let ports = [free_port(), free_port(), free_port()];
    let pki = root.path().join("etc/gantry/pki");
    // The PKI steps of docs/install.md.
    let gantry = bin_dir().join("gantry");
    // Users reach gantryd by a name of its own (`--host`): here 127.0.0.2,
    // another loopback address, as docs/install.md's gantry.example.org.
    let (code, _, err) = run(std::process::Command::new(&gantry)
        .args(["pki", "init", "--dir"])
        .arg(&pki)
        .args(["--host", "127.0.0.2"]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(std::process::Command::new(&gantry)
        .args(["pki", "issue", "--dir"])
        .arg(&pki)
        .args(["user", &owner.name]));
    assert_eq!(code, 0, "{err}");
    let config = relocate(
        &std::fs::read_to_string(repo_file("deploy/gantryd.toml")).unwrap(),
        root.path(),
        ports,
    );
    let units: std::collections::HashMap<String, String> = units().into_iter().collect();
    // gantryd and the scheduler run as their units' `gantry` account, with
    // the ownership docs/install.md gives: their own keys, the PKI
    // directory entered by group, the config read by group, the state
    // directory systemd's StateDirectory= would make.
    let service = unit_user(&units["gantryd.service"]).expect("gantryd runs as an account");
    let (uid, gid) = (Some(service.uid), Some(service.gid));
    let gantryd_toml = root.path().join("etc/gantry/gantryd.toml");
    std::fs::write(&gantryd_toml, config).unwrap();
    own(&gantryd_toml, None, gid, 0o640);
    own(&pki.join("core.key"), uid, gid, 0o600);
    own(&pki.join("scheduler.key"), uid, gid, 0o600);
    own(&pki, None, gid, 0o750);
    let state = root.path().join("var/lib/gantry");
    std::fs::create_dir_all(&state).unwrap();
    own(&state, uid, gid, 0o750);
    let work = root.path().join("var/lib/gantry-gate-local");
    std::fs::create_dir_all(&work).unwrap();
    own(&work, None, None, 0o711);
    // ...and what stays root's is out of their reach.
    let cat_as_service = |file: &str| {
        let setpriv = as_account(&service);
        run(std::process::Command::new(&setpriv[0])
            .args(&setpriv[1..])
            .arg("cat")
            .arg(pki.join(file)))
    };
    let (code, _, err) = cat_as_service("ca.pem");
    assert_eq!(
        code, 0,
        "{} reads the CA's certificate: {err}",
        service.name
    );
    let (code, _, err) = cat_as_service("ca.key");
    assert!(
        code != 0 && err.contains("Permission denied"),
        "{} reads the CA's key: {code} {err}",
        service.name
    );

    let logs = root.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // The processes write their ready files here.
    own(&logs, None, None, 0o1777);
    let _sched = start_unit(&units["gantry-sched.service"], root.path(), ports, &logs).await;
    let _gate = start_unit(
        &units["gantry-gate-local.service"],
        root.path(),
        ports,
        &logs,
    )
    .await;
    let _core = start_unit(&units["gantryd.service"], root.path(), ports, &logs).await;

    let user = Client::connect(&ClientConfig {
        address: format!("https://127.0.0.2:{}", ports[0]),
        tls: TlsFiles {
            ca: pki.join("ca.pem"),
            cert: pki.join(format!("user-{}.pem", owner.name)),
            key: pki.join(format!("user-{}.key", owner.name)),
        },
    })
    .await
    .unwrap();
    let check = format!("test \"$(id -un)\" = {}", owner.name);
    let job = user
        .submit(JobSpec {
            argv: vec!["sh".into(), "-c".into(), check],
            ..Default::default()
        })
        .await
        .unwrap();
    let ended = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        user.wait(job.id, |_| {}),
    )
    .await
    .expect("the job ends within 120 s")
    .unwrap();
    assert_eq!(ended.state(), JobState::Completed, "{ended:?}");
    // Its state lives where the unit's StateDirectory puts it.
    assert!(root.path().join("var/lib/gantry/gantry.db").exists());
}
