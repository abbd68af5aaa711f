//! Staging through the cloud's object store (see [`Storage`]): gantryd's
//! inputs are stored under the attempt's prefix and a manifest, and the agent
//! fetches them through signed URLs before the attempt starts; after it ends,
//! the agent lists its files, uploads those that match through signed URLs,
//! and the gate streams them to gantryd from the store. Keys:
//! `<installation>/<gate>/attempts/<attempt>/{inputs.json,in/<path>,out/<path>}`.

use std::time::Duration;

use futures::StreamExt;
use gantry_gate::{
    AttemptId, FileChunks, GateError, GlobSet, Result, glob_set, matching_files, remove_dir,
    stage_in_dir,
};
use gantry_proto::v1::{
    FetchFiles, FileChunk, FileTransfer, ListFilesRequest, PutFiles, StageInResponse,
    agent_command::Body as Command, agent_reply::Body as Reply,
};
use serde::{Deserialize, Serialize};

use crate::fleet::Fleet;
use crate::machines::Machines;
use crate::session::Session;
use crate::storage::Storage;

/// How long a signed URL works.
const URL_TTL: Duration = Duration::from_secs(3600);

/// One staged input, as the manifest keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Input {
    path: String,
    mode: u32,
}

fn prefix<M>(fleet: &Fleet<M>, attempt: &str) -> String {
    format!(
        "{}/{}/attempts/{attempt}/",
        fleet.config.installation, fleet.config.gate
    )
}

impl<M: Machines> Fleet<M> {
    /// The store, or why staging is off.
    pub(crate) fn storage(&self) -> Result<&dyn Storage> {
        self.machines.storage().ok_or(GateError::Unimplemented(
            "staging (this gate has no bucket)",
        ))
    }

    /// Store gantryd's inputs for `attempt`: written under the gate's state
    /// directory first (checked as the local gate checks them), then put in
    /// the store, the manifest last.
    pub(crate) async fn stage_in(
        &self,
        attempt: &AttemptId,
        files: FileChunks,
    ) -> Result<StageInResponse> {
        let storage = self.storage()?;
        let dir = self.config.state_dir.join("staging").join(attempt.as_str());
        let _ = remove_dir(dir.clone()).await;
        let written = stage_in_dir(&dir, files).await;
        let stored = match written {
            Ok(written) => self
                .store_inputs(storage, attempt, &dir)
                .await
                .map(|()| written),
            Err(err) => Err(err),
        };
        let _ = remove_dir(dir).await;
        stored
    }

    async fn store_inputs(
        &self,
        storage: &dyn Storage,
        attempt: &AttemptId,
        dir: &std::path::Path,
    ) -> Result<()> {
        let prefix = prefix(self, attempt.as_str());
        let every = glob_set("globs", &["**".to_string()])?;
        let mut manifest = Vec::new();
        for file in matching_files(dir, &every)? {
            storage
                .put_file(&format!("{prefix}in/{}", file.path), &dir.join(&file.path))
                .await?;
            manifest.push(Input {
                path: file.path,
                mode: file.mode,
            });
        }
        let manifest = serde_json::to_vec(&manifest)
            .map_err(|e| GateError::Internal(format!("inputs manifest: {e}")))?;
        storage
            .put_bytes(&format!("{prefix}inputs.json"), manifest)
            .await
    }

    /// Have the agent fetch `attempt`'s stored inputs, if it has any.
    pub(crate) async fn fetch_inputs(
        &self,
        session: &Session,
        attempt: &AttemptId,
        partition: &str,
    ) -> Result<()> {
        let Some(storage) = self.machines.storage() else {
            return Ok(());
        };
        let prefix = prefix(self, attempt.as_str());
        let Some(manifest) = storage.get_bytes(&format!("{prefix}inputs.json")).await? else {
            return Ok(());
        };
        let inputs: Vec<Input> = serde_json::from_slice(&manifest)
            .map_err(|e| GateError::Internal(format!("inputs manifest of {attempt}: {e}")))?;
        let mut files = Vec::new();
        for input in inputs {
            let url = storage
                .presign_get(&format!("{prefix}in/{}", input.path), URL_TTL)
                .await?;
            files.push(FileTransfer {
                path: input.path,
                url,
                mode: input.mode,
            });
        }
        let fetch = Command::FetchFiles(FetchFiles {
            attempt_id: attempt.to_string(),
            partition_id: partition.to_string(),
            files,
        });
        match session.call(fetch, attempt.as_str()).await {
            // Started already (a retry whose first answer was lost): the
            // inputs are in place.
            Ok(_) | Err(GateError::FailedPrecondition(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The files of ended `attempt` matching `globs`: listed by its agent,
    /// uploaded by it through signed URLs, streamed from the store.
    pub(crate) async fn stage_out(
        self: &std::sync::Arc<Self>,
        session: &Session,
        attempt: &AttemptId,
        globs: GlobSet,
    ) -> Result<FileChunks> {
        let storage = self.storage()?;
        let listed = session
            .call(
                Command::ListFiles(ListFilesRequest {
                    attempt_id: attempt.to_string(),
                    globs: vec!["**".into()],
                }),
                attempt.as_str(),
            )
            .await?;
        let Reply::Files(listed) = listed else {
            return Err(GateError::Internal(
                "the node agent answered a listing out of turn".into(),
            ));
        };
        let wanted: Vec<_> = listed
            .files
            .into_iter()
            .filter(|f| globs.is_match(&f.path))
            .collect();
        let prefix = prefix(self, attempt.as_str());
        let mut puts = Vec::new();
        for file in &wanted {
            let url = storage
                .presign_put(&format!("{prefix}out/{}", file.path), URL_TTL)
                .await?;
            puts.push(FileTransfer {
                path: file.path.clone(),
                url,
                mode: file.mode,
            });
        }
        if !puts.is_empty() {
            let put = Command::PutFiles(PutFiles {
                attempt_id: attempt.to_string(),
                files: puts,
            });
            session.call(put, attempt.as_str()).await?;
        }
        let fleet = self.clone();
        Ok(Box::pin(async_stream::try_stream! {
            let storage = fleet.storage()?;
            for file in wanted {
                let key = format!("{prefix}out/{}", file.path);
                let mut body = storage.get_stream(&key).await?.fuse();
                // The first chunk names the file, even an empty one.
                let mut chunk = FileChunk {
                    path: file.path,
                    mode: file.mode,
                    data: body.next().await.transpose()?.unwrap_or_default(),
                };
                loop {
                    yield chunk;
                    match body.next().await.transpose()? {
                        Some(data) => {
                            chunk = FileChunk {
                                path: String::new(),
                                mode: 0,
                                data,
                            }
                        }
                        None => break,
                    }
                }
            }
        }))
    }

    /// Forget `attempt`'s staged files; a failure is logged, not returned.
    pub(crate) async fn forget_files(&self, attempt: &AttemptId) {
        if let Some(storage) = self.machines.storage()
            && let Err(err) = storage.delete_prefix(&prefix(self, attempt.as_str())).await
        {
            tracing::warn!(%attempt, error = %err, "cannot delete an attempt's staged files");
        }
    }
}
