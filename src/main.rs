//! The `idbind` binary: a thin dispatcher over the library's subcommands.

// Production code: a panic takes down a worker, so errors are values (tests may unwrap: clippy.toml).
#![warn(clippy::unwrap_used, clippy::expect_used)]

use clap::{Parser, Subcommand};

// See Cargo.toml: jemalloc keeps the operator's memory close to what it holds.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's live and resident bytes (refreshed by advancing its statistics epoch).
#[cfg(not(target_env = "msvc"))]
fn heap_stats() -> Option<(u64, u64)> {
    use tikv_jemalloc_ctl::{epoch, stats};
    epoch::advance().ok()?;
    Some((stats::allocated::read().ok()? as u64, stats::resident::read().ok()? as u64))
}

#[derive(Parser)]
#[command(
    name = "idbind",
    version,
    about = "Bind Kubernetes ServiceAccounts to Azure managed identities (workload identity federation) and \
        Key Vault roles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller (flags or environment; see --help).
    Run(Box<idbind::runtime::run::RunArgs>),
    /// Show the Azure writes a binding would cause now, reading Azure only (a dry run).
    Plan(Box<idbind::runtime::run::PlanArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD (what `crds/` holds).
    Crd {
        /// Write `<dir>/<group>_<plural>.yaml` files instead of printing.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    #[cfg(not(target_env = "msvc"))]
    idbind::telemetry::set_heap_stats(heap_stats);
    if let Command::Run(args) = &cli.command {
        idbind::telemetry::init_logging(args.log_format == idbind::runtime::run::LogFormat::Json);
    }
    match cli.command {
        Command::Run(args) => idbind::runtime::run::run(*args).await,
        Command::Plan(args) => idbind::runtime::run::plan(*args).await,
        Command::Crd { out_dir: None } => {
            print!("{}", idbind::api::crd::crds_yaml()?);
            Ok(())
        }
        Command::Crd { out_dir: Some(dir) } => {
            for (name, yaml) in idbind::api::crd::crd_files()? {
                std::fs::write(dir.join(name), yaml)?;
            }
            Ok(())
        }
    }
}
