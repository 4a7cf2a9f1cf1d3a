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
    api::policy::{VaultSelector, WorkloadIdentityPolicySpec},
    core::{
        resource_id::{KEY_VAULT, ResourceId, USER_ASSIGNED_IDENTITY},
        roles::RoleRef,
        validate::{DesiredBinding, DesiredIdentity, DesiredVault, Invalid, POLICY_VIOLATION},
    },
};

/// A policy, ready to judge bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub namespaces: Vec<String>,
    /// The vaults it allows: each a resource group (every vault in it) or one vault.
    pub vaults: Vec<ResourceId>,
    /// `None`: the reader roles.
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

    fn allows_role(&self, role: &RoleRef) -> bool {
        match &self.roles {
            Some(roles) => roles.contains(role),
            None => role.builtin().is_some_and(|b| b.read_only),
        }
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
            problems.extend(roles_refused(namespace, i, vault, &for_vault));
        }
    }
    problems
}

/// Vault `i`'s roles that none of the policies allowing the vault allows: a vault and its role must come from
/// one policy.
fn roles_refused(namespace: &str, i: usize, vault: &DesiredVault, for_vault: &[&Rule]) -> Vec<Invalid> {
    let names = for_vault.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
    let refused = vault
        .roles
        .iter()
        .enumerate()
        .filter(|(_, (_, role))| !for_vault.iter().any(|r| r.allows_role(role)));
    refused
        .map(|(j, (written, _))| {
            // Named, so that whoever reads the refusal knows which policy to ask to change.
            let message = format!(
                "no policy for namespace {namespace} allows role {written:?} on vault {} (policies allowing the \
                 vault: {names})",
                vault.resource_id
            );
            violation(format!("spec.keyVaults[{i}].roles[{j}]"), message)
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
        api::binding::{IdentitySpec, KeyVaultAccess, WorkloadIdentityBindingSpec},
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
        };
        Rule::from_policy(name, &spec, SUB)
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
