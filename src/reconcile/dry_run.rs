//! `idbind plan`: a dry run of one binding's reconcile against Azure, reading only, never writing. A new
//! identity's writes are all listed, as if the identity's PUT had succeeded.
//!
//! In two steps, so that a binding the gate refuses needs no Azure credential at all: [`admit`] (the gate's
//! judgement, pure) and [`plan_writes`] (Azure read). [`dry_run`] is both.

use kube::ResourceExt;

use super::{gate, resolve};
use crate::{
    api::binding::WorkloadIdentityBinding,
    azure::{AzureApi, access::Fresh},
    core::{
        desired::Wanted,
        plan::{self, Owner},
        policy::Rule,
        report::Outcome,
        settings::{Ceiling, OperatorSettings},
        validate::{self, DesiredBinding, Invalid},
    },
};

/// What `idbind plan` found for a binding: the Azure writes a reconcile would make now, or why it would make
/// none.
#[derive(Debug)]
pub enum DryRun {
    /// Validation, the operator's ceiling or (when they were listed) the policies refuse the spec.
    Invalid(Vec<Invalid>),
    /// Azure's state blocks the binding, or reading it failed: (reason, message).
    Blocked(String, String),
    /// The writes, in order; empty when Azure already matches.
    Writes(Vec<plan::Action>),
}

/// How many rounds of writes the dry run lists (the reconcile's own limit).
const MAX_ROUNDS: usize = 4;

/// The writes a reconcile of `b` would make now; `policies` as for [`admit`].
pub async fn dry_run(
    azure: &dyn AzureApi,
    settings: &OperatorSettings,
    ceiling: &Ceiling,
    policies: Option<&[Rule]>,
    b: &WorkloadIdentityBinding,
) -> DryRun {
    match admit(b, settings, ceiling, policies) {
        Ok(desired) => plan_writes(azure, settings, b, &desired).await,
        Err(problems) => DryRun::Invalid(problems),
    }
}

/// What the reconcile's gate would say of `b`'s spec: the operator's own [`gate::judge`] when the policies
/// are known (`Some`, every `WorkloadIdentityPolicy` as a rule, however many), or validation against the
/// ceiling alone when they could not be listed (`None`: a plan without the cluster). The claims on a
/// ServiceAccount or a brought identity, which need every other binding, are not judged here.
pub fn admit(
    b: &WorkloadIdentityBinding,
    settings: &OperatorSettings,
    ceiling: &Ceiling,
    policies: Option<&[Rule]>,
) -> Result<DesiredBinding, Vec<Invalid>> {
    match policies {
        Some(rules) => gate::judge(b, settings, ceiling, rules),
        None => {
            validate::validate(&b.namespace().unwrap_or_default(), &b.name_any(), &b.spec, settings, ceiling)
        }
    }
}

/// The writes a reconcile of `b`, admitted as `desired`, would make now, read from Azure.
pub async fn plan_writes(
    azure: &dyn AzureApi,
    settings: &OperatorSettings,
    b: &WorkloadIdentityBinding,
    desired: &DesiredBinding,
) -> DryRun {
    let ns = b.namespace().unwrap_or_default();
    let fresh = Fresh::new(azure);
    let owner =
        Owner { cluster: settings.cluster_name.clone(), namespace: ns, binding: b.name_any(), uid: b.uid() };
    match resolve::resolve(fresh, owner, desired, b.status.as_ref()).await {
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
