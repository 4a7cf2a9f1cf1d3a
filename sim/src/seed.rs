//! Seed documents: what exists before the first request (subscriptions, resource groups, vaults, other
//! resources of `arm::catalog`'s types, app registrations, principals, custom roles and role assignments).
//! Read from a JSON or YAML file, from `idbind-sim` flags, from `SimHandle::seed`, or `POST /_sim/seed`.
//! Applying a seed merges it into the state; applying it twice changes nothing.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::arm::catalog;
use crate::error::SimError;
use crate::state::{
    AccessPolicy, App, BlobContainer, DirectoryObject, Resource, ResourceGroup, RoleAssignment,
    RoleDefinition, RolePermission, State, Subscription, Tags, Vault, key, resource_key,
};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Seed {
    pub subscriptions: Vec<SeedSubscription>,
    pub apps: Vec<SeedApp>,
    pub principals: Vec<SeedPrincipal>,
    pub role_definitions: Vec<SeedRoleDefinition>,
    /// Role assignments as an administrator makes them: what every principal may do in ARM (and, for roles
    /// with data actions, in Key Vault) comes from these alone.
    pub role_assignments: Vec<SeedRoleAssignment>,
    /// Key Vault secrets; the vault must be seeded too (or already exist).
    pub secrets: Vec<SeedSecret>,
    /// Self-signed certificates (with their managed key and secret) and EC keys, made at seeding.
    pub certificates: Vec<SeedVaultObject>,
    pub keys: Vec<SeedVaultObject>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedSecret {
    pub vault: String,
    pub name: String,
    pub value: String,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedVaultObject {
    pub vault: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedSubscription {
    pub id: String,
    pub display_name: Option<String>,
    pub resource_groups: Vec<SeedResourceGroup>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedResourceGroup {
    pub name: String,
    pub location: Option<String>,
    pub tags: Tags,
    pub vaults: Vec<SeedVault>,
    /// Storage accounts, Service Bus and Event Hubs namespaces, container registries, App Configuration
    /// stores (`arm::catalog::SEEDABLE`).
    pub resources: Vec<SeedResource>,
}

/// A resource of one of the catalog's types, e.g. `{"type": "Microsoft.Storage/storageAccounts", "name":
/// "stshop"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedResource {
    /// `Microsoft.Storage/storageAccounts`, `Microsoft.ServiceBus/namespaces`,
    /// `Microsoft.ContainerRegistry/registries`, `Microsoft.AppConfiguration/configurationStores` or
    /// `Microsoft.EventHub/namespaces` (case-insensitive).
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    /// Defaults to the resource group's.
    pub location: Option<String>,
    pub tags: Tags,
    /// `sku.name`; defaults to the type's usual one (`Standard_LRS` for Storage, `Standard` otherwise).
    pub sku: Option<String>,
    /// Storage accounts only; defaults to `StorageV2`.
    pub kind: Option<String>,
    /// Storage accounts only: blob containers (added to an account that already exists too).
    pub containers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedVault {
    pub name: String,
    pub location: Option<String>,
    pub tags: Tags,
    /// Defaults to true: the RBAC permission model is idbind's main path.
    pub enable_rbac_authorization: Option<bool>,
    pub access_policies: Vec<AccessPolicy>,
    pub sku: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedApp {
    pub client_id: String,
    pub client_secret: String,
    /// The service principal's object id; derived from the client id when absent.
    pub object_id: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedPrincipal {
    pub object_id: String,
    /// `User`, `Group`, `ServicePrincipal`; defaults to `User`.
    pub principal_type: Option<String>,
    pub display_name: Option<String>,
}

/// A role assignment, e.g. `{"principalId": "…", "role": "Managed Identity Contributor", "scope":
/// "/subscriptions/…/resourceGroups/rg-identities"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedRoleAssignment {
    /// The principal's object id.
    pub principal_id: String,
    /// A role definition: its name (built-in names match without regard to case), its GUID, or its id
    /// (`…/providers/Microsoft.Authorization/roleDefinitions/{guid}`); built-in or seeded in the same seed.
    pub role: String,
    /// `/` (the tenant root), a subscription, a resource group, or a resource (or something below one).
    pub scope: String,
    /// An ABAC condition (`crate::arm::conditions`), e.g. the delegation condition of Role Based Access
    /// Control Administrator.
    pub condition: Option<String>,
    /// `2.0`, the only version (absent: 2.0).
    pub condition_version: Option<String>,
    /// The assignment's name (a GUID); absent, derived from scope, role and principal, so seeding twice adds
    /// nothing.
    pub name: Option<String>,
    /// Absent: the directory's type for the principal (seeded apps are `ServicePrincipal`), else `User`.
    pub principal_type: Option<String>,
    pub description: Option<String>,
}

impl SeedRoleAssignment {
    /// The assignment's name: as given, or derived from (scope, role, principal).
    pub fn name_for(&self, role_guid: &str) -> String {
        self.name.clone().unwrap_or_else(|| {
            let scope = self.scope.trim_end_matches('/');
            let text = format!("idbind-sim/roleAssignment/{scope}/{role_guid}/{}", self.principal_id);
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, text.to_ascii_lowercase().as_bytes()).to_string()
        })
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedRoleDefinition {
    /// The GUID (any string is accepted, as in the spec's examples).
    pub name: String,
    pub role_name: String,
    pub description: String,
    /// Defaults to `CustomRole`.
    #[serde(rename = "type")]
    pub role_type: Option<String>,
    pub permissions: Vec<RolePermission>,
    pub assignable_scopes: Vec<String>,
    /// The subscription whose id prefix the definition's id carries; none for tenant form.
    pub subscription_id: Option<String>,
}

const DEFAULT_LOCATION: &str = "westeurope";

impl Seed {
    pub fn from_file(path: &Path) -> Result<Self, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| SimError::Read { path: path.to_owned(), source })?;
        crate::config::parse_json_or_yaml(path, &text)
    }

    /// Appends another seed (flags after a file).
    pub fn extend(&mut self, other: Seed) {
        self.subscriptions.extend(other.subscriptions);
        self.apps.extend(other.apps);
        self.principals.extend(other.principals);
        self.role_definitions.extend(other.role_definitions);
        self.role_assignments.extend(other.role_assignments);
        self.secrets.extend(other.secrets);
        self.certificates.extend(other.certificates);
        self.keys.extend(other.keys);
    }

    /// The vault names this seed creates.
    pub fn vault_names(&self) -> Vec<&str> {
        self.subscriptions
            .iter()
            .flat_map(|s| &s.resource_groups)
            .flat_map(|g| &g.vaults)
            .map(|v| v.name.as_str())
            .collect()
    }

    pub fn validate(&self) -> Result<(), SimError> {
        for s in &self.subscriptions {
            if s.id.trim().is_empty() {
                return Err(SimError::Config(String::from("a seeded subscription has an empty id")));
            }
            for rg in &s.resource_groups {
                if rg.name.trim().is_empty() {
                    return Err(SimError::Config(format!(
                        "a resource group in subscription {} has an empty name",
                        s.id
                    )));
                }
                for r in &rg.resources {
                    if catalog::seedable_by_name(&r.resource_type).is_none() {
                        let known: Vec<String> = catalog::SEEDABLE.iter().map(|t| t.canonical()).collect();
                        return Err(SimError::Config(format!(
                            "the resource '{}' has the type '{}', which is not one of {}",
                            r.name,
                            r.resource_type,
                            known.join(", ")
                        )));
                    }
                    let storage =
                        catalog::seedable_by_name(&r.resource_type) == Some(&catalog::STORAGE_ACCOUNTS);
                    if !r.containers.is_empty() && !storage {
                        return Err(SimError::Config(format!(
                            "the resource '{}' has containers, which only Storage accounts have",
                            r.name
                        )));
                    }
                    if r.containers.iter().any(|c| c.trim().is_empty() || c.contains('/')) {
                        return Err(SimError::Config(format!(
                            "the Storage account '{}' has a container with an invalid name",
                            r.name
                        )));
                    }
                    if r.name.trim().is_empty() || r.name.contains('/') {
                        return Err(SimError::Config(format!(
                            "a resource of type '{}' in resource group {} has an invalid name '{}'",
                            r.resource_type, rg.name, r.name
                        )));
                    }
                }
            }
        }
        for a in &self.apps {
            if a.client_id.is_empty() || a.client_secret.is_empty() {
                return Err(SimError::Config(String::from("a seeded app needs clientId and clientSecret")));
            }
        }
        let objects = self.secrets.iter().map(|s| (&s.vault, &s.name));
        let objects = objects.chain(self.certificates.iter().chain(&self.keys).map(|o| (&o.vault, &o.name)));
        for (vault, name) in objects {
            if vault.is_empty() {
                return Err(SimError::Config(format!("the vault object '{name}' names no vault")));
            }
            crate::kv::objects::check_name(name)
                .map_err(|_| SimError::Config(format!("'{name}' is not a valid Key Vault object name")))?;
        }
        for a in &self.role_assignments {
            self.validate_assignment(a)?;
        }
        Ok(())
    }

    fn validate_assignment(&self, a: &SeedRoleAssignment) -> Result<(), SimError> {
        let what = format!("the role assignment of '{}' to '{}' at '{}'", a.role, a.principal_id, a.scope);
        if uuid::Uuid::parse_str(&a.principal_id).is_err() {
            return Err(SimError::Config(format!("{what}: principalId must be an object id (a GUID)")));
        }
        if !a.scope.starts_with('/') {
            return Err(SimError::Config(format!("{what}: the scope must start with '/'")));
        }
        if self.role_guid(a, &[]).is_none() {
            return Err(SimError::Config(format!(
                "{what}: no built-in role and no role definition of this seed is named '{}' or has that GUID",
                a.role
            )));
        }
        if a.name.as_deref().is_some_and(|n| uuid::Uuid::parse_str(n).is_err()) {
            return Err(SimError::Config(format!("{what}: the name must be a GUID")));
        }
        if let Some(condition) = &a.condition {
            crate::arm::conditions::parse_versioned(condition, a.condition_version.as_deref())
                .map_err(|e| SimError::Config(format!("{what}: the condition cannot be evaluated: {e}")))?;
        }
        Ok(())
    }

    /// The GUID of the role `a` names: a built-in role, one of this seed's definitions, or one of `known`.
    fn role_guid(&self, a: &SeedRoleAssignment, known: &[&RoleDefinition]) -> Option<String> {
        let wanted = a.role.trim().trim_end_matches('/');
        let guid = wanted.rsplit('/').next().unwrap_or(wanted);
        let builtins = crate::arm::roles::builtin_role_definitions();
        let mut names = builtins.iter().map(|d| (d.name.as_str(), d.role_name.as_str())).collect::<Vec<_>>();
        names.extend(self.role_definitions.iter().map(|d| (d.name.as_str(), d.role_name.as_str())));
        names.extend(known.iter().map(|d| (d.name.as_str(), d.role_name.as_str())));
        names
            .iter()
            .find(|(g, n)| g.eq_ignore_ascii_case(guid) || n.eq_ignore_ascii_case(wanted))
            .map(|(g, _)| g.to_ascii_lowercase())
    }

    /// Merges the seed into `state`. Existing objects keep what they have (a vault's access policies written
    /// through the API are not reset by re-seeding).
    pub fn apply(&self, state: &mut State, now_ms: u64) {
        let tenant = state.tenant_id.clone();
        for s in &self.subscriptions {
            let sub = state.subscriptions.entry(key(&s.id)).or_insert_with(|| Subscription {
                id: s.id.clone(),
                display_name: s.display_name.clone().unwrap_or_else(|| format!("Subscription {}", s.id)),
                resource_groups: Default::default(),
            });
            for rg in &s.resource_groups {
                let location = rg.location.clone().unwrap_or_else(|| DEFAULT_LOCATION.to_owned());
                let group = sub.resource_groups.entry(key(&rg.name)).or_insert_with(|| ResourceGroup {
                    name: rg.name.clone(),
                    location: location.clone(),
                    tags: rg.tags.clone(),
                    ..Default::default()
                });
                for v in &rg.vaults {
                    group.vaults.entry(key(&v.name)).or_insert_with(|| Vault {
                        name: v.name.clone(),
                        location: v.location.clone().unwrap_or_else(|| location.clone()),
                        tags: v.tags.clone(),
                        tenant_id: tenant.clone(),
                        sku_name: v.sku.clone().unwrap_or_else(|| String::from("standard")),
                        enable_rbac_authorization: v.enable_rbac_authorization.unwrap_or(true),
                        access_policies: v.access_policies.clone(),
                        created_at_ms: now_ms,
                        ..Default::default()
                    });
                }
                for r in &rg.resources {
                    // `validate` refused unknown types; one that slipped through is skipped.
                    let Some(rtype) = catalog::seedable_by_name(&r.resource_type) else { continue };
                    let canonical = rtype.canonical();
                    let location = r.location.clone().unwrap_or_else(|| group.location.clone());
                    let resource =
                        group.resources.entry(resource_key(&canonical, &r.name)).or_insert_with(|| {
                            Resource {
                                resource_type: canonical,
                                name: r.name.clone(),
                                location,
                                tags: r.tags.clone(),
                                sku: r.sku.clone().unwrap_or_else(|| rtype.default_sku.to_owned()),
                                kind: r.kind.clone(),
                                created_at_ms: now_ms,
                                containers: Default::default(),
                            }
                        });
                    for c in &r.containers {
                        resource
                            .containers
                            .entry(key(c))
                            .or_insert_with(|| BlobContainer { name: c.clone(), created_at_ms: now_ms });
                    }
                }
            }
        }
        for a in &self.apps {
            let object_id = a.object_id.clone().unwrap_or_else(|| derived_object_id(&a.client_id));
            state.apps.insert(
                key(&a.client_id),
                App {
                    client_id: a.client_id.clone(),
                    client_secret: a.client_secret.clone(),
                    object_id: object_id.clone(),
                    display_name: a.display_name.clone().unwrap_or_else(|| a.client_id.clone()),
                },
            );
            // Seeded principals exist "since forever": no replication delay applies to them.
            state.directory.entry(key(&object_id)).or_insert_with(|| DirectoryObject {
                object_id,
                principal_type: String::from("ServicePrincipal"),
                display_name: a.display_name.clone().unwrap_or_default(),
                created_at_ms: 0,
            });
        }
        for p in &self.principals {
            state.directory.insert(
                key(&p.object_id),
                DirectoryObject {
                    object_id: p.object_id.clone(),
                    principal_type: p.principal_type.clone().unwrap_or_else(|| String::from("User")),
                    display_name: p.display_name.clone().unwrap_or_default(),
                    created_at_ms: 0,
                },
            );
        }
        self.apply_vault_objects(state, now_ms / 1000);
        for r in &self.role_definitions {
            state.role_definitions.insert(
                key(&r.name),
                RoleDefinition {
                    name: r.name.clone(),
                    role_name: r.role_name.clone(),
                    description: r.description.clone(),
                    role_type: r.role_type.clone().unwrap_or_else(|| String::from("CustomRole")),
                    permissions: r.permissions.clone(),
                    assignable_scopes: r.assignable_scopes.clone(),
                    subscription_id: r.subscription_id.clone(),
                },
            );
        }
        self.apply_role_assignments(state, now_ms);
    }

    /// Seeded assignments exist "since forever": they authorize at once (no propagation window).
    fn apply_role_assignments(&self, state: &mut State, now_ms: u64) {
        for a in &self.role_assignments {
            let known: Vec<&RoleDefinition> = state.role_definitions.values().collect();
            // `validate` refused roles nobody defines; one that slipped through is skipped.
            let Some(guid) = self.role_guid(a, &known) else { continue };
            let name = a.name_for(&guid);
            if state.role_assignments.contains_key(&key(&name)) {
                continue;
            }
            let principal_type = a.principal_type.clone().unwrap_or_else(|| {
                state
                    .directory
                    .get(&key(&a.principal_id))
                    .map_or_else(|| String::from("User"), |p| p.principal_type.clone())
            });
            let definition = state.role_definitions.get(&guid);
            let scope = if a.scope.trim_end_matches('/').is_empty() {
                String::from("/")
            } else {
                a.scope.trim_end_matches('/').to_owned()
            };
            let role_definition_id = crate::arm::authorization::role_definition_id(
                &scope,
                definition.map_or(&guid, |d| &d.name),
                definition,
            );
            state.insert_role_assignment(
                key(&name),
                RoleAssignment {
                    name,
                    scope,
                    role_definition_id,
                    role_definition_guid: guid,
                    principal_id: a.principal_id.clone(),
                    principal_type,
                    description: a.description.clone(),
                    condition: a.condition.clone(),
                    condition_version: a.condition.as_ref().map(|_| {
                        a.condition_version
                            .clone()
                            .unwrap_or_else(|| crate::arm::conditions::CONDITION_VERSION.into())
                    }),
                    delegated_managed_identity_resource_id: None,
                    created_on_ms: now_ms,
                    updated_on_ms: now_ms,
                    created_by: String::new(),
                    updated_by: String::new(),
                    effective_from_ms: 0,
                    parsed_condition: Default::default(),
                },
            );
        }
    }

    /// Adds a role assignment of `role` (a name, GUID or id) to `principal_id` at `scope`.
    pub fn assign(&mut self, principal_id: &str, role: &str, scope: &str) -> &mut SeedRoleAssignment {
        self.role_assignments.push(SeedRoleAssignment {
            principal_id: principal_id.to_owned(),
            role: role.to_owned(),
            scope: scope.to_owned(),
            ..Default::default()
        });
        let last = self.role_assignments.len() - 1;
        &mut self.role_assignments[last]
    }
}

impl Seed {
    /// Secrets get a new version only when their value differs from the current one, certificates and keys
    /// only when they do not exist, so applying a seed twice changes nothing. An object whose vault does not
    /// exist is skipped with a warning (`SimArgs` refuses such flags up front).
    fn apply_vault_objects(&self, state: &mut State, now_s: u64) {
        use crate::kv::objects::{SecretInput, put_certificate, put_key, put_secret};
        let exists = |state: &State, vault: &str, pick: fn(&Vault, &str) -> bool, name: &str| {
            state.vault_by_name(vault).is_some_and(|(_, _, v)| pick(v, name))
        };
        for sec in &self.secrets {
            let current = state.vault_by_name(&sec.vault).and_then(|(_, _, v)| {
                v.secrets.get(&key(&sec.name)).and_then(|o| o.versions.last()).map(|x| x.value.clone())
            });
            if current.as_deref() == Some(sec.value.as_str()) {
                continue;
            }
            let input =
                SecretInput { content_type: sec.content_type.clone(), ..SecretInput::value(&sec.value) };
            if let Err(e) = put_secret(state, &sec.vault, &sec.name, input, now_s) {
                tracing::warn!(vault = %sec.vault, secret = %sec.name, error = %e, "seeded secret not written");
            }
        }
        for c in &self.certificates {
            if !exists(state, &c.vault, |v, n| v.certificates.contains_key(&key(n)), &c.name)
                && let Err(e) = put_certificate(state, &c.vault, &c.name, now_s)
            {
                tracing::warn!(vault = %c.vault, certificate = %c.name, error = %e, "seeded certificate not made");
            }
        }
        for k in &self.keys {
            if !exists(state, &k.vault, |v, n| v.keys.contains_key(&key(n)), &k.name)
                && let Err(e) = put_key(state, &k.vault, &k.name, now_s)
            {
                tracing::warn!(vault = %k.vault, key = %k.name, error = %e, "seeded key not made");
            }
        }
    }
}

/// Parses `VAULT/NAME=VALUE` (the `--secret` flag); the value may contain anything, `=` included.
pub fn parse_secret_flag(s: &str) -> Result<SeedSecret, String> {
    let parsed = s.split_once('=').and_then(|(path, value)| {
        let (vault, name) = path.split_once('/')?;
        (!vault.is_empty() && !name.is_empty() && !name.contains('/')).then(|| SeedSecret {
            vault: vault.to_owned(),
            name: name.to_owned(),
            value: value.to_owned(),
            content_type: None,
        })
    });
    parsed.ok_or_else(|| format!("expected VAULT/NAME=VALUE, got '{s}'"))
}

/// Parses `OBJECT_ID=ROLE@SCOPE` (the `--role-assignment` flag); the role is a name or a GUID, the scope
/// starts with `/`.
pub fn parse_role_assignment_flag(s: &str) -> Result<SeedRoleAssignment, String> {
    let parsed = s.split_once('=').and_then(|(principal, rest)| {
        let (role, scope) = rest.rsplit_once('@')?;
        (!principal.is_empty() && !role.is_empty() && scope.starts_with('/')).then(|| SeedRoleAssignment {
            principal_id: principal.to_owned(),
            role: role.to_owned(),
            scope: scope.to_owned(),
            ..Default::default()
        })
    });
    parsed.ok_or_else(|| format!("expected OBJECT_ID=ROLE@SCOPE (the scope starting with '/'), got '{s}'"))
}

/// A stable object id for an app seeded without one, so restarts and re-seeds agree.
pub fn derived_object_id(client_id: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("idbind-sim/app/{}", client_id.to_ascii_lowercase()).as_bytes(),
    )
    .to_string()
}

/// Parses `SUB/RG[@LOCATION]` (the `--resource-group` flag).
pub fn parse_rg_flag(s: &str) -> Result<(String, String, Option<String>), String> {
    let (path, location) = match s.split_once('@') {
        Some((p, l)) => (p, Some(l.to_owned())),
        None => (s, None),
    };
    match path.split_once('/') {
        Some((sub, rg)) if !sub.is_empty() && !rg.is_empty() && !rg.contains('/') => {
            Ok((sub.to_owned(), rg.to_owned(), location))
        }
        _ => Err(format!("expected SUBSCRIPTION/RESOURCE_GROUP[@LOCATION], got '{s}'")),
    }
}

/// Parses `SUB/RG/VAULT[@rbac|@policies]` (the `--vault` flag).
pub fn parse_vault_flag(s: &str) -> Result<(String, String, String, bool), String> {
    let (path, mode) = match s.split_once('@') {
        Some((p, m)) => (p, m),
        None => (s, "rbac"),
    };
    let rbac = match mode {
        "rbac" => true,
        "policies" | "accesspolicies" => false,
        other => {
            return Err(format!("vault mode must be 'rbac' or 'policies', got '{other}'"));
        }
    };
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [sub, rg, name] if !sub.is_empty() && !rg.is_empty() && !name.is_empty() => {
            Ok(((*sub).to_owned(), (*rg).to_owned(), (*name).to_owned(), rbac))
        }
        _ => Err(format!("expected SUBSCRIPTION/RESOURCE_GROUP/VAULT[@rbac|@policies], got '{s}'")),
    }
}

/// A resource id's parts: `/subscriptions/{sub}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}`, or
/// a blob container's `…/storageAccounts/{name}/blobServices/default/containers/{container}` (fixed segments
/// in any case), optionally followed by `@LOCATION` (the `--resource` flag).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceIdFlag {
    pub sub: String,
    pub rg: String,
    /// `Microsoft.Storage/storageAccounts`, as written.
    pub resource_type: String,
    pub name: String,
    pub location: Option<String>,
    /// For a blob container's id: the container (`name` is its account).
    pub container: Option<String>,
}

pub fn parse_resource_flag(s: &str) -> Result<ResourceIdFlag, String> {
    let (id, location) = match s.split_once('@') {
        Some((id, l)) if !l.is_empty() => (id, Some(l.to_owned())),
        _ => (s, None),
    };
    let segs: Vec<&str> = id.split('/').filter(|x| !x.is_empty()).collect();
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match segs.as_slice() {
        [sb, sub, r, rg, p, ns, t, name]
            if eq(sb, "subscriptions") && eq(r, "resourceGroups") && eq(p, "providers") =>
        {
            Ok(ResourceIdFlag {
                sub: (*sub).to_owned(),
                rg: (*rg).to_owned(),
                resource_type: format!("{ns}/{t}"),
                name: (*name).to_owned(),
                location,
                container: None,
            })
        }
        [sb, sub, r, rg, p, ns, t, name, b, d, c, container]
            if eq(sb, "subscriptions")
                && eq(r, "resourceGroups")
                && eq(p, "providers")
                && eq(ns, "Microsoft.Storage")
                && eq(t, "storageAccounts")
                && eq(b, "blobServices")
                && eq(d, "default")
                && eq(c, "containers") =>
        {
            Ok(ResourceIdFlag {
                sub: (*sub).to_owned(),
                rg: (*rg).to_owned(),
                resource_type: format!("{ns}/{t}"),
                name: (*name).to_owned(),
                location,
                container: Some((*container).to_owned()),
            })
        }
        _ => Err(format!(
            "expected /subscriptions/SUB/resourceGroups/RG/providers/NAMESPACE/TYPE/NAME[@LOCATION], got '{s}'"
        )),
    }
}

/// Parses `CLIENT_ID:SECRET[:OBJECT_ID]` (the `--app` flag).
pub fn parse_app_flag(s: &str) -> Result<SeedApp, String> {
    let parts: Vec<&str> = s.splitn(3, ':').collect();
    match parts.as_slice() {
        [id, secret] if !id.is_empty() && !secret.is_empty() => Ok(SeedApp {
            client_id: (*id).to_owned(),
            client_secret: (*secret).to_owned(),
            ..Default::default()
        }),
        [id, secret, oid] if !id.is_empty() && !secret.is_empty() && !oid.is_empty() => Ok(SeedApp {
            client_id: (*id).to_owned(),
            client_secret: (*secret).to_owned(),
            object_id: Some((*oid).to_owned()),
            display_name: None,
        }),
        _ => Err(format!("expected CLIENT_ID:SECRET[:OBJECT_ID], got '{s}'")),
    }
}

impl Seed {
    /// Adds a subscription/resource group/vault given by flags, creating parents as needed.
    pub fn add_rg(&mut self, sub: &str, rg: &str, location: Option<String>) -> &mut SeedResourceGroup {
        let s = self.subscription_mut(sub);
        let idx = match s.resource_groups.iter().position(|g| g.name.eq_ignore_ascii_case(rg)) {
            Some(i) => i,
            None => {
                s.resource_groups.push(SeedResourceGroup {
                    name: rg.to_owned(),
                    location,
                    ..Default::default()
                });
                s.resource_groups.len() - 1
            }
        };
        &mut s.resource_groups[idx]
    }

    pub fn subscription_mut(&mut self, sub: &str) -> &mut SeedSubscription {
        let idx = match self.subscriptions.iter().position(|s| s.id.eq_ignore_ascii_case(sub)) {
            Some(i) => i,
            None => {
                self.subscriptions.push(SeedSubscription { id: sub.to_owned(), ..Default::default() });
                self.subscriptions.len() - 1
            }
        };
        &mut self.subscriptions[idx]
    }

    /// Adds the resource a resource id names (`parse_resource_flag`'s form), creating its subscription and
    /// resource group as needed. A Key Vault id adds an RBAC vault; any other type must be one of
    /// `arm::catalog::SEEDABLE` (checked by `validate`).
    pub fn add_resource_id(&mut self, id: &str) -> Result<(), String> {
        let f = parse_resource_flag(id)?;
        if f.resource_type.eq_ignore_ascii_case("Microsoft.KeyVault/vaults") {
            let group = self.add_rg(&f.sub, &f.rg, None);
            group.vaults.push(SeedVault {
                name: f.name,
                location: f.location,
                enable_rbac_authorization: Some(true),
                ..Default::default()
            });
            return Ok(());
        }
        self.add_rg(&f.sub, &f.rg, None).resources.push(SeedResource {
            resource_type: f.resource_type,
            name: f.name,
            location: f.location,
            containers: f.container.into_iter().collect(),
            ..Default::default()
        });
        Ok(())
    }

    pub fn add_vault(&mut self, sub: &str, rg: &str, name: &str, rbac: bool) {
        let group = self.add_rg(sub, rg, None);
        group.vaults.push(SeedVault {
            name: name.to_owned(),
            enable_rbac_authorization: Some(rbac),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        assert_eq!(parse_rg_flag("s/rg@eastus"), Ok(("s".into(), "rg".into(), Some("eastus".into()))));
        assert!(parse_rg_flag("s").is_err());
        assert_eq!(parse_vault_flag("s/rg/kv@policies"), Ok(("s".into(), "rg".into(), "kv".into(), false)));
        assert!(parse_vault_flag("s/rg/kv@bogus").is_err());
        let app = parse_app_flag("cid:se:cr:et").map(|a| (a.client_id, a.client_secret, a.object_id));
        assert_eq!(app, Ok(("cid".into(), "se".into(), Some("cr:et".into()))));
    }

    #[test]
    fn role_assignments_seed_by_name_or_guid_once_and_refuse_what_cannot_be() {
        const OID: &str = "0b9e3c3e-1111-4a4a-8888-000000000001";
        let mut seed = Seed::default();
        seed.add_rg("sub", "rg", None);
        seed.apps.push(SeedApp {
            client_id: "c".into(),
            client_secret: "s".into(),
            object_id: Some(OID.into()),
            ..Default::default()
        });
        seed.assign(OID, "managed identity contributor", "/subscriptions/sub/resourceGroups/rg");
        seed.assign(OID, "4633458b-17de-408a-b874-0445c86b69e6", "/subscriptions/sub/");
        let with_condition =
            seed.assign(OID, "Role Based Access Control Administrator", "/subscriptions/sub");
        with_condition.condition = Some(
            "(!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR \
             (@Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringEqualsIgnoreCase 'ServicePrincipal')"
                .into(),
        );
        assert!(seed.validate().is_ok(), "{:?}", seed.validate());
        let mut state = State { tenant_id: "t".into(), ..Default::default() };
        for role in crate::arm::roles::builtin_role_definitions() {
            state.role_definitions.insert(key(&role.name), role);
        }
        seed.apply(&mut state, 5);
        let once = state.clone();
        seed.apply(&mut state, 9);
        assert_eq!(once, state, "seeding twice adds nothing");
        let mut seen: Vec<(&str, &str, &str, Option<&str>)> = state
            .role_assignments
            .values()
            .map(|a| {
                (
                    a.role_definition_guid.as_str(),
                    a.scope.as_str(),
                    a.principal_type.as_str(),
                    a.condition_version.as_deref(),
                )
            })
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("4633458b-17de-408a-b874-0445c86b69e6", "/subscriptions/sub", "ServicePrincipal", None),
                (
                    "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
                    "/subscriptions/sub/resourceGroups/rg",
                    "ServicePrincipal",
                    None
                ),
                (
                    "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
                    "/subscriptions/sub",
                    "ServicePrincipal",
                    Some("2.0")
                ),
            ]
        );
        assert!(state.role_assignments.values().all(|a| a.effective_from_ms == 0), "in force at once");

        let refused = |edit: fn(&mut SeedRoleAssignment)| {
            let mut bad = Seed::default();
            edit(bad.assign(OID, "Reader", "/subscriptions/sub"));
            bad.validate().is_err()
        };
        assert!(refused(|a| a.role = "Nobody's Role".into()), "an unknown role");
        assert!(refused(|a| a.principal_id = "alice".into()), "a principal that is no object id");
        assert!(refused(|a| a.scope = "subscriptions/sub".into()), "a scope without its leading slash");
        assert!(refused(|a| a.condition = Some("@Resource[Microsoft.Storage/x:y] StringEquals 'z'".into())));
        assert!(refused(|a| {
            a.condition = Some("!(ActionMatches{'x'})".into());
            a.condition_version = Some("1.0".into());
        }));
        assert_eq!(
            parse_role_assignment_flag(&format!("{OID}=Key Vault Secrets User@/subscriptions/s"))
                .map(|a| a.role),
            Ok("Key Vault Secrets User".into())
        );
        assert!(parse_role_assignment_flag("x=Owner@subscriptions/s").is_err());
    }

    #[test]
    fn apply_is_idempotent_and_keeps_existing() {
        let mut seed = Seed::default();
        seed.add_vault("sub", "rg", "kv", false);
        seed.apps.push(SeedApp { client_id: "c".into(), client_secret: "s".into(), ..Default::default() });
        let mut state = State { tenant_id: "t".into(), ..Default::default() };
        seed.apply(&mut state, 5);
        let once = state.clone();
        seed.apply(&mut state, 9);
        assert_eq!(once, state);
        let vault = state.resource_group("SUB", "RG").and_then(|rg| rg.vaults.get("kv"));
        assert_eq!(vault.map(|v| v.enable_rbac_authorization), Some(false));
    }

    #[test]
    fn resources_seed_from_ids_and_apply_once() {
        let mut seed = Seed::default();
        seed.add_rg("sub", "rg", Some("northeurope".into()));
        let id = "/subscriptions/sub/resourcegroups/RG/providers/microsoft.storage/storageAccounts/st1";
        assert_eq!(seed.add_resource_id(id), Ok(()));
        assert_eq!(
            seed.add_resource_id(
                "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv@uksouth"
            ),
            Ok(())
        );
        assert!(seed.add_resource_id("/subscriptions/sub/resourceGroups/rg/st1").is_err());
        assert_eq!(seed.add_resource_id(&format!("{id}/blobServices/default/containers/Orders")), Ok(()));
        assert!(seed.validate().is_ok());
        let mut state = State { tenant_id: "t".into(), ..Default::default() };
        seed.apply(&mut state, 5);
        let once = state.clone();
        seed.apply(&mut state, 9);
        assert_eq!(once, state);
        let group = state.resource_group("sub", "rg");
        let st = group.and_then(|g| g.resources.get("microsoft.storage/storageaccounts/st1"));
        assert_eq!(
            st.map(|r| (r.resource_type.as_str(), r.location.as_str(), r.sku.as_str())),
            Some(("Microsoft.Storage/storageAccounts", "northeurope", "Standard_LRS"))
        );
        assert_eq!(group.and_then(|g| g.vaults.get("kv")).map(|v| v.location.as_str()), Some("uksouth"));
        assert_eq!(st.and_then(|r| r.containers.get("orders")).map(|c| c.name.as_str()), Some("Orders"));

        let mut bad = Seed::default();
        assert_eq!(
            bad.add_resource_id("/subscriptions/s/resourceGroups/r/providers/Microsoft.Web/sites/app"),
            Ok(())
        );
        assert!(bad.validate().is_err(), "an unknown type is refused up front");
    }
}
