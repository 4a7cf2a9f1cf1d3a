//! Built-in role definitions the simulator knows, with their real GUIDs and their published `actions`,
//! `notActions` and `dataActions`, read from MicrosoftDocs/azure-docs
//! `articles/role-based-access-control/built-in-roles/{privileged,general,identity,storage,integration,
//! analytics,containers}.md` and, for Key Vault, `key-vault/general/rbac-guide.md`
//! (docs/azure.md#builtin-roles). The Key Vault roles' `dataActions` are what the Key Vault data plane
//! authorizes with (see `kv`). None of these roles has `notDataActions`. Owner, Contributor, User Access
//! Administrator and Role Based Access Control Administrator carry what makes them dangerous, so guardrail
//! tests can recognise an escalation by the role's content too. AcrPull and AcrPush grant control-plane
//! `actions` only (`registries/pull/read`), no `dataActions`, as published.

use crate::state::{RoleDefinition, RolePermission};

struct Builtin {
    guid: &'static str,
    name: &'static str,
    description: &'static str,
    actions: &'static [&'static str],
    not_actions: &'static [&'static str],
    data_actions: &'static [&'static str],
}

/// The control-plane actions the Key Vault administrator, officer and reader roles share (published
/// definitions).
const KV_READ_ACTIONS: &[&str] = &[
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

/// What the Service Bus receiver and sender roles may read on the control plane (published definitions).
const SERVICE_BUS_ENTITY_READS: &[&str] = &[
    "Microsoft.ServiceBus/*/queues/read",
    "Microsoft.ServiceBus/*/topics/read",
    "Microsoft.ServiceBus/*/topics/subscriptions/read",
];

const BUILTINS: &[Builtin] = &[
    Builtin {
        guid: "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        name: "Key Vault Administrator",
        description: "Perform all data plane operations on a key vault and all objects in it, including \
            certificates, keys, and secrets.",
        actions: KV_READ_ACTIONS,
        not_actions: &[],
        data_actions: &["Microsoft.KeyVault/vaults/*"],
    },
    Builtin {
        guid: "a4417e6f-fecd-4de8-b567-7b0420556985",
        name: "Key Vault Certificates Officer",
        description: "Perform any action on the certificates of a key vault, except manage permissions.",
        actions: KV_READ_ACTIONS,
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/certificatecas/*",
            "Microsoft.KeyVault/vaults/certificates/*",
        ],
    },
    Builtin {
        guid: "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
        name: "Key Vault Certificate User",
        description: "Read entire certificate contents including secret and key portion.",
        actions: &[],
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/certificates/read",
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
            "Microsoft.KeyVault/vaults/keys/read",
        ],
    },
    Builtin {
        guid: "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        name: "Key Vault Crypto Officer",
        description: "Perform any action on the keys of a key vault, except manage permissions.",
        actions: KV_READ_ACTIONS,
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/keys/*",
            "Microsoft.KeyVault/vaults/keyrotationpolicies/*",
        ],
    },
    Builtin {
        guid: "12338af0-0e69-4776-bea7-57ae8d297424",
        name: "Key Vault Crypto User",
        description: "Perform cryptographic operations using keys.",
        actions: &[],
        not_actions: &[],
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
    Builtin {
        guid: "21090545-7ca7-4776-b22c-e363652d74d2",
        name: "Key Vault Reader",
        description: "Read metadata of key vaults and its certificates, keys, and secrets.",
        actions: KV_READ_ACTIONS,
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    },
    Builtin {
        guid: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        name: "Key Vault Secrets Officer",
        description: "Perform any action on the secrets of a key vault, except manage permissions.",
        actions: KV_READ_ACTIONS,
        not_actions: &[],
        data_actions: &["Microsoft.KeyVault/vaults/secrets/*"],
    },
    Builtin {
        guid: "4633458b-17de-408a-b874-0445c86b69e6",
        name: "Key Vault Secrets User",
        description: "Read secret contents.",
        actions: &[],
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    },
    Builtin {
        guid: "e147488a-f6f5-4113-8e2d-b22465e65bf6",
        name: "Key Vault Crypto Service Encryption User",
        description: "Read metadata of keys and perform wrap/unwrap operations.",
        actions: &[
            "Microsoft.EventGrid/eventSubscriptions/write",
            "Microsoft.EventGrid/eventSubscriptions/read",
            "Microsoft.EventGrid/eventSubscriptions/delete",
        ],
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
        ],
    },
    Builtin {
        guid: "8b54135c-b56d-4d72-a534-26097cfdc8d8",
        name: "Key Vault Data Access Administrator",
        description: "Manage access to Azure Key Vault by adding or removing role assignments.",
        actions: &[
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.KeyVault/vaults/*/read",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    Builtin {
        guid: "f25e0fa2-a7c8-4377-a976-54943a77a395",
        name: "Key Vault Contributor",
        description: "Manage key vaults, but does not allow you to assign roles in Azure RBAC.",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.KeyVault/*",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
        not_actions: &[
            "Microsoft.KeyVault/locations/deletedVaults/purge/action",
            "Microsoft.KeyVault/hsmPools/*",
            "Microsoft.KeyVault/managedHsms/*",
        ],
        data_actions: &[],
    },
    Builtin {
        guid: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        name: "Owner",
        description: "Grants full access to manage all resources, including the ability to assign roles in \
            Azure RBAC.",
        actions: &["*"],
        not_actions: &[],
        data_actions: &[],
    },
    Builtin {
        guid: "b24988ac-6180-42a0-ab88-20f7382dd24c",
        name: "Contributor",
        description: "Grants full access to manage all resources, but does not allow you to assign roles in \
            Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
        actions: &["*"],
        not_actions: &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
            "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
            "Microsoft.Subscription/cancel/action",
            "Microsoft.Subscription/enable/action",
        ],
        data_actions: &[],
    },
    Builtin {
        guid: "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        name: "User Access Administrator",
        description: "Lets you manage user access to Azure resources.",
        actions: &["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
        not_actions: &[],
        data_actions: &[],
    },
    Builtin {
        guid: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        name: "Reader",
        description: "View all resources, but does not allow you to make any changes.",
        actions: &["*/read"],
        not_actions: &[],
        data_actions: &[],
    },
    Builtin {
        guid: "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        name: "Role Based Access Control Administrator",
        description: "Manage access to Azure resources by assigning roles using Azure RBAC. This role does not \
            allow you to manage access using other ways, such as Azure Policy.",
        actions: &[
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
            "Microsoft.Support/*",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    // Identity (built-in-roles/identity.md): what idbind's own identity needs on the identities' groups.
    Builtin {
        guid: "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
        name: "Managed Identity Contributor",
        description: "Create, Read, Update, and Delete User Assigned Identity",
        actions: &[
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/write",
            "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete",
            "Microsoft.ManagedIdentity/userAssignedIdentities/revokeTokens/action",
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Support/*",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    Builtin {
        guid: "f1a07417-d97a-45cb-824c-7a7467783830",
        name: "Managed Identity Operator",
        description: "Read and Assign User Assigned Identity",
        actions: &[
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Support/*",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    // Storage (built-in-roles/storage.md).
    Builtin {
        guid: "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        name: "Storage Blob Data Reader",
        description: "Allows for read access to Azure Storage blob containers and data",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        not_actions: &[],
        data_actions: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"],
    },
    Builtin {
        guid: "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        name: "Storage Blob Data Contributor",
        description: "Allows for read, write and delete access to Azure Storage blob containers and data",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/write",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        not_actions: &[],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action",
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action",
        ],
    },
    Builtin {
        guid: "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        name: "Storage Blob Data Owner",
        description: "Allows for full access to Azure Storage blob containers and data, including assigning \
            POSIX access control.",
        actions: &[
            "Microsoft.Storage/storageAccounts/blobServices/containers/*",
            "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
        ],
        not_actions: &[],
        data_actions: &["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/*"],
    },
    Builtin {
        guid: "19e7f393-937e-4f77-808e-94535e297925",
        name: "Storage Queue Data Reader",
        description: "Allows for read access to Azure Storage queues and queue messages",
        actions: &["Microsoft.Storage/storageAccounts/queueServices/queues/read"],
        not_actions: &[],
        data_actions: &["Microsoft.Storage/storageAccounts/queueServices/queues/messages/read"],
    },
    Builtin {
        guid: "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
        name: "Storage Queue Data Contributor",
        description: "Allows for read, write, and delete access to Azure Storage queues and queue messages",
        actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/delete",
            "Microsoft.Storage/storageAccounts/queueServices/queues/read",
            "Microsoft.Storage/storageAccounts/queueServices/queues/write",
        ],
        not_actions: &[],
        data_actions: &[
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/delete",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/read",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/write",
            "Microsoft.Storage/storageAccounts/queueServices/queues/messages/process/action",
        ],
    },
    // Service Bus and App Configuration (built-in-roles/integration.md).
    Builtin {
        guid: "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
        name: "Azure Service Bus Data Receiver",
        description: "Allows for receive access to Azure Service Bus resources.",
        actions: SERVICE_BUS_ENTITY_READS,
        not_actions: &[],
        data_actions: &["Microsoft.ServiceBus/*/receive/action"],
    },
    Builtin {
        guid: "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
        name: "Azure Service Bus Data Sender",
        description: "Allows for send access to Azure Service Bus resources.",
        actions: SERVICE_BUS_ENTITY_READS,
        not_actions: &[],
        data_actions: &["Microsoft.ServiceBus/*/send/action"],
    },
    Builtin {
        guid: "090c5cfd-751d-490a-894a-3ce6f1109419",
        name: "Azure Service Bus Data Owner",
        description: "Allows for full access to Azure Service Bus resources.",
        actions: &["Microsoft.ServiceBus/*"],
        not_actions: &[],
        data_actions: &["Microsoft.ServiceBus/*"],
    },
    Builtin {
        guid: "516239f1-63e1-4d78-a4de-a74fb236a071",
        name: "App Configuration Data Reader",
        description: "Allows read access to App Configuration data.",
        actions: &[],
        not_actions: &[],
        data_actions: &["Microsoft.AppConfiguration/configurationStores/*/read"],
    },
    Builtin {
        guid: "5ae67dd6-50cb-40e7-96ff-dc2bfa4b606b",
        name: "App Configuration Data Owner",
        description: "Allows full access to App Configuration data.",
        actions: &[],
        not_actions: &[],
        data_actions: &[
            "Microsoft.AppConfiguration/configurationStores/*/read",
            "Microsoft.AppConfiguration/configurationStores/*/write",
            "Microsoft.AppConfiguration/configurationStores/*/delete",
            "Microsoft.AppConfiguration/configurationStores/*/action",
        ],
    },
    // Event Hubs (built-in-roles/analytics.md).
    Builtin {
        guid: "a638d3c7-ab3a-418d-83e6-5f17a39d4fde",
        name: "Azure Event Hubs Data Receiver",
        description: "Allows receive access to Azure Event Hubs resources.",
        actions: &["Microsoft.EventHub/*/eventhubs/consumergroups/read"],
        not_actions: &[],
        data_actions: &["Microsoft.EventHub/*/receive/action"],
    },
    Builtin {
        guid: "2b629674-e913-4c01-ae53-ef4638d8f975",
        name: "Azure Event Hubs Data Sender",
        description: "Allows send access to Azure Event Hubs resources.",
        actions: &["Microsoft.EventHub/*/eventhubs/read"],
        not_actions: &[],
        data_actions: &["Microsoft.EventHub/*/send/action"],
    },
    Builtin {
        guid: "f526a384-b230-433a-b45c-95f59c4a2dec",
        name: "Azure Event Hubs Data Owner",
        description: "Allows for full access to Azure Event Hubs resources.",
        actions: &["Microsoft.EventHub/*"],
        not_actions: &[],
        data_actions: &["Microsoft.EventHub/*"],
    },
    // Container Registry (built-in-roles/containers.md): control-plane actions, no dataActions.
    Builtin {
        guid: "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        name: "AcrPull",
        description: "acr pull",
        actions: &["Microsoft.ContainerRegistry/registries/pull/read"],
        not_actions: &[],
        data_actions: &[],
    },
    Builtin {
        guid: "8311e382-0749-4cb8-b61a-304f252e45ec",
        name: "AcrPush",
        description: "acr push",
        actions: &[
            "Microsoft.ContainerRegistry/registries/pull/read",
            "Microsoft.ContainerRegistry/registries/push/write",
        ],
        not_actions: &[],
        data_actions: &[],
    },
];

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

pub fn builtin_role_definitions() -> Vec<RoleDefinition> {
    BUILTINS
        .iter()
        .map(|b| RoleDefinition {
            name: b.guid.to_owned(),
            role_name: b.name.to_owned(),
            description: b.description.to_owned(),
            role_type: String::from("BuiltInRole"),
            permissions: vec![RolePermission {
                actions: strings(b.actions),
                not_actions: strings(b.not_actions),
                data_actions: strings(b.data_actions),
                not_data_actions: Vec::new(),
            }],
            assignable_scopes: vec![String::from("/")],
            subscription_id: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_and_names_are_unique_and_guids_are_guids() {
        let all = builtin_role_definitions();
        for (i, a) in all.iter().enumerate() {
            assert!(uuid::Uuid::parse_str(&a.name).is_ok(), "{} has a GUID", a.role_name);
            for b in &all[i + 1..] {
                assert_ne!(a.name, b.name);
                assert!(!a.role_name.eq_ignore_ascii_case(&b.role_name));
            }
        }
    }
}
