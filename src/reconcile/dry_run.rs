//! `idbind plan`: a dry run of one binding's reconcile against Azure, reading only, never writing. A new
//! identity's writes are all listed, as if the identity's PUT had succeeded.

use kube::ResourceExt;

use super::resolve;
use crate::{
    api::binding::WorkloadIdentityBinding,
    azure::{AzureApi, access::Fresh},
    core::{
        desired::{self, Wanted},
        plan::{self, Owner},
        report::Outcome,
        settings::{Ceiling, OperatorSettings},
        validate::{self, Invalid},
    },
};

/// What `idbind plan` found for a binding: the Azure writes a reconcile would make now, or why it would make
/// none.
#[derive(Debug)]
pub enum DryRun {
    /// Validation or the operator's ceiling refuses the spec (no policy objects are consulted).
    Invalid(Vec<Invalid>),
    /// Azure's state blocks the binding, or reading it failed: (reason, message).
    Blocked(String, String),
    /// The writes, in order; empty when Azure already matches.
    Writes(Vec<plan::Action>),
}

/// How many rounds of writes the dry run lists (the reconcile's own limit).
const MAX_ROUNDS: usize = 4;

/// The writes a reconcile of `b` would make now.
pub async fn dry_run(
    azure: &dyn AzureApi,
    settings: &OperatorSettings,
    ceiling: &Ceiling,
    b: &WorkloadIdentityBinding,
) -> DryRun {
    let ns = b.namespace().unwrap_or_default();
    let desired = match validate::validate(&ns, &b.name_any(), &b.spec, settings, ceiling) {
        Ok(d) => d,
        Err(problems) => return DryRun::Invalid(problems),
    };
    let fresh = Fresh::new(azure);
    let owner =
        Owner { cluster: settings.cluster_name.clone(), namespace: ns, binding: b.name_any(), uid: b.uid() };
    let wanted = match resolve::vault_facts(fresh, &desired).await {
        Ok(vaults) => {
            desired::azure_state(&desired, owner, &vaults, desired::held_access_policies(b.status.as_ref()))
                .map_err(Outcome::Stalled)
        }
        Err(outcome) => Err(outcome),
    };
    match wanted {
        Ok(wanted) => writes(fresh, &wanted).await,
        Err(outcome) => blocked(&outcome),
    }
}

/// Observes once, then plans round after round, assuming each write succeeded.
async fn writes(fresh: Fresh<'_>, wanted: &Wanted) -> DryRun {
    let mut observed = match fresh.observe(&wanted.identity, &wanted.azure).await {
        Ok(o) => o.azure,
        Err(e) => return DryRun::Blocked(e.reason().to_string(), e.to_string()),
    };
    let mut writes = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let actions = match plan::plan(&wanted.azure, &observed) {
            Ok(a) if a.is_empty() => break,
            Ok(a) => a,
            Err(blocked) => return DryRun::Blocked(blocked.reason().to_string(), blocked.to_string()),
        };
        for action in actions {
            plan::assume(&mut observed, &action, Some("<principal of the new identity>"));
            writes.push(action);
        }
    }
    DryRun::Writes(writes)
}

fn blocked(outcome: &Outcome) -> DryRun {
    match outcome {
        Outcome::Transient(f) | Outcome::Stalled(f) => {
            DryRun::Blocked(f.reason.to_string(), f.message.clone())
        }
        other => DryRun::Blocked("Blocked".into(), format!("{other:?}")),
    }
}
