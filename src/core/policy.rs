//! Multi-tenant guardrails: the cluster-scoped `WorkloadIdentityPolicy`, with which a cluster administrator
//! says which namespaces may bind which Key Vaults and Azure scopes, with which roles, and which existing
//! identities they may bring, and [`check`], the pure verdict on one binding.
//!
//! How it combines with the operator's flags (`--allow-any-role`, `--allow-other-subscriptions`,
//! `--allow-existing-identity`, `--open-namespaces`):
//! - The flags are the ceiling for every namespace: a role, subscription or brought identity they refuse is
//!   refused whatever a policy says. The defaults are safe: data-plane reader roles only, the operator's
//!   subscription only, no brought identities.
//! - A namespace that one or more policies select may bind only what one of those policies allows: every
//!   (vault or scope, role) pair must be allowed by a single policy that lists both, and a brought identity
//!   must be listed by one of them.
//! - A namespace that no policy selects binds nothing: nothing tells idbind which vault is whose, so without
//!   a policy one team could read another team's vault with a reader role. `--open-namespaces` gives such a
//!   namespace the ceiling instead, which is what a single-team cluster may want and nothing else should.
//! - Bringing an identity always needs a selecting policy that lists it, whatever the ceiling says: the
//!   identity's roles are whatever its Azure administrator gave it, and `--allow-existing-identity` alone
//!   would let any namespace federate any identity idbind can write to.
//! - Resource-group and name patterns may name the binding's namespace (`rg-{namespace}`, `kv-{namespace}`,
//!   `rg-{namespace}_*`), so that one cluster-wide policy gives each namespace its own resources;
//!   [`NamePattern`] says why no namespace can reach another's through one.
//!
//! The subject is never in question: it always names the binding's own namespace.

use crate::core::reason::Reason;
use crate::{
    api::{
        binding::{KeyVaultAccess, ScopedRoles, WorkloadIdentityBindingSpec},
        policy::{ScopeLevel, ScopeSelector, VaultSelector, WorkloadIdentityPolicySpec},
    },
    core::{
        resource_id::{KEY_VAULT, ResourceId, USER_ASSIGNED_IDENTITY},
        roles::RoleRef,
        settings::{Ceiling, OperatorSettings},
        validate::{DesiredBinding, DesiredGrant, DesiredIdentity, Invalid, ListedRole, validate},
    },
};

/// What a pattern writes for the binding's namespace.
pub const NAMESPACE_PLACEHOLDER: &str = "{namespace}";

/// A resource-group or resource-name pattern of a policy: `*` (anything), an exact name, or a prefix followed
/// by `*`; an exact name or a prefix may contain [`NAMESPACE_PLACEHOLDER`] once, which stands for the
/// binding's namespace. Names compare without regard to case, as Azure's do.
///
/// Why no namespace reaches another's resources through one pattern: the namespace is put in literally (the
/// pattern is parsed before, never after, so a `*` in it would be a character like any other), and a prefix
/// pattern needs a character right after the placeholder that no namespace name contains (namespaces are DNS
/// labels: letters, digits and `-`), such as `_`, `.` or `(`. Namespace `a`'s `rg-a_*` then cannot match
/// namespace `ab`'s `rg-ab_x` nor `a-b`'s `rg-a-b_x`: where one namespace name ends and the other goes on,
/// the pattern wants that separator. Without it `rg-{namespace}*` would give namespace `team` every group of
/// namespace `team-b`. An exact pattern needs no separator: `rg-{namespace}-data` names one group per
/// namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    /// The text before the placeholder, or the whole pattern (without a trailing `*`) when it has none.
    head: String,
    /// The text after the placeholder, when the pattern has one.
    after_namespace: Option<String>,
    /// Ends with `*`: any name that starts with the rest matches.
    prefix: bool,
}

/// Why a text is not a [`NamePattern`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{0:?}: '*' may only end a pattern")]
    InnerWildcard(String),
    #[error("{0:?}: '{{' and '}}' may only spell {NAMESPACE_PLACEHOLDER}, once")]
    Braces(String),
    #[error(
        "{0:?}: in a prefix pattern, {NAMESPACE_PLACEHOLDER} must be followed by a character no namespace name \
         contains ('_', '.', '(' or ')'), or namespace 'team' would match the names of namespace 'team-b'"
    )]
    NoSeparator(String),
    #[error("{0:?}: this field takes an exact name, not a '*' pattern")]
    NotExact(String),
}

impl NamePattern {
    /// Parses a pattern.
    pub fn parse(text: &str) -> Result<NamePattern, PatternError> {
        let (body, prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.contains('*') {
            return Err(PatternError::InnerWildcard(text.into()));
        }
        let (head, after_namespace) = match body.split_once(NAMESPACE_PLACEHOLDER) {
            Some((head, after)) => (head, Some(after)),
            None => (body, None),
        };
        let stray_brace = |t: &str| t.contains(['{', '}']);
        if stray_brace(head) || after_namespace.is_some_and(stray_brace) {
            return Err(PatternError::Braces(text.into()));
        }
        if prefix
            && let Some(after) = after_namespace
            && after.chars().next().is_none_or(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(PatternError::NoSeparator(text.into()));
        }
        Ok(NamePattern {
            head: head.to_string(),
            after_namespace: after_namespace.map(str::to_string),
            prefix,
        })
    }

    /// Parses a pattern that must name one thing (per namespace): no `*`.
    pub fn parse_exact(text: &str) -> Result<NamePattern, PatternError> {
        let pattern = NamePattern::parse(text)?;
        if pattern.prefix {
            return Err(PatternError::NotExact(text.into()));
        }
        Ok(pattern)
    }

    /// Whether `name` matches for a binding in `namespace`, without regard to case.
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        let mut want = self.head.clone();
        if let Some(after) = &self.after_namespace {
            want.push_str(namespace);
            want.push_str(after);
        }
        let (want, name) = (want.to_ascii_lowercase(), name.to_ascii_lowercase());
        if self.prefix { name.starts_with(&want) } else { name == want }
    }
}

/// A policy, ready to judge bindings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub namespaces: Vec<String>,
    /// The vaults it allows: each every vault of a resource group, or one vault.
    pub vaults: Vec<VaultRule>,
    /// The azureRoles scopes it allows.
    pub scopes: Vec<ScopeRule>,
    /// `None`: the reader roles (see [`crate::core::roles::BuiltinRole::default_allows`]).
    pub roles: Option<Vec<RoleRef>>,
    /// The identities it lets namespaces bring (entries that are no identity's id allow nothing).
    pub existing_identities: Vec<ResourceId>,
}

impl Rule {
    /// From a policy object; `subscription` fills a selector's default. A pattern the schema would have
    /// refused allows nothing.
    pub fn from_policy(name: &str, spec: &WorkloadIdentityPolicySpec, subscription: &str) -> Rule {
        Rule {
            name: name.to_string(),
            namespaces: spec.namespaces.clone(),
            vaults: spec
                .key_vaults
                .iter()
                .filter_map(|v| VaultRule::from_selector(v, subscription))
                .collect(),
            scopes: spec
                .azure_scopes
                .iter()
                .filter_map(|s| ScopeRule::from_selector(s, subscription).ok())
                .collect(),
            roles: spec.roles.as_ref().map(|r| r.iter().map(|r| RoleRef::parse(r)).collect()),
            existing_identities: spec
                .existing_identities
                .iter()
                .filter_map(|i| ResourceId::parse_as(i, USER_ASSIGNED_IDENTITY).ok())
                .collect(),
        }
    }

    /// Whether the policy applies to `namespace`.
    pub fn selects(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => namespace.starts_with(prefix),
            None => p == namespace,
        })
    }

    fn allows_vault(&self, namespace: &str, vault_id: &ResourceId) -> bool {
        vault_id.is(KEY_VAULT) && self.vaults.iter().any(|v| v.allows(namespace, vault_id))
    }

    fn allows_scope(&self, namespace: &str, scope: &ResourceId) -> bool {
        self.scopes.iter().any(|s| s.allows(namespace, scope))
    }

    fn allows_role(&self, role: &RoleRef, scope: &ResourceId) -> bool {
        match &self.roles {
            Some(roles) => roles.contains(role),
            None => role.builtin().is_some_and(|b| b.default_allows(scope)),
        }
    }
}

/// One `keyVaults` selector: the vaults of a resource group, or one vault by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VaultRule {
    pub subscription: String,
    pub resource_group: NamePattern,
    /// `None`: every vault of the group.
    pub name: Option<NamePattern>,
}

impl VaultRule {
    /// `None` when a name is no exact pattern (the schema refuses it).
    pub fn from_selector(selector: &VaultSelector, subscription: &str) -> Option<VaultRule> {
        Some(VaultRule {
            subscription: selector.subscription_id.clone().unwrap_or_else(|| subscription.to_string()),
            resource_group: NamePattern::parse_exact(&selector.resource_group).ok()?,
            name: match &selector.name {
                Some(name) => Some(NamePattern::parse_exact(name).ok()?),
                None => None,
            },
        })
    }

    /// Whether `vault_id` (a vault in a resource group) is one of these, for a binding in `namespace`.
    fn allows(&self, namespace: &str, vault_id: &ResourceId) -> bool {
        let in_group = vault_id.parent().is_some_and(|group| {
            group.provider().is_none()
                && group.in_subscription(&self.subscription)
                && group.resource_group().is_some_and(|g| self.resource_group.matches(namespace, g))
        });
        let named = |name: &str| self.name.as_ref().is_none_or(|p| p.matches(namespace, name));
        in_group && vault_id.name().is_some_and(named)
    }
}

/// One `azureScopes` selector, ready to match scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeRule {
    pub subscription: String,
    /// `None` only at the subscription level.
    pub resource_group: Option<NamePattern>,
    /// `Namespace/type[/childType...]`; `None`: any type.
    pub resource_types: Option<Vec<String>>,
    /// `None`: any name.
    pub names: Option<Vec<NamePattern>>,
    pub level: ScopeLevel,
}

impl ScopeRule {
    pub fn from_selector(selector: &ScopeSelector, subscription: &str) -> Result<ScopeRule, PatternError> {
        Ok(ScopeRule {
            subscription: selector.subscription_id.clone().unwrap_or_else(|| subscription.to_string()),
            resource_group: selector.resource_group.as_deref().map(NamePattern::parse).transpose()?,
            resource_types: selector.resource_types.clone(),
            names: match &selector.names {
                Some(names) => Some(names.iter().map(|n| NamePattern::parse(n)).collect::<Result<_, _>>()?),
                None => None,
            },
            level: selector.level,
        })
    }

    /// Whether `scope` is one this selector allows a binding in `namespace`: exactly the subscription, a
    /// matching resource group, or a matching resource, as its level says. Azure's names compare without
    /// regard to case, and so do these.
    pub fn allows(&self, namespace: &str, scope: &ResourceId) -> bool {
        if !scope.in_subscription(&self.subscription) {
            return false;
        }
        let group_ok = || {
            let group = scope.resource_group();
            group.is_some_and(|g| self.resource_group.as_ref().is_some_and(|p| p.matches(namespace, g)))
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
                    self.names.as_ref().is_none_or(|names| names.iter().any(|p| p.matches(namespace, name)))
                };
                group_ok()
                    && scope.provider_parts() == 1
                    && ty.is_some_and(|ty| type_ok(&ty))
                    && scope.name().is_some_and(name_ok)
            }
        }
    }
}

/// What the policies say about a binding in `namespace` that passed [`crate::core::validate::validate`] (and
/// so the ceiling): nothing when it may proceed, else the problems, each naming its field.
pub fn check(namespace: &str, desired: &DesiredBinding, rules: &[Rule], ceiling: &Ceiling) -> Vec<Invalid> {
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
    if selecting.is_empty() && !ceiling.open_namespaces {
        problems.push(violation("metadata.namespace".into(), unselected(namespace, desired)));
        return problems;
    }
    problems.extend(scope_problems(namespace, desired, &selecting));
    if selecting.is_empty() {
        problems.extend(unnamed_roles(namespace, desired, ceiling));
        return problems;
    }
    for (i, vault) in desired.vaults.iter().enumerate() {
        let for_vault: Vec<&Rule> =
            selecting.iter().copied().filter(|r| r.allows_vault(namespace, &vault.resource_id)).collect();
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

/// In an open namespace no policy selects: the roles the ceiling lets through only where a policy names them
/// ([`crate::core::roles::BuiltinRole::named_on`]), which no policy does here.
fn unnamed_roles(namespace: &str, desired: &DesiredBinding, ceiling: &Ceiling) -> Vec<Invalid> {
    if ceiling.allow_any_role {
        return Vec::new();
    }
    let vaults = desired.vaults.iter().enumerate().map(|(i, g)| (format!("spec.keyVaults[{i}]"), g));
    let scopes = desired.scopes.iter().enumerate().map(|(i, g)| (format!("spec.azureRoles[{i}]"), g));
    let mut problems = Vec::new();
    for (field, grant) in vaults.chain(scopes) {
        for (j, ListedRole { written, role }) in grant.roles.iter().enumerate() {
            if !role.builtin().is_some_and(|b| b.default_allows(&grant.resource_id)) {
                let message = format!(
                    "role {written:?} consumes or changes what it reads, so it needs a WorkloadIdentityPolicy \
                     selecting namespace {namespace} that names it in its roles"
                );
                problems.push(violation(format!("{field}.roles[{j}]"), message));
            }
        }
    }
    problems
}

/// The refusal of a binding in a namespace no policy selects: what to ask the cluster administrator for.
fn unselected(namespace: &str, desired: &DesiredBinding) -> String {
    let grant = |what: &str, g: &DesiredGrant| {
        let roles = g.roles.iter().map(|r| r.written.as_str()).collect::<Vec<_>>().join(", ");
        format!("{what} {} with {roles}", g.resource_id)
    };
    let asked: Vec<String> = desired
        .vaults
        .iter()
        .map(|v| grant("vault", v))
        .chain(desired.scopes.iter().map(|s| grant("scope", s)))
        .collect();
    let asked = if asked.is_empty() { "an identity with no roles".to_string() } else { asked.join("; ") };
    format!(
        "no WorkloadIdentityPolicy selects namespace {namespace}, and idbind binds nothing in a namespace no \
         policy selects (the operator's IDBIND_OPEN_NAMESPACES is off): ask your cluster administrator for a \
         WorkloadIdentityPolicy that selects {namespace} and allows what this binding asks for: {asked}"
    )
}

/// What the policies say of the azureRoles scopes. A scope above a single resource needs a selecting policy
/// that allows it at its level, even in an open namespace: a resource group or a subscription holds other
/// teams' resources, so only a cluster administrator may hand it out.
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
        let for_scope: Vec<&Rule> =
            selecting.iter().copied().filter(|r| r.allows_scope(namespace, scope)).collect();
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
        .filter(|(_, listed)| !for_scope.iter().any(|r| r.allows_role(&listed.role, scope)));
    refused
        .map(|(j, ListedRole { written, .. })| {
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

/// Whether at least one policy selects `namespace`.
pub fn selected(namespace: &str, rules: &[Rule]) -> bool {
    rules.iter().any(|r| r.selects(namespace))
}

/// The names of the policies that select `namespace`, sorted.
pub fn selecting(namespace: &str, rules: &[Rule]) -> Vec<String> {
    let mut names: Vec<String> =
        rules.iter().filter(|r| r.selects(namespace)).map(|r| r.name.clone()).collect();
    names.sort();
    names
}

/// The part of a refused binding's spec that the ceiling and the policies still allow, judged as a whole
/// binding of its own: its identity and every (vault or scope, role) pair that passes alone. What the binding
/// holds beyond it is what an administrator took back by narrowing a policy or the ceiling, and goes.
///
/// `once_selected` says that a policy let the binding through before (its status's `admittedBy`): a namespace
/// no policy selects any more was taken back by an administrator (its last policy deleted or narrowed), and
/// all its grants go; its identity and credential stay, as for any narrowing.
///
/// `None` when nothing may be taken back:
/// - no policy selects the namespace, none ever let the binding through, and namespaces are not open: the
///   administrator has said nothing about it (a cluster upgraded to closed namespaces), so its bindings are
///   refused and keep what they hold until someone acts;
/// - the binding is refused for more than grants: its spec is invalid, or its identity may not be had (a
///   brought identity no policy lists gives up its federated credential instead, see
///   [`crate::reconcile::gate`]).
pub fn allowed_part(
    namespace: &str,
    name: &str,
    spec: &WorkloadIdentityBindingSpec,
    settings: &OperatorSettings,
    ceiling: &Ceiling,
    rules: &[Rule],
    once_selected: bool,
) -> Option<DesiredBinding> {
    let bare =
        WorkloadIdentityBindingSpec { key_vaults: Vec::new(), azure_roles: Vec::new(), ..spec.clone() };
    if !ceiling.open_namespaces && !selected(namespace, rules) {
        let desired = validate(namespace, name, &bare, settings, ceiling).ok();
        let managed = |d: &DesiredBinding| matches!(d.identity, DesiredIdentity::Managed { .. });
        return desired.filter(|d| once_selected && managed(d));
    }
    let judge = |spec: &WorkloadIdentityBindingSpec| {
        let desired = validate(namespace, name, spec, settings, ceiling).ok()?;
        check(namespace, &desired, rules, ceiling).is_empty().then_some(desired)
    };
    judge(&bare)?;
    let alone = |key_vaults: Vec<KeyVaultAccess>, azure_roles: Vec<ScopedRoles>| {
        judge(&WorkloadIdentityBindingSpec { key_vaults, azure_roles, ..bare.clone() }).is_some()
    };
    let mut allowed = bare.clone();
    for vault in &spec.key_vaults {
        let with = |roles: Vec<String>| KeyVaultAccess { roles, ..vault.clone() };
        let roles: Vec<String> = vault
            .roles
            .iter()
            .filter(|r| alone(vec![with(vec![(*r).clone()])], Vec::new()))
            .cloned()
            .collect();
        if !roles.is_empty() {
            allowed.key_vaults.push(with(roles));
        }
    }
    for scoped in &spec.azure_roles {
        let with = |roles: Vec<String>| ScopedRoles { roles, ..scoped.clone() };
        let roles: Vec<String> = scoped
            .roles
            .iter()
            .filter(|r| alone(Vec::new(), vec![with(vec![(*r).clone()])]))
            .cloned()
            .collect();
        if !roles.is_empty() {
            allowed.azure_roles.push(with(roles));
        }
    }
    judge(&allowed)
}

fn violation(field: String, message: String) -> Invalid {
    Invalid { field, reason: Reason::PolicyViolation, message }
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
    /// The ceilings of a closed cluster (the default) and of one with --open-namespaces.
    const CLOSED: &Ceiling = &Ceiling {
        allow_any_role: false,
        allow_other_subscriptions: false,
        allow_existing_identity: false,
        open_namespaces: false,
    };
    const OPEN: &Ceiling = &Ceiling { open_namespaces: true, ..*CLOSED };

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
        let problems = check("team-a", &b, &[], &Ceiling { allow_any_role: true, ..*OPEN });
        assert!(problems[0].message.contains("a resource group scope"), "{problems:?}");
        assert_eq!(fields(problems), ["spec.azureRoles[1].scope", "spec.azureRoles[2].scope"]);
        // A policy at the resource level does not allow the group as a whole.
        let resources =
            scope_rule("data", vec![selector(Some("rg-data"), None, None, ScopeLevel::Resource)], None);
        assert_eq!(
            fields(check("team-a", &b, std::slice::from_ref(&resources), CLOSED)),
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
        assert!(check("team-a", &b, &[broad], OPEN).is_empty());
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
            let rule = ScopeRule::from_selector(&selector, SUB).unwrap_or_else(|e| panic!("{e}"));
            let id = ResourceId::parse(scope).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(rule.allows("team-a", &id), allowed, "{selector:?} on {scope}");
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
        let problems = check("team-a", &b, &rules, CLOSED);
        assert!(problems[0].message.ends_with("(policies allowing the scope: read-data)"), "{problems:?}");
        // Without roles, a policy allows the reader roles of the scope's own service only, which the Service
        // Bus receiver is not: receiving settles the messages it receives.
        assert_eq!(fields(problems), ["spec.azureRoles[0].roles[1]", "spec.azureRoles[1].roles[0]"]);
        let elsewhere = scoped(&[(BUS, &["Storage Blob Data Reader"])]);
        assert_eq!(fields(check("team-a", &elsewhere, &rules[..1], CLOSED)), ["spec.azureRoles[0].roles[0]"]);
    }

    fn binding(vaults: &[(&str, &str, &[&str])], identity: Option<&str>) -> DesiredBinding {
        let spec = spec_with(vaults, identity);
        let open = Ceiling { allow_any_role: true, allow_existing_identity: true, ..Ceiling::default() };
        validate("team-a", "b", &spec, &settings(), &open)
            .unwrap_or_else(|e| panic!("test binding invalid: {e:?}"))
    }

    fn fields(problems: Vec<Invalid>) -> Vec<String> {
        problems.into_iter().map(|p| p.field).collect()
    }

    const ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/shared";

    #[test]
    fn a_namespace_no_policy_selects_binds_nothing_unless_namespaces_are_open() {
        let b = binding(&[("rg-b", "kv-b", &["Key Vault Secrets User"])], None);
        let refused = check("team-a", &b, &[], CLOSED);
        assert_eq!(fields(refused.clone()), ["metadata.namespace"]);
        // The refusal says what to ask the administrator for, and which setting decides.
        let message = &refused[0].message;
        assert!(message.contains("ask your cluster administrator"), "{message}");
        assert!(message.contains("IDBIND_OPEN_NAMESPACES"), "{message}");
        assert!(message.contains("vaults/kv-b with Key Vault Secrets User"), "{message}");
        // A policy for other namespaces does not select this one.
        let other = rule("team-b", &["team-b", "team-b-*"], &[("rg-b", None)], None, &[]);
        assert_eq!(fields(check("team-a", &b, std::slice::from_ref(&other), CLOSED)), ["metadata.namespace"]);
        assert!(
            check("team-b-dev", &b, std::slice::from_ref(&other), CLOSED).is_empty(),
            "prefix patterns select"
        );
        // Open namespaces: the ceiling alone decides for an unselected namespace.
        assert!(check("team-a", &b, &[], OPEN).is_empty());
        assert!(!selected("team-a", std::slice::from_ref(&other)) && selected("team-b-dev", &[other]));
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
        assert!(check("team-a", &ok, &rules, OPEN).is_empty());
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
            fields(check("team-a", &bad, &rules, OPEN)),
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
        let problems = check("team-a", &b, &rules, CLOSED);
        assert!(problems[0].message.ends_with("(policies allowing the vault: read-x)"), "{problems:?}");
        assert_eq!(fields(problems), ["spec.keyVaults[0].roles[0]"]);
    }

    #[test]
    fn a_brought_identity_must_be_listed() {
        let rules = [rule("team-a", &["team-a"], &[], None, &[ID])];
        assert!(check("team-a", &binding(&[], Some(ID)), &rules, OPEN).is_empty());
        assert!(
            check("team-a", &binding(&[], Some(&ID.to_uppercase())), &rules, OPEN).is_empty(),
            "ids compare case-insensitively"
        );
        let other = ID.replace("shared", "team-b-identity");
        assert_eq!(
            fields(check("team-a", &binding(&[], Some(&other)), &rules, OPEN)),
            ["spec.identity.resourceId"]
        );
    }

    #[test]
    fn bringing_an_identity_needs_a_policy_whatever_the_ceiling() {
        // The ceiling allows brought identities (binding() validates with allow_existing_identity), yet with
        // no policy selecting the namespace the identity is refused, with or without --open-namespaces.
        let b = binding(&[], Some(ID));
        assert_eq!(fields(check("team-a", &b, &[], OPEN)), ["spec.identity.resourceId"]);
        assert_eq!(
            fields(check("team-a", &b, &[], CLOSED)),
            ["spec.identity.resourceId", "metadata.namespace"]
        );
        // A policy for another namespace that lists it does not help.
        let theirs = rule("team-b", &["team-b"], &[], None, &[ID]);
        assert_eq!(fields(check("team-a", &b, &[theirs], OPEN)), ["spec.identity.resourceId"]);
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

    #[test]
    fn name_patterns_parse_as_the_schema_says() {
        let table: &[(&str, Result<(), &str>)] = &[
            ("rg-data", Ok(())),
            ("rg-*", Ok(())),
            ("*", Ok(())),
            ("rg-{namespace}", Ok(())),
            ("rg-{namespace}-data", Ok(())),
            ("{namespace}", Ok(())),
            ("rg-{namespace}_*", Ok(())),
            ("rg-{namespace}.data-*", Ok(())),
            ("rg-{namespace}(x)*", Ok(())),
            // A prefix right after the namespace would reach the namespaces it is a prefix of.
            ("rg-{namespace}*", Err("followed by a character")),
            ("rg-{namespace}-*", Err("followed by a character")),
            ("rg-{namespace}x*", Err("followed by a character")),
            ("rg-*-x", Err("may only end")),
            ("rg-{namespace}-{namespace}", Err("once")),
            ("rg-{ns}", Err("once")),
            ("rg-{namespace", Err("once")),
        ];
        for (text, want) in table {
            match (NamePattern::parse(text), want) {
                (Ok(_), Ok(())) => {}
                (Err(e), Err(part)) => assert!(e.to_string().contains(part), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
        assert!(
            NamePattern::parse_exact("rg-*").is_err() && NamePattern::parse_exact("rg-{namespace}").is_ok()
        );
    }

    /// One policy for every namespace, giving each its own resource group and vault by name.
    fn self_service() -> Rule {
        let spec = WorkloadIdentityPolicySpec {
            namespaces: vec!["*".into()],
            key_vaults: vec![
                VaultSelector { subscription_id: None, resource_group: "rg-{namespace}".into(), name: None },
                VaultSelector {
                    subscription_id: None,
                    resource_group: "rg-shared".into(),
                    name: Some("kv-{namespace}".into()),
                },
            ],
            azure_scopes: vec![selector(Some("rg-{namespace}_*"), None, None, ScopeLevel::Resource)],
            ..Default::default()
        };
        Rule::from_policy("self-service", &spec, SUB)
    }

    #[test]
    fn a_namespace_relative_policy_gives_each_namespace_its_own_resources_and_none_of_anothers() {
        let rules = [self_service()];
        let vault = |rg: &str, name: &str| (rg.to_string(), name.to_string());
        let storage_in = |rg: &str| {
            format!(
                "/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/data"
            )
        };
        for ns in ["team-a", "team-b", "team"] {
            let own = [vault(&format!("rg-{ns}"), "kv-1"), vault("rg-shared", &format!("kv-{ns}"))];
            for (rg, name) in &own {
                let b = binding(&[(rg, name, &["Key Vault Secrets User"])], None);
                assert!(check(ns, &b, &rules, CLOSED).is_empty(), "{ns} on {rg}/{name}");
            }
            let own_data = scoped(&[(&storage_in(&format!("rg-{ns}_data")), &["Storage Blob Data Reader"])]);
            assert!(check(ns, &own_data, &rules, CLOSED).is_empty(), "{ns} on its data");
            for other in ["team-a", "team-b", "team", "team-a-b"].iter().filter(|o| **o != ns) {
                for (rg, name) in
                    [vault(&format!("rg-{other}"), "kv-1"), vault("rg-shared", &format!("kv-{other}"))]
                {
                    let b = binding(&[(&rg, &name, &["Key Vault Secrets User"])], None);
                    assert_eq!(
                        fields(check(ns, &b, &rules, CLOSED)),
                        ["spec.keyVaults[0]"],
                        "{ns} on {rg}/{name}"
                    );
                }
                let theirs =
                    scoped(&[(&storage_in(&format!("rg-{other}_data")), &["Storage Blob Data Reader"])]);
                assert_eq!(
                    fields(check(ns, &theirs, &rules, CLOSED)),
                    ["spec.azureRoles[0].scope"],
                    "{ns} on {other}"
                );
            }
        }
    }

    /// A spec of team-a with these vaults (resource group, name, roles).
    fn spec_with(vaults: &[(&str, &str, &[&str])], identity: Option<&str>) -> WorkloadIdentityBindingSpec {
        WorkloadIdentityBindingSpec {
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
        }
    }

    /// (vault name, roles as written) of what [`allowed_part`] keeps; `None` when nothing may be taken back.
    fn kept(
        spec: &WorkloadIdentityBindingSpec,
        ceiling: &Ceiling,
        rules: &[Rule],
    ) -> Option<Vec<(String, Vec<String>)>> {
        let allowed = allowed_part("team-a", "b", spec, &settings(), ceiling, rules, false)?;
        Some(
            allowed
                .vaults
                .iter()
                .map(|v| {
                    let roles = v.roles.iter().map(|r| r.written.clone()).collect();
                    (v.resource_id.name().unwrap_or_default().to_string(), roles)
                })
                .collect(),
        )
    }

    #[test]
    fn what_an_administrator_narrowed_is_all_that_goes() {
        let any_role = &Ceiling { allow_any_role: true, ..*CLOSED };
        let narrowed = [rule("team-a", &["team-a"], &[("rg-a", None)], None, &[])];
        let spec = spec_with(
            &[
                ("rg-a", "kv-a", &["Key Vault Secrets User", "Key Vault Secrets Officer"]),
                ("rg-b", "kv-b", &["Key Vault Secrets User"]),
            ],
            None,
        );
        // The policy now allows team-a's own vault with the reader roles: the officer role and the other
        // team's vault go, the rest stays.
        let want = vec![("kv-a".to_string(), vec!["Key Vault Secrets User".to_string()])];
        assert_eq!(kept(&spec, any_role, &narrowed), Some(want.clone()));
        // The ceiling narrowed (no --allow-any-role) in an open namespace: the officer role goes.
        let open_spec =
            spec_with(&[("rg-a", "kv-a", &["Key Vault Secrets User", "Key Vault Secrets Officer"])], None);
        assert_eq!(kept(&open_spec, OPEN, &[]), Some(want));
        // Nothing allowed any more but the identity: every grant goes, the identity and its credential stay.
        let nothing = [rule("team-a", &["team-a"], &[], None, &[])];
        assert_eq!(kept(&spec, any_role, &nothing), Some(Vec::new()));
    }

    #[test]
    fn a_namespace_whose_last_policy_went_keeps_its_identity_and_loses_every_grant() {
        let spec = spec_with(&[("rg-a", "kv-a", &["Key Vault Secrets User"])], None);
        let theirs = [rule("team-b", &["team-b"], &[("rg-a", None)], None, &[])];
        let allowed = allowed_part("team-a", "b", &spec, &settings(), CLOSED, &theirs, true);
        assert!(allowed.as_ref().is_some_and(|d| d.vaults.is_empty() && d.scopes.is_empty()), "{allowed:?}");
        // A brought identity gives up its credential instead (the gate), and keeps the grants others gave it.
        let brought = spec_with(&[("rg-a", "kv-a", &["Key Vault Secrets User"])], Some(ID));
        let bring = &Ceiling { allow_existing_identity: true, ..*CLOSED };
        assert_eq!(allowed_part("team-a", "b", &brought, &settings(), bring, &[], true), None);
    }

    #[test]
    fn nothing_is_taken_back_where_no_administrator_said_anything_or_more_than_grants_is_refused() {
        let spec = spec_with(&[("rg-a", "kv-a", &["Key Vault Secrets User"])], None);
        // No policy selects the namespace of a closed cluster (an upgrade, or its last policy deleted).
        let theirs = [rule("team-b", &["team-b"], &[("rg-a", None)], None, &[])];
        assert_eq!(kept(&spec, CLOSED, &theirs), None);
        // A brought identity no policy lists: refused as a whole (its credential goes, see the gate).
        let brought = spec_with(&[("rg-a", "kv-a", &["Key Vault Secrets User"])], Some(ID));
        let no_identity = [rule("team-a", &["team-a"], &[("rg-a", None)], None, &[])];
        let bring = &Ceiling { allow_existing_identity: true, ..*CLOSED };
        assert_eq!(kept(&brought, bring, &no_identity), None);
        // An invalid spec.
        let invalid = WorkloadIdentityBindingSpec { service_account_name: "A:B".into(), ..spec.clone() };
        assert_eq!(kept(&invalid, OPEN, &[]), None);
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// A namespace: a DNS label, or (to show the pattern takes it literally) one with characters a pattern
    /// would treat as special, but never one of the separators a prefix pattern needs after it.
    fn namespace() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", "[-a-z0-9*?{}%]{1,8}"]
    }

    /// Text a pattern may hold around the placeholder.
    fn text() -> impl Strategy<Value = String> {
        "[-a-zA-Z0-9_.()]{0,6}"
    }

    /// A pattern naming the namespace: `head{namespace}after`, and a prefix one when `after` starts with a
    /// separator.
    fn relative_pattern() -> impl Strategy<Value = (String, String, bool)> {
        (text(), text(), any::<bool>(), prop::sample::select(vec!['_', '.', '(', ')'])).prop_map(
            |(head, after, prefix, separator)| {
                let after = if prefix { format!("{separator}{after}") } else { after };
                (head, after, prefix)
            },
        )
    }

    proptest! {
        /// Whatever the namespaces (prefixes of each other included) and whatever follows, namespace `a`'s
        /// pattern never matches a name the same pattern gives namespace `b`.
        #[test]
        fn no_namespace_reaches_anothers_names_through_a_relative_pattern(
            (head, after, prefix) in relative_pattern(),
            a in namespace(),
            b_suffix in namespace(),
            b_is_longer in any::<bool>(),
            rest in text(),
        ) {
            // Half the time one namespace is a prefix of the other: the case a careless pattern gets wrong.
            let b = if b_is_longer { format!("{a}{b_suffix}") } else { b_suffix };
            prop_assume!(!a.eq_ignore_ascii_case(&b));
            let text = format!("{head}{NAMESPACE_PLACEHOLDER}{after}{}", if prefix { "*" } else { "" });
            let pattern = NamePattern::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let theirs = format!("{head}{b}{after}{}", if prefix { rest.as_str() } else { "" });
            prop_assert!(pattern.matches(&b, &theirs), "{} must match its own name {}", text, theirs);
            prop_assert!(!pattern.matches(&a, &theirs), "{} for {} matched {}'s {}", text, a, b, theirs);
        }

        /// A namespace spelled like a wildcard is still only itself.
        #[test]
        fn a_namespace_is_never_a_wildcard(name in text(), a in "[*?%]{1,3}") {
            let pattern = NamePattern::parse("rg-{namespace}").map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(pattern.matches(&a, &format!("rg-{name}")), name == a);
        }
    }
}
