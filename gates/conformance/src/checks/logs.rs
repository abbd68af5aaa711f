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
