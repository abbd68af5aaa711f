//! ReadLogs: from any offset, with exact chunk offsets, and refusals.

use gantry_proto::v1::{GateReadLogsRequest, LogStream};
use tonic::Code;

use crate::report::Outcome;
use crate::run::{Run, expect_code, said};

/// Reads from 0, from the middle, at the end and past it give exactly
/// those bytes; each chunk's offset is where its data starts.
pub async fn offsets(run: &Run) -> Outcome {
    async {
        let job = run
            .run_script("i=0; while [ $i -lt 10 ]; do echo \"line $i\"; i=$((i+1)); done")
            .await?;
        let whole: String = (0..10).map(|i| format!("line {i}\n")).collect();
        let size = whole.len() as u64;
        for offset in [0, 7, size, size + 10] {
            let mut reply = run
                .gate
                .clone()
                .read_logs(GateReadLogsRequest {
                    attempt_id: job.attempt_id.clone(),
                    stream: LogStream::Stdout.into(),
                    offset,
                    follow: false,
                })
                .await
                .map_err(|s| said("ReadLogs", &s))?
                .into_inner();
            let mut data = Vec::new();
            while let Some(message) = reply.message().await.map_err(|s| said("ReadLogs", &s))? {
                let chunk = message.chunk.unwrap_or_default();
                if chunk.offset != offset + data.len() as u64 {
                    return Err(format!(
                        "from {offset}: a chunk says offset {}, but its data starts at {}",
                        chunk.offset,
                        offset + data.len() as u64
                    ));
                }
                if chunk.stream() != LogStream::Stdout {
                    return Err(format!("a stdout chunk says stream {:?}", chunk.stream()));
                }
                data.extend_from_slice(&chunk.data);
            }
            let want = whole.as_bytes().get(offset as usize..).unwrap_or_default();
            if data != want {
                return Err(format!(
                    "from {offset}: {:?}, expected {:?}",
                    String::from_utf8_lossy(&data),
                    String::from_utf8_lossy(want)
                ));
            }
        }
        Ok(format!("{size} bytes read from 0, 7, the end and past it"))
    }
    .await
    .into()
}

/// ReadLogs of an unknown attempt is NOT_FOUND; of no stream,
/// INVALID_ARGUMENT.
pub async fn errors(run: &Run) -> Outcome {
    async {
        let unknown = run.new_id("a");
        let first = expect_code(
            "ReadLogs of an unknown attempt",
            run.read_log(&unknown, LogStream::Stdout, 0).await,
            Code::NotFound,
        )?;
        let job = run.run_script("true").await?;
        let second = expect_code(
            "ReadLogs of stream UNSPECIFIED",
            run.read_log(&job.attempt_id, LogStream::Unspecified, 0)
                .await,
            Code::InvalidArgument,
        )?;
        Ok(format!("{first}; {second}"))
    }
    .await
    .into()
}

/// With `follow` (Capabilities.log_follow), ReadLogs sends what the job
/// writes while it runs, each chunk at its offset, and ends after the job
/// does with `eof` on its last message.
pub async fn follow(run: &Run) -> Outcome {
    let flagged = run
        .describe
        .capabilities
        .as_ref()
        .is_some_and(|c| c.log_follow);
    if !flagged {
        return Outcome::Skip("Capabilities.log_follow is not flagged".into());
    }
    async {
        let job = run
            .start(run.script_task("echo first; sleep 2; echo second"))
            .await?;
        let mut reply = run
            .gate
            .clone()
            .read_logs(GateReadLogsRequest {
                attempt_id: job.attempt_id.clone(),
                stream: LogStream::Stdout.into(),
                offset: 0,
                follow: true,
            })
            .await
            .map_err(|s| said("ReadLogs", &s))?
            .into_inner();
        let mut data = Vec::new();
        let mut eof = false;
        let mut before_end = false;
        let deadline = tokio::time::Instant::now() + run.timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, reply.message())
                .await
                .map_err(|_| {
                    format!(
                        "the follow did not end within {:?}; read {:?}",
                        run.timeout,
                        String::from_utf8_lossy(&data)
                    )
                })?
                .map_err(|s| said("ReadLogs", &s))?;
            let Some(message) = next else { break };
            let chunk = message.chunk.unwrap_or_default();
            if eof {
                return Err("a message came after the one with eof".into());
            }
            if chunk.offset != data.len() as u64 {
                return Err(format!(
                    "a chunk says offset {}, but its data starts at {}",
                    chunk.offset,
                    data.len()
                ));
            }
            data.extend_from_slice(&chunk.data);
            eof = chunk.eof;
            if data.starts_with(b"first\n") && !data.ends_with(b"second\n") && !before_end {
                let now = run
                    .get(&job.attempt_id)
                    .await
                    .map_err(|s| said("GetJob", &s))?;
                before_end = !now.state().is_final();
            }
        }
        if data != b"first\nsecond\n" || !eof {
            return Err(format!(
                "read {:?}, eof {eof}; expected \"first\\nsecond\\n\" ending with eof",
                String::from_utf8_lossy(&data)
            ));
        }
        if !before_end {
            return Err("the first line came only after the job ended".into());
        }
        Ok("read while it ran, then eof".into())
    }
    .await
    .into()
}
