//! Step 4, retire: identities this binding held before and holds no more (a rename, a move to or from a
//! brought identity) go, with everything idbind held through them. They are the identity the status names,
//! and any other that idbind's ownership tags say is this binding's in the current identity's resource group:
//! an identity created just before a crash, or before a rename that raced the status write, is named by no
//! status. The status only says where to look: what goes is what Azure shows is this binding's
//! ([`crate::core::removal`]).

use super::{Context, azure_failure, context::key};
use crate::core::reason::Reason;
use crate::{
    api::binding::WorkloadIdentityBinding,
    azure::AzureError,
    core::{
        desired::Wanted,
        grants::{self, access_policies, role_assignments},
        report::{Outcome, Part},
        resource_id::ResourceId,
    },
};

/// An identity the binding used before.
#[derive(Debug)]
struct Previous {
    identity: ResourceId,
    /// Made by idbind (as opposed to brought).
    managed: bool,
}

/// Removes each identity the binding no longer uses, or the outcome that stops the binding here.
pub async fn previous_identities(
    b: &WorkloadIdentityBinding,
    wanted: &Wanted,
    ctx: &Context,
) -> Result<(), Outcome> {
    for Previous { identity, managed } in previous(b, wanted, ctx).await {
        // Nothing is wanted through the old identity: its grants are looked for where the binding's are, and
        // what its status says it held by access policy goes.
        let held = &wanted.azure.grants;
        let grants = grants::Desired {
            role_assignments: role_assignments::Desired::letting_go(
                held.role_assignments.subscriptions.clone(),
            ),
            access_policies: access_policies::Desired::letting_go(
                Vec::new(),
                held.access_policies.held.clone(),
            ),
        };
        let release = ctx.release(b, identity.clone(), managed, grants);
        let shared = ctx.caches.brought_by_others(b, &identity);
        let removed = async {
            let observed = ctx.azure.fresh().observe(&identity, &release).await?;
            ctx.azure.writes().remove(&release, &observed, shared).await
        };
        match removed.await {
            Ok(gone) if gone.is_empty() => {}
            Ok(gone) => {
                let message = "retired an identity the binding no longer uses";
                tracing::info!(binding = %key(b), old = %identity, removed = ?gone, "{message}");
                let notes = gone.into_iter().map(|id| format!("deleted {id} (replaced)"));
                super::publish::changes(b, ctx, Reason::AzureDeleted, notes).await;
            }
            Err(e) => {
                let message = "retiring the previous identity failed; retrying";
                tracing::warn!(binding = %key(b), error = %e, old = %identity, "{message}");
                return Err(azure_failure(Part::Identity, &e));
            }
        }
    }
    Ok(())
}

/// Takes the binding's own federated credential off `identity` (a brought identity it may not, or no longer,
/// use), if it is there; nothing else.
pub async fn withdraw_federation(
    b: &WorkloadIdentityBinding,
    identity: &ResourceId,
    ctx: &Context,
) -> Result<(), AzureError> {
    // As a brought identity another binding shares: nothing but the federated credential may go.
    let release = ctx.release(b, identity.clone(), false, grants::Desired::default());
    let removed = async {
        let observed = ctx.azure.fresh().observe(identity, &release).await?;
        ctx.azure.writes().remove(&release, &observed, true).await
    };
    let gone = removed.await?;
    for id in &gone {
        tracing::info!(binding = %key(b), "azure delete: {id}: done (the binding may no longer federate it)");
    }
    Ok(())
}

/// The identities to retire: held before (by status or by tags), not the one wanted now.
async fn previous(b: &WorkloadIdentityBinding, wanted: &Wanted, ctx: &Context) -> Vec<Previous> {
    let status = b.status.as_ref().and_then(|s| s.identity.as_ref());
    let mut previous: Vec<Previous> = status
        .and_then(|i| {
            Some(Previous { identity: ResourceId::parse(&i.resource_id).ok()?, managed: i.managed })
        })
        .into_iter()
        .collect();
    if let Some(group) = wanted.azure.managed_identity.as_ref().and_then(|m| m.resource_id.parent()) {
        match ctx.azure.cached().identities_owned_by(&group, &wanted.azure.owner).await {
            Ok(found) => previous
                .extend(found.into_iter().map(|i| Previous { identity: i.ids.resource_id, managed: true })),
            Err(e) => {
                let next = "the next reconcile looks again";
                tracing::warn!(error = %e, "listing the binding's identities failed; {next}");
            }
        }
    }
    previous.retain(|p| p.identity != wanted.identity);
    // One entry per identity; where status and tags disagree on who made it, the tags (Azure) win.
    previous.sort_by(|a, b| (&a.identity, !a.managed).cmp(&(&b.identity, !b.managed)));
    previous.dedup_by(|later, first| later.identity == first.identity);
    previous
}
