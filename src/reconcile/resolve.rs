//! Step 2, resolve: the Azure state the binding wants. Each vault is looked at (does it exist, does it use
//! Azure RBAC or access policies), each azureRoles scope is checked to exist, and role names are resolved to
//! role definition GUIDs, through fresh reads (the Azure layer caches vaults for five minutes and role names
//! for good); the rest is [`crate::core::desired`], pure.

use super::{Context, azure_failure};
use crate::core::reason::Reason;
use crate::{
    api::binding::{WorkloadIdentityBinding, WorkloadIdentityBindingStatus},
    azure::access::Fresh,
    core::{
        desired::{self, ResolvedRole, ScopeFacts, VaultFacts, Wanted},
        plan::Owner,
        report::{Failure, Outcome, Part},
        roles::RoleRef,
        validate::{DesiredBinding, DesiredGrant, ListedRole},
    },
};

/// What `b` wants in Azure, or the outcome that stops it here.
pub async fn wanted(
    b: &WorkloadIdentityBinding,
    desired: &DesiredBinding,
    ctx: &Context,
) -> Result<Wanted, Outcome> {
    resolve(ctx.azure.fresh(), ctx.owner(b), desired, b.status.as_ref()).await
}

/// What a binding owned by `owner`, admitted as `desired`, wants in Azure, read fresh; `status` says which
/// access policies it holds. The reconcile's step and `idbind plan`'s dry run.
pub async fn resolve(
    fresh: Fresh<'_>,
    owner: Owner,
    desired: &DesiredBinding,
    status: Option<&WorkloadIdentityBindingStatus>,
) -> Result<Wanted, Outcome> {
    let vaults = vault_facts(fresh, desired).await?;
    let scopes = scope_facts(fresh, desired).await?;
    desired::azure_state(desired, owner, &vaults, &scopes, status).map_err(Outcome::Stalled)
}

/// What Azure says of each vault `desired` names, its roles resolved.
async fn vault_facts(fresh: Fresh<'_>, desired: &DesiredBinding) -> Result<Vec<VaultFacts>, Outcome> {
    let mut facts = Vec::with_capacity(desired.vaults.len());
    for vault in &desired.vaults {
        let failed = |e| azure_failure(Part::RoleAssignments, &e);
        let Some(info) = fresh.vault(&vault.resource_id).await.map_err(failed)? else {
            return Err(Outcome::Stalled(Failure {
                part: Part::RoleAssignments,
                reason: Reason::VaultNotFound,
                message: format!("vault {} does not exist", vault.resource_id),
                retry_after: None,
            }));
        };
        let roles = role_guids(fresh, vault).await?;
        let uri = info.vault_uri.clone();
        facts.push(VaultFacts { id: vault.resource_id.clone(), rbac: info.rbac_authorization, roles, uri });
    }
    Ok(facts)
}

/// What Azure says of each azureRoles scope `desired` names: that it exists (`ScopeNotFound` otherwise) at
/// the id idbind judged (`InvalidSpec` otherwise, see [`desired::answered_scope`]), its roles resolved.
/// Validation keeps the spec's order, so `desired.scopes[i]` is `spec.azureRoles[i]`.
async fn scope_facts(fresh: Fresh<'_>, desired: &DesiredBinding) -> Result<Vec<ScopeFacts>, Outcome> {
    let mut facts = Vec::with_capacity(desired.scopes.len());
    for (i, scope) in desired.scopes.iter().enumerate() {
        let failed = |e| azure_failure(Part::RoleAssignments, &e);
        let Some(answered) = fresh.scope_id(&scope.resource_id).await.map_err(failed)? else {
            return Err(Outcome::Stalled(Failure {
                part: Part::RoleAssignments,
                reason: Reason::ScopeNotFound,
                message: format!(
                    "scope {} does not exist (checked with a GET of it); create it or correct spec.azureRoles",
                    scope.resource_id
                ),
                retry_after: None,
            }));
        };
        let field = format!("spec.azureRoles[{i}].scope");
        let id = desired::answered_scope(&field, &scope.resource_id, &answered).map_err(Outcome::Stalled)?;
        let roles = role_guids(fresh, scope).await?;
        facts.push(ScopeFacts { id, roles });
    }
    Ok(facts)
}

/// The grant's roles with their role definition GUIDs: GUIDs as they are, names through roleDefinitions.
async fn role_guids(fresh: Fresh<'_>, grant: &DesiredGrant) -> Result<Vec<ResolvedRole>, Outcome> {
    let mut roles = Vec::with_capacity(grant.roles.len());
    for ListedRole { written, role } in &grant.roles {
        let guid = match role {
            RoleRef::Id(guid) => guid.to_string(),
            RoleRef::Name(name) => fresh
                .role(&grant.resource_id, name)
                .await
                .map_err(|e| azure_failure(Part::RoleAssignments, &e))?,
        };
        roles.push(ResolvedRole { written: written.clone(), guid });
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{
        api::binding::{ScopedRoles, WorkloadIdentityBindingSpec},
        azure::arm::testing,
        core::{
            settings::{Ceiling, OperatorSettings},
            validate,
        },
    };

    const BLOB_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";

    fn storage(group: &str, account: &str) -> String {
        let sub = OperatorSettings::example().subscription_id;
        format!(
            "/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/{account}"
        )
    }

    /// Azure answers the GET of the second scope with another resource's id (no spelling that could make it
    /// do so parses any more; this is the check that does not rely on that): the binding stalls with
    /// InvalidSpec naming that scope's field, both ids, before any write.
    #[tokio::test]
    async fn a_scope_azure_answers_at_another_id_stalls_before_any_write() {
        let (mine, judged, elsewhere) =
            (storage("rg-team", "teamdata"), storage("rg-team", "teamlogs"), storage("rg-shop", "shopdata"));
        let answered_elsewhere = elsewhere.clone();
        let (api, recorder) = testing::api(Box::new(move |_, url| {
            let path = url.path();
            if path.ends_with("/providers/Microsoft.Storage") {
                json!({"resourceTypes": [{"resourceType": "storageAccounts", "apiVersions": ["2023-05-01"]}]})
            } else if path.ends_with("teamlogs") {
                json!({"id": answered_elsewhere})
            } else {
                json!({"id": path})
            }
        }));
        let spec = WorkloadIdentityBindingSpec {
            service_account_name: "orders".into(),
            azure_roles: [&mine, &judged]
                .map(|scope| ScopedRoles { scope: scope.clone(), roles: vec![BLOB_READER.into()] })
                .to_vec(),
            ..Default::default()
        };
        let settings = OperatorSettings::example();
        let desired = validate::validate("shop", "orders", &spec, &settings, &Ceiling::default())
            .unwrap_or_else(|e| panic!("{e:?}"));
        let owner =
            Owner { cluster: "c".into(), namespace: "shop".into(), binding: "orders".into(), uid: None };
        let Err(Outcome::Stalled(failure)) = resolve(Fresh::new(&api), owner, &desired, None).await else {
            panic!("the binding must stall");
        };
        assert_eq!((failure.part, failure.reason), (Part::RoleAssignments, Reason::InvalidSpec));
        for named in ["spec.azureRoles[1].scope", &judged, &elsewhere] {
            assert!(failure.message.contains(named), "{named}: {}", failure.message);
        }
        assert!(recorder.sent().iter().all(|(method, _)| method == "GET"), "{:?}", recorder.sent());
    }
}
