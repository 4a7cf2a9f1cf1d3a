//! Step 4, retire: identities this binding held before and holds no more (a rename, a move to a brought
//! identity) go, with everything idbind held through them. They are the identity the status names, and any
//! other that idbind's ownership tags say is this binding's in the current identity's resource group: an
//! identity created just before a crash, or before a rename that raced the status write, is named by no
//! status.

use kube::ResourceExt;

use super::{Context, azure_failure};
use crate::{
    api::binding::WorkloadIdentityBinding,
    core::{
        desired::Wanted,
        plan::{DesiredAzure, ManagedIdentity},
        report::{Outcome, Part},
        resource_id::ResourceId,
    },
};

/// Removes each identity the binding no longer uses, or the outcome that stops the binding here.
pub async fn previous_identities(
    b: &WorkloadIdentityBinding,
    wanted: &Wanted,
    ctx: &Context,
) -> Result<(), Outcome> {
    for old in previous(b, wanted, ctx).await {
        let old_desired = DesiredAzure {
            role_assignments: Vec::new(),
            access_policies: Vec::new(),
            managed_identity: Some(ManagedIdentity {
                resource_id: old.clone(),
                location: String::new(),
                tags: Default::default(),
            }),
            ..wanted.azure.clone()
        };
        let removed = async {
            let observed = ctx.azure.fresh().observe(&old, &old_desired).await?;
            ctx.azure.writes().remove(&old, &old_desired, &observed).await
        };
        if let Err(e) = removed.await {
            tracing::warn!(binding = %b.name_any(), error = %e, old = %old, "removing the previous identity failed; retrying");
            return Err(azure_failure(Part::Identity, &e));
        }
        tracing::info!(old = %old, "removed an identity the binding no longer uses");
    }
    Ok(())
}

/// The identities to retire: held before (by status or by tags), not the one wanted now.
async fn previous(b: &WorkloadIdentityBinding, wanted: &Wanted, ctx: &Context) -> Vec<ResourceId> {
    let status = b.status.as_ref().and_then(|s| s.identity.as_ref()).filter(|i| i.managed);
    let mut previous: Vec<ResourceId> =
        status.and_then(|i| ResourceId::parse(&i.resource_id).ok()).into_iter().collect();
    if let Some(group) = wanted.azure.managed_identity.as_ref().and_then(|m| m.resource_id.parent()) {
        match ctx.azure.cached().identities_owned_by(&group, &wanted.azure.owner).await {
            Ok(found) => previous.extend(found.into_iter().map(|i| i.ids.resource_id)),
            Err(e) => {
                let next = "the next reconcile looks again";
                tracing::warn!(error = %e, "listing the binding's identities failed; {next}");
            }
        }
    }
    previous.retain(|id| *id != wanted.identity);
    previous.sort();
    previous.dedup();
    previous
}
