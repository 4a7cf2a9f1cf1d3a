//! Multi-tenant guardrails: the cluster-scoped `WorkloadIdentityPolicy`, with which a cluster administrator
//! says which namespaces may bind which Key Vaults, with which roles, and which existing identities they may
//! bring, and [`check`], the pure verdict on one binding.
//!
//! How it combines with the operator's flags (`--allow-any-role`, `--allow-other-subscriptions`,
//! `--allow-existing-identity`):
//! - The flags are the ceiling for every namespace: a role, subscription or brought identity they refuse is
//!   refused whatever a policy says. The defaults are safe: Key Vault data-plane reader roles only, the
//!   operator's subscription only, no brought identities.
//! - A namespace that one or more policies select may bind only what one of those policies allows: every
//!   (vault, role) pair must be allowed by a single policy that lists both, and a brought identity must be
//!   listed by one of them.
//! - A namespace that no policy selects gets the ceiling, unless the operator runs with `--require-policy`,
//!   the setting for shared clusters: there, an unselected namespace binds nothing. Without it, one team
//!   could read another team's vault with a reader role, because nothing tells idbind which vault is whose.
//! - Bringing an identity always needs a selecting policy that lists it, whatever the ceiling says: the
//!   identity's roles are whatever its Azure administrator gave it, and `--allow-existing-identity` alone
//!   would let any namespace federate any identity idbind can write to.
//!
//! The subject is never in question: it always names the binding's own namespace.

use crate::{
    api::policy::{ScopeLevel, ScopeSelector, VaultSelector, WorkloadIdentityPolicySpec},
    core::{
        resource_id::{KEY_VAULT, ResourceId, USER_ASSIGNED_IDENTITY},
        roles::RoleRef,
        validate::{DesiredBinding, DesiredGrant, DesiredIdentity, Invalid, POLICY_VIOLATION},
    },
};

/// A policy, ready to judge bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub namespaces: Vec<String>,
    /// The vaults it allows: each a resource group (every vault in it) or one vault.
    pub vaults: Vec<ResourceId>,
    /// The azureRoles scopes it allows.
    pub scopes: Vec<ScopeRule>,
    /// `None`: the reader roles (see [`crate::core::roles::BuiltinRole::default_allows`]).
    pub roles: Option<Vec<RoleRef>>,
    /// The identities it lets namespaces bring (entries that are no identity's id allow nothing).
    pub existing_identities: Vec<ResourceId>,
}

impl Rule {
    /// From a policy object; `subscription` fills a vault selector's default.
    pub fn from_policy(name: &str, spec: &WorkloadIdentityPolicySpec, subscription: &str) -> Rule {
        let vault_scope = |v: &VaultSelector| {
            let group = ResourceId::resource_group_scope(
                v.subscription_id.as_deref().unwrap_or(subscription),
                &v.resource_group,
            );
            match &v.name {
                Some(name) => group.provider_resource(KEY_VAULT, name),
                None => group,
            }
        };
        Rule {
            name: name.to_string(),
            namespaces: spec.namespaces.clone(),
            vaults: spec.key_vaults.iter().map(vault_scope).collect(),
            scopes: spec.azure_scopes.iter().map(|s| ScopeRule::from_selector(s, subscription)).collect(),
            roles: spec.roles.as_ref().map(|r| r.iter().map(|r| RoleRef::parse(r)).collect()),
            existing_identities: spec
                .existing_identities
                .iter()
                .filter_map(|i| ResourceId::parse_as(i, USER_ASSIGNED_IDENTITY).ok())
                .collect(),
        }
    }

    fn selects(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => namespace.starts_with(prefix),
            None => p == namespace,
        })
    }

    fn allows_vault(&self, vault_id: &ResourceId) -> bool {
        let group = vault_id.parent();
        vault_id.is(KEY_VAULT) && self.vaults.iter().any(|v| v == vault_id || Some(v) == group.as_ref())
    }

    fn allows_scope(&self, scope: &ResourceId) -> bool {
        self.scopes.iter().any(|s| s.allows(scope))
    }

    fn allows_role(&self, role: &RoleRef, scope: &ResourceId) -> bool {
        match &self.roles {
            Some(roles) => roles.contains(role),
            None => role.builtin().is_some_and(|b| b.default_allows(scope)),
        }
    }
}

/// One `azureScopes` selector, ready to match scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRule {
    pub subscription: String,
    /// A pattern (exact, `prefix*` or `*`); `None` only at the subscription level.
    pub resource_group: Option<String>,
    /// `Namespace/type[/childType...]`; `None`: any type.
    pub resource_types: Option<Vec<String>>,
    /// Patterns; `None`: any name.
    pub names: Option<Vec<String>>,
    pub level: ScopeLevel,
}

impl ScopeRule {
    pub fn from_selector(selector: &ScopeSelector, subscription: &str) -> ScopeRule {
        ScopeRule {
            subscription: selector.subscription_id.clone().unwrap_or_else(|| subscription.to_string()),
            resource_group: selector.resource_group.clone(),
            resource_types: selector.resource_types.clone(),
            names: selector.names.clone(),
            level: selector.level,
        }
    }

    /// Whether `scope` is one this selector allows: exactly the subscription, a matching resource group, or a
    /// matching resource, as its level says. Azure's names compare without regard to case, and so do these.
    pub fn allows(&self, scope: &ResourceId) -> bool {
        if !scope.in_subscription(&self.subscription) {
            return false;
        }
        let group_ok = || {
            let group = scope.resource_group();
            group.is_some_and(|g| self.resource_group.as_deref().is_some_and(|p| matches(p, g)))
        };
        match self.level {
            ScopeLevel::Subscription => *scope == ResourceId::subscription_scope(&self.subscription),
            ScopeLevel::ResourceGroup => group_ok() && scope.provider().is_none(),
            ScopeLevel::Resource => {
                let ty = scope.provider().zip(scope.resource_type()).map(|(ns, ty)| format!("{ns}/{ty}"));
                let type_ok = |ty: &str| {
                    self.resource_types
                        .as_ref()
                        .is_none_or(|types| types.iter().any(|t| t.eq_ignore_ascii_case(ty)))
                };
                let name_ok = |name: &str| {
                    self.names.as_ref().is_none_or(|names| names.iter().any(|p| matches(p, name)))
                };
                group_ok()
                    && scope.provider_parts() == 1
                    && ty.is_some_and(|ty| type_ok(&ty))
                    && scope.name().is_some_and(name_ok)
            }
        }
    }
}

/// A name pattern: `*` (anything), `prefix*`, or an exact name; without regard to case.
fn matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// What the policies say about a binding in `namespace` that passed [`crate::core::validate::validate`] (and
/// so the ceiling): nothing when it may proceed, else the problems, each naming its field.
pub fn check(
    namespace: &str,
    desired: &DesiredBinding,
    rules: &[Rule],
    require_policy: bool,
) -> Vec<Invalid> {
    let selecting: Vec<&Rule> = rules.iter().filter(|r| r.selects(namespace)).collect();
    let names = selecting.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut problems = Vec::new();
    // Whatever the ceiling says: an identity's roles are whatever its Azure administrator gave it, so only a
    // policy naming it says this namespace may have them.
    if let DesiredIdentity::Existing { id } = &desired.identity
        && !selecting.iter().any(|r| r.existing_identities.contains(id))
    {
        let message = if selecting.is_empty() {
            format!(
                "no WorkloadIdentityPolicy selects namespace {namespace}; bringing an identity needs one that \
                 lists it in existingIdentities"
            )
        } else {
            format!("no policy for namespace {namespace} ({names}) lets it bring this identity")
        };
        problems.push(violation("spec.identity.resourceId".into(), message));
    }
    problems.extend(scope_problems(namespace, desired, &selecting));
    if selecting.is_empty() {
        if require_policy {
            let message = format!(
                "no WorkloadIdentityPolicy selects namespace {namespace}, and the operator requires one"
            );
            problems.push(violation("metadata.namespace".into(), message));
        }
        return problems;
    }
    for (i, vault) in desired.vaults.iter().enumerate() {
        let for_vault: Vec<&Rule> =
            selecting.iter().copied().filter(|r| r.allows_vault(&vault.resource_id)).collect();
        if for_vault.is_empty() {
            let message =
                format!("no policy for namespace {namespace} ({names}) allows vault {}", vault.resource_id);
            problems.push(violation(format!("spec.keyVaults[{i}]"), message));
        } else {
            problems.extend(roles_refused(namespace, &format!("spec.keyVaults[{i}]"), vault, &for_vault));
        }
    }
    problems
}

/// What the policies say of the azureRoles scopes. A scope above a single resource needs a selecting policy
/// that allows it at its level, whether or not the operator requires policies: a resource group or a
/// subscription holds other teams' resources, so only a cluster administrator may hand it out.
fn scope_problems(namespace: &str, desired: &DesiredBinding, selecting: &[&Rule]) -> Vec<Invalid> {
    let names = selecting.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut problems = Vec::new();
    for (i, grant) in desired.scopes.iter().enumerate() {
        let scope = &grant.resource_id;
        let level = match (scope.resource_group(), scope.provider()) {
            (None, _) => Some("subscription"),
            (Some(_), None) => Some("resource group"),
            _ => None,
        };
        let field = format!("spec.azureRoles[{i}]");
        if selecting.is_empty() {
            if let Some(level) = level {
                let message = format!(
                    "a {level} scope ({scope}) needs a WorkloadIdentityPolicy that allows it, and none selects \
                     namespace {namespace}"
                );
                problems.push(violation(format!("{field}.scope"), message));
            }
            continue;
        }
        let for_scope: Vec<&Rule> = selecting.iter().copied().filter(|r| r.allows_scope(scope)).collect();
        if for_scope.is_empty() {
            let at = level
                .map(|l| format!(" (a {l} scope: the selector's level must allow it)"))
                .unwrap_or_default();
            let message = format!("no policy for namespace {namespace} ({names}) allows scope {scope}{at}");
            problems.push(violation(format!("{field}.scope"), message));
        } else {
            problems.extend(roles_refused(namespace, &field, grant, &for_scope));
        }
    }
    problems
}

/// The roles of the grant at `field` (`spec.keyVaults[0]`) that none of the policies allowing its scope
/// allows: a scope and its role must come from one policy.
fn roles_refused(namespace: &str, field: &str, grant: &DesiredGrant, for_scope: &[&Rule]) -> Vec<Invalid> {
    let names = for_scope.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
    let scope = &grant.resource_id;
    let refused = grant
        .roles
        .iter()
        .enumerate()
        .filter(|(_, (_, role))| !for_scope.iter().any(|r| r.allows_role(role, scope)));
    refused
        .map(|(j, (written, _))| {
            // Named, so that whoever reads the refusal knows which policy to ask to change.
            let what = if scope.is(KEY_VAULT) { "vault" } else { "scope" };
            let message = format!(
                "no policy for namespace {namespace} allows role {written:?} on {what} {scope} (policies \
                 allowing the {what}: {names})"
            );
            violation(format!("{field}.roles[{j}]"), message)
        })
        .collect()
}

fn violation(field: String, message: String) -> Invalid {
    Invalid { field, reason: POLICY_VIOLATION, message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::binding::{IdentitySpec, KeyVaultAccess, ScopedRoles, WorkloadIdentityBindingSpec},
        core::{
            settings::{Ceiling, OperatorSettings},
            validate::validate,
        },
    };

    const SUB: &str = "00000000-0000-0000-0000-000000000001";

    fn settings() -> OperatorSettings {
        OperatorSettings::example()
    }

    fn rule(
        name: &str,
        namespaces: &[&str],
        vaults: &[(&str, Option<&str>)],
        roles: Option<&[&str]>,
        identities: &[&str],
    ) -> Rule {
        let spec = WorkloadIdentityPolicySpec {
            namespaces: namespaces.iter().map(ToString::to_string).collect(),
            key_vaults: vaults
                .iter()
                .map(|(rg, n)| VaultSelector {
                    subscription_id: None,
                    resource_group: rg.to_string(),
                    name: n.map(str::to_string),
                })
                .collect(),
            roles: roles.map(|r| r.iter().map(ToString::to_string).collect()),
            existing_identities: identities.iter().map(ToString::to_string).collect(),
            ..Default::default()
        };
        Rule::from_policy(name, &spec, SUB)
    }

    /// A policy for `namespaces` allowing `scopes` with `roles`.
    fn scope_rule(name: &str, scopes: Vec<ScopeSelector>, roles: Option<&[&str]>) -> Rule {
        let spec = WorkloadIdentityPolicySpec {
            namespaces: vec!["team-a".into()],
            azure_scopes: scopes,
            roles: roles.map(|r| r.iter().map(ToString::to_string).collect()),
            ..Default::default()
        };
        Rule::from_policy(name, &spec, SUB)
    }

    fn selector(
        group: Option<&str>,
        types: Option<&[&str]>,
        names: Option<&[&str]>,
        level: ScopeLevel,
    ) -> ScopeSelector {
        let list = |l: &[&str]| l.iter().map(ToString::to_string).collect();
        ScopeSelector {
            subscription_id: None,
            resource_group: group.map(str::to_string),
            resource_types: types.map(list),
            names: names.map(list),
            level,
        }
    }

    const STORAGE: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-data/providers/Microsoft.Storage/storageAccounts/shopdata";
    const BUS: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-data/providers/Microsoft.ServiceBus/namespaces/shop-bus";
    const GROUP: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-data";
    const SUBSCRIPTION: &str = "/subscriptions/00000000-0000-0000-0000-000000000001";

    /// A binding of team-a with these azureRoles entries, validated under an open ceiling.
    fn scoped(entries: &[(&str, &[&str])]) -> DesiredBinding {
        let spec = WorkloadIdentityBindingSpec {
            service_account_name: "app".into(),
            azure_roles: entries
                .iter()
                .map(|(scope, roles)| ScopedRoles {
                    scope: scope.to_string(),
                    roles: roles.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            ..Default::default()
        };
        let open = Ceiling { allow_any_role: true, ..Ceiling::default() };
        validate("team-a", "b", &spec, &settings(), &open)
            .unwrap_or_else(|e| panic!("test binding invalid: {e:?}"))
    }

    #[test]
    fn scopes_above_a_resource_need_a_policy_at_their_level_whatever_the_ceiling() {
        let b = scoped(&[
            (STORAGE, &["Storage Blob Data Reader"]),
            (GROUP, &["Storage Blob Data Reader"]),
            (SUBSCRIPTION, &["Reader"]),
        ]);
        // No policy: the resource passes (the ceiling already judged its role), the broader scopes do not.
        let problems = check("team-a", &b, &[], false);
        assert!(problems[0].message.contains("a resource group scope"), "{problems:?}");
        assert_eq!(fields(problems), ["spec.azureRoles[1].scope", "spec.azureRoles[2].scope"]);
        // A policy at the resource level does not allow the group as a whole.
        let resources =
            scope_rule("data", vec![selector(Some("rg-data"), None, None, ScopeLevel::Resource)], None);
        assert_eq!(
            fields(check("team-a", &b, std::slice::from_ref(&resources), false)),
            ["spec.azureRoles[1].scope", "spec.azureRoles[2].scope"]
        );
        let broad = scope_rule(
            "broad",
            vec![
                selector(Some("rg-*"), None, None, ScopeLevel::Resource),
                selector(Some("rg-data"), None, None, ScopeLevel::ResourceGroup),
                selector(None, None, None, ScopeLevel::Subscription),
            ],
            Some(&["Storage Blob Data Reader", "Reader"]),
        );
        assert!(check("team-a", &b, &[broad], true).is_empty());
    }

    #[test]
    fn scope_selectors_match_subscription_group_type_and_name() {
        let other_sub = STORAGE.replace("0001/", "0002/");
        let container = format!("{STORAGE}/blobServices/default/containers/invoices");
        let storage_in = |group: &str, names: Option<&[&str]>| {
            selector(Some(group), Some(&["microsoft.storage/STORAGEACCOUNTS"]), names, ScopeLevel::Resource)
        };
        let table: Vec<(ScopeSelector, &str, bool)> = vec![
            (storage_in("rg-data", None), STORAGE, true),
            (storage_in("RG-DATA", Some(&["shop*"])), STORAGE, true),
            (storage_in("rg-data", Some(&["other"])), STORAGE, false),
            (storage_in("rg-d*", None), STORAGE, true),
            (storage_in("rg-other", None), STORAGE, false),
            (storage_in("rg-data", None), BUS, false),
            (storage_in("rg-data", None), &other_sub, false),
            (storage_in("rg-data", None), GROUP, false),
            // A child's type is its own: a selector for accounts does not match a container, and vice versa.
            (storage_in("rg-data", None), &container, false),
            (
                selector(
                    Some("rg-data"),
                    Some(&["Microsoft.Storage/storageAccounts/blobServices/containers"]),
                    Some(&["invoices"]),
                    ScopeLevel::Resource,
                ),
                &container,
                true,
            ),
            (selector(Some("*"), None, None, ScopeLevel::Resource), BUS, true),
            (selector(Some("*"), None, None, ScopeLevel::Resource), GROUP, false),
            (selector(Some("rg-data"), None, None, ScopeLevel::ResourceGroup), GROUP, true),
            (selector(Some("rg-data"), None, None, ScopeLevel::ResourceGroup), STORAGE, false),
            (selector(None, None, None, ScopeLevel::Subscription), SUBSCRIPTION, true),
            (selector(None, None, None, ScopeLevel::Subscription), GROUP, false),
        ];
        for (selector, scope, allowed) in table {
            let rule = ScopeRule::from_selector(&selector, SUB);
            let id = ResourceId::parse(scope).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(rule.allows(&id), allowed, "{selector:?} on {scope}");
        }
    }

    #[test]
    fn a_scope_and_its_role_must_come_from_one_policy() {
        let rules = [
            scope_rule("read-data", vec![selector(Some("rg-data"), None, None, ScopeLevel::Resource)], None),
            scope_rule(
                "write-bus",
                vec![selector(
                    Some("rg-data"),
                    Some(&["Microsoft.ServiceBus/namespaces"]),
                    None,
                    ScopeLevel::Resource,
                )],
                Some(&["Azure Service Bus Data Sender"]),
            ),
        ];
        let b = scoped(&[
            (STORAGE, &["Storage Blob Data Reader", "Storage Blob Data Contributor"]),
            (BUS, &["Azure Service Bus Data Receiver", "Azure Service Bus Data Sender"]),
        ]);
        let problems = check("team-a", &b, &rules, false);
        assert!(problems[0].message.ends_with("(policies allowing the scope: read-data)"), "{problems:?}");
        // Without roles, a policy allows the reader roles of the scope's own service only.
        assert_eq!(fields(problems), ["spec.azureRoles[0].roles[1]"]);
        let elsewhere = scoped(&[(BUS, &["Storage Blob Data Reader"])]);
        assert_eq!(fields(check("team-a", &elsewhere, &rules[..1], false)), ["spec.azureRoles[0].roles[0]"]);
    }

    fn binding(vaults: &[(&str, &str, &[&str])], identity: Option<&str>) -> DesiredBinding {
        let spec = WorkloadIdentityBindingSpec {
            service_account_name: "app".into(),
            identity: IdentitySpec { resource_id: identity.map(str::to_string), ..Default::default() },
            key_vaults: vaults
                .iter()
                .map(|(rg, n, roles)| KeyVaultAccess {
                    name: Some(n.to_string()),
                    resource_group: Some(rg.to_string()),
                    roles: roles.iter().map(ToString::to_string).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let open = Ceiling { allow_any_role: true, allow_existing_identity: true, ..Ceiling::default() };
        validate("team-a", "b", &spec, &settings(), &open)
            .unwrap_or_else(|e| panic!("test binding invalid: {e:?}"))
    }

    fn fields(problems: Vec<Invalid>) -> Vec<String> {
        problems.into_iter().map(|p| p.field).collect()
    }

    const ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/shared";

    #[test]
    fn without_policies_the_ceiling_applies_unless_one_is_required() {
        let b = binding(&[("rg-b", "kv-b", &["Key Vault Secrets User"])], None);
        assert!(check("team-a", &b, &[], false).is_empty());
        assert_eq!(fields(check("team-a", &b, &[], true)), ["metadata.namespace"]);
        // A policy for other namespaces does not select this one.
        let other = rule("team-b", &["team-b", "team-b-*"], &[("rg-b", None)], None, &[]);
        assert_eq!(fields(check("team-a", &b, std::slice::from_ref(&other), true)), ["metadata.namespace"]);
        assert!(check("team-b-dev", &b, &[other], true).is_empty(), "prefix patterns select");
    }

    #[test]
    fn a_selected_namespace_binds_only_its_own_vaults_and_roles() {
        let team_a =
            rule("team-a", &["team-a"], &[("rg-a", None), ("rg-shared", Some("kv-common"))], None, &[]);
        let rules = [
            team_a,
            rule("team-b", &["team-b"], &[("rg-b", None)], Some(&["Key Vault Secrets Officer"]), &[]),
        ];
        let ok = binding(
            &[
                ("rg-a", "kv-1", &["Key Vault Secrets User", "Key Vault Reader"]),
                ("RG-SHARED", "KV-COMMON", &["Key Vault Certificate User"]),
            ],
            None,
        );
        assert!(check("team-a", &ok, &rules, true).is_empty());
        // Another team's vault, a vault of a shared group not listed, and a write role.
        let bad = binding(
            &[
                ("rg-b", "kv-b", &["Key Vault Secrets User"]),
                ("rg-shared", "kv-other", &["Key Vault Reader"]),
                ("rg-a", "kv-1", &["Key Vault Secrets Officer", "Owner"]),
            ],
            None,
        );
        assert_eq!(
            fields(check("team-a", &bad, &rules, true)),
            [
                "spec.keyVaults[0]",
                "spec.keyVaults[1]",
                "spec.keyVaults[2].roles[0]",
                "spec.keyVaults[2].roles[1]"
            ]
        );
    }

    #[test]
    fn a_vault_and_its_role_must_come_from_one_policy() {
        // One policy lets team-a read rg-x, another lets it administer rg-y: neither lets it administer rg-x.
        let rules = [
            rule("read-x", &["team-a"], &[("rg-x", None)], None, &[]),
            rule("admin-y", &["team-a"], &[("rg-y", None)], Some(&["Key Vault Administrator"]), &[]),
        ];
        let b = binding(
            &[("rg-x", "kv-x", &["Key Vault Administrator"]), ("rg-y", "kv-y", &["Key Vault Administrator"])],
            None,
        );
        let problems = check("team-a", &b, &rules, false);
        assert!(problems[0].message.ends_with("(policies allowing the vault: read-x)"), "{problems:?}");
        assert_eq!(fields(problems), ["spec.keyVaults[0].roles[0]"]);
    }

    #[test]
    fn a_brought_identity_must_be_listed() {
        let rules = [rule("team-a", &["team-a"], &[], None, &[ID])];
        assert!(check("team-a", &binding(&[], Some(ID)), &rules, true).is_empty());
        assert!(
            check("team-a", &binding(&[], Some(&ID.to_uppercase())), &rules, true).is_empty(),
            "ids compare case-insensitively"
        );
        let other = ID.replace("shared", "team-b-identity");
        assert_eq!(
            fields(check("team-a", &binding(&[], Some(&other)), &rules, true)),
            ["spec.identity.resourceId"]
        );
    }

    #[test]
    fn bringing_an_identity_needs_a_policy_whatever_the_ceiling() {
        // The ceiling allows brought identities (binding() validates with allow_existing_identity), yet with
        // no policy selecting the namespace the identity is refused, with or without --require-policy.
        let b = binding(&[], Some(ID));
        assert_eq!(fields(check("team-a", &b, &[], false)), ["spec.identity.resourceId"]);
        assert_eq!(
            fields(check("team-a", &b, &[], true)),
            ["spec.identity.resourceId", "metadata.namespace"]
        );
        // A policy for another namespace that lists it does not help.
        let theirs = rule("team-b", &["team-b"], &[], None, &[ID]);
        assert_eq!(fields(check("team-a", &b, &[theirs], false)), ["spec.identity.resourceId"]);
    }

    #[test]
    fn namespace_patterns_select_exact_names_prefixes_and_all() {
        let table: &[(&str, &str, bool)] = &[
            ("shop", "shop", true),
            ("shop", "shop-dev", false),
            ("shop-*", "shop-dev", true),
            ("shop-*", "shop", false),
            ("shop*", "shopping", true),
            ("*", "anything", true),
        ];
        for (pattern, namespace, selects) in table {
            let r = rule("p", &[pattern], &[], None, &[]);
            assert_eq!(r.selects(namespace), *selects, "{pattern} selects {namespace}");
        }
    }
}
