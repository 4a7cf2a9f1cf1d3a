//! Step 5, bind: the ServiceAccount carries the identity's client and tenant ids (server-side apply under
//! idbind's field manager, so only idbind's annotations are touched). When the spec moved to another
//! ServiceAccount, the one idbind annotated before loses the annotations: it would otherwise keep federating
//! pods to this identity's client id without a FIC that trusts it, which fails at token exchange in a
//! confusing way.

use kube::ResourceExt;

use super::{Context, Halt, publish};
use crate::core::reason::Reason;
use crate::{
    api::binding::{WorkloadIdentityBinding, WrittenKind, WrittenStatus},
    azure::IdentityIds,
    core::{
        desired::{self, Wanted},
        report::{Failure, Outcome, Part},
        rewrite::{self, Decision, Target},
        wiring::Wiring,
    },
    k8s::{self, Annotations, CLIENT_ID_ANNOTATION, KubeError, TENANT_ID_ANNOTATION},
};

/// Annotates the binding's ServiceAccount with `ids`: the reconcile's outcome once Azure converged. A
/// ServiceAccount already carrying them is not written; one whose annotations someone else changed again
/// after idbind set them back once is left alone ([`rewrite::decide`]).
pub async fn service_account(
    b: &WorkloadIdentityBinding,
    wanted: &Wanted,
    ids: &IdentityIds,
    ctx: &Context,
) -> Result<Outcome, Halt> {
    let ns = b.namespace().unwrap_or_default();
    let service_account = &b.spec.service_account_name;
    let before = b.status.as_ref().and_then(|s| s.service_account.as_ref());
    if let Some(previous) = before.filter(|p| *p != service_account) {
        withdraw(ctx, &ns, previous).await?;
    }
    let held = Box::new(desired::held(wanted, ids));
    match annotate(b, ids, ctx, &ns, service_account).await {
        Ok(Annotated::Done { previous_client_id, record }) => Ok(Outcome::Converged {
            held,
            service_account: service_account.clone(),
            previous_client_id,
            proof: None,
            wiring: Wiring { written: vec![record], ..Wiring::default() },
        }),
        Ok(Annotated::Contested(message)) => Ok(annotated_by_others(message)),
        Err(KubeError::ServiceAccountNotFound { .. }) => Ok(Outcome::ServiceAccountMissing {
            held,
            namespace: ns,
            service_account: service_account.clone(),
        }),
        Err(e @ KubeError::AnnotatedByOthers { .. }) => Ok(annotated_by_others(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// What became of the ServiceAccount's annotations.
enum Annotated {
    /// They carry the ids: the client id the ServiceAccount carried before, and idbind's record of its write.
    Done { previous_client_id: Option<String>, record: WrittenStatus },
    /// Another writer keeps changing them: why idbind leaves them alone.
    Contested(String),
}

/// ServiceAccount `namespace/name` made to carry `ids`, unless another writer keeps changing its annotations.
async fn annotate(
    b: &WorkloadIdentityBinding,
    ids: &IdentityIds,
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Annotated, KubeError> {
    let sa = k8s::read_service_account(&ctx.client, namespace, name).await?;
    let annotations = Annotations { client_id: &ids.client_id, tenant_id: &ids.tenant_id };
    let need = k8s::annotation_need(&sa, &annotations)?;
    let uid = sa.metadata.uid.clone().unwrap_or_default();
    let target = Target {
        kind: WrittenKind::ServiceAccount,
        name,
        uid: &uid,
        client_id: &ids.client_id,
        generation: b.metadata.generation.unwrap_or_default(),
    };
    let written = b.status.as_ref().map(|s| s.written.as_slice()).unwrap_or_default();
    let previous = rewrite::find(written, WrittenKind::ServiceAccount, name);
    let (record, repair) = match rewrite::decide(previous, &target, &need) {
        Decision::InPlace(record) => (record, false),
        Decision::Write { record, repair } => {
            k8s::annotate(&ctx.client, namespace, name, &uid, Some(annotations)).await?;
            (record, repair)
        }
        Decision::Contested { undone, by, .. } => {
            return Ok(Annotated::Contested(format!(
                "the {CLIENT_ID_ANNOTATION} and {TENANT_ID_ANNOTATION} annotations idbind set on ServiceAccount \
                 {namespace}/{name} were changed or removed again (by {by}) after idbind set them back once \
                 (changed by {undone}); another writer keeps doing so, and idbind does not fight it: stop that \
                 writer, then change the binding's spec or re-create the ServiceAccount for idbind to annotate \
                 it again"
            )));
        }
    };
    if repair {
        let change = format!(
            "ServiceAccount {name}: the annotations {CLIENT_ID_ANNOTATION} and {TENANT_ID_ANNOTATION} idbind set, \
             changed or removed by {}, set back (a second change by someone else is left alone)",
            record.undone.as_deref().unwrap_or_default()
        );
        tracing::info!(binding = %super::key(b), "{change}");
        publish::changes(b, ctx, Reason::ServiceAccountRepaired, std::iter::once(change)).await;
    }
    Ok(Annotated::Done { previous_client_id: k8s::client_id_of(&sa), record })
}

/// The binding stalls on its ServiceAccount's annotations, which someone else writes.
fn annotated_by_others(message: String) -> Outcome {
    Outcome::Stalled(Failure {
        part: Part::ServiceAccount,
        reason: Reason::ServiceAccountAnnotatedByOthers,
        message: format!("spec.serviceAccountName: {message}"),
        retry_after: None,
    })
}

/// Removes idbind's annotations from a ServiceAccount (one that is gone has none).
pub async fn withdraw(ctx: &Context, namespace: &str, service_account: &str) -> Result<(), KubeError> {
    match k8s::apply_service_account(&ctx.client, namespace, service_account, None).await {
        Ok(_) | Err(KubeError::ServiceAccountNotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
