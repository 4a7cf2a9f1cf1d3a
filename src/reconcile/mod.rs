//! The reconcile of one binding, as a pipeline of named steps, one module each:
//!
//! 1. [`gate`]: policies, validation against the operator's ceiling, guardrails, the claims on a
//!    ServiceAccount or a brought identity; a binding the policies now refuse in part goes to [`revoke`],
//!    which takes back what they no longer allow;
//! 2. [`resolve`]: the Azure state the binding wants (vaults looked at, role names resolved);
//! 3. [`converge`]: Azure made to hold it (steady state decided from the shared lists, writes planned from
//!    fresh reads);
//! 4. [`retire`]: identities the binding no longer uses removed;
//! 5. [`bind`]: the ServiceAccount annotated;
//! 6. [`wire`]: the SecretProviderClasses the binding names carry the identity's ids, and its export
//!    ConfigMap;
//! 7. [`verify`]: with verification on, proof that the workload's token exchanges and opens its vaults;
//!
//! and then [`crate::core::report::report`] turns the [`Outcome`] (the pipeline's end, or the step that
//! stopped it) into the status, the Event and the requeue, which [`publish`] writes. The finalizer's
//! [`cleanup`] and the dry run ([`dry_run`]) reuse the steps they need. Errors never escape as retry storms:
//! an Azure failure is an outcome like any other; only a failed Kubernetes write leaves as a
//! [`ReconcileError`] for kube-runtime's backoff.

pub mod bind;
pub mod cleanup;
pub mod context;
pub mod converge;
pub mod dry_run;
pub mod failpoint;
pub mod gate;
pub mod publish;
pub mod resolve;
pub mod retire;
pub mod revoke;
pub mod turns;
pub mod verify;
pub mod wire;

use std::time::Duration;

use crate::core::reason::Reason;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::runtime::controller::Action;

pub use self::{
    context::{CacheWriters, Caches, Context, caches, key},
    dry_run::{DryRun, dry_run},
};
use crate::{
    api::binding::WorkloadIdentityBinding,
    azure::AzureError,
    core::report::{self, Failure, Outcome, Part},
    k8s::KubeError,
};

/// The finalizer idbind puts on bindings before its first Azure write.
pub const FINALIZER: &str = "idbind.dev/cleanup";

/// Errors that leave a reconcile (everything else is an [`Outcome`], which becomes status).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(transparent)]
    Azure(#[from] AzureError),
    /// Adding or removing the finalizer failed (kube-runtime's finalizer helper).
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// A step of the cleanup stopped for a reason of its own, which the metrics keep.
    #[error("{}", .0.message)]
    Cleanup(Failure),
    /// Not a failure: the cleanup waits for its turn at the request budget.
    #[error("waiting {0:?} for a turn at the managed-identity API's request limit")]
    AwaitingTurn(Duration),
}

impl ReconcileError {
    /// The metric label: Azure's category, or where the Kubernetes side failed.
    pub fn category(&self) -> Reason {
        match self {
            ReconcileError::Kube(_) => Reason::KubernetesApiError,
            ReconcileError::Azure(e) => e.reason(),
            ReconcileError::Finalizer(_) => Reason::FinalizerFailed,
            ReconcileError::Cleanup(f) => f.reason,
            ReconcileError::AwaitingTurn(_) => Reason::AwaitingRequestBudget,
        }
    }
}

/// Why the pipeline stopped before its end: an outcome to report, or an error for kube-runtime's backoff.
pub enum Halt {
    Report(Outcome),
    Fail(ReconcileError),
}

impl From<Outcome> for Halt {
    fn from(outcome: Outcome) -> Self {
        Halt::Report(outcome)
    }
}

impl From<KubeError> for Halt {
    fn from(e: KubeError) -> Self {
        Halt::Fail(e.into())
    }
}

/// A finished reconcile: when to come back, and the outcome's metric result and category.
pub struct Reconciled {
    pub action: Action,
    pub result: (&'static str, Option<Reason>),
}

/// Reconciles `b`: the pipeline, then its outcome reported.
pub async fn apply(b: &WorkloadIdentityBinding, ctx: &Context) -> Result<Reconciled, ReconcileError> {
    let mut admitted_by = None;
    let outcome = match pipeline(b, ctx, &mut admitted_by).await {
        Ok(outcome) | Err(Halt::Report(outcome)) => outcome,
        Err(Halt::Fail(e)) => return Err(e),
    };
    let now = Time(Timestamp::now());
    let report = report::report_admitted(
        b.status.as_ref(),
        &outcome,
        admitted_by.as_deref(),
        b.metadata.generation,
        &now,
    );
    if let Outcome::Transient(f) = &outcome
        && report.status == b.status.clone().unwrap_or_default()
    {
        tracing::info!(binding = %key(b), reason = %f.reason, message = %f.message, "transient failure; retrying");
    }
    publish::publish(b, ctx, &report).await?;
    Ok(Reconciled { action: ctx.action(&key(b), report.requeue), result: outcome.result() })
}

/// The steps, in order; each either hands the next its input or ends the reconcile with an outcome.
/// `admitted_by` gets the policies the gate let the binding through by, for the status's record.
async fn pipeline(
    b: &WorkloadIdentityBinding,
    ctx: &Context,
    admitted_by: &mut Option<Vec<String>>,
) -> Result<Outcome, Halt> {
    let desired = match gate::admit(b, ctx).await? {
        gate::Admitted::Whole { desired, by } => {
            *admitted_by = Some(by);
            desired
        }
        gate::Admitted::Narrowed { allowed, problems } => {
            return revoke::refused(b, &allowed, problems, ctx).await;
        }
    };
    let wanted = resolve::wanted(b, &desired, ctx).await?;
    let (ids, written) = converge::converge(ctx, &key(b), &wanted).await?;
    publish::changes(b, ctx, Reason::AzureUpdated, written.iter().map(ToString::to_string)).await;
    retire::previous_identities(b, &wanted, ctx).await?;
    let bound = bind::service_account(b, &wanted, &ids, ctx).await?;
    let wired = wire::classes_and_export(b, &ids, bound, ctx).await?;
    verify::prove(b, &wanted, &ids, wired, ctx).await
}

/// A failed Azure call of `part`: transient when trying again may succeed (the classification is
/// [`AzureError::retryable`]'s, the one place that decides), stalled otherwise.
pub fn azure_failure(part: Part, e: &AzureError) -> Outcome {
    let failure = Failure { part, reason: e.reason(), message: e.to_string(), retry_after: e.retry_after() };
    if e.retryable() { Outcome::Transient(failure) } else { Outcome::Stalled(failure) }
}
