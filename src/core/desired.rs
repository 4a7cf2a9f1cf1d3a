//! From a validated binding and what Azure says of its vaults, to the Azure state it wants ([`azure_state`]),
//! and from that and the identity's ids, to the status's record of what it holds ([`held`]). Pure: the reads
//! happen in the reconcile's resolve step.

use crate::{
    api::binding::{
        AccessPolicyStatus, FederatedCredentialStatus, IdentityStatus, RoleAssignmentStatus,
        WorkloadIdentityBindingStatus,
    },
    core::{
        naming,
        plan::{DesiredAzure, IdentityIds, ManagedIdentity, Owner},
        report::{Failure, Held, Part},
        resource_id::{ROLE_ASSIGNMENT, ROLE_DEFINITION, ResourceId},
        roles::{self, Permissions},
        validate::{DesiredBinding, DesiredIdentity},
    },
};

/// What Azure says of one vault a binding names, with the binding's roles on it resolved to role definition
/// GUIDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultFacts {
    pub id: ResourceId,
    /// `enableRbacAuthorization`: role assignments apply; otherwise access policies do.
    pub rbac: bool,
    /// (the role as written, its role definition GUID).
    pub roles: Vec<(String, String)>,
}

/// One role assignment the binding wants: where, which role, and as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedAssignment {
    pub scope: ResourceId,
    pub role_guid: String,
    pub written: String,
}

/// The Azure state a binding wants, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The identity's id (created by idbind, or brought).
    pub identity: ResourceId,
    /// What the planner works from.
    pub azure: DesiredAzure,
    /// The role assignments, as the status records them.
    pub assignments: Vec<WantedAssignment>,
}

/// The Azure state `desired` wants, given what Azure says of its vaults. A vault that uses Azure RBAC gets
/// role assignments; one that still uses access policies gets the equivalent access policy (reader roles
/// only, see [`roles::access_policy_for`]): any other role there stalls the binding.
pub fn azure_state(
    desired: &DesiredBinding,
    owner: Owner,
    vaults: &[VaultFacts],
    held_access_policies: Vec<(ResourceId, Permissions)>,
) -> Result<Wanted, Failure> {
    let mut assignments = Vec::new();
    let mut access_policies = Vec::new();
    for vault in vaults {
        if vault.rbac {
            assignments.extend(vault.roles.iter().map(|(written, guid)| WantedAssignment {
                scope: vault.id.clone(),
                role_guid: guid.clone(),
                written: written.clone(),
            }));
            continue;
        }
        let permissions = access_policy(vault)?;
        if !permissions.is_empty() {
            access_policies.push((vault.id.clone(), permissions));
        }
    }
    let identity = desired.identity.id().clone();
    let managed_identity = match &desired.identity {
        DesiredIdentity::Managed { id, location, tags } => {
            Some(ManagedIdentity { resource_id: id.clone(), location: location.clone(), tags: tags.clone() })
        }
        DesiredIdentity::Existing { .. } => None,
    };
    let azure = DesiredAzure {
        owner,
        managed_identity,
        fic_name: desired.federated_credential_name.clone(),
        issuer: desired.issuer.clone(),
        subject: desired.subject.clone(),
        role_assignments: assignments.iter().map(|a| (a.scope.clone(), a.role_guid.clone())).collect(),
        access_policies,
        held_access_policies,
    };
    Ok(Wanted { identity, azure, assignments })
}

/// The access policy that grants on `vault` what its roles grant, each role a reader role.
fn access_policy(vault: &VaultFacts) -> Result<Permissions, Failure> {
    let mut permissions = Permissions::default();
    for (written, guid) in &vault.roles {
        let Some(granted) = roles::access_policy_for(guid) else {
            let message = format!(
                "vault {} uses access policies, and role {written:?} has no read-only access-policy equivalent; \
                 switch the vault to Azure RBAC or ask for a Key Vault reader role",
                vault.id
            );
            return Err(Failure {
                part: Part::RoleAssignments,
                reason: "AccessPolicyRoleUnsupported",
                message,
                retry_after: None,
            });
        };
        permissions = permissions.union(&granted);
    }
    Ok(permissions)
}

/// What the binding holds once Azure matches `wanted`, for the status: the identity's ids, the FIC, each role
/// assignment by its id, and the access policies granted.
pub fn held(wanted: &Wanted, ids: &IdentityIds) -> Held {
    let desired = &wanted.azure;
    let role_assignments = wanted
        .assignments
        .iter()
        .map(|a| {
            let name = naming::role_assignment_name(&a.scope, &a.role_guid, &ids.principal_id);
            let definition = a.scope.subscription().map(ResourceId::subscription_scope);
            RoleAssignmentStatus {
                id: a.scope.provider_resource(ROLE_ASSIGNMENT, &name.to_string()).to_string(),
                scope: a.scope.to_string(),
                role_definition_id: definition.map_or_else(
                    || a.role_guid.clone(),
                    |d| d.provider_resource(ROLE_DEFINITION, &a.role_guid).to_string(),
                ),
                role: Some(a.written.clone()),
            }
        })
        .collect();
    let access_policies = desired
        .access_policies
        .iter()
        .map(|(vault, p)| AccessPolicyStatus {
            vault_id: vault.to_string(),
            secrets: p.secrets.iter().cloned().collect(),
            keys: p.keys.iter().cloned().collect(),
            certificates: p.certificates.iter().cloned().collect(),
        })
        .collect();
    Held {
        identity: IdentityStatus {
            resource_id: ids.resource_id.to_string(),
            name: ids.resource_id.name().unwrap_or_default().to_string(),
            client_id: Some(ids.client_id.clone()),
            principal_id: Some(ids.principal_id.clone()),
            tenant_id: Some(ids.tenant_id.clone()),
            managed: desired.managed_identity.is_some(),
        },
        federated_credential: FederatedCredentialStatus {
            name: desired.fic_name.clone(),
            issuer: desired.issuer.clone(),
            subject: desired.subject.clone(),
        },
        role_assignments,
        access_policies,
    }
}

/// The access policies a status says idbind granted (entries whose vault id does not parse grant nothing).
pub fn held_access_policies(
    status: Option<&WorkloadIdentityBindingStatus>,
) -> Vec<(ResourceId, Permissions)> {
    let set = |v: &[String]| v.iter().cloned().collect();
    let held = status.map(|s| s.access_policies.as_slice()).unwrap_or_default();
    held.iter()
        .filter_map(|a| {
            let vault = ResourceId::parse(&a.vault_id).ok()?;
            let permissions = Permissions {
                secrets: set(&a.secrets),
                keys: set(&a.keys),
                certificates: set(&a.certificates),
            };
            Some((vault, permissions))
        })
        .collect()
}

/// The access policies `desired` would grant on its vaults if they all used access policies: what a cleanup
/// takes back in case the grant landed and the status write did not.
pub fn access_policies_of_spec(desired: &DesiredBinding) -> Vec<(ResourceId, Permissions)> {
    desired
        .vaults
        .iter()
        .map(|v| {
            let granted = v
                .roles
                .iter()
                .filter_map(|(_, r)| r.builtin().and_then(|b| roles::access_policy_for(b.guid)))
                .fold(Permissions::default(), |acc, p| acc.union(&p));
            (v.resource_id.clone(), granted)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect()
}
