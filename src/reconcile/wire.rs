//! Step 6, wire: once the ServiceAccount carries the identity's ids, so do the other objects the binding
//! names in its namespace: each SecretProviderClass in `spec.secretProviderClasses` (its
//! `spec.parameters.clientID` and `tenantId`, under idbind's own field manager, on `azure` classes only) and
//! the ConfigMap of `spec.export`. What idbind wrote on a class that left the spec is taken back, and the
//! ConfigMap it exported to before is deleted. What is decided is [`crate::core::wiring`]'s; each write is an
//! Event on the binding.

use kube::{ResourceExt, api::ApiResource};

use super::{Context, Halt, ReconcileError, publish};
use crate::{
    api::binding::WorkloadIdentityBinding,
    core::{
        plan::IdentityIds,
        report::Outcome,
        wiring::{
            self, Class, ClassPlan, ClassState, Export, ExportPlan, Wiring, class_plan, deletes_export,
            export_data, export_plan,
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
    let Outcome::Converged { held, service_account, previous_client_id, proof, wiring: _ } = bound else {
        return Ok(bound);
    };
    let classes = secret_provider_classes(b, ids, ctx).await?;
    let export = config_map(b, ids, ctx).await?;
    let wiring = Wiring { classes, export };
    Ok(Outcome::Converged { held, service_account, previous_client_id, proof, wiring })
}

/// The classes the spec names, each wired or why not; what idbind wrote on classes the spec no longer names
/// taken back first.
async fn secret_provider_classes(
    b: &WorkloadIdentityBinding,
    ids: &IdentityIds,
    ctx: &Context,
) -> Result<Vec<Class>, KubeError> {
    let named = &b.spec.secret_provider_classes;
    let before = b.status.as_ref().map(|s| s.secret_provider_classes.as_slice()).unwrap_or_default();
    let left: Vec<&String> = before.iter().filter(|c| !named.contains(c)).collect();
    if named.is_empty() && left.is_empty() {
        return Ok(Vec::new());
    }
    let unavailable =
        || named.iter().map(|name| Class { name: name.clone(), state: ClassState::Unavailable });
    // Where the API is not served, nothing can have been written either.
    let Some(resource) = ctx.classes.resource().await? else {
        return Ok(unavailable().collect());
    };
    let wired = async {
        for class in left {
            release(b, ctx, &resource, class).await?;
        }
        let mut classes = Vec::with_capacity(named.len());
        for name in named {
            let state = match ctx.caches.class_holder(b, name) {
                Some(holder) => ClassState::HeldBy(holder),
                None => wire(b, ids, ctx, &resource, name).await?,
            };
            classes.push(Class { name: name.clone(), state });
        }
        Ok(classes)
    };
    match wired.await {
        Err(KubeError::ClassesUnavailable) => {
            ctx.classes.lost();
            Ok(unavailable().collect())
        }
        other => other,
    }
}

/// Class `name` made to carry `ids`, or why it does not.
async fn wire(
    b: &WorkloadIdentityBinding,
    ids: &IdentityIds,
    ctx: &Context,
    resource: &ApiResource,
    name: &str,
) -> Result<ClassState, KubeError> {
    let ns = b.namespace().unwrap_or_default();
    let Some(found) = secret_provider_class::read(&ctx.client, resource, &ns, name).await? else {
        return Ok(ClassState::NotFound);
    };
    match class_plan(&found.class, ids) {
        ClassPlan::InPlace => Ok(ClassState::Wired),
        ClassPlan::Unsupported { provider } => Ok(ClassState::UnsupportedProvider(provider)),
        ClassPlan::Write => {
            if !secret_provider_class::apply(&ctx.client, resource, &ns, name, &found.uid, ids).await? {
                return Ok(ClassState::NotFound);
            }
            let change = format!(
                "SecretProviderClass {name}: spec.parameters.{} set to client id {} and {} to tenant id {}",
                wiring::CLIENT_ID_PARAMETER,
                ids.client_id,
                wiring::TENANT_ID_PARAMETER,
                ids.tenant_id
            );
            tracing::info!(binding = %super::key(b), "{change}");
            publish::changes(b, ctx, "SecretProviderClassWired", std::iter::once(change)).await;
            Ok(ClassState::Wired)
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
        publish::changes(b, ctx, "SecretProviderClassReleased", std::iter::once(change)).await;
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

/// The export ConfigMap written (or found right, or someone else's); the one exported to before deleted when
/// the spec moved away from it.
async fn config_map(
    b: &WorkloadIdentityBinding,
    ids: &IdentityIds,
    ctx: &Context,
) -> Result<Option<Export>, KubeError> {
    let ns = b.namespace().unwrap_or_default();
    let uid = b.uid().unwrap_or_default();
    let wanted = b.spec.export.as_ref().map(|e| e.config_map_name.clone());
    let before = b.status.as_ref().and_then(|s| s.exported_config_map.clone());
    if let Some(previous) = before.filter(|p| Some(p) != wanted.as_ref()) {
        let found = export::read(&ctx.client, &ns, &previous).await?;
        if let Some(found) = found.filter(|f| deletes_export(Some(&f.config_map), &uid))
            && export::delete(&ctx.client, &ns, &previous, &found.uid).await?
        {
            let change = format!("ConfigMap {previous}: deleted (spec.export no longer names it)");
            publish::changes(b, ctx, "ConfigMapDeleted", std::iter::once(change)).await;
        }
    }
    let Some(name) = wanted else {
        return Ok(None);
    };
    let data = export_data(ids);
    let found = export::read(&ctx.client, &ns, &name).await?;
    let written = match export_plan(found.as_ref().map(|f| &f.config_map), &uid, &data) {
        ExportPlan::InPlace => Some(false),
        ExportPlan::Conflict => None,
        ExportPlan::Create => export::create(&ctx.client, b, &name, &data).await?.then_some(true),
        ExportPlan::Update => {
            let uid = found.map(|f| f.uid).unwrap_or_default();
            // Deleted or replaced since the read: made anew, unless someone else's is there now.
            let applied = export::apply(&ctx.client, b, &name, &uid, &data).await?;
            (applied || export::create(&ctx.client, b, &name, &data).await?).then_some(true)
        }
    };
    if written == Some(true) {
        let change = format!("ConfigMap {name}: the identity's ids written (client id {})", ids.client_id);
        tracing::info!(binding = %super::key(b), "{change}");
        publish::changes(b, ctx, "ConfigMapExported", std::iter::once(change)).await;
    }
    Ok(Some(Export { config_map: name, exported: written.is_some() }))
}
