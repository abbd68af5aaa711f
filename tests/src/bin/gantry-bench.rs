//! `gantry-bench`: Gantry's benchmark scenarios over the real binaries (run
//! through `scripts/bench`, which builds them in release mode first).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    gantry_proto::tls::install_crypto_provider();
    let args = gantry_e2e::bench::Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(gantry_e2e::bench::run(args))
}
