//! What a binding's identity is granted, one module per kind of grant. Each kind owns its part of the
//! pipeline: what the binding wants (`Desired`), what Azure shows (`Observed`), the writes that converge one
//! to the other (`Change`, `plan`), what a write made true (`assume`), what goes when the binding lets the
//! identity go (`release`), and the status's record of it (`status`). This module only lists the kinds: the
//! planner, removal and the Azure adapter reach every kind through [`Desired`], [`Observed`] and [`Change`].
//!
//! A new kind of grant: a module here, a field in each of the three types below and an arm in each `match`
//! (the compiler lists them), its calls in `azure::grants`, and the simulator (ARCHITECTURE.md has the
//! recipe).

pub mod access_policies;
pub mod role_assignments;

use std::fmt;

/// What the binding wants granted, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    pub role_assignments: role_assignments::Desired,
    pub access_policies: access_policies::Desired,
}

/// What Azure shows the identity's principal holds, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub role_assignments: Vec<role_assignments::Observed>,
    pub access_policies: access_policies::Observed,
}

impl Observed {
    /// The same places, holding nothing: what a new principal holds.
    pub fn emptied(&self) -> Self {
        Observed { role_assignments: Vec::new(), access_policies: self.access_policies.emptied() }
    }
}

/// One write of a grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    RoleAssignment(role_assignments::Change),
    AccessPolicy(access_policies::Change),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::RoleAssignment(c) => c.fmt(f),
            Change::AccessPolicy(c) => c.fmt(f),
        }
    }
}

impl Change {
    /// Whether it only takes access away (a revocation may make it; nothing else is allowed then).
    pub fn takes_away(&self) -> bool {
        match self {
            Change::RoleAssignment(c) => c.takes_away(),
            Change::AccessPolicy(c) => c.takes_away(),
        }
    }

    /// What a removal deleted, for the audit trail (`None` for a write that adds).
    pub fn removed(&self, principal: &str) -> Option<String> {
        match self {
            Change::RoleAssignment(c) => c.removed(),
            Change::AccessPolicy(c) => c.removed(principal),
        }
    }
}

/// The writes that bring what `principal` holds to what `desired` wants, kind after kind.
pub fn plan(desired: &Desired, observed: &Observed, principal: &str) -> Vec<Change> {
    let role_assignments =
        role_assignments::plan(&desired.role_assignments, &observed.role_assignments, principal);
    let access_policies = access_policies::plan(&desired.access_policies, &observed.access_policies);
    (role_assignments.into_iter().map(Change::RoleAssignment))
        .chain(access_policies.into_iter().map(Change::AccessPolicy))
        .collect()
}

/// Everything idbind granted `principal` that Azure still shows: what goes when the binding lets the identity
/// go.
pub fn release(desired: &Desired, observed: &Observed, principal: &str) -> Vec<Change> {
    let role_assignments = role_assignments::release(&observed.role_assignments, principal);
    let access_policies = access_policies::release(&desired.access_policies, &observed.access_policies);
    (role_assignments.into_iter().map(Change::RoleAssignment))
        .chain(access_policies.into_iter().map(Change::AccessPolicy))
        .collect()
}

/// What Azure holds once `change` succeeded.
pub fn assume(observed: &mut Observed, change: &Change) {
    match change {
        Change::RoleAssignment(c) => role_assignments::assume(&mut observed.role_assignments, c),
        Change::AccessPolicy(c) => access_policies::assume(&mut observed.access_policies, c),
    }
}
