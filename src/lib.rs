//! idbind: a Kubernetes operator that binds ServiceAccounts to Azure user-assigned managed identities through
//! workload identity federation, and grants them Key Vault access.
//!
//! One module per concern; `main.rs` only parses flags and dispatches.

pub mod azure;
pub mod budget;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod failpoint;
pub mod guardrails;
pub mod health;
pub mod k8s;
pub mod leader;
pub mod naming;
pub mod plan;
pub mod resource;
pub mod roles;
pub mod run;
pub mod telemetry;
pub mod validate;
