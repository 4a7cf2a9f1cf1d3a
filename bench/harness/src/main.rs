//! `make bench`: the idbind benchmark. For each size N it starts a fresh control plane and ARM simulator
//! (ARM's documented limits, a latency per operation), runs the release operator, applies N bindings at once
//! and measures convergence against the lower bound the limits imply, ARM requests by operation and status,
//! spec edits under backlog, a restart's first pass and the steady state over several resync periods, and the
//! operator's memory and CPU. Results go to `bench/results.json` (merged by size, so sizes can be run
//! separately) and `bench/REPORT.md`; `bench/plot.py` draws `bench/convergence.png` from the JSON.
//!
//! A benchmark, not a test: it asserts nothing, it reports. Every wait is bounded in time.

// A test and benchmark harness, not the product: process control and /proc figures through libc (prctl, kill,
// sysconf); each use carries a SAFETY note.
#![allow(unsafe_code)]

mod fleet;
mod model;
mod procs;
mod prom;
mod report;
mod run;
mod watch;

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "idbind benchmark: convergence, ARM requests, steady state, memory, fairness")]
struct Args {
    /// Sizes to run (space or comma separated).
    #[arg(long, default_value = "100 1000 10000")]
    sizes: String,
    /// Limit and budget multiplier (and latency divisor) for sizes above 1,000, so 10,000 bindings converge
    /// in minutes. Sizes up to 1,000 always run at real limits.
    #[arg(long, default_value_t = 20.0)]
    large_scale: f64,
    /// IDBIND_CONCURRENCY for the operator (the product default is 8).
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// IDBIND_CONCURRENCY for the scaled sizes.
    #[arg(long, default_value_t = 32)]
    large_concurrency: u32,
    /// Steady-state resync periods to measure.
    #[arg(long, default_value_t = 3.0)]
    steady_periods: f64,
    /// The release idbind binary.
    #[arg(long, default_value = "target/release/idbind")]
    idbind: PathBuf,
    /// The release idbind-sim binary (the ARM + Entra simulator).
    #[arg(long, default_value = "target/release/idbind-sim")]
    sim: PathBuf,
    /// Scratch folder (clusters, simulator state, logs).
    #[arg(long, default_value = ".cache/bench")]
    work: PathBuf,
    /// Where results.json and REPORT.md go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// Python with matplotlib, for the chart (skipped if missing).
    #[arg(long, default_value = ".cache/bench-venv/bin/python")]
    python: PathBuf,
    /// Operators (clusters) of the fleet phase, sharing one subscription; 0 skips the phase.
    #[arg(long, default_value_t = 4)]
    fleet: usize,
    /// Bindings of the fleet phase, over all its operators.
    #[arg(long, default_value_t = 200)]
    fleet_n: usize,
    /// Only rewrite REPORT.md and the chart from results.json.
    #[arg(long)]
    report_only: bool,
}

pub fn now_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn sh(cmd: &str) -> String {
    Command::new("bash")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> Value {
    json!({
        "nproc": sh("nproc"),
        "cpuModel": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'"),
        "memTotal": sh("grep MemTotal /proc/meminfo | awk '{printf \"%.1f GiB\", $2/1048576}'"),
        "kernel": sh("uname -r"),
        "loadAverageAtStart": sh("cut -d' ' -f1-3 /proc/loadavg"),
        "rustc": sh("rustc --version"),
        "gitCommit": sh("git rev-parse --short HEAD 2>/dev/null"),
        "gitDirty": !sh("git status --porcelain --untracked-files=no 2>/dev/null").is_empty(),
    })
}

fn size_settings(n: usize, args: &Args) -> run::Size {
    let scale = if n > 1000 { args.large_scale } else { 1.0 };
    // Steady state: long enough that one read per binding per resync fits the read buckets (the
    // managed-identity GET bucket at 10/s per subscription is the tightest), at least 30 s. And at most 100
    // reconciles/s, which the 2-core machine running everything keeps up with.
    let steady = ((n as f64 / (10.0 * scale)).ceil() as u64).max(n as u64 / 100).max(30);
    run::Size {
        n,
        scale,
        concurrency: if n > 1000 { args.large_concurrency } else { args.concurrency },
        // The product's default for every size: scaling Azure's limits does not make the Kubernetes side or
        // this machine's 2 cores faster, and a resync of 600 / 20 = 30 s at N = 10,000 asked for 333
        // reconciles/s during convergence (measured: 105,000 reconciles in 600 s, the operator CPU-bound, 593
        // new bindings not picked up for over six minutes).
        converge_resync: 600,
        steady_resync: steady,
        steady_periods: args.steady_periods,
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let sizes: Vec<usize> = args
        .sizes
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().with_context(|| format!("size {s:?}")))
        .collect::<Result<_>>()?;
    let results_file = args.out.join("results.json");
    let mut results: Value = fs::read_to_string(&results_file)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_else(|| json!({}));
    if !results.is_object() {
        results = json!({});
    }
    if !args.report_only {
        let opts = run::Options {
            idbind: fs::canonicalize(&args.idbind).with_context(|| {
                format!("{} (build it with cargo build --release --bin idbind)", args.idbind.display())
            })?,
            sim: fs::canonicalize(&args.sim).with_context(|| {
                format!(
                    "{} (build it with cargo build --release -p idbind-sim --bin idbind-sim)",
                    args.sim.display()
                )
            })?,
            work: args.work.clone(),
            crds: fs::canonicalize("crds")?,
        };
        fs::create_dir_all(&args.work)?;
        let machine = machine();
        for &n in &sizes {
            let size = size_settings(n, &args);
            let mut r = match run::run(&opts, &size) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("[bench] N={n} FAILED: {e:#}");
                    json!({"n": n, "scale": size.scale, "ranAt": now_utc(), "error": format!("{e:#}")})
                }
            };
            r["machine"] = machine.clone();
            results["runs"][n.to_string()] = r;
            results["latencyModel"] = json!(
                model::LATENCY_MS
                    .iter()
                    .map(|(op, ms, src)| json!({"operation": op, "ms": ms, "source": src}))
                    .collect::<Vec<_>>()
            );
            fs::create_dir_all(&args.out)?;
            fs::write(&results_file, serde_json::to_string_pretty(&results)?)?;
            report::write(&args.out, &results)?;
        }
        for strict in [false, true].into_iter().filter(|_| args.fleet > 0) {
            let phase =
                fleet::Fleet { k: args.fleet, n: args.fleet_n, concurrency: args.concurrency, strict };
            let profile = if strict { "strict" } else { "kind" };
            let mut r = match fleet::run(&opts, &phase) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("[bench] fleet K={} N={} ({profile}) FAILED: {e:#}", phase.k, phase.n);
                    json!({"k": phase.k, "n": phase.n, "retryAfter": profile, "ranAt": now_utc(), "error": format!("{e:#}")})
                }
            };
            r["machine"] = machine.clone();
            results["fleet"][profile] = r;
            fs::create_dir_all(&args.out)?;
            fs::write(&results_file, serde_json::to_string_pretty(&results)?)?;
        }
    }
    report::write(&args.out, &results)?;
    if args.python.exists() {
        let status = Command::new(&args.python)
            .arg(args.out.join("plot.py"))
            .arg(&results_file)
            .arg(args.out.join("convergence.png"))
            .status()?;
        if !status.success() {
            eprintln!("[bench] plot.py failed ({status}); REPORT.md and results.json are written");
        }
    } else {
        eprintln!("[bench] {} missing: no chart (make bench sets up the venv)", args.python.display());
    }
    eprintln!("[bench] wrote {} and {}", results_file.display(), args.out.join("REPORT.md").display());
    Ok(())
}
