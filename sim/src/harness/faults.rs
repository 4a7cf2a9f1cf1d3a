//! Injected faults: errors (500, 503, 429…), added latency and dropped connections, per operation, with a hit
//! probability and an optional hit budget. Set by config or at runtime (`PUT /_sim/faults`,
//! `SimHandle::set_faults`).

use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::ArmError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    /// An operation name (`UserAssignedIdentities_CreateOrUpdate`, `Token`, …) or `*` for every ARM and Entra
    /// operation.
    pub operation: String,
    #[serde(flatten)]
    pub action: FaultAction,
    /// Probability that a matching request is hit, 0..=1.
    #[serde(default = "one")]
    pub rate: f64,
    /// Hit at most this many requests; unlimited when absent.
    #[serde(default)]
    pub times: Option<u64>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum FaultAction {
    /// Answer with this status and an ARM error body (429 also carries `Retry-After`).
    Error {
        status: u16,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Answer with this status, ARM error code and message, as the real service would for a condition the
    /// simulator does not model on its own (e.g. 400 `PrincipalNotFound` for a client that did send
    /// `principalType`, which Entra replication can still produce).
    Code {
        status: u16,
        code: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// Delay the request by this much before handling it.
    Latency { ms: u64 },
    /// Close the connection without answering.
    Drop,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultStatus {
    #[serde(flatten)]
    pub rule: FaultRule,
    pub hits: u64,
}

#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultStatus>>,
}

/// What the faults decided for one request.
#[derive(Debug, Default)]
pub struct FaultOutcome {
    pub delay: Duration,
    pub error: Option<ArmError>,
    pub drop: bool,
}

impl Faults {
    pub fn new(rules: Vec<FaultRule>) -> Self {
        let f = Self::default();
        f.set(rules);
        f
    }

    pub fn set(&self, rules: Vec<FaultRule>) {
        *lock(&self.rules) = rules.into_iter().map(|rule| FaultStatus { rule, hits: 0 }).collect();
    }

    pub fn get(&self) -> Vec<FaultStatus> {
        lock(&self.rules).clone()
    }

    pub fn decide(&self, operation: &str) -> FaultOutcome {
        let mut out = FaultOutcome::default();
        let mut rules = lock(&self.rules);
        let mut rng = rand::thread_rng();
        for st in rules.iter_mut() {
            if st.rule.operation != "*" && !st.rule.operation.eq_ignore_ascii_case(operation) {
                continue;
            }
            if st.rule.times.is_some_and(|t| st.hits >= t) {
                continue;
            }
            if st.rule.rate < 1.0 && rng.gen_range(0.0..1.0) >= st.rule.rate {
                continue;
            }
            match &st.rule.action {
                FaultAction::Latency { ms } => out.delay += Duration::from_millis(*ms),
                FaultAction::Drop if out.error.is_none() && !out.drop => out.drop = true,
                FaultAction::Error { status, retry_after_secs } if out.error.is_none() && !out.drop => {
                    out.error = Some(injected_error(*status, *retry_after_secs));
                }
                FaultAction::Code { status, code, message } if out.error.is_none() && !out.drop => {
                    let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    let message = message.clone().unwrap_or_else(|| format!("{code} (injected fault)."));
                    out.error = Some(ArmError::new(status, code.clone(), message));
                }
                // Only the first error/drop rule that matches takes effect.
                _ => continue,
            }
            st.hits += 1;
        }
        out
    }
}

fn injected_error(status: u16, retry_after: Option<u64>) -> ArmError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, message) = match status.as_u16() {
        429 => (
            "TooManyRequests",
            "The request was throttled (injected fault). Please retry after the interval in the Retry-After \
             header.",
        ),
        503 => (
            "ServiceUnavailable",
            "The service is temporarily unavailable (injected fault). Please try again later.",
        ),
        500 => ("InternalServerError", "Encountered internal server error (injected fault)."),
        _ => ("InjectedFault", "An injected fault answered this request."),
    };
    let err = ArmError::new(status, code, message);
    match (status.as_u16(), retry_after) {
        (_, Some(secs)) => err.with_header(axum::http::header::RETRY_AFTER, HeaderValue::from(secs)),
        (429 | 503, None) => err.with_header(axum::http::header::RETRY_AFTER, HeaderValue::from(1u64)),
        _ => err,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_budget_and_operation_match() {
        let f = Faults::new(vec![FaultRule {
            operation: "A".into(),
            action: FaultAction::Error { status: 503, retry_after_secs: None },
            rate: 1.0,
            times: Some(2),
        }]);
        assert!(f.decide("B").error.is_none());
        assert_eq!(f.decide("a").error.map(|e| e.status), Some(StatusCode::SERVICE_UNAVAILABLE));
        assert!(f.decide("A").error.is_some());
        assert!(f.decide("A").error.is_none());
        assert_eq!(f.get()[0].hits, 2);
    }

    #[test]
    fn rules_parse_from_json() {
        let rules: Vec<FaultRule> = serde_json::from_str(
            r#"[{"operation":"*","kind":"latency","ms":5},{"operation":"Token","kind":"drop","rate":0.5}]"#,
        )
        .unwrap_or_default();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].action, FaultAction::Drop);
    }

    #[test]
    fn a_code_rule_answers_with_that_arm_code() {
        let rules: Vec<FaultRule> = serde_json::from_str(
            r#"[{"operation":"RoleAssignments_Create","kind":"code","status":400,"code":"PrincipalNotFound","times":1}]"#,
        )
        .unwrap_or_default();
        let f = Faults::new(rules);
        let err = f.decide("RoleAssignments_Create").error;
        assert_eq!(
            err.as_ref().map(|e| (e.status, e.body()["error"]["code"].clone())),
            Some((StatusCode::BAD_REQUEST, serde_json::json!("PrincipalNotFound")))
        );
        assert!(f.decide("RoleAssignments_Create").error.is_none(), "times: 1");
    }
}
