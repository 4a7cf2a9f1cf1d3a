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
    RoleAssignment, VaultInfo,
};
use crate::core::{
    grants::role_assignments,
    plan::{ObservedIdentity, Owner},
    resource_id::{ROLE_ASSIGNMENT, ROLE_DEFINITION, ResourceId, USER_ASSIGNED_IDENTITY},
    roles::Permissions,
};

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
        SharedList { data: std::sync::Mutex::new(None), listing: Mutex::new(()) }
    }
}

impl<T> SharedList<T> {
    fn answer<R>(&self, max_age: Option<Duration>, answer: &impl Fn(&T) -> R) -> Option<R> {
        let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        data.as_ref().filter(|l| max_age.is_none_or(|m| l.at.elapsed() < m)).map(|l| answer(&l.items))
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

/// A resource group's identities by id.
type Group = HashMap<ResourceId, FoundIdentity>;

/// The snapshot-backed reads over another [`AzureApi`] (the governed ARM client).
pub struct Snapshots {
    inner: Arc<dyn AzureApi>,
    max_age: Duration,
    /// Resource group → its identities.
    identities: Mutex<HashMap<ResourceId, Shared<Group>>>,
    /// Subscription scope → every role assignment in it.
    assignments: Mutex<HashMap<ResourceId, Shared<Vec<RoleAssignment>>>>,
    /// How long an identity's FIC list is reused.
    federation_max_age: Duration,
    /// Identity → its FICs as last read (or as idbind's writes left them).
    federations: std::sync::Mutex<HashMap<ResourceId, Listed<Vec<FederatedCredential>>>>,
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
        self.federations.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Changes the held FIC list of `identity_id`, if one is held.
    fn edit_federations(&self, identity_id: &ResourceId, edit: impl FnOnce(&mut Vec<FederatedCredential>)) {
        if let Some(l) = self.federations.lock().unwrap_or_else(PoisonError::into_inner).get_mut(identity_id)
        {
            edit(&mut l.items);
        }
    }

    /// The shared list of the resource group `identity_id` is in.
    async fn identity_group(
        &self,
        identity_id: &ResourceId,
    ) -> Result<(ResourceId, Shared<Group>), AzureError> {
        let group = group_of(identity_id)?;
        let list = self.identities.lock().await.entry(group.clone()).or_default().clone();
        Ok((group, list))
    }

    async fn assignment_list(&self, subscription: &ResourceId) -> Shared<Vec<RoleAssignment>> {
        self.assignments.lock().await.entry(subscription.clone()).or_default().clone()
    }

    /// The identities of resource group `group` whose ownership tags name `owner`'s binding: how a binding
    /// finds identities it created but never recorded in its status (a crash between the PUT and the status
    /// write, or a rename that raced the status write).
    pub async fn identities_owned_by(
        &self,
        group: &ResourceId,
        owner: &Owner,
    ) -> Result<Vec<FoundIdentity>, AzureError> {
        let list = self.identities.lock().await.entry(group.clone()).or_default().clone();
        let owned =
            |items: &Group| items.values().filter(|i| owner.owns(&i.observed.tags)).cloned().collect();
        list.read(self.max_age, self.list_group(group), owned).await
    }

    /// Lists a resource group's identities, page by page.
    async fn list_group(&self, group: &ResourceId) -> Result<Group, AzureError> {
        let mut by_id = HashMap::new();
        let mut next: Option<String> = None;
        loop {
            let page = self.inner.list_identities_page(group, next.as_deref()).await?;
            by_id.extend(page.identities.into_iter().map(|i| (i.ids.resource_id.clone(), i)));
            match page.next {
                Some(link) if next.as_deref() != Some(link.as_str()) => next = Some(link),
                _ => break,
            }
        }
        Ok(by_id)
    }
}

/// The resource group of an identity, as the key of its shared list.
fn group_of(identity_id: &ResourceId) -> Result<ResourceId, AzureError> {
    match (identity_id.is(USER_ASSIGNED_IDENTITY), identity_id.parent()) {
        (true, Some(group)) if group.resource_group().is_some() => Ok(group),
        _ => {
            Err(AzureError::InvalidResourceId { kind: "user-assigned identity", id: identity_id.to_string() })
        }
    }
}

/// The subscription scope a role assignment list covers, if `scope` is one (anything narrower, such as
/// adopting an existing assignment, goes to Azure).
fn whole_subscription(scope: &ResourceId) -> Option<ResourceId> {
    let subscription = ResourceId::subscription_scope(scope.subscription()?);
    (*scope == subscription).then_some(subscription)
}

#[async_trait]
impl AzureApi for Snapshots {
    async fn get_identity(&self, resource_id: &ResourceId) -> Result<Option<FoundIdentity>, AzureError> {
        let (group, list) = self.identity_group(resource_id).await?;
        list.read(self.max_age, self.list_group(&group), |items| items.get(resource_id).cloned()).await
    }

    async fn put_identity(
        &self,
        resource_id: &ResourceId,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<IdentityIds, AzureError> {
        let ids = self.inner.put_identity(resource_id, location, tags).await?;
        let (_, list) = self.identity_group(resource_id).await?;
        let observed = ObservedIdentity {
            location: location.to_string(),
            tags: tags.clone(),
            client_id: ids.client_id.clone(),
            principal_id: ids.principal_id.clone(),
        };
        list.edit(|items| {
            items.insert(resource_id.clone(), FoundIdentity { observed, ids: ids.clone() });
        });
        Ok(ids)
    }

    async fn delete_identity(&self, resource_id: &ResourceId) -> Result<(), AzureError> {
        let result = self.inner.delete_identity(resource_id).await;
        if result.is_ok() || result.as_ref().is_err_and(AzureError::is_not_found) {
            let (_, list) = self.identity_group(resource_id).await?;
            list.edit(|items| {
                items.remove(resource_id);
            });
            self.federations.lock().unwrap_or_else(PoisonError::into_inner).remove(resource_id);
        }
        result
    }

    async fn list_identities_page(
        &self,
        group: &ResourceId,
        next: Option<&str>,
    ) -> Result<IdentityPage, AzureError> {
        self.inner.list_identities_page(group, next).await
    }

    async fn list_federated_credentials(
        &self,
        identity_id: &ResourceId,
    ) -> Result<Vec<FederatedCredential>, AzureError> {
        let fresh = |l: &&Listed<Vec<FederatedCredential>>| l.at.elapsed() < self.federation_max_age;
        if let Some(l) =
            self.federations.lock().unwrap_or_else(PoisonError::into_inner).get(identity_id).filter(fresh)
        {
            return Ok(l.items.clone());
        }
        let started = Instant::now();
        let fics = self.inner.list_federated_credentials(identity_id).await?;
        let listed = Listed { at: started, items: fics.clone() };
        self.federations.lock().unwrap_or_else(PoisonError::into_inner).insert(identity_id.clone(), listed);
        Ok(fics)
    }

    async fn put_federated_credential(
        &self,
        identity_id: &ResourceId,
        fic: &FederatedCredential,
    ) -> Result<(), AzureError> {
        self.inner.put_federated_credential(identity_id, fic).await?;
        self.edit_federations(identity_id, |fics| {
            fics.retain(|f| !f.name.eq_ignore_ascii_case(&fic.name));
            fics.push(fic.clone());
        });
        Ok(())
    }

    async fn delete_federated_credential(
        &self,
        identity_id: &ResourceId,
        name: &str,
    ) -> Result<(), AzureError> {
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
        scope: &ResourceId,
        principal_id: &str,
    ) -> Result<Vec<role_assignments::Observed>, AzureError> {
        let Some(subscription) = whole_subscription(scope) else {
            return self.inner.list_role_assignments(scope, principal_id).await;
        };
        let list = self.assignment_list(&subscription).await;
        let sub = subscription.subscription().unwrap_or_default();
        let of_principal = |items: &Vec<RoleAssignment>| {
            items
                .iter()
                .filter(|ra| ra.principal_id.eq_ignore_ascii_case(principal_id))
                .map(|ra| ra.assignment.clone())
                .collect()
        };
        list.read(self.max_age, self.inner.list_all_role_assignments(sub), of_principal).await
    }

    async fn list_all_role_assignments(&self, subscription: &str) -> Result<Vec<RoleAssignment>, AzureError> {
        self.inner.list_all_role_assignments(subscription).await
    }

    async fn create_role_assignment(
        &self,
        scope: &ResourceId,
        name: &str,
        role_definition_guid: &str,
        principal_id: &str,
    ) -> Result<(), AzureError> {
        self.inner.create_role_assignment(scope, name, role_definition_guid, principal_id).await?;
        if let Some(sub) = scope.subscription() {
            let subscription = ResourceId::subscription_scope(sub);
            let assignment = role_assignments::Observed {
                id: scope.provider_resource(ROLE_ASSIGNMENT, name),
                name: name.to_string(),
                scope: scope.clone(),
                role_definition_id: subscription
                    .provider_resource(ROLE_DEFINITION, role_definition_guid)
                    .to_string(),
            };
            self.assignment_list(&subscription).await.edit(|items| {
                if !items.iter().any(|ra| ra.assignment.id == assignment.id) {
                    items.push(RoleAssignment { principal_id: principal_id.to_string(), assignment });
                }
            });
        }
        Ok(())
    }

    async fn delete_role_assignment(&self, id: &ResourceId) -> Result<(), AzureError> {
        let result = self.inner.delete_role_assignment(id).await;
        if (result.is_ok() || result.as_ref().is_err_and(AzureError::is_not_found))
            && let Some(sub) = id.subscription()
        {
            let subscription = ResourceId::subscription_scope(sub);
            self.assignment_list(&subscription)
                .await
                .edit(|items| items.retain(|ra| ra.assignment.id != *id));
        }
        result
    }

    async fn resolve_role(&self, scope: &ResourceId, role_name: &str) -> Result<String, AzureError> {
        self.inner.resolve_role(scope, role_name).await
    }

    async fn get_vault(&self, resource_id: &ResourceId) -> Result<Option<VaultInfo>, AzureError> {
        self.inner.get_vault(resource_id).await
    }

    async fn api_version_for(&self, resource: &ResourceId) -> Result<Option<String>, AzureError> {
        self.inner.api_version_for(resource).await
    }

    async fn scope_id(
        &self,
        scope: &ResourceId,
        api_version: Option<&str>,
    ) -> Result<Option<String>, AzureError> {
        self.inner.scope_id(scope, api_version).await
    }

    async fn update_access_policy(
        &self,
        vault_id: &ResourceId,
        change: AccessPolicyChange,
        tenant_id: &str,
        object_id: &str,
        permissions: &Permissions,
    ) -> Result<(), AzureError> {
        self.inner.update_access_policy(vault_id, change, tenant_id, object_id, permissions).await
    }
}
