//! Step 2, resolve: the Azure state the binding wants. Each vault is looked at (does it exist, does it use
//! Azure RBAC or access policies) and role names are resolved to role definition GUIDs, through fresh reads
//! (the Azure layer caches vaults for five minutes and role names for good); the rest is
//! [`crate::core::desired`], pure.

use super::{Context, azure_failure};
use crate::{
    api::binding::WorkloadIdentityBinding,
    azure::access::Fresh,
    core::{
        desired::{self, VaultFacts, Wanted},
        report::{Failure, Outcome, Part},
        roles::RoleRef,
        validate::DesiredBinding,
    },
};

/// What `b` wants in Azure, or the outcome that stops it here.
pub async fn wanted(
    b: &WorkloadIdentityBinding,
    desired: &DesiredBinding,
    ctx: &Context,
) -> Result<Wanted, Outcome> {
    let vaults = vault_facts(ctx.azure.fresh(), desired).await?;
    let held = desired::held_access_policies(b.status.as_ref());
    desired::azure_state(desired, ctx.owner(b), &vaults, held).map_err(Outcome::Stalled)
}

/// What Azure says of each vault `desired` names, its roles resolved.
pub async fn vault_facts(fresh: Fresh<'_>, desired: &DesiredBinding) -> Result<Vec<VaultFacts>, Outcome> {
    let mut facts = Vec::with_capacity(desired.vaults.len());
    for vault in &desired.vaults {
        let failed = |e| azure_failure(Part::RoleAssignments, &e);
        let Some(info) = fresh.vault(&vault.resource_id).await.map_err(failed)? else {
            return Err(Outcome::Stalled(Failure {
                part: Part::RoleAssignments,
                reason: "VaultNotFound",
                message: format!("vault {} does not exist", vault.resource_id),
                retry_after: None,
            }));
        };
        let mut roles = Vec::with_capacity(vault.roles.len());
        for (written, role) in &vault.roles {
            let guid = match role {
                RoleRef::Id(guid) => guid.to_string(),
                RoleRef::Name(name) => fresh.role(&vault.resource_id, name).await.map_err(failed)?,
            };
            roles.push((written.clone(), guid));
        }
        let uri = info.vault_uri.clone();
        facts.push(VaultFacts { id: vault.resource_id.clone(), rbac: info.rbac_authorization, roles, uri });
    }
    Ok(facts)
}
