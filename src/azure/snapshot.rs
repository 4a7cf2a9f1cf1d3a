//! [`Snapshots`]: the read side of steady state, at about one ARM read per binding per resync.
//!
//! A resync must notice drift made by hand in Azure, but reading a binding's identity, its FICs
//! and its role assignments one by one costs three reads per binding per period, and the
//! managed-identity API allows one GET per identity every two seconds. Instead:
//!
//! - identities are answered from a list of their resource group (one paged request per 100
//!   identities, shared by every binding in the group);
//! - role assignments from a list of the whole subscription (one per 100 assignments; Azure
//!   allows 4,000 per subscription), filtered by principal here;
//! - each list is taken again once it is older than `max_age` (the resync period), by one
//!   reconcile while the others wait for it, and idbind's own writes update it in place;
//! - federated credentials have no cross-identity list: they are read per identity, which is
//!   the one read per binding per resync that remains.
//!
//! These answers may be up to `max_age` old, so they are only ever used to decide that
//! nothing needs doing. The controller plans from them first; when the plan is not empty it
//! observes again through the direct calls before it writes anything, so a stale snapshot can
//! never make idbind overwrite an identity someone else created meanwhile. Drift therefore
//! shows at the latest one list refresh plus one resync after it happened.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{AccessPolicyChange, AzureApi, AzureError, FederatedCredential, FoundIdentity, IdentityIds, IdentityPage, RoleAssignment, VaultInfo, resource_parts, subscription_of};
use crate::{plan::ObservedRoleAssignment, roles::Permissions};

/// One list and when it was taken.
struct Listed<T> {
    at: Instant,
    items: T,
}

/// A list shared by every reconcile that needs it, refreshed by one of them at a time.
type Shared<T> = Arc<Mutex<Option<Listed<T>>>>;

/// A resource group's identities by lowercased name.
type Group = HashMap<String, FoundIdentity>;

/// The snapshot-backed reads over another [`AzureApi`] (the governed ARM client).
pub struct Snapshots {
    inner: Arc<dyn AzureApi>,
    max_age: Duration,
    /// (lowercased subscription, lowercased resource group) → identities by lowercased name.
    identities: Mutex<HashMap<(String, String), Shared<Group>>>,
    /// Lowercased subscription → every role assignment in it.
    assignments: Mutex<HashMap<String, Shared<Vec<RoleAssignment>>>>,
}

impl Snapshots {
    pub fn new(inner: Arc<dyn AzureApi>, max_age: Duration) -> Self {
        Snapshots { inner, max_age, identities: Mutex::default(), assignments: Mutex::default() }
    }

    async fn identity_group(&self, sub: &str, rg: &str) -> Shared<Group> {
        self.identities.lock().await.entry((sub.to_ascii_lowercase(), rg.to_ascii_lowercase())).or_default().clone()
    }

    async fn assignment_list(&self, sub: &str) -> Shared<Vec<RoleAssignment>> {
        self.assignments.lock().await.entry(sub.to_ascii_lowercase()).or_default().clone()
    }

    /// The identities of a resource group whose ownership tags name `owner`'s binding: how a
    /// binding finds identities it created but never recorded in its status (a crash between
    /// the PUT and the status write, or a rename that raced the status write).
    pub async fn identities_owned_by(&self, subscription: &str, resource_group: &str, owner: &crate::plan::Owner) -> Result<Vec<FoundIdentity>, AzureError> {
        let group = self.identity_group(subscription, resource_group).await;
        let mut listed = group.lock().await;
        self.refresh_group(&mut listed, subscription, resource_group).await?;
        Ok(listed.as_ref().map(|l| l.items.values().filter(|i| owner.owns(&i.observed.tags)).cloned().collect()).unwrap_or_default())
    }

    /// Lists the group again when its list is older than `max_age`.
    async fn refresh_group(&self, listed: &mut Option<Listed<Group>>, sub: &str, rg: &str) -> Result<(), AzureError> {
        if self.fresh(listed) {
            return Ok(());
        }
        let started = Instant::now();
        let mut by_name = HashMap::new();
        let mut next: Option<String> = None;
        loop {
            let page = self.inner.list_identities_page(sub, rg, next.as_deref()).await?;
            by_name.extend(page.identities.into_iter().filter_map(|i| i.ids.resource_id.rsplit('/').next().map(|n| (n.to_ascii_lowercase(), i.clone()))));
            match page.next {
                Some(link) if next.as_deref() != Some(link.as_str()) => next = Some(link),
                _ => break,
            }
        }
        // As of when the list began: a page read later may be younger, never older.
        *listed = Some(Listed { at: started, items: by_name });
        Ok(())
    }

    fn fresh<T>(&self, listed: &Option<Listed<T>>) -> bool {
        listed.as_ref().is_some_and(|l| l.at.elapsed() < self.max_age)
    }
}

fn name_key(identity_id: &str) -> Result<(String, String, String), AzureError> {
    let (sub, rg, name) = resource_parts(identity_id, "Microsoft.ManagedIdentity", "userAssignedIdentities", "user-assigned identity")?;
    Ok((sub.to_string(), rg.to_string(), name.to_ascii_lowercase()))
}

#[async_trait]
impl AzureApi for Snapshots {
    async fn get_identity(&self, resource_id: &str) -> Result<Option<FoundIdentity>, AzureError> {
        let (sub, rg, name) = name_key(resource_id)?;
        let group = self.identity_group(&sub, &rg).await;
        // Held across the refresh: concurrent reconciles of one group wait for one list.
        let mut listed = group.lock().await;
        self.refresh_group(&mut listed, &sub, &rg).await?;
        Ok(listed.as_ref().and_then(|l| l.items.get(&name).cloned()))
    }

    async fn put_identity(&self, resource_id: &str, location: &str, tags: &BTreeMap<String, String>) -> Result<IdentityIds, AzureError> {
        let ids = self.inner.put_identity(resource_id, location, tags).await?;
        let (sub, rg, name) = name_key(resource_id)?;
        if let Some(l) = self.identity_group(&sub, &rg).await.lock().await.as_mut() {
            let observed = crate::plan::ObservedIdentity { location: location.to_string(), tags: tags.clone(), principal_id: ids.principal_id.clone() };
            l.items.insert(name, FoundIdentity { observed, ids: ids.clone() });
        }
        Ok(ids)
    }

    async fn delete_identity(&self, resource_id: &str) -> Result<(), AzureError> {
        let result = self.inner.delete_identity(resource_id).await;
        if result.is_ok() || result.as_ref().is_err_and(AzureError::is_not_found) {
            let (sub, rg, name) = name_key(resource_id)?;
            if let Some(l) = self.identity_group(&sub, &rg).await.lock().await.as_mut() {
                l.items.remove(&name);
            }
        }
        result
    }

    async fn list_identities_page(&self, subscription: &str, resource_group: &str, next: Option<&str>) -> Result<IdentityPage, AzureError> {
        self.inner.list_identities_page(subscription, resource_group, next).await
    }

    async fn list_federated_credentials(&self, identity_id: &str) -> Result<Vec<FederatedCredential>, AzureError> {
        self.inner.list_federated_credentials(identity_id).await
    }

    async fn put_federated_credential(&self, identity_id: &str, fic: &FederatedCredential) -> Result<(), AzureError> {
        self.inner.put_federated_credential(identity_id, fic).await
    }

    async fn delete_federated_credential(&self, identity_id: &str, name: &str) -> Result<(), AzureError> {
        self.inner.delete_federated_credential(identity_id, name).await
    }

    async fn list_role_assignments(&self, scope: &str, principal_id: &str) -> Result<Vec<ObservedRoleAssignment>, AzureError> {
        // Only subscription-wide questions are answered from the list; anything narrower
        // (adopting an existing assignment) goes to Azure.
        let Some(sub) = subscription_of(scope).filter(|s| scope.trim_matches('/').eq_ignore_ascii_case(&format!("subscriptions/{s}"))) else {
            return self.inner.list_role_assignments(scope, principal_id).await;
        };
        let list = self.assignment_list(sub).await;
        let mut listed = list.lock().await;
        if !self.fresh(&listed) {
            *listed = Some(Listed { at: Instant::now(), items: self.inner.list_all_role_assignments(sub).await? });
        }
        Ok(listed.as_ref().map(|l| l.items.iter().filter(|ra| ra.principal_id.eq_ignore_ascii_case(principal_id)).map(|ra| ra.assignment.clone()).collect()).unwrap_or_default())
    }

    async fn list_all_role_assignments(&self, subscription: &str) -> Result<Vec<RoleAssignment>, AzureError> {
        self.inner.list_all_role_assignments(subscription).await
    }

    async fn create_role_assignment(&self, scope: &str, name: &str, role_definition_guid: &str, principal_id: &str) -> Result<(), AzureError> {
        self.inner.create_role_assignment(scope, name, role_definition_guid, principal_id).await?;
        if let Some(sub) = subscription_of(scope)
            && let Some(l) = self.assignment_list(sub).await.lock().await.as_mut()
        {
            let id = format!("{}/providers/Microsoft.Authorization/roleAssignments/{name}", scope.trim_end_matches('/'));
            if !l.items.iter().any(|ra| ra.assignment.id.eq_ignore_ascii_case(&id)) {
                let assignment = ObservedRoleAssignment { id, name: name.to_string(), scope: scope.to_string(), role_definition_id: format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role_definition_guid}") };
                l.items.push(RoleAssignment { principal_id: principal_id.to_string(), assignment });
            }
        }
        Ok(())
    }

    async fn delete_role_assignment(&self, id: &str) -> Result<(), AzureError> {
        let result = self.inner.delete_role_assignment(id).await;
        if (result.is_ok() || result.as_ref().is_err_and(AzureError::is_not_found))
            && let Some(sub) = subscription_of(id)
            && let Some(l) = self.assignment_list(sub).await.lock().await.as_mut()
        {
            l.items.retain(|ra| !ra.assignment.id.eq_ignore_ascii_case(id));
        }
        result
    }

    async fn resolve_role(&self, scope: &str, role_name: &str) -> Result<String, AzureError> {
        self.inner.resolve_role(scope, role_name).await
    }

    async fn get_vault(&self, resource_id: &str) -> Result<Option<VaultInfo>, AzureError> {
        self.inner.get_vault(resource_id).await
    }

    async fn update_access_policy(&self, vault_id: &str, change: AccessPolicyChange, tenant_id: &str, object_id: &str, permissions: &Permissions) -> Result<(), AzureError> {
        self.inner.update_access_policy(vault_id, change, tenant_id, object_id, permissions).await
    }
}
