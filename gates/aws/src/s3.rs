//! [`S3Storage`]: the fleet's staging store as an S3 bucket the gate reaches
//! with its own credentials; machines reach single objects only through URLs
//! it presigns.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use gantry_fleet::{Bytes, Storage};
use gantry_gate::{GateError, Result};

/// A bucket for staging.
pub struct S3Storage {
    client: Client,
    bucket: String,
}

fn s3_error<E, R>(what: &str, key: &str, err: SdkError<E, R>) -> GateError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = match err.as_service_error() {
        Some(e) => format!(
            "{}: {}",
            e.code().unwrap_or_default(),
            e.message().unwrap_or_default()
        ),
        None => aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
    };
    GateError::Unavailable(format!("S3 {what} {key}: {detail}"))
}

impl S3Storage {
    /// The bucket `bucket`, which must exist and be reachable now.
    pub async fn new(client: Client, bucket: String) -> Result<Self> {
        client
            .head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .map_err(|e| match e.as_service_error().map(|s| s.is_not_found()) {
                Some(true) => GateError::invalid(
                    "--bucket",
                    format!("S3 bucket {bucket} does not exist; create it first"),
                ),
                _ => s3_error("HeadBucket", &bucket, e),
            })?;
        Ok(Self { client, bucket })
    }

    fn presigning(ttl: Duration) -> Result<PresigningConfig> {
        PresigningConfig::expires_in(ttl)
            .map_err(|e| GateError::Internal(format!("presigning for {ttl:?}: {e}")))
    }
}

#[tonic::async_trait]
impl Storage for S3Storage {
    async fn put_file(&self, key: &str, path: &Path) -> Result<()> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| GateError::Internal(format!("read {}: {e}", path.display())))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .map_err(|e| s3_error("PutObject", key, e))?;
        Ok(())
    }

    async fn put_bytes(&self, key: &str, data: Vec<u8>) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(data))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", key, e))?;
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let got = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(got) => got,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(s3_error("GetObject", key, e)),
        };
        let data = got
            .body
            .collect()
            .await
            .map_err(|e| GateError::Unavailable(format!("S3 GetObject {key}: {e}")))?;
        Ok(Some(data.into_bytes().to_vec()))
    }

    async fn get_stream(&self, key: &str) -> Result<Bytes> {
        let got = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("GetObject", key, e))?;
        let key = key.to_string();
        let pieces = futures::stream::unfold(Some(got.body), move |body| {
            let key = key.clone();
            async move {
                let mut body = body?;
                match body.try_next().await {
                    Ok(Some(piece)) => Some((Ok(piece.to_vec()), Some(body))),
                    Ok(None) => None,
                    Err(e) => Some((
                        Err(GateError::Unavailable(format!("S3 GetObject {key}: {e}"))),
                        None,
                    )),
                }
            }
        });
        Ok(Box::pin(pieces))
    }

    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String> {
        let signed = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(Self::presigning(ttl)?)
            .await
            .map_err(|e| s3_error("presign GetObject", key, e))?;
        Ok(signed.uri().to_string())
    }

    async fn presign_put(&self, key: &str, ttl: Duration) -> Result<String> {
        let signed = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(Self::presigning(ttl)?)
            .await
            .map_err(|e| s3_error("presign PutObject", key, e))?;
        Ok(signed.uri().to_string())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("ListObjectsV2", prefix, e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    self.client
                        .delete_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| s3_error("DeleteObject", key, e))?;
                }
            }
        }
        Ok(())
    }
}
