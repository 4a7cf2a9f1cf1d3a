//! The `idbind` binary: a thin dispatcher over the library's subcommands.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "idbind", version, about = "Bind Kubernetes ServiceAccounts to Azure managed identities (workload identity federation) and Key Vault roles")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (what `crds/` holds).
    Crd,
    /// Run the ARM + Entra simulator (for tests, benchmarks and `make demo`).
    Sim(Box<idbind_sim::cli::SimArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", idbind::crd::crds_yaml()?);
            Ok(())
        }
        Command::Sim(args) => idbind_sim::cli::run(*args).await,
    }
}
