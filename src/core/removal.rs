//! What a binding may remove through an identity when it lets that identity go (its deletion, a rename, a
//! move to another identity), decided from what Azure shows alone. The binding's status only says where to
//! look: whoever can write `workloadidentitybindings/status` could otherwise point a binding at another
//! binding's identity and have idbind delete that binding's access.

use super::plan::{DesiredAzure, ObservedAzure};

/// What may go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// The role assignments idbind named for the identity's principal, and the access-policy permissions
    /// idbind granted it.
    pub grants: bool,
    /// The binding's own federated credential (by name, trusting a ServiceAccount of the binding's
    /// namespace).
    pub federated_credential: bool,
    /// The identity itself.
    pub identity: bool,
}

/// Decides [`Removal`] from the identity as Azure shows it:
/// - removing the binding's own federated credential only takes access away from its own namespace, so it
///   goes from any identity that carries it;
/// - an identity whose ownership tags say it is this binding's (exact names, this binding's UID) goes with
///   its grants, when the binding wants it gone as an identity idbind manages;
/// - on any other identity (a brought one), grants go only if the binding's own federated credential is there
///   (so the binding did federate it) and no other binding brings the identity (its grants may be that
///   binding's); the identity itself is never idbind's to delete;
/// - the identity idbind itself signs in as loses nothing but the binding's federated credential.
pub fn removal(desired: &DesiredAzure, observed: &ObservedAzure, principal_shared: bool) -> Removal {
    let Some(identity) = &observed.identity else {
        return Removal::default();
    };
    let own_subject = format!("system:serviceaccount:{}:", desired.owner.namespace);
    let federated_credential = observed.fic.as_ref().is_some_and(|f| f.subject.starts_with(&own_subject));
    let is_operator =
        desired.operator_client_id.as_ref().is_some_and(|own| own.eq_ignore_ascii_case(&identity.client_id));
    let owned = desired.managed_identity.is_some() && desired.owner.owns(&identity.tags);
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
        plan::{ManagedIdentity, ObservedFic, ObservedIdentity, Owner},
        resource_id::ResourceId,
    };

    const OPERATOR: &str = "c11d";

    fn owner(namespace: &str, binding: &str, uid: &str) -> Owner {
        Owner {
            cluster: "aks1".into(),
            namespace: namespace.into(),
            binding: binding.into(),
            uid: Some(uid.into()),
        }
    }

    fn desired(managed: bool) -> DesiredAzure {
        let id: ResourceId =
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
                .parse()
                .unwrap_or_else(|e| panic!("{e}"));
        DesiredAzure {
            owner: owner("shop", "orders", "uid-1"),
            managed_identity: managed.then(|| ManagedIdentity {
                resource_id: id,
                location: String::new(),
                tags: Default::default(),
            }),
            fic_name: "fic".into(),
            issuer: "https://issuer/".into(),
            subject: String::new(),
            role_assignments: Vec::new(),
            access_policies: Vec::new(),
            held_access_policies: Vec::new(),
            assignment_subscriptions: Vec::new(),
            operator_client_id: Some(OPERATOR.into()),
        }
    }

    /// An identity tagged for `tagged_for` (none: untagged), with a FIC of our name trusting `fic_subject`.
    fn observed(tagged_for: Option<Owner>, fic_subject: Option<&str>, client_id: &str) -> ObservedAzure {
        let tags = tagged_for
            .map(|o| o.tags().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
            .unwrap_or_default();
        ObservedAzure {
            identity: Some(ObservedIdentity {
                location: "westeurope".into(),
                tags,
                client_id: client_id.into(),
                principal_id: "p".into(),
            }),
            fic: fic_subject.map(|subject| ObservedFic {
                issuer: "https://issuer/".into(),
                subject: subject.into(),
                audiences: Vec::new(),
            }),
            fic_count: usize::from(fic_subject.is_some()),
            ..ObservedAzure::default()
        }
    }

    const NOTHING: Removal = Removal { grants: false, federated_credential: false, identity: false };
    const FIC: Removal = Removal { grants: false, federated_credential: true, identity: false };
    const GRANTS_AND_FIC: Removal = Removal { grants: true, federated_credential: true, identity: false };
    const EVERYTHING: Removal = Removal { grants: true, federated_credential: true, identity: true };

    #[test]
    fn only_what_azure_shows_is_the_bindings_goes() {
        let ours = || Some(owner("shop", "orders", "uid-1"));
        let own_sa = Some("system:serviceaccount:shop:orders");
        let table: Vec<(&str, bool, ObservedAzure, bool, Removal)> = vec![
            ("gone already", true, ObservedAzure::default(), false, NOTHING),
            ("our managed identity", true, observed(ours(), own_sa, "c1"), false, EVERYTHING),
            (
                "our managed identity, its FIC already gone",
                true,
                observed(ours(), None, "c1"),
                false,
                Removal { federated_credential: false, ..EVERYTHING },
            ),
            (
                "a status naming another binding's identity as managed",
                true,
                observed(Some(owner("team-b", "payments", "uid-2")), None, "c2"),
                false,
                NOTHING,
            ),
            (
                "an earlier binding's identity of the same name",
                true,
                observed(Some(owner("shop", "orders", "uid-0")), None, "c1"),
                false,
                NOTHING,
            ),
            ("an untagged identity named as managed", true, observed(None, None, "c3"), false, NOTHING),
            ("a brought identity we federated", false, observed(None, own_sa, "c3"), false, GRANTS_AND_FIC),
            (
                "a brought identity another binding also brings",
                false,
                observed(None, own_sa, "c3"),
                true,
                FIC,
            ),
            ("a brought identity we never federated", false, observed(None, None, "c3"), false, NOTHING),
            (
                "a FIC of our name trusting another namespace",
                false,
                observed(None, Some("system:serviceaccount:team-b:app"), "c3"),
                false,
                NOTHING,
            ),
            ("the operator's own identity", false, observed(None, own_sa, OPERATOR), false, FIC),
            (
                "the operator's own identity, named as managed",
                true,
                observed(ours(), own_sa, OPERATOR),
                false,
                FIC,
            ),
        ];
        for (case, managed, observed, shared, want) in table {
            assert_eq!(removal(&desired(managed), &observed, shared), want, "{case}");
        }
    }
}
