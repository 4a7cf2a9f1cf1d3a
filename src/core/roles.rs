//! Role references as users write them, and the built-in roles idbind knows offline.
//!
//! A role in a binding is a built-in display name ("Key Vault Secrets User"), a role definition GUID, or a
//! role definition id. Known built-ins resolve without an API call; other names are resolved through the
//! roleDefinitions API by the Azure layer.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::resource_id::ResourceId;

/// A built-in Azure role: its display name, its GUID (the same in every tenant), what its published
/// definition permits, and, for the data-plane reader roles a namespace gets without a policy naming roles,
/// the resource provider it is meant for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinRole {
    pub name: &'static str,
    pub guid: &'static str,
    /// On the default list: the provider namespace whose resources the role may be granted on without a
    /// policy that names it (Key Vault roles on vaults, Storage roles on Storage accounts, ...).
    pub default_on: Option<&'static str>,
    /// A role that reads but also consumes or changes what it reads (a Service Bus receiver settles the
    /// messages it receives): the provider namespace whose resources it may be granted on without the
    /// operator's --allow-any-role, but only where a `WorkloadIdentityPolicy` names it in its roles.
    pub named_on: Option<&'static str>,
    /// The definition's `actions` and `dataActions` (`notActions` only narrow them, and are left out so that
    /// what is judged is never less than what is granted).
    pub actions: &'static [&'static str],
    pub data_actions: &'static [&'static str],
}

impl BuiltinRole {
    /// Whether a namespace may have this role on `scope` without the operator's --allow-any-role or a policy
    /// naming the role: it is a reader role, `scope` is a resource of the provider it is meant for (or a
    /// resource group or subscription, which only a policy can allow), and it changes nothing there.
    pub fn default_allows(&self, scope: &ResourceId) -> bool {
        let provider_ok = |ns: &str| scope.provider().is_none_or(|p| p.eq_ignore_ascii_case(ns));
        self.default_on.is_some_and(provider_ok) && self.changes_at(scope).is_empty()
    }

    /// Whether the operator's ceiling lets this role through on `scope` without --allow-any-role when a
    /// policy names it: a default role, or one of [`BuiltinRole::named_on`]'s on its own provider's
    /// resources.
    pub fn named_allows(&self, scope: &ResourceId) -> bool {
        let provider_ok = |ns: &str| scope.provider().is_none_or(|p| p.eq_ignore_ascii_case(ns));
        self.default_allows(scope) || self.named_on.is_some_and(provider_ok)
    }

    /// The actions and data actions of the definition that can change something at `scope`: anything of the
    /// scope's own provider that is not a read (a write, a delete, a wildcard over every operation, and any
    /// `.../action` not known to read only: receiving a Service Bus message settles it, Key Vault's
    /// `keys/update/action` can disable a key), or anything but a read of `Microsoft.Authorization`, which
    /// applies at every scope. What the default roles and their property test call a change.
    pub fn changes_at(&self, scope: &ResourceId) -> Vec<&'static str> {
        self.actions.iter().chain(self.data_actions).copied().filter(|a| changes(a, scope)).collect()
    }
}

/// The `.../action` operations that read and change nothing (published operation descriptions). Any other
/// action counts as a change: what an action does is the provider's to say, so it is a change until someone
/// looked.
const READ_ONLY_ACTIONS: &[&str] = &[
    // Returns a secret's value (what `GET /secrets/{name}` does).
    "microsoft.keyvault/vaults/secrets/getsecret/action",
    // Lists secrets and reads their attributes, never a value.
    "microsoft.keyvault/vaults/secrets/readmetadata/action",
    // Issues a key that signs user-delegation SAS tokens; a SAS carries at most its issuer's own permissions,
    // and nothing stored in the account changes.
    "microsoft.storage/storageaccounts/blobservices/generateuserdelegationkey/action",
];

/// See [`BuiltinRole::changes_at`].
fn changes(action: &str, scope: &ResourceId) -> bool {
    let action = action.to_ascii_lowercase();
    let namespace = action.split('/').next().unwrap_or_default();
    let reads = action.ends_with("/read") || READ_ONLY_ACTIONS.contains(&action.as_str());
    if action == "*" || (namespace == "microsoft.authorization" && !reads) {
        return true;
    }
    let here = scope.provider().is_none_or(|p| namespace == "*" || p.eq_ignore_ascii_case(namespace));
    !reads && here
}

/// The control-plane actions the Key Vault administrator, officer and reader roles share (published
/// definitions: deployments, alert rules and support tickets are resources of their own providers, which a
/// role scoped to a vault does not reach).
const KEY_VAULT_READ_ACTIONS: &[&str] = &[
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
    "Microsoft.KeyVault/checkNameAvailability/read",
    "Microsoft.KeyVault/deletedVaults/read",
    "Microsoft.KeyVault/locations/*/read",
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/operations/read",
];

const KEY_VAULT: Option<&str> = Some("Microsoft.KeyVault");
const SERVICE_BUS_READS: &[&str] = &[
    "Microsoft.ServiceBus/*/queues/read",
    "Microsoft.ServiceBus/*/topics/read",
    "Microsoft.ServiceBus/*/topics/subscriptions/read",
];

/// The built-in roles idbind knows offline, from Microsoft's published definitions (the built-in roles
/// reference and the Key Vault RBAC guide; see docs/azure.md#builtin-roles). The ones with `default_on` are
/// the default list docs/policies.md documents. Any other role is resolved by name through the
/// roleDefinitions API, and needs the operator's --allow-any-role and, where policies apply, a policy naming
/// it.
pub const BUILTIN_ROLES: &[BuiltinRole] = &[
    BuiltinRole {
        name: "Key Vault Administrator",
        guid: "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        default_on: None,
        named_on: None,
        actions: KEY_VAULT_READ_ACTIONS,
        data_actions: &["Microsoft.KeyVault/vaults/*"],
    },
    BuiltinRole {
        name: "Key Vault Certificates Officer",
        guid: "a4417e6f-fecd-4de8-b567-7b0420556985",
        default_on: None,
        named_on: None,
        actions: KEY_VAULT_READ_ACTIONS,
        data_actions: &[
            "Microsoft.KeyVault/vaults/certificatecas/*",
            "Microsoft.KeyVault/vaults/certificates/*",
        ],
    },
    BuiltinRole {
        name: "Key Vault Certificate User",
        guid: "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
        default_on: KEY_VAULT,
        named_on: None,
        actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/certificates/read",
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            "Microsoft.KeyVault/vaults/keys/read",
        ],
    },
    BuiltinRole {
        name: "Key Vault Crypto Officer",
        guid: "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        default_on: None,
        named_on: None,
        actions: KEY_VAULT_READ_ACTIONS,
        data_actions: &[
            "Microsoft.KeyVault/vaults/keys/*",
            "Microsoft.KeyVault/vaults/keyrotationpolicies/*",
        ],
    },
    BuiltinRole {
        name: "Key Vault Crypto User",
        guid: "12338af0-0e69-4776-bea7-57ae8d297424",
        default_on: None,
        named_on: KEY_VAULT,
        actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/update/action",
            "Microsoft.KeyVault/vaults/keys/backup/action",
            "Microsoft.KeyVault/vaults/keys/encrypt/action",
            "Microsoft.KeyVault/vaults/keys/decrypt/action",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
            "Microsoft.KeyVault/vaults/keys/sign/action",
            "Microsoft.KeyVault/vaults/keys/verify/action",
        ],
    },
    BuiltinRole {
        name: "Key Vault Reader",
        guid: "21090545-7ca7-4776-b22c-e363652d74d2",
        default_on: KEY_VAULT,
        named_on: None,
        actions: KEY_VAULT_READ_ACTIONS,
        data_actions: &[
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    },
    BuiltinRole {
        name: "Key Vault Secrets Officer",
        guid: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        default_on: None,
        named_on: None,
        actions: KEY_VAULT_READ_ACTIONS,
        data_actions: &["Microsoft.KeyVault/vaults/secrets/*"],
    },
    BuiltinRole {
        name: "Key Vault Secrets User",
        guid: "4633458b-17de-408a-b874-0445c86b69e6",
        default_on: KEY_VAULT,
        named_on: None,
        actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    },
    BuiltinRole {
        name: "Storage Blob Data Reader",
        guid: "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        default_on: Some("Microsoft.Storage"),
        named_on: None,
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        data_actions: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
    },
    BuiltinRole {
        name: "Storage Blob Data Contributor",
        guid: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        default_on: None,
        named_on: None,
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/write",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
        ],
    },
    BuiltinRole {
        name: "Storage Blob Data Owner",
        guid: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        default_on: None,
        named_on: None,
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/*",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        data_actions: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
    },
    BuiltinRole {
        name: "Storage Queue Data Reader",
        guid: "19e7f393-937e-4f77-808e-94535e297925",
        default_on: Some("Microsoft.Storage"),
        named_on: None,
        actions: &["Microsoft.Storage/storageAccounts/queueServices/queues/read"],
        data_actions: &["Microsoft.Storage/storageAccounts/queueServices/queues/messages/read"],
    },
    BuiltinRole {
        name: "Storage Queue Data Contributor",
        guid: "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        default_on: None,
        named_on: None,
        actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/delete",
            "Microsoft.Storage/storageAccounts/queueServices/queues/read",
            "Microsoft.Storage/storageAccounts/queueServices/queues/write",
        ],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/delete",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/read",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/write",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action",
        ],
    },
    BuiltinRole {
        name: "Azure Service Bus Data Receiver",
        guid: "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
        default_on: None,
        named_on: Some("Microsoft.ServiceBus"),
        actions: SERVICE_BUS_READS,
        data_actions: &["Microsoft.ServiceBus/*/receive/action"],
    },
    BuiltinRole {
        name: "Azure Service Bus Data Sender",
        guid: "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
        default_on: None,
        named_on: None,
        actions: SERVICE_BUS_READS,
        data_actions: &["Microsoft.ServiceBus/*/send/action"],
    },
    BuiltinRole {
        name: "Azure Service Bus Data Owner",
        guid: "090c5cfd-751d-490a-894a-3ce6f1109419",
        default_on: None,
        named_on: None,
        actions: &["Microsoft.ServiceBus/*"],
        data_actions: &["Microsoft.ServiceBus/*"],
    },
    BuiltinRole {
        name: "AcrPull",
        guid: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        default_on: Some("Microsoft.ContainerRegistry"),
        named_on: None,
        actions: &["Microsoft.ContainerRegistry/registries/pull/read"],
        data_actions: &[],
    },
    BuiltinRole {
        name: "AcrPush",
        guid: "8311e382-0749-4cb8-b61a-304f252e45ec",
        default_on: None,
        named_on: None,
        actions: &[
            "Microsoft.ContainerRegistry/registries/pull/read",
            "Microsoft.ContainerRegistry/registries/push/write",
        ],
        data_actions: &[],
    },
    BuiltinRole {
        name: "App Configuration Data Reader",
        guid: "516239f1-63e1-4d78-a4de-a74fb236a071",
        default_on: Some("Microsoft.AppConfiguration"),
        named_on: None,
        actions: &[],
        data_actions: &["Microsoft.AppConfiguration/configurationStores/*/read"],
    },
    BuiltinRole {
        name: "App Configuration Data Owner",
        guid: "5ae67dd6-50cb-40e7-96ff-dc2bfa4b606b",
        default_on: None,
        named_on: None,
        actions: &[],
        data_actions: &[
            "Microsoft.AppConfiguration/configurationStores/*/read",
            "Microsoft.AppConfiguration/configurationStores/*/write",
            "Microsoft.AppConfiguration/configurationStores/*/delete",
            "Microsoft.AppConfiguration/configurationStores/*/action",
        ],
    },
    BuiltinRole {
        name: "Azure Event Hubs Data Receiver",
        guid: "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
        default_on: None,
        named_on: Some("Microsoft.EventHub"),
        actions: &["Microsoft.EventHub/*/eventhubs/consumergroups/read"],
        data_actions: &["Microsoft.EventHub/*/receive/action"],
    },
    BuiltinRole {
        name: "Azure Event Hubs Data Sender",
        guid: "2b629674-e913-4c01-ae53-ef4638d8f975",
        default_on: None,
        named_on: None,
        actions: &["Microsoft.EventHub/*/eventhubs/read"],
        data_actions: &["Microsoft.EventHub/*/send/action"],
    },
    BuiltinRole {
        name: "Owner",
        guid: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        default_on: None,
        named_on: None,
        actions: &["*"],
        data_actions: &[],
    },
    BuiltinRole {
        name: "Contributor",
        guid: "b24988ac-6180-42a0-ab88-20f7382dd24c",
        default_on: None,
        named_on: None,
        actions: &["*"],
        data_actions: &[],
    },
    BuiltinRole {
        name: "Reader",
        guid: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        default_on: None,
        named_on: None,
        actions: &["*/read"],
        data_actions: &[],
    },
    BuiltinRole {
        name: "User Access Administrator",
        guid: "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        default_on: None,
        named_on: None,
        actions: &["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
        data_actions: &[],
    },
    BuiltinRole {
        name: "Role Based Access Control Administrator",
        guid: "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        default_on: None,
        named_on: None,
        actions: &[
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
            "Microsoft.Support/*",
        ],
        data_actions: &[],
    },
];

/// The names of the roles [`BuiltinRole::default_allows`] on `scope`, for messages.
pub fn default_names_for(scope: &ResourceId) -> Vec<&'static str> {
    BUILTIN_ROLES.iter().filter(|b| b.default_allows(scope)).map(|b| b.name).collect()
}

/// The names of the roles only a policy naming them allows on `scope` (without --allow-any-role), for
/// messages.
pub fn named_names_for(scope: &ResourceId) -> Vec<&'static str> {
    BUILTIN_ROLES
        .iter()
        .filter(|b| b.named_allows(scope) && !b.default_allows(scope))
        .map(|b| b.name)
        .collect()
}

/// A role as written in a binding, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleRef {
    /// A role definition named by GUID (bare or inside a role definition id).
    Id(Uuid),
    /// A display name that needs the roleDefinitions API (not a known built-in).
    Name(String),
}

impl RoleRef {
    /// Parses a role reference; known built-in names become their GUID, matched the way Azure matches role
    /// names (case-insensitively).
    pub fn parse(role: &str) -> RoleRef {
        let last = role.rsplit('/').next().unwrap_or(role);
        if let Ok(guid) = Uuid::parse_str(last) {
            return RoleRef::Id(guid);
        }
        match builtin_by_name(role) {
            Some(b) => RoleRef::Id(Uuid::parse_str(b.guid).unwrap_or_default()),
            None => RoleRef::Name(role.to_string()),
        }
    }

    /// The known built-in role this reference names, if any.
    pub fn builtin(&self) -> Option<&'static BuiltinRole> {
        match self {
            RoleRef::Id(id) => BUILTIN_ROLES.iter().find(|b| Uuid::parse_str(b.guid).is_ok_and(|g| g == *id)),
            RoleRef::Name(n) => builtin_by_name(n),
        }
    }
}

/// Key Vault access-policy permissions of one principal on one vault (the legacy permission model, for vaults
/// without `enableRbacAuthorization`). Names as Key Vault spells them.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permissions {
    pub secrets: BTreeSet<String>,
    pub keys: BTreeSet<String>,
    pub certificates: BTreeSet<String>,
}

impl Permissions {
    fn of(secrets: &[&str], keys: &[&str], certificates: &[&str]) -> Self {
        let set = |l: &[&str]| l.iter().map(ToString::to_string).collect();
        Permissions { secrets: set(secrets), keys: set(keys), certificates: set(certificates) }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.keys.is_empty() && self.certificates.is_empty()
    }

    /// Everything in `self` or `other`.
    pub fn union(&self, other: &Permissions) -> Permissions {
        let u = |a: &BTreeSet<String>, b: &BTreeSet<String>| a.union(b).cloned().collect();
        Permissions {
            secrets: u(&self.secrets, &other.secrets),
            keys: u(&self.keys, &other.keys),
            certificates: u(&self.certificates, &other.certificates),
        }
    }

    /// What `self` has and `other` lacks. Key Vault compares permission names case-insensitively, and so does
    /// this.
    pub fn minus(&self, other: &Permissions) -> Permissions {
        let m = |a: &BTreeSet<String>, b: &BTreeSet<String>| {
            a.iter().filter(|p| !b.iter().any(|q| q.eq_ignore_ascii_case(p))).cloned().collect()
        };
        Permissions {
            secrets: m(&self.secrets, &other.secrets),
            keys: m(&self.keys, &other.keys),
            certificates: m(&self.certificates, &other.certificates),
        }
    }

    /// What both have (names as `self` spells them).
    pub fn intersect(&self, other: &Permissions) -> Permissions {
        self.minus(&self.minus(other))
    }
}

/// The access policy that grants what a built-in Key Vault *reader* role grants, following the Key Vault
/// documentation's mapping of access-policy templates to Azure roles. Only the read-only roles have one:
/// idbind never hands out write or purge permissions through the legacy model, where they cannot be scoped or
/// audited like role assignments.
pub fn access_policy_for(role_guid: &str) -> Option<Permissions> {
    let role = BUILTIN_ROLES.iter().find(|b| b.guid.eq_ignore_ascii_case(role_guid))?;
    match role.name {
        "Key Vault Secrets User" => Some(Permissions::of(&["get", "list"], &[], &[])),
        // A certificate's private key is read as the secret of the same name.
        "Key Vault Certificate User" => Some(Permissions::of(&["get"], &[], &["get", "list"])),
        "Key Vault Crypto User" => Some(Permissions::of(
            &[],
            &["get", "list", "encrypt", "decrypt", "wrapKey", "unwrapKey", "sign", "verify"],
            &[],
        )),
        // Metadata only: secret values stay unreadable.
        "Key Vault Reader" => Some(Permissions::of(&["list"], &["get", "list"], &["get", "list"])),
        _ => None,
    }
}

fn builtin_by_name(name: &str) -> Option<&'static BuiltinRole> {
    BUILTIN_ROLES.iter().find(|b| b.name.eq_ignore_ascii_case(name.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_guid_parses_and_names_and_guids_are_unique() {
        for (i, b) in BUILTIN_ROLES.iter().enumerate() {
            assert!(Uuid::parse_str(b.guid).is_ok(), "{}", b.name);
            for other in &BUILTIN_ROLES[i + 1..] {
                assert!(!b.name.eq_ignore_ascii_case(other.name) && b.guid != other.guid, "{}", b.name);
            }
        }
    }

    fn on(namespace: &str, ty: &str) -> ResourceId {
        ResourceId::parse(&format!("/subscriptions/s/resourceGroups/rg/providers/{namespace}/{ty}/n"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn reader_roles_are_allowed_by_default_only_on_their_own_providers_resources() {
        let blob_reader = RoleRef::parse("storage blob data reader");
        let role = blob_reader.builtin().unwrap_or_else(|| panic!("Storage Blob Data Reader is known"));
        assert!(role.default_allows(&on("Microsoft.Storage", "storageAccounts")));
        assert!(role.default_allows(&on("microsoft.storage", "storageAccounts")));
        assert!(!role.default_allows(&on("Microsoft.ServiceBus", "namespaces")));
        // How broad a scope may be is the policies' call; at a resource group the role still changes nothing.
        assert!(role.default_allows(&ResourceId::resource_group_scope("s", "rg")));
        let kv_reader = RoleRef::parse("Key Vault Reader").builtin().copied();
        assert!(kv_reader.is_some_and(|r| !r.default_allows(&ResourceId::resource_group_scope("s", "rg"))));
        let owner = RoleRef::parse("Owner").builtin().copied();
        assert!(owner.is_some_and(|o| !o.default_allows(&on("Microsoft.Storage", "storageAccounts"))));
    }

    #[test]
    fn the_readmes_table_of_default_roles_is_the_catalogues() {
        let readme = include_str!("../../docs/policies.md");
        let start = readme.find("| Service (provider) | Roles allowed by default |").unwrap_or_default();
        let rows = readme[start..].lines().skip(2).take_while(|l| l.starts_with('|'));
        let mut documented: Vec<(String, &str, String)> = Vec::new();
        for row in rows {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let provider = cells[1].split('`').nth(1).unwrap_or_default().to_string();
            for (column, tier) in [(cells[2], "default"), (cells[3], "named")] {
                let roles = column.split(", ").filter(|r| !r.is_empty());
                documented.extend(roles.map(|role| (provider.clone(), tier, role.to_string())));
            }
        }
        let mut catalogue: Vec<(String, &str, String)> = BUILTIN_ROLES
            .iter()
            .filter_map(|b| match (b.default_on, b.named_on) {
                (Some(ns), _) => Some((ns.to_string(), "default", b.name.to_string())),
                (None, Some(ns)) => Some((ns.to_string(), "named", b.name.to_string())),
                (None, None) => None,
            })
            .collect();
        documented.sort();
        catalogue.sort();
        assert_eq!(documented, catalogue);
    }

    #[test]
    fn what_changes_is_judged_at_the_scope() {
        let reader = RoleRef::parse("Key Vault Reader").builtin().copied().unwrap_or_else(|| panic!("known"));
        // Deployments and alert rules are other providers' resources: a vault scope does not reach them.
        assert_eq!(reader.changes_at(&on("Microsoft.KeyVault", "vaults")), Vec::<&str>::new());
        assert_eq!(
            reader.changes_at(&on("Microsoft.Resources", "deployments")),
            ["Microsoft.Resources/deployments/*"]
        );
        let table = [
            ("Owner", "Microsoft.Storage", vec!["*"]),
            ("User Access Administrator", "Microsoft.Storage", vec!["Microsoft.Authorization/*"]),
            (
                "AcrPush",
                "Microsoft.ContainerRegistry",
                vec!["Microsoft.ContainerRegistry/registries/push/write"],
            ),
            ("AcrPull", "Microsoft.ContainerRegistry", vec![]),
            (
                "Azure Service Bus Data Owner",
                "Microsoft.ServiceBus",
                vec!["Microsoft.ServiceBus/*", "Microsoft.ServiceBus/*"],
            ),
            ("Reader", "Microsoft.Storage", vec![]),
            // Receiving settles (removes) a message; an exclusive Event Hubs receiver pushes others off a
            // partition; Update Key can disable a key: none of them only reads.
            (
                "Azure Service Bus Data Receiver",
                "Microsoft.ServiceBus",
                vec!["Microsoft.ServiceBus/*/receive/action"],
            ),
            (
                "Azure Event Hubs Data Receiver",
                "Microsoft.EventHub",
                vec!["Microsoft.EventHub/*/receive/action"],
            ),
            ("Storage Blob Data Reader", "Microsoft.Storage", vec![]),
            ("Key Vault Secrets User", "Microsoft.KeyVault", vec![]),
        ];
        for (name, namespace, changes) in table {
            let role = RoleRef::parse(name).builtin().copied().unwrap_or_else(|| panic!("{name} is known"));
            assert_eq!(role.changes_at(&on(namespace, "t")), changes, "{name}");
        }
    }

    #[test]
    fn names_guids_and_ids_resolve_to_the_same_role() {
        let secrets_user = Uuid::parse_str("4633458b-17de-408a-b874-0445c86b69e6").unwrap_or_default();
        for r in [
            "Key Vault Secrets User",
            "key vault secrets user",
            "4633458b-17de-408a-b874-0445c86b69e6",
            "4633458B-17DE-408A-B874-0445C86B69E6",
            "/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
            "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
        ] {
            assert_eq!(RoleRef::parse(r), RoleRef::Id(secrets_user), "{r}");
            assert!(RoleRef::parse(r).builtin().is_some_and(|b| b.default_on.is_some()), "{r}");
        }
    }

    #[test]
    fn only_reader_roles_have_an_access_policy_and_it_reads() {
        for b in BUILTIN_ROLES {
            let p = access_policy_for(b.guid);
            let readers = ["Key Vault Secrets User", "Key Vault Certificate User", "Key Vault Crypto User"];
            let has_one = readers.contains(&b.name) || b.name == "Key Vault Reader";
            assert_eq!(p.is_some(), has_one, "{}", b.name);
            let writes = [
                "set",
                "delete",
                "purge",
                "create",
                "import",
                "update",
                "backup",
                "restore",
                "recover",
                "managecontacts",
                "setissuers",
            ];
            for perm in p.iter().flat_map(|p| p.secrets.iter().chain(&p.keys).chain(&p.certificates)) {
                assert!(!writes.contains(&perm.to_ascii_lowercase().as_str()), "{} grants {perm}", b.name);
            }
        }
        let user = access_policy_for("4633458B-17DE-408A-B874-0445C86B69E6").unwrap_or_default();
        assert_eq!(user.secrets.iter().map(String::as_str).collect::<Vec<_>>(), ["get", "list"]);
        assert_eq!(access_policy_for("8e3af657-a8ff-443c-a75c-2fe8c4bcb635"), None, "Owner");
    }

    #[test]
    fn permission_sets_compare_case_insensitively() {
        let a = Permissions::of(&["get", "list"], &["get"], &[]);
        let b = Permissions::of(&["GET"], &[], &["list"]);
        assert_eq!(a.minus(&b), Permissions::of(&["list"], &["get"], &[]));
        assert_eq!(a.intersect(&b), Permissions::of(&["get"], &[], &[]));
        assert_eq!(a.union(&b).certificates.len(), 1);
        assert!(a.minus(&a).is_empty() && !a.is_empty());
    }

    #[test]
    fn unknown_names_are_left_for_the_api() {
        assert_eq!(
            RoleRef::parse("Storage Queue Data Owner"),
            RoleRef::Name("Storage Queue Data Owner".into())
        );
        assert_eq!(RoleRef::parse("My Custom Role").builtin(), None);
    }
}
