//! Property tests: whatever a user (or an attacker) writes into a binding, validation and naming never panic,
//! every Azure name idbind derives is one ARM accepts, and the guarantees the security model rests on hold
//! for every input, not only the examples in the unit tests: the subject always names the binding's own
//! namespace, the issuer is always the operator's, and the default policy never lets a write role, another
//! subscription or a brought identity through, nor, on any Azure scope, a role whose definition has a write
//! or authorization action there, or a scope above a single resource.

use std::collections::BTreeMap;

use idbind::{
    api::binding::{DeletionPolicy, IdentitySpec, KeyVaultAccess, ScopedRoles, WorkloadIdentityBindingSpec},
    api::policy::{ScopeSelector, WorkloadIdentityPolicySpec},
    core::naming::{
        FIC_NAME_MAX, IDENTITY_NAME_MAX, federated_credential_name, identity_name, role_assignment_name,
    },
    core::policy::{self, Rule},
    core::resource_id::{KEY_VAULT, ResourceId},
    core::roles::{BUILTIN_ROLES, Permissions, RoleRef},
    core::settings::{Ceiling, OperatorSettings},
    core::validate::{DesiredIdentity, ListedRole, validate},
};
use proptest::{collection, option, prelude::*};

const SUB: &str = "00000000-0000-0000-0000-000000000001";
const ISSUER: &str = "https://oidc.example/tenant/issuer/";

/// ARM's rule for user-assigned identity and FIC names: letters, digits, '-' and '_', starting with a letter
/// or digit, within the length limit.
fn arm_name_ok(name: &str, max: usize) -> bool {
    (3..=max).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn settings() -> OperatorSettings {
    OperatorSettings {
        cluster_name: "aks-prod".into(),
        subscription_id: SUB.into(),
        default_resource_group: Some("rg-ids".into()),
        default_location: Some("westeurope".into()),
        issuer: ISSUER.into(),
        operator_client_id: None,
        operator_service_account: None,
    }
}

/// Strings as the API server could pass them (any Unicode, including ARM-hostile characters), mixed with the
/// shapes idbind cares about.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
        Just("Key Vault Secrets User".to_string()),
        Just("Owner".to_string()),
        Just("User Access Administrator".to_string()),
        Just("4633458b-17de-408a-b874-0445c86b69e6".to_string()),
        Just(
            "/providers/Microsoft.Authorization/roleDefinitions/8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
                .to_string()
        ),
    ]
}

fn resource_id() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z]{3,8}".prop_map(|n| format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{n}")),
        "[a-z]{3,8}".prop_map(|n| format!("/subscriptions/00000000-0000-0000-0000-0000000000ff/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{n}")),
        "[a-z]{3,8}".prop_map(|n| format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{n}")),
        Just(format!("/subscriptions/{SUB}")),
    ]
}

fn vault() -> impl Strategy<Value = KeyVaultAccess> {
    (option::of(text()), option::of(text()), option::of(resource_id()), collection::vec(text(), 0..5))
        .prop_map(|(name, resource_group, resource_id, roles)| KeyVaultAccess {
            name,
            resource_group,
            resource_id,
            roles,
        })
}

/// Scopes of every shape: resources of the services idbind knows and of providers whose actions the reader
/// roles carry (deployments, support), children, identities, resource groups, subscriptions, other
/// subscriptions, management groups, extension resources, and noise.
fn scope() -> impl Strategy<Value = String> {
    let known = [
        "Microsoft.Storage",
        "Microsoft.ServiceBus",
        "Microsoft.ContainerRegistry",
        "Microsoft.AppConfiguration",
        "Microsoft.EventHub",
        "Microsoft.KeyVault",
        "Microsoft.Resources",
        "Microsoft.Insights",
        "Microsoft.Support",
        "Microsoft.ManagedIdentity",
        "Microsoft.Authorization",
        "microsoft.storage",
    ];
    let namespace = prop_oneof![
        4 => prop::sample::select(known.to_vec()).prop_map(str::to_string),
        1 => "[A-Z][a-z]{2,6}\\.[A-Z][a-z]{2,6}",
    ];
    let subscription = prop_oneof![Just(SUB), Just("00000000-0000-0000-0000-0000000000ff")];
    let group = "rg-[a-z]{1,4}";
    let resource = (
        subscription.clone(),
        group,
        namespace,
        "[a-zA-Z]{3,12}",
        "[a-z0-9-]{3,12}",
        option::of(("[a-zA-Z]{3,8}", "[a-z]{3,8}")),
    )
        .prop_map(|(s, g, ns, ty, name, child)| {
            let child = child.map(|(t, n)| format!("/{t}/{n}")).unwrap_or_default();
            format!("/subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{ty}/{name}{child}")
        });
    prop_oneof![
        4 => resource,
        1 => (subscription.clone(), group).prop_map(|(s, g)| format!("/subscriptions/{s}/resourceGroups/{g}")),
        1 => subscription.prop_map(|s| format!("/subscriptions/{s}")),
        1 => Just("/providers/Microsoft.Management/managementGroups/mg".to_string()),
        1 => Just(format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a/providers/Microsoft.Authorization/roleAssignments/x")),
        1 => any::<String>(),
    ]
}

/// Roles: every built-in idbind knows, by name (any casing) and by GUID, and unknown names and GUIDs; the
/// reader roles (the ones that can pass) more often.
fn azure_role() -> impl Strategy<Value = String> {
    let readers: Vec<&str> =
        BUILTIN_ROLES.iter().filter(|b| b.default_on.is_some()).map(|b| b.name).collect();
    prop_oneof![
        4 => prop::sample::select(readers).prop_map(str::to_string),
        4 => (0..BUILTIN_ROLES.len(), any::<bool>()).prop_map(|(i, upper)| {
            let name = BUILTIN_ROLES[i].name;
            if upper { name.to_uppercase() } else { name.to_string() }
        }),
        2 => (0..BUILTIN_ROLES.len()).prop_map(|i| BUILTIN_ROLES[i].guid.to_string()),
        1 => text(),
    ]
}

fn azure_roles(entries: std::ops::Range<usize>) -> impl Strategy<Value = Vec<ScopedRoles>> {
    collection::vec(
        (scope(), collection::vec(azure_role(), 1..3))
            .prop_map(|(scope, roles)| ScopedRoles { scope, roles }),
        entries,
    )
}

fn spec() -> impl Strategy<Value = WorkloadIdentityBindingSpec> {
    let identity = (
        option::of(text()),
        option::of(text()),
        option::of(text()),
        option::of(collection::btree_map(text(), text(), 0..3)),
        option::of(resource_id()),
    )
        .prop_map(|(name, resource_group, location, tags, resource_id)| IdentitySpec {
            name,
            resource_group,
            location,
            tags,
            resource_id,
        });
    (
        text(),
        identity,
        collection::vec(vault(), 0..4),
        azure_roles(0..4),
        prop_oneof![Just(DeletionPolicy::Delete), Just(DeletionPolicy::Retain)],
    )
        .prop_map(|(service_account_name, identity, key_vaults, azure_roles, deletion_policy)| {
            WorkloadIdentityBindingSpec {
                service_account_name,
                identity,
                key_vaults,
                azure_roles,
                deletion_policy,
                ..WorkloadIdentityBindingSpec::default()
            }
        })
}

fn policy() -> impl Strategy<Value = Ceiling> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(allow_any_role, allow_other_subscriptions, allow_existing_identity, open_namespaces)| Ceiling {
            allow_any_role,
            allow_other_subscriptions,
            allow_existing_identity,
            open_namespaces,
        },
    )
}

fn permissions() -> impl Strategy<Value = Permissions> {
    let names = || {
        collection::btree_set(
            prop_oneof![
                Just("get".to_string()),
                Just("list".to_string()),
                Just("GET".to_string()),
                Just("sign".to_string())
            ],
            0..4,
        )
    };
    (names(), names(), names()).prop_map(|(secrets, keys, certificates)| Permissions {
        secrets,
        keys,
        certificates,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn derived_names_are_valid_arm_names_and_deterministic(cluster in any::<String>(), namespace in any::<String>(), name in any::<String>()) {
        let id = identity_name(&cluster, &namespace, &name);
        prop_assert!(arm_name_ok(&id, IDENTITY_NAME_MAX), "identity name {id:?}");
        prop_assert_eq!(&id, &identity_name(&cluster, &namespace, &name));
        let fic = federated_credential_name(&cluster, &namespace, &name);
        prop_assert!(arm_name_ok(&fic, FIC_NAME_MAX), "FIC name {fic:?}");
    }

    #[test]
    fn different_bindings_get_different_names(a in ("[a-z]{1,4}", "[a-z-]{1,6}", "[a-z.-]{1,6}"), b in ("[a-z]{1,4}", "[a-z-]{1,6}", "[a-z.-]{1,6}")) {
        prop_assume!(a != b);
        prop_assert_ne!(identity_name(&a.0, &a.1, &a.2), identity_name(&b.0, &b.1, &b.2));
        prop_assert_ne!(federated_credential_name(&a.0, &a.1, &a.2), federated_credential_name(&b.0, &b.1, &b.2));
    }

    #[test]
    fn role_assignment_names_ignore_case_only(
        group in "[A-Za-z0-9]{1,12}",
        vault in "[A-Za-z0-9]{3,12}",
        role in "[a-f0-9-]{8,36}",
        principal in "[A-Fa-f0-9-]{8,36}",
    ) {
        let scope = ResourceId::resource_group_scope(SUB, &group).provider_resource(KEY_VAULT, &vault);
        let name = role_assignment_name(&scope, &role, &principal);
        let shouted = ResourceId::parse(&scope.to_string().to_uppercase()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(name, role_assignment_name(&shouted, &role.to_uppercase(), &principal.to_lowercase()));
        prop_assert_eq!(name.get_version_num(), 5);
        let other = ResourceId::resource_group_scope(SUB, &group).provider_resource(KEY_VAULT, &format!("{vault}x"));
        prop_assert_ne!(name, role_assignment_name(&other, &role, &principal));
    }

    #[test]
    fn role_references_parse_without_panicking(role in any::<String>()) {
        let parsed = RoleRef::parse(&role);
        // A reference that is a known built-in is one by GUID, however it was written.
        if let Some(b) = parsed.builtin() {
            prop_assert_eq!(RoleRef::parse(b.guid), parsed);
        }
    }

    #[test]
    fn validation_never_panics_and_keeps_the_security_invariants(namespace in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", name in "[a-z0-9]([-a-z0-9.]{0,40}[a-z0-9])?", spec in spec(), policy in policy()) {
        let Ok(d) = validate(&namespace, &name, &spec, &settings(), &policy) else {
            return Ok(());
        };
        // The subject names the binding's own namespace, whatever the spec says.
        prop_assert_eq!(&d.subject, &format!("system:serviceaccount:{namespace}:{}", spec.service_account_name));
        prop_assert_eq!(d.issuer.as_str(), ISSUER);
        prop_assert!(arm_name_ok(&d.federated_credential_name, FIC_NAME_MAX));
        match &d.identity {
            DesiredIdentity::Managed { id, .. } => {
                prop_assert_eq!(id.subscription(), Some(SUB), "identities are created in the operator's \
                    subscription");
                if spec.identity.name.is_none() {
                    let identity = id.name().unwrap_or_default();
                    prop_assert!(arm_name_ok(identity, IDENTITY_NAME_MAX), "{identity:?}");
                }
            }
            DesiredIdentity::Existing { .. } => prop_assert!(policy.allow_existing_identity, "a brought \
                identity passed a policy that forbids it"),
        }
        for v in &d.vaults {
            if !policy.allow_other_subscriptions {
                let sub = v.resource_id.subscription().map(str::to_ascii_lowercase);
                prop_assert_eq!(sub.as_deref(), Some(SUB), "vault {} outside the subscription", v.resource_id);
            }
            if !policy.allow_any_role {
                for ListedRole { written, role } in &v.roles {
                    prop_assert!(role.builtin().is_some_and(|b| b.named_allows(&v.resource_id)), "role {written:?} passed the \
                        default policy");
                }
            }
        }
        // Without a policy: nothing in a closed cluster, and in an open one no role beyond the defaults
        // unless the ceiling allows any.
        let unselected = policy::check(&namespace, &d, &[], &policy);
        prop_assert!(policy.open_namespaces || !unselected.is_empty(), "a namespace no policy selects bound something");
        if unselected.is_empty() && !policy.allow_any_role {
            for grant in d.vaults.iter().chain(&d.scopes) {
                for ListedRole { written, role } in &grant.roles {
                    prop_assert!(role.builtin().is_some_and(|b| b.default_allows(&grant.resource_id)),
                        "role {written:?} passed without a policy naming it");
                }
            }
        }
    }

    #[test]
    fn permission_algebra_holds(a in permissions(), b in permissions()) {
        let missing = a.minus(&b);
        // What is missing, added, leaves nothing missing; what both have is in each.
        prop_assert!(a.minus(&b.union(&missing)).is_empty());
        prop_assert!(a.intersect(&b).minus(&a).is_empty() && a.intersect(&b).minus(&b).is_empty());
        prop_assert!(a.minus(&a).is_empty());
        prop_assert_eq!(a.union(&Permissions::default()), a.clone());
    }
}

#[test]
fn an_empty_service_account_name_is_refused_under_every_policy() {
    // The degenerate case, outside proptest's shrinking, so a failure reads plainly.
    for policy in [
        Ceiling::default(),
        Ceiling {
            allow_any_role: true,
            allow_other_subscriptions: true,
            allow_existing_identity: true,
            open_namespaces: true,
        },
    ] {
        let spec = WorkloadIdentityBindingSpec {
            service_account_name: String::new(),
            identity: IdentitySpec { tags: Some(BTreeMap::new()), ..Default::default() },
            ..Default::default()
        };
        let fields: Vec<String> = validate("ns", "b", &spec, &settings(), &policy)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.field)
            .collect();
        assert_eq!(fields, ["spec.serviceAccountName"]);
    }
}

proptest! {
    // Most generated bindings are refused for one reason or another; enough cases that every reader role
    // meets every kind of scope among those that pass.
    #![proptest_config(ProptestConfig::with_cases(2048))]
    #[test]
    fn the_default_policy_never_passes_a_changing_role_or_a_scope_above_a_resource(
        namespace in "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?",
        azure_roles in azure_roles(1..3),
    ) {
        let spec = WorkloadIdentityBindingSpec { service_account_name: "app".into(), azure_roles, ..Default::default() };
        // The default: the operator's flags as shipped, so no namespace binds anything without a policy; what
        // the default roles let through is judged with a policy that selects the namespace and allows every
        // single resource of the subscription without naming roles, and in an open cluster with no policy.
        let Ok(d) = validate(&namespace, "b", &spec, &settings(), &Ceiling::default()) else {
            return Ok(());
        };
        prop_assert!(!policy::check(&namespace, &d, &[], &Ceiling::default()).is_empty(), "bound without a policy");
        let everything = WorkloadIdentityPolicySpec {
            namespaces: vec!["*".into()],
            azure_scopes: vec![ScopeSelector { resource_group: Some("*".into()), ..Default::default() }],
            ..Default::default()
        };
        let rules = [Rule::from_policy("everything", &everything, SUB)];
        let open = Ceiling { open_namespaces: true, ..Ceiling::default() };
        let through_policy = policy::check(&namespace, &d, &rules, &Ceiling::default()).is_empty();
        let open_cluster = policy::check(&namespace, &d, &[], &open).is_empty();
        if !through_policy && !open_cluster {
            return Ok(());
        }
        for grant in &d.scopes {
            let scope = &grant.resource_id;
            prop_assert!(scope.resource_group().is_some() && scope.provider_parts() == 1, "{} is above a resource", scope);
            prop_assert_eq!(scope.subscription(), Some(SUB), "{} is in another subscription", scope);
            for ListedRole { written, role } in &grant.roles {
                let Some(builtin) = role.builtin() else {
                    return Err(TestCaseError::fail(format!("unknown role {written:?} passed the default policy")));
                };
                prop_assert!(builtin.changes_at(scope).is_empty(), "{} on {} changes {:?}", builtin.name, scope, builtin.changes_at(scope));
                let writes = builtin.actions.iter().chain(builtin.data_actions).filter(|a| {
                    let a = a.to_ascii_lowercase();
                    a == "*" || a.starts_with("microsoft.authorization/") && !a.ends_with("/read")
                });
                prop_assert_eq!(writes.count(), 0, "{} can change access", builtin.name);
            }
        }
    }
}
