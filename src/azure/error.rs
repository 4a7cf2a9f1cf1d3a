//! What can go wrong talking to Azure, and what the controller should do about it.
//!
//! The SDK's own retries are off (docs/azure.md#sdk-pitfalls): every failure comes back here, and the
//! controller decides from [`AzureError::retryable`] and [`AzureError::retry_after`] whether to requeue (with
//! ARM's `Retry-After` when it gave one) or to wait for a spec change. The classification follows Azure
//! Service Operator's: throttling, 5xx, replication lag (`PrincipalNotFound`), concurrent-write conflicts and
//! authorization failures may heal on their own; malformed requests and missing roles or resource groups do
//! not. The codes and statuses are in docs/azure.md#arm-errors.

use std::time::Duration;

use crate::core::reason::Reason;

/// A failed Azure call, saying which call failed and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureError {
    /// ARM answered with an error status.
    #[error("{operation} failed: HTTP {status} {code}: {message}")]
    Arm {
        /// The ARM operation, named as in the REST spec (`UserAssignedIdentities_Get`, …).
        operation: &'static str,
        status: u16,
        /// ARM's error code (`AuthorizationFailed`, `PrincipalNotFound`, …); empty when the answer had none.
        code: String,
        message: String,
        /// From `Retry-After` (seconds) or `x-ms-retry-after-ms` / `retry-after-ms`.
        retry_after: Option<Duration>,
    },
    /// The request got no HTTP answer (connection refused or dropped, TLS, timeout).
    #[error("{operation} failed: no answer from Azure: {message}")]
    Network { operation: &'static str, message: String },
    /// No token could be obtained for the call.
    #[error("{operation} failed: could not obtain an Azure token: {message}")]
    Credential { operation: &'static str, message: String },
    /// Azure answered with something we could not read.
    #[error("{operation} failed: unreadable answer from Azure: {message}")]
    InvalidResponse { operation: &'static str, message: String },
    /// No role definition has this name at the scope.
    #[error("role definition {role:?} does not exist at {scope}")]
    RoleNotFound { role: String, scope: String },
    /// The Key Vault named by the binding does not exist.
    #[error("key vault {0} does not exist")]
    VaultNotFound(String),
    /// ARM says the (scope, role, principal) assignment exists, under a name that is not the one idbind
    /// derives: someone else made it, so it is reported rather than adopted.
    #[error(
        "role assignment {name} at {scope} conflicts with an existing assignment {existing} for the same \
         principal and role that idbind did not create"
    )]
    RoleAssignmentConflict { scope: String, name: String, existing: String },
    /// A role assignment was to be created before the identity's principal id was known; the next reconcile
    /// observes the identity and has it.
    #[error("the identity {0} has no principal id yet")]
    IdentityNotReady(crate::core::resource_id::ResourceId),
    /// A resource id that does not have the shape the call needs.
    #[error("{id:?} is not a {kind} resource id")]
    InvalidResourceId { kind: &'static str, id: String },
    /// A request's URL addressed another path than the id it was made for (a URL parser read a `\` as `/`,
    /// resolved a dot segment or encoded a character), or a call did not say which id it addresses: it was
    /// not sent.
    #[error("{operation} not sent: its URL's path {sent:?} is not {address}")]
    Misaddressed { operation: &'static str, address: String, sent: String },
    /// The Azure client could not be set up (endpoints, CA file, HTTP client).
    #[error("Azure client configuration: {0}")]
    Config(String),
}

impl AzureError {
    /// The reason this error falls under: the condition reason, Event reason and metric label, and whether it
    /// is retried ([`Reason::retryable`]).
    pub fn reason(&self) -> Reason {
        match self {
            AzureError::Arm { status, code, .. } => classify(*status, code),
            AzureError::Network { .. } => Reason::AzureUnreachable,
            AzureError::Credential { .. } => Reason::AuthenticationFailed,
            AzureError::InvalidResponse { .. } => Reason::InvalidAzureResponse,
            AzureError::RoleNotFound { .. } => Reason::RoleNotFound,
            AzureError::VaultNotFound(_) => Reason::VaultNotFound,
            AzureError::IdentityNotReady(_) => Reason::IdentityNotReady,
            AzureError::RoleAssignmentConflict { .. } => Reason::RoleAssignmentConflict,
            AzureError::InvalidResourceId { .. } | AzureError::Misaddressed { .. } => {
                Reason::InvalidResourceId
            }
            AzureError::Config(_) => Reason::InvalidConfiguration,
        }
    }

    pub fn retryable(&self) -> bool {
        self.reason().retryable()
    }

    /// How long Azure asked us to wait, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AzureError::Arm { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether ARM said the addressed resource does not exist (a delete treats this as done).
    pub fn is_not_found(&self) -> bool {
        matches!(self, AzureError::Arm { status: 404, .. })
    }

    /// ARM's error code, when ARM answered.
    pub fn arm_code(&self) -> Option<&str> {
        match self {
            AzureError::Arm { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The reason of an ARM error answer. The code decides when it is one we know (ARM compares codes
/// case-sensitively, but some services vary the case, so we do not); otherwise the status does.
fn classify(status: u16, code: &str) -> Reason {
    let known = [
        ("PrincipalNotFound", Reason::PrincipalNotReplicated),
        (
            "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
            Reason::ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity,
        ),
        ("AnotherOperationInProgress", Reason::AnotherOperationInProgress),
        ("AuthorizationFailed", Reason::AuthorizationFailed),
        ("ResourceGroupNotFound", Reason::ResourceGroupNotFound),
        ("RoleDefinitionDoesNotExist", Reason::RoleNotFound),
        ("BadRequest", Reason::BadRequest),
        ("InvalidParameter", Reason::InvalidParameter),
        ("Conflict", Reason::Conflict),
    ];
    if status == 429 {
        return Reason::Throttled;
    }
    if status >= 500 {
        return Reason::AzureServerError;
    }
    if let Some((_, c)) = known.iter().find(|(k, _)| k.eq_ignore_ascii_case(code)) {
        return *c;
    }
    match status {
        // An expired or not-yet-valid token: the next attempt gets a fresh one.
        401 => Reason::AuthenticationFailed,
        404 => Reason::NotFound,
        _ => Reason::AzureRequestRejected,
    }
}

/// Reads ARM's retry hints (docs/azure.md#retry-after): `x-ms-retry-after-ms` / `retry-after-ms`
/// (milliseconds) win over `Retry-After` (seconds). The HTTP-date form of `Retry-After` is not used by ARM
/// and is ignored, leaving the controller's own backoff in charge.
pub fn parse_retry_after(retry_after: Option<&str>, retry_after_ms: Option<&str>) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_millis(ms));
    }
    retry_after.and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::resource_id::{ResourceId, USER_ASSIGNED_IDENTITY};

    fn arm(status: u16, code: &str, retry_after: Option<Duration>) -> AzureError {
        AzureError::Arm { operation: "Test_Op", status, code: code.into(), message: "m".into(), retry_after }
    }

    #[test]
    fn arm_answers_are_classified_by_code_then_status() {
        let table: &[(u16, &str, &str, bool)] = &[
            (429, "TooManyRequests", "Throttled", true),
            (429, "", "Throttled", true),
            (500, "InternalServerError", "AzureServerError", true),
            (502, "", "AzureServerError", true),
            (503, "ServiceUnavailable", "AzureServerError", true),
            (400, "PrincipalNotFound", "PrincipalNotReplicated", true),
            (
                409,
                "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
                "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
                true,
            ),
            (409, "AnotherOperationInProgress", "AnotherOperationInProgress", true),
            (409, "Conflict", "Conflict", true),
            (403, "AuthorizationFailed", "AuthorizationFailed", true),
            (401, "InvalidAuthenticationToken", "AuthenticationFailed", true),
            (401, "ExpiredAuthenticationToken", "AuthenticationFailed", true),
            (404, "ResourceGroupNotFound", "ResourceGroupNotFound", false),
            (404, "RoleDefinitionDoesNotExist", "RoleNotFound", false),
            (400, "RoleDefinitionDoesNotExist", "RoleNotFound", false),
            (404, "ResourceNotFound", "NotFound", false),
            (400, "BadRequest", "BadRequest", false),
            (400, "badrequest", "BadRequest", false),
            (400, "InvalidParameter", "InvalidParameter", false),
            (400, "SubscriptionNotFound", "AzureRequestRejected", false),
            (400, "", "AzureRequestRejected", false),
            (409, "RoleAssignmentExists", "AzureRequestRejected", false),
        ];
        for (status, code, reason, retryable) in table {
            let e = arm(*status, code, None);
            assert_eq!((e.reason().as_str(), e.retryable()), (*reason, *retryable), "{status} {code}");
        }
    }

    #[test]
    fn errors_without_an_arm_answer_are_classified_by_kind() {
        let table: Vec<(AzureError, &str, bool)> = vec![
            (
                AzureError::Network { operation: "X", message: "connection reset".into() },
                "AzureUnreachable",
                true,
            ),
            (
                AzureError::Credential { operation: "X", message: "AADSTS7000215".into() },
                "AuthenticationFailed",
                true,
            ),
            (
                AzureError::InvalidResponse { operation: "X", message: "missing principalId".into() },
                "InvalidAzureResponse",
                true,
            ),
            (
                AzureError::IdentityNotReady(
                    ResourceId::resource_group_scope("s", "rg")
                        .provider_resource(USER_ASSIGNED_IDENTITY, "i"),
                ),
                "IdentityNotReady",
                true,
            ),
            (
                AzureError::RoleNotFound { role: "Nope".into(), scope: "/subscriptions/s".into() },
                "RoleNotFound",
                false,
            ),
            (
                AzureError::VaultNotFound(
                    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv".into(),
                ),
                "VaultNotFound",
                false,
            ),
            (
                AzureError::RoleAssignmentConflict {
                    scope: "s".into(),
                    name: "n".into(),
                    existing: "e".into(),
                },
                "RoleAssignmentConflict",
                false,
            ),
            (AzureError::InvalidResourceId { kind: "identity", id: "x".into() }, "InvalidResourceId", false),
            (AzureError::Config("bad CA".into()), "InvalidConfiguration", false),
        ];
        for (e, reason, retryable) in table {
            assert_eq!(
                (e.reason().as_str(), e.retryable(), e.retry_after()),
                (reason, retryable, None),
                "{e}"
            );
        }
    }

    #[test]
    fn retry_after_is_carried_and_parsed() {
        assert_eq!(
            arm(429, "TooManyRequests", Some(Duration::from_secs(7))).retry_after(),
            Some(Duration::from_secs(7))
        );
        let table: &[(Option<&str>, Option<&str>, Option<Duration>)] = &[
            (Some("17"), None, Some(Duration::from_secs(17))),
            (Some(" 3 "), None, Some(Duration::from_secs(3))),
            (Some("17"), Some("1500"), Some(Duration::from_millis(1500))),
            (None, Some("250"), Some(Duration::from_millis(250))),
            (Some("Wed, 21 Oct 2015 07:28:00 GMT"), None, None),
            (Some("-1"), None, None),
            (None, None, None),
        ];
        for (secs, ms, want) in table {
            assert_eq!(parse_retry_after(*secs, *ms), *want, "{secs:?} {ms:?}");
        }
    }

    #[test]
    fn not_found_is_only_a_404_answer() {
        assert!(arm(404, "ResourceNotFound", None).is_not_found());
        assert!(!arm(400, "NotFound", None).is_not_found());
        assert!(!AzureError::VaultNotFound("kv".into()).is_not_found());
    }
}
