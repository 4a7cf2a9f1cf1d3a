//! Stand-in launcher until `idbind sim` is wired: `sim sim [FLAGS]` takes exactly the flags of `idbind sim`,
//! so the Python tests can run against either (`IDBIND_BIN`).
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the ARM + Entra simulator.
    Sim(idbind_sim::cli::SimArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Sim(args) = Cli::parse().command;
    idbind_sim::cli::run(args).await
}
