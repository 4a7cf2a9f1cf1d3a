//! [`Governed`]: the [`AzureApi`] every reconcile uses, wrapping the real client with what keeps a fleet of
//! reconciles inside Azure's limits and out of each other's way:
//!
//! - the client-side request budget ([`super::budget`]), shaped like ARM's and the managed-identity API's
//!   token buckets (docs/azure.md#arm-throttling, docs/azure.md#managed-identity-limits), so idbind waits its
//!   turn instead of provoking 429s;
//! - at most one federated-credential write in flight per identity: Azure answers a second concurrent one
//!   with 409 `ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`
//!   (docs/azure.md#federated-credentials), which bites when several bindings federate one brought identity;
//! - the role-name cache: display names resolve once per subscription, not once per reconcile;
//! - the per-request observation for metrics (operation, status, duration, budget wait).
//!
//! Each call is still one ARM request with no retry; the controller decides what a failure means.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::budget::{MsiOp, OpKind, Request, SharedBudget, SharedLimit};
use super::{
    AccessPolicyChange, AzureApi, AzureError, FederatedCredential, FoundIdentity, IdentityIds, IdentityPage,
    RoleAssignment, VaultInfo,
};
use crate::core::{
    grants::role_assignments,
    resource_id::{ResourceId, USER_ASSIGNED_IDENTITY},
    roles::Permissions,
};

/// Receives one record per ARM request (the metrics implement it).
pub trait ArmObserver: Send + Sync {
    /// `status` is the HTTP status ARM answered: 200 for any success (the SDK does not say which 2xx it was),
    /// 404 for a read that found nothing, 0 when no HTTP answer came.
    fn request(&self, operation: &'static str, status: u16, elapsed: Duration);
    /// How long a request waited for the budget before it was sent.
    fn budget_waited(&self, waited: Duration);
    /// Azure answered a request the budget admitted with 429: someone else spends `limit` too.
    fn throttled(&self, limit: SharedLimit);
}

/// The governed Azure layer.
pub struct Governed {
    inner: Arc<dyn AzureApi>,
    /// `None`: no client-side budget (Azure's 429s and the controller's backoff only).
    budget: Option<SharedBudget>,
    observer: Option<Arc<dyn ArmObserver>>,
    /// Lowercased identity id → the lock its FIC writes take. Entries are removed when nobody holds or waits
    /// for them, so the map follows the writes in flight.
    fic_locks: Mutex<HashMap<ResourceId, Arc<tokio::sync::Mutex<()>>>>,
    /// (lowercased subscription, lowercased role name) → role definition GUID.
    roles: Mutex<HashMap<(String, String), String>>,
    /// Lowercased vault id → the vault as last read, and when. A vault's existence and permission model
    /// change rarely, and every binding's every resync would otherwise read it; idbind's own access-policy
    /// writes drop the entry, others' are seen after the TTL.
    vaults: Mutex<HashMap<ResourceId, (Instant, VaultInfo)>>,
    /// Scopes seen to exist, when, and the id Azure answered for each (same lifetime as vaults).
    scopes: Mutex<HashMap<ResourceId, (Instant, String)>>,
    /// `subscription/namespace/type` (lowercase) → the api-version its resources are read with.
    api_versions: Mutex<HashMap<String, String>>,
}

/// How long a vault read is reused. A vault that did not exist is never cached, so a VaultNotFound heals as
/// soon as the vault appears.
pub const VAULT_CACHE_TTL: Duration = Duration::from_secs(300);

impl Governed {
    pub fn new(
        inner: Arc<dyn AzureApi>,
        budget: Option<SharedBudget>,
        observer: Option<Arc<dyn ArmObserver>>,
    ) -> Self {
        Governed {
            inner,
            budget,
            observer,
            fic_locks: Mutex::default(),
            roles: Mutex::default(),
            vaults: Mutex::default(),
            scopes: Mutex::default(),
            api_versions: Mutex::default(),
        }
    }

    /// The request budget it spends, if any (the controller books turns on it).
    pub fn budget(&self) -> Option<&SharedBudget> {
        self.budget.as_ref()
    }

    /// Waits for the budget, sends, and reports the request.
    async fn call<T: Answered, F: Future<Output = Result<T, AzureError>>>(
        &self,
        operation: &'static str,
        request: Request,
        send: F,
    ) -> Result<T, AzureError> {
        let waited = match &self.budget {
            Some(b) => b.acquire(&request).await,
            None => Duration::ZERO,
        };
        let start = Instant::now();
        let result = send.await;
        let throttled = match (&self.budget, &result) {
            (Some(budget), Err(AzureError::Arm { status: 429, code, retry_after, .. })) => {
                Some(budget.throttled(&request, code, *retry_after))
            }
            _ => None,
        };
        if let Some(o) = &self.observer {
            if let Some(limit) = throttled {
                o.throttled(limit);
            }
            o.budget_waited(waited);
            let status = match &result {
                Ok(answer) => answer.status(),
                Err(AzureError::Arm { status, .. }) => *status,
                Err(_) => 0,
            };
            o.request(operation, status, start.elapsed());
        }
        result
    }

    /// Runs a FIC write on `identity_id` under that identity's lock.
    async fn fic_write<T: Answered, F: Future<Output = Result<T, AzureError>>>(
        &self,
        operation: &'static str,
        identity_id: &ResourceId,
        send: F,
    ) -> Result<T, AzureError> {
        let key = identity_id.clone();
        let lock = self
            .fic_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let result = {
            let _held = lock.lock().await;
            let kind = if operation.ends_with("_Delete") { OpKind::Delete } else { OpKind::Write };
            self.call(operation, Request { kind, msi: None }, send).await
        };
        drop(lock);
        let mut locks = self.fic_locks.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the map holds it now: nobody is writing or waiting.
        if locks.get(&key).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(&key);
        }
        result
    }

    /// Identities with a FIC lock entry (for tests: it must not grow without bound).
    pub fn fic_locks_held(&self) -> usize {
        self.fic_locks.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The HTTP status an answer stands for, for the metrics: the reads that return `None` got a 404.
trait Answered {
    fn status(&self) -> u16 {
        200
    }
}

impl<T> Answered for Option<T> {
    fn status(&self) -> u16 {
        if self.is_some() { 200 } else { 404 }
    }
}

/// Whether a scope exists: a missing one got a 404.
impl Answered for bool {
    fn status(&self) -> u16 {
        if *self { 200 } else { 404 }
    }
}

impl Answered for () {}
impl Answered for String {}
impl Answered for IdentityIds {}
impl Answered for IdentityPage {}
impl<T> Answered for Vec<T> {}

fn msi(kind: OpKind, op: MsiOp, identity_id: &ResourceId) -> Request {
    Request { kind, msi: Some((op, identity_id.to_string())) }
}

fn arm(kind: OpKind) -> Request {
    Request { kind, msi: None }
}

#[async_trait]
impl AzureApi for Governed {
    async fn get_identity(&self, resource_id: &ResourceId) -> Result<Option<FoundIdentity>, AzureError> {
        self.call(
            "UserAssignedIdentities_Get",
            msi(OpKind::Read, MsiOp::Get, resource_id),
            self.inner.get_identity(resource_id),
        )
        .await
    }

    async fn put_identity(
        &self,
        resource_id: &ResourceId,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<IdentityIds, AzureError> {
        self.call(
            "UserAssignedIdentities_CreateOrUpdate",
            msi(OpKind::Write, MsiOp::CreateOrUpdate, resource_id),
            self.inner.put_identity(resource_id, location, tags),
        )
        .await
    }

    async fn delete_identity(&self, resource_id: &ResourceId) -> Result<(), AzureError> {
        self.call(
            "UserAssignedIdentities_Delete",
            msi(OpKind::Delete, MsiOp::Delete, resource_id),
            self.inner.delete_identity(resource_id),
        )
        .await
    }

    async fn list_identities_page(
        &self,
        group: &ResourceId,
        next: Option<&str>,
    ) -> Result<IdentityPage, AzureError> {
        // The MSI API limits a list like a resource (0.25/s), keyed by the collection's path as in the
        // simulator; each page is one request and waits its own turn.
        let list = Request {
            kind: OpKind::Read,
            msi: Some((MsiOp::List, group.collection_path(USER_ASSIGNED_IDENTITY))),
        };
        self.call(
            "UserAssignedIdentities_ListByResourceGroup",
            list,
            self.inner.list_identities_page(group, next),
        )
        .await
    }

    async fn list_federated_credentials(
        &self,
        identity_id: &ResourceId,
    ) -> Result<Vec<FederatedCredential>, AzureError> {
        self.call(
            "FederatedIdentityCredentials_List",
            arm(OpKind::Read),
            self.inner.list_federated_credentials(identity_id),
        )
        .await
    }

    async fn put_federated_credential(
        &self,
        identity_id: &ResourceId,
        fic: &FederatedCredential,
    ) -> Result<(), AzureError> {
        self.fic_write(
            "FederatedIdentityCredentials_CreateOrUpdate",
            identity_id,
            self.inner.put_federated_credential(identity_id, fic),
        )
        .await
    }

    async fn delete_federated_credential(
        &self,
        identity_id: &ResourceId,
        name: &str,
    ) -> Result<(), AzureError> {
        self.fic_write(
            "FederatedIdentityCredentials_Delete",
            identity_id,
            self.inner.delete_federated_credential(identity_id, name),
        )
        .await
    }

    async fn list_role_assignments(
        &self,
        scope: &ResourceId,
        principal_id: &str,
    ) -> Result<Vec<role_assignments::Observed>, AzureError> {
        self.call(
            "RoleAssignments_ListForScope",
            arm(OpKind::Read),
            self.inner.list_role_assignments(scope, principal_id),
        )
        .await
    }

    async fn list_all_role_assignments(&self, subscription: &str) -> Result<Vec<RoleAssignment>, AzureError> {
        self.call(
            "RoleAssignments_ListForScope",
            arm(OpKind::Read),
            self.inner.list_all_role_assignments(subscription),
        )
        .await
    }

    async fn create_role_assignment(
        &self,
        scope: &ResourceId,
        name: &str,
        role_definition_guid: &str,
        principal_id: &str,
    ) -> Result<(), AzureError> {
        self.call(
            "RoleAssignments_Create",
            arm(OpKind::Write),
            self.inner.create_role_assignment(scope, name, role_definition_guid, principal_id),
        )
        .await
    }

    async fn delete_role_assignment(&self, id: &ResourceId) -> Result<(), AzureError> {
        self.call("RoleAssignments_Delete", arm(OpKind::Delete), self.inner.delete_role_assignment(id)).await
    }

    async fn resolve_role(&self, scope: &ResourceId, role_name: &str) -> Result<String, AzureError> {
        let sub = scope.subscription().unwrap_or_default().to_ascii_lowercase();
        let key = (sub, role_name.trim().to_ascii_lowercase());
        if let Some(guid) = self.roles.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(guid.clone());
        }
        let guid = self
            .call("RoleDefinitions_List", arm(OpKind::Read), self.inner.resolve_role(scope, role_name))
            .await?;
        self.roles.lock().unwrap_or_else(PoisonError::into_inner).insert(key, guid.clone());
        Ok(guid)
    }

    async fn get_vault(&self, resource_id: &ResourceId) -> Result<Option<VaultInfo>, AzureError> {
        let key = resource_id.clone();
        if let Some((at, vault)) = self.vaults.lock().unwrap_or_else(PoisonError::into_inner).get(&key)
            && at.elapsed() < VAULT_CACHE_TTL
        {
            return Ok(Some(vault.clone()));
        }
        let vault = self.call("Vaults_Get", arm(OpKind::Read), self.inner.get_vault(resource_id)).await?;
        let mut cache = self.vaults.lock().unwrap_or_else(PoisonError::into_inner);
        match &vault {
            Some(v) => cache.insert(key, (Instant::now(), v.clone())),
            None => cache.remove(&key),
        };
        Ok(vault)
    }

    async fn api_version_for(&self, resource: &ResourceId) -> Result<Option<String>, AzureError> {
        // A provider's api-versions change with its releases, not with our bindings: asked once per type.
        let key = format!(
            "{}/{}/{}",
            resource.subscription().unwrap_or_default(),
            resource.provider().unwrap_or_default(),
            resource.resource_type().unwrap_or_default()
        )
        .to_ascii_lowercase();
        if let Some(version) = self.api_versions.lock().unwrap_or_else(PoisonError::into_inner).get(&key) {
            return Ok(Some(version.clone()));
        }
        let version =
            self.call("Providers_Get", arm(OpKind::Read), self.inner.api_version_for(resource)).await?;
        if let Some(v) = &version {
            self.api_versions.lock().unwrap_or_else(PoisonError::into_inner).insert(key, v.clone());
        }
        Ok(version)
    }

    async fn scope_id(
        &self,
        scope: &ResourceId,
        api_version: Option<&str>,
    ) -> Result<Option<String>, AzureError> {
        // Cached like vaults: a scope that existed five minutes ago is taken to exist, at the id Azure
        // answered then; a missing one is asked again, so it is seen as soon as it is created.
        if let Some((at, answered)) = self.scopes.lock().unwrap_or_else(PoisonError::into_inner).get(scope)
            && at.elapsed() < VAULT_CACHE_TTL
        {
            return Ok(Some(answered.clone()));
        }
        let op = super::arm::scope_operation(scope);
        let answered = self.call(op, arm(OpKind::Read), self.inner.scope_id(scope, api_version)).await?;
        let mut cache = self.scopes.lock().unwrap_or_else(PoisonError::into_inner);
        match &answered {
            Some(id) => cache.insert(scope.clone(), (Instant::now(), id.clone())),
            None => cache.remove(scope),
        };
        Ok(answered)
    }

    async fn update_access_policy(
        &self,
        vault_id: &ResourceId,
        change: AccessPolicyChange,
        tenant_id: &str,
        object_id: &str,
        permissions: &Permissions,
    ) -> Result<(), AzureError> {
        // Whatever the answer, the cached policies may no longer be the vault's.
        self.vaults.lock().unwrap_or_else(PoisonError::into_inner).remove(vault_id);
        self.call(
            "Vaults_UpdateAccessPolicy",
            arm(OpKind::Write),
            self.inner.update_access_policy(vault_id, change, tenant_id, object_id, permissions),
        )
        .await
    }
}
