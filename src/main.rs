//! The `idbind` binary: a thin dispatcher over the library's subcommands.

// Production code: a panic takes down a worker, so errors are values (tests may unwrap: clippy.toml).
#![warn(clippy::unwrap_used, clippy::expect_used)]

use std::{ffi::OsString, process::ExitCode};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use idbind::runtime::{preview, run};

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
    Run(Box<run::RunArgs>),
    /// Show what applying the bindings in some manifests would make the operator do now (a dry run: the API
    /// server's, the operator's policies', Azure's read only). Exit code: 0 no changes, 2 changes, 1 refused,
    /// blocked, rejected or an error.
    ///
    /// The settings are the operator's ConfigMap (in --operator-namespace, read through the kubeconfig) under
    /// these flags and their environment variables; with --no-cluster, or no kubeconfig, flags and
    /// environment only.
    Plan(Box<preview::PlanArgs>),
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD (what `crds/` holds).
    Crd {
        /// Write `<dir>/<group>_<plural>.yaml` files instead of printing.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // `plan` reads the operator's ConfigMap before parsing: its values are the flags' defaults.
    let (command, cluster) = match preview::prepare(Cli::command(), "plan", &args).await {
        Ok(prepared) => prepared,
        Err(e) => return failed(&e),
    };
    let cli = match command.try_get_matches_from(&args).and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) => return usage(&e, cluster.is_some()),
    };
    #[cfg(not(target_env = "msvc"))]
    idbind::telemetry::set_heap_stats(heap_stats);
    match cli.command {
        Command::Run(args) => {
            idbind::telemetry::init_logging(args.log_format == run::LogFormat::Json);
            exit(run::run(*args).await)
        }
        Command::Plan(args) => {
            let cluster = cluster.unwrap_or_else(|| preview::Cluster::NotConsulted("not prepared".into()));
            preview::plan(*args, cluster).await
        }
        Command::Crd { out_dir } => exit(crd(out_dir)),
    }
}

fn crd(out_dir: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    match out_dir {
        None => print!("{}", idbind::api::crd::crds_yaml()?),
        Some(dir) => {
            for (name, yaml) in idbind::api::crd::crd_files()? {
                std::fs::write(dir.join(name), yaml)?;
            }
        }
    }
    Ok(())
}

/// What `main` returning `anyhow::Result` did: the error and its causes on stderr, exit code 1.
fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&format!("{e:?}")),
    }
}

fn failed(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("Error: {e}");
    ExitCode::FAILURE
}

/// clap's message (or --help, --version); a usage error of `plan` exits 1, not clap's 2, which `plan` keeps
/// for "changes".
fn usage(e: &clap::Error, plan: bool) -> ExitCode {
    let _ = e.print();
    match e.exit_code() {
        0 => ExitCode::SUCCESS,
        _ if plan => ExitCode::FAILURE,
        code => ExitCode::from(u8::try_from(code).unwrap_or(1)),
    }
}
