//! Azure RBAC as ARM and Key Vault evaluate it: a principal may perform an action at a scope when one of its
//! role assignments at that scope or above it has a role definition with a permission block that grants the
//! action (matched by `actions`, or `dataActions` for the data plane, and not by the same block's
//! `notActions`/`notDataActions`), and the assignment's condition, if it has one, is fulfilled
//! (`crate::arm::conditions`). Assignments add up; nothing here denies (no deny assignments). Group
//! membership is not modelled: a principal's own assignments count, and only those.
//!
//! ARM authorizes from the assignments as they are now: a new one works at the next request and a deleted one
//! stops at once, although Azure Resource Manager caches them for minutes (docs/azure.md#propagation). The
//! delay is modelled where idbind's correctness depends on it, in the Key Vault data plane
//! (`role_propagation_ms`, see `kv::auth`); for ARM it would only make a test of what a principal may or may
//! not do wait, or pass by timing.

use crate::arm::conditions::{self, Attributes, Context};
use crate::state::{RoleAssignment, RolePermission, State};

use super::{action_matches, scope_within};

/// Whether the request is for the control plane (`actions`) or the data plane (`dataActions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Control,
    Data,
}

/// What a condition sees of a request besides its action.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestAttributes<'a> {
    /// The role assignment a `roleAssignments/write` asks for.
    pub request: Option<&'a Attributes>,
    /// The role assignment a `roleAssignments/delete` removes.
    pub resource: Option<&'a Attributes>,
    /// A `roleAssignments/delete` of an assignment that does not exist: ARM answers 204 and removes nothing,
    /// so only the action is checked, not conditions on the assignment that is not there [UNVERIFIED: what
    /// ARM evaluates here is not documented].
    pub deletes_nothing: bool,
}

/// Whether `principal` may perform `action` at `scope` through one of the assignments `assignments` yields (a
/// subset of the state's, e.g. the effective ones).
pub fn permits<'s>(
    s: &'s State,
    assignments: impl IntoIterator<Item = &'s RoleAssignment>,
    principal: &str,
    plane: Plane,
    action: &str,
    scope: &str,
    attributes: &RequestAttributes<'_>,
) -> bool {
    assignments
        .into_iter()
        .filter(|a| a.principal_id.eq_ignore_ascii_case(principal) && scope_within(scope, &a.scope))
        .any(|a| {
            let Some(definition) = s.role_definitions.get(&a.role_definition_guid) else {
                return false;
            };
            definition.permissions.iter().any(|p| grants(p, plane, action))
                && condition_fulfilled(a, action, attributes)
        })
}

/// Whether `principal` may perform the ARM `action` at `scope`, from the state's role assignments as they are
/// now.
pub fn arm_permits(
    s: &State,
    principal: &str,
    action: &str,
    scope: &str,
    attributes: &RequestAttributes<'_>,
) -> bool {
    permits(s, s.role_assignments_of(principal), principal, Plane::Control, action, scope, attributes)
}

fn grants(p: &RolePermission, plane: Plane, action: &str) -> bool {
    let (allowed, excluded) = match plane {
        Plane::Control => (&p.actions, &p.not_actions),
        Plane::Data => (&p.data_actions, &p.not_data_actions),
    };
    allowed.iter().any(|pattern| action_matches(pattern, action))
        && !excluded.iter().any(|pattern| action_matches(pattern, action))
}

fn condition_fulfilled(a: &RoleAssignment, action: &str, attributes: &RequestAttributes<'_>) -> bool {
    let Some(text) = a.condition.as_deref().filter(|c| !c.trim().is_empty()) else {
        return true;
    };
    if attributes.deletes_nothing {
        return true;
    }
    let cx = Context { action, request: attributes.request, resource: attributes.resource };
    // Stored conditions were checked when they were written (`RoleAssignments_Create`, seeds); one that does
    // not parse (a state file from elsewhere) authorizes nothing.
    match a.parsed_condition.get(text) {
        Some(Ok(condition)) => condition.allows(&cx),
        Some(Err(_)) => false,
        None => conditions::parse(text).is_ok_and(|condition| condition.allows(&cx)),
    }
}

/// The condition attributes of a role assignment as it is stored.
pub fn attributes_of(a: &RoleAssignment) -> Attributes {
    Attributes {
        role_definition_id: Some(a.role_definition_guid.clone()),
        principal_id: Some(a.principal_id.clone()),
        principal_type: Some(a.principal_type.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::key;

    const OPERATOR: &str = "0a0a0a0a-0000-4000-8000-000000000001";
    const SUB: &str = "/subscriptions/s";
    const RG: &str = "/subscriptions/s/resourceGroups/rg";
    const KV: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";
    const RBAC_ADMIN: &str = "f58310d9-a9f6-439a-9e8d-f62e7b41a168";
    const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
    const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
    const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    const WRITE: &str = "Microsoft.Authorization/roleAssignments/write";

    fn state(assignments: &[(&str, &str, Option<String>)]) -> State {
        let mut s = State::default();
        for role in crate::arm::roles::builtin_role_definitions() {
            s.role_definitions.insert(key(&role.name), role);
        }
        for (i, (role, scope, condition)) in assignments.iter().enumerate() {
            let name = format!("00000000-0000-4000-8000-{i:012}");
            s.insert_role_assignment(
                name.clone(),
                RoleAssignment {
                    name,
                    scope: (*scope).into(),
                    role_definition_guid: (*role).into(),
                    principal_id: OPERATOR.into(),
                    principal_type: "ServicePrincipal".into(),
                    condition: condition.clone(),
                    ..Default::default()
                },
            );
        }
        s
    }

    fn may(s: &State, action: &str, scope: &str) -> bool {
        arm_permits(s, OPERATOR, action, scope, &RequestAttributes::default())
    }

    #[test]
    fn assignments_grant_their_actions_at_and_below_their_scope() {
        let s = state(&[(RBAC_ADMIN, RG, None)]);
        assert!(may(&s, WRITE, &format!("{KV}/providers/Microsoft.Authorization/roleAssignments/x")));
        assert!(may(&s, "Microsoft.KeyVault/vaults/read", KV), "*/read at the group covers the vault");
        assert!(!may(&s, "Microsoft.KeyVault/vaults/delete", KV), "not an action of the role");
        assert!(!may(&s, "Microsoft.Authorization/roleAssignments/read", SUB), "above the assignment");
        assert!(!may(&s, "Microsoft.KeyVault/vaults/read", "/subscriptions/s/resourceGroups/rg2"));
        assert!(
            !arm_permits(
                &s,
                "someone-else",
                "Microsoft.KeyVault/vaults/read",
                KV,
                &RequestAttributes::default()
            ),
            "another principal's assignment"
        );
        assert!(!may(&State::default(), "Microsoft.KeyVault/vaults/read", KV), "no assignment, no access");
    }

    #[test]
    fn each_principals_assignments_are_found_through_the_index_as_by_a_full_scan() {
        let mut s = State::default();
        let a = |name: &str, principal: &str| RoleAssignment {
            name: name.into(),
            principal_id: principal.into(),
            ..Default::default()
        };
        let names = |s: &State, p: &str| {
            let mut v: Vec<String> = s.role_assignments_of(p).map(|a| a.name.clone()).collect();
            v.sort();
            v
        };
        s.insert_role_assignment("n1".into(), a("n1", "P-1"));
        s.insert_role_assignment("n2".into(), a("n2", "p-1"));
        s.insert_role_assignment("n3".into(), a("n3", "p-2"));
        assert_eq!(names(&s, "P-1"), ["n1", "n2"], "principal ids ignore case");
        // Replacing an assignment under the same name moves it to its new principal.
        s.insert_role_assignment("n2".into(), a("n2", "p-2"));
        assert_eq!(
            (names(&s, "p-1"), names(&s, "p-2")),
            (vec!["n1".to_owned()], vec!["n2".into(), "n3".into()])
        );
        assert_eq!(s.remove_role_assignment("n3").map(|a| a.name), Some("n3".into()));
        assert_eq!(s.remove_role_assignment("n3"), None);
        assert_eq!(names(&s, "p-2"), ["n2"]);
        // A change made around the index is still seen (a full scan), and `reindex` repairs the index.
        s.role_assignments.insert("n4".into(), a("n4", "p-2"));
        assert_eq!(names(&s, "p-2"), ["n2", "n4"]);
        let mut loaded: State = serde_json::from_value(serde_json::to_value(&s).expect("state serializes"))
            .expect("state deserializes");
        loaded.reindex();
        assert_eq!((names(&loaded, "p-1"), names(&loaded, "p-2")), (names(&s, "p-1"), names(&s, "p-2")));
        assert_eq!(names(&loaded, "nobody"), Vec::<String>::new());
    }

    #[test]
    fn not_actions_take_away_from_their_own_role_only() {
        let contributor = state(&[(CONTRIBUTOR, SUB, None)]);
        assert!(may(&contributor, "Microsoft.KeyVault/vaults/delete", KV));
        assert!(
            !may(&contributor, WRITE, KV),
            "Contributor's notActions exclude Microsoft.Authorization/*/Write"
        );
        let both = state(&[(CONTRIBUTOR, SUB, None), (RBAC_ADMIN, KV, None)]);
        assert!(may(&both, WRITE, KV), "another role grants what one role's notActions exclude");
    }

    #[test]
    fn conditions_limit_what_the_assignment_grants() {
        let condition = format!(
            "((!(ActionMatches{{'{WRITE}'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] \
             ForAnyOfAnyValues:GuidEquals {{{SECRETS_USER}}}))"
        );
        let s = state(&[(RBAC_ADMIN, RG, Some(condition))]);
        let scope = format!("{KV}/providers/Microsoft.Authorization/roleAssignments/x");
        let ask = |role: &str| Attributes {
            role_definition_id: Some(role.into()),
            principal_id: Some("p".into()),
            principal_type: Some("ServicePrincipal".into()),
        };
        fn with(a: &Attributes) -> RequestAttributes<'_> {
            RequestAttributes { request: Some(a), ..Default::default() }
        }
        assert!(arm_permits(&s, OPERATOR, WRITE, &scope, &with(&ask(SECRETS_USER))));
        assert!(!arm_permits(&s, OPERATOR, WRITE, &scope, &with(&ask(OWNER))));
        assert!(may(&s, "Microsoft.KeyVault/vaults/read", KV), "reads are not what the condition targets");
        let garbled = state(&[(RBAC_ADMIN, RG, Some("not a condition".into()))]);
        assert!(
            !may(&garbled, "Microsoft.KeyVault/vaults/read", KV),
            "an unparsable condition grants nothing"
        );
    }
}
