//! `WorkloadIdentityPolicy`: the cluster-scoped object with which a cluster administrator says which
//! namespaces may bind which Key Vaults, with which roles, and which existing identities they may bring. Its
//! doc comments are the API reference (`kubectl explain wip.spec`); the verdict on a binding is
//! [`crate::core::policy::check`].

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Says which namespaces may bind which Key Vaults, with which roles, and which existing identities they may
/// bring. Cluster-scoped: only cluster administrators write it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "idbind.dev",
    version = "v1alpha1",
    kind = "WorkloadIdentityPolicy",
    plural = "workloadidentitypolicies",
    singular = "workloadidentitypolicy",
    shortname = "wip",
    category = "idbind",
    derive = "PartialEq",
    derive = "Default",
    doc = "Which namespaces may bind which Key Vaults with which roles, and which existing identities they \
        may bring (cluster-scoped).",
    printcolumn(
        name = "Namespaces",
        type_ = "string",
        json_path = ".spec.namespaces",
        description = "Namespaces this policy applies to"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityPolicySpec {
    /// The namespaces this policy applies to: exact names, a prefix followed by '*' (team-a-*, shop-*), or
    /// '*' for all. A namespace may be selected by several policies; it may then bind what any one allows. A
    /// namespace no policy selects binds nothing (unless the operator runs with IDBIND_OPEN_NAMESPACES).
    #[schemars(length(min = 1, max = 64))]
    #[schemars(inner(
        length(min = 1, max = 64),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$|^[a-z0-9][-a-z0-9]*\*$|^\*$")
    ))]
    pub namespaces: Vec<String>,

    /// The Key Vaults these namespaces may bind. Empty: none.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub key_vaults: Vec<VaultSelector>,

    /// The Azure scopes (resources, resource groups, subscriptions) these namespaces may name in a binding's
    /// azureRoles. Empty: none. A scope above a single resource (a resource group, a subscription) is allowed
    /// only by a selector whose level says so, and is never allowed without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub azure_scopes: Vec<ScopeSelector>,

    /// The roles these namespaces may ask for on those vaults and scopes: built-in names ("Key Vault Secrets
    /// User", "Storage Blob Data Contributor"), role definition GUIDs or ids. Absent: the data-plane reader
    /// roles (docs/policies.md lists them). The operator's --allow-any-role still has to allow any other
    /// role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub roles: Option<Vec<String>>,

    /// Existing identities (full resource ids) these namespaces may bring with spec.identity.resourceId.
    /// Empty: none. The operator's --allow-existing-identity still has to allow bringing identities at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 512)))]
    #[x_kube(validation = Rule::new(r"self.all(i, i.matches(r'(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-a-z0-9_.()]*[-a-z0-9_()]/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[a-z0-9][a-z0-9_-]{2,127}$'))").message("each existingIdentities entry must be /subscriptions/<subscription GUID>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>, spelled plainly (no '\\', '%', '.' or '..' segment, whitespace or non-ASCII character): the form spec.identity.resourceId must have"))]
    pub existing_identities: Vec<String>,
}

/// An exact name, which may contain `{namespace}` once (the binding's namespace).
const EXACT_NAME: &str = r"^([^{}*]*|[^{}*]*\{namespace\}[^{}*]*)$";
/// `*`, an exact name or a prefix followed by `*`; either may contain `{namespace}` once, and in a prefix it
/// must be followed by `_`, `.`, `(` or `)`, which no namespace name contains (see
/// [`crate::core::policy::NamePattern`]).
const NAME_PATTERN: &str =
    r"^(\*|[^{}*]+\*?|[^{}*]*\{namespace\}[^{}*]*|[^{}*]*\{namespace\}[_.()][^{}*]*\*)$";

/// A set of Azure scopes a binding's azureRoles may name: resources matched by resource group, type and name
/// (the default level), or resource groups, or the subscription itself.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.level != 'Subscription' || (!has(self.resourceGroup) && \
    !has(self.resourceTypes) && !has(self.names))").message("a Subscription-level selector names no \
    resource group, type or name"))]
#[x_kube(validation = Rule::new("self.level == 'Subscription' || has(self.resourceGroup)").message("resourceGroup \
    is required unless level is Subscription"))]
#[x_kube(validation = Rule::new("self.level != 'ResourceGroup' || (!has(self.resourceTypes) && \
    !has(self.names))").message("a ResourceGroup-level selector names no resource type or name"))]
pub struct ScopeSelector {
    /// Subscription of the scopes; default: the operator's. Another subscription also needs the operator's
    /// --allow-other-subscriptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    ))]
    pub subscription_id: Option<String>,
    /// The resource group: an exact name, a prefix followed by '*' (team-a-*), or '*' for any. '{namespace}'
    /// stands for the binding's namespace (rg-{namespace}, or rg-{namespace}_* for every group starting so: a
    /// prefix needs '_', '.', '(' or ')' right after '{namespace}', so that namespace team never matches the
    /// groups of namespace team-b). Required unless level is Subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 91), regex(pattern = NAME_PATTERN))]
    pub resource_group: Option<String>,
    /// Resource types, such as Microsoft.Storage/storageAccounts or
    /// Microsoft.Storage/storageAccounts/blobServices/containers (compared without regard to case). Absent:
    /// any type. Only for level Resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16), inner(length(min = 3, max = 256)))]
    pub resource_types: Option<Vec<String>>,
    /// Resource names: exact, a prefix followed by '*', or '*'; '{namespace}' as in resourceGroup
    /// (kv-{namespace}). Absent: any name. Only for level Resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 260), regex(pattern = NAME_PATTERN)))]
    pub names: Option<Vec<String>>,
    /// What the scope itself may be: Resource (the default: single resources in the resource group),
    /// ResourceGroup (the resource group as a whole, every resource in it now and later) or Subscription (the
    /// whole subscription).
    #[serde(default)]
    pub level: ScopeLevel,
}

/// How broad a scope a [`ScopeSelector`] allows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ScopeLevel {
    /// Single resources (or their children, such as a blob container).
    #[default]
    Resource,
    /// A resource group as a whole.
    ResourceGroup,
    /// The subscription as a whole.
    Subscription,
}

/// A set of vaults: every vault of a resource group, or one vault by name.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultSelector {
    /// Subscription of the vaults; default: the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// Resource group of the vaults: an exact name, in which '{namespace}' stands for the binding's namespace
    /// (rg-{namespace}: each namespace the vaults of its own group).
    #[schemars(length(min = 1, max = 90), regex(pattern = EXACT_NAME))]
    pub resource_group: String,
    /// One vault's name, in which '{namespace}' stands for the binding's namespace (kv-{namespace}); absent:
    /// every vault in the resource group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 90), regex(pattern = EXACT_NAME))]
    pub name: Option<String>,
}
