//! Step 3, converge: make Azure hold what the binding wants. Steady state is decided from the shared lists
//! (about one read per binding per resync); anything to do is read again fresh, planned
//! ([`crate::core::plan`]) and written, round after round, each planned from what the previous writes made
//! true rather than from another read.

use super::{Context, azure_failure, turns};
use crate::core::reason::Reason;
use crate::{
    azure::{
        AzureError, IdentityIds,
        access::{FromArm, Observation},
        budget::MsiOp,
    },
    core::{
        desired::Wanted,
        plan::{self, Action, Blocked},
        report::{Failure, Outcome, Part},
        resource_id::ResourceId,
    },
};

/// How many plan/write rounds one reconcile makes (identity first, then what needs its principal); more means
/// Azure changes under us, and the next reconcile continues.
const MAX_ROUNDS: usize = 4;

/// The identity's ids once Azure holds what `wanted` asks for, or the outcome that stops the binding here.
/// `holder` names the binding at the request budget. Also the writes made, for their Events (a write is a
/// change a user made happen, and is told so).
pub async fn converge(
    ctx: &Context,
    holder: &str,
    wanted: &Wanted,
) -> Result<(IdentityIds, Vec<Action>), Outcome> {
    if let Some(ids) = nothing_to_do(ctx, holder, wanted).await? {
        return Ok((ids, Vec::new()));
    }
    // Something to do (or to report): read Azure directly before any write, so a list up to a resync old can
    // never make idbind write over what changed since.
    let identity = &wanted.identity;
    let mut observed = ctx
        .azure
        .fresh()
        .observe(identity, &wanted.azure)
        .await
        .map_err(|e| azure_failure(Part::Identity, &e))?;
    let mut written = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let actions = plan::plan(&wanted.azure, &observed.azure).map_err(blocked)?;
        if actions.is_empty() {
            return Ok((ids(identity, observed), written));
        }
        for action in &actions {
            // One line per write, with its result: the audit trail of what idbind did in Azure (the
            // reconcile's span names the binding).
            let written_now = ctx.azure.writes().apply(identity, &mut observed, action).await;
            match &written_now {
                Ok(()) => tracing::info!(binding = holder, "azure write: {action}: done"),
                Err(e) => tracing::warn!(binding = holder, error = %e, "azure write: {action}: failed"),
            }
            if let Err(e) = &written_now
                && let Some(deferred) = refused_create(ctx, holder, action, e).await
            {
                return Err(deferred);
            }
            written_now.map_err(|e| azure_failure(action.part(), &e))?;
            written.push(action.clone());
        }
    }
    Err(Outcome::Transient(Failure {
        part: Part::Identity,
        reason: Reason::StillConverging,
        message: "Azure did not settle within one reconcile; continuing".into(),
        retry_after: Some(std::time::Duration::from_secs(1)),
    }))
}

/// Steady state, from the shared lists: the identity's ids when they say nothing needs doing, `None` when
/// something does. An identity to create or update first waits for its turn at the managed-identity API's
/// budget, or the binding comes back when it is due.
async fn nothing_to_do(ctx: &Context, holder: &str, wanted: &Wanted) -> Result<Option<IdentityIds>, Outcome> {
    let identity = &wanted.identity;
    let Ok(cached) = ctx.azure.cached().observe(identity, &wanted.azure).await else {
        return Ok(None);
    };
    let Ok(actions) = plan::plan(&wanted.azure, &cached.azure) else {
        return Ok(None);
    };
    if actions.is_empty() {
        return Ok(Some(cached.ids.unwrap_or_else(|| unknown_ids(identity))));
    }
    if let Some(Action::PutIdentity { resource_id, .. }) =
        actions.iter().find(|a| matches!(a, Action::PutIdentity { .. }))
    {
        turns::take(ctx, holder, MsiOp::CreateOrUpdate, resource_id).await.map_err(|wait| Outcome::Deferred {
            part: Part::Identity,
            message: format!(
                "waiting its turn at the managed-identity API's request limit (other identities are being \
                 created first); identity {resource_id} is due in about {} s",
                wait.as_secs()
            ),
            wait,
        })?;
    }
    Ok(None)
}

/// A create of the identity that Azure refused with 429 although the budget admitted it: the binding comes
/// back at its next turn ([`turns::after_refusal`]), waiting as it waits for any turn.
async fn refused_create(ctx: &Context, holder: &str, action: &Action, e: &AzureError) -> Option<Outcome> {
    let Action::PutIdentity { resource_id, .. } = action else {
        return None;
    };
    if e.reason() != Reason::Throttled {
        return None;
    }
    let wait = turns::after_refusal(ctx, holder, MsiOp::CreateOrUpdate, resource_id).await?;
    Some(Outcome::Deferred {
        part: Part::Identity,
        message: format!(
            "the managed-identity API refused to create identity {resource_id} for now (429: others, such as \
             other clusters in the subscription, spend the same limit); due again in about {} s",
            wait.as_secs()
        ),
        wait: wait.max(turns::WAIT_LIMIT),
    })
}

fn ids(identity: &ResourceId, observed: Observation<FromArm>) -> IdentityIds {
    observed.ids.unwrap_or_else(|| unknown_ids(identity))
}

/// The ids of an identity Azure did not describe (never the case once it exists): the status still names it.
fn unknown_ids(identity: &ResourceId) -> IdentityIds {
    IdentityIds {
        resource_id: identity.clone(),
        client_id: String::new(),
        principal_id: String::new(),
        tenant_id: String::new(),
    }
}

/// Azure's state blocks the binding: someone has to change something.
fn blocked(b: Blocked) -> Outcome {
    Outcome::Stalled(Failure {
        part: b.part(),
        reason: b.reason(),
        message: b.to_string(),
        retry_after: None,
    })
}
