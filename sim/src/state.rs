//! The simulator's world: subscriptions → resource groups → identities (→ FICs), vaults and other seeded
//! resources (Storage accounts, Service Bus namespaces… see `arm::catalog`), plus tenant-wide role
//! assignments (which alone say what a principal may do), role definitions, the directory of principals and
//! the seeded apps. Maps are keyed by the lowercased name, because ARM names are case-insensitive but keep
//! the case they were created with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Tags = BTreeMap<String, String>;

/// Lowercase key for case-insensitive ARM names.
pub fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub tenant_id: String,
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Keyed by the role definition GUID (lowercase).
    pub role_definitions: BTreeMap<String, RoleDefinition>,
    /// Keyed by the assignment name (a GUID, unique in the tenant). Change it through
    /// `insert_role_assignment` and `remove_role_assignment`, which keep `assignments_by_principal` in step.
    pub role_assignments: BTreeMap<String, RoleAssignment>,
    /// The keys of each principal's role assignments (by lowercased principal id): what authorization looks
    /// at for a request, so its cost does not grow with everyone else's assignments. Derived, not stored
    /// (`reindex` after loading).
    #[serde(skip)]
    pub assignments_by_principal: AssignmentIndex,
    /// Principals Entra knows, keyed by object id.
    pub directory: BTreeMap<String, DirectoryObject>,
    /// App registrations that can get tokens with a secret, keyed by client id.
    pub apps: BTreeMap<String, App>,
    /// Deleted role assignments that still work in the Key Vault data plane until `effective_until_ms`
    /// (`role_propagation_ms`); gone from every ARM answer.
    #[serde(default)]
    pub revoked_role_assignments: Vec<RevokedAssignment>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RevokedAssignment {
    pub assignment: RoleAssignment,
    pub effective_until_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub display_name: String,
    pub resource_groups: BTreeMap<String, ResourceGroup>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGroup {
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub identities: BTreeMap<String, Identity>,
    #[serde(default)]
    pub vaults: BTreeMap<String, Vault>,
    /// Seeded resources of the catalog's other types, keyed by `resource_key`.
    #[serde(default)]
    pub resources: BTreeMap<String, Resource>,
}

/// The key of a seeded resource in its group: `microsoft.storage/storageaccounts/name`, lowercase.
pub fn resource_key(resource_type: &str, name: &str) -> String {
    key(&format!("{resource_type}/{name}"))
}

/// A seeded resource of a type from `arm::catalog` (read-only: seeds make them, GET reads them, and they are
/// scopes for role assignments).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    /// `Microsoft.Storage/storageAccounts`, spelled as the catalog spells it.
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub tags: Tags,
    /// `sku.name`.
    pub sku: String,
    /// `kind`, for the types that have one (Storage accounts).
    #[serde(default)]
    pub kind: Option<String>,
    pub created_at_ms: u64,
    /// A Storage account's blob containers, keyed by lowercased name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, BlobContainer>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlobContainer {
    pub name: String,
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub tags: Tags,
    pub client_id: String,
    pub principal_id: String,
    pub tenant_id: String,
    #[serde(default)]
    pub isolation_scope: Option<String>,
    #[serde(default)]
    pub federated_identity_credentials: BTreeMap<String, Fic>,
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Fic {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    /// Token exchanges match this FIC from then on (`fic_propagation_ms` after its last change).
    #[serde(default)]
    pub effective_from_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Vault {
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub tags: Tags,
    pub tenant_id: String,
    pub sku_name: String,
    pub enable_rbac_authorization: bool,
    #[serde(default)]
    pub access_policies: Vec<AccessPolicy>,
    pub created_at_ms: u64,
    /// The data plane's objects, keyed by lowercased name (Key Vault names are case-insensitive).
    #[serde(default)]
    pub secrets: BTreeMap<String, VaultObject<SecretVersion>>,
    #[serde(default)]
    pub certificates: BTreeMap<String, VaultObject<CertificateVersion>>,
    #[serde(default)]
    pub keys: BTreeMap<String, VaultObject<KeyVersion>>,
}

/// A secret, certificate or key: its name as first written and its versions, oldest first (the last one is
/// the current version).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultObject<V> {
    pub name: String,
    pub versions: Vec<V>,
}

/// What every version carries: its id (32 hex digits), times in Unix seconds as Key Vault reports them, tags,
/// and whether Key Vault manages it (the secret and key behind a certificate).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VersionMeta {
    pub version: String,
    pub enabled: bool,
    pub created: u64,
    pub updated: u64,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub managed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretVersion {
    #[serde(flatten)]
    pub meta: VersionMeta,
    pub value: String,
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateVersion {
    #[serde(flatten)]
    pub meta: VersionMeta,
    /// The DER certificate, base64.
    pub cer: String,
    /// Its SHA-1 thumbprint, base64url.
    pub x5t: String,
    pub subject: String,
    pub not_before: u64,
    pub expires: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyVersion {
    #[serde(flatten)]
    pub meta: VersionMeta,
    /// The public JSON Web Key (`kty`, `crv`, `x`, `y`, `key_ops`), without `kid`.
    pub jwk: serde_json::Value,
}

/// A Key Vault access policy entry, in the vault API's own JSON shape.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicy {
    pub tenant_id: String,
    pub object_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    #[serde(default)]
    pub permissions: VaultPermissions,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VaultPermissions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<String>,
}

impl VaultPermissions {
    pub fn lists_mut(&mut self) -> [&mut Vec<String>; 4] {
        [&mut self.keys, &mut self.secrets, &mut self.certificates, &mut self.storage]
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.secrets.is_empty()
            && self.certificates.is_empty()
            && self.storage.is_empty()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignment {
    pub name: String,
    /// With a leading slash, in the case the caller used.
    pub scope: String,
    /// As the caller sent it (subscription or tenant form).
    pub role_definition_id: String,
    /// The GUID part of `role_definition_id`, lowercase.
    pub role_definition_guid: String,
    pub principal_id: String,
    pub principal_type: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub condition: Option<String>,
    #[serde(default)]
    pub condition_version: Option<String>,
    #[serde(default)]
    pub delegated_managed_identity_resource_id: Option<String>,
    pub created_on_ms: u64,
    pub updated_on_ms: u64,
    pub created_by: String,
    pub updated_by: String,
    /// From then on the assignment authorizes in the Key Vault data plane (`role_propagation_ms` after its
    /// creation).
    #[serde(default)]
    pub effective_from_ms: u64,
    /// `condition`, parsed once (`insert_role_assignment`), so authorization does not parse it for every
    /// request. Derived, not stored.
    #[serde(skip)]
    pub parsed_condition: ParsedCondition,
}

/// A role assignment's condition as parsed, with the text it was parsed from (authorization parses afresh
/// when the text has changed since). Derived data: it never makes two assignments unequal.
#[derive(Debug, Clone, Default)]
pub struct ParsedCondition(
    Option<
        std::sync::Arc<(
            String,
            Result<crate::arm::conditions::Expr, crate::arm::conditions::ConditionError>,
        )>,
    >,
);

impl ParsedCondition {
    pub fn of(condition: Option<&str>) -> Self {
        Self(
            condition.map(|text| std::sync::Arc::new((text.to_owned(), crate::arm::conditions::parse(text)))),
        )
    }

    /// The parsed form of `text`, when this is its parse.
    pub fn get(
        &self,
        text: &str,
    ) -> Option<&Result<crate::arm::conditions::Expr, crate::arm::conditions::ConditionError>> {
        self.0.as_deref().filter(|(parsed, _)| parsed == text).map(|(_, expr)| expr)
    }
}

impl PartialEq for ParsedCondition {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleDefinition {
    /// The GUID.
    pub name: String,
    pub role_name: String,
    #[serde(default)]
    pub description: String,
    /// `BuiltInRole` or `CustomRole`.
    #[serde(rename = "type")]
    pub role_type: String,
    #[serde(default)]
    pub permissions: Vec<RolePermission>,
    #[serde(default)]
    pub assignable_scopes: Vec<String>,
    /// For a custom role: the subscription it was defined in (its id's prefix).
    #[serde(default)]
    pub subscription_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolePermission {
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub not_actions: Vec<String>,
    #[serde(default)]
    pub data_actions: Vec<String>,
    #[serde(default)]
    pub not_data_actions: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryObject {
    pub object_id: String,
    /// `ServicePrincipal`, `User`, `Group`…
    pub principal_type: String,
    #[serde(default)]
    pub display_name: String,
    /// When it was created; role-assignment writes without `principalType` do not see it until the
    /// replication delay has passed.
    pub created_at_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub client_id: String,
    pub client_secret: String,
    pub object_id: String,
    #[serde(default)]
    pub display_name: String,
}

/// Role assignment keys by lowercased principal id (see `State::assignments_by_principal`). Derived data: two
/// states with the same assignments are equal whatever their indexes hold.
#[derive(Debug, Clone, Default)]
pub struct AssignmentIndex {
    by_principal: BTreeMap<String, std::collections::BTreeSet<String>>,
    len: usize,
}

impl PartialEq for AssignmentIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl State {
    /// Adds or replaces the role assignment under `name_key` (the lowercased name).
    pub fn insert_role_assignment(&mut self, name_key: String, mut assignment: RoleAssignment) {
        assignment.parsed_condition = ParsedCondition::of(assignment.condition.as_deref());
        if let Some(old) = self.role_assignments.get(&name_key) {
            let old_principal = key(&old.principal_id);
            self.unindex(&old_principal, &name_key);
        }
        let set =
            self.assignments_by_principal.by_principal.entry(key(&assignment.principal_id)).or_default();
        if set.insert(name_key.clone()) {
            self.assignments_by_principal.len += 1;
        }
        self.role_assignments.insert(name_key, assignment);
    }

    /// Removes the role assignment under `name_key`, returning it.
    pub fn remove_role_assignment(&mut self, name_key: &str) -> Option<RoleAssignment> {
        let removed = self.role_assignments.remove(name_key)?;
        self.unindex(&key(&removed.principal_id), name_key);
        Some(removed)
    }

    fn unindex(&mut self, principal_key: &str, name_key: &str) {
        let index = &mut self.assignments_by_principal;
        if let Some(set) = index.by_principal.get_mut(principal_key) {
            if set.remove(name_key) {
                index.len -= 1;
            }
            if set.is_empty() {
                index.by_principal.remove(principal_key);
            }
        }
    }

    /// Rebuilds `assignments_by_principal` and the parsed conditions from `role_assignments` (after loading a
    /// state file).
    pub fn reindex(&mut self) {
        let mut index = AssignmentIndex::default();
        for (name_key, a) in &mut self.role_assignments {
            a.parsed_condition = ParsedCondition::of(a.condition.as_deref());
            if index.by_principal.entry(key(&a.principal_id)).or_default().insert(name_key.clone()) {
                index.len += 1;
            }
        }
        self.assignments_by_principal = index;
    }

    /// The role assignments of `principal`. Should the index not cover every assignment (a change that went
    /// around `insert_role_assignment`), every assignment is looked at instead, so nothing is missed.
    pub fn role_assignments_of<'s>(
        &'s self,
        principal: &str,
    ) -> Box<dyn Iterator<Item = &'s RoleAssignment> + 's> {
        let index = &self.assignments_by_principal;
        if index.len != self.role_assignments.len() {
            let principal = principal.to_owned();
            return Box::new(
                self.role_assignments
                    .values()
                    .filter(move |a| a.principal_id.eq_ignore_ascii_case(&principal)),
            );
        }
        match index.by_principal.get(&key(principal)) {
            Some(names) => Box::new(names.iter().filter_map(|n| self.role_assignments.get(n))),
            None => Box::new(std::iter::empty()),
        }
    }

    pub fn resource_group(&self, sub: &str, rg: &str) -> Option<&ResourceGroup> {
        self.subscriptions.get(&key(sub))?.resource_groups.get(&key(rg))
    }

    pub fn resource_group_mut(&mut self, sub: &str, rg: &str) -> Option<&mut ResourceGroup> {
        self.subscriptions.get_mut(&key(sub))?.resource_groups.get_mut(&key(rg))
    }

    /// The identity whose client id is `client_id`, if any (a linear scan: token exchanges are rare next to
    /// ARM calls, and 10,000 identities scan in well under a millisecond).
    pub fn identity_by_client_id(&self, client_id: &str) -> Option<&Identity> {
        self.subscriptions
            .values()
            .flat_map(|s| s.resource_groups.values())
            .flat_map(|rg| rg.identities.values())
            .find(|i| i.client_id.eq_ignore_ascii_case(client_id))
    }

    /// The vault named `name` wherever it is, with its subscription id and resource group name (vault names
    /// are globally unique in Azure, as they are DNS names).
    pub fn vault_by_name(&self, name: &str) -> Option<(&str, &str, &Vault)> {
        self.subscriptions.values().find_map(|s| {
            s.resource_groups
                .values()
                .find_map(|g| g.vaults.get(&key(name)).map(|v| (s.id.as_str(), g.name.as_str(), v)))
        })
    }

    pub fn vault_by_name_mut(&mut self, name: &str) -> Option<&mut Vault> {
        self.subscriptions
            .values_mut()
            .flat_map(|s| s.resource_groups.values_mut())
            .find_map(|g| g.vaults.get_mut(&key(name)))
    }

    pub fn identity_count(&self) -> usize {
        self.subscriptions
            .values()
            .flat_map(|s| s.resource_groups.values())
            .map(|rg| rg.identities.len())
            .sum()
    }
}
