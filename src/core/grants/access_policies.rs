//! Key Vault access policies, for vaults that do not use Azure RBAC: the identity's entry on each vault holds
//! the permissions its reader roles stand for. An entry carries no name that marks it as idbind's, so idbind
//! takes back only what the binding's status says it granted (or, for an identity idbind manages, what its
//! spec would have granted), and never an entry's other permissions.

use std::fmt;

use crate::{
    api::binding::{AccessPolicyStatus, WorkloadIdentityBindingStatus},
    core::{resource_id::ResourceId, roles::Permissions},
};

/// What the binding wants, and what it held.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// (vault resource id, permissions) wanted.
    pub wanted: Vec<(ResourceId, Permissions)>,
    /// What the binding's status says idbind granted, so permissions the spec no longer asks for (or a vault
    /// it no longer names) are revoked, and nothing else is.
    pub held: Vec<(ResourceId, Permissions)>,
}

impl Desired {
    /// Nothing wanted: what a binding letting an identity go may have granted (`granted`, e.g. what its spec
    /// would have, in case the grant landed and the status write did not) and what its status says it held.
    pub fn letting_go(granted: Vec<(ResourceId, Permissions)>, held: Vec<(ResourceId, Permissions)>) -> Self {
        Desired { wanted: granted, held }
    }

    /// Every vault whose entry matters: wanted or held.
    pub fn vaults(&self) -> Vec<&ResourceId> {
        let mut vaults: Vec<&ResourceId> = Vec::new();
        for (vault, _) in self.wanted.iter().chain(&self.held) {
            if !vaults.contains(&vault) {
                vaults.push(vault);
            }
        }
        vaults
    }

    fn wanted_on(&self, vault: &ResourceId) -> Permissions {
        let wanted = self.wanted.iter().filter(|(v, _)| v == vault);
        wanted.fold(Permissions::default(), |acc, (_, p)| acc.union(p))
    }
}

/// The identity's access-policy permissions on each vault of [`Desired::vaults`] (empty when it has no entry
/// there, or the vault is gone).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub entries: Vec<(ResourceId, Permissions)>,
}

impl Observed {
    /// The identity's permissions on `vault`.
    pub fn on(&self, vault: &ResourceId) -> Permissions {
        self.entries.iter().find(|(v, _)| v == vault).map(|(_, p)| p.clone()).unwrap_or_default()
    }

    /// The same vaults, holding nothing: a new principal's.
    pub fn emptied(&self) -> Self {
        Observed { entries: self.entries.iter().map(|(v, _)| (v.clone(), Permissions::default())).collect() }
    }
}

/// One write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Adds these permissions to the identity's entry on the vault (Key Vault's `add` merges, so the entry's
    /// other permissions stay).
    Grant { vault_id: ResourceId, permissions: Permissions },
    /// Takes these permissions away (Key Vault drops an entry left empty).
    Revoke { vault_id: ResourceId, permissions: Permissions },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, vault_id, p) = match self {
            Change::Grant { vault_id, permissions } => ("grant", vault_id, permissions),
            Change::Revoke { vault_id, permissions } => ("revoke", vault_id, permissions),
        };
        let listed = [("secrets", &p.secrets), ("keys", &p.keys), ("certificates", &p.certificates)]
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| format!("{k}: {}", s.iter().cloned().collect::<Vec<_>>().join(",")))
            .collect::<Vec<_>>()
            .join("; ");
        write!(f, "{verb} access policy on {vault_id}: {listed}")
    }
}

impl Change {
    /// Whether it only takes access away.
    pub fn takes_away(&self) -> bool {
        matches!(self, Change::Revoke { .. })
    }

    /// What a revoke removed, for the audit trail: the principal's entry on the vault.
    pub fn removed(&self, principal: &str) -> Option<String> {
        match self {
            Change::Revoke { vault_id, .. } => Some(format!("{vault_id}/accessPolicies/{principal}")),
            Change::Grant { .. } => None,
        }
    }
}

/// Grants what the wanted access policies miss; revokes what idbind held and is no longer wanted, and only
/// that.
pub fn plan(desired: &Desired, observed: &Observed) -> Vec<Change> {
    let grants = desired.wanted.iter().filter_map(|(vault_id, want)| {
        let missing = want.minus(&observed.on(vault_id));
        (!missing.is_empty()).then(|| Change::Grant { vault_id: vault_id.clone(), permissions: missing })
    });
    let revokes = desired.held.iter().filter_map(|(vault_id, held)| {
        let extra = held.minus(&desired.wanted_on(vault_id)).intersect(&observed.on(vault_id));
        (!extra.is_empty()).then(|| Change::Revoke { vault_id: vault_id.clone(), permissions: extra })
    });
    grants.chain(revokes).collect()
}

/// Per vault, the permissions idbind granted (wanted or held) that the identity still has: what goes when the
/// binding lets the identity go.
pub fn release(desired: &Desired, observed: &Observed) -> Vec<Change> {
    let all = || desired.wanted.iter().chain(&desired.held);
    let mut revokes = Vec::new();
    for vault in desired.vaults() {
        let granted =
            all().filter(|(v, _)| v == vault).fold(Permissions::default(), |acc, (_, p)| acc.union(p));
        let still = granted.intersect(&observed.on(vault));
        if !still.is_empty() {
            revokes.push(Change::Revoke { vault_id: vault.clone(), permissions: still });
        }
    }
    revokes
}

/// What the vaults hold once `change` succeeded.
pub fn assume(observed: &mut Observed, change: &Change) {
    let (vault_id, now) = match change {
        Change::Grant { vault_id, permissions } => (vault_id, observed.on(vault_id).union(permissions)),
        Change::Revoke { vault_id, permissions } => (vault_id, observed.on(vault_id).minus(permissions)),
    };
    observed.entries.retain(|(v, _)| v != vault_id);
    observed.entries.push((vault_id.clone(), now));
}

/// The status's record of what the binding holds on `vault`.
pub fn status(vault: &ResourceId, p: &Permissions) -> AccessPolicyStatus {
    AccessPolicyStatus {
        vault_id: vault.to_string(),
        secrets: p.secrets.iter().cloned().collect(),
        keys: p.keys.iter().cloned().collect(),
        certificates: p.certificates.iter().cloned().collect(),
    }
}

/// The access policies a status says idbind granted (entries whose vault id does not parse grant nothing).
pub fn held(status: Option<&WorkloadIdentityBindingStatus>) -> Vec<(ResourceId, Permissions)> {
    let set = |v: &[String]| v.iter().cloned().collect();
    let held = status.map(|s| s.access_policies.as_slice()).unwrap_or_default();
    held.iter()
        .filter_map(|a| {
            let vault = ResourceId::parse(&a.vault_id).ok()?;
            let permissions = Permissions {
                secrets: set(&a.secrets),
                keys: set(&a.keys),
                certificates: set(&a.certificates),
            };
            Some((vault, permissions))
        })
        .collect()
}
