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
    /// '*' for all. A namespace may be selected by several policies; it may then bind what any one allows.
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

    /// The roles these namespaces may ask for on those vaults: built-in names ("Key Vault Secrets User"),
    /// role definition GUIDs or ids. Absent: the Key Vault data-plane reader roles. The operator's
    /// --allow-any-role still has to allow any other role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub roles: Option<Vec<String>>,

    /// Existing identities (full resource ids) these namespaces may bring with spec.identity.resourceId.
    /// Empty: none. The operator's --allow-existing-identity still has to allow bringing identities at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub existing_identities: Vec<String>,
}

/// A set of vaults: every vault of a resource group, or one vault by name.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultSelector {
    /// Subscription of the vaults; default: the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// Resource group of the vaults.
    #[schemars(length(min = 1, max = 90))]
    pub resource_group: String,
    /// One vault's name; absent: every vault in the resource group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
