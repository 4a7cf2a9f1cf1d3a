//! Step 1, the gate: whether the binding may be bound at all, and as what. The policies' cache, validation
//! against the operator's ceiling, the `WorkloadIdentityPolicy` guardrails and the claims on a ServiceAccount
//! or a brought identity. Reads only the caches, so a binding refused here causes no Azure request, with one
//! exception: a binding that may not use the identity it brings (refused, or beaten to it by an older
//! binding) takes its own federated credential off it.

use kube::ResourceExt;

use super::{Context, context::key, retire};
use crate::{
    api::binding::WorkloadIdentityBinding,
    core::{
        policy::{self, Rule},
        report::{Claimed, Outcome},
        resource_id::{ResourceId, USER_ASSIGNED_IDENTITY},
        settings::{Ceiling, OperatorSettings},
        validate::{self, DesiredBinding, Invalid},
    },
};

/// The validated binding, or the outcome that stops it here.
pub async fn admit(b: &WorkloadIdentityBinding, ctx: &Context) -> Result<DesiredBinding, Outcome> {
    let Some(rules) = ctx.caches.policy_rules(&ctx.settings.subscription_id).await else {
        tracing::info!(binding = %key(b), "policies not listed yet; retrying");
        return Err(Outcome::NotSynced);
    };
    let desired = match judge(b, &ctx.settings, &ctx.ceiling, &rules) {
        Ok(desired) => desired,
        Err(problems) => {
            let_go_of_brought_identity(b, ctx).await?;
            return Err(Outcome::Invalid(problems));
        }
    };
    if let Some(holder) = ctx.caches.service_account_holder(b) {
        let claimed = Claimed::ServiceAccount(b.spec.service_account_name.clone());
        return Err(Outcome::Conflict { claimed, holder });
    }
    // Only a binding allowed to bring the identity holds it: a refused one must not lock others out.
    if let Some(holder) =
        ctx.caches.identity_holder(b, &|other| judge(other, &ctx.settings, &ctx.ceiling, &rules).is_ok())
    {
        let_go_of_brought_identity(b, ctx).await?;
        let claimed = Claimed::Identity(desired.identity.id().to_string());
        return Err(Outcome::Conflict { claimed, holder });
    }
    Ok(desired)
}

/// The binding validated against the ceiling, then judged by the policies: the gate's verdict on the spec
/// alone (before any claim), which `idbind plan` reaches the same way.
pub fn judge(
    b: &WorkloadIdentityBinding,
    settings: &OperatorSettings,
    ceiling: &Ceiling,
    rules: &[Rule],
) -> Result<DesiredBinding, Vec<Invalid>> {
    let ns = b.namespace().unwrap_or_default();
    let desired = validate::validate(&ns, &b.name_any(), &b.spec, settings, ceiling)?;
    let problems = policy::check(&ns, &desired, rules, ceiling.require_policy);
    if problems.is_empty() { Ok(desired) } else { Err(problems) }
}

/// The binding's own federated credential goes from the identity its spec brings, if it is there: its
/// namespace must not keep exchanging tokens for an identity it may not hold, whose roles may now be another
/// binding's. Grants stay: they may be the holder's.
async fn let_go_of_brought_identity(b: &WorkloadIdentityBinding, ctx: &Context) -> Result<(), Outcome> {
    let brought = b.spec.identity.resource_id.as_deref();
    match brought.and_then(|text| ResourceId::parse_as(text, USER_ASSIGNED_IDENTITY).ok()) {
        Some(identity) => retire::withdraw_federation(b, &identity, ctx).await,
        None => Ok(()),
    }
}
