//! `idbind-testenv up|down [--dir DIR]`: the local control plane for humans (`make up`/`make down`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Start or stop idbind's local Kubernetes control plane (etcd + kube-apiserver + \
        kube-controller-manager)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Folder for state, logs, pid files and the kubeconfig.
    #[arg(long, global = true, default_value = ".cache/cluster")]
    dir: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start (replacing a running one in the same folder) and print the kubeconfig path.
    Up,
    /// Stop the processes started by `up`.
    Down,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Up => {
            idbind_testenv::stop_detached(&cli.dir)?;
            let plane = idbind_testenv::ControlPlane::start(&cli.dir, idbind_testenv::Lifetime::Detached)?;
            println!("control plane ready at {}", plane.server());
            println!("export KUBECONFIG={}", plane.kubeconfig().display());
            plane.detach();
        }
        Cmd::Down => idbind_testenv::stop_detached(&cli.dir)?,
    }
    Ok(())
}
