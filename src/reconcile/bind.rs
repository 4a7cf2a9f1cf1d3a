//! Step 5, bind: the ServiceAccount carries the identity's client and tenant ids (server-side apply under
//! idbind's field manager, so only idbind's annotations are touched). When the spec moved to another
//! ServiceAccount, the one idbind annotated before loses the annotations: it would otherwise keep federating
//! pods to this identity's client id without a FIC that trusts it, which fails at token exchange in a
//! confusing way.

use kube::ResourceExt;

use super::{Context, Halt};
use crate::{
    api::binding::WorkloadIdentityBinding,
    azure::IdentityIds,
    core::{
        desired::{self, Wanted},
        report::{Failure, Outcome, Part, SERVICE_ACCOUNT_ANNOTATED},
        wiring::Wiring,
    },
    k8s::{self, Annotations, KubeError},
};

/// Annotates the binding's ServiceAccount with `ids`: the reconcile's outcome once Azure converged.
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
    let annotations = Annotations { client_id: &ids.client_id, tenant_id: &ids.tenant_id };
    match k8s::apply_service_account(&ctx.client, &ns, service_account, Some(annotations)).await {
        Ok(previous_client_id) => Ok(Outcome::Converged {
            held,
            service_account: service_account.clone(),
            previous_client_id,
            proof: None,
            wiring: Wiring::default(),
        }),
        Err(KubeError::ServiceAccountNotFound { .. }) => Ok(Outcome::ServiceAccountMissing {
            held,
            namespace: ns,
            service_account: service_account.clone(),
        }),
        Err(e @ KubeError::AnnotatedByOthers { .. }) => Ok(Outcome::Stalled(Failure {
            part: Part::ServiceAccount,
            reason: SERVICE_ACCOUNT_ANNOTATED,
            message: format!("spec.serviceAccountName: {e}"),
            retry_after: None,
        })),
        Err(e) => Err(e.into()),
    }
}

/// Removes idbind's annotations from a ServiceAccount (one that is gone has none).
pub async fn withdraw(ctx: &Context, namespace: &str, service_account: &str) -> Result<(), KubeError> {
    match k8s::apply_service_account(&ctx.client, namespace, service_account, None).await {
        Ok(_) | Err(KubeError::ServiceAccountNotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
