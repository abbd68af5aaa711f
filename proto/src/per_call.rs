//! What the per-call layers ([`crate::metrics::GrpcMetricsLayer`] and
//! [`crate::rpc_trace::RpcTraceLayer`]) share: the future of a call they
//! wrap, which is the inner service's own, untouched and unboxed, when the
//! layer is off (no metrics served, no traces exported), so that the hot
//! path pays nothing for them.

use std::future::Future;
use std::pin::Pin;

use futures::future::Either;
use tonic::codegen::http;

/// A wrapped call: `Left` the inner future as it is, `Right` the layer's.
pub type CallFuture<F, R, E> =
    Either<F, Pin<Box<dyn Future<Output = Result<R, E>> + Send + 'static>>>;

/// The gRPC code a call ended with, as its response's headers say (a call
/// refused or failed before its first message); OK when they say none (its
/// status, if any, comes in the trailers); UNAVAILABLE when there was no
/// response at all (the connection failed).
pub fn code_of<B, E>(result: &Result<http::Response<B>, E>) -> tonic::Code {
    match result {
        Ok(response) => tonic::Status::from_header_map(response.headers())
            .map_or(tonic::Code::Ok, |status| status.code()),
        Err(_) => tonic::Code::Unavailable,
    }
}
