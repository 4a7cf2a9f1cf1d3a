//! From a validated binding and what Azure says of its vaults, to the Azure state it wants ([`azure_state`]),
//! and from that and the identity's ids, to the status's record of what it holds ([`held`]). Pure: the reads
//! happen in the reconcile's resolve step.

use crate::core::reason::Reason;
use crate::{
    api::binding::{FederatedCredentialStatus, IdentityStatus, WorkloadIdentityBindingStatus},
    core::{
        grants::{self, access_policies, role_assignments},
        plan::{DesiredAzure, Federation, IdentityIds, ManagedIdentity, Owner},
        proof::{self, Listing},
        report::{Failure, Held, Part},
        resource_id::ResourceId,
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
    pub roles: Vec<ResolvedRole>,
    /// The data plane's address, for verification.
    pub uri: Option<String>,
}

/// An azureRoles scope that exists, with the binding's roles on it resolved to role definition GUIDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeFacts {
    /// The id Azure answered the scope's GET with ([`answered_scope`]): what the status and the audit log
    /// name.
    pub id: ResourceId,
    pub roles: Vec<ResolvedRole>,
}

/// A role as the spec writes it, and the GUID of its role definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRole {
    pub written: String,
    pub guid: String,
}

/// The scope at `field` (`spec.azureRoles[0].scope`) as Azure answered its GET (`answered`, the `id` of the
/// answer), when that is the scope idbind judged (`judged`); ARM compares ids without regard to case, and so
/// does this. Anything else means the GET reached another resource than the one the ceiling and the policies
/// allowed, so the binding stalls with `InvalidSpec` before any write: the role assignment would land there
/// too.
pub fn answered_scope(field: &str, judged: &ResourceId, answered: &str) -> Result<ResourceId, Failure> {
    match ResourceId::parse(answered) {
        Ok(id) if id == *judged => Ok(id),
        _ => Err(Failure {
            part: Part::RoleAssignments,
            reason: Reason::InvalidSpec,
            message: format!(
                "{field}: idbind judged the scope {judged}, but Azure answered its GET with the id \
                 {answered:?}; a role assignment would land there, so nothing is written. Write the scope as \
                 Azure shows it"
            ),
            retry_after: None,
        }),
    }
}

/// How verification proves the binding's access to one vault: the listing its roles allow, at its address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultProbe {
    pub vault: ResourceId,
    pub uri: String,
    pub listing: Listing,
}

/// One role assignment the binding wants, and its role as the user wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedAssignment {
    pub wanted: role_assignments::Wanted,
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
    /// How to prove access to each vault (those whose roles idbind can prove and whose address ARM gave).
    pub probes: Vec<VaultProbe>,
}

/// The Azure state `desired` wants, given what Azure says of its vaults and scopes. A vault that uses Azure
/// RBAC gets role assignments; one that still uses access policies gets the equivalent access policy (reader
/// roles only, see [`roles::access_policy_for`]): any other role there stalls the binding. Each scope gets
/// one role assignment per role (verification proves vaults only: idbind has no data plane of its own to list
/// for other services).
pub fn azure_state(
    desired: &DesiredBinding,
    owner: Owner,
    vaults: &[VaultFacts],
    scopes: &[ScopeFacts],
    status: Option<&WorkloadIdentityBindingStatus>,
) -> Result<Wanted, Failure> {
    let mut assignments = Vec::new();
    let mut access_policies = Vec::new();
    let mut probes = Vec::new();
    for vault in vaults {
        let probe = |listing: Option<Listing>| {
            Some(VaultProbe { vault: vault.id.clone(), uri: vault.uri.clone()?, listing: listing? })
        };
        if vault.rbac {
            // Each role is an assignment of its own, effective after its own delay: one listing per kind of
            // object the roles read (a vault with Secrets User and Certificate User is proven through both).
            let mut listings: Vec<Listing> = Vec::new();
            for listing in vault.roles.iter().filter_map(|r| proof::listing_for_role(&r.guid)) {
                if !listings.contains(&listing) {
                    listings.push(listing);
                }
            }
            probes.extend(listings.into_iter().filter_map(|listing| probe(Some(listing))));
            assignments.extend(vault.roles.iter().map(|r| WantedAssignment {
                wanted: role_assignments::Wanted { scope: vault.id.clone(), role_guid: r.guid.clone() },
                written: r.written.clone(),
            }));
            continue;
        }
        let permissions = access_policy(vault)?;
        probes.extend(probe(proof::listing_for_permissions(&permissions)));
        if !permissions.is_empty() {
            access_policies.push((vault.id.clone(), permissions));
        }
    }
    for scope in scopes {
        assignments.extend(scope.roles.iter().map(|r| WantedAssignment {
            wanted: role_assignments::Wanted { scope: scope.id.clone(), role_guid: r.guid.clone() },
            written: r.written.clone(),
        }));
    }
    let identity = desired.identity.id().clone();
    let managed_identity = match &desired.identity {
        DesiredIdentity::Managed { id, location, tags } => {
            Some(ManagedIdentity { resource_id: id.clone(), location: location.clone(), tags: tags.clone() })
        }
        DesiredIdentity::Existing { .. } => None,
    };
    let role_assignments = role_assignments::Desired {
        wanted: assignments.iter().map(|a| a.wanted.clone()).collect(),
        subscriptions: subscriptions_of(role_assignments::held_scopes(status)),
    };
    let access_policies =
        access_policies::Desired { wanted: access_policies, held: access_policies::held(status) };
    let azure = DesiredAzure {
        owner,
        managed_identity,
        federation: Federation {
            name: desired.federated_credential_name.clone(),
            issuer: desired.issuer.clone(),
            subject: desired.subject.clone(),
        },
        grants: grants::Desired { role_assignments, access_policies },
        operator_client_id: desired.operator_client_id.clone(),
    };
    Ok(Wanted { identity, azure, assignments, probes })
}

/// The access policy that grants on `vault` what its roles grant, each role a reader role.
fn access_policy(vault: &VaultFacts) -> Result<Permissions, Failure> {
    let mut permissions = Permissions::default();
    for ResolvedRole { written, guid } in &vault.roles {
        let Some(granted) = roles::access_policy_for(guid) else {
            let message = format!(
                "vault {} uses access policies, and role {written:?} has no read-only access-policy equivalent; \
                 switch the vault to Azure RBAC or ask for a Key Vault reader role",
                vault.id
            );
            return Err(Failure {
                part: Part::RoleAssignments,
                reason: Reason::AccessPolicyRoleUnsupported,
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
    let principal = &ids.principal_id;
    let role_assignments = wanted
        .assignments
        .iter()
        .map(|a| role_assignments::status(&a.wanted, &a.written, principal))
        .collect();
    let policies = &desired.grants.access_policies.wanted;
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
            name: desired.federation.name.clone(),
            issuer: desired.federation.issuer.clone(),
            subject: desired.federation.subject.clone(),
        },
        role_assignments,
        access_policies: policies.iter().map(|(vault, p)| access_policies::status(vault, p)).collect(),
    }
}

/// Each subscription of `ids`, once (GUIDs compare without regard to case).
pub fn subscriptions_of(ids: impl IntoIterator<Item = ResourceId>) -> Vec<String> {
    let mut subscriptions: Vec<String> = Vec::new();
    for id in ids {
        if let Some(s) =
            id.subscription().filter(|s| !subscriptions.iter().any(|have| have.eq_ignore_ascii_case(s)))
        {
            subscriptions.push(s.to_string());
        }
    }
    subscriptions
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
                .filter_map(|r| r.role.builtin().and_then(|b| roles::access_policy_for(b.guid)))
                .fold(Permissions::default(), |acc, p| acc.union(&p));
            (v.resource_id.clone(), granted)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::binding::AccessPolicyStatus,
        core::{
            naming,
            resource_id::{KEY_VAULT, ROLE_ASSIGNMENT, USER_ASSIGNED_IDENTITY},
            validate::{DesiredGrant, ListedRole},
        },
    };

    const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
    const SECRETS_OFFICER: &str = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";

    fn vault(name: &str) -> ResourceId {
        ResourceId::resource_group_scope("s", "rg-kv").provider_resource(KEY_VAULT, name)
    }

    /// The (scope, role GUID) of each role assignment the planner is given.
    fn assigned(wanted: &Wanted) -> Vec<(ResourceId, String)> {
        let wanted = &wanted.azure.grants.role_assignments.wanted;
        wanted.iter().map(|w| (w.scope.clone(), w.role_guid.clone())).collect()
    }

    fn binding(vaults: &[&str]) -> DesiredBinding {
        let id = ResourceId::resource_group_scope("s", "rg").provider_resource(USER_ASSIGNED_IDENTITY, "id1");
        DesiredBinding {
            identity: DesiredIdentity::Managed {
                id,
                location: "westeurope".into(),
                tags: Default::default(),
            },
            operator_client_id: None,
            federated_credential_name: "fic".into(),
            issuer: "https://issuer/".into(),
            subject: "system:serviceaccount:shop:app".into(),
            vaults: vaults
                .iter()
                .map(|v| DesiredGrant {
                    resource_id: vault(v),
                    roles: vec![ListedRole {
                        written: "Key Vault Secrets User".into(),
                        role: roles::RoleRef::parse(SECRETS_USER),
                    }],
                })
                .collect(),
            scopes: Vec::new(),
            deletion_policy: Default::default(),
        }
    }

    fn owner() -> Owner {
        Owner {
            cluster: "aks".into(),
            namespace: "shop".into(),
            binding: "app".into(),
            uid: Some("u".into()),
        }
    }

    fn facts(name: &str, rbac: bool, roles: &[&str]) -> VaultFacts {
        VaultFacts {
            id: vault(name),
            rbac,
            roles: roles
                .iter()
                .map(|g| ResolvedRole { written: format!("role {g}"), guid: g.to_string() })
                .collect(),
            uri: Some(format!("https://{name}.vault.azure.net/")),
        }
    }

    #[test]
    fn rbac_vaults_get_role_assignments_and_access_policy_vaults_get_reader_policies() {
        let vaults = [
            facts("kv-rbac", true, &[SECRETS_USER, SECRETS_OFFICER]),
            facts("kv-legacy", false, &[SECRETS_USER]),
        ];
        let wanted = azure_state(&binding(&["kv-rbac", "kv-legacy"]), owner(), &vaults, &[], None)
            .unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(
            assigned(&wanted),
            vec![
                (vault("kv-rbac"), SECRETS_USER.to_string()),
                (vault("kv-rbac"), SECRETS_OFFICER.to_string())
            ]
        );
        let policies = &wanted.azure.grants.access_policies.wanted;
        let secrets: Vec<_> = policies.iter().map(|(v, p)| (v.clone(), p.secrets.clone())).collect();
        assert_eq!(secrets, vec![(vault("kv-legacy"), ["get".to_string(), "list".to_string()].into())]);
        assert_eq!(wanted.identity.name(), Some("id1"));
        assert!(wanted.azure.managed_identity.is_some());
    }

    #[test]
    fn each_kind_of_object_an_rbac_vaults_roles_read_is_proven_once_and_an_access_policy_once() {
        const CERT_USER: &str = "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba";
        const READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";
        let vaults = [
            facts("kv-rbac", true, &[SECRETS_USER, CERT_USER, READER]),
            facts("kv-legacy", false, &[SECRETS_USER]),
        ];
        let wanted = azure_state(&binding(&["kv-rbac", "kv-legacy"]), owner(), &vaults, &[], None)
            .unwrap_or_else(|f| panic!("{f:?}"));
        let probes: Vec<(Option<&str>, Listing)> =
            wanted.probes.iter().map(|p| (p.vault.name(), p.listing)).collect();
        assert_eq!(
            probes,
            vec![
                (Some("kv-rbac"), Listing::Secrets),
                (Some("kv-rbac"), Listing::Certificates),
                (Some("kv-legacy"), Listing::Secrets)
            ]
        );
    }

    #[test]
    fn each_scope_gets_one_assignment_per_role_and_no_probe() {
        const BLOB_READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
        let storage = ResourceId::parse(
            "/subscriptions/s/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/shopdata",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let scopes = [ScopeFacts {
            id: storage.clone(),
            roles: vec![ResolvedRole {
                written: "Storage Blob Data Reader".into(),
                guid: BLOB_READER.into(),
            }],
        }];
        let vaults = [facts("kv-rbac", true, &[SECRETS_USER])];
        let wanted = azure_state(&binding(&["kv-rbac"]), owner(), &vaults, &scopes, None)
            .unwrap_or_else(|f| panic!("{f:?}"));
        assert_eq!(
            assigned(&wanted),
            vec![(vault("kv-rbac"), SECRETS_USER.to_string()), (storage.clone(), BLOB_READER.to_string())]
        );
        assert_eq!(wanted.probes.len(), 1, "only the vault is proven by a listing");
        assert_eq!(wanted.assignments[1].written, "Storage Blob Data Reader");
    }

    #[test]
    fn a_scope_counts_only_at_the_id_azure_answered_for_it() {
        const FIELD: &str = "spec.azureRoles[2].scope";
        let judged = ResourceId::parse(
            "/subscriptions/s/resourceGroups/rg-team/providers/Microsoft.Storage/storageAccounts/teamdata",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // The same id in Azure's own casing: the scope, named as Azure names it.
        let azures =
            "/subscriptions/S/resourceGroups/RG-Team/providers/microsoft.storage/storageAccounts/TeamData";
        assert_eq!(answered_scope(FIELD, &judged, azures).map(|id| id.to_string()), Ok(azures.to_string()));
        for answered in [
            "/subscriptions/s/resourceGroups/rg-shop/providers/Microsoft.KeyVault/vaults/kv-shop",
            "/subscriptions/s/resourceGroups/rg-team",
            "/subscriptions/s",
            "/subscriptions/s/resourceGroups/rg-team/providers/Microsoft.Storage/storageAccounts/teamdata/x/y",
            r"/subscriptions/s/resourceGroups/rg-team/providers/Microsoft.Storage/storageAccounts/teamdata\",
            "",
        ] {
            let failure = answered_scope(FIELD, &judged, answered).err();
            assert_eq!(
                failure.as_ref().map(|f| (f.part, f.reason, f.retry_after)),
                Some((Part::RoleAssignments, Reason::InvalidSpec, None)),
                "{answered:?}"
            );
            let message = failure.map(|f| f.message).unwrap_or_default();
            assert!(
                message.contains(FIELD)
                    && message.contains(&judged.to_string())
                    && message.contains(&format!("{answered:?}")),
                "{message}"
            );
        }
    }

    #[test]
    fn a_write_role_on_an_access_policy_vault_stalls() {
        let vaults = [facts("kv-legacy", false, &[SECRETS_OFFICER])];
        let failure = azure_state(&binding(&["kv-legacy"]), owner(), &vaults, &[], None).err();
        assert_eq!(
            failure.map(|f| (f.part, f.reason)),
            Some((Part::RoleAssignments, Reason::AccessPolicyRoleUnsupported))
        );
    }

    #[test]
    fn the_status_names_each_assignment_by_its_id() {
        let vaults = [facts("kv-rbac", true, &[SECRETS_USER])];
        let wanted = azure_state(&binding(&["kv-rbac"]), owner(), &vaults, &[], None)
            .unwrap_or_else(|f| panic!("{f:?}"));
        let ids = IdentityIds {
            resource_id: wanted.identity.clone(),
            client_id: "c".into(),
            principal_id: "p".into(),
            tenant_id: "t".into(),
        };
        let held = held(&wanted, &ids);
        let name = naming::role_assignment_name(&vault("kv-rbac"), SECRETS_USER, "p");
        let status = &held.role_assignments[0];
        assert_eq!(
            status.id,
            vault("kv-rbac").provider_resource(ROLE_ASSIGNMENT, &name.to_string()).to_string()
        );
        assert_eq!(
            status.role_definition_id,
            format!("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_USER}")
        );
        assert_eq!((held.identity.name.as_str(), held.identity.managed), ("id1", true));
    }

    #[test]
    fn held_policies_are_read_back_from_the_status_and_unparsable_ids_hold_nothing() {
        let status = WorkloadIdentityBindingStatus {
            access_policies: vec![
                AccessPolicyStatus {
                    vault_id: vault("kv").to_string(),
                    secrets: vec!["get".into()],
                    ..Default::default()
                },
                AccessPolicyStatus {
                    vault_id: "not-an-id".into(),
                    secrets: vec!["get".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let held = access_policies::held(Some(&status));
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].0, vault("kv"));
    }
}
