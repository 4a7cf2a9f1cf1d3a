//! The last step: what [`crate::core::report::report`] decided reaches Kubernetes. The status is written only
//! when it changed (server-side apply, idbind's field manager), with the crash points of the
//! crash-consistency tests around the write, and the Event follows it.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Resource, ResourceExt,
    runtime::events::{Event, EventType},
};

use super::{Context, ReconcileError, failpoint};
use crate::{
    api::binding::WorkloadIdentityBinding,
    core::report::{Report, Severity},
    k8s,
};

/// Kubernetes keeps an Event's note to 1 kB.
const NOTE_LIMIT: usize = 1000;

/// Writes `report`'s status if it differs from the binding's, then publishes its Event.
pub async fn publish(
    b: &WorkloadIdentityBinding,
    ctx: &Context,
    report: &Report,
) -> Result<(), ReconcileError> {
    if b.status.clone().unwrap_or_default() == report.status {
        return Ok(());
    }
    failpoint::hit(failpoint::BEFORE_STATUS_WRITE);
    k8s::apply_status(&ctx.client, &b.namespace().unwrap_or_default(), &b.name_any(), &report.status).await?;
    failpoint::hit(failpoint::AFTER_STATUS_WRITE);
    if let Some(note) = &report.event {
        let type_ = match note.severity {
            Severity::Normal => EventType::Normal,
            Severity::Warning => EventType::Warning,
        };
        let event = Event {
            type_,
            reason: note.reason.to_string(),
            note: Some(note.message.chars().take(NOTE_LIMIT).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let reference: ObjectReference = b.object_ref(&());
        if let Err(e) = ctx.events.publish(&event, &reference).await {
            tracing::warn!(error = %e, "publishing an Event failed");
        }
    }
    Ok(())
}
