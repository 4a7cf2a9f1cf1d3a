//! Step 1, the gate: whether the binding may be bound at all, and as what. The policies' cache, validation
//! against the operator's ceiling, the `WorkloadIdentityPolicy` guardrails and the claims on a ServiceAccount
//! or a brought identity. A binding refused only for grants the policies no longer allow, in a namespace an
//! administrator has said something about, is let through narrowed to what they still allow, so that the rest
//! is taken back. Reads only the caches, so a binding refused here causes no Azure request, with one
//! exception: a binding that may not use the identity it brings (refused, or beaten to it by an older
//! binding) takes its own federated credential off it.

use kube::ResourceExt;

use super::{Context, azure_failure, context::key, retire};
use crate::{
    api::binding::WorkloadIdentityBinding,
    core::{
        policy::{self, Rule},
        report::{Claimed, Outcome, Part},
        resource_id::{ResourceId, USER_ASSIGNED_IDENTITY},
        settings::{Ceiling, OperatorSettings},
        validate::{self, DesiredBinding, Invalid},
    },
};

/// What the gate lets through.
pub enum Admitted {
    /// The binding as its spec asks, let through by the policies `by` (names; empty in an open namespace).
    Whole { desired: DesiredBinding, by: Vec<String> },
    /// Refused in part by policies an administrator narrowed (`problems`): only `allowed` may stay, and what
    /// the binding holds beyond it is taken back ([`super::revoke`]).
    Narrowed { allowed: DesiredBinding, problems: Vec<Invalid> },
}

/// The validated binding, or the outcome that stops it here.
pub async fn admit(b: &WorkloadIdentityBinding, ctx: &Context) -> Result<Admitted, Outcome> {
    let Some(rules) = ctx.caches.policy_rules(&ctx.settings.subscription_id).await else {
        tracing::info!(binding = %key(b), "policies not listed yet; retrying");
        return Err(Outcome::NotSynced);
    };
    let (desired, admitted) = match judge(b, &ctx.settings, &ctx.ceiling, &rules) {
        Ok(desired) => {
            let by = policy::selecting(&b.namespace().unwrap_or_default(), &rules);
            (desired.clone(), Admitted::Whole { desired, by })
        }
        Err(problems) => match allowed_part(b, &ctx.settings, &ctx.ceiling, &rules) {
            Some(allowed) => (allowed.clone(), Admitted::Narrowed { allowed, problems }),
            None => {
                let_go_of_brought_identity(b, ctx).await?;
                return Err(Outcome::Invalid(problems));
            }
        },
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
    Ok(admitted)
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
    let problems = policy::check(&ns, &desired, rules, ceiling);
    if problems.is_empty() { Ok(desired) } else { Err(problems) }
}

/// The part of a refused binding's spec that may stay ([`policy::allowed_part`]).
pub fn allowed_part(
    b: &WorkloadIdentityBinding,
    settings: &OperatorSettings,
    ceiling: &Ceiling,
    rules: &[Rule],
) -> Option<DesiredBinding> {
    let ns = b.namespace().unwrap_or_default();
    let once_selected = b.status.as_ref().is_some_and(|s| !s.admitted_by.is_empty());
    policy::allowed_part(&ns, &b.name_any(), &b.spec, settings, ceiling, rules, once_selected)
}

/// The binding's own federated credential goes from the identity its spec brings, if it is there: its
/// namespace must not keep exchanging tokens for an identity it may not hold, whose roles may now be another
/// binding's. Grants stay: they may be the holder's.
async fn let_go_of_brought_identity(b: &WorkloadIdentityBinding, ctx: &Context) -> Result<(), Outcome> {
    let brought = b.spec.identity.resource_id.as_deref();
    match brought.and_then(|text| ResourceId::parse_as(text, USER_ASSIGNED_IDENTITY).ok()) {
        Some(identity) => retire::withdraw_federation(b, &identity, ctx)
            .await
            .map_err(|e| azure_failure(Part::Identity, &e)),
        None => Ok(()),
    }
}
