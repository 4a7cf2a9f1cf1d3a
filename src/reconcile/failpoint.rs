//! Crash points for the crash-consistency tests: with `IDBIND_CRASH_AT=<point>` in its environment, the
//! operator aborts (no cleanup, no unwinding, as a SIGKILL or an OOM kill would end it) the first time it
//! reaches that point. Azure writes are interrupted from the simulator's side instead (it holds the Nth
//! write), so only the points the simulator cannot see live here. Without the variable, [`hit`] is one
//! relaxed load.

use std::sync::OnceLock;

/// Just before a binding's status is written (Azure and the ServiceAccount are done).
pub const BEFORE_STATUS_WRITE: &str = "before-status-write";
/// Just after a binding's status was written, before the reconcile returns.
pub const AFTER_STATUS_WRITE: &str = "after-status-write";
/// Just after the export ConfigMap was created, before the binding's status records its UID.
pub const AFTER_EXPORT_CREATE: &str = "after-export-create";

fn armed() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| std::env::var("IDBIND_CRASH_AT").ok().filter(|v| !v.is_empty())).as_deref()
}

/// Aborts the process if `point` is the armed crash point.
pub fn hit(point: &str) {
    if armed() == Some(point) {
        eprintln!("IDBIND_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}
