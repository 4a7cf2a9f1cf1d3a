//! Role assignments through ARM's `Microsoft.Authorization/roleAssignments`.

use super::{super::AzureApi, AzureError, done_if_gone};
use crate::core::{
    grants::role_assignments::{Change, Desired, Observed},
    resource_id::ResourceId,
};

/// The principal's role assignments, listed per subscription (the identity's, each wanted scope's, and those
/// `desired.subscriptions` adds) rather than per wanted scope, so an assignment at a scope the spec no longer
/// names is still seen, and removed.
pub(super) async fn observe(
    api: &dyn AzureApi,
    identity: &ResourceId,
    desired: &Desired,
    principal: &str,
) -> Result<Vec<Observed>, AzureError> {
    let mut wanted: Vec<ResourceId> = Vec::new();
    for id in std::iter::once(identity).chain(desired.wanted.iter().map(|w| &w.scope)) {
        let subscription = id.subscription().ok_or_else(|| AzureError::InvalidResourceId {
            kind: "subscription-scoped",
            id: id.to_string(),
        })?;
        wanted.push(ResourceId::subscription_scope(subscription));
    }
    wanted.extend(desired.subscriptions.iter().map(|s| ResourceId::subscription_scope(s)));
    let mut subscriptions: Vec<ResourceId> = Vec::with_capacity(wanted.len());
    for scope in wanted {
        if !subscriptions.contains(&scope) {
            subscriptions.push(scope);
        }
    }
    let mut found: Vec<Observed> = Vec::new();
    for scope in &subscriptions {
        for ra in api.list_role_assignments(scope, principal).await? {
            if !found.iter().any(|have| have.id == ra.id) {
                found.push(ra);
            }
        }
    }
    Ok(found)
}

pub(super) async fn execute(api: &dyn AzureApi, principal: &str, change: &Change) -> Result<(), AzureError> {
    match change {
        Change::Create { scope, name, role_definition_guid } => {
            create(api, scope, name, role_definition_guid, principal).await
        }
        Change::Delete { id } => done_if_gone(api.delete_role_assignment(id).await),
    }
}

/// Creates a role assignment; when ARM says the (scope, role, principal) trio has one already, it counts as
/// ours only under the name we derive (ARM refuses a second assignment of one trio under another name,
/// docs/azure.md#role-assignment-rules): otherwise it belongs to someone else and is reported, never taken
/// over.
async fn create(
    api: &dyn AzureApi,
    scope: &ResourceId,
    name: &str,
    role_guid: &str,
    principal: &str,
) -> Result<(), AzureError> {
    let original = match api.create_role_assignment(scope, name, role_guid, principal).await {
        Err(e) if e.arm_code().is_some_and(|c| c.eq_ignore_ascii_case("RoleAssignmentExists")) => e,
        other => return other,
    };
    let existing = api.list_role_assignments(scope, principal).await?;
    let same_trio = existing.iter().find(|ra| {
        ra.scope == *scope
            && ra.role_definition_id.rsplit('/').next().is_some_and(|g| g.eq_ignore_ascii_case(role_guid))
    });
    match same_trio {
        Some(ra) if ra.name.eq_ignore_ascii_case(name) => Ok(()),
        Some(ra) => Err(AzureError::RoleAssignmentConflict {
            scope: scope.to_string(),
            name: name.to_string(),
            existing: ra.id.to_string(),
        }),
        // ARM said it exists but we cannot see it (replication): keep the original, retryable only if ARM's
        // classification says so.
        None => Err(original),
    }
}
