//! The Azure layer: the small [`AzureApi`] trait and its implementations — the ARM client ([`arm::ArmApi`]),
//! the request budget and per-identity FIC serialisation around it ([`governed::Governed`]), the shared lists
//! of steady state ([`snapshot::Snapshots`]) — and [`access`], the three typed doors through which the
//! reconcile reads fresh, reads the lists, or writes.
//!
//! Every call is one ARM request with no retry inside (docs/azure.md#sdk-pitfalls): a failure comes back as
//! an [`AzureError`] the controller classifies and requeues.

pub mod access;
pub mod arm;
pub mod budget;
pub mod data_plane;
pub mod error;
pub mod governed;
pub mod grants;
pub mod snapshot;
pub mod workload_identity;

use std::collections::BTreeMap;

use async_trait::async_trait;

pub use error::AzureError;

pub use crate::core::plan::IdentityIds;
use crate::core::{
    grants::role_assignments, plan::ObservedIdentity, resource_id::ResourceId, roles::Permissions,
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
    pub assignment: role_assignments::Observed,
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
    /// `properties.vaultUri`: the data plane's address (`https://<name>.vault.azure.net/`).
    pub vault_uri: Option<String>,
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
    ) -> Result<Vec<role_assignments::Observed>, AzureError>;
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
    /// The newest stable api-version ARM lists for resources of the type of `resource` (`Providers_Get` on
    /// its namespace, what `az resource show --ids` does); `None` when the namespace or the type is unknown.
    async fn api_version_for(&self, resource: &ResourceId) -> Result<Option<String>, AzureError>;
    /// The `id` Azure answers a GET of `scope` with (the subscription, the resource group, or the resource,
    /// at `api_version`, which a resource needs), as Azure wrote it; `None` when it does not exist. What
    /// Azure answered, not what was asked: the proof of where the request landed.
    async fn scope_id(
        &self,
        scope: &ResourceId,
        api_version: Option<&str>,
    ) -> Result<Option<String>, AzureError>;
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
