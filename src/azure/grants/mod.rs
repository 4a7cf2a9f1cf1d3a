//! The Azure calls of each kind of grant ([`crate::core::grants`]): how it is read for a principal and how
//! each of its writes is made. This module only lists the kinds.

mod access_policies;
mod role_assignments;

use super::{AzureApi, AzureError, IdentityIds};
use crate::core::{
    grants::{Change, Desired, Observed},
    resource_id::ResourceId,
};

/// What `principal` holds of each kind, where `desired` says to look. `identity` is the identity's id (its
/// subscription is always looked in).
pub async fn observe(
    api: &dyn AzureApi,
    identity: &ResourceId,
    desired: &Desired,
    principal: &str,
) -> Result<Observed, AzureError> {
    Ok(Observed {
        role_assignments: role_assignments::observe(api, identity, &desired.role_assignments, principal)
            .await?,
        access_policies: access_policies::observe(api, &desired.access_policies, principal).await?,
    })
}

/// Makes one write for the identity whose ids are `ids`. A delete that finds nothing to delete did its job.
pub async fn execute(api: &dyn AzureApi, ids: &IdentityIds, change: &Change) -> Result<(), AzureError> {
    match change {
        Change::RoleAssignment(c) => role_assignments::execute(api, &ids.principal_id, c).await,
        Change::AccessPolicy(c) => access_policies::execute(api, ids, c).await,
    }
}

/// A delete that found nothing to delete did its job.
pub(super) fn done_if_gone(result: Result<(), AzureError>) -> Result<(), AzureError> {
    match result {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}
