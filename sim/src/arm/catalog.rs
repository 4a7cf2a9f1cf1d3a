//! The resource providers and types the simulator knows: what Providers_Get lists, which api-versions each
//! type accepts, and the seedable types a binding may name as a role-assignment scope (Storage accounts,
//! Service Bus and Event Hubs namespaces, container registries, App Configuration stores).
//!
//! The api-versions of the seedable types are the folders under
//! `specification/<rp>/resource-manager/<namespace>/{stable,preview}/` in Azure/azure-rest-api-specs, as the
//! RP's `readme.md` package tags list them [SPEC]. Every version listed is accepted and answered with the
//! same shape: the fields we serve did not change between them. A type's Providers_Get entry lists exactly
//! the versions it accepts, newest first as ARM lists them, previews included, so a client that picks "the
//! newest stable version from Providers_Get" (what `az resource show --ids` does) always picks one we serve.

use super::route::Family;

/// How a seeded resource is rendered (the shape of its provider's Get example).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    StorageAccount,
    ServiceBusNamespace,
    EventHubNamespace,
    ContainerRegistry,
    AppConfigurationStore,
    /// A blob container of a seeded Storage account (a child resource, not in `SEEDABLE`).
    BlobContainer,
}

/// A top-level resource type that can be seeded and read with GET.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// `Microsoft.Storage`.
    pub namespace: &'static str,
    /// `storageAccounts`: the type below the namespace, as in Providers_Get's `resourceType`.
    pub path: &'static str,
    /// The `type` the provider answers with; Service Bus and Event Hubs capitalise `Namespaces` [SPEC:
    /// SBNameSpaceCreate.json, EHNameSpaceCreate.json].
    pub type_name: &'static str,
    /// The Get operation's operationId (counters, holds, faults).
    pub get_operation: &'static str,
    /// The RBAC action a GET needs.
    pub read_action: &'static str,
    pub api_versions: &'static [&'static str],
    pub shape: Shape,
    /// `sku.name` when the seed names none.
    pub default_sku: &'static str,
}

impl ResourceType {
    /// `Microsoft.Storage/storageAccounts`.
    pub fn canonical(&self) -> String {
        format!("{}/{}", self.namespace, self.path)
    }
}

// specification/storage/resource-manager/readme.md, package tags 2015-06 to 2026-09 [SPEC].
const STORAGE_VERSIONS: &[&str] = &[
    "2015-05-01-preview",
    "2015-06-15",
    "2016-01-01",
    "2016-05-01",
    "2016-12-01",
    "2017-06-01",
    "2017-10-01",
    "2018-02-01",
    "2018-03-01-preview",
    "2018-07-01",
    "2018-11-01",
    "2019-04-01",
    "2019-06-01",
    "2020-08-01-preview",
    "2021-01-01",
    "2021-02-01",
    "2021-04-01",
    "2021-06-01",
    "2021-08-01",
    "2021-09-01",
    "2022-05-01",
    "2022-09-01",
    "2023-01-01",
    "2023-04-01",
    "2023-05-01",
    "2024-01-01",
    "2025-01-01",
    "2025-06-01",
    "2025-08-01",
    "2026-04-01",
    "2026-06-01",
    "2026-09-01",
];

// Blob containers came with blob.json in 2018-02-01 (package-2018-02 and later tags) [SPEC].
const BLOB_CONTAINER_VERSIONS: &[&str] = &[
    "2018-02-01",
    "2018-03-01-preview",
    "2018-07-01",
    "2018-11-01",
    "2019-04-01",
    "2019-06-01",
    "2020-08-01-preview",
    "2021-01-01",
    "2021-02-01",
    "2021-04-01",
    "2021-06-01",
    "2021-08-01",
    "2021-09-01",
    "2022-05-01",
    "2022-09-01",
    "2023-01-01",
    "2023-04-01",
    "2023-05-01",
    "2024-01-01",
    "2025-01-01",
    "2025-06-01",
    "2025-08-01",
    "2026-04-01",
    "2026-06-01",
    "2026-09-01",
];

// specification/servicebus/resource-manager/readme.md [SPEC].
const SERVICE_BUS_VERSIONS: &[&str] = &[
    "2015-08-01",
    "2017-04-01",
    "2018-01-01-preview",
    "2021-01-01-preview",
    "2021-06-01-preview",
    "2021-11-01",
    "2022-01-01-preview",
    "2022-10-01-preview",
    "2023-01-01-preview",
    "2024-01-01",
];

// specification/eventhub/resource-manager/readme.md [SPEC].
const EVENT_HUB_VERSIONS: &[&str] = &[
    "2014-09-01",
    "2015-08-01",
    "2017-04-01",
    "2018-01-01-preview",
    "2021-01-01-preview",
    "2021-06-01-preview",
    "2021-11-01",
    "2022-01-01-preview",
    "2022-10-01-preview",
    "2023-01-01-preview",
    "2024-01-01",
    "2024-05-01-preview",
    "2025-05-01-preview",
];

// specification/containerregistry/resource-manager/Microsoft.ContainerRegistry/Registry/readme.md [SPEC].
const CONTAINER_REGISTRY_VERSIONS: &[&str] = &[
    "2016-06-27-preview",
    "2017-03-01",
    "2017-06-01-preview",
    "2017-10-01",
    "2019-05-01",
    "2019-12-01-preview",
    "2020-11-01-preview",
    "2021-06-01-preview",
    "2021-08-01-preview",
    "2021-09-01",
    "2021-12-01-preview",
    "2022-02-01-preview",
    "2022-12-01",
    "2023-01-01-preview",
    "2023-06-01-preview",
    "2023-07-01",
    "2023-08-01-preview",
    "2023-11-01-preview",
    "2024-11-01-preview",
    "2025-03-01-preview",
    "2025-04-01",
    "2025-05-01-preview",
];

// The stable folders under specification/appconfiguration/resource-manager/Microsoft.AppConfiguration/ and
// the previews its readme.md lists [SPEC]; later previews exist but were not read.
const APP_CONFIGURATION_VERSIONS: &[&str] = &[
    "2019-02-01-preview",
    "2019-10-01",
    "2019-11-01-preview",
    "2020-06-01",
    "2020-07-01-preview",
    "2021-03-01-preview",
    "2021-10-01-preview",
    "2022-05-01",
    "2023-03-01",
    "2024-06-01",
];

pub static STORAGE_ACCOUNTS: ResourceType = ResourceType {
    namespace: "Microsoft.Storage",
    path: "storageAccounts",
    type_name: "Microsoft.Storage/storageAccounts",
    get_operation: "StorageAccounts_GetProperties",
    read_action: "Microsoft.Storage/storageAccounts/read",
    api_versions: STORAGE_VERSIONS,
    shape: Shape::StorageAccount,
    default_sku: "Standard_LRS",
};

pub static SERVICE_BUS_NAMESPACES: ResourceType = ResourceType {
    namespace: "Microsoft.ServiceBus",
    path: "namespaces",
    type_name: "Microsoft.ServiceBus/Namespaces",
    get_operation: "Namespaces_Get",
    read_action: "Microsoft.ServiceBus/namespaces/read",
    api_versions: SERVICE_BUS_VERSIONS,
    shape: Shape::ServiceBusNamespace,
    default_sku: "Standard",
};

pub static EVENT_HUB_NAMESPACES: ResourceType = ResourceType {
    namespace: "Microsoft.EventHub",
    path: "namespaces",
    type_name: "Microsoft.EventHub/Namespaces",
    get_operation: "Namespaces_Get",
    read_action: "Microsoft.EventHub/namespaces/read",
    api_versions: EVENT_HUB_VERSIONS,
    shape: Shape::EventHubNamespace,
    default_sku: "Standard",
};

pub static CONTAINER_REGISTRIES: ResourceType = ResourceType {
    namespace: "Microsoft.ContainerRegistry",
    path: "registries",
    type_name: "Microsoft.ContainerRegistry/registries",
    get_operation: "Registries_Get",
    read_action: "Microsoft.ContainerRegistry/registries/read",
    api_versions: CONTAINER_REGISTRY_VERSIONS,
    shape: Shape::ContainerRegistry,
    default_sku: "Standard",
};

pub static APP_CONFIGURATION_STORES: ResourceType = ResourceType {
    namespace: "Microsoft.AppConfiguration",
    path: "configurationStores",
    type_name: "Microsoft.AppConfiguration/configurationStores",
    get_operation: "ConfigurationStores_Get",
    read_action: "Microsoft.AppConfiguration/configurationStores/read",
    api_versions: APP_CONFIGURATION_VERSIONS,
    shape: Shape::AppConfigurationStore,
    default_sku: "Standard",
};

/// Blob containers: `{account id}/blobServices/default/containers/{name}` [SPEC: BlobContainersGet.json].
pub static BLOB_CONTAINERS: ResourceType = ResourceType {
    namespace: "Microsoft.Storage",
    path: "storageAccounts/blobServices/containers",
    type_name: "Microsoft.Storage/storageAccounts/blobServices/containers",
    get_operation: "BlobContainers_Get",
    read_action: "Microsoft.Storage/storageAccounts/blobServices/containers/read",
    api_versions: BLOB_CONTAINER_VERSIONS,
    shape: Shape::BlobContainer,
    default_sku: "",
};

/// Every seedable type.
pub static SEEDABLE: &[&ResourceType] = &[
    &STORAGE_ACCOUNTS,
    &SERVICE_BUS_NAMESPACES,
    &EVENT_HUB_NAMESPACES,
    &CONTAINER_REGISTRIES,
    &APP_CONFIGURATION_STORES,
];

/// The seedable type `namespace`/`path` (both case-insensitive).
pub fn seedable(namespace: &str, path: &str) -> Option<&'static ResourceType> {
    SEEDABLE
        .iter()
        .copied()
        .find(|t| t.namespace.eq_ignore_ascii_case(namespace) && t.path.eq_ignore_ascii_case(path))
}

/// The seedable type named `Microsoft.Storage/storageAccounts` (case-insensitive).
pub fn seedable_by_name(full: &str) -> Option<&'static ResourceType> {
    let (namespace, path) = full.split_once('/')?;
    seedable(namespace, path)
}

/// Whether some seedable type lives in `namespace`.
pub fn is_seedable_namespace(namespace: &str) -> bool {
    SEEDABLE.iter().any(|t| t.namespace.eq_ignore_ascii_case(namespace))
}

/// One `resourceTypes` entry of Providers_Get.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeListing {
    pub resource_type: &'static str,
    /// Newest first.
    pub api_versions: Vec<&'static str>,
    /// Regional types list regions; tenant- and subscription-wide ones none, as in ARM.
    pub regional: bool,
    pub capabilities: &'static str,
}

/// Providers_Get's answer for one namespace, before rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderListing {
    pub namespace: &'static str,
    pub resource_types: Vec<TypeListing>,
}

const TRACKED: &str =
    "CrossResourceGroupResourceMove, CrossSubscriptionResourceMove, SupportsTags, SupportsLocation";
const PROXY: &str = "None";

/// Newest first: api-versions are dates (a preview sorts right after its date's stable version).
pub fn newest_first(versions: &[&'static str]) -> Vec<&'static str> {
    let mut v = versions.to_vec();
    v.sort_unstable_by(|a, b| b.cmp(a));
    v
}

fn listing(resource_type: &'static str, versions: &[&'static str], regional: bool) -> TypeListing {
    let capabilities = if regional { TRACKED } else { PROXY };
    TypeListing { resource_type, api_versions: newest_first(versions), regional, capabilities }
}

/// Every namespace the simulator serves, with the types it serves in each and the versions it accepts for
/// them.
pub fn providers() -> Vec<ProviderListing> {
    let mut out: Vec<ProviderListing> = Vec::new();
    for t in SEEDABLE {
        let entry = listing(t.path, t.api_versions, true);
        match out.iter_mut().find(|p| p.namespace == t.namespace) {
            Some(p) => p.resource_types.push(entry),
            None => out.push(ProviderListing { namespace: t.namespace, resource_types: vec![entry] }),
        }
    }
    // Whether ARM lists the nested container type on its own is [UNVERIFIED]; listing it keeps "pick a
    // version from Providers_Get, then GET" working for a container scope.
    if let Some(storage) = out.iter_mut().find(|p| p.namespace == STORAGE_ACCOUNTS.namespace) {
        storage.resource_types.push(listing(BLOB_CONTAINERS.path, BLOB_CONTAINERS.api_versions, false));
    }
    let kv = Family::KeyVault.api_versions();
    let msi = Family::Msi.api_versions();
    let authz = Family::Authorization.api_versions();
    out.push(ProviderListing {
        namespace: "Microsoft.KeyVault",
        resource_types: vec![listing("vaults", kv, true), listing("vaults/accessPolicies", kv, false)],
    });
    out.push(ProviderListing {
        namespace: "Microsoft.ManagedIdentity",
        resource_types: vec![
            listing("userAssignedIdentities", msi, true),
            listing("userAssignedIdentities/federatedIdentityCredentials", msi, false),
        ],
    });
    out.push(ProviderListing {
        namespace: "Microsoft.Authorization",
        resource_types: vec![
            listing("roleAssignments", authz, false),
            listing("roleDefinitions", authz, false),
        ],
    });
    out.push(ProviderListing {
        namespace: "Microsoft.Resources",
        resource_types: vec![
            listing("subscriptions", Family::Subscriptions.api_versions(), false),
            listing("resourceGroups", Family::Resources.api_versions(), true),
            listing("subscriptions/providers", Family::Resources.api_versions(), false),
        ],
    });
    out
}

/// The namespace `namespace` (case-insensitive), if the simulator serves it.
pub fn provider(namespace: &str) -> Option<ProviderListing> {
    providers().into_iter().find(|p| p.namespace.eq_ignore_ascii_case(namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_listings_are_newest_first() {
        assert_eq!(seedable("microsoft.storage", "STORAGEACCOUNTS"), Some(&STORAGE_ACCOUNTS));
        assert_eq!(seedable_by_name("Microsoft.ServiceBus/namespaces"), Some(&SERVICE_BUS_NAMESPACES));
        assert_eq!(seedable("Microsoft.Storage", "blobServices"), None);
        assert!(is_seedable_namespace("microsoft.eventhub") && !is_seedable_namespace("Microsoft.Web"));
        let storage = provider("microsoft.storage").map(|p| p.resource_types[0].api_versions.clone());
        let storage = storage.unwrap_or_default();
        assert_eq!(storage.first(), Some(&"2026-09-01"));
        assert!(storage.windows(2).all(|w| w[0] > w[1]));
        assert!(provider("Microsoft.KeyVault").is_some() && provider("Microsoft.Nope").is_none());
        for t in SEEDABLE {
            assert!(
                t.api_versions.iter().any(|v| !v.ends_with("-preview")),
                "{} has a stable version",
                t.path
            );
        }
    }
}
