//! The last step: what [`crate::core::report::report`] decided reaches Kubernetes. The status is written only
//! when it changed (server-side apply, idbind's field manager), with the crash points of the
//! crash-consistency tests around the write, and the Event follows it.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Resource, ResourceExt,
    runtime::events::{Event, EventType},
};

use super::{Context, ReconcileError, failpoint};
use crate::core::reason::Reason;
use crate::{
    api::binding::WorkloadIdentityBinding,
    core::{
        reason::Severity,
        report::{Report, note_parts},
    },
    k8s,
};

/// Kubernetes keeps an Event's note to 1 kB (events.k8s.io/v1 refuses a longer one).
const NOTE_LIMIT: usize = 1024;

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
    let Some(note) = &report.event else {
        return Ok(());
    };
    let type_ = event_type(note.severity());
    let reference: ObjectReference = b.object_ref(&());
    // A message longer than a note goes out as several Events (each its own: the Recorder would fold them
    // into one), so nothing of it is lost.
    let parts = note_parts(&note.message, NOTE_LIMIT);
    let distinct = parts.len() > 1;
    for part in parts {
        let event = Event {
            type_,
            reason: note.reason.to_string(),
            note: Some(part),
            action: "Reconcile".into(),
            secondary: None,
        };
        let published = if distinct {
            ctx.events.publish_distinct(&event, &reference).await
        } else {
            ctx.events.publish(&event, &reference).await
        };
        if let Err(e) = published {
            tracing::warn!(error = %e, "publishing an Event failed");
        }
    }
    Ok(())
}

/// One Normal Event per change made in Azure for the binding (`reason`: `AzureUpdated`, `AzureDeleted`), so
/// `kubectl describe` and the cluster's event stream say what idbind did and when. Best effort, like every
/// Event.
pub async fn changes(
    b: &WorkloadIdentityBinding,
    ctx: &Context,
    reason: Reason,
    changes: impl Iterator<Item = String>,
) {
    let reference: ObjectReference = b.object_ref(&());
    for change in changes {
        for part in note_parts(&change, NOTE_LIMIT) {
            let event = Event {
                type_: event_type(reason.severity()),
                reason: reason.to_string(),
                note: Some(part),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = ctx.events.publish_distinct(&event, &reference).await {
                tracing::warn!(error = %e, "publishing an Event failed");
            }
        }
    }
}

fn event_type(severity: Severity) -> EventType {
    match severity {
        Severity::Normal => EventType::Normal,
        Severity::Warning => EventType::Warning,
    }
}
