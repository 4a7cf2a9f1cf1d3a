//! Step 1, the gate: whether the binding may be bound at all, and as what. The policies' cache, validation
//! against the operator's ceiling, the `WorkloadIdentityPolicy` guardrails and the ServiceAccount claim.
//! Reads only the caches: a binding refused here causes no Azure request.

use kube::ResourceExt;

use super::{Context, context::key};
use crate::{
    api::binding::WorkloadIdentityBinding,
    core::{
        policy,
        report::Outcome,
        validate::{self, DesiredBinding},
    },
};

/// The validated binding, or the outcome that stops it here.
pub async fn admit(b: &WorkloadIdentityBinding, ctx: &Context) -> Result<DesiredBinding, Outcome> {
    let Some(rules) = ctx.caches.policy_rules(&ctx.settings.subscription_id).await else {
        tracing::info!(binding = %key(b), "policies not listed yet; retrying");
        return Err(Outcome::NotSynced);
    };
    let ns = b.namespace().unwrap_or_default();
    let desired = validate::validate(&ns, &b.name_any(), &b.spec, &ctx.settings, &ctx.ceiling)
        .and_then(|d| {
            let problems = policy::check(&ns, &d, &rules, ctx.ceiling.require_policy);
            if problems.is_empty() { Ok(d) } else { Err(problems) }
        })
        .map_err(Outcome::Invalid)?;
    if let Some(holder) = ctx.caches.service_account_holder(b) {
        return Err(Outcome::Conflict { service_account: b.spec.service_account_name.clone(), holder });
    }
    Ok(desired)
}
