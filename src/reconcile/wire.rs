//! Step 6, wire: once the ServiceAccount carries the identity's ids, so do the other objects the binding
//! names in its namespace: each SecretProviderClass in `spec.secretProviderClasses` (its
//! `spec.parameters.clientID` and `tenantId`, under idbind's own field manager, on `azure` classes only) and
//! the ConfigMap of `spec.export`. What idbind wrote on a class that left the spec is taken back, and the
//! ConfigMap it exported to before is deleted (only the one whose UID the status recorded at its creation).
//! What is decided is [`crate::core::wiring`]'s, and [`crate::core::rewrite`]'s for what someone else changed
//! (undone once, then left alone); each write is an Event on the binding.

use std::collections::BTreeMap;

use kube::{ResourceExt, api::ApiResource};

use super::{Context, Halt, ReconcileError, failpoint, publish};
use crate::core::reason::Reason;
use crate::{
    api::binding::{WorkloadIdentityBinding, WrittenKind, WrittenStatus},
    core::{
        plan::IdentityIds,
        report::Outcome,
        rewrite::{self, Decision, Target},
        wiring::{
            self, Class, ClassPlan, ClassState, Export, ExportPlan, ExportState, Foreign, Wiring, class_plan,
            deletes_export, export_data, export_plan,
        },
    },
    k8s::{KubeError, export, secret_provider_class},
};

/// The bind step's outcome with what became of the classes and the export: only a binding whose
/// ServiceAccount carries the ids gets them wired.
pub async fn classes_and_export(
    b: &WorkloadIdentityBinding,
    ids: &IdentityIds,
    bound: Outcome,
    ctx: &Context,
) -> Result<Outcome, Halt> {
    let Outcome::Converged { held, service_account, previous_client_id, proof, wiring } = bound else {
        return Ok(bound);
    };
    let mut written = wiring.written;
    let (classes, class_records) = secret_provider_classes(b, ids, ctx).await?;
    let (export, export_record) = config_map(b, ids, ctx).await?;
    written.extend(class_records);
    written.extend(export_record);
    let wiring = Wiring { classes, export, written };
    Ok(Outcome::Converged { held, service_account, previous_client_id, proof, wiring })
}

/// What idbind recorded of its last write on the object of `kind` named `name`.
fn recorded<'a>(b: &'a WorkloadIdentityBinding, kind: WrittenKind, name: &str) -> Option<&'a WrittenStatus> {
    let written = b.status.as_ref().map(|s| s.written.as_slice()).unwrap_or_default();
    rewrite::find(written, kind, name)
}

/// The classes the spec names, each wired or why not, and idbind's records of what it wrote on them; what
/// idbind wrote on classes the spec no longer names taken back first.
async fn secret_provider_classes(
    b: &WorkloadIdentityBinding,
    ids: &IdentityIds,
    ctx: &Context,
) -> Result<(Vec<Class>, Vec<WrittenStatus>), KubeError> {
    let named = &b.spec.secret_provider_classes;
    let before = b.status.as_ref().map(|s| s.secret_provider_classes.as_slice()).unwrap_or_default();
    let left: Vec<&String> = before.iter().filter(|c| !named.contains(c)).collect();
    if named.is_empty() && left.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    // Where the API is not served, nothing can have been written either; what was recorded stays.
    let unavailable = || {
        let classes = named.iter().map(|name| Class { name: name.clone(), state: ClassState::Unavailable });
        let kept =
            named.iter().filter_map(|name| recorded(b, WrittenKind::SecretProviderClass, name).cloned());
        (classes.collect(), kept.collect())
    };
    let Some(resource) = ctx.classes.resource().await? else {
        return Ok(unavailable());
    };
    let wired = async {
        for class in left {
            release(b, ctx, &resource, class).await?;
        }
        let mut classes = Vec::with_capacity(named.len());
        let mut records = Vec::new();
        for name in named {
            let state = match ctx.caches.class_holder(b, name) {
                Some(holder) => ClassState::HeldBy(holder),
                None => {
                    let (state, record) = wire(b, ids, ctx, &resource, name).await?;
                    records.extend(record);
                    state
                }
            };
            classes.push(Class { name: name.clone(), state });
        }
        Ok((classes, records))
    };
    match wired.await {
        Err(KubeError::ClassesUnavailable) => {
            ctx.classes.lost();
            Ok(unavailable())
        }
        other => other,
    }
}

/// Class `name` made to carry `ids`, or why it does not; and idbind's record of what it wrote there.
async fn wire(
    b: &WorkloadIdentityBinding,
    ids: &IdentityIds,
    ctx: &Context,
    resource: &ApiResource,
    name: &str,
) -> Result<(ClassState, Option<WrittenStatus>), KubeError> {
    let ns = b.namespace().unwrap_or_default();
    let Some(found) = secret_provider_class::read(&ctx.client, resource, &ns, name).await? else {
        return Ok((ClassState::NotFound, None));
    };
    let need = match class_plan(&found.class, ids) {
        ClassPlan::Unsupported { provider } => return Ok((ClassState::UnsupportedProvider(provider), None)),
        ClassPlan::Azure(need) => need,
    };
    let target = Target {
        kind: WrittenKind::SecretProviderClass,
        name,
        uid: &found.uid,
        client_id: &ids.client_id,
        generation: b.metadata.generation.unwrap_or_default(),
    };
    let decision = rewrite::decide(recorded(b, WrittenKind::SecretProviderClass, name), &target, &need);
    match decision {
        Decision::InPlace(record) => Ok((ClassState::Wired, Some(record))),
        Decision::Contested { record, undone, by } => {
            Ok((ClassState::Contested { undone, by }, Some(record)))
        }
        Decision::Write { record, repair } => {
            if !secret_provider_class::apply(&ctx.client, resource, &ns, name, &found.uid, ids).await? {
                return Ok((ClassState::NotFound, None));
            }
            let mut change = format!(
                "SecretProviderClass {name}: spec.parameters.{} set to client id {} and {} to tenant id {}",
                wiring::CLIENT_ID_PARAMETER,
                ids.client_id,
                wiring::TENANT_ID_PARAMETER,
                ids.tenant_id
            );
            if repair {
                change.push_str(&format!(
                    " (they were changed by {}; a second change by someone else is left alone)",
                    record.undone.as_deref().unwrap_or_default()
                ));
            }
            tracing::info!(binding = %super::key(b), "{change}");
            publish::changes(b, ctx, Reason::SecretProviderClassWired, std::iter::once(change)).await;
            Ok((ClassState::Wired, Some(record)))
        }
    }
}

/// Takes back what idbind wrote on class `name`, unless another binding of the namespace names it.
async fn release(
    b: &WorkloadIdentityBinding,
    ctx: &Context,
    resource: &ApiResource,
    name: &str,
) -> Result<(), KubeError> {
    let ns = b.namespace().unwrap_or_default();
    let found = secret_provider_class::read(&ctx.client, resource, &ns, name).await?;
    let named_by_others = ctx.caches.class_named_by_others(b, name);
    let Some(found) = found.filter(|f| wiring::withdraws(Some(&f.class), named_by_others)) else {
        return Ok(());
    };
    if secret_provider_class::release(&ctx.client, resource, &ns, name, &found.uid).await? {
        let change = format!(
            "SecretProviderClass {name}: what idbind set (spec.parameters.{} and {}) taken back",
            wiring::CLIENT_ID_PARAMETER,
            wiring::TENANT_ID_PARAMETER
        );
        tracing::info!(binding = %super::key(b), "{change}");
        publish::changes(b, ctx, Reason::SecretProviderClassReleased, std::iter::once(change)).await;
    }
    Ok(())
}

/// The finalizer's part: what idbind wrote on every class the binding names, or named when last wired, is
/// taken back (unless another binding names it). The export ConfigMap is the garbage collector's.
pub async fn release_all(b: &WorkloadIdentityBinding, ctx: &Context) -> Result<(), ReconcileError> {
    let before = b.status.as_ref().map(|s| s.secret_provider_classes.as_slice()).unwrap_or_default();
    let mut classes: Vec<&String> = b.spec.secret_provider_classes.iter().chain(before).collect();
    classes.sort();
    classes.dedup();
    if classes.is_empty() {
        return Ok(());
    }
    let Some(resource) = ctx.classes.resource().await? else {
        return Ok(());
    };
    for class in classes {
        match release(b, ctx, &resource, class).await {
            Ok(()) => {}
            Err(KubeError::ClassesUnavailable) => {
                ctx.classes.lost();
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The export ConfigMap written (or found right, or someone else's), and idbind's record of it; the one
/// exported to before deleted when the spec moved away from it.
async fn config_map(
    b: &WorkloadIdentityBinding,
    ids: &IdentityIds,
    ctx: &Context,
) -> Result<(Option<Export>, Option<WrittenStatus>), KubeError> {
    let data = export_data(ids);
    let wanted = b.spec.export.as_ref().map(|e| e.config_map_name.clone());
    let before = b.status.as_ref().and_then(|s| s.exported_config_map.clone());
    if let Some(previous) = before.filter(|p| Some(p) != wanted.as_ref()) {
        delete_previous(b, ctx, &previous, &data).await?;
    }
    let Some(name) = wanted else {
        return Ok((None, None));
    };
    let exported = export_to(b, ids, ctx, &name, &data).await?;
    if let Some(repair) = exported.written {
        let mut change =
            format!("ConfigMap {name}: the identity's ids written (client id {})", ids.client_id);
        if repair {
            let by = exported.record.as_ref().and_then(|r| r.undone.as_deref()).unwrap_or_default();
            change.push_str(&format!(
                " (its data was changed by {by}; a second change by someone else is left alone)"
            ));
        }
        tracing::info!(binding = %super::key(b), "{change}");
        publish::changes(b, ctx, Reason::ConfigMapExported, std::iter::once(change)).await;
    }
    Ok((Some(Export { config_map: name, state: exported.state }), exported.record))
}

/// Deletes ConfigMap `previous`, which the binding exported to before, if it is the binding's.
async fn delete_previous(
    b: &WorkloadIdentityBinding,
    ctx: &Context,
    previous: &str,
    data: &BTreeMap<String, String>,
) -> Result<(), KubeError> {
    let ns = b.namespace().unwrap_or_default();
    let found = export::read(&ctx.client, &ns, previous).await?;
    let record = recorded(b, WrittenKind::ConfigMap, previous);
    let uid = b.uid().unwrap_or_default();
    if let Some(found) = found.filter(|f| deletes_export(Some(f), record, &uid, data))
        && export::delete(&ctx.client, &ns, previous, &found.uid).await?
    {
        let change = format!("ConfigMap {previous}: deleted (spec.export no longer names it)");
        publish::changes(b, ctx, Reason::ConfigMapDeleted, std::iter::once(change)).await;
    }
    Ok(())
}

/// What became of the export ConfigMap.
struct Exported {
    state: ExportState,
    /// idbind's record of it, when it is the binding's.
    record: Option<WrittenStatus>,
    /// `Some(repair)` when idbind wrote it; `repair`: undoing someone else's change.
    written: Option<bool>,
}

impl Exported {
    fn foreign(why: Foreign) -> Self {
        Exported { state: ExportState::Foreign(why), record: None, written: None }
    }
}

/// ConfigMap `name` made to carry `data`, or why not.
async fn export_to(
    b: &WorkloadIdentityBinding,
    ids: &IdentityIds,
    ctx: &Context,
    name: &str,
    data: &BTreeMap<String, String>,
) -> Result<Exported, KubeError> {
    let ns = b.namespace().unwrap_or_default();
    let found = export::read(&ctx.client, &ns, name).await?;
    let record = recorded(b, WrittenKind::ConfigMap, name);
    let need = match export_plan(found.as_ref(), record, &b.uid().unwrap_or_default(), data) {
        ExportPlan::Foreign(why) => return Ok(Exported::foreign(why)),
        ExportPlan::Create => return created(b, ids, ctx, name, data).await,
        ExportPlan::Ours { need, .. } => need,
    };
    let cm_uid = found.map(|f| f.uid).unwrap_or_default();
    let target = Target {
        kind: WrittenKind::ConfigMap,
        name,
        uid: &cm_uid,
        client_id: &ids.client_id,
        generation: b.metadata.generation.unwrap_or_default(),
    };
    Ok(match rewrite::decide(record, &target, &need) {
        Decision::InPlace(record) => {
            Exported { state: ExportState::Exported, record: Some(record), written: None }
        }
        Decision::Contested { record, undone, by } => {
            Exported { state: ExportState::Contested { undone, by }, record: Some(record), written: None }
        }
        Decision::Write { record, repair } => {
            if !export::apply(&ctx.client, b, name, &cm_uid, data).await? {
                // Deleted or replaced since the read: made anew, unless someone else's is there now.
                return created(b, ids, ctx, name, data).await;
            }
            Exported { state: ExportState::Exported, record: Some(record), written: Some(repair) }
        }
    })
}

/// Creates the export ConfigMap, and records its UID: the proof that idbind made it.
async fn created(
    b: &WorkloadIdentityBinding,
    ids: &IdentityIds,
    ctx: &Context,
    name: &str,
    data: &BTreeMap<String, String>,
) -> Result<Exported, KubeError> {
    let Some(uid) = export::create(&ctx.client, b, name, data).await? else {
        // Someone else's appeared since the read.
        return Ok(Exported::foreign(Foreign::NotControlled));
    };
    // The crash-consistency test kills the operator here: the ConfigMap exists, the status does not record it
    // yet.
    failpoint::hit(failpoint::AFTER_EXPORT_CREATE);
    let record = WrittenStatus {
        kind: WrittenKind::ConfigMap,
        name: name.to_string(),
        uid,
        client_id: ids.client_id.clone(),
        generation: b.metadata.generation.unwrap_or_default(),
        undone: None,
        contested: None,
    };
    Ok(Exported { state: ExportState::Exported, record: Some(record), written: Some(false) })
}
