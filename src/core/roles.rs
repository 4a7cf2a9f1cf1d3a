//! Role references as users write them, and the built-in Key Vault roles idbind knows offline.
//!
//! A role in a binding is a built-in display name ("Key Vault Secrets User"), a role definition GUID, or a
//! role definition id. Known built-ins resolve without an API call; other names are resolved through the
//! roleDefinitions API by the Azure layer.

use std::collections::BTreeSet;

use uuid::Uuid;

/// A built-in Key Vault role: its display name, its GUID (the same in every tenant), and whether it only
/// reads data (what the default policy allows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinRole {
    pub name: &'static str,
    pub guid: &'static str,
    pub read_only: bool,
}

/// From Microsoft's Key Vault RBAC guide ("Azure built-in roles for Key Vault data plane operations"); see
/// shared/azure-rest-api/FACTS.md §6.
pub const KEY_VAULT_ROLES: &[BuiltinRole] = &[
    BuiltinRole {
        name: "Key Vault Administrator",
        guid: "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        read_only: false,
    },
    BuiltinRole {
        name: "Key Vault Certificates Officer",
        guid: "a4417e6f-fecd-4de8-b567-7b0420556985",
        read_only: false,
    },
    BuiltinRole {
        name: "Key Vault Certificate User",
        guid: "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba",
        read_only: true,
    },
    BuiltinRole {
        name: "Key Vault Crypto Officer",
        guid: "14b46e9e-c2b7-41b4-b07b-48a6ebf60603",
        read_only: false,
    },
    BuiltinRole {
        name: "Key Vault Crypto User",
        guid: "12338af0-0e69-4776-bea7-57ae8d297424",
        read_only: true,
    },
    BuiltinRole { name: "Key Vault Reader", guid: "21090545-7ca7-4776-b22c-e363652d74d2", read_only: true },
    BuiltinRole {
        name: "Key Vault Secrets Officer",
        guid: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        read_only: false,
    },
    BuiltinRole {
        name: "Key Vault Secrets User",
        guid: "4633458b-17de-408a-b874-0445c86b69e6",
        read_only: true,
    },
];

/// A role as written in a binding, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleRef {
    /// A role definition named by GUID (bare or inside a role definition id).
    Id(Uuid),
    /// A display name that needs the roleDefinitions API (not a known built-in).
    Name(String),
}

impl RoleRef {
    /// Parses a role reference; known built-in names become their GUID, matched the way Azure matches role
    /// names (case-insensitively).
    pub fn parse(role: &str) -> RoleRef {
        let last = role.rsplit('/').next().unwrap_or(role);
        if let Ok(guid) = Uuid::parse_str(last) {
            return RoleRef::Id(guid);
        }
        match builtin_by_name(role) {
            Some(b) => RoleRef::Id(Uuid::parse_str(b.guid).unwrap_or_default()),
            None => RoleRef::Name(role.to_string()),
        }
    }

    /// The known built-in role this reference names, if any.
    pub fn builtin(&self) -> Option<&'static BuiltinRole> {
        match self {
            RoleRef::Id(id) => {
                KEY_VAULT_ROLES.iter().find(|b| Uuid::parse_str(b.guid).is_ok_and(|g| g == *id))
            }
            RoleRef::Name(n) => builtin_by_name(n),
        }
    }
}

/// Key Vault access-policy permissions of one principal on one vault (the legacy permission model, for vaults
/// without `enableRbacAuthorization`). Names as Key Vault spells them.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permissions {
    pub secrets: BTreeSet<String>,
    pub keys: BTreeSet<String>,
    pub certificates: BTreeSet<String>,
}

impl Permissions {
    fn of(secrets: &[&str], keys: &[&str], certificates: &[&str]) -> Self {
        let set = |l: &[&str]| l.iter().map(ToString::to_string).collect();
        Permissions { secrets: set(secrets), keys: set(keys), certificates: set(certificates) }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.keys.is_empty() && self.certificates.is_empty()
    }

    /// Everything in `self` or `other`.
    pub fn union(&self, other: &Permissions) -> Permissions {
        let u = |a: &BTreeSet<String>, b: &BTreeSet<String>| a.union(b).cloned().collect();
        Permissions {
            secrets: u(&self.secrets, &other.secrets),
            keys: u(&self.keys, &other.keys),
            certificates: u(&self.certificates, &other.certificates),
        }
    }

    /// What `self` has and `other` lacks. Key Vault compares permission names case-insensitively, and so does
    /// this.
    pub fn minus(&self, other: &Permissions) -> Permissions {
        let m = |a: &BTreeSet<String>, b: &BTreeSet<String>| {
            a.iter().filter(|p| !b.iter().any(|q| q.eq_ignore_ascii_case(p))).cloned().collect()
        };
        Permissions {
            secrets: m(&self.secrets, &other.secrets),
            keys: m(&self.keys, &other.keys),
            certificates: m(&self.certificates, &other.certificates),
        }
    }

    /// What both have (names as `self` spells them).
    pub fn intersect(&self, other: &Permissions) -> Permissions {
        self.minus(&self.minus(other))
    }
}

/// The access policy that grants what a built-in Key Vault *reader* role grants, following the Key Vault
/// documentation's mapping of access-policy templates to Azure roles. Only the read-only roles have one:
/// idbind never hands out write or purge permissions through the legacy model, where they cannot be scoped or
/// audited like role assignments.
pub fn access_policy_for(role_guid: &str) -> Option<Permissions> {
    let role = KEY_VAULT_ROLES.iter().find(|b| b.guid.eq_ignore_ascii_case(role_guid))?;
    match role.name {
        "Key Vault Secrets User" => Some(Permissions::of(&["get", "list"], &[], &[])),
        // A certificate's private key is read as the secret of the same name.
        "Key Vault Certificate User" => Some(Permissions::of(&["get"], &[], &["get", "list"])),
        "Key Vault Crypto User" => Some(Permissions::of(
            &[],
            &["get", "list", "encrypt", "decrypt", "wrapKey", "unwrapKey", "sign", "verify"],
            &[],
        )),
        // Metadata only: secret values stay unreadable.
        "Key Vault Reader" => Some(Permissions::of(&["list"], &["get", "list"], &["get", "list"])),
        _ => None,
    }
}

fn builtin_by_name(name: &str) -> Option<&'static BuiltinRole> {
    KEY_VAULT_ROLES.iter().find(|b| b.name.eq_ignore_ascii_case(name.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_guid_parses() {
        for b in KEY_VAULT_ROLES {
            assert!(Uuid::parse_str(b.guid).is_ok(), "{}", b.name);
        }
    }

    #[test]
    fn names_guids_and_ids_resolve_to_the_same_role() {
        let secrets_user = Uuid::parse_str("4633458b-17de-408a-b874-0445c86b69e6").unwrap_or_default();
        for r in [
            "Key Vault Secrets User",
            "key vault secrets user",
            "4633458b-17de-408a-b874-0445c86b69e6",
            "4633458B-17DE-408A-B874-0445C86B69E6",
            "/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
            "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Authorization/roleDefinitions/4633458b-17de-408a-b874-0445c86b69e6",
        ] {
            assert_eq!(RoleRef::parse(r), RoleRef::Id(secrets_user), "{r}");
            assert!(RoleRef::parse(r).builtin().is_some_and(|b| b.read_only), "{r}");
        }
    }

    #[test]
    fn only_reader_roles_have_an_access_policy_and_it_reads() {
        for b in KEY_VAULT_ROLES {
            let p = access_policy_for(b.guid);
            assert_eq!(p.is_some(), b.read_only, "{}", b.name);
            let writes = [
                "set",
                "delete",
                "purge",
                "create",
                "import",
                "update",
                "backup",
                "restore",
                "recover",
                "managecontacts",
                "setissuers",
            ];
            for perm in p.iter().flat_map(|p| p.secrets.iter().chain(&p.keys).chain(&p.certificates)) {
                assert!(!writes.contains(&perm.to_ascii_lowercase().as_str()), "{} grants {perm}", b.name);
            }
        }
        let user = access_policy_for("4633458B-17DE-408A-B874-0445C86B69E6").unwrap_or_default();
        assert_eq!(user.secrets.iter().map(String::as_str).collect::<Vec<_>>(), ["get", "list"]);
        assert_eq!(access_policy_for("8e3af657-a8ff-443c-a75c-2fe8c4bcb635"), None, "Owner");
    }

    #[test]
    fn permission_sets_compare_case_insensitively() {
        let a = Permissions::of(&["get", "list"], &["get"], &[]);
        let b = Permissions::of(&["GET"], &[], &["list"]);
        assert_eq!(a.minus(&b), Permissions::of(&["list"], &["get"], &[]));
        assert_eq!(a.intersect(&b), Permissions::of(&["get"], &[], &[]));
        assert_eq!(a.union(&b).certificates.len(), 1);
        assert!(a.minus(&a).is_empty() && !a.is_empty());
    }

    #[test]
    fn unknown_names_are_left_for_the_api() {
        assert_eq!(
            RoleRef::parse("Storage Blob Data Reader"),
            RoleRef::Name("Storage Blob Data Reader".into())
        );
        assert_eq!(RoleRef::parse("Owner").builtin(), None);
    }
}
