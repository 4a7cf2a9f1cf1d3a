//! Role references as users write them, and the built-in Key Vault roles idbind knows offline.
//!
//! A role in a binding is a built-in display name ("Key Vault Secrets User"), a role definition
//! GUID, or a role definition id. Known built-ins resolve without an API call; other names are
//! resolved through the roleDefinitions API by the Azure layer.

use uuid::Uuid;

/// A built-in Key Vault role: its display name, its GUID (the same in every tenant), and whether
/// it only reads data (what the default policy allows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltinRole {
    pub name: &'static str,
    pub guid: &'static str,
    pub read_only: bool,
}

/// From Microsoft's Key Vault RBAC guide ("Azure built-in roles for Key Vault data plane
/// operations"); see shared/azure-rest-api/FACTS.md §6.
pub const KEY_VAULT_ROLES: &[BuiltinRole] = &[
    BuiltinRole { name: "Key Vault Administrator", guid: "00482a5a-887f-4fb3-b363-3b7fe8e74483", read_only: false },
    BuiltinRole { name: "Key Vault Certificates Officer", guid: "a4417e6f-fecd-4de8-b567-7b0420556985", read_only: false },
    BuiltinRole { name: "Key Vault Certificate User", guid: "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba", read_only: true },
    BuiltinRole { name: "Key Vault Crypto Officer", guid: "14b46e9e-c2b7-41b4-b07b-48a6ebf60603", read_only: false },
    BuiltinRole { name: "Key Vault Crypto User", guid: "12338af0-0e69-4776-bea7-57ae8d297424", read_only: true },
    BuiltinRole { name: "Key Vault Reader", guid: "21090545-7ca7-4776-b22c-e363652d74d2", read_only: true },
    BuiltinRole { name: "Key Vault Secrets Officer", guid: "b86a8fe4-44ce-4948-aee5-eccb2c155cd7", read_only: false },
    BuiltinRole { name: "Key Vault Secrets User", guid: "4633458b-17de-408a-b874-0445c86b69e6", read_only: true },
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
    /// Parses a role reference; known built-in names become their GUID, matched the way Azure
    /// matches role names (case-insensitively).
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
            RoleRef::Id(id) => KEY_VAULT_ROLES.iter().find(|b| Uuid::parse_str(b.guid).is_ok_and(|g| g == *id)),
            RoleRef::Name(n) => builtin_by_name(n),
        }
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
    fn unknown_names_are_left_for_the_api() {
        assert_eq!(RoleRef::parse("Storage Blob Data Reader"), RoleRef::Name("Storage Blob Data Reader".into()));
        assert_eq!(RoleRef::parse("Owner").builtin(), None);
    }
}
