//! Microsoft.KeyVault 2023-07-01: vault reads and deletes, and the access-policy update operation (`PUT
//! …/vaults/{name}/accessPolicies/{add|replace|remove}`), as docs/azure.md#key-vault-management describes
//! them.

use axum::http::Method;
use serde_json::{Value, json};

use super::{ArmRequest, ArmResponse, Route};
use crate::error::ArmError;
use crate::harness::clock::format_ms;
use crate::shared::Sim;
use crate::state::{AccessPolicy, State, Vault, key};

const VAULT_TYPE: &str = "Microsoft.KeyVault/vaults";

pub fn vault_id(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{VAULT_TYPE}/{name}")
}

/// The 2023-07-01 vault shape (getVault.json), with `enableRbacAuthorization` and the soft delete settings
/// that real vaults return. `hsmPoolResourceId` of the example is not returned: it is a deprecated field that
/// standard vaults do not carry. `vaultUri` is `https://{name}.{dns_suffix}/` (public cloud:
/// `vault.azure.net`), as ARM returns it.
pub fn render_vault(sub: &str, rg: &str, v: &Vault, dns_suffix: &str) -> Value {
    let created = format_ms(v.created_at_ms);
    json!({
        "id": vault_id(sub, rg, &v.name),
        "name": v.name,
        "type": VAULT_TYPE,
        "location": v.location,
        "tags": v.tags,
        "systemData": {
            "createdBy": "idbind-sim", "createdByType": "Application", "createdAt": created,
            "lastModifiedBy": "idbind-sim", "lastModifiedByType": "Application", "lastModifiedAt": created,
        },
        "properties": {
            "sku": { "family": "A", "name": v.sku_name },
            "tenantId": v.tenant_id,
            "accessPolicies": v.access_policies,
            "enabledForDeployment": false,
            "enabledForDiskEncryption": false,
            "enabledForTemplateDeployment": false,
            "enableSoftDelete": true,
            "softDeleteRetentionInDays": 90,
            "enableRbacAuthorization": v.enable_rbac_authorization,
            "vaultUri": format!("https://{}.{dns_suffix}/", v.name),
            "provisioningState": "Succeeded",
            "publicNetworkAccess": "Enabled",
        },
    })
}

/// Vaults_Delete: 200 when the vault was there, 204 when it was not [DOC: the generated Az.KeyVault client
/// handles exactly these two]. The vault and its objects are gone at once: soft delete (the `deletedVaults` a
/// real vault moves to for its retention) is not simulated.
async fn delete_vault(sim: &Sim, sub: &str, rg: &str, name: &str) -> Result<ArmResponse, ArmError> {
    sim.write(|s| {
        super::resource_group(s, sub, rg)?;
        let removed = s.resource_group_mut(sub, rg).and_then(|g| g.vaults.remove(&key(name)));
        Ok(ArmResponse::status(match removed {
            Some(_) => axum::http::StatusCode::OK,
            None => axum::http::StatusCode::NO_CONTENT,
        }))
    })
    .await
}

fn find<'a>(s: &'a State, sub: &str, rg: &str, name: &str) -> Result<(String, String, &'a Vault), ArmError> {
    let (subscription, group) = super::resource_group(s, sub, rg)?;
    let vault =
        group.vaults.get(&key(name)).ok_or_else(|| ArmError::resource_not_found(VAULT_TYPE, name, rg))?;
    Ok((subscription.id.clone(), group.name.clone(), vault))
}

pub async fn handle(sim: &Sim, req: &ArmRequest) -> Result<ArmResponse, ArmError> {
    match (&req.route, &req.method) {
        (Route::Vault { sub, rg, name }, &Method::GET) => sim.read(|s| {
            let (sub, rg, v) = find(s, sub, rg, name)?;
            Ok(ArmResponse::ok(render_vault(&sub, &rg, v, crate::kv::primary_suffix(&sim.config.keyvault))))
        }),
        (Route::Vault { sub, rg, name }, &Method::DELETE) => delete_vault(sim, sub, rg, name).await,
        (Route::VaultAccessPolicy { sub, rg, name, kind }, &Method::PUT) => {
            update_access_policy(sim, req, sub, rg, name, kind).await
        }
        _ => Err(ArmError::method_not_allowed(&req.method)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Add,
    Replace,
    Remove,
}

fn merge(into: &mut Vec<String>, add: &[String]) {
    for p in add {
        if !into.iter().any(|x| x.eq_ignore_ascii_case(p)) {
            into.push(p.clone());
        }
    }
}

/// Applies one operation to a vault's policies, as Key Vault does: `add` unions the permissions of an
/// object's entry (creating it), `replace` sets the entry, `remove` takes the listed permissions away and
/// drops an entry left empty.
fn apply(policies: &mut Vec<AccessPolicy>, kind: Kind, changes: &[AccessPolicy]) {
    for change in changes {
        let same = |p: &AccessPolicy| {
            p.object_id.eq_ignore_ascii_case(&change.object_id)
                && p.tenant_id.eq_ignore_ascii_case(&change.tenant_id)
                && p.application_id == change.application_id
        };
        let pos = policies.iter().position(same);
        match (kind, pos) {
            (Kind::Add, Some(i)) => {
                let mut current = policies[i].permissions.clone();
                let mut wanted = change.permissions.clone();
                for (c, w) in current.lists_mut().into_iter().zip(wanted.lists_mut()) {
                    merge(c, w);
                }
                policies[i].permissions = current;
            }
            (Kind::Add | Kind::Replace, None) => policies.push(change.clone()),
            (Kind::Replace, Some(i)) => policies[i] = change.clone(),
            (Kind::Remove, Some(i)) => {
                let mut current = policies[i].permissions.clone();
                let mut gone = change.permissions.clone();
                for (c, g) in current.lists_mut().into_iter().zip(gone.lists_mut()) {
                    c.retain(|p| !g.iter().any(|x| x.eq_ignore_ascii_case(p)));
                }
                // An entry sent with no permissions at all removes the whole entry.
                if current.is_empty() || change.permissions.is_empty() {
                    policies.remove(i);
                } else {
                    policies[i].permissions = current;
                }
            }
            (Kind::Remove, None) => {}
        }
    }
}

async fn update_access_policy(
    sim: &Sim,
    req: &ArmRequest,
    sub: &str,
    rg: &str,
    name: &str,
    kind: &str,
) -> Result<ArmResponse, ArmError> {
    let op = match kind.to_ascii_lowercase().as_str() {
        "add" => Kind::Add,
        "replace" => Kind::Replace,
        "remove" => Kind::Remove,
        _ => {
            return Err(ArmError::bad_request(
                "BadRequest",
                format!(
                    "The access policy operation kind '{kind}' is invalid. Allowed values are 'add', \
                     'replace' and 'remove'."
                ),
            ));
        }
    };
    sim.read(|s| find(s, sub, rg, name).map(|_| ()))?;
    let body = req.json()?;
    let policies = body
        .pointer("/properties/accessPolicies")
        .ok_or_else(|| ArmError::invalid_content("The 'properties.accessPolicies' property is required"))?;
    let changes: Vec<AccessPolicy> =
        serde_json::from_value(policies.clone()).map_err(ArmError::invalid_content)?;
    for c in &changes {
        if c.tenant_id.trim().is_empty() {
            return Err(ArmError::bad_request("BadRequest", "An access policy needs a tenantId."));
        }
        if c.object_id.trim().is_empty() {
            return Err(ArmError::bad_request("BadRequest", "An access policy needs an objectId."));
        }
    }
    // Vaults on the RBAC model keep accepting access-policy writes (they are stored but not used for
    // data-plane authorization) [UNVERIFIED, our reading of the portal's behaviour].
    sim.write(|s| {
        let (sub_id, rg_name, _) = find(s, sub, rg, name)?;
        let vault = s.resource_group_mut(&sub_id, &rg_name).and_then(|g| g.vaults.get_mut(&key(name))).ok_or_else(|| ArmError::resource_not_found(VAULT_TYPE, name, rg))?;
        apply(&mut vault.access_policies, op, &changes);
        Ok(ArmResponse::ok(json!({
            "id": format!("{}/accessPolicies/{}", vault_id(&sub_id, &rg_name, &vault.name), kind.to_ascii_lowercase()),
            "name": kind.to_ascii_lowercase(),
            "type": "Microsoft.KeyVault/vaults/accessPolicies",
            "location": vault.location,
            "properties": { "accessPolicies": changes },
        })))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::VaultPermissions;

    fn policy(oid: &str, secrets: &[&str]) -> AccessPolicy {
        AccessPolicy {
            tenant_id: "t".into(),
            object_id: oid.into(),
            application_id: None,
            permissions: VaultPermissions {
                secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn add_replace_remove() {
        let mut p = vec![];
        apply(&mut p, Kind::Add, &[policy("a", &["get"])]);
        apply(&mut p, Kind::Add, &[policy("a", &["list", "Get"])]);
        assert_eq!(p, vec![policy("a", &["get", "list"])]);
        apply(&mut p, Kind::Replace, &[policy("a", &["set"])]);
        assert_eq!(p, vec![policy("a", &["set"])]);
        apply(&mut p, Kind::Add, &[policy("b", &["get"])]);
        apply(&mut p, Kind::Remove, &[policy("a", &["set"])]);
        assert_eq!(p, vec![policy("b", &["get"])]);
        apply(&mut p, Kind::Remove, &[policy("b", &[])]);
        assert!(p.is_empty());
    }
}
