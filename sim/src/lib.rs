//! ARM + Entra simulator (issue 3): a real HTTP(S) server that behaves like Azure Resource Manager for the
//! operations idbind uses (managed identities and their federated credentials, role assignments and
//! definitions, Key Vault vaults and access policies, resource groups, subscriptions, providers, and seeded
//! Storage, Service Bus, Event Hubs, Container Registry and App Configuration resources to scope role
//! assignments on), like Entra's token endpoint, and like the Key Vault data plane (`kv`), with ARM's
//! throttling, error codes and timing quirks, propagation delays, fault injection, holds, and optional
//! persistence. An HTTPS-intercepting CONNECT proxy (`proxy`) serves it all under Azure's own host names, for
//! SDKs used unchanged.
//!
//! Two ways in: `cli::{SimArgs, run}` for the `idbind-sim` binary (`src/main.rs`), and
//! `Simulator::start(SimConfig)` for tests and benchmarks in-process (needs a multi-thread tokio runtime; no
//! global state, so any number can run side by side).

// Production code: a panic takes down a worker, so errors are values (tests may unwrap: clippy.toml).
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod admin;
pub mod arm;
pub mod cli;
pub mod config;
pub mod entra;
pub mod error;
pub mod handle;
pub mod harness;
pub mod http;
pub mod kv;
pub mod operations;
pub mod proxy;
pub mod seed;
pub mod server;
pub mod shared;
pub mod state;
pub mod tls;

pub use config::{
    BehaviourConfig, BucketSpec, EntraConfig, LatencyConfig, MsiLimits, MsiRate, MsiRetryAfter, SimConfig,
    ThrottleConfig, TlsConfig,
};
pub use error::SimError;
pub use handle::{SimHandle, Simulator};
pub use harness::counters::CounterSnapshot;
pub use harness::faults::{FaultAction, FaultRule};
pub use harness::holds::{HoldPhase, HoldSpec, HoldsStatus};
pub use seed::{
    Seed, SeedApp, SeedPrincipal, SeedResource, SeedResourceGroup, SeedRoleAssignment, SeedRoleDefinition,
    SeedSubscription, SeedVault,
};
pub use state::State;
