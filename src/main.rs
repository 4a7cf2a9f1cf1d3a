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
    /// Run the controller (flags or environment; see --help).
    Run(Box<idbind::run::RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (what `crds/` holds).
    Crd,
    /// Run the ARM + Entra simulator (for tests, benchmarks and `make demo`).
    Sim(Box<idbind_sim::cli::SimArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Run(args) = &cli.command {
        idbind::telemetry::init_logging(args.log_format == idbind::run::LogFormat::Json);
    }
    match cli.command {
        Command::Run(args) => idbind::run::run(*args).await,
        Command::Crd => {
            print!("{}", idbind::crd::crds_yaml()?);
            Ok(())
        }
        Command::Sim(args) => idbind_sim::cli::run(*args).await,
    }
}
