//! The ConfigMap a binding exports its identity's ids to (`spec.export`). Created with a plain create, so a
//! ConfigMap someone makes between idbind's read and its write is never taken over (the create fails); its
//! UID, which the create answers, is what the binding's status records as proof that idbind made it. Kept
//! with server-side apply under [`EXPORT_FIELD_MANAGER`], naming that UID so an apply never creates one. The
//! binding is its controller owner: Kubernetes' garbage collector deletes it with the binding.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::ConfigMap,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
};
use serde_json::json;

use super::KubeError;
use crate::{
    api::binding::WorkloadIdentityBinding,
    core::wiring::{EXPORT_FIELD_MANAGER, EXPORT_LABEL, ObservedConfigMap},
};

/// Reads ConfigMap `namespace/name` (`None`: there is none).
pub async fn read(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<ObservedConfigMap>, KubeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(api.get_opt(name).await?.map(|cm| observe(&cm)))
}

/// What idbind decides from, of a ConfigMap as read.
pub fn observe(cm: &ConfigMap) -> ObservedConfigMap {
    let controller = cm.owner_references().iter().find(|r| r.controller == Some(true));
    let controlling_binding = controller
        .filter(|r| r.kind == "WorkloadIdentityBinding" && r.api_version.starts_with("idbind.dev/"))
        .map(|r| r.uid.clone());
    let (label, value) = EXPORT_LABEL;
    let data = cm.data.clone().unwrap_or_default();
    let mut data_writers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in cm.metadata.managed_fields.iter().flatten() {
        let Some(manager) = entry.manager.as_deref().filter(|m| *m != EXPORT_FIELD_MANAGER) else {
            continue;
        };
        let owned =
            entry.fields_v1.as_ref().and_then(|f| f.0["f:data"].as_object().cloned()).unwrap_or_default();
        for key in owned.keys().filter_map(|k| k.strip_prefix("f:")) {
            data_writers.entry(key.to_string()).or_default().push(manager.to_string());
        }
    }
    ObservedConfigMap {
        uid: cm.metadata.uid.clone().unwrap_or_default(),
        controlling_binding,
        data,
        data_writers,
        labelled: cm.labels().get(label).is_some_and(|v| v == value),
        more_than_data: cm.binary_data.as_ref().is_some_and(|b| !b.is_empty()) || cm.immutable == Some(true),
    }
}

/// The owner reference that makes `b` the ConfigMap's controller: the garbage collector deletes the ConfigMap
/// once the binding is gone, and a foreground deletion of the binding waits for it.
fn owner(b: &WorkloadIdentityBinding) -> OwnerReference {
    OwnerReference {
        api_version: WorkloadIdentityBinding::api_version(&()).into_owned(),
        kind: WorkloadIdentityBinding::kind(&()).into_owned(),
        name: b.name_any(),
        uid: b.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Creates ConfigMap `name` in `b`'s namespace with `data`: the new ConfigMap's UID, or `None` when one of
/// that name exists (made since it was read; it is left alone).
pub async fn create(
    client: &Client,
    b: &WorkloadIdentityBinding,
    name: &str,
    data: &BTreeMap<String, String>,
) -> Result<Option<String>, KubeError> {
    let namespace = b.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let (label, value) = EXPORT_LABEL;
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.clone()),
            labels: Some([(label.to_string(), value.to_string())].into()),
            owner_references: Some(vec![owner(b)]),
            ..ObjectMeta::default()
        },
        data: Some(data.clone()),
        ..ConfigMap::default()
    };
    let params = PostParams { field_manager: Some(EXPORT_FIELD_MANAGER.into()), ..PostParams::default() };
    match api.create(&params, &cm).await {
        Ok(created) => Ok(Some(created.metadata.uid.unwrap_or_default())),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Applies `data`, the label and `b`'s owner reference to `b`'s ConfigMap `name` of UID `uid`. `Ok(false)`:
/// it was deleted (or replaced) since it was read.
pub async fn apply(
    client: &Client,
    b: &WorkloadIdentityBinding,
    name: &str,
    uid: &str,
    data: &BTreeMap<String, String>,
) -> Result<bool, KubeError> {
    let namespace = b.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let (label, value) = EXPORT_LABEL;
    let object = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": uid,
            "labels": {label: value},
            "ownerReferences": [owner(b)],
        },
        "data": data,
    });
    let params = PatchParams::apply(EXPORT_FIELD_MANAGER).force();
    match api.patch(name, &params, &Patch::Apply(&object)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Deletes ConfigMap `namespace/name` if it still has UID `uid` (one already gone, or replaced, stays as it
/// is).
pub async fn delete(client: &Client, namespace: &str, name: &str, uid: &str) -> Result<bool, KubeError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let preconditions = Preconditions { uid: Some(uid.to_string()), resource_version: None };
    let params = DeleteParams { preconditions: Some(preconditions), ..DeleteParams::default() };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
