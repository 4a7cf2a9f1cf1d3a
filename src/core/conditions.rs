//! Status conditions as kstatus (Flux's health checks) and `kubectl wait` read them.
//!
//! `Ready` summarises; one condition per part says which part is (not) done; `Reconciling` and `Stalled` are
//! present only while true (kstatus treats Stalled=True as failed, Reconciling=True as in progress).
//! `lastTransitionTime` moves only when a condition's status flips, and a write happens only when something a
//! user can see changed.

use crate::core::reason::Reason;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const IDENTITY_READY: &str = "IdentityReady";
pub const FEDERATED_CREDENTIAL_READY: &str = "FederatedCredentialReady";
pub const ROLE_ASSIGNMENTS_READY: &str = "RoleAssignmentsReady";
pub const SERVICE_ACCOUNT_READY: &str = "ServiceAccountReady";
/// Present only with verification on: the ServiceAccount's token exchanges at Entra for the identity.
pub const FEDERATION_VERIFIED: &str = "FederationVerified";
/// Present only with access verification on: the identity's token opens each vault.
pub const ACCESS_VERIFIED: &str = "AccessVerified";
/// Present only when the spec names SecretProviderClasses: each carries the identity's client and tenant ids.
pub const SECRET_PROVIDER_CLASSES_READY: &str = "SecretProviderClassesReady";
/// Present only with spec.export: the ConfigMap carries the identity's ids.
pub const EXPORT_READY: &str = "ExportReady";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// A condition's desired value, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Want<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: Reason,
    pub message: String,
}

/// Sets `want` in `conditions` for `generation`. Returns whether anything changed. The transition time is
/// kept unless the status flips, so a steady binding's status is stable.
pub fn set(conditions: &mut Vec<Condition>, want: &Want<'_>, generation: Option<i64>, now: &Time) -> bool {
    // The API server stores condition times in whole seconds; keeping sub-seconds here would make every
    // status read back differ from what we computed, and every resync write it again.
    let now = &whole_seconds(now);
    let status = if want.status { "True" } else { "False" }.to_string();
    let next = |last_transition_time: Time| Condition {
        type_: want.type_.to_string(),
        status: status.clone(),
        reason: want.reason.to_string(),
        message: want.message.clone(),
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == want.type_) {
        Some(c)
            if c.status == status
                && c.reason == want.reason.as_str()
                && c.message == want.message
                && c.observed_generation == generation =>
        {
            false
        }
        Some(c) => {
            let since = if c.status == status { c.last_transition_time.clone() } else { now.clone() };
            *c = next(since);
            true
        }
        None => {
            conditions.push(next(now.clone()));
            true
        }
    }
}

fn whole_seconds(t: &Time) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(t.0.as_second()).unwrap_or(t.0))
}

/// Removes a condition (for Reconciling/Stalled once false). Returns whether it was there.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    before != conditions.len()
}

/// Whether `type_` is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default())
    }

    fn ready(status: bool, reason: Reason) -> Want<'static> {
        Want { type_: READY, status, reason, message: format!("{reason} message") }
    }

    #[test]
    fn unchanged_conditions_are_not_rewritten() {
        let mut c = Vec::new();
        assert!(set(&mut c, &ready(true, Reason::Reconciled), Some(1), &t(10)));
        assert!(!set(&mut c, &ready(true, Reason::Reconciled), Some(1), &t(20)));
        assert_eq!(c[0].last_transition_time, t(10));
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let mut c = Vec::new();
        set(&mut c, &ready(false, Reason::Throttled), Some(1), &t(10));
        assert!(set(&mut c, &ready(false, Reason::PrincipalNotReplicated), Some(1), &t(20)));
        assert_eq!(c[0].last_transition_time, t(10), "same status, new reason: time kept");
        assert!(set(&mut c, &ready(true, Reason::Reconciled), Some(1), &t(30)));
        assert_eq!(c[0].last_transition_time, t(30));
        assert_eq!(c[0].status, "True");
    }

    #[test]
    fn a_new_generation_is_a_change() {
        let mut c = Vec::new();
        set(&mut c, &ready(true, Reason::Reconciled), Some(1), &t(10));
        assert!(set(&mut c, &ready(true, Reason::Reconciled), Some(2), &t(20)));
        assert_eq!((c[0].observed_generation, c[0].last_transition_time.clone()), (Some(2), t(10)));
    }

    #[test]
    fn times_are_kept_in_whole_seconds_as_the_api_server_stores_them() {
        let mut c = Vec::new();
        let precise = Time(k8s_openapi::jiff::Timestamp::from_nanosecond(10_600_000_000).unwrap_or_default());
        set(&mut c, &ready(true, Reason::Reconciled), Some(1), &precise);
        assert_eq!(c[0].last_transition_time, t(10));
    }

    #[test]
    fn stalled_is_removed_when_false() {
        let mut c = Vec::new();
        set(
            &mut c,
            &Want { type_: STALLED, status: true, reason: Reason::InvalidSpec, message: "spec.x".into() },
            Some(1),
            &t(1),
        );
        assert!(is_true(&c, STALLED));
        assert!(remove(&mut c, STALLED));
        assert!(!remove(&mut c, STALLED));
        assert!(!is_true(&c, STALLED));
    }
}
