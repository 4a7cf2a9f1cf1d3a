//! [`Snapshots`]: the read side of steady state, at about one ARM read per binding per resync.
//!
//! A resync must notice drift made by hand in Azure, but reading a binding's identity, its FICs and its role
//! assignments one by one costs three reads per binding per period, and the managed-identity API allows one
//! GET per identity every two seconds. Instead:
//!
//! - identities are answered from a list of their resource group (one paged request per 100 identities,
//!   shared by every binding in the group);
//! - role assignments from a list of the whole subscription (one per 100 assignments; Azure allows 4,000 per
//!   subscription), filtered by principal here;
//! - each list is taken again once it is older than `max_age` (the resync period), by one reconcile while the
//!   others go on answering from the previous list (listing 10,000 identities takes 100 pages at the
//!   managed-identity API's 0.25 lists/s: minutes in which no reconcile of that group could otherwise run),
//!   and idbind's own writes update it in place;
//! - federated credentials have no cross-identity list: they are read per identity and the answer kept for
//!   `federation_max_age` (by default two resync periods, see [`Snapshots::with_federation_max_age`]),
//!   idbind's own FIC writes updating it in place. This is the read per binding that remains: one every other
//!   resync, which keeps steady state under one read per binding per resync including the lists' pages, and
//!   halves what a large fleet spends of ARM's read budget (10,000 bindings at a 10-minute resync: 8 reads/s
//!   of 25 instead of 17).
//!
//! These answers may be up to `max_age` old, so they are only ever used to decide that nothing needs doing.
//! The controller plans from them first; when the plan is not empty it observes again through the direct
//! calls before it writes anything, so a stale snapshot can never make idbind overwrite an identity someone
//! else created meanwhile. Drift of an identity or a role assignment therefore shows at the latest one list
//! refresh plus one resync after it happened; drift of a federated credential within `federation_max_age`
//! plus one resync.

use std::sync::PoisonError;
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use std::future::Future;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{
    AccessPolicyChange, AzureApi, AzureError, FederatedCredential, FoundIdentity, IdentityIds, IdentityPage,
    RoleAssignment, VaultInfo, resource_parts, subscription_of,
};
use crate::core::{plan::ObservedRoleAssignment, roles::Permissions};

/// One list and when it was taken.
struct Listed<T> {
    at: Instant,
    items: T,
}

/// A list shared by every reconcile that needs it, taken again by one of them at a time.
struct SharedList<T> {
    /// Held only to read or edit, never across a request.
    data: std::sync::Mutex<Option<Listed<T>>>,
    /// Held by the reconcile that is listing.
    listing: Mutex<()>,
}

impl<T> Default for SharedList<T> {
    fn default() -> Self {
        SharedList {
            data: std::sync::Mutex::new(None),
            listing: Mutex::new(()),
        }
    }
}

impl<T> SharedList<T> {
    fn answer<R>(&self, max_age: Option<Duration>, answer: &impl Fn(&T) -> R) -> Option<R> {
        let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        data.as_ref()
            .filter(|l| max_age.is_none_or(|m| l.at.elapsed() < m))
            .map(|l| answer(&l.items))
    }

    /// `answer` from the list, taking it again with `list` first when it is older than `max_age`. While
    /// another reconcile is listing, the previous list answers (it is only trusted to say "nothing to do"
    /// anyway); only when there is none yet does one wait.
    async fn read<R>(
        &self,
        max_age: Duration,
        list: impl Future<Output = Result<T, AzureError>>,
        answer: impl Fn(&T) -> R,
    ) -> Result<R, AzureError> {
        if let Some(r) = self.answer(Some(max_age), &answer) {
            return Ok(r);
        }
        let _listing = match self.listing.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                if let Some(r) = self.answer(None, &answer) {
                    return Ok(r);
                }
                let guard = self.listing.lock().await;
                if let Some(r) = self.answer(None, &answer) {
                    return Ok(r);
                }
                // The listing that was under way failed: list here.
                guard
            }
        };
        if let Some(r) = self.answer(Some(max_age), &answer) {
            return Ok(r);
        }
        // As of when the list began: a page read later may be younger, never older.
        let started = Instant::now();
        let items = list.await?;
        let r = answer(&items);
        *self.data.lock().unwrap_or_else(PoisonError::into_inner) = Some(Listed { at: started, items });
        Ok(r)
    }

    /// Edits the list in place (idbind's own writes), if there is one.
    fn edit(&self, f: impl FnOnce(&mut T)) {
        if let Some(l) = self.data.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            f(&mut l.items);
        }
    }
}

type Shared<T> = Arc<SharedList<T>>;

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
    /// How long an identity's FIC list is reused.
    federation_max_age: Duration,
    /// Lowercased identity id → its FICs as last read (or as idbind's writes left them).
    federations: std::sync::Mutex<HashMap<String, Listed<Vec<FederatedCredential>>>>,
}

impl Snapshots {
    pub fn new(inner: Arc<dyn AzureApi>, max_age: Duration) -> Self {
        Snapshots {
            inner,
            max_age,
            identities: Mutex::default(),
            assignments: Mutex::default(),
            federation_max_age: max_age * 2,
            federations: std::sync::Mutex::default(),
        }
    }

    /// Reuses an identity's FIC list for `max_age` (zero: read on every resync).
    pub fn with_federation_max_age(mut self, max_age: Duration) -> Self {
        self.federation_max_age = max_age;
        self
    }

    /// Identities whose FIC list is held (for tests: it must follow the identities).
    pub fn federations_held(&self) -> usize {
        self.federations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Changes the held FIC list of `identity_id`, if one is held.
    fn edit_federations(&self, identity_id: &str, edit: impl FnOnce(&mut Vec<FederatedCredential>)) {
        if let Some(l) = self
            .federations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(&identity_id.to_ascii_lowercase())
        {
            edit(&mut l.items);
        }
    }

    async fn identity_group(&self, sub: &str, rg: &str) -> Shared<Group> {
        self.identities
            .lock()
            .await
            .entry((sub.to_ascii_lowercase(), rg.to_ascii_lowercase()))
            .or_default()
            .clone()
    }

    async fn assignment_list(&self, sub: &str) -> Shared<Vec<RoleAssignment>> {
        self.assignments
            .lock()
            .await
            .entry(sub.to_ascii_lowercase())
            .or_default()
            .clone()
    }

    /// The identities of a resource group whose ownership tags name `owner`'s binding: how a binding finds
    /// identities it created but never recorded in its status (a crash between the PUT and the status write,
    /// or a rename that raced the status write).
    pub async fn identities_owned_by(
        &self,
        subscription: &str,
        resource_group: &str,
        owner: &crate::core::plan::Owner,
    ) -> Result<Vec<FoundIdentity>, AzureError> {
        let group = self.identity_group(subscription, resource_group).await;
        group
            .read(
                self.max_age,
                self.list_group(subscription, resource_group),
                |items| {
                    items
                        .values()
                        .filter(|i| owner.owns(&i.observed.tags))
                        .cloned()
                        .collect()
                },
            )
            .await
    }

    /// Lists a resource group's identities, page by page.
    async fn list_group(&self, sub: &str, rg: &str) -> Result<Group, AzureError> {
        let mut by_name = HashMap::new();
        let mut next: Option<String> = None;
        loop {
            let page = self.inner.list_identities_page(sub, rg, next.as_deref()).await?;
            by_name.extend(page.identities.into_iter().filter_map(|i| {
                i.ids
                    .resource_id
                    .rsplit('/')
                    .next()
                    .map(|n| (n.to_ascii_lowercase(), i.clone()))
            }));
            match page.next {
                Some(link) if next.as_deref() != Some(link.as_str()) => next = Some(link),
                _ => break,
            }
        }
        Ok(by_name)
    }
}

fn name_key(identity_id: &str) -> Result<(String, String, String), AzureError> {
    let (sub, rg, name) = resource_parts(
        identity_id,
        "Microsoft.ManagedIdentity",
        "userAssignedIdentities",
        "user-assigned identity",
    )?;
    Ok((sub.to_string(), rg.to_string(), name.to_ascii_lowercase()))
}

#[async_trait]
impl AzureApi for Snapshots {
    async fn get_identity(&self, resource_id: &str) -> Result<Option<FoundIdentity>, AzureError> {
        let (sub, rg, name) = name_key(resource_id)?;
        let group = self.identity_group(&sub, &rg).await;
        group
            .read(self.max_age, self.list_group(&sub, &rg), |items| {
                items.get(&name).cloned()
            })
            .await
    }

    async fn put_identity(
        &self,
        resource_id: &str,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<IdentityIds, AzureError> {
        let ids = self.inner.put_identity(resource_id, location, tags).await?;
        let (sub, rg, name) = name_key(resource_id)?;
        let observed = crate::core::plan::ObservedIdentity {
            location: location.to_string(),
            tags: tags.clone(),
            principal_id: ids.principal_id.clone(),
        };
        self.identity_group(&sub, &rg).await.edit(|items| {
            items.insert(
                name,
                FoundIdentity {
                    observed,
                    ids: ids.clone(),
                },
            );
        });
        Ok(ids)
    }

    async fn delete_identity(&self, resource_id: &str) -> Result<(), AzureError> {
        let result = self.inner.delete_identity(resource_id).await;
        if result.is_ok() || result.as_ref().is_err_and(AzureError::is_not_found) {
            let (sub, rg, name) = name_key(resource_id)?;
            self.identity_group(&sub, &rg).await.edit(|items| {
                items.remove(&name);
            });
            self.federations
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&resource_id.to_ascii_lowercase());
        }
        result
    }

    async fn list_identities_page(
        &self,
        subscription: &str,
        resource_group: &str,
        next: Option<&str>,
    ) -> Result<IdentityPage, AzureError> {
        self.inner
            .list_identities_page(subscription, resource_group, next)
            .await
    }

    async fn list_federated_credentials(
        &self,
        identity_id: &str,
    ) -> Result<Vec<FederatedCredential>, AzureError> {
        let key = identity_id.to_ascii_lowercase();
        if let Some(l) = self
            .federations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|l| l.at.elapsed() < self.federation_max_age)
        {
            return Ok(l.items.clone());
        }
        let started = Instant::now();
        let fics = self.inner.list_federated_credentials(identity_id).await?;
        self.federations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key,
                Listed {
                    at: started,
                    items: fics.clone(),
                },
            );
        Ok(fics)
    }

    async fn put_federated_credential(
        &self,
        identity_id: &str,
        fic: &FederatedCredential,
    ) -> Result<(), AzureError> {
        self.inner.put_federated_credential(identity_id, fic).await?;
        self.edit_federations(identity_id, |fics| {
            fics.retain(|f| !f.name.eq_ignore_ascii_case(&fic.name));
            fics.push(fic.clone());
        });
        Ok(())
    }

    async fn delete_federated_credential(&self, identity_id: &str, name: &str) -> Result<(), AzureError> {
        let result = self.inner.delete_federated_credential(identity_id, name).await;
        if result.is_ok() || result.as_ref().is_err_and(AzureError::is_not_found) {
            self.edit_federations(identity_id, |fics| {
                fics.retain(|f| !f.name.eq_ignore_ascii_case(name));
            });
        }
        result
    }

    async fn list_role_assignments(
        &self,
        scope: &str,
        principal_id: &str,
    ) -> Result<Vec<ObservedRoleAssignment>, AzureError> {
        // Only subscription-wide questions are answered from the list; anything narrower (adopting an
        // existing assignment) goes to Azure.
        let Some(sub) = subscription_of(scope).filter(|s| {
            scope
                .trim_matches('/')
                .eq_ignore_ascii_case(&format!("subscriptions/{s}"))
        }) else {
            return self.inner.list_role_assignments(scope, principal_id).await;
        };
        let list = self.assignment_list(sub).await;
        list.read(self.max_age, self.inner.list_all_role_assignments(sub), |items| {
            items
                .iter()
                .filter(|ra| ra.principal_id.eq_ignore_ascii_case(principal_id))
                .map(|ra| ra.assignment.clone())
                .collect()
        })
        .await
    }

    async fn list_all_role_assignments(&self, subscription: &str) -> Result<Vec<RoleAssignment>, AzureError> {
        self.inner.list_all_role_assignments(subscription).await
    }

    async fn create_role_assignment(
        &self,
        scope: &str,
        name: &str,
        role_definition_guid: &str,
        principal_id: &str,
    ) -> Result<(), AzureError> {
        self.inner
            .create_role_assignment(scope, name, role_definition_guid, principal_id)
            .await?;
        if let Some(sub) = subscription_of(scope) {
            let id = format!(
                "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                scope.trim_end_matches('/')
            );
            self.assignment_list(sub).await.edit(|items| {
                if !items.iter().any(|ra| ra.assignment.id.eq_ignore_ascii_case(&id)) {
                    let assignment = ObservedRoleAssignment { id, name: name.to_string(), scope: scope.to_string(), role_definition_id: format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role_definition_guid}") };
                    items.push(RoleAssignment { principal_id: principal_id.to_string(), assignment });
                }
            });
        }
        Ok(())
    }

    async fn delete_role_assignment(&self, id: &str) -> Result<(), AzureError> {
        let result = self.inner.delete_role_assignment(id).await;
        if (result.is_ok() || result.as_ref().is_err_and(AzureError::is_not_found))
            && let Some(sub) = subscription_of(id)
        {
            self.assignment_list(sub)
                .await
                .edit(|items| items.retain(|ra| !ra.assignment.id.eq_ignore_ascii_case(id)));
        }
        result
    }

    async fn resolve_role(&self, scope: &str, role_name: &str) -> Result<String, AzureError> {
        self.inner.resolve_role(scope, role_name).await
    }

    async fn get_vault(&self, resource_id: &str) -> Result<Option<VaultInfo>, AzureError> {
        self.inner.get_vault(resource_id).await
    }

    async fn update_access_policy(
        &self,
        vault_id: &str,
        change: AccessPolicyChange,
        tenant_id: &str,
        object_id: &str,
        permissions: &Permissions,
    ) -> Result<(), AzureError> {
        self.inner
            .update_access_policy(vault_id, change, tenant_id, object_id, permissions)
            .await
    }
}
