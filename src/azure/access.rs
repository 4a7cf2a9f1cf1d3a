//! How the reconcile reaches Azure: three doors, each a type of its own, so every step's signature says
//! whether it reads fresh from ARM, reads the shared lists, or writes.
//!
//! - [`Fresh`]: reads straight from ARM (through the request budget). Every write is planned from these.
//! - [`Cached`]: reads answered from the shared lists ([`Snapshots`]), up to a resync old. Only ever trusted
//!   to say that nothing needs doing.
//! - [`Writes`]: the writes, which keep the shared lists current. They take only an [`Observation`] read
//!   through [`Fresh`], so a stale list can never be what a write was planned from.

use std::{marker::PhantomData, sync::Arc, time::Duration};

use super::{
    AccessPolicyChange, AzureApi, AzureError, FederatedCredential, FoundIdentity, IdentityIds, VaultInfo,
    snapshot::Snapshots,
};
use crate::core::{
    plan::{self, Action, DesiredAzure, ObservedAzure, ObservedFic, ObservedRoleAssignment, Owner},
    removal,
    resource_id::ResourceId,
    roles::Permissions,
};

/// Marks an [`Observation`] read straight from ARM.
#[derive(Debug)]
pub enum FromArm {}

/// Marks an [`Observation`] answered from the shared lists.
#[derive(Debug)]
pub enum FromLists {}

/// What exists in Azure for a binding: the planner's input and the identity's ids, and (in its type) where it
/// was read. Only this module makes one, so an `Observation<FromArm>` was read from ARM.
#[derive(Debug)]
pub struct Observation<Source> {
    pub azure: ObservedAzure,
    pub ids: Option<IdentityIds>,
    source: PhantomData<Source>,
}

impl<S> Observation<S> {
    fn new(azure: ObservedAzure, ids: Option<IdentityIds>) -> Self {
        Observation { azure, ids, source: PhantomData }
    }

    /// Whether nothing exists for the binding (its identity is not there).
    pub fn is_empty(&self) -> bool {
        self.ids.is_none() && self.azure == ObservedAzure::default()
    }
}

impl<S> PartialEq for Observation<S> {
    fn eq(&self, other: &Self) -> bool {
        (&self.azure, &self.ids) == (&other.azure, &other.ids)
    }
}

/// Azure as the reconcile reaches it. See the module documentation.
pub struct Azure {
    direct: Arc<dyn AzureApi>,
    snapshots: Arc<Snapshots>,
}

impl Azure {
    /// Over `direct` (the governed ARM client), with shared lists taken again every `resync`.
    pub fn new(direct: Arc<dyn AzureApi>, resync: Duration) -> Self {
        let snapshots = Arc::new(Snapshots::new(direct.clone(), resync));
        Azure { direct, snapshots }
    }

    /// Reads a binding's federated credentials again only after `max_age` (see
    /// [`Snapshots::with_federation_max_age`]).
    pub fn with_federation_max_age(self, max_age: Duration, resync: Duration) -> Self {
        let snapshots = Snapshots::new(self.direct.clone(), resync).with_federation_max_age(max_age);
        Azure { snapshots: Arc::new(snapshots), ..self }
    }

    pub fn fresh(&self) -> Fresh<'_> {
        Fresh(self.direct.as_ref())
    }

    pub fn cached(&self) -> Cached<'_> {
        Cached(&self.snapshots)
    }

    pub fn writes(&self) -> Writes<'_> {
        Writes(self.snapshots.as_ref())
    }

    /// The shared lists, for tests that check what they hold.
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }
}

/// Reads straight from ARM.
#[derive(Clone, Copy)]
pub struct Fresh<'a>(&'a dyn AzureApi);

impl<'a> Fresh<'a> {
    /// Fresh reads through `api` (the dry run and tests use the ARM client itself).
    pub fn new(api: &'a dyn AzureApi) -> Self {
        Fresh(api)
    }

    /// What exists for a binding whose identity is `identity` (see [`observe`]).
    pub async fn observe(
        &self,
        identity: &ResourceId,
        desired: &DesiredAzure,
    ) -> Result<Observation<FromArm>, AzureError> {
        observe(self.0, identity, desired).await
    }

    /// The vault, or `None` when it does not exist.
    pub async fn vault(&self, id: &ResourceId) -> Result<Option<VaultInfo>, AzureError> {
        self.0.get_vault(id).await
    }

    /// The id Azure answers a GET of `scope` (a subscription, a resource group or a resource) with; `None`
    /// when it does not exist. A resource of a type its provider does not list does not.
    pub async fn scope_id(&self, scope: &ResourceId) -> Result<Option<String>, AzureError> {
        if scope.provider().is_none() {
            return self.0.scope_id(scope, None).await;
        }
        match self.0.api_version_for(scope).await? {
            Some(version) => self.0.scope_id(scope, Some(&version)).await,
            None => Ok(None),
        }
    }

    /// The GUID of the role definition named `name` at `scope`.
    pub async fn role(&self, scope: &ResourceId, name: &str) -> Result<String, AzureError> {
        self.0.resolve_role(scope, name).await
    }
}

/// Reads answered from the shared lists.
#[derive(Clone, Copy)]
pub struct Cached<'a>(&'a Snapshots);

impl Cached<'_> {
    /// What the lists say exists for a binding whose identity is `identity`.
    pub async fn observe(
        &self,
        identity: &ResourceId,
        desired: &DesiredAzure,
    ) -> Result<Observation<FromLists>, AzureError> {
        observe(self.0, identity, desired).await
    }

    /// The identities of resource group `group` whose ownership tags name `owner`'s binding.
    pub async fn identities_owned_by(
        &self,
        group: &ResourceId,
        owner: &Owner,
    ) -> Result<Vec<FoundIdentity>, AzureError> {
        self.0.identities_owned_by(group, owner).await
    }
}

/// Writes to Azure.
#[derive(Clone, Copy)]
pub struct Writes<'a>(&'a dyn AzureApi);

impl<'a> Writes<'a> {
    /// Writes through `api` directly (tests of the Azure layer; the reconcile writes through the lists).
    pub fn new(api: &'a dyn AzureApi) -> Self {
        Writes(api)
    }

    /// Performs `action` for the binding whose identity is `identity`, then records in `observed` what it
    /// made true ([`plan::assume`]), so the next round plans from it without reading Azure again.
    pub async fn apply(
        &self,
        identity: &ResourceId,
        observed: &mut Observation<FromArm>,
        action: &Action,
    ) -> Result<(), AzureError> {
        if let Some(ids) = execute(self.0, identity, observed.ids.as_ref(), action).await? {
            observed.ids = Some(ids);
        }
        let principal = observed.ids.as_ref().map(|i| i.principal_id.as_str());
        plan::assume(&mut observed.azure, action, principal);
        Ok(())
    }

    /// Removes what Azure shows the binding may remove through `identity` ([`removal::removal`]); with
    /// `principal_shared`, another binding brings the identity too.
    pub async fn remove(
        &self,
        identity: &ResourceId,
        desired: &DesiredAzure,
        observed: &Observation<FromArm>,
        principal_shared: bool,
    ) -> Result<Vec<String>, AzureError> {
        remove(self.0, identity, desired, observed, principal_shared).await
    }
}

/// Reads the Azure objects of a binding whose identity is `identity` (the managed identity's id, or the
/// brought identity's). Only reads: in steady state a reconcile makes these requests and no write.
async fn observe<S>(
    api: &dyn AzureApi,
    identity: &ResourceId,
    desired: &DesiredAzure,
) -> Result<Observation<S>, AzureError> {
    let Some(found) = api.get_identity(identity).await? else {
        return Ok(Observation::new(ObservedAzure::default(), None));
    };
    let principal = &found.ids.principal_id;
    let mut azure = federation(api, identity, desired).await?;
    azure.role_assignments = role_assignments(api, identity, desired, principal).await?;
    azure.access_policies = access_policies(api, desired, principal).await?;
    azure.identity = Some(found.observed);
    Ok(Observation::new(azure, Some(found.ids)))
}

/// The identity's federated credentials: ours (by name), how many there are, and another one with our issuer
/// and subject. Azure matches issuer and subject exactly (docs/azure.md#federated-credentials), so no
/// normalisation here either.
async fn federation(
    api: &dyn AzureApi,
    identity: &ResourceId,
    desired: &DesiredAzure,
) -> Result<ObservedAzure, AzureError> {
    let fics = api.list_federated_credentials(identity).await?;
    let ours = |f: &&FederatedCredential| f.name.eq_ignore_ascii_case(&desired.fic_name);
    let duplicate =
        fics.iter().find(|f| !ours(f) && f.issuer == desired.issuer && f.subject == desired.subject);
    Ok(ObservedAzure {
        fic: fics.iter().find(ours).map(|f| ObservedFic {
            issuer: f.issuer.clone(),
            subject: f.subject.clone(),
            audiences: f.audiences.clone(),
        }),
        fic_count: fics.len(),
        fic_duplicate_of: duplicate.map(|f| f.name.clone()),
        ..ObservedAzure::default()
    })
}

/// The principal's role assignments, listed per subscription (the identity's, each wanted scope's, and those
/// `assignment_subscriptions` adds) rather than per wanted scope, so an assignment at a scope the spec no
/// longer names is still seen, and removed.
async fn role_assignments(
    api: &dyn AzureApi,
    identity: &ResourceId,
    desired: &DesiredAzure,
    principal: &str,
) -> Result<Vec<ObservedRoleAssignment>, AzureError> {
    let mut wanted: Vec<ResourceId> = Vec::new();
    for id in std::iter::once(identity).chain(desired.role_assignments.iter().map(|(scope, _)| scope)) {
        let subscription = id.subscription().ok_or_else(|| AzureError::InvalidResourceId {
            kind: "subscription-scoped",
            id: id.to_string(),
        })?;
        wanted.push(ResourceId::subscription_scope(subscription));
    }
    wanted.extend(desired.assignment_subscriptions.iter().map(|s| ResourceId::subscription_scope(s)));
    let mut subscriptions: Vec<ResourceId> = Vec::with_capacity(wanted.len());
    for scope in wanted {
        if !subscriptions.contains(&scope) {
            subscriptions.push(scope);
        }
    }
    let mut found: Vec<ObservedRoleAssignment> = Vec::new();
    for scope in &subscriptions {
        for ra in api.list_role_assignments(scope, principal).await? {
            if !found.iter().any(|have| have.id == ra.id) {
                found.push(ra);
            }
        }
    }
    Ok(found)
}

/// The principal's access-policy permissions on each vault the binding wants or held policies on. A vault
/// deleted since counts as holding nothing.
async fn access_policies(
    api: &dyn AzureApi,
    desired: &DesiredAzure,
    principal: &str,
) -> Result<Vec<(ResourceId, Permissions)>, AzureError> {
    let mut found: Vec<(ResourceId, Permissions)> = Vec::new();
    for (vault, _) in desired.access_policies.iter().chain(&desired.held_access_policies) {
        if found.iter().any(|(v, _)| v == vault) {
            continue;
        }
        let held = api.get_vault(vault).await?.map(|v| v.permissions_of(principal)).unwrap_or_default();
        found.push((vault.clone(), held));
    }
    Ok(found)
}

/// Performs one planned write for the binding whose identity is `identity`. `ids` are the identity's, known
/// once it exists (the planner plans what names its principal only then). Returns the identity's ids when the
/// write was the identity's own PUT.
async fn execute(
    api: &dyn AzureApi,
    identity: &ResourceId,
    ids: Option<&IdentityIds>,
    action: &Action,
) -> Result<Option<IdentityIds>, AzureError> {
    let not_ready = || AzureError::IdentityNotReady(identity.clone());
    match action {
        Action::PutIdentity { resource_id, location, tags } => {
            api.put_identity(resource_id, location, tags).await.map(Some)
        }
        Action::PutFederatedCredential { name, issuer, subject, audience } => {
            let fic = FederatedCredential {
                name: name.clone(),
                issuer: issuer.clone(),
                subject: subject.clone(),
                audiences: vec![audience.clone()],
            };
            api.put_federated_credential(identity, &fic).await.map(|()| None)
        }
        Action::CreateRoleAssignment { scope, name, role_definition_guid } => {
            let principal = ids.ok_or_else(not_ready)?.principal_id.as_str();
            create_role_assignment(api, scope, name, role_definition_guid, principal).await.map(|()| None)
        }
        Action::DeleteRoleAssignment { id } => {
            done_if_gone(api.delete_role_assignment(id).await).map(|()| None)
        }
        Action::GrantAccessPolicy { vault_id, permissions } => {
            let ids = ids.ok_or_else(not_ready)?;
            let (tenant, principal) = (&ids.tenant_id, &ids.principal_id);
            let grant =
                api.update_access_policy(vault_id, AccessPolicyChange::Add, tenant, principal, permissions);
            grant.await.map(|()| None)
        }
        Action::RevokeAccessPolicy { vault_id, permissions } => {
            let ids = ids.ok_or_else(not_ready)?;
            let (tenant, principal) = (&ids.tenant_id, &ids.principal_id);
            let revoke = api.update_access_policy(
                vault_id,
                AccessPolicyChange::Remove,
                tenant,
                principal,
                permissions,
            );
            done_if_gone(revoke.await).map(|()| None)
        }
    }
}

/// Creates a role assignment; when ARM says the (scope, role, principal) trio has one already, it counts as
/// ours only under the name we derive (docs/azure.md#role-assignment-rules): otherwise it belongs to someone
/// else and is reported, never taken over.
async fn create_role_assignment(
    api: &dyn AzureApi,
    scope: &ResourceId,
    name: &str,
    role_guid: &str,
    principal: &str,
) -> Result<(), AzureError> {
    let original = match api.create_role_assignment(scope, name, role_guid, principal).await {
        Err(e) if e.arm_code().is_some_and(|c| c.eq_ignore_ascii_case("RoleAssignmentExists")) => e,
        other => return other,
    };
    let existing = api.list_role_assignments(scope, principal).await?;
    let same_trio = existing.iter().find(|ra| {
        ra.scope == *scope
            && ra.role_definition_id.rsplit('/').next().is_some_and(|g| g.eq_ignore_ascii_case(role_guid))
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

/// Removes what the binding owns in Azure through `identity` (finalizer, `deletionPolicy: Delete`, or an
/// identity the binding no longer uses), in the order that leaves nothing orphaned
/// (docs/azure.md#role-assignment-rules): role assignments and access-policy permissions first (deleting the
/// identity first would strand assignments as "Identity not found", counting against the subscription's
/// limit), then our FIC, then the identity, only when idbind manages it and its tags say it is this
/// binding's. Anything already gone counts as deleted. Returns the ids deleted.
async fn remove<S>(
    api: &dyn AzureApi,
    identity: &ResourceId,
    desired: &DesiredAzure,
    observed: &Observation<S>,
    principal_shared: bool,
) -> Result<Vec<String>, AzureError> {
    let mut deleted = Vec::new();
    let Some(found) = &observed.azure.identity else {
        return Ok(deleted);
    };
    let may = removal::removal(desired, &observed.azure, principal_shared);
    if may.grants {
        for ra in observed.azure.role_assignments.iter().filter(|ra| ra.is_ours(&found.principal_id)) {
            done_if_gone(api.delete_role_assignment(&ra.id).await)?;
            deleted.push(ra.id.to_string());
        }
        for (vault, present) in granted_access_policies(desired, &observed.azure) {
            let revoke = Action::RevokeAccessPolicy { vault_id: vault.clone(), permissions: present };
            execute(api, identity, observed.ids.as_ref(), &revoke).await?;
            deleted.push(format!("{vault}/accessPolicies/{}", found.principal_id));
        }
    }
    if may.federated_credential {
        done_if_gone(api.delete_federated_credential(identity, &desired.fic_name).await)?;
        deleted.push(format!("{identity}/federatedIdentityCredentials/{}", desired.fic_name));
    }
    if may.identity {
        done_if_gone(api.delete_identity(identity).await)?;
        deleted.push(identity.to_string());
    }
    Ok(deleted)
}

/// Per vault, the permissions idbind granted (wanted or held) that the identity still has.
fn granted_access_policies(
    desired: &DesiredAzure,
    observed: &ObservedAzure,
) -> Vec<(ResourceId, Permissions)> {
    let all = || desired.access_policies.iter().chain(&desired.held_access_policies);
    let mut seen: Vec<&ResourceId> = Vec::new();
    let mut present = Vec::new();
    for (vault, _) in all() {
        if seen.contains(&vault) {
            continue;
        }
        seen.push(vault);
        let granted =
            all().filter(|(v, _)| v == vault).fold(Permissions::default(), |acc, (_, p)| acc.union(p));
        let still = granted.intersect(&observed.access_policy(vault));
        if !still.is_empty() {
            present.push((vault.clone(), still));
        }
    }
    present
}

/// A delete that found nothing to delete did its job.
fn done_if_gone(result: Result<(), AzureError>) -> Result<(), AzureError> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}
