//! The Key Vault CSI driver's `SecretProviderClass`es (`secrets-store.csi.x-k8s.io`), reached through the
//! dynamic API: idbind does not link the driver's types, and the API may not be served at all (the driver is
//! not installed). Whether it is served is found by discovery ([`Classes`]); idbind applies
//! `spec.parameters.clientID` and `tenantId` under its own field manager
//! ([`crate::core::wiring::CLASS_FIELD_MANAGER`]) and nothing else, and releases them by applying an empty
//! object under that manager (server-side apply then removes the fields no other manager owns).

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    discovery,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::KubeError;
use crate::core::{
    plan::IdentityIds,
    wiring::{CLASS_FIELD_MANAGER, CLIENT_ID_PARAMETER, ObservedClass, TENANT_ID_PARAMETER},
};

/// The API group of SecretProviderClasses.
pub const GROUP: &str = "secrets-store.csi.x-k8s.io";
/// Their kind.
pub const KIND: &str = "SecretProviderClass";
/// The least time between two discoveries a reconcile asks for: a namespace of bindings naming classes on a
/// cluster without the driver must not send one discovery each.
const RECHECK: Duration = Duration::from_secs(10);

/// Whether the cluster serves SecretProviderClasses, as discovery last said.
#[derive(Clone, Debug, PartialEq)]
pub enum Served {
    /// Not asked yet.
    Unknown,
    /// The group or the kind is not served.
    No,
    /// Served, at the group's preferred version.
    Yes(ApiResource),
}

/// Discovery of the SecretProviderClass API, shared by the reconciles and the watch of classes (which starts
/// once the API is served).
#[derive(Clone)]
pub struct Classes {
    client: Client,
    served: Arc<watch::Sender<Served>>,
    /// When discovery last answered.
    checked: Arc<Mutex<Option<Instant>>>,
}

impl Classes {
    pub fn new(client: Client) -> Self {
        Classes {
            client,
            served: Arc::new(watch::Sender::new(Served::Unknown)),
            checked: Arc::new(Mutex::new(None)),
        }
    }

    /// The API of SecretProviderClasses, or `None` when the cluster does not serve it. Asks discovery when it
    /// was never asked, or when it said no more than [`RECHECK`] ago (the driver may have been installed
    /// since).
    pub async fn resource(&self) -> Result<Option<ApiResource>, KubeError> {
        let last = *self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        match &*self.served.borrow() {
            Served::Yes(resource) => return Ok(Some(resource.clone())),
            Served::No if last.is_some_and(|at| at.elapsed() < RECHECK) => return Ok(None),
            Served::No | Served::Unknown => {}
        }
        self.discover().await
    }

    /// Asks discovery whether SecretProviderClasses are served, and remembers the answer.
    pub async fn discover(&self) -> Result<Option<ApiResource>, KubeError> {
        let found = match discovery::group(&self.client, GROUP).await {
            Ok(group) => group.recommended_kind(KIND).map(|(resource, _)| resource),
            Err(kube::Error::Discovery(_)) => None,
            Err(e) => return Err(e.into()),
        };
        *self.checked.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let next = found.clone().map_or(Served::No, Served::Yes);
        let changed = self.served.send_if_modified(|served| {
            let changed = *served != next;
            *served = next;
            changed
        });
        if changed {
            match &found {
                Some(r) => tracing::info!(version = %r.api_version, "SecretProviderClasses are served"),
                None => tracing::info!("SecretProviderClasses are not served (no Secrets Store CSI driver)"),
            }
        }
        Ok(found)
    }

    /// The API stopped answering for SecretProviderClasses (its CRD was deleted): ask discovery again next
    /// time.
    pub fn lost(&self) {
        self.served.send_replace(Served::No);
        *self.checked.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Waits until the API is served (for the watch of classes).
    pub async fn served(&self) -> Option<ApiResource> {
        let mut answers = self.served.subscribe();
        let served = answers.wait_for(|s| matches!(s, Served::Yes(_))).await.ok()?;
        match &*served {
            Served::Yes(resource) => Some(resource.clone()),
            Served::No | Served::Unknown => None,
        }
    }

    /// Asks discovery at once, then every `every` until the API is served (a driver installed after the
    /// operator starts its watch then). Errors are logged and asked again.
    pub async fn discover_until_served(self, every: Duration) {
        loop {
            match self.discover().await {
                Ok(Some(_)) => return,
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "discovering SecretProviderClasses failed; retrying"),
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// A class as read: its UID (what an apply names, so it never creates a class) and what idbind decides from.
pub struct Found {
    pub uid: String,
    pub class: ObservedClass,
}

fn api(client: &Client, resource: &ApiResource, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// Reads class `namespace/name`: `None` when there is no such class, [`KubeError::ClassesUnavailable`] when
/// the API itself is gone.
pub async fn read(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
) -> Result<Option<Found>, KubeError> {
    match api(client, resource, namespace).get(name).await {
        Ok(object) => Ok(Some(observe(&object))),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            // A missing object's 404 names it; a missing resource's does not.
            if s.details.as_ref().is_some_and(|d| !d.name.is_empty()) {
                Ok(None)
            } else {
                Err(KubeError::ClassesUnavailable)
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// What idbind decides from, of a class as read.
pub fn observe(object: &DynamicObject) -> Found {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let spec = &object.data["spec"];
    let entries = object.metadata.managed_fields.iter().flatten();
    let written_by_idbind = entries.clone().any(|e| {
        e.manager.as_deref() == Some(CLASS_FIELD_MANAGER) && e.operation.as_deref() == Some("Apply")
    });
    // Who else owns the two parameters: the writers of a change idbind would undo.
    let owns_ids = |fields: &Value| {
        let parameters = &fields["f:spec"]["f:parameters"];
        [CLIENT_ID_PARAMETER, TENANT_ID_PARAMETER].iter().any(|p| parameters.get(format!("f:{p}")).is_some())
    };
    let mut others: Vec<String> = entries
        .filter(|e| e.manager.as_deref() != Some(CLASS_FIELD_MANAGER))
        .filter(|e| e.fields_v1.as_ref().is_some_and(|f| owns_ids(&f.0)))
        .filter_map(|e| e.manager.clone())
        .collect();
    others.sort();
    others.dedup();
    Found {
        uid: object.metadata.uid.clone().unwrap_or_default(),
        class: ObservedClass {
            provider: text(&spec["provider"]),
            client_id: text(&spec["parameters"][CLIENT_ID_PARAMETER]),
            tenant_id: text(&spec["parameters"][TENANT_ID_PARAMETER]),
            written_by_idbind,
            others,
        },
    }
}

/// Applies the identity's client and tenant ids to class `namespace/name` (of UID `uid`), under idbind's
/// field manager, taking them over from whoever set them by hand. `Ok(false)`: the class was deleted (or
/// replaced) since it was read; nothing was written.
pub async fn apply(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
    uid: &str,
    ids: &IdentityIds,
) -> Result<bool, KubeError> {
    let parameters = json!({CLIENT_ID_PARAMETER: ids.client_id, TENANT_ID_PARAMETER: ids.tenant_id});
    write(client, resource, namespace, name, uid, Some(json!({"parameters": parameters}))).await
}

/// Takes back what idbind's field manager owns on class `namespace/name` (of UID `uid`): an empty object
/// applied under that manager, so the fields only idbind set go and those someone else also set stay.
pub async fn release(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<bool, KubeError> {
    write(client, resource, namespace, name, uid, None).await
}

async fn write(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
    uid: &str,
    spec: Option<Value>,
) -> Result<bool, KubeError> {
    // The UID makes the apply fail instead of creating a class that is gone.
    let mut object = json!({
        "apiVersion": resource.api_version,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
    });
    if let Some(spec) = spec {
        object["spec"] = spec;
    }
    let params = PatchParams::apply(CLASS_FIELD_MANAGER).force();
    match api(client, resource, namespace).patch(name, &params, &Patch::Apply(&object)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}
