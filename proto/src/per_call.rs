//! What the per-call layers ([`crate::metrics::GrpcMetricsLayer`] and
//! [`crate::rpc_trace::RpcTraceLayer`]) share: the future of a call they
//! wrap, which is the inner service's own, untouched and unboxed, when the
//! layer is off (no metrics served, no traces exported), so that the hot
//! path pays nothing for them.

use std::future::Future;
use std::pin::Pin;

use futures::future::Either;

/// A wrapped call: `Left` the inner future as it is, `Right` the layer's.
pub type CallFuture<F, R, E> =
    Either<F, Pin<Box<dyn Future<Output = Result<R, E>> + Send + 'static>>>;
