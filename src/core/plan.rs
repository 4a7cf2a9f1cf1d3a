//! `plan(desired, observed) -> actions`: the Azure writes that make what exists match what a binding asks
//! for, in dependency order. Pure. In steady state the plan is empty, so a resync costs reads only (ARM
//! throttles writes hard; re-PUTting on every sync is what throttled ASO).

use std::collections::BTreeMap;

use crate::core::reason::Reason;
use crate::{
    api::binding::TOKEN_EXCHANGE_AUDIENCE,
    core::{grants, report::Part, resource_id::ResourceId},
};

/// Tag names idbind puts on every identity it creates. An identity without them is not ours and is never
/// modified or deleted. They are compared exactly, letter case included: idbind writes them in lower case,
/// and no binding may set a tag whose name starts with [`TAG_PREFIX`] in any case (the schema and validation
/// refuse it), so no tenant can spell them.
pub const TAG_CLUSTER: &str = "idbind.dev.cluster";
pub const TAG_NAMESPACE: &str = "idbind.dev.namespace";
pub const TAG_BINDING: &str = "idbind.dev.binding";
/// The binding's `metadata.uid`: a binding deleted and created again under the same name is another binding.
pub const TAG_UID: &str = "idbind.dev.uid";
/// What every ownership tag's name starts with; reserved in any letter case.
pub const TAG_PREFIX: &str = "idbind.dev";

/// Who a binding is: what ownership tags record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub cluster: String,
    pub namespace: String,
    pub binding: String,
    /// The binding's `metadata.uid`; `None` only in a dry run of a manifest never applied, which writes
    /// nothing.
    pub uid: Option<String>,
}

/// What an identity's tags say of a binding's claim to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// idbind made it for this very binding.
    Ours,
    /// idbind made it for this binding's name before it recorded bindings' UIDs: only idbind can have written
    /// those lower-case tags (the schema always refused them), so it is this binding's, and its next PUT adds
    /// the UID.
    Legacy,
    /// Made for an earlier binding of this namespace and name (another UID), kept by `deletionPolicy:
    /// Retain`: the namespace may since have changed hands, so a name alone adopts nothing.
    Earlier,
    /// Someone else's: another binding's, or not made by idbind at all.
    Foreign,
}

impl Owner {
    /// The ownership tags idbind writes for this binding.
    pub fn tags(&self) -> Vec<(&'static str, &str)> {
        let mut tags = vec![
            (TAG_CLUSTER, self.cluster.as_str()),
            (TAG_NAMESPACE, &self.namespace),
            (TAG_BINDING, &self.binding),
        ];
        tags.extend(self.uid.as_deref().map(|uid| (TAG_UID, uid)));
        tags
    }

    /// What an identity's tags say of this binding's claim to it. Names are compared exactly.
    pub fn ownership(&self, tags: &BTreeMap<String, String>) -> Ownership {
        let is = |name: &str, value: &str| tags.get(name).is_some_and(|v| v == value);
        let names_us = is(TAG_CLUSTER, &self.cluster)
            && is(TAG_NAMESPACE, &self.namespace)
            && is(TAG_BINDING, &self.binding);
        match (names_us, tags.get(TAG_UID), &self.uid) {
            (false, _, _) => Ownership::Foreign,
            (true, None, _) => Ownership::Legacy,
            (true, Some(tag), Some(uid)) if tag != uid => Ownership::Earlier,
            (true, Some(_), _) => Ownership::Ours,
        }
    }

    /// Whether an identity's tags say it belongs to this binding.
    pub fn owns(&self, tags: &BTreeMap<String, String>) -> bool {
        matches!(self.ownership(tags), Ownership::Ours | Ownership::Legacy)
    }
}

/// The Azure state a validated binding wants, with roles resolved to role definition GUIDs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredAzure {
    pub owner: Owner,
    /// `Some` when idbind manages the identity; `None` for a brought identity.
    pub managed_identity: Option<ManagedIdentity>,
    pub federation: Federation,
    pub grants: grants::Desired,
    /// The client id of the identity idbind itself signs in as: never bindable.
    pub operator_client_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedIdentity {
    pub resource_id: ResourceId,
    pub location: String,
    pub tags: BTreeMap<String, String>,
}

/// The binding's federated credential: its name on the identity, and whom it trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Federation {
    pub name: String,
    pub issuer: String,
    pub subject: String,
}

/// Where the observe step looks for what a binding holds: its federated credential on the identity, and its
/// grants (what it wants and what it held, by kind).
#[derive(Clone, Copy, Debug)]
pub struct Lookup<'a> {
    pub federation: &'a Federation,
    pub grants: &'a grants::Desired,
}

impl<'a> From<&'a DesiredAzure> for Lookup<'a> {
    fn from(desired: &'a DesiredAzure) -> Self {
        Lookup { federation: &desired.federation, grants: &desired.grants }
    }
}

impl<'a> From<&'a crate::core::removal::Release> for Lookup<'a> {
    fn from(release: &'a crate::core::removal::Release) -> Self {
        Lookup { federation: &release.federation, grants: &release.grants }
    }
}

/// What exists in Azure for the binding, as read by the observe step.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ObservedAzure {
    pub identity: Option<ObservedIdentity>,
    /// The FIC with our name on the identity, if any.
    pub fic: Option<ObservedFic>,
    /// How many FICs the identity has in all (Azure allows 20).
    pub fic_count: usize,
    /// Another FIC on the identity (not ours) with our issuer and subject.
    pub fic_duplicate_of: Option<String>,
    /// What the identity's principal is granted, by kind.
    pub grants: grants::Observed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedIdentity {
    pub location: String,
    pub tags: BTreeMap<String, String>,
    pub client_id: String,
    pub principal_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedFic {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

/// The ids Azure gives a user-assigned identity, which the binding's status reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityIds {
    pub resource_id: ResourceId,
    pub client_id: String,
    pub principal_id: String,
    pub tenant_id: String,
}

/// One Azure write. The planner makes the first three; [`crate::core::removal`] makes grants that take away,
/// and the two deletes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    PutIdentity { resource_id: ResourceId, location: String, tags: BTreeMap<String, String> },
    PutFederatedCredential { name: String, issuer: String, subject: String, audience: String },
    Grant(grants::Change),
    DeleteFederatedCredential { name: String },
    DeleteIdentity { resource_id: ResourceId },
}

/// One write, as a person reads it (`idbind plan`, the log line of each write).
impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::PutIdentity { resource_id, location, tags } => write!(
                f,
                "put identity {resource_id} in {location}, tags {}",
                tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
            ),
            Action::PutFederatedCredential { name, issuer, subject, audience } => write!(
                f,
                "put federated credential {name}: issuer {issuer}, subject {subject}, audience {audience}"
            ),
            Action::Grant(change) => change.fmt(f),
            Action::DeleteFederatedCredential { name } => write!(f, "delete federated credential {name}"),
            Action::DeleteIdentity { resource_id } => write!(f, "delete identity {resource_id}"),
        }
    }
}

impl Action {
    /// The part of the binding it writes (whose condition a failure of it sets).
    pub fn part(&self) -> Part {
        match self {
            Action::PutIdentity { .. } | Action::DeleteIdentity { .. } => Part::Identity,
            Action::PutFederatedCredential { .. } | Action::DeleteFederatedCredential { .. } => {
                Part::FederatedCredential
            }
            Action::Grant(_) => Part::RoleAssignments,
        }
    }

    /// What a delete removed, as the audit trail names it (`identity`: the identity the binding let go,
    /// `principal`: its principal); `None` for a write that adds.
    pub fn removed(&self, identity: &ResourceId, principal: &str) -> Option<String> {
        match self {
            Action::PutIdentity { .. } | Action::PutFederatedCredential { .. } => None,
            Action::Grant(change) => change.removed(principal),
            Action::DeleteFederatedCredential { name } => {
                Some(format!("{identity}/federatedIdentityCredentials/{name}"))
            }
            Action::DeleteIdentity { resource_id } => Some(resource_id.to_string()),
        }
    }

    /// Whether it only takes access away.
    pub fn takes_away(&self) -> bool {
        match self {
            Action::PutIdentity { .. } | Action::PutFederatedCredential { .. } => false,
            Action::Grant(change) => change.takes_away(),
            Action::DeleteFederatedCredential { .. } | Action::DeleteIdentity { .. } => true,
        }
    }
}

/// Why no plan can be made: the binding waits for a human.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    #[error(
        "identity {0} exists and was not created by idbind for this binding (no matching ownership tags); \
         idbind will not modify it"
    )]
    IdentityConflict(ResourceId),
    #[error(
        "identity {resource_id} is in {observed}, not {desired}; Azure cannot move an identity between \
         regions"
    )]
    LocationMismatch { resource_id: ResourceId, observed: String, desired: String },
    #[error("the identity named by spec.identity.resourceId does not exist")]
    ExistingIdentityNotFound,
    #[error(
        "the identity named by spec.identity.resourceId is managed by idbind for binding \
         {namespace}/{binding} (cluster {cluster}); bringing it would give this binding that workload's \
         access, so idbind refuses"
    )]
    IdentityOfAnotherBinding { cluster: String, namespace: String, binding: String },
    #[error(
        "identity {0} was made for an earlier binding of this name (its idbind.dev.uid tag names another UID) \
         and kept by deletionPolicy: Retain; idbind adopts no identity on a name alone: delete it, name another \
         with spec.identity.name, or bring it with spec.identity.resourceId under a policy that lists it"
    )]
    EarlierBindingsIdentity(ResourceId),
    #[error(
        "the identity named by spec.identity.resourceId is the one idbind itself signs in as; binding it would \
         hand this namespace the operator's own access, so idbind refuses whatever a policy says"
    )]
    OperatorIdentity,
    #[error(
        "identity {resource_id} carries {count} federated credential(s) idbind did not write; idbind takes over \
         no identity that trusts anyone else"
    )]
    ForeignFederation { resource_id: ResourceId, count: usize },
    #[error("the identity already has {0} federated credentials, Azure's limit is 20")]
    FederatedCredentialLimit(usize),
    #[error("federated credential {0} on the identity already trusts this issuer and subject")]
    DuplicateFederation(String),
}

impl Blocked {
    /// The part of the binding it blocks.
    pub fn part(&self) -> Part {
        match self {
            Blocked::IdentityConflict(_)
            | Blocked::EarlierBindingsIdentity(_)
            | Blocked::IdentityOfAnotherBinding { .. }
            | Blocked::OperatorIdentity
            | Blocked::ForeignFederation { .. }
            | Blocked::LocationMismatch { .. }
            | Blocked::ExistingIdentityNotFound => Part::Identity,
            Blocked::FederatedCredentialLimit(_) | Blocked::DuplicateFederation(_) => {
                Part::FederatedCredential
            }
        }
    }

    /// The condition reason for users.
    pub fn reason(&self) -> Reason {
        match self {
            Blocked::IdentityConflict(_)
            | Blocked::EarlierBindingsIdentity(_)
            | Blocked::IdentityOfAnotherBinding { .. }
            | Blocked::ForeignFederation { .. } => Reason::IdentityConflict,
            Blocked::OperatorIdentity => Reason::OperatorIdentity,
            Blocked::ExistingIdentityNotFound => Reason::IdentityNotFound,
            Blocked::LocationMismatch { .. } => Reason::IdentityLocationMismatch,
            Blocked::FederatedCredentialLimit(_) => Reason::FederatedCredentialLimit,
            Blocked::DuplicateFederation(_) => Reason::DuplicateFederatedCredential,
        }
    }
}

/// Maximum FICs per identity (Entra's documented limit).
pub const MAX_FICS_PER_IDENTITY: usize = 20;

/// The writes that bring `observed` to `desired`. Role assignments wait for the identity (its principal id
/// names them), so a first reconcile may plan only the identity and the next one the rest: each reconcile
/// observes again before planning.
pub fn plan(desired: &DesiredAzure, observed: &ObservedAzure) -> Result<Vec<Action>, Blocked> {
    let mut actions: Vec<Action> = plan_identity(desired, observed)?.into_iter().collect();
    let Some(identity) = &observed.identity else {
        return match desired.managed_identity {
            Some(_) => Ok(actions),
            None => Err(Blocked::ExistingIdentityNotFound),
        };
    };
    actions.extend(plan_federation(desired, observed)?);
    let grants = grants::plan(&desired.grants, &observed.grants, &identity.principal_id);
    actions.extend(grants.into_iter().map(Action::Grant));
    Ok(actions)
}

/// The identity's PUT, when idbind manages it and it is missing or its tags differ. An identity that exists
/// without this binding's ownership tags is someone else's; one made before bindings' UIDs were recorded is
/// taken over only if it trusts no one idbind did not make it trust; one in another region cannot be moved.
fn plan_identity(desired: &DesiredAzure, observed: &ObservedAzure) -> Result<Option<Action>, Blocked> {
    let Some(want) = &desired.managed_identity else {
        return brought_identity_is_free(desired, observed).map(|()| None);
    };
    let mut tags = tags_with_owner(want, &desired.owner);
    let put = |tags: BTreeMap<String, String>| Action::PutIdentity {
        resource_id: want.resource_id.clone(),
        location: want.location.clone(),
        tags,
    };
    let Some(have) = &observed.identity else {
        return Ok(Some(put(tags)));
    };
    // A dry run of a manifest never applied knows no UID: it takes the identity's own.
    if desired.owner.uid.is_none()
        && let Some(uid) = have.tags.get(TAG_UID)
    {
        tags.insert(TAG_UID.into(), uid.clone());
    }
    let foreign_fics = observed.fic_count - usize::from(observed.fic.is_some());
    match desired.owner.ownership(&have.tags) {
        Ownership::Foreign => Err(Blocked::IdentityConflict(want.resource_id.clone())),
        Ownership::Earlier => Err(Blocked::EarlierBindingsIdentity(want.resource_id.clone())),
        _ if !have.location.eq_ignore_ascii_case(&want.location) => Err(Blocked::LocationMismatch {
            resource_id: want.resource_id.clone(),
            observed: have.location.clone(),
            desired: want.location.clone(),
        }),
        _ if tags == have.tags => Ok(None),
        Ownership::Legacy if foreign_fics > 0 => {
            Err(Blocked::ForeignFederation { resource_id: want.resource_id.clone(), count: foreign_fics })
        }
        Ownership::Legacy | Ownership::Ours => Ok(Some(put(tags))),
    }
}

/// A brought identity that idbind manages for another binding (in this cluster or another) is that binding's:
/// federating it here would hand this namespace another workload's access, and that binding's deletion would
/// pull the identity from under this one. The identity idbind itself signs in as is never anyone's to bring.
fn brought_identity_is_free(desired: &DesiredAzure, observed: &ObservedAzure) -> Result<(), Blocked> {
    let Some(have) = &observed.identity else {
        return Ok(());
    };
    if desired.operator_client_id.as_ref().is_some_and(|own| own.eq_ignore_ascii_case(&have.client_id)) {
        return Err(Blocked::OperatorIdentity);
    }
    let tag =
        |name: &str| have.tags.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    match tag(TAG_BINDING) {
        Some(binding) => Err(Blocked::IdentityOfAnotherBinding {
            cluster: tag(TAG_CLUSTER).unwrap_or_default(),
            namespace: tag(TAG_NAMESPACE).unwrap_or_default(),
            binding,
        }),
        None => Ok(()),
    }
}

/// Our FIC's PUT when it is missing or trusts something else; refused before writing when another FIC already
/// trusts the same issuer and subject, or the identity has no room for one more.
fn plan_federation(desired: &DesiredAzure, observed: &ObservedAzure) -> Result<Option<Action>, Blocked> {
    let matches = observed.fic.as_ref().is_some_and(|f| {
        let want = &desired.federation;
        f.issuer == want.issuer && f.subject == want.subject && f.audiences == [TOKEN_EXCHANGE_AUDIENCE]
    });
    if matches {
        return Ok(None);
    }
    if let Some(other) = &observed.fic_duplicate_of {
        return Err(Blocked::DuplicateFederation(other.clone()));
    }
    if observed.fic.is_none() && observed.fic_count >= MAX_FICS_PER_IDENTITY {
        return Err(Blocked::FederatedCredentialLimit(observed.fic_count));
    }
    let Federation { name, issuer, subject } = desired.federation.clone();
    Ok(Some(Action::PutFederatedCredential {
        name,
        issuer,
        subject,
        audience: TOKEN_EXCHANGE_AUDIENCE.to_string(),
    }))
}

/// What Azure holds once `action` succeeded, so the next round plans from it without reading Azure again:
/// every read counts against ARM's and the managed-identity API's limits (one GET per identity every 2 s),
/// and re-reading after each write was what kept convergence at several times the bound. `principal_id` is
/// the identity's, from the PUT's answer when it was just created. The next resync reads Azure and catches
/// anything this assumed wrongly.
pub fn assume(observed: &mut ObservedAzure, action: &Action, principal_id: Option<&str>) {
    match action {
        Action::PutIdentity { location, tags, .. } => {
            let principal = principal_id
                .map(str::to_string)
                .or_else(|| observed.identity.as_ref().map(|i| i.principal_id.clone()))
                .unwrap_or_default();
            if observed.identity.is_none() {
                // A new identity: a new principal, so nothing federates it or is granted to it.
                *observed = ObservedAzure { grants: observed.grants.emptied(), ..ObservedAzure::default() };
            }
            // The client id only matters to a brought identity, which idbind never PUTs.
            let client_id = observed.identity.as_ref().map(|i| i.client_id.clone()).unwrap_or_default();
            observed.identity = Some(ObservedIdentity {
                location: location.clone(),
                tags: tags.clone(),
                client_id,
                principal_id: principal,
            });
        }
        Action::PutFederatedCredential { issuer, subject, audience, .. } => {
            if observed.fic.is_none() {
                observed.fic_count += 1;
            }
            observed.fic = Some(ObservedFic {
                issuer: issuer.clone(),
                subject: subject.clone(),
                audiences: vec![audience.clone()],
            });
        }
        Action::Grant(change) => grants::assume(&mut observed.grants, change),
        Action::DeleteFederatedCredential { .. } => {
            if observed.fic.take().is_some() {
                observed.fic_count -= 1;
            }
        }
        Action::DeleteIdentity { .. } => *observed = ObservedAzure::default(),
    }
}

fn tags_with_owner(want: &ManagedIdentity, owner: &Owner) -> BTreeMap<String, String> {
    let mut tags = want.tags.clone();
    for (k, v) in owner.tags() {
        tags.insert(k.to_string(), v.to_string());
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        grants::{access_policies, role_assignments},
        naming,
        resource_id::ROLE_ASSIGNMENT,
        roles::Permissions,
    };

    const KV: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";

    fn id(text: &str) -> ResourceId {
        ResourceId::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn kv() -> ResourceId {
        id(KV)
    }

    fn ap_kv() -> ResourceId {
        id(AP_KV)
    }
    const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
    const READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";
    const PRINCIPAL: &str = "11111111-2222-3333-4444-555555555555";
    const OPERATOR_CLIENT_ID: &str = "99999999-0000-0000-0000-00000000c11d";

    fn role(change: role_assignments::Change) -> Action {
        Action::Grant(grants::Change::RoleAssignment(change))
    }

    fn policy(change: access_policies::Change) -> Action {
        Action::Grant(grants::Change::AccessPolicy(change))
    }

    fn is_create(action: &Action) -> bool {
        matches!(
            action,
            Action::Grant(grants::Change::RoleAssignment(role_assignments::Change::Create { .. }))
        )
    }

    fn owner() -> Owner {
        Owner {
            cluster: "aks1".into(),
            namespace: "shop".into(),
            binding: "orders".into(),
            uid: Some("uid-1".into()),
        }
    }

    fn desired(roles: &[&str]) -> DesiredAzure {
        DesiredAzure {
            owner: owner(),
            managed_identity: Some(ManagedIdentity {
                resource_id: id(
                    "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1",
                ),
                location: "westeurope".into(),
                tags: [("team".to_string(), "shop".to_string())].into(),
            }),
            federation: Federation {
                name: "aks1-shop-orders-abc".into(),
                issuer: "https://issuer/".into(),
                subject: "system:serviceaccount:shop:orders".into(),
            },
            grants: grants::Desired {
                role_assignments: role_assignments::Desired {
                    wanted: roles
                        .iter()
                        .map(|r| role_assignments::Wanted { scope: kv(), role_guid: r.to_string() })
                        .collect(),
                    subscriptions: Vec::new(),
                },
                access_policies: access_policies::Desired::default(),
            },
            operator_client_id: Some(OPERATOR_CLIENT_ID.into()),
        }
    }

    fn ours(d: &DesiredAzure) -> BTreeMap<String, String> {
        d.managed_identity.as_ref().map(|m| tags_with_owner(m, &d.owner)).unwrap_or_default()
    }

    fn assignment(role: &str) -> role_assignments::Observed {
        let name = naming::role_assignment_name(&kv(), role, PRINCIPAL).to_string();
        role_assignments::Observed {
            id: kv().provider_resource(ROLE_ASSIGNMENT, &name),
            name,
            scope: kv(),
            role_definition_id: format!(
                "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/{role}"
            ),
        }
    }

    /// Everything `desired(roles)` asks for, as Azure would report it.
    fn converged(d: &DesiredAzure, roles: &[&str]) -> ObservedAzure {
        ObservedAzure {
            identity: Some(ObservedIdentity {
                location: "westeurope".into(),
                tags: ours(d),
                client_id: "client-of-id1".into(),
                principal_id: PRINCIPAL.into(),
            }),
            fic: Some(ObservedFic {
                issuer: d.federation.issuer.clone(),
                subject: d.federation.subject.clone(),
                audiences: vec![TOKEN_EXCHANGE_AUDIENCE.into()],
            }),
            fic_count: 1,
            fic_duplicate_of: None,
            grants: grants::Observed {
                role_assignments: roles.iter().map(|r| assignment(r)).collect(),
                access_policies: access_policies::Observed {
                    entries: d.grants.access_policies.wanted.clone(),
                },
            },
        }
    }

    #[test]
    fn nothing_exists_so_the_identity_comes_first() {
        let d = desired(&[SECRETS_USER]);
        let actions = plan(&d, &ObservedAzure::default()).expect("plannable");
        assert_eq!(
            actions,
            vec![Action::PutIdentity {
                resource_id: id(
                    "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
                ),
                location: "westeurope".into(),
                tags: ours(&d)
            }]
        );
        assert!(ours(&d).contains_key(TAG_BINDING) && ours(&d).contains_key("team"));
    }

    #[test]
    fn with_the_identity_in_place_the_fic_and_roles_follow() {
        let d = desired(&[SECRETS_USER, READER]);
        let mut o = converged(&d, &[]);
        o.fic = None;
        o.fic_count = 0;
        let actions = plan(&d, &o).expect("plannable");
        assert!(
            matches!(&actions[0], Action::PutFederatedCredential { subject, audience, .. } if subject == "system:serviceaccount:shop:orders" && audience == TOKEN_EXCHANGE_AUDIENCE)
        );
        assert_eq!(actions.iter().filter(|a| is_create(a)).count(), 2);
    }

    #[test]
    fn steady_state_plans_no_writes() {
        let d = desired(&[SECRETS_USER, READER]);
        assert_eq!(plan(&d, &converged(&d, &[SECRETS_USER, READER])), Ok(vec![]));
    }

    #[test]
    fn editing_roles_adds_and_removes_exactly_the_difference() {
        let d = desired(&[READER]);
        let actions = plan(&d, &converged(&d, &[SECRETS_USER])).expect("plannable");
        assert_eq!(
            actions,
            vec![
                role(role_assignments::Change::Create {
                    scope: kv(),
                    name: naming::role_assignment_name(&kv(), READER, PRINCIPAL).to_string(),
                    role_definition_guid: READER.into()
                }),
                role(role_assignments::Change::Delete { id: assignment(SECRETS_USER).id }),
            ]
        );
    }

    #[test]
    fn assignments_made_by_others_are_left_alone() {
        let d = desired(&[]);
        let mut o = converged(&d, &[]);
        let mut foreign = assignment(SECRETS_USER);
        foreign.name = "0f0f0f0f-0000-0000-0000-000000000000".into();
        o.grants.role_assignments.push(foreign);
        assert_eq!(plan(&d, &o), Ok(vec![]));
    }

    #[test]
    fn an_identity_without_our_tags_is_a_conflict() {
        let d = desired(&[]);
        let mut o = converged(&d, &[]);
        if let Some(i) = o.identity.as_mut() {
            i.tags.remove(TAG_BINDING);
        }
        assert!(matches!(plan(&d, &o), Err(Blocked::IdentityConflict(_))));
        // Tagged for another binding of the same name in another namespace: still not ours.
        let mut o = converged(&d, &[]);
        if let Some(i) = o.identity.as_mut() {
            i.tags.insert(TAG_NAMESPACE.into(), "other".into());
        }
        assert_eq!(plan(&d, &o).map_err(|b| b.reason()), Err(Reason::IdentityConflict));
    }

    /// The identity's tags as `ours(d)` with `edit` applied.
    fn tagged(d: &DesiredAzure, edit: &dyn Fn(&mut BTreeMap<String, String>)) -> ObservedAzure {
        let mut o = converged(d, &[]);
        if let Some(i) = o.identity.as_mut() {
            edit(&mut i.tags);
        }
        o
    }

    #[test]
    fn ownership_is_what_the_exact_tags_say_including_the_uid() {
        let d = desired(&[]);
        type Edit = dyn Fn(&mut BTreeMap<String, String>);
        let table: &[(&str, &Edit, Result<usize, Reason>)] = &[
            ("all four tags, exactly: ours, nothing to do", &|_| {}, Ok(0)),
            (
                "no UID tag: made before UIDs were recorded, adopted by adding it",
                &|t| {
                    t.remove(TAG_UID);
                },
                Ok(1),
            ),
            (
                "another UID: an earlier binding's, kept by Retain",
                &|t| {
                    t.insert(TAG_UID.into(), "uid-0".into());
                },
                Err(Reason::IdentityConflict),
            ),
            (
                "the namespace tag in another case: not ours",
                &|t| {
                    let ns = t.remove(TAG_NAMESPACE).unwrap_or_default();
                    t.insert("IDBIND.dev.namespace".into(), ns);
                },
                Err(Reason::IdentityConflict),
            ),
            (
                "names in another case and no UID: a tenant's forgery",
                &|t| {
                    *t = t
                        .iter()
                        .filter(|(k, _)| k.as_str() != TAG_UID)
                        .map(|(k, v)| (k.to_uppercase(), v.clone()))
                        .collect();
                },
                Err(Reason::IdentityConflict),
            ),
            (
                "another namespace",
                &|t| {
                    t.insert(TAG_NAMESPACE.into(), "team-b".into());
                },
                Err(Reason::IdentityConflict),
            ),
            (
                "another cluster",
                &|t| {
                    t.insert(TAG_CLUSTER.into(), "aks2".into());
                },
                Err(Reason::IdentityConflict),
            ),
        ];
        for (case, edit, want) in table {
            let got = plan(&d, &tagged(&d, edit)).map(|a| a.len()).map_err(|b| b.reason());
            assert_eq!(got, *want, "{case}");
        }
        let earlier = tagged(&d, &|t| {
            t.insert(TAG_UID.into(), "uid-0".into());
        });
        assert!(matches!(plan(&d, &earlier), Err(Blocked::EarlierBindingsIdentity(_))));
    }

    #[test]
    fn an_identity_that_trusts_others_is_never_adopted() {
        let d = desired(&[]);
        // Made before UIDs were recorded, and someone added a federated credential idbind did not write.
        let mut o = tagged(&d, &|t| {
            t.remove(TAG_UID);
        });
        o.fic_count = 2;
        assert!(matches!(plan(&d, &o), Err(Blocked::ForeignFederation { count: 1, .. })));
        // Without our own credential yet, every one there is foreign.
        o.fic = None;
        o.fic_count = 1;
        assert!(matches!(plan(&d, &o), Err(Blocked::ForeignFederation { count: 1, .. })));
    }

    #[test]
    fn the_operators_own_identity_is_never_brought() {
        let mut d = desired(&[SECRETS_USER]);
        d.managed_identity = None;
        let mut o = converged(&d, &[]);
        if let Some(i) = o.identity.as_mut() {
            i.tags.clear();
            i.client_id = OPERATOR_CLIENT_ID.to_uppercase();
        }
        assert_eq!(plan(&d, &o), Err(Blocked::OperatorIdentity));
        assert_eq!(Blocked::OperatorIdentity.reason(), Reason::OperatorIdentity);
    }

    #[test]
    fn drifted_tags_are_put_back_and_location_cannot_move() {
        let d = desired(&[]);
        let mut o = converged(&d, &[]);
        if let Some(i) = o.identity.as_mut() {
            i.tags.remove("team");
        }
        assert!(matches!(plan(&d, &o).as_deref(), Ok([Action::PutIdentity { .. }])));
        let mut o = converged(&d, &[]);
        if let Some(i) = o.identity.as_mut() {
            i.location = "eastus".into();
        }
        assert_eq!(plan(&d, &o).map_err(|b| b.reason()), Err(Reason::IdentityLocationMismatch));
    }

    #[test]
    fn a_changed_subject_updates_the_fic_in_place() {
        let d = desired(&[]);
        let mut o = converged(&d, &[]);
        if let Some(f) = o.fic.as_mut() {
            f.subject = "system:serviceaccount:shop:old".into();
        }
        assert!(matches!(plan(&d, &o).as_deref(), Ok([Action::PutFederatedCredential { .. }])));
    }

    #[test]
    fn fic_limit_and_duplicates_block_instead_of_retrying() {
        let d = desired(&[]);
        let mut o = converged(&d, &[]);
        o.fic = None;
        o.fic_count = MAX_FICS_PER_IDENTITY;
        assert_eq!(plan(&d, &o).map_err(|b| b.reason()), Err(Reason::FederatedCredentialLimit));
        let mut o = converged(&d, &[]);
        o.fic = None;
        o.fic_duplicate_of = Some("someone-elses".into());
        assert_eq!(plan(&d, &o).map_err(|b| b.reason()), Err(Reason::DuplicateFederatedCredential));
    }

    #[test]
    fn a_brought_identity_is_never_written() {
        let mut d = desired(&[SECRETS_USER]);
        d.managed_identity = None;
        let mut o = converged(&d, &[SECRETS_USER]);
        if let Some(i) = o.identity.as_mut() {
            i.tags.clear();
        }
        assert_eq!(plan(&d, &o), Ok(vec![]));
        assert_eq!(
            plan(&d, &ObservedAzure::default()).map_err(|b| b.reason()),
            Err(Reason::IdentityNotFound)
        );
    }

    #[test]
    fn bringing_another_bindings_managed_identity_is_refused() {
        let mut d = desired(&[SECRETS_USER]);
        d.managed_identity = None;
        let mut o = converged(&d, &[]);
        let other = Owner {
            cluster: "aks1".into(),
            namespace: "team-b".into(),
            binding: "payments".into(),
            uid: Some("uid-2".into()),
        };
        if let Some(i) = o.identity.as_mut() {
            i.tags = other.tags().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        }
        assert!(
            matches!(plan(&d, &o), Err(Blocked::IdentityOfAnotherBinding { ref namespace, ref binding, .. }) if namespace == "team-b" && binding == "payments")
        );
        assert_eq!(plan(&d, &o).map_err(|b| b.reason()), Err(Reason::IdentityConflict));
    }

    fn perms(secrets: &[&str], certificates: &[&str]) -> Permissions {
        Permissions {
            secrets: secrets.iter().map(ToString::to_string).collect(),
            keys: Default::default(),
            certificates: certificates.iter().map(ToString::to_string).collect(),
        }
    }

    const AP_KV: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/legacy";

    #[test]
    fn an_access_policy_vault_gets_what_is_missing_and_loses_only_what_idbind_held() {
        let mut d = desired(&[]);
        d.grants.access_policies.wanted = vec![(ap_kv(), perms(&["get", "list"], &[]))];
        let mut o = converged(&d, &[]);
        o.grants.access_policies.entries = vec![];
        assert_eq!(
            plan(&d, &o),
            Ok(vec![policy(access_policies::Change::Grant {
                vault_id: ap_kv(),
                permissions: perms(&["get", "list"], &[])
            })])
        );
        // Half there (and spelled otherwise): only the rest is granted.
        o.grants.access_policies.entries = vec![(id(&AP_KV.to_uppercase()), perms(&["GET"], &[]))];
        assert_eq!(
            plan(&d, &o),
            Ok(vec![policy(access_policies::Change::Grant {
                vault_id: ap_kv(),
                permissions: perms(&["list"], &[])
            })])
        );
        // Converged, with a permission someone else granted: nothing to do.
        o.grants.access_policies.entries = vec![(ap_kv(), perms(&["get", "list", "set"], &[]))];
        assert_eq!(plan(&d, &o), Ok(vec![]));

        // The spec swaps Secrets User for Certificate User: idbind revokes only what it held and is no longer
        // wanted ("list"), never the foreign "set", and grants the rest.
        d.grants.access_policies.held = d.grants.access_policies.wanted.clone();
        d.grants.access_policies.wanted = vec![(ap_kv(), perms(&["get"], &["get", "list"]))];
        assert_eq!(
            plan(&d, &o),
            Ok(vec![
                policy(access_policies::Change::Grant {
                    vault_id: ap_kv(),
                    permissions: perms(&[], &["get", "list"])
                }),
                policy(access_policies::Change::Revoke {
                    vault_id: ap_kv(),
                    permissions: perms(&["list"], &[])
                })
            ])
        );
        // The vault leaves the spec: everything held and still there goes.
        d.grants.access_policies.wanted = vec![];
        assert_eq!(
            plan(&d, &o),
            Ok(vec![policy(access_policies::Change::Revoke {
                vault_id: ap_kv(),
                permissions: perms(&["get", "list"], &[])
            })])
        );
        // Already gone by hand: nothing to revoke.
        o.grants.access_policies.entries = vec![];
        assert_eq!(plan(&d, &o), Ok(vec![]));
    }

    /// Plans until nothing is left, assuming each write did what it says (as `converge` does): the number of
    /// rounds it takes and the final observation.
    fn settle(d: &DesiredAzure, mut o: ObservedAzure) -> (usize, ObservedAzure) {
        for round in 0..4 {
            let actions = plan(d, &o).expect("plannable");
            if actions.is_empty() {
                return (round, o);
            }
            for a in &actions {
                assume(&mut o, a, Some(PRINCIPAL));
            }
        }
        panic!("no convergence in 4 rounds: {o:?}");
    }

    #[test]
    fn assuming_each_write_succeeded_settles_without_reading_azure_again() {
        // From nothing: the identity, then everything that names its principal; two rounds.
        let mut d = desired(&[SECRETS_USER, READER]);
        d.grants.access_policies.wanted = vec![(ap_kv(), perms(&["get"], &[]))];
        let nothing_granted = access_policies::Observed { entries: vec![(ap_kv(), Permissions::default())] };
        let (rounds, o) = settle(
            &d,
            ObservedAzure {
                grants: grants::Observed { access_policies: nothing_granted, ..grants::Observed::default() },
                ..ObservedAzure::default()
            },
        );
        assert_eq!(rounds, 2);
        assert_eq!(
            (o.fic_count, o.grants.role_assignments.len(), o.grants.access_policies.on(&ap_kv())),
            (1, 2, perms(&["get"], &[]))
        );
        assert_eq!(o.identity.map(|i| i.principal_id), Some(PRINCIPAL.to_string()));
        // From an edit: one round, and what it assumed is what a fresh observation would say.
        let before = converged(&d, &[SECRETS_USER, READER]);
        let mut edited = d.clone();
        edited.grants.role_assignments.wanted =
            vec![role_assignments::Wanted { scope: kv(), role_guid: READER.into() }];
        edited.grants.access_policies =
            access_policies::Desired { wanted: vec![], held: d.grants.access_policies.wanted.clone() };
        let (rounds, o) = settle(&edited, before);
        assert_eq!(rounds, 1);
        assert_eq!(
            o.grants.role_assignments.iter().map(|ra| ra.name.clone()).collect::<Vec<_>>(),
            [naming::role_assignment_name(&kv(), READER, PRINCIPAL).to_string()]
        );
        assert!(o.grants.access_policies.on(&ap_kv()).is_empty());
    }
}
