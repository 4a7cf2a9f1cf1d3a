//! The Azure layer: reads what exists for a binding ([`observe`]) and performs the planner's writes
//! ([`execute`]) through the small [`AzureApi`] trait, so the reconcile logic can be driven by the real ARM
//! client ([`arm::ArmApi`]) or anything else that speaks the same calls.
//!
//! Every call is one ARM request with no retry inside (DESIGN §2b): a failure comes back as an [`AzureError`]
//! the controller classifies and requeues.

pub mod arm;
pub mod budget;
pub mod error;
pub mod governed;
pub mod snapshot;
pub mod workload_identity;

use std::collections::BTreeMap;

use async_trait::async_trait;

pub use error::{AzureError, Category};

pub use crate::core::plan::IdentityIds;
use crate::core::{
    plan::{Action, DesiredAzure, ObservedAzure, ObservedFic, ObservedIdentity, ObservedRoleAssignment},
    resource_id::ResourceId,
    roles::Permissions,
};

/// An identity as read from ARM: what the planner compares, and its ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundIdentity {
    pub observed: ObservedIdentity,
    pub ids: IdentityIds,
}

/// One page of identities and the link to the next, if any.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IdentityPage {
    pub identities: Vec<FoundIdentity>,
    pub next: Option<String>,
}

/// A role assignment with its principal (what a subscription-wide list returns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssignment {
    pub principal_id: String,
    pub assignment: ObservedRoleAssignment,
}

/// A federated identity credential on an identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederatedCredential {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

/// A Key Vault as far as idbind cares: whether data-plane roles apply to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultInfo {
    pub resource_id: ResourceId,
    /// `properties.enableRbacAuthorization`: role assignments only grant data-plane access on vaults that use
    /// the RBAC permission model.
    pub rbac_authorization: bool,
    /// `properties.accessPolicies` (ignored by Key Vault when `rbac_authorization`).
    pub access_policies: Vec<AccessPolicyEntry>,
}

impl VaultInfo {
    /// The permissions of `object_id`'s entry (an entry bound to an application as well, a "compound
    /// identity", is another principal and not counted).
    pub fn permissions_of(&self, object_id: &str) -> Permissions {
        self.access_policies
            .iter()
            .filter(|e| e.object_id.eq_ignore_ascii_case(object_id) && e.application_id.is_none())
            .fold(Permissions::default(), |acc, e| acc.union(&e.permissions))
    }
}

/// One entry of a vault's access policies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPolicyEntry {
    pub tenant_id: String,
    pub object_id: String,
    pub application_id: Option<String>,
    pub permissions: Permissions,
}

/// Key Vault's access-policy update operations that idbind uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessPolicyChange {
    /// Merge the permissions into the principal's entry (creating it).
    Add,
    /// Take the permissions away (an entry left empty is dropped).
    Remove,
}

/// The Azure calls the reconcile needs. Each is a single request; errors are not retried here. Ids of the
/// wrong type are refused with [`AzureError::InvalidResourceId`] before any request.
#[async_trait]
pub trait AzureApi: Send + Sync {
    /// The identity, or `None` when ARM says it does not exist.
    async fn get_identity(&self, id: &ResourceId) -> Result<Option<FoundIdentity>, AzureError>;
    /// Creates or updates the identity with exactly these tags.
    async fn put_identity(
        &self,
        id: &ResourceId,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<IdentityIds, AzureError>;
    /// Deletes the identity; a 404 is returned as an error (see [`AzureError::is_not_found`]).
    async fn delete_identity(&self, id: &ResourceId) -> Result<(), AzureError>;
    /// One page of a resource group's identities (`UserAssignedIdentities_ListByResourceGroup`): the first
    /// with `next: None`, then each `nextLink`. One request per page, so a caller can pace them.
    async fn list_identities_page(
        &self,
        group: &ResourceId,
        next: Option<&str>,
    ) -> Result<IdentityPage, AzureError>;
    /// Every FIC on the identity, all pages.
    async fn list_federated_credentials(
        &self,
        identity: &ResourceId,
    ) -> Result<Vec<FederatedCredential>, AzureError>;
    async fn put_federated_credential(
        &self,
        identity: &ResourceId,
        fic: &FederatedCredential,
    ) -> Result<(), AzureError>;
    async fn delete_federated_credential(&self, identity: &ResourceId, name: &str) -> Result<(), AzureError>;
    /// Role assignments of `principal_id` at, above or below `scope` (`$filter=principalId eq '…'`).
    async fn list_role_assignments(
        &self,
        scope: &ResourceId,
        principal_id: &str,
    ) -> Result<Vec<ObservedRoleAssignment>, AzureError>;
    /// Every role assignment in the subscription (at it and below), all pages, unfiltered.
    async fn list_all_role_assignments(&self, subscription: &str) -> Result<Vec<RoleAssignment>, AzureError>;
    /// Creates the assignment named `name`, always with `principalType: ServicePrincipal` so a principal
    /// created seconds ago is not rejected with `PrincipalNotFound`.
    async fn create_role_assignment(
        &self,
        scope: &ResourceId,
        name: &str,
        role_definition_guid: &str,
        principal_id: &str,
    ) -> Result<(), AzureError>;
    /// Deletes a role assignment by its full resource id.
    async fn delete_role_assignment(&self, id: &ResourceId) -> Result<(), AzureError>;
    /// The GUID of the role definition named `role_name` at `scope` (display names such as "Key Vault Secrets
    /// User"); [`AzureError::RoleNotFound`] when there is none.
    async fn resolve_role(&self, scope: &ResourceId, role_name: &str) -> Result<String, AzureError>;
    /// The vault, or `None` when it does not exist.
    async fn get_vault(&self, id: &ResourceId) -> Result<Option<VaultInfo>, AzureError>;
    /// `PUT {vault}/accessPolicies/{add|remove}` for one principal.
    async fn update_access_policy(
        &self,
        vault: &ResourceId,
        change: AccessPolicyChange,
        tenant_id: &str,
        object_id: &str,
        permissions: &Permissions,
    ) -> Result<(), AzureError>;
}

/// What [`observe`] found: the planner's input, and the identity's ids for the status.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Observation {
    pub azure: ObservedAzure,
    pub ids: Option<IdentityIds>,
}

/// Reads the Azure objects of a binding whose identity is `identity_id` (the managed identity's id, or the
/// brought identity's). Only reads: in steady state a reconcile makes these requests and no write.
///
/// Role assignments are listed per subscription (the identity's and each wanted scope's) rather than per
/// wanted scope, so an assignment at a vault the spec no longer names is still seen, and removed.
pub async fn observe(
    api: &dyn AzureApi,
    identity_id: &ResourceId,
    desired: &DesiredAzure,
) -> Result<Observation, AzureError> {
    let Some(found) = api.get_identity(identity_id).await? else {
        return Ok(Observation::default());
    };
    let fics = api.list_federated_credentials(identity_id).await?;
    let ours = fics
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(&desired.fic_name));
    // Azure matches issuer and subject exactly (DESIGN §2a), so no normalisation here either.
    let duplicate = fics.iter().find(|f| {
        !f.name.eq_ignore_ascii_case(&desired.fic_name)
            && f.issuer == desired.issuer
            && f.subject == desired.subject
    });

    let mut subscriptions: Vec<ResourceId> = Vec::new();
    for id in std::iter::once(identity_id).chain(desired.role_assignments.iter().map(|(scope, _)| scope)) {
        let subscription = id.subscription().ok_or_else(|| AzureError::InvalidResourceId {
            kind: "subscription-scoped",
            id: id.to_string(),
        })?;
        let scope = ResourceId::subscription_scope(subscription);
        if !subscriptions.contains(&scope) {
            subscriptions.push(scope);
        }
    }
    let mut role_assignments: Vec<ObservedRoleAssignment> = Vec::new();
    for scope in &subscriptions {
        for ra in api.list_role_assignments(scope, &found.ids.principal_id).await? {
            if !role_assignments.iter().any(|have| have.id == ra.id) {
                role_assignments.push(ra);
            }
        }
    }

    let mut access_policies: Vec<(ResourceId, Permissions)> = Vec::new();
    for (vault_id, _) in desired
        .access_policies
        .iter()
        .chain(&desired.held_access_policies)
    {
        if access_policies.iter().any(|(v, _)| v == vault_id) {
            continue;
        }
        // A vault deleted since counts as holding nothing.
        let held = api
            .get_vault(vault_id)
            .await?
            .map(|v| v.permissions_of(&found.ids.principal_id))
            .unwrap_or_default();
        access_policies.push((vault_id.clone(), held));
    }

    Ok(Observation {
        azure: ObservedAzure {
            fic: ours.map(|f| ObservedFic {
                issuer: f.issuer.clone(),
                subject: f.subject.clone(),
                audiences: f.audiences.clone(),
            }),
            fic_count: fics.len(),
            fic_duplicate_of: duplicate.map(|f| f.name.clone()),
            identity: Some(found.observed),
            role_assignments,
            access_policies,
        },
        ids: Some(found.ids),
    })
}

/// Performs one planned write for the binding whose identity is `identity_id`. `ids` are the identity's,
/// known once it exists (the planner plans what names its principal only then). Returns the identity's ids
/// when the write was the identity's own PUT.
pub async fn execute(
    api: &dyn AzureApi,
    identity_id: &ResourceId,
    ids: Option<&IdentityIds>,
    action: &Action,
) -> Result<Option<IdentityIds>, AzureError> {
    match action {
        Action::PutIdentity {
            resource_id,
            location,
            tags,
        } => api.put_identity(resource_id, location, tags).await.map(Some),
        other => execute_dependent(api, identity_id, ids, other)
            .await
            .map(|()| None),
    }
}

/// The writes that need the identity to exist.
async fn execute_dependent(
    api: &dyn AzureApi,
    identity_id: &ResourceId,
    ids: Option<&IdentityIds>,
    action: &Action,
) -> Result<(), AzureError> {
    let principal_id = ids.map(|i| i.principal_id.as_str());
    let not_ready = || AzureError::IdentityNotReady(identity_id.clone());
    match action {
        Action::PutIdentity { .. } => Err(AzureError::InvalidResponse {
            operation: "execute",
            message: "the identity's PUT is not a dependent write".into(),
        }),
        Action::PutFederatedCredential {
            name,
            issuer,
            subject,
            audience,
        } => {
            let fic = FederatedCredential {
                name: name.clone(),
                issuer: issuer.clone(),
                subject: subject.clone(),
                audiences: vec![audience.clone()],
            };
            api.put_federated_credential(identity_id, &fic).await
        }
        Action::CreateRoleAssignment {
            scope,
            name,
            role_definition_guid,
        } => {
            let principal = principal_id.ok_or_else(not_ready)?;
            match api
                .create_role_assignment(scope, name, role_definition_guid, principal)
                .await
            {
                Err(e)
                    if e.arm_code()
                        .is_some_and(|c| c.eq_ignore_ascii_case("RoleAssignmentExists")) =>
                {
                    adopt_existing(api, scope, name, role_definition_guid, principal, e).await
                }
                other => other,
            }
        }
        Action::DeleteRoleAssignment { id } => done_if_gone(api.delete_role_assignment(id).await),
        Action::GrantAccessPolicy {
            vault_id,
            permissions,
        } => {
            let ids = ids.ok_or_else(not_ready)?;
            api.update_access_policy(
                vault_id,
                AccessPolicyChange::Add,
                &ids.tenant_id,
                &ids.principal_id,
                permissions,
            )
            .await
        }
        Action::RevokeAccessPolicy {
            vault_id,
            permissions,
        } => {
            let ids = ids.ok_or_else(not_ready)?;
            done_if_gone(
                api.update_access_policy(
                    vault_id,
                    AccessPolicyChange::Remove,
                    &ids.tenant_id,
                    &ids.principal_id,
                    permissions,
                )
                .await,
            )
        }
    }
}

/// Removes what the binding owns in Azure (finalizer, `deletionPolicy: Delete`), in the order that leaves
/// nothing orphaned (DESIGN §2a): role assignments and access-policy permissions first (deleting the identity
/// first would strand assignments as "Identity not found", counting against the subscription's limit), then
/// our FIC, then the identity, only when idbind manages it and its tags say it is this binding's. Anything
/// already gone counts as deleted. Returns the ids deleted.
pub async fn cleanup(
    api: &dyn AzureApi,
    identity_id: &ResourceId,
    desired: &DesiredAzure,
    observed: &Observation,
) -> Result<Vec<String>, AzureError> {
    let mut deleted = Vec::new();
    let Some(identity) = &observed.azure.identity else {
        return Ok(deleted);
    };
    for ra in &observed.azure.role_assignments {
        if ra.is_ours(&identity.principal_id) {
            done_if_gone(api.delete_role_assignment(&ra.id).await)?;
            deleted.push(ra.id.to_string());
        }
    }
    let ids = observed.ids.as_ref();
    let mut seen: Vec<&ResourceId> = Vec::new();
    for (vault_id, _) in desired
        .access_policies
        .iter()
        .chain(&desired.held_access_policies)
    {
        if seen.contains(&vault_id) {
            continue;
        }
        seen.push(vault_id);
        let granted = desired
            .access_policies
            .iter()
            .chain(&desired.held_access_policies)
            .filter(|(v, _)| v == vault_id)
            .fold(Permissions::default(), |acc, (_, p)| acc.union(p));
        let present = granted.intersect(&observed.azure.access_policy(vault_id));
        if !present.is_empty() {
            execute(
                api,
                identity_id,
                ids,
                &Action::RevokeAccessPolicy {
                    vault_id: vault_id.clone(),
                    permissions: present,
                },
            )
            .await?;
            deleted.push(format!("{vault_id}/accessPolicies/{}", identity.principal_id));
        }
    }
    if observed.azure.fic.is_some() {
        done_if_gone(
            api.delete_federated_credential(identity_id, &desired.fic_name)
                .await,
        )?;
        deleted.push(format!(
            "{identity_id}/federatedIdentityCredentials/{}",
            desired.fic_name
        ));
    }
    if desired.managed_identity.is_some() && desired.owner.owns(&identity.tags) {
        done_if_gone(api.delete_identity(identity_id).await)?;
        deleted.push(identity_id.to_string());
    }
    Ok(deleted)
}

/// A delete that found nothing to delete did its job.
fn done_if_gone(result: Result<(), AzureError>) -> Result<(), AzureError> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// After `RoleAssignmentExists`: the (scope, role, principal) trio already has an assignment. It counts as
/// ours only when its name is the one we derive (DESIGN §2a); otherwise it belongs to someone else and is
/// reported, never taken over.
async fn adopt_existing(
    api: &dyn AzureApi,
    scope: &ResourceId,
    name: &str,
    role_guid: &str,
    principal: &str,
    original: AzureError,
) -> Result<(), AzureError> {
    let existing = api.list_role_assignments(scope, principal).await?;
    let same_trio = existing.iter().find(|ra| {
        ra.scope == *scope
            && ra
                .role_definition_id
                .rsplit('/')
                .next()
                .is_some_and(|g| g.eq_ignore_ascii_case(role_guid))
    });
    match same_trio {
        Some(ra) if ra.name.eq_ignore_ascii_case(name) => Ok(()),
        Some(ra) => Err(AzureError::RoleAssignmentConflict {
            scope: scope.to_string(),
            name: name.to_string(),
            existing: ra.id.to_string(),
        }),
        // ARM said it exists but we cannot see it (replication): keep the original, retryable only if ARM's
        // classification says so.
        None => Err(original),
    }
}
