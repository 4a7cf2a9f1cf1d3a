//! Azure RBAC role assignments: one per (scope, role) the binding wants, for the identity's principal. idbind
//! names each by a UUIDv5 of its scope, role and principal ([`naming::role_assignment_name`]), so the name is
//! the proof that an assignment is idbind's: one someone else made for the principal is never touched.

use std::fmt;

use crate::{
    api::binding::{RoleAssignmentStatus, WorkloadIdentityBindingStatus},
    core::{
        naming,
        resource_id::{ROLE_ASSIGNMENT, ROLE_DEFINITION, ResourceId},
        roles,
    },
};

/// One role assignment the binding wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub scope: ResourceId,
    pub role_guid: String,
}

/// What the binding wants, and where else to look for what it made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub wanted: Vec<Wanted>,
    /// Subscriptions (beyond the identity's and those of `wanted`) where the principal's role assignments are
    /// looked for too: where the status says the binding held some, and, when a binding is deleted, where its
    /// spec may have made some. Without them an assignment in another subscription that the spec no longer
    /// names would never be seen, so never removed. Only where to look: what is removed is what Azure shows.
    pub subscriptions: Vec<String>,
}

impl Desired {
    /// Nothing wanted; looked for in `subscriptions` (what a binding letting an identity go may have made).
    pub fn letting_go(subscriptions: Vec<String>) -> Self {
        Desired { wanted: Vec::new(), subscriptions }
    }
}

/// A role assignment of the identity's principal, as ARM lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub id: ResourceId,
    pub name: String,
    pub scope: ResourceId,
    /// The role definition's id, or only its GUID (what idbind assumes after its own writes).
    pub role_definition_id: String,
}

impl Observed {
    /// Whether idbind made it for `principal_id`: its name is the one idbind derives from its own scope, role
    /// and principal.
    pub fn is_ours(&self, principal_id: &str) -> bool {
        naming::role_assignment_name(&self.scope, &self.role_definition_id, principal_id)
            .to_string()
            .eq_ignore_ascii_case(&self.name)
    }
}

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Always with principalType ServicePrincipal, so a fresh principal is not PrincipalNotFound.
    Create {
        scope: ResourceId,
        name: String,
        role_definition_guid: String,
    },
    Delete {
        id: ResourceId,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create { scope, name, role_definition_guid } => {
                let role = roles::BUILTIN_ROLES
                    .iter()
                    .find(|r| r.guid.eq_ignore_ascii_case(role_definition_guid))
                    .map_or(role_definition_guid.clone(), |r| format!("{} ({role_definition_guid})", r.name));
                write!(f, "create role assignment {name}: {role} on {scope}")
            }
            Change::Delete { id } => write!(f, "delete role assignment {id}"),
        }
    }
}

impl Change {
    /// Whether it only takes access away.
    pub fn takes_away(&self) -> bool {
        matches!(self, Change::Delete { .. })
    }

    /// What a delete removed, for the audit trail.
    pub fn removed(&self) -> Option<String> {
        match self {
            Change::Delete { id } => Some(id.to_string()),
            Change::Create { .. } => None,
        }
    }
}

/// Creates for the wanted assignments that are missing; deletes for ours that are no longer wanted.
pub fn plan(desired: &Desired, observed: &[Observed], principal: &str) -> Vec<Change> {
    let wanted: Vec<(String, &Wanted)> = desired
        .wanted
        .iter()
        .map(|w| (naming::role_assignment_name(&w.scope, &w.role_guid, principal).to_string(), w))
        .collect();
    let exists = |name: &str| observed.iter().any(|ra| ra.name.eq_ignore_ascii_case(name));
    let is_wanted = |name: &str| wanted.iter().any(|(w, _)| w.eq_ignore_ascii_case(name));
    let creates = wanted.iter().filter(|(name, _)| !exists(name)).map(|(name, w)| Change::Create {
        scope: w.scope.clone(),
        name: name.clone(),
        role_definition_guid: w.role_guid.clone(),
    });
    let deletes = observed
        .iter()
        .filter(|ra| ra.is_ours(principal) && !is_wanted(&ra.name))
        .map(|ra| Change::Delete { id: ra.id.clone() });
    creates.chain(deletes).collect()
}

/// Every assignment idbind made for `principal`: what goes when the binding lets the identity go.
pub fn release(observed: &[Observed], principal: &str) -> Vec<Change> {
    observed
        .iter()
        .filter(|ra| ra.is_ours(principal))
        .map(|ra| Change::Delete { id: ra.id.clone() })
        .collect()
}

/// What ARM holds once `change` succeeded.
pub fn assume(observed: &mut Vec<Observed>, change: &Change) {
    match change {
        Change::Create { scope, name, role_definition_guid } => observed.push(Observed {
            id: scope.provider_resource(ROLE_ASSIGNMENT, name),
            name: name.clone(),
            scope: scope.clone(),
            role_definition_id: role_definition_guid.clone(),
        }),
        Change::Delete { id } => observed.retain(|ra| ra.id != *id),
    }
}

/// The status's record of an assignment the binding holds for `principal`, with the role as the user wrote
/// it.
pub fn status(wanted: &Wanted, written: &str, principal: &str) -> RoleAssignmentStatus {
    let name = naming::role_assignment_name(&wanted.scope, &wanted.role_guid, principal);
    let definition = wanted.scope.subscription().map(ResourceId::subscription_scope);
    RoleAssignmentStatus {
        id: wanted.scope.provider_resource(ROLE_ASSIGNMENT, &name.to_string()).to_string(),
        scope: wanted.scope.to_string(),
        role_definition_id: definition.map_or_else(
            || wanted.role_guid.clone(),
            |d| d.provider_resource(ROLE_DEFINITION, &wanted.role_guid).to_string(),
        ),
        role: Some(written.to_string()),
    }
}

/// The scopes of the role assignments a status says the binding held (entries that do not parse: none).
pub fn held_scopes(status: Option<&WorkloadIdentityBindingStatus>) -> impl Iterator<Item = ResourceId> + '_ {
    let held = status.map(|s| s.role_assignments.as_slice()).unwrap_or_default();
    held.iter().filter_map(|a| ResourceId::parse(&a.scope).ok())
}
