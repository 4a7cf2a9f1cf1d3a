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
    /// Start the control plane on the node's bridge and a real node beside it (needs root; see `make node`),
    /// importing the given image archives into the node's containerd.
    Node {
        /// OCI or docker archives to import (the sandbox image first).
        images: Vec<PathBuf>,
    },
    /// Stop the processes started by `up` or `node`; for a node, undo every change it made to the machine.
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
        Cmd::Node { images } => {
            idbind_testenv::stop_detached(&cli.dir)?;
            let (plane, node) = idbind_testenv::node::start_with_plane(
                &cli.dir,
                idbind_testenv::Lifetime::Detached,
                &images,
            )?;
            println!(
                "node {} Ready in {:.1?}; control plane at {}",
                idbind_testenv::node::NODE_NAME,
                node.started_in,
                plane.server()
            );
            println!("export KUBECONFIG={}", plane.kubeconfig().display());
            plane.detach();
            node.detach();
        }
        Cmd::Down => {
            // The node first: its kubelet and kube-proxy would otherwise keep retrying a gone API server.
            let left = idbind_testenv::node::down()?;
            idbind_testenv::stop_detached(&cli.dir)?;
            if !left.is_empty() {
                anyhow::bail!("the node could not undo everything:\n  {}", left.join("\n  "));
            }
        }
    }
    Ok(())
}
