//! `validate`: from a binding's spec, the operator's settings and its ceiling, to the desired Azure state, or
//! the list of what is wrong, each naming its field. Pure: no I/O, so an invalid binding never reaches Azure
//! and every rule is tested without a server.
//!
//! The schema already rejects what can be decided from the object alone; this adds what needs the operator's
//! configuration (defaults, subscription) and the ceiling. `WorkloadIdentityPolicy` objects are judged after
//! this, by [`crate::core::policy`].

use std::collections::BTreeMap;

use crate::core::reason::Reason;
use crate::{
    api::binding::{DeletionPolicy, IdentitySpec, KeyVaultAccess, ScopedRoles, WorkloadIdentityBindingSpec},
    core::{
        naming,
        plan::TAG_PREFIX,
        resource_id::{KEY_VAULT, ResourceId, ResourceType, USER_ASSIGNED_IDENTITY},
        roles::{self, RoleRef},
        settings::{Ceiling, OperatorSettings},
    },
};

/// One problem with a binding, for the condition message and the Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// The field at fault, as kubectl names it (`spec.keyVaults[0].roles[1]`).
    pub field: String,
    /// `InvalidSpec` or `PolicyViolation`.
    pub reason: Reason,
    pub message: String,
}

/// The identity a binding wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DesiredIdentity {
    /// Created and owned by idbind.
    Managed { id: ResourceId, location: String, tags: BTreeMap<String, String> },
    /// Brought by the user; idbind never modifies or deletes it.
    Existing { id: ResourceId },
}

impl DesiredIdentity {
    pub fn id(&self) -> &ResourceId {
        match self {
            DesiredIdentity::Managed { id, .. } | DesiredIdentity::Existing { id } => id,
        }
    }
}

/// One scope (a vault, or an azureRoles scope) and the roles wanted on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredGrant {
    pub resource_id: ResourceId,
    pub roles: Vec<ListedRole>,
}

/// A role as the spec writes it, and parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedRole {
    pub written: String,
    pub role: RoleRef,
}

/// A validated binding: everything the planner needs, with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredBinding {
    pub identity: DesiredIdentity,
    /// The client id the operator signs in as (never bindable; see [`OperatorSettings`]).
    pub operator_client_id: Option<String>,
    pub federated_credential_name: String,
    pub issuer: String,
    pub subject: String,
    pub vaults: Vec<DesiredGrant>,
    /// The azureRoles scopes: resources, or (where a policy allows) resource groups and subscriptions.
    pub scopes: Vec<DesiredGrant>,
    pub deletion_policy: DeletionPolicy,
}

/// The problems found so far.
#[derive(Default)]
struct Problems(Vec<Invalid>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, reason: Reason, message: impl Into<String>) {
        self.0.push(Invalid { field: field.into(), reason, message: message.into() });
    }
}

/// Validates a binding named `namespace/name`.
pub fn validate(
    namespace: &str,
    name: &str,
    spec: &WorkloadIdentityBindingSpec,
    settings: &OperatorSettings,
    ceiling: &Ceiling,
) -> Result<DesiredBinding, Vec<Invalid>> {
    let mut problems = Problems::default();
    // The schema checks this too; the subject is built from it, so it is checked here as well rather than
    // trusted: a ':' would let a binding name another namespace's subject.
    if !is_dns_subdomain(&spec.service_account_name) {
        let message = format!(
            "{:?} is not a ServiceAccount name (lowercase letters, digits, '-' and '.', at most 253)",
            spec.service_account_name
        );
        problems.add("spec.serviceAccountName", Reason::InvalidSpec, message);
    }
    if settings
        .operator_service_account
        .as_ref()
        .is_some_and(|(ns, sa)| *ns == namespace && *sa == spec.service_account_name)
    {
        let message = format!(
            "ServiceAccount {namespace}/{} is the one idbind itself runs as; binding it would replace the \
             operator's own Azure identity, so idbind refuses whatever a policy says",
            spec.service_account_name
        );
        problems.add("spec.serviceAccountName", Reason::PolicyViolation, message);
    }
    let identity = match &spec.identity.resource_id {
        Some(text) => brought_identity(text, settings, ceiling, &mut problems),
        None => managed_identity(namespace, name, &spec.identity, settings, &mut problems),
    };
    let vaults = desired_vaults(&spec.key_vaults, settings, ceiling, &mut problems);
    let scopes = desired_scopes(&spec.azure_roles, settings, ceiling, &mut problems);
    match identity {
        Some(identity) if problems.0.is_empty() => Ok(DesiredBinding {
            identity,
            operator_client_id: settings.operator_client_id.clone(),
            federated_credential_name: naming::federated_credential_name(
                &settings.cluster_name,
                namespace,
                name,
            ),
            issuer: settings.issuer.clone(),
            // Always the binding's own namespace: a binding can never federate another namespace.
            subject: naming::subject(namespace, &spec.service_account_name),
            vaults,
            scopes,
            deletion_policy: spec.deletion_policy,
        }),
        _ => Err(problems.0),
    }
}

/// The identity `spec.identity.resourceId` names, if the ceiling lets the binding bring it.
fn brought_identity(
    text: &str,
    settings: &OperatorSettings,
    ceiling: &Ceiling,
    problems: &mut Problems,
) -> Option<DesiredIdentity> {
    const FIELD: &str = "spec.identity.resourceId";
    if !ceiling.allow_existing_identity {
        problems.add(
            FIELD,
            Reason::PolicyViolation,
            "bringing an existing identity is not allowed by the operator's policy",
        );
        return None;
    }
    let Some(id) = parse_resource(text, USER_ASSIGNED_IDENTITY, is_identity_name) else {
        problems.add(
            FIELD,
            Reason::InvalidSpec,
            format!("{text:?} is not a user-assigned identity's resource id"),
        );
        return None;
    };
    if !ceiling.allow_other_subscriptions && !id.in_subscription(&settings.subscription_id) {
        let message = format!(
            "the identity is in another subscription than the operator's ({})",
            settings.subscription_id
        );
        problems.add(FIELD, Reason::PolicyViolation, message);
    }
    Some(DesiredIdentity::Existing { id })
}

/// The identity idbind creates for the binding: the spec's fields, or the operator's defaults.
fn managed_identity(
    namespace: &str,
    binding: &str,
    spec: &IdentitySpec,
    settings: &OperatorSettings,
    problems: &mut Problems,
) -> Option<DesiredIdentity> {
    let resource_group = spec.resource_group.as_ref().or(settings.default_resource_group.as_ref());
    let location = spec.location.as_ref().or(settings.default_location.as_ref());
    match resource_group {
        None => problems.add(
            "spec.identity.resourceGroup",
            Reason::InvalidSpec,
            "no resource group: set spec.identity.resourceGroup (the operator has no default)",
        ),
        Some(rg) if !is_resource_group_name(rg) => {
            problems.add(
                "spec.identity.resourceGroup",
                Reason::InvalidSpec,
                format!("{rg:?} is not a resource group name"),
            );
        }
        Some(_) => {}
    }
    match location {
        None => problems.add(
            "spec.identity.location",
            Reason::InvalidSpec,
            "no location: set spec.identity.location (the operator has no default)",
        ),
        Some(l) if l.is_empty() || l.len() > 64 || !l.chars().all(|c| c.is_ascii_alphanumeric()) => {
            problems.add(
                "spec.identity.location",
                Reason::InvalidSpec,
                format!("{l:?} is not an Azure location name (e.g. westeurope)"),
            );
        }
        Some(_) => {}
    }
    if let Some(name) = spec.name.as_deref().filter(|n| !is_identity_name(n)) {
        let message = format!(
            "{name:?} is not an identity name Azure accepts (3-128 letters, digits, '-' and '_', starting with a \
             letter or digit)"
        );
        problems.add("spec.identity.name", Reason::InvalidSpec, message);
    }
    let tags = spec.tags.clone().unwrap_or_default();
    check_tags(&tags, problems);
    let name = spec
        .name
        .clone()
        .unwrap_or_else(|| naming::identity_name(&settings.cluster_name, namespace, binding));
    let id = ResourceId::resource_group_scope(&settings.subscription_id, resource_group?)
        .provider_resource(USER_ASSIGNED_IDENTITY, &name);
    Some(DesiredIdentity::Managed { id, location: location?.clone(), tags })
}

/// Azure's rules for tag names and values, and idbind's reserved names.
fn check_tags(tags: &BTreeMap<String, String>, problems: &mut Problems) {
    for (k, v) in tags {
        // Azure compares tag names without regard to case, so the prefix is reserved in every spelling.
        if k.get(..TAG_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(TAG_PREFIX)) {
            let message = format!(
                "tag name {k:?}: names starting with {TAG_PREFIX:?}, in any letter case, are reserved for \
                 idbind's ownership tags"
            );
            problems.add("spec.identity.tags", Reason::InvalidSpec, message);
        }
        if k.is_empty() || k.len() > 512 || k.contains(['<', '>', '%', '&', '\\', '?', '/']) {
            let message =
                format!("tag name {k:?} is not allowed by Azure (1-512 characters, none of < > % & \\ ? /)");
            problems.add("spec.identity.tags", Reason::InvalidSpec, message);
        }
        if v.len() > 256 {
            let message = format!("the value of tag {k:?} is longer than Azure's 256 characters");
            problems.add("spec.identity.tags", Reason::InvalidSpec, message);
        }
    }
}

/// The vaults and their roles, each checked as far as it can be without Azure.
fn desired_vaults(
    key_vaults: &[KeyVaultAccess],
    settings: &OperatorSettings,
    ceiling: &Ceiling,
    problems: &mut Problems,
) -> Vec<DesiredGrant> {
    let mut vaults: Vec<DesiredGrant> = Vec::new();
    for (i, kv) in key_vaults.iter().enumerate() {
        let Some(resource_id) = vault_id(i, kv, settings, problems) else {
            continue;
        };
        if !ceiling.allow_other_subscriptions && !resource_id.in_subscription(&settings.subscription_id) {
            let message = format!(
                "the vault is in another subscription than the operator's ({})",
                settings.subscription_id
            );
            problems.add(format!("spec.keyVaults[{i}].resourceId"), Reason::PolicyViolation, message);
        }
        if vaults.iter().any(|v| v.resource_id == resource_id) {
            let message = "this vault is already listed: merge the roles into one entry";
            problems.add(format!("spec.keyVaults[{i}]"), Reason::InvalidSpec, message);
            continue;
        }
        let roles = grant_roles(&format!("spec.keyVaults[{i}]"), &resource_id, &kv.roles, ceiling, problems);
        vaults.push(DesiredGrant { resource_id, roles });
    }
    vaults
}

/// The id of vault `i`: its resourceId, or its name and resource group in the operator's subscription. Every
/// part that ends up in an ARM URL is checked here, not only by the schema.
fn vault_id(
    i: usize,
    kv: &KeyVaultAccess,
    settings: &OperatorSettings,
    problems: &mut Problems,
) -> Option<ResourceId> {
    match (&kv.resource_id, &kv.name, &kv.resource_group) {
        (Some(text), _, _) => {
            let id = parse_resource(text, KEY_VAULT, is_vault_name);
            if id.is_none() {
                let field = format!("spec.keyVaults[{i}].resourceId");
                problems.add(
                    field,
                    Reason::InvalidSpec,
                    format!("{text:?} is not a Key Vault's resource id"),
                );
            }
            id
        }
        (None, Some(n), Some(rg)) if is_vault_name(n) && is_resource_group_name(rg) => Some(
            ResourceId::resource_group_scope(&settings.subscription_id, rg).provider_resource(KEY_VAULT, n),
        ),
        (None, Some(n), Some(rg)) => {
            let (field, value) = if is_vault_name(n) { ("resourceGroup", rg) } else { ("name", n) };
            let message = format!("{value:?} is not a valid vault {field}");
            problems.add(format!("spec.keyVaults[{i}].{field}"), Reason::InvalidSpec, message);
            None
        }
        _ => {
            let message = "set either resourceId, or name and resourceGroup";
            problems.add(format!("spec.keyVaults[{i}]"), Reason::InvalidSpec, message);
            None
        }
    }
}

/// The azureRoles scopes and their roles, each checked as far as it can be without Azure. How broad a scope
/// may be is the policies' call ([`crate::core::policy::check`]); what no policy may allow is refused here.
fn desired_scopes(
    azure_roles: &[ScopedRoles],
    settings: &OperatorSettings,
    ceiling: &Ceiling,
    problems: &mut Problems,
) -> Vec<DesiredGrant> {
    let mut scopes: Vec<DesiredGrant> = Vec::new();
    for (i, entry) in azure_roles.iter().enumerate() {
        let field = format!("spec.azureRoles[{i}].scope");
        let resource_id = match parse_scope(&entry.scope) {
            Ok(id) => id,
            Err(why) => {
                let message = format!(
                    "{:?} is not the resource id of a subscription, a resource group or a resource in one: {why}",
                    entry.scope
                );
                problems.add(field, Reason::InvalidSpec, message);
                continue;
            }
        };
        if !ceiling.allow_other_subscriptions && !resource_id.in_subscription(&settings.subscription_id) {
            let message = format!(
                "the scope is in another subscription than the operator's ({}); the operator's \
                 --allow-other-subscriptions decides",
                settings.subscription_id
            );
            problems.add(&field, Reason::PolicyViolation, message);
        }
        if let Some(provider) = resource_id.provider().filter(|p| is_identity_provider(p)) {
            let message = format!(
                "roles on {provider} resources would let the workload change identities or role assignments \
                 (its own, another namespace's, the operator's): idbind refuses them whatever a policy says"
            );
            problems.add(&field, Reason::PolicyViolation, message);
            continue;
        }
        // Listed under keyVaults, a vault gets access policies where it uses them and is proven by
        // verification; listed in both, two entries would claim one assignment.
        if resource_id.is(KEY_VAULT) {
            let message = "this is a Key Vault: list it under spec.keyVaults, which also covers vaults that use \
                 access policies and proves access with verification";
            problems.add(&field, Reason::InvalidSpec, message);
            continue;
        }
        if scopes.iter().any(|s| s.resource_id == resource_id) {
            let message = "this scope is already listed: merge the roles into one entry";
            problems.add(format!("spec.azureRoles[{i}]"), Reason::InvalidSpec, message);
            continue;
        }
        let roles =
            grant_roles(&format!("spec.azureRoles[{i}]"), &resource_id, &entry.roles, ceiling, problems);
        scopes.push(DesiredGrant { resource_id, roles });
    }
    scopes
}

/// A scope idbind assigns roles at: a subscription (named by a GUID), a resource group in it, or a resource
/// in a resource group (a child resource included), never an extension resource or a management group.
/// [`ResourceId::parse`] refuses every spelling a URL parser would send elsewhere (`\`, `.` and `..`
/// segments, percent-encodings, look-alike letters), so the scope judged here is the path its requests carry.
fn parse_scope(text: &str) -> Result<ResourceId, String> {
    let id = ResourceId::parse(text).map_err(|e| e.reason)?;
    let subscription = id
        .subscription()
        .filter(|s| uuid::Uuid::parse_str(s).is_ok())
        .ok_or("it does not start with /subscriptions/{subscription GUID}")?;
    match id.resource_group() {
        None if id == ResourceId::subscription_scope(subscription) => Ok(id),
        None => Err("it names a resource outside a resource group".into()),
        Some(rg) if !is_resource_group_name(rg) => Err(format!("{rg:?} is not a resource group name")),
        Some(rg) if id == ResourceId::resource_group_scope(subscription, rg) || id.provider_parts() == 1 => {
            Ok(id)
        }
        Some(_) => Err("it names an extension resource (a second /providers/ part)".into()),
    }
}

/// Providers whose resources hold identities or access: a role on them is a way to another identity.
fn is_identity_provider(namespace: &str) -> bool {
    ["Microsoft.ManagedIdentity", "Microsoft.Authorization"].iter().any(|p| p.eq_ignore_ascii_case(namespace))
}

/// The roles wanted on the scope of entry `at` (`spec.keyVaults[0]`), each allowed by the ceiling and listed
/// once. Without --allow-any-role, only reader roles that change nothing at the scope pass.
fn grant_roles(
    at: &str,
    scope: &ResourceId,
    written: &[String],
    ceiling: &Ceiling,
    problems: &mut Problems,
) -> Vec<ListedRole> {
    let mut roles: Vec<ListedRole> = Vec::new();
    for (j, role) in written.iter().enumerate() {
        let parsed = RoleRef::parse(role);
        let field = format!("{at}.roles[{j}]");
        if !ceiling.allow_any_role && !parsed.builtin().is_some_and(|b| b.named_allows(scope)) {
            let named = roles::named_names_for(scope);
            let named = if named.is_empty() {
                String::new()
            } else {
                format!(", and where a WorkloadIdentityPolicy names them {}", named.join(", "))
            };
            let message = format!(
                "role {role:?} is not allowed here by the operator's policy: without --allow-any-role only the \
                 data-plane reader roles of the scope's own service are ({}){named}",
                roles::default_names_for(scope).join(", ")
            );
            problems.add(field, Reason::PolicyViolation, message);
        } else if roles.iter().any(|r| r.role == parsed) {
            problems.add(field, Reason::InvalidSpec, format!("role {role:?} names a role already listed"));
        } else {
            roles.push(ListedRole { written: role.clone(), role: parsed });
        }
    }
    roles
}

/// A resource of `ty` in a resource group, in a subscription named by a GUID, whose resource group and name
/// Azure would accept.
fn parse_resource(text: &str, ty: ResourceType, name_ok: fn(&str) -> bool) -> Option<ResourceId> {
    let id = ResourceId::parse_as(text, ty).ok()?;
    let subscription_ok = id.subscription().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok());
    let group_ok = id.resource_group().is_some_and(is_resource_group_name);
    (subscription_ok && group_ok && id.name().is_some_and(name_ok)).then_some(id)
}

/// ARM's resource group rule: 1-90 letters, digits, '-', '_', '.', '(' and ')', not ending in '.'.
fn is_resource_group_name(rg: &str) -> bool {
    (1..=90).contains(&rg.len())
        && !rg.ends_with('.')
        && rg.chars().all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
}

/// Key Vault's rule: 3-24 letters, digits and '-', starting with a letter, ending with a letter or digit, no
/// "--".
fn is_vault_name(n: &str) -> bool {
    (3..=24).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_alphabetic())
        && n.ends_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !n.contains("--")
}

/// A user-assigned identity's name: 3-128 letters, digits, '-' and '_', starting with a letter or digit.
fn is_identity_name(n: &str) -> bool {
    (3..=128).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Kubernetes' DNS-1123 subdomain rule, which ServiceAccount names follow.
fn is_dns_subdomain(name: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=253).contains(&name.len())
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().last())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "00000000-0000-0000-0000-000000000001";
    const OTHER: &str = "00000000-0000-0000-0000-000000000002";

    fn settings() -> OperatorSettings {
        OperatorSettings::example()
    }

    fn spec() -> WorkloadIdentityBindingSpec {
        WorkloadIdentityBindingSpec { service_account_name: "orders".into(), ..Default::default() }
    }

    fn vault(name: &str, roles: &[&str]) -> KeyVaultAccess {
        KeyVaultAccess {
            name: Some(name.into()),
            resource_group: Some("rg-kv".into()),
            roles: roles.iter().map(ToString::to_string).collect(),
            ..Default::default()
        }
    }

    fn fields(r: Result<DesiredBinding, Vec<Invalid>>) -> Vec<(String, Reason)> {
        r.err().unwrap_or_default().into_iter().map(|i| (i.field, i.reason)).collect()
    }

    #[test]
    fn defaults_fill_the_identity_and_the_subject_names_the_own_namespace() {
        let d = validate("shop", "orders", &spec(), &settings(), &Ceiling::default()).expect("valid");
        assert_eq!(d.subject, "system:serviceaccount:shop:orders");
        assert_eq!(d.issuer, "https://oidc.example/issuer/", "the issuer is taken verbatim");
        match d.identity {
            DesiredIdentity::Managed { id, location, .. } => {
                let name = naming::identity_name("aks1", "shop", "orders");
                assert_eq!(
                    (id.subscription(), id.resource_group(), id.name(), location.as_str()),
                    (Some(SUB), Some("rg-ids"), Some(name.as_str()), "westeurope")
                );
                assert!(id.is(USER_ASSIGNED_IDENTITY));
            }
            other @ DesiredIdentity::Existing { .. } => panic!("expected a managed identity, got {other:?}"),
        }
    }

    #[test]
    fn missing_defaults_name_the_field() {
        let s = OperatorSettings { default_resource_group: None, default_location: None, ..settings() };
        assert_eq!(
            fields(validate("ns", "b", &spec(), &s, &Ceiling::default())),
            vec![
                ("spec.identity.resourceGroup".into(), Reason::InvalidSpec),
                ("spec.identity.location".into(), Reason::InvalidSpec)
            ]
        );
    }

    #[test]
    fn default_policy_allows_only_reader_roles() {
        let mut s = spec();
        s.key_vaults = vec![vault(
            "kv-a",
            &[
                "Key Vault Secrets User",
                "Key Vault Administrator",
                "Contributor",
                "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
            ],
        )];
        assert_eq!(
            fields(validate("ns", "b", &s, &settings(), &Ceiling::default())),
            vec![
                ("spec.keyVaults[0].roles[1]".into(), Reason::PolicyViolation),
                ("spec.keyVaults[0].roles[2]".into(), Reason::PolicyViolation),
                ("spec.keyVaults[0].roles[3]".into(), Reason::PolicyViolation)
            ]
        );
        let open = Ceiling { allow_any_role: true, ..Ceiling::default() };
        assert!(validate("ns", "b", &s, &settings(), &open).is_ok());
    }

    /// An azureRoles row: the scope, its roles, whether the ceiling is open (--allow-any-role and
    /// --allow-other-subscriptions), and the one problem expected (field, reason), if any.
    type ScopeRow<'a> = (String, &'a [&'a str], bool, Option<(&'a str, Reason)>);

    fn judge_scope_rows(rows: Vec<ScopeRow<'_>>) {
        let open = Ceiling { allow_any_role: true, allow_other_subscriptions: true, ..Ceiling::default() };
        for (scope, roles, opened, want) in rows {
            let mut s = spec();
            s.azure_roles = vec![ScopedRoles {
                scope: scope.clone(),
                roles: roles.iter().map(ToString::to_string).collect(),
            }];
            let ceiling = if opened { open.clone() } else { Ceiling::default() };
            let got = fields(validate("ns", "b", &s, &settings(), &ceiling));
            let want: Vec<(String, Reason)> = want.into_iter().map(|(f, r)| (f.to_string(), r)).collect();
            assert_eq!(got, want, "{scope} {roles:?} open={opened}");
        }
    }

    const DATA_RG: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-data";

    fn in_data_rg(resource: &str) -> String {
        format!("{DATA_RG}/providers/{resource}")
    }

    #[test]
    fn azure_roles_need_the_ceiling_for_anything_but_the_scopes_own_reader_roles() {
        let storage = in_data_rg("Microsoft.Storage/storageAccounts/shopdata");
        let bus = in_data_rg("Microsoft.ServiceBus/namespaces/shop-bus");
        let role0 = Some(("spec.azureRoles[0].roles[0]", Reason::PolicyViolation));
        judge_scope_rows(vec![
            (storage.clone(), &["Storage Blob Data Reader"], false, None),
            (storage.to_uppercase(), &["storage blob data reader"], false, None),
            (
                format!("{storage}/blobServices/default/containers/inv"),
                &["Storage Blob Data Reader"],
                false,
                None,
            ),
            (bus.clone(), &["Azure Service Bus Data Receiver"], false, None),
            (bus.clone(), &["Storage Blob Data Reader"], false, role0),
            (storage.clone(), &["Storage Blob Data Contributor"], false, role0),
            (storage.clone(), &["Owner"], false, role0),
            (storage.clone(), &["Owner"], true, None),
            (storage.clone(), &["My Custom Role"], false, role0),
            // Breadth is the policies' call (core::policy); the ceiling judges the role only.
            (DATA_RG.to_string(), &["Storage Blob Data Reader"], false, None),
            (format!("/subscriptions/{SUB}"), &["Reader"], true, None),
            (
                storage.clone(),
                &["Storage Blob Data Reader", "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"],
                false,
                Some(("spec.azureRoles[0].roles[1]", Reason::InvalidSpec)),
            ),
        ]);
    }

    #[test]
    fn azure_scopes_no_policy_may_allow_are_refused_whatever_the_ceiling() {
        let storage = in_data_rg("Microsoft.Storage/storageAccounts/shopdata");
        let scope = |reason| Some(("spec.azureRoles[0].scope", reason));
        judge_scope_rows(vec![
            (
                storage.replace(SUB, OTHER),
                &["Storage Blob Data Reader"],
                false,
                scope(Reason::PolicyViolation),
            ),
            (storage.replace(SUB, OTHER), &["Storage Blob Data Reader"], true, None),
            // Identities and role assignments are the way to other identities.
            (
                in_data_rg("Microsoft.ManagedIdentity/userAssignedIdentities/idbind"),
                &["Reader"],
                true,
                scope(Reason::PolicyViolation),
            ),
            (
                in_data_rg("Microsoft.KeyVault/vaults/kv"),
                &["Key Vault Secrets User"],
                true,
                scope(Reason::InvalidSpec),
            ),
            (
                "/providers/Microsoft.Management/managementGroups/mg".into(),
                &["Reader"],
                true,
                scope(Reason::InvalidSpec),
            ),
            (
                format!("{storage}/providers/Microsoft.Authorization/roleAssignments/x"),
                &["Reader"],
                true,
                scope(Reason::InvalidSpec),
            ),
            (
                format!("/subscriptions/{SUB}/providers/Microsoft.Storage/storageAccounts/x"),
                &["Reader"],
                true,
                scope(Reason::InvalidSpec),
            ),
            (
                "/subscriptions/not-a-guid/resourceGroups/rg".into(),
                &["Reader"],
                true,
                scope(Reason::InvalidSpec),
            ),
        ]);
        // One scope listed twice, in two spellings.
        let mut s = spec();
        s.azure_roles = [storage.clone(), storage.to_lowercase()]
            .map(|scope| ScopedRoles { scope, roles: vec!["Storage Blob Data Reader".into()] })
            .to_vec();
        let closed = Ceiling::default();
        assert_eq!(
            fields(validate("ns", "b", &s, &settings(), &closed)),
            [("spec.azureRoles[1]".into(), Reason::InvalidSpec)]
        );
        s.azure_roles.truncate(1);
        let desired = validate("ns", "b", &s, &settings(), &closed).expect("valid");
        assert_eq!(desired.scopes[0].resource_id.to_string(), storage);
    }

    #[test]
    fn azure_scopes_spelled_to_land_elsewhere_are_invalid_and_say_why() {
        let team = format!(
            "/subscriptions/{SUB}/resourceGroups/rg-team/providers/Microsoft.KeyVault/vaults/kv-team/accessPolicies"
        );
        let cases = [
            (
                format!(
                    r"{team}/x\..\..\..\..\..\..\..\..\resourceGroups\rg-shop\providers\Microsoft.KeyVault\vaults\kv-shop"
                ),
                "which a URL parser reads as '/'",
            ),
            (format!("{team}/x/../../../../../../../.."), r#"a ".." segment"#),
            (format!("{team}/x/%2e%2e"), "percent-encoding"),
            (format!("{team}//x"), "empty segment"),
            (format!("{team}/x\t"), "control character"),
            (
                format!(
                    "/subscriptions/{SUB}/resourceGroups/rg-team/providers/Microsoft.KeyV\u{430}ult/vaults/kv"
                ),
                "U+0430",
            ),
            (format!("/subscriptions/{SUB}/resourceGroups/rg$"), r#""rg$" is not a resource group name"#),
        ];
        for (scope, why) in cases {
            let mut s = spec();
            s.azure_roles =
                vec![ScopedRoles { scope: scope.clone(), roles: vec!["Key Vault Secrets User".into()] }];
            let problems =
                validate("ns", "b", &s, &settings(), &Ceiling::default()).err().unwrap_or_default();
            let found: Vec<(&str, Reason, bool)> =
                problems.iter().map(|p| (p.field.as_str(), p.reason, p.message.contains(why))).collect();
            assert_eq!(
                found,
                [("spec.azureRoles[0].scope", Reason::InvalidSpec, true)],
                "{scope:?}: {problems:?}"
            );
        }
    }

    #[test]
    fn other_subscriptions_and_brought_identities_need_the_policy() {
        let mut s = spec();
        s.identity = IdentitySpec {
            resource_id: Some(format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/shared"
            )),
            ..Default::default()
        };
        s.key_vaults = vec![KeyVaultAccess {
            resource_id: Some(format!(
                "/subscriptions/{OTHER}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv-x"
            )),
            roles: vec!["Key Vault Reader".into()],
            ..Default::default()
        }];
        assert_eq!(
            fields(validate("ns", "b", &s, &settings(), &Ceiling::default())),
            vec![
                ("spec.identity.resourceId".into(), Reason::PolicyViolation),
                ("spec.keyVaults[0].resourceId".into(), Reason::PolicyViolation)
            ]
        );
        let open =
            Ceiling { allow_other_subscriptions: true, allow_existing_identity: true, ..Ceiling::default() };
        let d = validate("ns", "b", &s, &settings(), &open).expect("allowed by policy");
        assert!(matches!(d.identity, DesiredIdentity::Existing { .. }));
    }

    #[test]
    fn the_same_vault_or_role_twice_is_reported() {
        let mut s = spec();
        s.key_vaults = vec![
            vault("kv-a", &["Key Vault Secrets User", "4633458b-17de-408a-b874-0445c86b69e6"]),
            KeyVaultAccess {
                resource_id: Some(format!(
                    "/subscriptions/{SUB}/resourceGroups/RG-KV/providers/Microsoft.KeyVault/vaults/KV-A"
                )),
                roles: vec!["Key Vault Reader".into()],
                ..Default::default()
            },
        ];
        assert_eq!(
            fields(validate("ns", "b", &s, &settings(), &Ceiling::default())),
            vec![
                ("spec.keyVaults[0].roles[1]".into(), Reason::InvalidSpec),
                ("spec.keyVaults[1]".into(), Reason::InvalidSpec)
            ]
        );
    }

    #[test]
    fn service_account_names_that_could_bend_the_subject_are_refused() {
        for bad in ["", "a:b", "Orders", "-x", "x-", "ns:other:sa", &"a".repeat(254)] {
            let s =
                WorkloadIdentityBindingSpec { service_account_name: bad.to_string(), ..Default::default() };
            assert_eq!(
                fields(validate("ns", "b", &s, &settings(), &Ceiling::default())),
                vec![("spec.serviceAccountName".into(), Reason::InvalidSpec)],
                "{bad:?}"
            );
        }
        for good in ["a", "orders-api", "a.b", &"a".repeat(253)] {
            let s =
                WorkloadIdentityBindingSpec { service_account_name: good.to_string(), ..Default::default() };
            assert!(validate("ns", "b", &s, &settings(), &Ceiling::default()).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn anything_that_would_land_in_an_arm_url_is_checked() {
        let mut s = spec();
        s.identity.name = Some("a/../b".into());
        s.identity.resource_group = Some("rg/x".into());
        s.key_vaults = vec![
            KeyVaultAccess {
                name: Some("kv/../../x".into()),
                resource_group: Some("rg".into()),
                roles: vec!["Key Vault Reader".into()],
                ..Default::default()
            },
            KeyVaultAccess {
                name: Some("kv-ok".into()),
                resource_group: Some("rg?x=1".into()),
                roles: vec!["Key Vault Reader".into()],
                ..Default::default()
            },
            KeyVaultAccess {
                resource_id: Some(String::new()),
                roles: vec!["Key Vault Reader".into()],
                ..Default::default()
            },
            KeyVaultAccess {
                resource_id: Some(format!(
                    "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa"
                )),
                roles: vec!["Key Vault Reader".into()],
                ..Default::default()
            },
        ];
        assert_eq!(
            fields(validate("ns", "b", &s, &settings(), &Ceiling::default())),
            vec![
                ("spec.identity.resourceGroup".into(), Reason::InvalidSpec),
                ("spec.identity.name".into(), Reason::InvalidSpec),
                ("spec.keyVaults[0].name".into(), Reason::InvalidSpec),
                ("spec.keyVaults[1].resourceGroup".into(), Reason::InvalidSpec),
                ("spec.keyVaults[2].resourceId".into(), Reason::InvalidSpec),
                ("spec.keyVaults[3].resourceId".into(), Reason::InvalidSpec),
            ]
        );
        let mut s = spec();
        s.identity = IdentitySpec {
            resource_id: Some(format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
            )),
            ..Default::default()
        };
        let open = Ceiling { allow_existing_identity: true, ..Ceiling::default() };
        assert_eq!(
            fields(validate("ns", "b", &s, &settings(), &open)),
            vec![("spec.identity.resourceId".into(), Reason::InvalidSpec)]
        );
    }

    #[test]
    fn tags_azure_refuses_are_reported() {
        let mut s = spec();
        s.identity.tags = Some(
            [("a/b".to_string(), "x".to_string()), ("ok".to_string(), "v".repeat(257))].into_iter().collect(),
        );
        assert_eq!(
            fields(validate("ns", "b", &s, &settings(), &Ceiling::default())),
            vec![
                ("spec.identity.tags".into(), Reason::InvalidSpec),
                ("spec.identity.tags".into(), Reason::InvalidSpec)
            ]
        );
    }

    #[test]
    fn ownership_tag_names_are_reserved_in_every_letter_case() {
        for name in
            ["idbind.dev.namespace", "IDBIND.dev.cluster", "iDbInD.DeV.uid", "Idbind.Dev-x", "idbind.devx"]
        {
            let mut s = spec();
            s.identity.tags = Some([(name.to_string(), "team-b".to_string())].into_iter().collect());
            assert_eq!(
                fields(validate("ns", "b", &s, &settings(), &Ceiling::default())),
                vec![("spec.identity.tags".into(), Reason::InvalidSpec)],
                "{name}"
            );
        }
        let mut s = spec();
        s.identity.tags = Some([("idbind".to_string(), "x".to_string())].into_iter().collect());
        assert!(
            validate("ns", "b", &s, &settings(), &Ceiling::default()).is_ok(),
            "only the prefix is reserved"
        );
    }

    #[test]
    fn the_operators_own_service_account_is_never_bindable() {
        let mut s = spec();
        s.service_account_name = "idbind".into();
        let open = Ceiling { allow_any_role: true, allow_existing_identity: true, ..Ceiling::default() };
        assert_eq!(
            fields(validate("idbind-system", "b", &s, &settings(), &open)),
            vec![("spec.serviceAccountName".into(), Reason::PolicyViolation)]
        );
        assert!(validate("team-a", "b", &s, &settings(), &open).is_ok(), "the same name elsewhere is fine");
    }
}
