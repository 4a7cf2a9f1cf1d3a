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
    AzureApi, AzureError, FederatedCredential, FoundIdentity, IdentityIds, VaultInfo,
    grants::{self, done_if_gone},
    snapshot::Snapshots,
};
use crate::core::{
    plan::{self, Action, Federation, Lookup, ObservedAzure, ObservedFic, Owner},
    removal::{self, Release},
    resource_id::ResourceId,
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

    /// What exists for a binding whose identity is `identity`, looked for where `lookup` says (see
    /// [`observe`]).
    pub async fn observe<'l>(
        &self,
        identity: &ResourceId,
        lookup: impl Into<Lookup<'l>>,
    ) -> Result<Observation<FromArm>, AzureError> {
        observe(self.0, identity, lookup.into()).await
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
    pub async fn observe<'l>(
        &self,
        identity: &ResourceId,
        lookup: impl Into<Lookup<'l>>,
    ) -> Result<Observation<FromLists>, AzureError> {
        observe(self.0, identity, lookup.into()).await
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

    /// Makes the deletes [`removal::plan`] plans from `observed` for `release`, in its order; with
    /// `principal_shared`, another binding brings the identity too. Returns what was deleted.
    pub async fn remove(
        &self,
        release: &Release,
        observed: &Observation<FromArm>,
        principal_shared: bool,
    ) -> Result<Vec<String>, AzureError> {
        let principal = observed.ids.as_ref().map(|i| i.principal_id.clone()).unwrap_or_default();
        let mut deleted = Vec::new();
        for action in removal::plan(release, &observed.azure, principal_shared) {
            execute(self.0, &release.identity, observed.ids.as_ref(), &action).await?;
            deleted.extend(action.removed(&release.identity, &principal));
        }
        Ok(deleted)
    }
}

/// Reads the Azure objects of a binding whose identity is `identity` (the managed identity's id, or the
/// brought identity's). Only reads: in steady state a reconcile makes these requests and no write.
async fn observe<S>(
    api: &dyn AzureApi,
    identity: &ResourceId,
    lookup: Lookup<'_>,
) -> Result<Observation<S>, AzureError> {
    let Some(found) = api.get_identity(identity).await? else {
        return Ok(Observation::new(ObservedAzure::default(), None));
    };
    let principal = &found.ids.principal_id;
    let mut azure = federation(api, identity, lookup.federation).await?;
    azure.grants = grants::observe(api, identity, lookup.grants, principal).await?;
    azure.identity = Some(found.observed);
    Ok(Observation::new(azure, Some(found.ids)))
}

/// The identity's federated credentials: ours (by name), how many there are, and another one with our issuer
/// and subject. Azure matches issuer and subject exactly (docs/azure.md#federated-credentials), so no
/// normalisation here either.
async fn federation(
    api: &dyn AzureApi,
    identity: &ResourceId,
    want: &Federation,
) -> Result<ObservedAzure, AzureError> {
    let fics = api.list_federated_credentials(identity).await?;
    let ours = |f: &&FederatedCredential| f.name.eq_ignore_ascii_case(&want.name);
    let duplicate = fics.iter().find(|f| !ours(f) && f.issuer == want.issuer && f.subject == want.subject);
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

/// Performs one planned write for the binding whose identity is `identity`. `ids` are the identity's, known
/// once it exists (the planner plans what names its principal only then). Returns the identity's ids when the
/// write was the identity's own PUT. A delete that finds nothing to delete did its job.
async fn execute(
    api: &dyn AzureApi,
    identity: &ResourceId,
    ids: Option<&IdentityIds>,
    action: &Action,
) -> Result<Option<IdentityIds>, AzureError> {
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
        Action::Grant(change) => {
            let ids = ids.ok_or_else(|| AzureError::IdentityNotReady(identity.clone()))?;
            grants::execute(api, ids, change).await.map(|()| None)
        }
        Action::DeleteFederatedCredential { name } => {
            done_if_gone(api.delete_federated_credential(identity, name).await).map(|()| None)
        }
        Action::DeleteIdentity { resource_id } => {
            done_if_gone(api.delete_identity(resource_id).await).map(|()| None)
        }
    }
}
