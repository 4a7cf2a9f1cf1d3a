//! What a binding removes through an identity when it lets that identity go (its deletion, a rename, a move
//! to another identity), planned like writes: [`plan`] returns the deletes in the order that leaves nothing
//! orphaned, decided from what Azure shows alone. The binding's status only says where to look: whoever can
//! write `workloadidentitybindings/status` could otherwise point a binding at another binding's identity and
//! have idbind delete that binding's access.

use super::{
    grants,
    plan::{Action, Federation, ObservedAzure, Owner},
    resource_id::ResourceId,
};

/// A binding letting an identity go: everything removal needs to know, and where to look for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub owner: Owner,
    /// The identity let go.
    pub identity: ResourceId,
    /// Whether the binding had idbind create it (as opposed to bringing it).
    pub managed: bool,
    /// The binding's federated credential.
    pub federation: Federation,
    /// Nothing is wanted: only where the binding's grants may be, and what it held.
    pub grants: grants::Desired,
    /// The client id of the identity idbind itself signs in as.
    pub operator_client_id: Option<String>,
}

/// What may go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Removal {
    /// The role assignments idbind named for the identity's principal, and the access-policy permissions
    /// idbind granted it.
    grants: bool,
    /// The binding's own federated credential (by name, trusting a ServiceAccount of the binding's
    /// namespace).
    federated_credential: bool,
    /// The identity itself.
    identity: bool,
}

/// The deletes that let the identity go, in the order that leaves nothing orphaned: grants first (deleting
/// the identity first would strand role assignments as "Identity not found", counting against the
/// subscription's limit), then the binding's federated credential, then the identity. `principal_shared`:
/// another binding brings the identity too. What goes is decided from the identity as Azure shows it:
/// - removing the binding's own federated credential only takes access away from its own namespace, so it
///   goes from any identity that carries it;
/// - an identity whose ownership tags say it is this binding's (exact names, this binding's UID) goes with
///   its grants, when the binding had idbind create it;
/// - on any other identity (a brought one), grants go only if the binding's own federated credential is there
///   (so the binding did federate it) and no other binding brings the identity (its grants may be that
///   binding's); the identity itself is never idbind's to delete;
/// - the identity idbind itself signs in as loses nothing but the binding's federated credential.
pub fn plan(release: &Release, observed: &ObservedAzure, principal_shared: bool) -> Vec<Action> {
    let Some(identity) = &observed.identity else {
        return Vec::new();
    };
    let may = removal(release, observed, principal_shared);
    let mut actions: Vec<Action> = Vec::new();
    if may.grants {
        let grants = grants::release(&release.grants, &observed.grants, &identity.principal_id);
        actions.extend(grants.into_iter().map(Action::Grant));
    }
    if may.federated_credential {
        actions.push(Action::DeleteFederatedCredential { name: release.federation.name.clone() });
    }
    if may.identity {
        actions.push(Action::DeleteIdentity { resource_id: release.identity.clone() });
    }
    actions
}

fn removal(release: &Release, observed: &ObservedAzure, principal_shared: bool) -> Removal {
    let Some(identity) = &observed.identity else {
        return Removal::default();
    };
    let own_subject = format!("system:serviceaccount:{}:", release.owner.namespace);
    let federated_credential = observed.fic.as_ref().is_some_and(|f| f.subject.starts_with(&own_subject));
    let is_operator =
        release.operator_client_id.as_ref().is_some_and(|own| own.eq_ignore_ascii_case(&identity.client_id));
    let owned = release.managed && release.owner.owns(&identity.tags);
    let (grants, delete) = if is_operator {
        (false, false)
    } else if owned {
        (true, true)
    } else {
        (federated_credential && !principal_shared, false)
    };
    Removal { grants, federated_credential, identity: delete }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        grants::{access_policies, role_assignments},
        naming,
        plan::{ObservedFic, ObservedIdentity},
        resource_id::{KEY_VAULT, ROLE_ASSIGNMENT},
        roles::Permissions,
    };

    const OPERATOR: &str = "c11d";
    const PRINCIPAL: &str = "p";
    const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";

    fn owner(namespace: &str, binding: &str, uid: &str) -> Owner {
        Owner {
            cluster: "aks1".into(),
            namespace: namespace.into(),
            binding: binding.into(),
            uid: Some(uid.into()),
        }
    }

    fn vault() -> ResourceId {
        ResourceId::resource_group_scope("s", "rg-kv").provider_resource(KEY_VAULT, "kv")
    }

    fn secrets(names: &[&str]) -> Permissions {
        Permissions { secrets: names.iter().map(ToString::to_string).collect(), ..Permissions::default() }
    }

    fn release(managed: bool) -> Release {
        Release {
            owner: owner("shop", "orders", "uid-1"),
            identity: ResourceId::resource_group_scope("s", "rg")
                .provider_resource(crate::core::resource_id::USER_ASSIGNED_IDENTITY, "id1"),
            managed,
            federation: Federation {
                name: "fic".into(),
                issuer: "https://issuer/".into(),
                subject: "system:serviceaccount:shop:orders".into(),
            },
            grants: grants::Desired {
                role_assignments: role_assignments::Desired::letting_go(Vec::new()),
                access_policies: access_policies::Desired::letting_go(
                    Vec::new(),
                    vec![(vault(), secrets(&["get"]))],
                ),
            },
            operator_client_id: Some(OPERATOR.into()),
        }
    }

    /// An assignment for the principal on the vault, named by idbind (`ours`) or by someone else.
    fn assignment(ours: bool) -> role_assignments::Observed {
        let name = if ours {
            naming::role_assignment_name(&vault(), SECRETS_USER, PRINCIPAL).to_string()
        } else {
            "0b7c3d6e-0000-4000-8000-000000000001".to_string()
        };
        role_assignments::Observed {
            id: vault().provider_resource(ROLE_ASSIGNMENT, &name),
            name,
            scope: vault(),
            role_definition_id: SECRETS_USER.into(),
        }
    }

    /// An identity tagged for `tagged_for` (none: untagged), with a FIC of our name trusting `fic_subject`,
    /// one assignment idbind made and one someone else did, and an access-policy entry with more than the
    /// binding held.
    fn observed(tagged_for: Option<Owner>, fic_subject: Option<&str>, client_id: &str) -> ObservedAzure {
        let tags = tagged_for
            .map(|o| o.tags().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            .unwrap_or_default();
        ObservedAzure {
            identity: Some(ObservedIdentity {
                location: "westeurope".into(),
                tags,
                client_id: client_id.into(),
                principal_id: PRINCIPAL.into(),
            }),
            fic: fic_subject.map(|subject| ObservedFic {
                issuer: "https://issuer/".into(),
                subject: subject.into(),
                audiences: Vec::new(),
            }),
            fic_count: usize::from(fic_subject.is_some()),
            fic_duplicate_of: None,
            grants: grants::Observed {
                role_assignments: vec![assignment(true), assignment(false)],
                access_policies: access_policies::Observed {
                    entries: vec![(vault(), secrets(&["get", "list"]))],
                },
            },
        }
    }

    fn nothing() -> Vec<Action> {
        Vec::new()
    }

    /// Only the assignment idbind named, and only the permission the binding held.
    fn grants() -> Vec<Action> {
        vec![
            Action::Grant(grants::Change::RoleAssignment(role_assignments::Change::Delete {
                id: assignment(true).id,
            })),
            Action::Grant(grants::Change::AccessPolicy(access_policies::Change::Revoke {
                vault_id: vault(),
                permissions: secrets(&["get"]),
            })),
        ]
    }

    fn fic() -> Vec<Action> {
        vec![Action::DeleteFederatedCredential { name: "fic".into() }]
    }

    fn identity() -> Vec<Action> {
        vec![Action::DeleteIdentity { resource_id: release(true).identity }]
    }

    /// (case, the identity was managed, what Azure shows, another binding brings it, what goes).
    type Case = (&'static str, bool, ObservedAzure, bool, Vec<Action>);

    fn cases() -> Vec<Case> {
        let ours = || Some(owner("shop", "orders", "uid-1"));
        let own_sa = Some("system:serviceaccount:shop:orders");
        let everything = [grants(), fic(), identity()].concat();
        let other_namespace = Some("system:serviceaccount:team-b:app");
        vec![
            ("gone already", true, ObservedAzure::default(), false, nothing()),
            ("our managed identity", true, observed(ours(), own_sa, "c1"), false, everything),
            (
                "our identity, its FIC gone",
                true,
                observed(ours(), None, "c1"),
                false,
                [grants(), identity()].concat(),
            ),
            (
                "a status naming another binding's identity as managed",
                true,
                observed(Some(owner("team-b", "payments", "uid-2")), None, "c2"),
                false,
                nothing(),
            ),
            (
                "an earlier binding's identity of the same name",
                true,
                observed(Some(owner("shop", "orders", "uid-0")), None, "c1"),
                false,
                nothing(),
            ),
            ("an untagged identity named as managed", true, observed(None, None, "c3"), false, nothing()),
            (
                "a brought identity we federated",
                false,
                observed(None, own_sa, "c3"),
                false,
                [grants(), fic()].concat(),
            ),
            ("a brought identity another binding brings", false, observed(None, own_sa, "c3"), true, fic()),
            ("a brought identity we never federated", false, observed(None, None, "c3"), false, nothing()),
            (
                "our FIC's name trusting another namespace",
                false,
                observed(None, other_namespace, "c3"),
                false,
                nothing(),
            ),
            ("the operator's own identity", false, observed(None, own_sa, OPERATOR), false, fic()),
            ("the operator's own, named as managed", true, observed(ours(), own_sa, OPERATOR), false, fic()),
        ]
    }

    #[test]
    fn only_what_azure_shows_is_the_bindings_goes_grants_first_and_the_identity_last() {
        for (case, managed, observed, shared, want) in cases() {
            assert_eq!(plan(&release(managed), &observed, shared), want, "{case}");
        }
    }

    #[test]
    fn assuming_the_removal_leaves_nothing_of_the_bindings() {
        let ours = Some(owner("shop", "orders", "uid-1"));
        let mut o = observed(ours, Some("system:serviceaccount:shop:orders"), "c1");
        let r = release(true);
        for action in plan(&r, &o, false).iter().filter(|a| !matches!(a, Action::DeleteIdentity { .. })) {
            crate::core::plan::assume(&mut o, action, None);
        }
        assert_eq!(o.fic, None);
        assert_eq!(o.grants.role_assignments, vec![assignment(false)], "someone else's assignment stays");
        assert_eq!(
            o.grants.access_policies.on(&vault()),
            secrets(&["list"]),
            "what idbind held goes, no more"
        );
        assert_eq!(plan(&r, &o, false), identity(), "only the identity is left to delete");
    }
}
