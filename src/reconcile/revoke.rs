//! Revocation: a binding that the policies (or the ceiling) no longer allow in full loses exactly the grants
//! they no longer allow, at its next reconcile, and keeps the rest; nothing new is written for it. The
//! allowed part is [`crate::core::policy::allowed_part`]; what goes is what the planner would remove to make
//! Azure hold that part, and only that: no identity, federated credential or grant is created or changed for
//! a refused binding.

use super::{Context, Halt, context::key, gate, resolve};
use crate::core::reason::Reason;
use crate::{
    api::binding::WorkloadIdentityBinding,
    azure::{
        AzureError,
        access::{FromArm, Observation},
    },
    core::{
        desired::{self, Wanted},
        plan::{self, Action},
        report::{Failure, Held, Outcome, Part},
        validate::{DesiredBinding, Invalid},
    },
};

/// Takes back from `b` what `allowed` (the part of its spec still allowed) leaves out, and reports the
/// refusal with what it holds now.
pub async fn refused(
    b: &WorkloadIdentityBinding,
    allowed: &DesiredBinding,
    problems: Vec<Invalid>,
    ctx: &Context,
) -> Result<Outcome, Halt> {
    let (held, pending) = match take_back(b, allowed, ctx).await {
        Ok(held) => (held, None),
        Err(failure) => (None, Some(failure)),
    };
    Ok(Outcome::Refused { problems, held, pending })
}

/// For a binding deleted with `deletionPolicy: Retain`: takes back what the policies no longer allow it (what
/// a reconcile would have taken back, had it come first). Nothing when the binding is allowed in full, or
/// when nothing may be taken back ([`crate::core::policy::allowed_part`]).
pub async fn before_retaining(b: &WorkloadIdentityBinding, ctx: &Context) -> Result<(), Failure> {
    let Some(rules) = ctx.caches.policy_rules(&ctx.settings.subscription_id).await else {
        return Err(Failure {
            part: Part::RoleAssignments,
            reason: Reason::PoliciesNotListed,
            message: "the policies are not listed yet; what they no longer allow is taken back once they are"
                .into(),
            retry_after: Some(std::time::Duration::from_secs(2)),
        });
    };
    if gate::judge(b, &ctx.settings, &ctx.ceiling, &rules).is_ok() {
        return Ok(());
    }
    match gate::allowed_part(b, &ctx.settings, &ctx.ceiling, &rules) {
        Some(allowed) => take_back(b, &allowed, ctx).await.map(|_| ()),
        None => Ok(()),
    }
}

/// Removes what the binding holds beyond `allowed`; what it holds afterwards when that is exactly `allowed`
/// (`None` when Azure holds less, such as no identity yet: then the status keeps its record).
async fn take_back(
    b: &WorkloadIdentityBinding,
    allowed: &DesiredBinding,
    ctx: &Context,
) -> Result<Option<Box<Held>>, Failure> {
    let wanted = match resolve::wanted(b, allowed, ctx).await {
        Ok(wanted) => wanted,
        Err(Outcome::Transient(f) | Outcome::Stalled(f)) => return Err(f),
        Err(_) => return Ok(None),
    };
    let identity = &wanted.identity;
    // The shared lists may say there is nothing to take back; anything else is read fresh before a delete.
    if let Ok(cached) = ctx.azure.cached().observe(identity, &wanted.azure).await
        && plan::plan(&wanted.azure, &cached.azure).is_ok_and(|actions| removals(&actions).is_empty())
    {
        return Ok(None);
    }
    let failed = |part: Part| {
        move |e: AzureError| Failure {
            part,
            reason: e.reason(),
            message: e.to_string(),
            retry_after: e.retry_after(),
        }
    };
    let mut observed =
        ctx.azure.fresh().observe(identity, &wanted.azure).await.map_err(failed(Part::Identity))?;
    // Blocked (someone else's identity, or none): nothing of the binding's to take back.
    let Ok(actions) = plan::plan(&wanted.azure, &observed.azure) else {
        return Ok(None);
    };
    let removed = removals(&actions);
    for action in &removed {
        let done = ctx.azure.writes().apply(identity, &mut observed, action).await;
        // The audit trail, as for every write: what went, and why.
        if let Err(e) = &done {
            tracing::warn!(binding = %key(b), error = %e, "azure delete: {action}: failed");
        } else {
            tracing::info!(binding = %key(b), "azure delete: {action}: no policy allows it any more: done");
        }
        done.map_err(failed(action.part()))?;
    }
    let taken_back = removed.iter().map(|a| format!("{a}: no policy allows it any more"));
    super::publish::changes(b, ctx, Reason::AzureDeleted, taken_back).await;
    Ok(held_now(&wanted, observed))
}

/// The deletes among `actions`: all a refused binding may do.
fn removals(actions: &[Action]) -> Vec<Action> {
    actions.iter().filter(|a| a.takes_away()).cloned().collect()
}

/// What the binding holds once the deletes are done, when that is all of `wanted` (nothing else planned).
fn held_now(wanted: &Wanted, observed: Observation<FromArm>) -> Option<Box<Held>> {
    let rest = plan::plan(&wanted.azure, &observed.azure).ok()?;
    let ids = observed.ids?;
    rest.is_empty().then(|| Box::new(desired::held(wanted, &ids)))
}
