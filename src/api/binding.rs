//! The `WorkloadIdentityBinding` custom resource (group `idbind.dev`, version `v1alpha1`).
//!
//! The doc comments on these types are the API reference: they become the CRD's OpenAPI descriptions, which
//! is what `kubectl explain wib.spec...` prints. Say what a field means to a user, what it defaults to, and
//! what happens when it changes.
//!
//! Validation lives in two places. What can be decided from the object alone (ARM's name rules, enums, the
//! mutually exclusive ways of naming a vault, immutable fields) is in the schema, so the API server rejects
//! it before idbind ever sees it, and GitOps tools show the error at apply time. What needs configuration or
//! Azure (policy, whether a vault exists) is `validate`'s job.

// kube-derive expands each printcolumn(...) into attributes that clippy reads as duplicates.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The field manager idbind uses for everything it writes to Kubernetes (status, ServiceAccount annotations),
/// so `kubectl get -o yaml --show-managed-fields` names us.
pub const FIELD_MANAGER: &str = "idbind.dev/controller";

/// What the schema says of a resource id spelled with what a URL parser rewrites. idbind judges an id as
/// written and its requests carry it to Azure through a URL, so both must be the same text (see
/// `core::resource_id`).
pub(crate) const PLAIN_ID: &str = "must be spelled plainly: no '\\', '%', empty segment ('//'), '.' or '..' \
    segment, whitespace or non-ASCII character. A URL parser rewrites these, so Azure would act on another \
    resource than the one idbind checks";

/// Audience of the projected ServiceAccount token that Entra ID exchanges; fixed by Entra for workload
/// identity federation ("must be api://AzureADTokenExchange").
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Binds a Kubernetes ServiceAccount to an Azure user-assigned managed identity through workload identity
/// federation, and grants that identity access to Key Vaults and other Azure resources.
///
/// idbind creates (or, with identity.resourceId, uses) the managed identity, adds a federated identity
/// credential that trusts this cluster's OIDC issuer for
/// system:serviceaccount:<namespace>:<serviceAccountName>, assigns the requested Key Vault and Azure roles,
/// and annotates the ServiceAccount with azure.workload.identity/client-id and tenant-id. Pods that use the
/// ServiceAccount (and carry the label azure.workload.identity/use: "true") then get Azure tokens for the
/// identity. Deleting the binding removes what idbind created; with deletionPolicy Retain the identity and
/// its allowed grants stay.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "idbind.dev",
    version = "v1alpha1",
    kind = "WorkloadIdentityBinding",
    plural = "workloadidentitybindings",
    singular = "workloadidentitybinding",
    shortname = "wib",
    category = "idbind",
    namespaced,
    status = "WorkloadIdentityBindingStatus",
    derive = "PartialEq",
    derive = "Default",
    doc = "Binds a ServiceAccount in this namespace to an Azure managed identity (workload identity \
        federation) and grants it Azure roles.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether Azure and the ServiceAccount match the spec"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        description = "Why the binding is (not) ready",
        priority = 1
    ),
    printcolumn(
        name = "Client ID",
        type_ = "string",
        json_path = ".status.identity.clientId",
        description = "Client id of the bound managed identity"
    ),
    printcolumn(
        name = "Identity",
        type_ = "string",
        json_path = ".status.identity.name",
        description = "Name of the bound managed identity"
    ),
    printcolumn(
        name = "Service Account",
        type_ = "string",
        json_path = ".spec.serviceAccountName",
        description = "The bound ServiceAccount",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityBindingSpec {
    /// Name of the ServiceAccount, in the binding's own namespace, whose pods get the identity. The federated
    /// credential trusts exactly system:serviceaccount:<this namespace>:<name>; a binding can never federate
    /// a ServiceAccount of another namespace. The ServiceAccount may be created before or after the binding.
    /// Changing it moves the federation (and the annotations) to the new ServiceAccount.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub service_account_name: String,

    /// The Azure user-assigned managed identity to bind. Every field is optional: by default idbind creates
    /// an identity named after the cluster, namespace and binding in the operator's default resource group
    /// and location.
    #[serde(default)]
    pub identity: IdentitySpec,

    /// Key Vaults the identity may read, and with which roles. For a vault that uses Azure RBAC idbind
    /// creates one role assignment per role, scoped to the vault; for a vault that still uses access policies
    /// it adds an access policy with the matching read permissions instead. Removing an entry (or a role)
    /// removes exactly what idbind created for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(v, self.exists_one(w, (has(v.resourceId) ? \
        v.resourceId.lowerAscii() : v.resourceGroup.lowerAscii() + '/' + v.name.lowerAscii()) == \
        (has(w.resourceId) ? w.resourceId.lowerAscii() : w.resourceGroup.lowerAscii() + '/' + \
        w.name.lowerAscii())))").message("keyVaults must not list the same vault twice: merge the roles into one entry"))]
    pub key_vaults: Vec<KeyVaultAccess>,

    /// Azure roles on other Azure resources: a Storage account, a Service Bus namespace, a Container
    /// Registry, an App Configuration store, or any other resource (and, where a WorkloadIdentityPolicy
    /// allows it, a resource group or the subscription). idbind checks that each scope exists, resolves the
    /// role names, creates one role assignment per role scoped to it, and removes exactly what an edit no
    /// longer asks for. List a Key Vault under keyVaults, not here. Which roles and scopes a namespace may
    /// use is up to the operator's policy: by default only data-plane reader roles (such as "Storage Blob
    /// Data Reader", "Azure Service Bus Data Receiver", "AcrPull", "App Configuration Data Reader") on single
    /// resources in the operator's subscription.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, a.scope.lowerAscii() == b.scope.lowerAscii()))").message("azureRoles must not list the same scope twice: merge the roles into one entry"))]
    pub azure_roles: Vec<ScopedRoles>,

    /// What happens in Azure when the binding is deleted. Delete (the default) removes the role assignments
    /// and access policies, the federated credential and the identity idbind created (never an identity it
    /// did not create). Retain keeps the identity and the grants the policies still allow, and removes the
    /// federated credential (a namespace of this name may later belong to someone else) and any grant no
    /// policy allows any more. Both remove the ServiceAccount annotations.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Names of SecretProviderClasses (secrets-store.csi.x-k8s.io, the Key Vault CSI driver's) in the
    /// binding's own namespace whose spec.parameters.clientID and spec.parameters.tenantId idbind keeps equal
    /// to the bound identity's, so they need not be copied by hand (leave both out of the class you apply).
    /// idbind writes those two parameters and nothing else, only on classes whose spec.provider is azure, and
    /// never creates a class: a class that does not exist yet is reported (SecretProviderClassNotFound) and
    /// wired when it is created. Removing a name (or deleting the binding) removes the parameters idbind
    /// wrote there, unless someone else also set them. At most 16, each named once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(inner(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    ))]
    pub secret_provider_classes: Vec<String>,

    /// A ConfigMap, in the binding's namespace, that idbind fills with the bound identity's ids: clientId,
    /// tenantId, principalId and resourceId, and AZURE_CLIENT_ID and AZURE_TENANT_ID for containers that read
    /// them with envFrom. The ConfigMap is owned by the binding (Kubernetes deletes it with the binding);
    /// idbind never writes a ConfigMap of that name that it did not create for this binding (ExportConflict).
    /// Removing export (or changing the name) deletes the ConfigMap idbind made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportSpec>,
}

/// Which managed identity a binding uses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.resourceId) || (!has(self.name) && !has(self.resourceGroup) && \
    !has(self.location) && !has(self.tags))").message("identity.resourceId names an existing identity; it \
        cannot be combined with identity.name, identity.resourceGroup, identity.location or identity.tags").field_path(".resourceId"))]
#[x_kube(validation = Rule::new("(has(self.location) ? self.location : '') == (has(oldSelf.location) ? \
    oldSelf.location : '') || (has(self.name) ? self.name : '') != (has(oldSelf.name) ? oldSelf.name : '') \
    || has(self.resourceId) || has(oldSelf.resourceId)").message("identity.location cannot change while identity.name stays the same: Azure cannot move an identity between regions. Change identity.name as well, and idbind creates the new identity and deletes the old one").field_path(".location"))]
pub struct IdentitySpec {
    /// Name of the managed identity idbind creates and owns. 3-128 characters: letters, digits, '-' and '_',
    /// starting with a letter or digit (Azure's rule). Default: derived from the cluster name, the namespace
    /// and the binding name, shortened with a hash when too long. Changing it makes idbind create the new
    /// identity, move the federation and role assignments to it, and delete the old identity (pods get the
    /// new client id on restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 128), regex(pattern = r"^[a-zA-Z0-9][a-zA-Z0-9_-]*$"))]
    pub name: Option<String>,

    /// Resource group of the managed identity, in the operator's subscription. 1-90 characters: letters,
    /// digits, '_', '-', '.', '(' and ')', not ending in '.'. Default: the operator's configured resource
    /// group for identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 90), regex(pattern = r"^[-a-zA-Z0-9_.()]*[-a-zA-Z0-9_()]$"))]
    pub resource_group: Option<String>,

    /// Azure region of the managed identity, as a short name such as westeurope or eastus2. Default: the
    /// operator's configured location. Cannot change unless the name changes too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z][a-z0-9]*$"))]
    pub location: Option<String>,

    /// Extra Azure tags for the identity idbind creates (at most 40; Azure allows 50 and idbind adds its own
    /// ownership tags, whose names start with "idbind.dev" in any letter case: Azure compares tag names
    /// without regard to case, so those names are reserved in every spelling). Azure limits names to 512
    /// characters without < > % & \ ? / and values to 256 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 40))]
    #[x_kube(validation = Rule::new("self.all(k, !k.lowerAscii().startsWith('idbind.dev'))").message("identity.tags: \
        tag names starting with 'idbind.dev', in any letter case, are reserved for idbind's ownership tags"))]
    pub tags: Option<BTreeMap<String, String>>,

    /// Full resource id of an existing user-assigned identity to use instead of creating one ("bring your own
    /// identity"), e.g.
    /// /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>.
    /// idbind then manages only the federated credential and the role assignments, and never modifies or
    /// deletes the identity itself. Whether a namespace may do this is up to the operator's policy (denied by
    /// default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new(r"!self.matches(r'[\\%\s]|//|(^|/)\.\.?(/|$)|[^\x21-\x7E]')").message(PLAIN_ID))]
    #[x_kube(validation = Rule::new(r"self.matches(r'(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-a-z0-9_.()]*[-a-z0-9_()]/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[a-z0-9][a-z0-9_-]{2,127}$')").message("must be /subscriptions/<subscription GUID>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>, with an identity name of 3-128 letters, digits, '-' and '_'"))]
    pub resource_id: Option<String>,
}

/// Access to one Key Vault. Name the vault either with name and resourceGroup (in the operator's
/// subscription), or with its full resourceId.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.resourceId) ? !has(self.name) && !has(self.resourceGroup) : \
    has(self.name) && has(self.resourceGroup)").message("each keyVaults entry needs either resourceId, or both name and resourceGroup (not both forms)"))]
pub struct KeyVaultAccess {
    /// Name of the vault: 3-24 characters, letters, digits and '-', starting with a letter, ending with a
    /// letter or digit, no '--'. Use together with resourceGroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 24), regex(pattern = r"^[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z0-9]$"))]
    #[x_kube(validation = Rule::new("!self.contains('--')").message("keyVaults[].name must not contain '--'"))]
    pub name: Option<String>,

    /// Resource group of the vault (in the operator's subscription). Use together with name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 90), regex(pattern = r"^[-a-zA-Z0-9_.()]*[-a-zA-Z0-9_()]$"))]
    pub resource_group: Option<String>,

    /// Full resource id of the vault,
    /// /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.KeyVault/vaults/<name>. Needed for a vault
    /// in another subscription (if the operator's policy allows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new(r"!self.matches(r'[\\%\s]|//|(^|/)\.\.?(/|$)|[^\x21-\x7E]')").message(PLAIN_ID))]
    #[x_kube(validation = Rule::new(r"self.matches(r'(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/resourcegroups/[-a-z0-9_.()]*[-a-z0-9_()]/providers/Microsoft\.KeyVault/vaults/[a-z][a-z0-9-]{1,22}[a-z0-9]$')").message("must be /subscriptions/<subscription GUID>/resourceGroups/<group>/providers/Microsoft.KeyVault/vaults/<name>, with a vault name of 3-24 letters, digits and '-', starting with a letter"))]
    pub resource_id: Option<String>,

    /// Roles to grant on the vault: built-in role names such as "Key Vault Secrets User" or "Key Vault
    /// Certificate User", a role definition GUID, or a full role definition id. For a vault that uses access
    /// policies, the role's read permissions are granted as an access policy instead. Which roles a namespace
    /// may use is up to the WorkloadIdentityPolicy selecting the namespace and the operator's ceiling (by
    /// default the Key Vault data-plane reader roles, "Key Vault Secrets User", "Key Vault Certificate User"
    /// and "Key Vault Reader"; "Key Vault Crypto User" where a policy names it).
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(inner(
        length(min = 1, max = 256),
        regex(
            pattern = r"^([A-Za-z0-9][A-Za-z0-9 ._()-]{0,127}|(/subscriptions/[0-9a-fA-F-]{36})?/providers/Microsoft\.Authorization/roleDefinitions/[0-9a-fA-F-]{36})$"
        )
    ))]
    pub roles: Vec<String>,
}

/// Roles on one Azure scope.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScopedRoles {
    /// Full resource id of the scope: a resource,
    /// /subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Storage/storageAccounts/<name> (a child
    /// resource such as a blob container works too); a resource group,
    /// /subscriptions/<id>/resourceGroups/<rg>; or a subscription, /subscriptions/<id>. A scope above a
    /// single resource always needs a WorkloadIdentityPolicy that allows it. The scope must exist
    /// (ScopeNotFound otherwise), at exactly this id: Azure's answer to a GET of it must name the same id.
    /// Names are ASCII letters, digits and - _ . ( ) $, not ending in '.'; provider namespaces
    /// (Microsoft.Storage) and types ASCII letters and digits.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new(r"!self.matches(r'[\\%\s]|//|(^|/)\.\.?(/|$)|[^\x21-\x7E]')").message(PLAIN_ID))]
    #[x_kube(validation = Rule::new(r"self.matches(r'(?i)^/subscriptions/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(/resourcegroups/[-a-z0-9_.()]*[-a-z0-9_()](/providers/[a-z][a-z0-9]*(\.[a-z0-9]+)+(/[a-z][a-z0-9]*/[-a-z0-9_.()$]*[-a-z0-9_()$])+)?)?/?$')").message("must be /subscriptions/<subscription GUID>, optionally followed by /resourceGroups/<group>, optionally followed by /providers/<Namespace.Service>/<type>/<name>[/<type>/<name>...]; names are ASCII letters, digits and - _ . ( ) $ and do not end in '.', namespaces and types ASCII letters and digits"))]
    pub scope: String,

    /// Roles to grant on the scope: built-in role names such as "Storage Blob Data Reader" (matched without
    /// regard to case, as Azure matches them), a role definition GUID, or a full role definition id.
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(inner(
        length(min = 1, max = 256),
        regex(
            pattern = r"^([A-Za-z0-9][A-Za-z0-9 ._()-]{0,127}|(/subscriptions/[0-9a-fA-F-]{36})?/providers/Microsoft\.Authorization/roleDefinitions/[0-9a-fA-F-]{36})$"
        )
    ))]
    pub roles: Vec<String>,
}

/// What happens in Azure when the binding is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    /// Remove the role assignments, access policies, federated credential and the identity that idbind
    /// created.
    #[default]
    Delete,
    /// Keep the identity and the grants the policies still allow; the federated credential, any grant no
    /// policy allows any more and the ServiceAccount annotations are removed.
    Retain,
}

/// Observed state, written by idbind only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentityBindingStatus {
    /// The metadata.generation this status describes. When it differs from metadata.generation, idbind has
    /// not yet acted on the latest spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready summarises the binding; IdentityReady, FederatedCredentialReady, RoleAssignmentsReady and
    /// ServiceAccountReady say which part is (not) done, and SecretProviderClassesReady and ExportReady too
    /// when the spec names classes or an export; Reconciling is present while work is under way and Stalled
    /// when retrying alone will not help (the reason and message say what to fix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The managed identity the binding holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityStatus>,

    /// The federated identity credential idbind holds on the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_credential: Option<FederatedCredentialStatus>,

    /// The role assignments idbind holds for this binding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_assignments: Vec<RoleAssignmentStatus>,

    /// The Key Vault access policies idbind holds for this binding (vaults without RBAC).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_policies: Vec<AccessPolicyStatus>,

    /// The WorkloadIdentityPolicies that selected the binding's namespace when idbind last let it through
    /// (empty: let through by no policy, in a cluster whose namespaces were open). Once set, a namespace no
    /// policy selects any more has been taken back by an administrator, and the binding loses its grants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admitted_by: Vec<String>,

    /// The ServiceAccount (in the binding's namespace) that carries idbind's annotations. When
    /// spec.serviceAccountName changes, idbind removes its annotations from this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,

    /// The SecretProviderClasses (in the binding's namespace) the binding named when idbind last wired them.
    /// When a name leaves spec.secretProviderClasses, idbind removes the parameters it wrote on that class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_provider_classes: Vec<String>,

    /// The ConfigMap (in the binding's namespace) idbind exports the identity's ids to. When spec.export
    /// changes or goes, idbind deletes this ConfigMap if it is the one it made for this binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_config_map: Option<String>,

    /// What idbind last wrote outside Azure for this binding: the ServiceAccount's annotations, each named
    /// SecretProviderClass's clientID and tenantId, and the export ConfigMap, each by the object's UID. The
    /// export ConfigMap's entry is the proof that idbind created it: idbind writes or deletes only the
    /// ConfigMap whose UID is recorded here and that names this binding as its controller. The entries also
    /// tell a change someone else made from one idbind has to make: idbind undoes one such change, and a
    /// second stalls the binding instead of starting a write loop with the other writer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub written: Vec<WrittenStatus>,
}

/// The kind of object idbind writes outside Azure.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum WrittenKind {
    /// The bound ServiceAccount (its azure.workload.identity annotations).
    #[default]
    ServiceAccount,
    /// A named SecretProviderClass (its spec.parameters.clientID and tenantId).
    SecretProviderClass,
    /// The export ConfigMap (its data).
    ConfigMap,
}

/// One object idbind wrote for the binding, as it last wrote it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WrittenStatus {
    pub kind: WrittenKind,
    /// Its name, in the binding's namespace.
    pub name: String,
    /// Its metadata.uid when idbind wrote it: an object made anew is another object.
    pub uid: String,
    /// The client id idbind wrote there.
    pub client_id: String,
    /// The binding's metadata.generation when idbind last wrote it.
    pub generation: i64,
    /// Set once idbind undid a change someone else made to what it wrote (this client id, this generation):
    /// the writers that made it, as their field managers say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone: Option<String>,
    /// Set when someone changed it again after that and idbind left it alone (the binding is stalled): the
    /// writers that did. Cleared once the object carries idbind's values again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contested: Option<String>,
}

/// Identifiers of the bound managed identity.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct IdentityStatus {
    /// Azure resource id of the identity.
    pub resource_id: String,
    /// Name of the identity.
    pub name: String,
    /// Client (application) id: what the ServiceAccount's azure.workload.identity/client-id annotation
    /// carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Object id of the identity's service principal: what role assignments name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal_id: Option<String>,
    /// Entra tenant of the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// True when idbind created the identity (and deletes it with deletionPolicy Delete); false for an
    /// identity brought with identity.resourceId.
    #[serde(default)]
    pub managed: bool,
}

/// The federated identity credential on the identity.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FederatedCredentialStatus {
    /// Name of the credential under the identity.
    pub name: String,
    /// The OIDC issuer it trusts (this cluster's, from the operator's configuration).
    pub issuer: String,
    /// The subject it trusts: system:serviceaccount:<namespace>:<serviceAccountName>.
    pub subject: String,
}

/// One role assignment held by the binding.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoleAssignmentStatus {
    /// Azure resource id of the role assignment.
    pub id: String,
    /// Scope of the assignment (the vault's, or the azureRoles entry's, resource id).
    pub scope: String,
    /// The role definition id assigned.
    pub role_definition_id: String,
    /// The role as written in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// One access policy held by the binding on a vault that does not use RBAC.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicyStatus {
    /// Resource id of the vault.
    pub vault_id: String,
    /// Secret permissions granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Key permissions granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Certificate permissions granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
}

/// Where idbind exports the bound identity's ids for workloads to read.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ExportSpec {
    /// Name of the ConfigMap, in the binding's namespace, that idbind creates and keeps with the keys
    /// clientId, tenantId, principalId, resourceId, AZURE_CLIENT_ID and AZURE_TENANT_ID. If a ConfigMap of
    /// that name exists and idbind did not create it for this binding, it is left alone (ExportConflict).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub config_map_name: String,
}
