//! The process around the reconcile: `idbind run` and `idbind plan` (flags to a wired controller), leader
//! election on a Lease, the health and metrics server, and telemetry.

pub mod controller;
pub mod health;
pub mod leader;
pub mod preview;
pub mod run;
