//! Deterministic names for everything idbind creates in Azure.
//!
//! A crash between an Azure write and the status write must be repaired by the next reconcile, which only
//! works if the next reconcile computes the same names from the same inputs. So no name depends on time,
//! randomness or anything read back from Azure, except the principal id in a role assignment's name (which
//! identifies the assignment, as Azure Service Operator does).

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::resource_id::ResourceId;

/// ARM's limit on a user-assigned identity's name.
pub const IDENTITY_NAME_MAX: usize = 128;
/// ARM's limit on a federated identity credential's name.
pub const FIC_NAME_MAX: usize = 120;
/// Hex characters of the hash suffix: 40 bits, so a collision needs about a million bindings with the same
/// readable prefix.
const HASH_LEN: usize = 10;

/// The UUIDv5 namespace for role-assignment names (a fixed random UUID: changing it would make every existing
/// assignment look foreign).
const ROLE_ASSIGNMENT_NAMESPACE: Uuid = Uuid::from_u128(0x6b1e_4a9d_3c2f_4e8b_9f1a_52d7_c0e3_a915);

/// Default name of the identity for a binding: readable (`cluster-namespace-name`) and suffixed with a hash
/// of the exact triple, because '-' can occur inside each part ("a-b"/"c" and "a"/"b-c" read the same) and
/// characters ARM refuses are replaced.
pub fn identity_name(cluster: &str, namespace: &str, binding: &str) -> String {
    readable_with_hash(&[cluster, namespace, binding], IDENTITY_NAME_MAX)
}

/// The subject Kubernetes puts in a ServiceAccount's tokens, which a federated credential trusts.
pub fn subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// Name of the federated credential a binding puts on its identity. It names the binding (not only the
/// identity) so that several bindings may federate one brought identity.
pub fn federated_credential_name(cluster: &str, namespace: &str, binding: &str) -> String {
    readable_with_hash(&[cluster, namespace, binding], FIC_NAME_MAX)
}

/// Name of a role assignment: UUIDv5 of (scope, role definition, principal), compared the way ARM compares
/// them (case-insensitively). A change of any of the three is a new assignment, which is what ARM requires
/// (assignments cannot be updated in place).
pub fn role_assignment_name(scope: &ResourceId, role_definition_id: &str, principal_id: &str) -> Uuid {
    let key = format!(
        "{}\n{}\n{}",
        scope.to_string().to_ascii_lowercase(),
        role_definition_guid(role_definition_id).to_ascii_lowercase(),
        principal_id.to_ascii_lowercase()
    );
    Uuid::new_v5(&ROLE_ASSIGNMENT_NAMESPACE, key.as_bytes())
}

/// The GUID at the end of a role definition id; a role definition is the same role whether it is named at
/// tenant scope (/providers/...) or at subscription scope (/subscriptions/x/providers/...).
fn role_definition_guid(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// `part1-part2-...-hash`, where the readable part keeps only what ARM accepts ([A-Za-z0-9_-]), is cut so the
/// whole fits `max`, and the hash covers the parts verbatim.
fn readable_with_hash(parts: &[&str], max: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        // A separator that cannot occur in Kubernetes names keeps ("ab","c") apart from ("a","bc").
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let hash: String = digest
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .take(HASH_LEN)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect();

    let readable: String = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-");
    let budget = max - HASH_LEN - 1;
    let mut prefix: String = readable.chars().take(budget).collect();
    // ARM wants the first character to be a letter or digit.
    while prefix.starts_with(['-', '_']) {
        prefix.remove(0);
    }
    if prefix.is_empty() { format!("id-{hash}") } else { format!("{prefix}-{hash}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm_identity_name_ok(n: &str) -> bool {
        (3..=IDENTITY_NAME_MAX).contains(&n.len())
            && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    fn arm_fic_name_ok(n: &str) -> bool {
        (3..=FIC_NAME_MAX).contains(&n.len())
            && n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn identity_name_is_readable_and_stable() {
        let n = identity_name("aks-prod", "shop", "orders-api");
        assert!(n.starts_with("aks-prod-shop-orders-api-"), "{n}");
        assert_eq!(n, identity_name("aks-prod", "shop", "orders-api"));
        assert!(arm_identity_name_ok(&n));
    }

    #[test]
    fn ambiguous_joins_get_different_names() {
        assert_ne!(identity_name("c", "a-b", "x"), identity_name("c", "a", "b-x"));
        assert_ne!(identity_name("c", "ab", "x"), identity_name("ca", "b", "x"));
        // '.' is legal in a binding name but not in ARM; replacing it must not merge names.
        assert_ne!(identity_name("c", "ns", "a.b"), identity_name("c", "ns", "a-b"));
    }

    #[test]
    fn names_fit_arm_limits_whatever_the_input() {
        let long = "x".repeat(253);
        let cases = [
            ("", "", ""),
            ("c", "ns", &long[..]),
            (&long[..], &long[..], &long[..]),
            ("-weird", "_ns", ".name"),
            ("ünï", "ns", "n"),
        ];
        for (c, ns, n) in cases {
            let id = identity_name(c, ns, n);
            assert!(arm_identity_name_ok(&id), "identity name {id:?} from {c:?}/{ns:?}/{n:?}");
            let fic = federated_credential_name(c, ns, n);
            assert!(arm_fic_name_ok(&fic), "FIC name {fic:?} from {c:?}/{ns:?}/{n:?}");
        }
    }

    #[test]
    fn long_names_still_differ_by_their_tail() {
        let base = "n".repeat(200);
        assert_ne!(
            identity_name("c", "ns", &format!("{base}1")),
            identity_name("c", "ns", &format!("{base}2"))
        );
    }

    fn id(text: &str) -> ResourceId {
        ResourceId::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The names of assignments that exist in Azure today: a change here would make idbind see them as
    /// foreign, create duplicates and never remove the old ones.
    #[test]
    fn role_assignment_names_never_change() {
        let vault =
            id("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-shop/providers/\
                        Microsoft.KeyVault/vaults/kv-shop");
        let name = role_assignment_name(
            &vault,
            "4633458b-17de-408a-b874-0445c86b69e6",
            "11111111-2222-3333-4444-555555555555",
        );
        // uuid5(6b1e4a9d-3c2f-4e8b-9f1a-52d7c0e3a915, "<scope>\n<role guid>\n<principal>"), all lowercased,
        // computed apart from this code (Python's uuid.uuid5).
        assert_eq!(name.to_string(), "13f7b34c-2385-5e4d-a197-3527a45e789f");
    }

    #[test]
    fn role_assignment_name_ignores_case_and_role_id_form() {
        let scope = "/subscriptions/S/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv";
        let a = role_assignment_name(
            &id(scope),
            "/subscriptions/S/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
            "P",
        );
        let b = role_assignment_name(
            &id(&scope.to_uppercase()),
            "/providers/Microsoft.Authorization/roleDefinitions/4633458B-17DE-408A-B874-0445C86B69E6",
            "p",
        );
        assert_eq!(a, b);
        assert_eq!(a.get_version_num(), 5);
    }

    #[test]
    fn role_assignment_name_changes_with_each_input() {
        let (kv1, kv2) =
            (id("/subscriptions/s/resourceGroups/kv1"), id("/subscriptions/s/resourceGroups/kv2"));
        let base = role_assignment_name(&kv1, "r1", "p1");
        assert_ne!(base, role_assignment_name(&kv2, "r1", "p1"));
        assert_ne!(base, role_assignment_name(&kv1, "r2", "p1"));
        assert_ne!(base, role_assignment_name(&kv1, "r1", "p2"));
    }
}
