//! idbind: a Kubernetes operator that binds ServiceAccounts to Azure user-assigned managed
//! identities through workload identity federation, and grants them Key Vault access.
//!
//! One module per concern; `main.rs` only parses flags and dispatches.

pub mod crd;
pub mod resource;
pub mod naming;
pub mod roles;
pub mod validate;
pub mod guardrails;
pub mod plan;
pub mod conditions;
pub mod budget;
pub mod azure;
pub mod k8s;
pub mod controller;
pub mod failpoint;
pub mod run;
pub mod telemetry;
pub mod health;
pub mod leader;
