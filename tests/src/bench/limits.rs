//! This machine's own limits, measured in the same run as the scenarios, so
//! each Gantry figure can be read against what bounds it on the day: durable
//! single-row commits on SQLite (WAL, synchronous=FULL, as gantryd writes)
//! and on the benchmark's PostgreSQL, fork/exec (`xargs -P<cores>
//! /bin/true`), and mTLS unary round trips on loopback to an empty handler
//! (tonic's health service, on a runtime of its own).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use gantry_proto::Principal;
use gantry_proto::pki::Pki;
use gantry_proto::tls::TlsFiles;
use sqlx::Connection;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::scenarios::{cores, figure};
use super::{Args, Report};
use crate::{Postgres, create_database};

/// How long each rate is measured.
const SPAN: Duration = Duration::from_secs(3);

/// What bounds Gantry's figures on this machine today.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Durable single-row commits/s on SQLite, one connection.
    pub sqlite_commits: f64,
    /// Durable single-row commits/s on PostgreSQL, one connection.
    pub postgres_commits: Option<f64>,
    /// `/bin/true` processes/s started and reaped, `xargs -P<cores>`.
    pub fork_exec: Option<f64>,
    /// mTLS empty unary round trips/s on loopback, by client count.
    pub rpc: [(usize, f64); 3],
}

impl Limits {
    /// The empty-RPC rate with `clients` clients.
    pub fn rpc_with(&self, clients: usize) -> Option<f64> {
        self.rpc
            .iter()
            .find(|(n, _)| *n == clients)
            .map(|(_, r)| *r)
    }
}

/// Measure the limits and report each.
pub async fn measure(args: &Args, report: &mut Report) -> anyhow::Result<Limits> {
    let dir = tempfile::Builder::new()
        .prefix("gantry-limits-")
        .tempdir()?;
    let sqlite_commits = sqlite_commits(dir.path()).await?;
    report.add(figure(
        "machine",
        "SQLite durable commits/s (WAL, synchronous=FULL, 1 row each)",
        sqlite_commits,
        "commits/s",
        "",
    ));
    let postgres_commits = postgres_commits().await?;
    report.add(figure(
        "machine",
        "PostgreSQL durable commits/s (1 row each)",
        postgres_commits.unwrap_or(f64::NAN),
        "commits/s",
        "",
    ));
    let fork_exec = fork_exec(args.size(20_000, 5_000));
    report.add(figure(
        "machine",
        &format!("xargs -P{} /bin/true", cores()),
        fork_exec.unwrap_or(f64::NAN),
        "procs/s",
        "",
    ));
    let rpc = empty_rpcs(dir.path()).await?;
    for (clients, rate) in rpc {
        report.add(figure(
            "machine",
            &format!("mTLS empty unary RPCs/s, {clients} clients"),
            rate,
            "RPCs/s",
            "",
        ));
    }
    Ok(Limits {
        sqlite_commits,
        postgres_commits,
        fork_exec,
        rpc,
    })
}

/// Single-row commits/s on `url`, each its own transaction, for [`SPAN`],
/// through sqlx's `Any` driver as gantryd writes; `setup` runs first.
async fn commit_rate(
    url: &str,
    setup: &[&'static str],
    insert: &'static str,
) -> anyhow::Result<f64> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    for &statement in setup {
        sqlx::query(statement).execute(&mut conn).await?;
    }
    let start = Instant::now();
    let mut n = 0i64;
    while start.elapsed() < SPAN {
        sqlx::query(insert).bind(n).execute(&mut conn).await?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn sqlite_commits(dir: &Path) -> anyhow::Result<f64> {
    let url = format!("sqlite://{}?mode=rwc", dir.join("limits.sqlite").display());
    let setup = [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = FULL",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
    ];
    commit_rate(&url, &setup, "INSERT INTO t (id, v) VALUES (?, 'x')").await
}

/// On a throwaway server started as the submit scenario starts its own;
/// `None` when PostgreSQL cannot be started here.
async fn postgres_commits() -> anyhow::Result<Option<f64>> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let Ok(pg) = Postgres::start(port) else {
        return Ok(None);
    };
    let url = create_database(&pg.admin_url, "gantry_limits")?;
    let setup = ["CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT NOT NULL)"];
    let rate = commit_rate(&url, &setup, "INSERT INTO t (id, v) VALUES ($1, 'x')").await?;
    Ok(Some(rate))
}

/// `n` trivial processes through `xargs -P<cores>`, per second.
pub fn fork_exec(n: usize) -> Option<f64> {
    let start = Instant::now();
    let status = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("seq {n} | xargs -P{} -I{{}} /bin/true", cores()),
        ])
        .status()
        .ok()?;
    status
        .success()
        .then(|| n as f64 / start.elapsed().as_secs_f64())
}

/// mTLS round trips/s to tonic's health service with nothing behind it,
/// served from a runtime of its own (as another process would be), with 1,
/// 8 and 64 concurrent clients, each on its own connection.
async fn empty_rpcs(dir: &Path) -> anyhow::Result<[(usize, f64); 3]> {
    let pki = Pki::init(&dir.join("pki"), "limits")?;
    let files = |p: &Principal| -> anyhow::Result<TlsFiles> {
        let paths = pki.issue(p, &[])?;
        Ok(TlsFiles {
            ca: pki.ca_path(),
            cert: paths.cert,
            key: paths.key,
        })
    };
    let server_tls = files(&Principal::Core)?;
    let client_tls = files(&Principal::User("bench".into()))?;
    let (addr, stop) = serve_empty(server_tls)?;
    let mut out = [(1, 0.0), (8, 0.0), (64, 0.0)];
    for (clients, rate) in &mut out {
        let mut conns = Vec::with_capacity(*clients);
        for _ in 0..*clients {
            let endpoint = client_tls.endpoint(&format!("https://{addr}"))?;
            conns.push(HealthClient::new(endpoint.connect().await?));
        }
        let start = Instant::now();
        let tasks: Vec<_> = conns
            .into_iter()
            .map(|mut client| {
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while start.elapsed() < SPAN {
                        client.check(HealthCheckRequest::default()).await?;
                        n += 1;
                    }
                    Ok::<_, tonic::Status>(n)
                })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await??;
        }
        *rate = total as f64 / start.elapsed().as_secs_f64();
    }
    let _ = stop.send(());
    Ok(out)
}

/// Serve the health service over mTLS on 127.0.0.1 from a thread with its
/// own runtime; it stops when the sender is used or dropped.
fn serve_empty(tls: TlsFiles) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, bound) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let served = async {
                let bound = gantry_proto::serve::bind("127.0.0.1:0").await?;
                let (_, health) = tonic_health::server::health_reporter();
                let server = tonic::transport::Server::builder()
                    .tls_config(tls.server_config()?)?
                    .tcp_nodelay(true)
                    .add_service(health);
                let _ = ready.send(Ok(bound.addr));
                server
                    .serve_with_incoming_shutdown(bound.incoming, async {
                        let _ = stopped.await;
                    })
                    .await?;
                Ok::<_, anyhow::Error>(())
            };
            if let Err(e) = served.await {
                let _ = ready.send(Err(e));
            }
        });
    });
    let addr = bound.recv()??;
    Ok((addr, stop))
}
