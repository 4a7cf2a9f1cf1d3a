//! The Kubernetes side of a binding: the ServiceAccount's annotations and the binding's status, both written
//! with server-side apply under idbind's own field manager, so idbind owns exactly the fields it sets and
//! removing them later removes nothing anyone else wrote; the SecretProviderClasses it names
//! ([`secret_provider_class`]) and the ConfigMap it exports to ([`export`]), each under a field manager of
//! its own.

pub mod events;
pub mod export;
pub mod secret_provider_class;

use k8s_openapi::api::{
    authentication::v1::{TokenRequest, TokenRequestSpec},
    core::v1::ServiceAccount,
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::{
    api::binding::{FIELD_MANAGER, WorkloadIdentityBinding, WorkloadIdentityBindingStatus},
    core::rewrite::Need,
};

/// Annotations the azure-workload-identity webhook reads.
pub const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
pub const TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";

/// Errors of the Kubernetes adapter.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("ServiceAccount {namespace}/{name} does not exist")]
    ServiceAccountNotFound { namespace: String, name: String },
    #[error(
        "the {annotation} annotation of ServiceAccount {namespace}/{name} was set by {managers}, not by idbind; \
         idbind never overwrites an annotation someone else wrote (it may be another identity's, or the \
         operator's own): remove it (kubectl annotate serviceaccount -n {namespace} {name} {annotation}-) for \
         idbind to set it, or bind another ServiceAccount"
    )]
    AnnotatedByOthers { namespace: String, name: String, annotation: &'static str, managers: String },
    /// The API server stopped serving SecretProviderClasses (the CSI driver's CRD was deleted).
    #[error("the cluster does not serve SecretProviderClasses (secrets-store.csi.x-k8s.io)")]
    ClassesUnavailable,
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

impl KubeError {
    /// Conflicts, throttling and server errors heal by retrying; a missing ServiceAccount heals when it is
    /// created (the controller watches ServiceAccounts).
    pub fn retryable(&self) -> bool {
        match self {
            KubeError::ServiceAccountNotFound { .. }
            | KubeError::AnnotatedByOthers { .. }
            | KubeError::ClassesUnavailable => false,
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
    let current = read_service_account(client, namespace, name).await?;
    if annotations.is_some() {
        refuse_others_annotations(&current)?;
    }
    let uid = current.metadata.uid.clone().unwrap_or_default();
    annotate(client, namespace, name, &uid, annotations).await?;
    Ok(client_id_of(&current))
}

/// ServiceAccount `namespace/name`, or [`KubeError::ServiceAccountNotFound`].
pub async fn read_service_account(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<ServiceAccount, KubeError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name)
        .await?
        .ok_or_else(|| KubeError::ServiceAccountNotFound { namespace: namespace.into(), name: name.into() })
}

/// The client id annotation a ServiceAccount carries.
pub fn client_id_of(sa: &ServiceAccount) -> Option<String> {
    sa.metadata.annotations.as_ref().and_then(|a| a.get(CLIENT_ID_ANNOTATION)).cloned()
}

/// What ServiceAccount `sa` needs to carry `wanted`: refused ([`KubeError::AnnotatedByOthers`]) when one of
/// idbind's annotations there was written by someone else; nothing when both are right; else the values, with
/// the writers of a wrong one (none when they were removed: whoever removes a field keeps no record).
pub fn annotation_need(sa: &ServiceAccount, wanted: &Annotations<'_>) -> Result<Need, KubeError> {
    refuse_others_annotations(sa)?;
    let annotations = sa.metadata.annotations.clone().unwrap_or_default();
    let pairs = [(CLIENT_ID_ANNOTATION, wanted.client_id), (TENANT_ID_ANNOTATION, wanted.tenant_id)];
    let wrong: Vec<&str> = pairs
        .iter()
        .filter(|(a, v)| annotations.get(*a).map(String::as_str) != Some(*v))
        .map(|(a, _)| *a)
        .collect();
    if wrong.is_empty() {
        return Ok(Need::Nothing);
    }
    let mut by: Vec<String> =
        wrong.iter().flat_map(|a| annotation_managers(sa, a)).filter(|m| m != FIELD_MANAGER).collect();
    by.sort();
    by.dedup();
    Ok(Need::Values { by })
}

/// Applies (or, with `None`, withdraws) idbind's annotations on ServiceAccount `namespace/name` of UID `uid`,
/// by server-side apply under idbind's field manager.
pub async fn annotate(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: &str,
    annotations: Option<Annotations<'_>>,
) -> Result<(), KubeError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let wanted = match &annotations {
        Some(a) => json!({CLIENT_ID_ANNOTATION: a.client_id, TENANT_ID_ANNOTATION: a.tenant_id}),
        None => json!({}),
    };
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "uid": uid, "annotations": wanted},
    });
    match api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await {
        Ok(_) => Ok(()),
        // Deleted (and maybe recreated with another UID) since the read: report it as missing; the
        // ServiceAccount watch brings the binding back when it appears.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
            Err(KubeError::ServiceAccountNotFound { namespace: namespace.into(), name: name.into() })
        }
        Err(e) => Err(e.into()),
    }
}

/// A short-lived token of ServiceAccount `namespace/name` for `audience` (the TokenRequest API, as the
/// kubelet gets a pod's projected token). Used only to prove federation; never logged or stored.
pub async fn service_account_token(
    client: &Client,
    namespace: &str,
    name: &str,
    audience: &str,
    expiration_seconds: i64,
) -> Result<String, KubeError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_string()]),
            expiration_seconds: Some(expiration_seconds),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    match api.create_token_request(name, &PostParams::default(), &request).await {
        Ok(answer) => Ok(answer.status.and_then(|s| s.token).unwrap_or_default()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            Err(KubeError::ServiceAccountNotFound { namespace: namespace.into(), name: name.into() })
        }
        Err(e) => Err(e.into()),
    }
}

/// Refuses a ServiceAccount that carries one of idbind's annotations written by anyone but idbind: applying
/// with `force` would take it over. (Withdrawing applies no annotation, so it can remove only idbind's own.)
fn refuse_others_annotations(sa: &ServiceAccount) -> Result<(), KubeError> {
    let annotations = sa.metadata.annotations.as_ref();
    for annotation in [CLIENT_ID_ANNOTATION, TENANT_ID_ANNOTATION] {
        if !annotations.is_some_and(|a| a.contains_key(annotation)) {
            continue;
        }
        let managers = annotation_managers(sa, annotation);
        if !managers.iter().any(|m| m == FIELD_MANAGER) {
            let managers =
                if managers.is_empty() { "an unknown writer".to_string() } else { managers.join(", ") };
            return Err(KubeError::AnnotatedByOthers {
                namespace: sa.metadata.namespace.clone().unwrap_or_default(),
                name: sa.metadata.name.clone().unwrap_or_default(),
                annotation,
                managers,
            });
        }
    }
    Ok(())
}

/// The field managers that own `annotation` of an object, from its `managedFields`.
fn annotation_managers(sa: &ServiceAccount, annotation: &str) -> Vec<String> {
    let field = format!("f:{annotation}");
    let entries = sa.metadata.managed_fields.iter().flatten();
    entries
        .filter(|e| {
            e.fields_v1.as_ref().is_some_and(|f| f.0["f:metadata"]["f:annotations"].get(&field).is_some())
        })
        .filter_map(|e| e.manager.clone())
        .collect()
}

/// Whether the binding is still waiting for a cleanup: it exists under `uid` and carries `finalizer`. A
/// cleanup started from a cached copy after an earlier one finished (an event of the ServiceAccount it just
/// released, arriving before the watch saw the finalizer go) finds it gone.
pub async fn awaits_cleanup(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    finalizer: &str,
) -> Result<bool, KubeError> {
    let api: Api<WorkloadIdentityBinding> = Api::namespaced(client.clone(), namespace);
    let now = api.get_opt(name).await?;
    Ok(now.is_some_and(|b| b.metadata.uid.as_deref() == uid && b.finalizers().iter().any(|f| f == finalizer)))
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

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};

    use super::*;

    fn sa(annotations: &[&str], managers: &[(&str, &[&str])]) -> ServiceAccount {
        let entry = |(manager, owned): &(&str, &[&str])| {
            let owned: serde_json::Map<String, serde_json::Value> =
                owned.iter().map(|a| (format!("f:{a}"), json!({}))).collect();
            ManagedFieldsEntry {
                manager: Some(manager.to_string()),
                fields_v1: Some(FieldsV1(json!({"f:metadata": {"f:annotations": owned}}))),
                ..Default::default()
            }
        };
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some("app".into()),
                namespace: Some("shop".into()),
                annotations: Some(annotations.iter().map(|a| (a.to_string(), "x".to_string())).collect()),
                managed_fields: Some(managers.iter().map(entry).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_annotations_need_a_write_only_when_wrong_or_gone() {
        let both = [CLIENT_ID_ANNOTATION, TENANT_ID_ANNOTATION];
        let wanted = Annotations { client_id: "x", tenant_id: "x" };
        let other = Annotations { client_id: "c2", tenant_id: "x" };
        let table: Vec<(&str, ServiceAccount, &Annotations<'_>, Need)> = vec![
            ("none yet, or removed", sa(&[], &[]), &wanted, Need::Values { by: vec![] }),
            ("idbind's, right", sa(&both, &[(FIELD_MANAGER, &both)]), &wanted, Need::Nothing),
            (
                "idbind's, a new client id",
                sa(&both, &[(FIELD_MANAGER, &both)]),
                &other,
                Need::Values { by: vec![] },
            ),
            (
                "one removed",
                sa(&[TENANT_ID_ANNOTATION], &[(FIELD_MANAGER, &[TENANT_ID_ANNOTATION])]),
                &wanted,
                Need::Values { by: vec![] },
            ),
        ];
        for (case, sa, wanted, want) in table {
            assert_eq!(annotation_need(&sa, wanted).ok(), Some(want), "{case}");
        }
        let by_hand = sa(&[CLIENT_ID_ANNOTATION], &[("kubectl-annotate", &[CLIENT_ID_ANNOTATION])]);
        assert!(matches!(annotation_need(&by_hand, &wanted), Err(KubeError::AnnotatedByOthers { .. })));
    }

    #[test]
    fn only_annotations_idbind_wrote_are_taken_over() {
        let both = [CLIENT_ID_ANNOTATION, TENANT_ID_ANNOTATION];
        let table: Vec<(&str, ServiceAccount, Result<(), &str>)> = vec![
            ("no annotations", sa(&[], &[]), Ok(())),
            ("idbind's own", sa(&both, &[(FIELD_MANAGER, &both)]), Ok(())),
            (
                "idbind's and a GitOps tool's, same value",
                sa(&both, &[("argocd", &both), (FIELD_MANAGER, &both)]),
                Ok(()),
            ),
            (
                "annotated by hand",
                sa(&[CLIENT_ID_ANNOTATION], &[("kubectl-annotate", &[CLIENT_ID_ANNOTATION])]),
                Err("kubectl-annotate"),
            ),
            (
                "tenant id by hand",
                sa(&[TENANT_ID_ANNOTATION], &[("kubectl-annotate", &[TENANT_ID_ANNOTATION])]),
                Err("kubectl-annotate"),
            ),
            ("no record of the writer", sa(&[CLIENT_ID_ANNOTATION], &[]), Err("an unknown writer")),
            ("another annotation by hand", sa(&["team"], &[("kubectl-annotate", &["team"])]), Ok(())),
        ];
        for (case, sa, want) in table {
            let got = refuse_others_annotations(&sa).map_err(|e| match e {
                KubeError::AnnotatedByOthers { managers, .. } => managers,
                other => other.to_string(),
            });
            assert_eq!(got.as_ref().map_err(String::as_str), want.as_ref().map_err(|m| *m), "{case}");
        }
    }
}
