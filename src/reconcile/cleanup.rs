//! The finalizer's cleanup: with `deletionPolicy: Delete`, everything idbind holds for the binding goes from
//! Azure (role assignments and access policies, the FIC, and identities idbind manages); with `Retain`, the
//! identity stays with the grants the policies still allow, and its federated credential goes (see
//! [`retain`]); in any case idbind's annotations go from the ServiceAccounts, and what it wrote on
//! SecretProviderClasses from them. Deletion is never refused by the policies: a spec the policy now refuses
//! must still be cleaned up.

use kube::{ResourceExt, runtime::controller::Action};

use super::{Context, ReconcileError, bind, context::key, retire, revoke, turns, wire};
use crate::core::reason::Reason;
use crate::{
    api::binding::{DeletionPolicy, WorkloadIdentityBinding},
    azure::budget::MsiOp,
    core::{
        desired,
        grants::{self, access_policies, role_assignments},
        resource_id::ResourceId,
        roles::Permissions,
        settings::Ceiling,
        validate::{self, DesiredIdentity},
    },
    k8s,
};

/// An identity the binding may hold something through.
struct Candidate {
    identity: ResourceId,
    /// Created by idbind (and deleted with the binding when its tags say it is this binding's).
    managed: bool,
    /// What the spec would have granted by access policy (for an identity idbind manages), in case the grant
    /// landed and the status write did not. On a brought identity, an entry's permissions may be someone
    /// else's, so only what the status holds goes.
    spec_policies: Vec<(ResourceId, Permissions)>,
}

/// Removes what the binding holds, then lets the finalizer go.
pub async fn cleanup(b: &WorkloadIdentityBinding, ctx: &Context) -> Result<Action, ReconcileError> {
    let (ns, name) = (b.namespace().unwrap_or_default(), b.name_any());
    if !k8s::awaits_cleanup(&ctx.client, &ns, &name, b.uid().as_deref(), super::FINALIZER).await? {
        tracing::debug!(binding = %key(b), "cleanup already done (a cached copy of a binding since deleted)");
        return Ok(Action::await_change());
    }
    // The spec as last asked for, judged against no ceiling, once: only to know what it may have made.
    let spec = permissive_validation(b, ctx);
    match b.spec.deletion_policy {
        DeletionPolicy::Delete => {
            let subscriptions = assignment_subscriptions(b, spec.as_ref());
            for candidate in candidates(b, spec.as_ref(), ctx).await? {
                remove(b, ctx, candidate, &subscriptions).await?;
            }
        }
        DeletionPolicy::Retain => retain(b, spec.as_ref(), ctx).await?,
    }
    // The annotations go from the ServiceAccount the spec names and the one idbind last annotated, if that
    // was another.
    let previous = b.status.as_ref().and_then(|s| s.service_account.clone());
    bind::withdraw(ctx, &ns, &b.spec.service_account_name).await?;
    if let Some(previous) = previous.filter(|p| *p != b.spec.service_account_name) {
        bind::withdraw(ctx, &ns, &previous).await?;
    }
    // What idbind wrote on SecretProviderClasses goes too; the export ConfigMap, owned by the binding, goes
    // with it (the garbage collector).
    wire::release_all(b, ctx).await?;
    ctx.succeeded(&key(b));
    let kept = match b.spec.deletion_policy {
        DeletionPolicy::Delete => "what it held in Azure removed",
        DeletionPolicy::Retain => {
            "deletionPolicy Retain: its identity and the grants the policies allow kept in Azure, its federated \
             credential removed"
        }
    };
    tracing::info!(binding = %key(b), "binding deleted: {kept}; ServiceAccount annotations removed");
    Ok(Action::await_change())
}

/// `deletionPolicy: Retain` keeps the identity (its client id stays what other systems may know, and an
/// administrator may list it for bringing again) with the grants the policies still allow. It never keeps:
/// - the binding's federated credential: it trusts a ServiceAccount name in a namespace, and once the binding
///   is gone nothing stops that namespace from being deleted and created again by another team, whose
///   ServiceAccount of that name would then get the identity's tokens;
/// - a grant no policy allows any more ([`revoke::before_retaining`]): a deletion must not be the way to keep
///   what an administrator took back.
async fn retain(
    b: &WorkloadIdentityBinding,
    spec: Option<&validate::DesiredBinding>,
    ctx: &Context,
) -> Result<(), ReconcileError> {
    revoke::before_retaining(b, ctx).await.map_err(ReconcileError::Cleanup)?;
    let held = b
        .status
        .as_ref()
        .and_then(|s| s.identity.as_ref())
        .and_then(|i| ResourceId::parse(&i.resource_id).ok());
    let mut identities: Vec<ResourceId> = held.into_iter().collect();
    if let Some(wanted) = spec.map(|d| d.identity.id()).filter(|id| !identities.contains(id)) {
        identities.push(wanted.clone());
    }
    for identity in identities {
        retire::withdraw_federation(b, &identity, ctx).await?;
    }
    Ok(())
}

/// The identities to clean: what the status says the binding holds, what the spec derives (a crash after the
/// identity's PUT and before the status write leaves only that), and identities tagged as this binding's in
/// that resource group (a rename that raced the status write).
async fn candidates(
    b: &WorkloadIdentityBinding,
    spec: Option<&validate::DesiredBinding>,
    ctx: &Context,
) -> Result<Vec<Candidate>, ReconcileError> {
    let mut candidates: Vec<Candidate> = Vec::new();
    if let Some(held) = b.status.as_ref().and_then(|s| s.identity.as_ref())
        && let Ok(identity) = ResourceId::parse(&held.resource_id)
    {
        candidates.push(Candidate { identity, managed: held.managed, spec_policies: Vec::new() });
    }
    let Some(d) = spec else {
        return Ok(candidates);
    };
    let managed = matches!(d.identity, DesiredIdentity::Managed { .. });
    if let DesiredIdentity::Managed { id, .. } = &d.identity
        && let Some(group) = id.parent()
    {
        for found in ctx.azure.cached().identities_owned_by(&group, &ctx.owner(b)).await? {
            if !candidates.iter().any(|c| c.identity == found.ids.resource_id) {
                candidates.push(Candidate {
                    identity: found.ids.resource_id,
                    managed: true,
                    spec_policies: Vec::new(),
                });
            }
        }
    }
    let spec_policies = if managed { desired::access_policies_of_spec(d) } else { Vec::new() };
    match candidates.iter_mut().find(|c| c.identity == *d.identity.id()) {
        Some(c) => c.spec_policies = spec_policies,
        None => candidates.push(Candidate { identity: d.identity.id().clone(), managed, spec_policies }),
    }
    Ok(candidates)
}

/// The spec as the binding last asked for it, judged against no ceiling: only to know what it may have made.
fn permissive_validation(b: &WorkloadIdentityBinding, ctx: &Context) -> Option<validate::DesiredBinding> {
    let anything = Ceiling {
        allow_any_role: true,
        allow_other_subscriptions: true,
        allow_existing_identity: true,
        open_namespaces: true,
    };
    validate::validate(&b.namespace().unwrap_or_default(), &b.name_any(), &b.spec, &ctx.settings, &anything)
        .ok()
}

/// Where the binding may hold role assignments beyond the identity's subscription: the subscriptions its
/// status records and those its spec names (an assignment may have landed before the status write).
fn assignment_subscriptions(
    b: &WorkloadIdentityBinding,
    spec: Option<&validate::DesiredBinding>,
) -> Vec<String> {
    let asked =
        spec.into_iter().flat_map(|d| d.vaults.iter().chain(&d.scopes)).map(|g| g.resource_id.clone());
    desired::subscriptions_of(role_assignments::held_scopes(b.status.as_ref()).chain(asked))
}

/// Removes what the binding holds through one identity. An identity idbind may delete waits for its turn
/// first: a namespace of 1,000 bindings deleted at once must not take every worker for minutes.
async fn remove(
    b: &WorkloadIdentityBinding,
    ctx: &Context,
    candidate: Candidate,
    assignment_subscriptions: &[String],
) -> Result<(), ReconcileError> {
    let Candidate { identity, managed, spec_policies } = candidate;
    let grants = grants::Desired {
        role_assignments: role_assignments::Desired::letting_go(assignment_subscriptions.to_vec()),
        access_policies: access_policies::Desired::letting_go(
            spec_policies,
            access_policies::held(b.status.as_ref()),
        ),
    };
    let release = ctx.release(b, identity.clone(), managed, grants);
    if managed && let Err(wait) = turns::take(ctx, &key(b), MsiOp::Delete, &identity).await {
        return Err(ReconcileError::AwaitingTurn(wait));
    }
    let shared = ctx.caches.brought_by_others(b, &identity);
    let removed = async {
        let observed = ctx.azure.fresh().observe(&identity, &release).await?;
        ctx.azure.writes().remove(&release, &observed, shared).await
    };
    match removed.await {
        Ok(deleted) => {
            // One line and one Event per delete: the audit trail of what a binding's removal took out of
            // Azure.
            for id in &deleted {
                tracing::info!(binding = %key(b), "azure delete: {id}: done");
            }
            super::publish::changes(
                b,
                ctx,
                Reason::AzureDeleted,
                deleted.into_iter().map(|id| format!("deleted {id}")),
            )
            .await;
            Ok(())
        }
        Err(e) => {
            tracing::warn!(binding = %key(b), error = %e, identity = %identity, "azure delete failed; retrying");
            Err(e.into())
        }
    }
}
