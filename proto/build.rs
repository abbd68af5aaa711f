//! Compiles `gantry/v1/*.proto` with protox (pure Rust, no protoc) and
//! generates the tonic clients and servers.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "gantry/v1/common.proto",
        "gantry/v1/client.proto",
        "gantry/v1/gate.proto",
        "gantry/v1/agent.proto",
        "gantry/v1/scheduler.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("gantry_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
