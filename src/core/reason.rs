//! Every reason idbind gives, in one enum: a variant's name is the condition reason, the Event reason and the
//! metric label users see (so it must not change once shipped), and whether a failure of that reason may heal
//! by retrying is decided here. docs/troubleshooting.md explains each (a test keeps the two in step).

use strum::{EnumIter, IntoStaticStr};

/// Why a binding is where it is. One name per meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, IntoStaticStr, EnumIter)]
pub enum Reason {
    // --- Ready, and the parts that make it ---
    /// Ready: Azure, the ServiceAccount and what the spec wires match the spec.
    Reconciled,
    /// The Event of a binding that became Ready.
    Ready,
    /// The Event of a Ready binding whose client id changed: pods must restart to use it.
    ClientIdChanged,
    IdentityReady,
    FederatedCredentialReady,
    RoleAssignmentsReady,
    /// The ServiceAccount carries the identity's client id and tenant id.
    ServiceAccountAnnotated,
    /// The Event of a ServiceAccount whose annotations idbind wrote back once after someone changed them.
    ServiceAccountRepaired,
    /// Verification proved federation or access.
    Verified,
    /// The named SecretProviderClasses carry the ids.
    Wired,
    /// The export ConfigMap holds the ids.
    Exported,

    // --- Events of writes (the audit trail) ---
    AzureUpdated,
    AzureDeleted,
    SecretProviderClassWired,
    SecretProviderClassReleased,
    ConfigMapExported,
    ConfigMapDeleted,

    // --- Waiting: heals by itself ---
    /// A turn at the managed-identity API's request budget (others' identities are created first).
    AwaitingRequestBudget,
    /// A write was made and the next round will look again.
    StillConverging,
    /// Verification waits for Azure to propagate what idbind wrote.
    PropagationPending,
    /// The binding's ServiceAccount does not exist yet.
    ServiceAccountNotFound,
    /// The policies could not all be listed, so what they allow is not known yet.
    PoliciesNotListed,

    // --- Refused: needs someone to change the spec, a policy or Azure ---
    InvalidSpec,
    PolicyViolation,
    AccessPolicyRoleUnsupported,
    ScopeNotFound,
    IdentityConflict,
    /// The spec brings the identity idbind itself signs in as.
    OperatorIdentity,
    IdentityNotFound,
    IdentityLocationMismatch,
    FederatedCredentialLimit,
    DuplicateFederatedCredential,
    /// Another binding, created first, holds the ServiceAccount.
    ServiceAccountConflict,
    /// The ServiceAccount's client id was written by someone else (or changed again after idbind wrote it
    /// back once).
    ServiceAccountAnnotatedByOthers,
    /// Another binding brings the same identity.
    IdentityInUse,
    SecretProviderClassNotFound,
    UnsupportedProvider,
    SecretProviderClassesUnavailable,
    SecretProviderClassConflict,
    ExportConflict,
    /// Verification: the token exchange does not match the federated credential.
    FederationMismatch,
    /// Verification: the vault refuses the workload's token.
    AccessDenied,
    EntraUnavailable,
    KeyVaultUnavailable,
    /// The operator may not create the token verification needs.
    VerificationForbidden,

    // --- Azure's answers, classified (azure::error) ---
    Throttled,
    AzureServerError,
    AzureUnreachable,
    AuthenticationFailed,
    InvalidAzureResponse,
    /// ARM's `PrincipalNotFound`: Entra has not replicated a new identity's principal to where ARM looks yet.
    /// Named for what it means, since the principal does exist.
    PrincipalNotReplicated,
    IdentityNotReady,
    ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity,
    AnotherOperationInProgress,
    Conflict,
    AuthorizationFailed,
    ResourceGroupNotFound,
    RoleNotFound,
    VaultNotFound,
    NotFound,
    BadRequest,
    InvalidParameter,
    RoleAssignmentConflict,
    InvalidResourceId,
    InvalidConfiguration,
    /// Any other 4xx: ARM rejected the request and repeating it will not help.
    AzureRequestRejected,

    // --- The operator's own failures (metric labels) ---
    KubernetesApiError,
    /// kube-runtime's finalizer helper failed (adding or removing the finalizer).
    FinalizerFailed,

    // --- `idbind plan` ---
    /// The API server's schema refuses the manifest.
    SchemaRejected,
    InvalidManifest,
    /// The plan could not reach Azure.
    AzureClientError,
}

impl Reason {
    /// The name users see.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether trying again later may succeed without anyone changing the binding, a policy or Azure. A
    /// reason not listed here stalls: a new reason is permanent until someone decides otherwise, so nothing
    /// retries forever by accident.
    pub fn retryable(self) -> bool {
        use Reason::*;
        matches!(
            self,
            Throttled
                | AzureServerError
                | AzureUnreachable
                | InvalidAzureResponse
                | PrincipalNotReplicated
                | IdentityNotReady
                | ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity
                | AnotherOperationInProgress
                | Conflict
                // A token may fail for a moment (Entra outage, a rotated secret or federated token not yet
                // mounted), and a role grant to the operator may still be propagating: retried with backoff,
                // but reported under their own reason so a human sees it.
                | AuthenticationFailed
                | AuthorizationFailed
                // Waiting for something that comes by itself.
                | AwaitingRequestBudget
                | StillConverging
                | PropagationPending
                | ServiceAccountNotFound
                | PoliciesNotListed
                | EntraUnavailable
                | KeyVaultUnavailable
                | KubernetesApiError
                | FinalizerFailed
                | AzureClientError
        )
    }
}

/// The type of an Event: routine, or someone should look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

impl Reason {
    /// The type of the Events that carry this reason. Progress, the audit trail of writes and whatever heals
    /// by itself are Normal; what waits for a person (a refusal, a stall, a ServiceAccount to create) is a
    /// Warning, so `kubectl get events --field-selector type=Warning` lists exactly what needs someone.
    pub fn severity(self) -> Severity {
        use Reason::*;
        let routine = matches!(
            self,
            Reconciled
                | Ready
                | ClientIdChanged
                | IdentityReady
                | FederatedCredentialReady
                | RoleAssignmentsReady
                | ServiceAccountAnnotated
                | ServiceAccountRepaired
                | Verified
                | Wired
                | Exported
                | AzureUpdated
                | AzureDeleted
                | SecretProviderClassWired
                | SecretProviderClassReleased
                | ConfigMapExported
                | ConfigMapDeleted
        );
        // A missing ServiceAccount heals once someone creates it, and only then: they are told.
        let needs_someone = self == ServiceAccountNotFound || !self.retryable();
        if routine || !needs_someone { Severity::Normal } else { Severity::Warning }
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> String {
        reason.as_str().to_string()
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use strum::IntoEnumIterator;

    use super::*;

    #[test]
    fn events_warn_of_what_needs_someone_and_not_of_what_heals() {
        use Severity::{Normal, Warning};
        let table = [
            (Reason::Ready, Normal),
            (Reason::ClientIdChanged, Normal),
            (Reason::AzureDeleted, Normal),
            (Reason::ServiceAccountRepaired, Normal),
            (Reason::Throttled, Normal),
            (Reason::AuthorizationFailed, Normal),
            (Reason::EntraUnavailable, Normal),
            (Reason::ServiceAccountNotFound, Warning),
            (Reason::PolicyViolation, Warning),
            (Reason::VaultNotFound, Warning),
            (Reason::ServiceAccountAnnotatedByOthers, Warning),
            (Reason::SecretProviderClassNotFound, Warning),
            (Reason::AccessDenied, Warning),
            (Reason::AzureRequestRejected, Warning),
        ];
        for (reason, severity) in table {
            assert_eq!(reason.severity(), severity, "{reason}");
        }
    }

    #[test]
    fn the_troubleshooting_guide_explains_every_reason_and_no_other() {
        let guide = include_str!("../../docs/troubleshooting.md");
        let missing: Vec<&str> =
            Reason::iter().map(Reason::as_str).filter(|r| !guide.contains(&format!("`{r}`"))).collect();
        assert_eq!(missing, Vec::<&str>::new(), "reasons docs/troubleshooting.md does not explain");
        let known: BTreeSet<&str> = Reason::iter().map(Reason::as_str).collect();
        // The first column of the guide's tables: each a reason idbind gives.
        let listed = guide.lines().filter_map(|l| l.strip_prefix("| `")?.split('`').next());
        let unknown: Vec<&str> = listed.filter(|r| !known.contains(r)).collect();
        assert_eq!(
            unknown,
            Vec::<&str>::new(),
            "docs/troubleshooting.md explains reasons idbind never gives"
        );
    }

    #[test]
    fn every_reason_is_one_pascal_case_name_of_its_own() {
        let names: Vec<&str> = Reason::iter().map(Reason::as_str).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "two reasons share a name");
        for name in names {
            assert!(
                name.starts_with(|c: char| c.is_ascii_uppercase())
                    && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "{name} is not PascalCase"
            );
        }
    }
}
