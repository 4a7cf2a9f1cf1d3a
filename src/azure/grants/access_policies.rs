//! Key Vault access policies through ARM's `vaults/accessPolicies/{add,remove}`.

use super::{super::AzureApi, AzureError, IdentityIds, done_if_gone};
use crate::{
    azure::AccessPolicyChange,
    core::grants::access_policies::{Change, Desired, Observed},
};

/// The principal's permissions on each vault the binding wants or held policies on. A vault deleted since
/// counts as holding nothing.
pub(super) async fn observe(
    api: &dyn AzureApi,
    desired: &Desired,
    principal: &str,
) -> Result<Observed, AzureError> {
    let mut entries = Vec::new();
    for vault in desired.vaults() {
        let held = api.get_vault(vault).await?.map(|v| v.permissions_of(principal)).unwrap_or_default();
        entries.push((vault.clone(), held));
    }
    Ok(Observed { entries })
}

pub(super) async fn execute(
    api: &dyn AzureApi,
    ids: &IdentityIds,
    change: &Change,
) -> Result<(), AzureError> {
    let (tenant, principal) = (&ids.tenant_id, &ids.principal_id);
    match change {
        Change::Grant { vault_id, permissions } => {
            api.update_access_policy(vault_id, AccessPolicyChange::Add, tenant, principal, permissions).await
        }
        Change::Revoke { vault_id, permissions } => done_if_gone(
            api.update_access_policy(vault_id, AccessPolicyChange::Remove, tenant, principal, permissions)
                .await,
        ),
    }
}
