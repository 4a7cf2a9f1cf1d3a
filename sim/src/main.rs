//! `idbind-sim`: the ARM + Entra simulator as a process (for `make demo`, `make bench`, Python SDK tests). A
//! binary of its own so that the operator's `idbind` binary, and its image, carries no token issuer, CA
//! generator or fault injection. The flags are `cli::SimArgs`; everything else is in the library.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "idbind-sim",
    version,
    about = "ARM + Entra simulator for idbind's tests, benchmarks and `make demo` (not for production)"
)]
struct Cli {
    #[command(flatten)]
    args: idbind_sim::cli::SimArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    idbind_sim::cli::run(Cli::parse().args).await
}
