//! idbind: a Kubernetes operator that binds ServiceAccounts to Azure user-assigned managed identities through
//! workload identity federation, and grants them Key Vault access.
//!
//! The folders are the architecture (ARCHITECTURE.md walks through it); each depends only on those above it:
//! - [`api`]: the custom resources, whose doc comments are the API reference;
//! - [`core`]: the pure core — resource ids, names, roles, validation, policy, planning, conditions and the
//!   status a reconcile's outcome becomes — with no I/O, tested without any server;
//! - [`azure`] and [`k8s`]: the adapters, thin and behind small traits;
//! - [`reconcile`]: the reconcile pipeline, one module per step;
//! - [`runtime`]: the process around it — `idbind run`, the kube-runtime controller, leader election, health
//!   and metrics.

// Production code: a panic takes down a worker, so errors are values (tests may unwrap: clippy.toml).
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

pub mod api;
pub mod azure;
pub mod core;
pub mod k8s;
pub mod reconcile;
pub mod runtime;
pub mod telemetry;
