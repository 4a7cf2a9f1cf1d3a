//! The Kubernetes side of a binding: the ServiceAccount's annotations and the binding's status, both written
//! with server-side apply under idbind's own field manager, so idbind owns exactly the fields it sets and
//! removing them later removes nothing anyone else wrote.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

use crate::api::binding::{FIELD_MANAGER, WorkloadIdentityBinding, WorkloadIdentityBindingStatus};

/// Annotations the azure-workload-identity webhook reads.
pub const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
pub const TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";

/// Errors of the Kubernetes adapter.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("ServiceAccount {namespace}/{name} does not exist")]
    ServiceAccountNotFound { namespace: String, name: String },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

impl KubeError {
    /// Conflicts, throttling and server errors heal by retrying; a missing ServiceAccount heals when it is
    /// created (the controller watches ServiceAccounts).
    pub fn retryable(&self) -> bool {
        match self {
            KubeError::ServiceAccountNotFound { .. } => false,
            KubeError::Api(kube::Error::Api(status)) => {
                status.code == 409 || status.code == 429 || status.code >= 500
            }
            KubeError::Api(_) => true,
        }
    }
}

/// What the annotations should say; `None` removes idbind's annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotations<'a> {
    pub client_id: &'a str,
    pub tenant_id: &'a str,
}

/// Applies (or, with `None`, withdraws) idbind's annotations on an existing ServiceAccount. Returns the
/// client id the ServiceAccount carried before, so a change can be announced (pods keep the old client id
/// until they restart).
///
/// The applied object names the ServiceAccount's UID: server-side apply would otherwise create a missing
/// ServiceAccount, and idbind must never create one (the binding reports ServiceAccountNotFound until its
/// owner does).
pub async fn apply_service_account(
    client: &Client,
    namespace: &str,
    name: &str,
    annotations: Option<Annotations<'_>>,
) -> Result<Option<String>, KubeError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let Some(current) = api.get_opt(name).await? else {
        return Err(KubeError::ServiceAccountNotFound { namespace: namespace.into(), name: name.into() });
    };
    let previous = current.metadata.annotations.as_ref().and_then(|a| a.get(CLIENT_ID_ANNOTATION)).cloned();
    let wanted = match &annotations {
        Some(a) => json!({CLIENT_ID_ANNOTATION: a.client_id, TENANT_ID_ANNOTATION: a.tenant_id}),
        None => json!({}),
    };
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "uid": current.metadata.uid, "annotations": wanted},
    });
    match api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await {
        Ok(_) => Ok(previous),
        // Deleted (and maybe recreated with another UID) since the read: report it as missing; the
        // ServiceAccount watch brings the binding back when it appears.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
            Err(KubeError::ServiceAccountNotFound { namespace: namespace.into(), name: name.into() })
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a binding's status with server-side apply (full apiVersion/kind, our field manager).
pub async fn apply_status(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &WorkloadIdentityBindingStatus,
) -> Result<(), KubeError> {
    let api: Api<WorkloadIdentityBinding> = Api::namespaced(client.clone(), namespace);
    let patch = json!({
        "apiVersion": "idbind.dev/v1alpha1",
        "kind": "WorkloadIdentityBinding",
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}
