//! Stand-alone launcher used until `idbind sim` is wired; identical flags.
use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: idbind_sim::cli::SimArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    idbind_sim::cli::run(Cli::parse().args).await
}
