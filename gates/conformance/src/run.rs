//! One run of the kit against one gate: its connection, what Describe
//! said, the partition the job checks use, and helpers to start jobs and
//! wait for them. Everything the run makes is remembered so it can be
//! cleaned up at the end.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gantry_proto::v1::gate_client::GateClient;
use gantry_proto::v1::{
    Capacity, CreatePartitionRequest, DeletePartitionRequest, DescribeResponse, FileChunk, Flavor,
    GateCancelJobRequest, GateGetJobRequest, GateJob, GateReadLogsRequest, GateReleaseJobRequest,
    GetPartitionRequest, LogStream, Partition, StageInRequest, StageInResponse, StageOutRequest,
    StartJobRequest, Task,
};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::connect::Target;

/// How often a wait asks again.
pub const POLL: Duration = Duration::from_millis(100);

/// The most a FileChunk may carry (common.proto).
pub const STAGE_CHUNK_BYTES: usize = 1 << 20;

/// The run's state, shared by every check.
pub struct Run {
    /// The gate, called as gantryd.
    pub gate: GateClient<Channel>,
    /// Where and who the gate is.
    pub target: Target,
    /// Describe's answer.
    pub describe: DescribeResponse,
    /// The flavor the run's partitions use.
    pub flavor: Option<Flavor>,
    /// How long a wait for a job or partition may take.
    pub timeout: Duration,
    /// The READY partition the job checks run on, once made.
    pub partition: Mutex<Option<String>>,
    prefix: String,
    next: AtomicU64,
    job_base: u64,
    attempts: Mutex<Vec<String>>,
    partitions: Mutex<Vec<String>>,
}

impl Run {
    /// A run against `target`, whose Describe answered `describe`; `flavor`
    /// names the flavor to use (the first available one when `None`).
    pub fn new(
        gate: GateClient<Channel>,
        target: Target,
        describe: DescribeResponse,
        flavor: Option<&str>,
        timeout: Duration,
    ) -> Self {
        let chosen = match flavor {
            Some(name) => describe.flavors.iter().find(|f| f.name == name).cloned(),
            None => describe.flavors.iter().find(|f| f.available).cloned(),
        };
        let unique = uuid::Uuid::now_v7().simple().to_string();
        let job_base = u64::from_str_radix(&unique[20..32], 16).unwrap_or(1) << 8;
        Self {
            gate,
            target,
            describe,
            flavor: chosen,
            timeout,
            partition: Mutex::new(None),
            prefix: format!("gc{}", &unique[24..32]),
            next: AtomicU64::new(1),
            job_base,
            attempts: Mutex::new(Vec::new()),
            partitions: Mutex::new(Vec::new()),
        }
    }

    /// A fresh id for a partition or attempt (`gc<8 hex>-<kind><n>`),
    /// remembered for clean-up.
    pub fn new_id(&self, kind: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{kind}{n}", self.prefix);
        let list = if kind == "p" {
            &self.partitions
        } else {
            &self.attempts
        };
        list.lock().expect("not poisoned").push(id.clone());
        id
    }

    /// The READY partition, or why the check cannot run.
    pub fn ready_partition(&self) -> Result<String, String> {
        self.partition
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| "needs a READY partition (partition.create failed)".to_string())
    }

    /// A task running `script` under `/bin/sh` on one CPU.
    pub fn script_task(&self, script: &str) -> Task {
        Task {
            job_id: self.job_base + self.next.fetch_add(1, Ordering::Relaxed),
            name: "conformance".into(),
            script: script.into(),
            resources: Some(Capacity {
                cpus: 1,
                nodes: 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Start `task` as a new attempt on the READY partition.
    pub async fn start(&self, task: Task) -> Result<GateJob, String> {
        let partition = self.ready_partition()?;
        let attempt = self.new_id("a");
        self.start_as(&attempt, &partition, task)
            .await
            .map_err(|s| said("StartJob", &s))
    }

    /// StartJob with these ids, as it is.
    pub async fn start_as(
        &self,
        attempt: &str,
        partition: &str,
        task: Task,
    ) -> Result<GateJob, Status> {
        let job = self
            .gate
            .clone()
            .start_job(StartJobRequest {
                attempt_id: attempt.into(),
                partition_id: partition.into(),
                task: Some(task),
            })
            .await?
            .into_inner()
            .job;
        answered(job, "StartJob", "job")
    }

    /// GetJob, as it is.
    pub async fn get(&self, attempt: &str) -> Result<GateJob, Status> {
        let job = self
            .gate
            .clone()
            .get_job(GateGetJobRequest {
                attempt_id: attempt.into(),
            })
            .await?
            .into_inner()
            .job;
        answered(job, "GetJob", "job")
    }

    /// CancelJob, as it is.
    pub async fn cancel(&self, attempt: &str) -> Result<GateJob, Status> {
        let job = self
            .gate
            .clone()
            .cancel_job(GateCancelJobRequest {
                attempt_id: attempt.into(),
            })
            .await?
            .into_inner()
            .job;
        answered(job, "CancelJob", "job")
    }

    /// CreatePartition, as it is.
    pub async fn create_partition(&self, id: &str, flavor: &str) -> Result<Partition, Status> {
        let partition = self
            .gate
            .clone()
            .create_partition(CreatePartitionRequest {
                partition_id: id.into(),
                flavor: flavor.into(),
                labels: Default::default(),
            })
            .await?
            .into_inner()
            .partition;
        answered(partition, "CreatePartition", "partition")
    }

    /// GetPartition, as it is.
    pub async fn get_partition(&self, id: &str) -> Result<Partition, Status> {
        let partition = self
            .gate
            .clone()
            .get_partition(GetPartitionRequest {
                partition_id: id.into(),
            })
            .await?
            .into_inner()
            .partition;
        answered(partition, "GetPartition", "partition")
    }

    /// DeletePartition, as it is.
    pub async fn delete_partition(&self, id: &str) -> Result<Partition, Status> {
        let partition = self
            .gate
            .clone()
            .delete_partition(DeletePartitionRequest {
                partition_id: id.into(),
            })
            .await?
            .into_inner()
            .partition;
        answered(partition, "DeletePartition", "partition")
    }

    /// Poll GetJob until `done` holds for the attempt, or the timeout.
    pub async fn wait_for(
        &self,
        attempt: &str,
        what: &str,
        done: impl Fn(&GateJob) -> bool,
    ) -> Result<GateJob, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let job = self.get(attempt).await.map_err(|s| said("GetJob", &s))?;
            if done(&job) {
                return Ok(job);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not {what} after {:?}; last seen {}",
                    self.timeout,
                    describe_job(&job)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait for the attempt's final state.
    pub async fn wait_final(&self, attempt: &str) -> Result<GateJob, String> {
        self.wait_for(attempt, "ended", |j| j.state().is_final())
            .await
    }

    /// Start `script` and wait for it to end.
    pub async fn run_script(&self, script: &str) -> Result<GateJob, String> {
        let job = self.start(self.script_task(script)).await?;
        self.wait_final(&job.attempt_id).await
    }

    /// All of one log from `offset`, without following.
    pub async fn read_log(
        &self,
        attempt: &str,
        stream: LogStream,
        offset: u64,
    ) -> Result<Vec<u8>, Status> {
        let mut reply = self
            .gate
            .clone()
            .read_logs(GateReadLogsRequest {
                attempt_id: attempt.into(),
                stream: stream.into(),
                offset,
                follow: false,
            })
            .await?
            .into_inner();
        let mut data = Vec::new();
        while let Some(message) = reply.message().await? {
            if let Some(chunk) = message.chunk {
                data.extend_from_slice(&chunk.data);
            }
        }
        Ok(data)
    }

    /// The attempt's standard output, as text.
    pub async fn stdout(&self, attempt: &str) -> Result<String, String> {
        self.read_log(attempt, LogStream::Stdout, 0)
            .await
            .map(|d| String::from_utf8_lossy(&d).into_owned())
            .map_err(|s| said("ReadLogs", &s))
    }

    /// StageIn of `files` (path, mode, content) into `attempt`'s working
    /// directory on `partition`, each cut into chunks of at most 1 MiB.
    pub async fn stage_in(
        &self,
        attempt: &str,
        partition: &str,
        files: &[(&str, u32, &[u8])],
    ) -> Result<StageInResponse, Status> {
        let mut messages = vec![StageInRequest {
            attempt_id: attempt.into(),
            partition_id: partition.into(),
            chunk: None,
        }];
        for (path, mode, data) in files {
            let mut pieces: Vec<&[u8]> = data.chunks(STAGE_CHUNK_BYTES).collect();
            if pieces.is_empty() {
                pieces.push(&[]);
            }
            for (i, piece) in pieces.into_iter().enumerate() {
                let first = i == 0;
                messages.push(StageInRequest {
                    chunk: Some(FileChunk {
                        path: if first {
                            path.to_string()
                        } else {
                            String::new()
                        },
                        mode: if first { *mode } else { 0 },
                        data: piece.to_vec(),
                    }),
                    ..Default::default()
                });
            }
        }
        let answer = self
            .gate
            .clone()
            .stage_in(futures::stream::iter(messages))
            .await?;
        Ok(answer.into_inner())
    }

    /// StageOut of `globs`: each file as (path, mode, content), in the order sent.
    pub async fn stage_out(
        &self,
        attempt: &str,
        globs: &[&str],
    ) -> Result<Vec<(String, u32, Vec<u8>)>, Status> {
        let mut reply = self
            .gate
            .clone()
            .stage_out(StageOutRequest {
                attempt_id: attempt.into(),
                globs: globs.iter().map(|g| g.to_string()).collect(),
            })
            .await?
            .into_inner();
        let mut files: Vec<(String, u32, Vec<u8>)> = Vec::new();
        while let Some(message) = reply.message().await? {
            let chunk = message.chunk.unwrap_or_default();
            match files.last_mut() {
                Some(file) if chunk.path.is_empty() => file.2.extend_from_slice(&chunk.data),
                None if chunk.path.is_empty() => {
                    return Err(Status::internal(
                        "StageOut's first chunk carries no path".to_string(),
                    ));
                }
                _ => files.push((chunk.path, chunk.mode, chunk.data)),
            }
        }
        Ok(files)
    }

    /// ReleaseJob, as it is.
    pub async fn release(&self, attempt: &str) -> Result<(), Status> {
        self.gate
            .clone()
            .release_job(GateReleaseJobRequest {
                attempt_id: attempt.into(),
            })
            .await
            .map(drop)
    }

    /// Cancel, release and delete everything the run made; best effort.
    pub async fn clean_up(&self) {
        let attempts = std::mem::take(&mut *self.attempts.lock().expect("not poisoned"));
        for attempt in attempts {
            let _ = self.cancel(&attempt).await;
            let _ = self
                .wait_for(&attempt, "ended", |j| j.state().is_final())
                .await;
            let _ = self.release(&attempt).await;
        }
        let partitions = std::mem::take(&mut *self.partitions.lock().expect("not poisoned"));
        for partition in partitions {
            let _ = self.delete_partition(&partition).await;
        }
    }
}

/// The message field a call must answer with; INTERNAL when it is missing.
fn answered<T>(value: Option<T>, call: &str, what: &str) -> Result<T, Status> {
    value.ok_or_else(|| Status::internal(format!("{call} answered no {what}")))
}

/// A job, as a person reads it: `FAILED exit 3 "reason"`.
pub fn describe_job(job: &GateJob) -> String {
    let mut text = job
        .state()
        .as_str_name()
        .trim_start_matches("GATE_JOB_STATE_")
        .to_string();
    if let Some(code) = job.exit_code {
        text += &format!(" exit {code}");
    }
    if !job.reason.is_empty() {
        text += &format!(" {:?}", job.reason);
    }
    if job.lost {
        text += " lost";
    }
    text
}

/// A status, as the check reports it: `StartJob: NOT_FOUND "…"`.
pub fn said(call: &str, status: &Status) -> String {
    format!(
        "{call}: {} {:?}",
        code_name(status.code()),
        status.message()
    )
}

/// The code's name as the gRPC specification writes it.
pub fn code_name(code: Code) -> String {
    format!("{code:?}")
        .chars()
        .enumerate()
        .flat_map(|(i, c)| {
            let sep = (i > 0 && c.is_uppercase()).then_some('_');
            sep.into_iter().chain(c.to_uppercase())
        })
        .collect()
}

/// Expect `result` to be refused with `code`; `what` names the call.
pub fn expect_code<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, Status>,
    code: Code,
) -> Result<String, String> {
    match result {
        Err(status) if status.code() == code => Ok(said(what, &status)),
        Err(status) => Err(format!(
            "expected {}, got {}",
            code_name(code),
            said(what, &status)
        )),
        Ok(answer) => Err(format!(
            "expected {}, {what} succeeded: {answer:?}",
            code_name(code)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_grpc_names_them() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(Code::Ok), "OK");
    }
}
