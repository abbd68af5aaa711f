//! Where an elastic gate keeps attempts' files on their way between gantryd
//! and the machines: an object store the gate reaches with its own
//! credentials, whose objects a machine may GET or PUT only through URLs the
//! gate signs for one object and a short time (S3 presigned URLs). So no
//! storage credential is ever on a machine.

use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use gantry_gate::Result;

/// The pieces of an object, in order.
pub type Bytes = Pin<Box<dyn Stream<Item = Result<Vec<u8>>> + Send>>;

/// An object store for staging.
#[tonic::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Store the file at `path` as `key`.
    async fn put_file(&self, key: &str, path: &Path) -> Result<()>;

    /// Store `data` as `key`.
    async fn put_bytes(&self, key: &str, data: Vec<u8>) -> Result<()>;

    /// The object `key`, whole; `None` when there is none.
    async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// The object `key`, piece by piece.
    async fn get_stream(&self, key: &str) -> Result<Bytes>;

    /// A URL that GETs `key` for `ttl`.
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<String>;

    /// A URL that PUTs `key` for `ttl`.
    async fn presign_put(&self, key: &str, ttl: Duration) -> Result<String>;

    /// Delete every object whose key starts with `prefix`.
    async fn delete_prefix(&self, prefix: &str) -> Result<()>;
}
