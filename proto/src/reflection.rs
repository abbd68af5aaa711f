//! gRPC server reflection, served by every Gantry server so that tools
//! such as grpcurl call it without the `.proto` files.

use tonic::transport::server::Router;

/// The standard health service's full name.
const HEALTH: &str = "grpc.health.v1.Health";

/// `router` with gRPC server reflection, in both `grpc.reflection.v1` and
/// `grpc.reflection.v1alpha` (grpcurl 1.8 speaks only the latter),
/// advertising `services` (full names such as `gantry.v1.Gantry`), the
/// health service and reflection itself, described from package
/// `gantry.v1` and `grpc.health.v1`.
///
/// # Panics
/// If the descriptor sets built into this binary do not decode (a broken build).
pub fn add_reflection<L>(router: Router<L>, services: &[&str]) -> Router<L> {
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for name in services.iter().copied().chain([
            HEALTH,
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]) {
            builder = builder.with_service_name(name);
        }
        builder
    };
    const BUILT_IN: &str = "the built-in descriptor sets decode";
    router
        .add_service(builder().build_v1().expect(BUILT_IN))
        .add_service(builder().build_v1alpha().expect(BUILT_IN))
}
