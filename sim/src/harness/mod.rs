//! What makes the simulator a test harness rather than Azure: its clock, injected faults, holds, throttling,
//! persistence and request counters. The Azure surfaces it serves are `arm`, `entra` and `kv`.

pub mod clock;
pub mod counters;
pub mod faults;
pub mod holds;
pub mod persist;
pub mod throttle;
