//! The harness every Gantry gate is built on.
//!
//! A gate implements [`Provider`] — the gate operations in domain terms — and
//! calls [`serve`]. The harness does everything else the gate contract
//! (`proto/gantry/v1/gate.proto`) asks: mTLS with only the core allowed in
//! ([`GateService`]), validation of every request into domain types
//! ([`AttemptId`], [`PartitionId`], [`JobSpec`]), the WatchJobs fan-out
//! ([`JobHub`]), and the file helpers gates share: log following
//! ([`read_log_file`]) and staging ([`stage_in_dir`], [`stage_out_dir`]).

mod accounts;
mod args;
mod auth;
pub mod batch;
mod error;
mod forward;
pub mod health;
mod host;
mod hub;
mod ids;
mod logs;
mod paths;
mod provider;
mod recent;
mod server;
mod service;
mod spec;
mod staging;

pub use accounts::{
    Account, AccountMap, DEFAULT_MIN_UID, RunAs, RunAsArgs, RunAsMode, login_env_of,
};
pub use args::{GateArgs, GateConfig, default_listen, parse_gate_cli};
pub use auth::authorize_core;
pub use batch::{AttemptRecord, BatchConfig, BatchProvider, BatchSystem};
pub use error::{GateError, Result, attempt_found};
pub use forward::{connect_loopback, port_number};
pub use host::{COMMAND_TIMEOUT, Host, LocalHost, SshHost, SshTarget};
pub use hub::{DEFAULT_HUB_CAPACITY, JobHub, MAX_JOBS_PER_MESSAGE, WatchStream};
pub use ids::{AttemptId, MAX_ID_LEN, PartitionId, check_id};
pub use logs::{
    FOLLOW_POLL, FileLogReader, LOG_CHUNK_BYTES, LogRead, LogReader, LogResponses, log_file_name,
    read_log_file,
};
pub use paths::{glob_set, safe_relative_path};
pub use provider::{Connection, Description, FileChunks, LogSource, Provider};
pub use recent::RECENT_IDS_KEPT;
pub use server::{BoundGate, MAX_MESSAGE_BYTES, ServeError, bind, serve};
pub use service::{GateService, ResponseStream};
pub use spec::{Command, JobSpec, Layout, Resources, Warning};
pub use staging::{
    DEFAULT_FILE_MODE, FILE_CHUNK_BYTES, MatchedFile, matching_files, remove_dir, stage_in_dir,
    stage_out_dir,
};

/// The glob matcher staging uses, re-exported so providers need not depend on `globset`.
pub use globset::GlobSet;
