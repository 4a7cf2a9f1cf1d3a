//! Recognising ARM paths. Fixed segments are matched case-insensitively, as ARM does; names keep the case the
//! caller used. Repeated slashes are collapsed (SDKs that put a scope or an id starting with `/` behind a `/`
//! in their path template send `//subscriptions/...`).

use axum::http::Method;

use super::catalog::{self, ResourceType};
use crate::error::ArmError;
use crate::harness::throttle::{MsiOp, OpKind};

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// `GET /subscriptions/{s}` (Subscriptions_Get).
    Subscription {
        sub: String,
    },
    /// `GET /subscriptions/{s}/providers/{namespace}` (Providers_Get), or `/providers/{namespace}` at the
    /// tenant (`sub` None).
    Provider {
        sub: Option<String>,
        namespace: String,
    },
    /// A seeded resource of one of the catalog's types (`catalog::SEEDABLE`).
    Resource {
        sub: String,
        rg: String,
        rtype: &'static ResourceType,
        name: String,
    },
    /// A blob container of a seeded Storage account.
    BlobContainer {
        sub: String,
        rg: String,
        account: String,
        name: String,
    },
    ResourceGroup {
        sub: String,
        rg: String,
    },
    IdentityList {
        sub: String,
        rg: Option<String>,
    },
    Identity {
        sub: String,
        rg: String,
        name: String,
    },
    FicList {
        sub: String,
        rg: String,
        identity: String,
    },
    Fic {
        sub: String,
        rg: String,
        identity: String,
        name: String,
    },
    Vault {
        sub: String,
        rg: String,
        name: String,
    },
    VaultAccessPolicy {
        sub: String,
        rg: String,
        name: String,
        kind: String,
    },
    /// `scope` has a leading slash, or is empty for the tenant root.
    RoleAssignments {
        scope: String,
    },
    RoleAssignment {
        scope: String,
        name: String,
    },
    RoleDefinitions {
        scope: String,
    },
    RoleDefinition {
        scope: String,
        id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Resources,
    /// `/subscriptions/{s}` itself: Microsoft.Resources too, with the subscriptions API's own versions.
    Subscriptions,
    Msi,
    Authorization,
    KeyVault,
    /// A seedable type of the catalog, with that provider's versions.
    Provider(&'static ResourceType),
}

impl Family {
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            // Microsoft.Resources versions SDKs commonly send for resource groups.
            Self::Resources => &[
                "2019-10-01",
                "2020-06-01",
                "2021-04-01",
                "2022-09-01",
                "2023-07-01",
                "2024-03-01",
                "2024-07-01",
                "2024-11-01",
                "2025-03-01",
                "2025-04-01",
            ],
            Self::Msi => &["2023-01-31", "2024-11-30"],
            // 2020-10-01-preview is a real roleAssignments version and the one the upstream example
            // RoleAssignments_Get.json carries; its shape equals 2022-04-01 for every field we serve.
            Self::Authorization => &["2022-04-01", "2020-10-01-preview"],
            Self::KeyVault => &["2022-07-01", "2023-02-01", "2023-07-01", "2024-11-01"],
            // The stable versions of subscriptions.json [SPEC:
            // Microsoft.Resources/stable/*/subscriptions.json] and the resource groups' versions above: ARM
            // answers `/subscriptions/{s}` itself, and we take it to accept every Microsoft.Resources version
            // there [UNVERIFIED].
            Self::Subscriptions => &[
                "2016-06-01",
                "2018-06-01",
                "2019-06-01",
                "2019-10-01",
                "2019-11-01",
                "2020-01-01",
                "2020-06-01",
                "2021-01-01",
                "2021-04-01",
                "2022-09-01",
                "2022-12-01",
                "2023-07-01",
                "2024-03-01",
                "2024-07-01",
                "2024-11-01",
                "2025-03-01",
                "2025-04-01",
            ],
            Self::Provider(t) => t.api_versions,
        }
    }
}

/// One ARM operation, named like the specs' operationIds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub name: &'static str,
    pub kind: OpKind,
    pub family: Family,
    /// The RBAC action checked against the caller's permissions.
    pub action: &'static str,
    pub msi: Option<MsiOp>,
    /// The resource type named in NoRegisteredProviderFound.
    pub resource_type: &'static str,
}

impl Operation {
    pub fn is_write(&self) -> bool {
        self.kind != Read
    }
}

const fn op(
    name: &'static str,
    kind: OpKind,
    family: Family,
    action: &'static str,
    msi: Option<MsiOp>,
    resource_type: &'static str,
) -> Operation {
    Operation { name, kind, family, action, msi, resource_type }
}

use Family::*;
use OpKind::*;

const UAI: &str = "userAssignedIdentities";
const FIC: &str = "userAssignedIdentities/federatedIdentityCredentials";

pub fn operation(route: &Route, method: &Method) -> Result<Operation, ArmError> {
    let m = method.as_str();
    let found = match (route, m) {
        (Route::Subscription { .. }, "GET") => op(
            "Subscriptions_Get",
            Read,
            Subscriptions,
            "Microsoft.Resources/subscriptions/read",
            None,
            "subscriptions",
        ),
        (Route::Provider { sub: Some(_), .. }, "GET") => op(
            "Providers_Get",
            Read,
            Resources,
            "Microsoft.Resources/subscriptions/providers/read",
            None,
            "providers",
        ),
        (Route::Provider { sub: None, .. }, "GET") => op(
            "Providers_GetAtTenantScope",
            Read,
            Resources,
            "Microsoft.Resources/providers/read",
            None,
            "providers",
        ),
        (Route::Resource { rtype, .. }, "GET") => {
            op(rtype.get_operation, Read, Provider(rtype), rtype.read_action, None, rtype.path)
        }
        (Route::BlobContainer { .. }, "GET") => {
            let t = &catalog::BLOB_CONTAINERS;
            op(t.get_operation, Read, Provider(t), t.read_action, None, t.path)
        }
        (Route::ResourceGroup { .. }, "PUT") => op(
            "ResourceGroups_CreateOrUpdate",
            Write,
            Resources,
            "Microsoft.Resources/subscriptions/resourceGroups/write",
            None,
            "resourceGroups",
        ),
        (Route::ResourceGroup { .. }, "GET") => op(
            "ResourceGroups_Get",
            Read,
            Resources,
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            None,
            "resourceGroups",
        ),
        (Route::IdentityList { rg: Some(_), .. }, "GET") => op(
            "UserAssignedIdentities_ListByResourceGroup",
            Read,
            Msi,
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
            Some(MsiOp::List),
            UAI,
        ),
        (Route::IdentityList { rg: None, .. }, "GET") => op(
            "UserAssignedIdentities_ListBySubscription",
            Read,
            Msi,
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
            Some(MsiOp::List),
            UAI,
        ),
        (Route::Identity { .. }, "PUT") => op(
            "UserAssignedIdentities_CreateOrUpdate",
            Write,
            Msi,
            "Microsoft.ManagedIdentity/userAssignedIdentities/write",
            Some(MsiOp::CreateOrUpdate),
            UAI,
        ),
        (Route::Identity { .. }, "PATCH") => op(
            "UserAssignedIdentities_Update",
            Write,
            Msi,
            "Microsoft.ManagedIdentity/userAssignedIdentities/write",
            Some(MsiOp::CreateOrUpdate),
            UAI,
        ),
        (Route::Identity { .. }, "GET") => op(
            "UserAssignedIdentities_Get",
            Read,
            Msi,
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
            Some(MsiOp::Get),
            UAI,
        ),
        (Route::Identity { .. }, "DELETE") => op(
            "UserAssignedIdentities_Delete",
            Delete,
            Msi,
            "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
            Some(MsiOp::Delete),
            UAI,
        ),
        (Route::FicList { .. }, "GET") => op(
            "FederatedIdentityCredentials_List",
            Read,
            Msi,
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read",
            None,
            FIC,
        ),
        (Route::Fic { .. }, "PUT") => op(
            "FederatedIdentityCredentials_CreateOrUpdate",
            Write,
            Msi,
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
            None,
            FIC,
        ),
        (Route::Fic { .. }, "GET") => op(
            "FederatedIdentityCredentials_Get",
            Read,
            Msi,
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read",
            None,
            FIC,
        ),
        (Route::Fic { .. }, "DELETE") => op(
            "FederatedIdentityCredentials_Delete",
            Delete,
            Msi,
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete",
            None,
            FIC,
        ),
        (Route::Vault { .. }, "GET") => {
            op("Vaults_Get", Read, KeyVault, "Microsoft.KeyVault/vaults/read", None, "vaults")
        }
        (Route::Vault { .. }, "DELETE") => {
            op("Vaults_Delete", Delete, KeyVault, "Microsoft.KeyVault/vaults/delete", None, "vaults")
        }
        (Route::VaultAccessPolicy { .. }, "PUT") => op(
            "Vaults_UpdateAccessPolicy",
            Write,
            KeyVault,
            "Microsoft.KeyVault/vaults/accessPolicies/write",
            None,
            "vaults/accessPolicies",
        ),
        (Route::RoleAssignments { .. }, "GET") => op(
            "RoleAssignments_ListForScope",
            Read,
            Authorization,
            "Microsoft.Authorization/roleAssignments/read",
            None,
            "roleAssignments",
        ),
        (Route::RoleAssignment { .. }, "PUT") => op(
            "RoleAssignments_Create",
            Write,
            Authorization,
            "Microsoft.Authorization/roleAssignments/write",
            None,
            "roleAssignments",
        ),
        (Route::RoleAssignment { .. }, "GET") => op(
            "RoleAssignments_Get",
            Read,
            Authorization,
            "Microsoft.Authorization/roleAssignments/read",
            None,
            "roleAssignments",
        ),
        (Route::RoleAssignment { .. }, "DELETE") => op(
            "RoleAssignments_Delete",
            Delete,
            Authorization,
            "Microsoft.Authorization/roleAssignments/delete",
            None,
            "roleAssignments",
        ),
        (Route::RoleDefinitions { .. }, "GET") => op(
            "RoleDefinitions_List",
            Read,
            Authorization,
            "Microsoft.Authorization/roleDefinitions/read",
            None,
            "roleDefinitions",
        ),
        (Route::RoleDefinition { .. }, "GET") => op(
            "RoleDefinitions_Get",
            Read,
            Authorization,
            "Microsoft.Authorization/roleDefinitions/read",
            None,
            "roleDefinitions",
        ),
        _ => {
            // ASP.NET's wording, which ARM answers with for an unsupported verb.
            return Err(ArmError::method_not_allowed(m));
        }
    };
    Ok(found)
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg).decode_utf8_lossy().into_owned()
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn not_found(path: &str) -> ArmError {
    ArmError::not_found("NotFound", format!("The requested path '{path}' was not found."))
}

pub fn parse(path: &str) -> Result<Route, ArmError> {
    let segs: Vec<String> = path.split('/').filter(|s| !s.is_empty()).map(decode).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();

    // Authorization routes take any scope in front of them: find the last provider segment.
    if let Some(i) = (0..s.len().saturating_sub(1))
        .rev()
        .find(|&i| eq(s[i], "providers") && eq(s[i + 1], "Microsoft.Authorization"))
    {
        let scope = if i == 0 { String::new() } else { format!("/{}", s[..i].join("/")) };
        return match &s[i + 2..] {
            [t] if eq(t, "roleAssignments") => Ok(Route::RoleAssignments { scope }),
            [t, name] if eq(t, "roleAssignments") => {
                Ok(Route::RoleAssignment { scope, name: (*name).to_owned() })
            }
            [t] if eq(t, "roleDefinitions") => Ok(Route::RoleDefinitions { scope }),
            [t, id] if eq(t, "roleDefinitions") => Ok(Route::RoleDefinition { scope, id: (*id).to_owned() }),
            [t, ..] => Err(invalid_type(t, "Microsoft.Authorization")),
            // Providers_Get of Microsoft.Authorization itself.
            [] => match &s[..i] {
                [] => Ok(Route::Provider { sub: None, namespace: s[i + 1].to_owned() }),
                [sb, sub] if eq(sb, "subscriptions") => {
                    Ok(Route::Provider { sub: Some((*sub).to_owned()), namespace: s[i + 1].to_owned() })
                }
                _ => Err(not_found(path)),
            },
        };
    }

    let o = |x: &str| x.to_owned();
    match s.as_slice() {
        [sb, sub] if eq(sb, "subscriptions") => Ok(Route::Subscription { sub: o(sub) }),
        [sb, sub, p, ns] if eq(sb, "subscriptions") && eq(p, "providers") => {
            Ok(Route::Provider { sub: Some(o(sub)), namespace: o(ns) })
        }
        [p, ns] if eq(p, "providers") => Ok(Route::Provider { sub: None, namespace: o(ns) }),
        [sb, sub, r, rg] if eq(sb, "subscriptions") && eq(r, "resourceGroups") => {
            Ok(Route::ResourceGroup { sub: o(sub), rg: o(rg) })
        }
        [sb, sub, p, ns, t]
            if eq(sb, "subscriptions")
                && eq(p, "providers")
                && eq(ns, "Microsoft.ManagedIdentity")
                && eq(t, UAI) =>
        {
            Ok(Route::IdentityList { sub: o(sub), rg: None })
        }
        [sb, sub, r, rg, p, ns, rest @ ..]
            if eq(sb, "subscriptions") && eq(r, "resourceGroups") && eq(p, "providers") =>
        {
            let (sub, rg) = (o(sub), o(rg));
            if eq(ns, "Microsoft.ManagedIdentity") {
                match rest {
                    [t] if eq(t, UAI) => Ok(Route::IdentityList { sub, rg: Some(rg) }),
                    [t, name] if eq(t, UAI) => Ok(Route::Identity { sub, rg, name: o(name) }),
                    [t, name, f] if eq(t, UAI) && eq(f, "federatedIdentityCredentials") => {
                        Ok(Route::FicList { sub, rg, identity: o(name) })
                    }
                    [t, name, f, fic] if eq(t, UAI) && eq(f, "federatedIdentityCredentials") => {
                        Ok(Route::Fic { sub, rg, identity: o(name), name: o(fic) })
                    }
                    [t, ..] => Err(invalid_type(t, ns)),
                    [] => Err(not_found(path)),
                }
            } else if eq(ns, "Microsoft.KeyVault") {
                match rest {
                    [t, name] if eq(t, "vaults") => Ok(Route::Vault { sub, rg, name: o(name) }),
                    [t, name, a, kind] if eq(t, "vaults") && eq(a, "accessPolicies") => {
                        Ok(Route::VaultAccessPolicy { sub, rg, name: o(name), kind: o(kind) })
                    }
                    [t, ..] => Err(invalid_type(t, ns)),
                    [] => Err(not_found(path)),
                }
            } else if catalog::is_seedable_namespace(ns) {
                match rest {
                    [t, name] => match catalog::seedable(ns, t) {
                        Some(rtype) => Ok(Route::Resource { sub, rg, rtype, name: o(name) }),
                        None => Err(invalid_type(t, ns)),
                    },
                    [t, account, b, d, c, name]
                        if eq(ns, "Microsoft.Storage")
                            && eq(t, "storageAccounts")
                            && eq(b, "blobServices")
                            && eq(d, "default")
                            && eq(c, "containers") =>
                    {
                        Ok(Route::BlobContainer { sub, rg, account: o(account), name: o(name) })
                    }
                    // Lists and other child resources (queues, topics…) exist in Azure but are not simulated:
                    // a plain 404 rather than a claim that the type does not exist.
                    [t, ..] if catalog::seedable(ns, t).is_some() => Err(not_found(path)),
                    [t, ..] => Err(invalid_type(t, ns)),
                    [] => Err(not_found(path)),
                }
            } else {
                Err(ArmError::not_found(
                    "InvalidResourceNamespace",
                    format!("The resource namespace '{ns}' is invalid."),
                ))
            }
        }
        _ => Err(not_found(path)),
    }
}

fn invalid_type(t: &str, ns: &str) -> ArmError {
    ArmError::not_found(
        "InvalidResourceType",
        format!("The resource type '{t}' could not be found in the namespace '{ns}'."),
    )
}

/// The subscription a route is under, if any (for throttling and scope checks).
pub fn subscription_of(route: &Route) -> Option<String> {
    match route {
        Route::Subscription { sub }
        | Route::Resource { sub, .. }
        | Route::BlobContainer { sub, .. }
        | Route::ResourceGroup { sub, .. }
        | Route::IdentityList { sub, .. }
        | Route::Identity { sub, .. }
        | Route::FicList { sub, .. }
        | Route::Fic { sub, .. }
        | Route::Vault { sub, .. }
        | Route::VaultAccessPolicy { sub, .. } => Some(sub.clone()),
        Route::Provider { sub, .. } => sub.clone(),
        Route::RoleAssignments { scope }
        | Route::RoleAssignment { scope, .. }
        | Route::RoleDefinitions { scope }
        | Route::RoleDefinition { scope, .. } => scope_subscription(scope),
    }
}

/// `/subscriptions/{s}/...` → `s`.
pub fn scope_subscription(scope: &str) -> Option<String> {
    let mut it = scope.split('/').filter(|s| !s.is_empty());
    match (it.next(), it.next()) {
        (Some(s), Some(sub)) if eq(s, "subscriptions") => Some(sub.to_owned()),
        _ => None,
    }
}

/// `/subscriptions/{s}/resourceGroups/{rg}/...` → `rg`.
pub fn scope_resource_group(scope: &str) -> Option<String> {
    let segs: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        [s, _, r, rg, ..] if eq(s, "subscriptions") && eq(r, "resourceGroups") => Some((*rg).to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_route() {
        let uai =
            "/subscriptions/s/resourcegroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities";
        assert_eq!(parse(uai), Ok(Route::IdentityList { sub: "s".into(), rg: Some("RG".into()) }));
        assert_eq!(
            parse(&format!("{uai}/id1")),
            Ok(Route::Identity { sub: "s".into(), rg: "RG".into(), name: "id1".into() })
        );
        assert_eq!(
            parse(&format!("{uai}/id1/federatedIdentityCredentials/f")),
            Ok(Route::Fic { sub: "s".into(), rg: "RG".into(), identity: "id1".into(), name: "f".into() })
        );
        assert_eq!(
            parse("/subscriptions/s/providers/microsoft.managedidentity/userassignedidentities"),
            Ok(Route::IdentityList { sub: "s".into(), rg: None })
        );
        assert_eq!(
            parse("//subscriptions/s/providers/Microsoft.Authorization/roleAssignments/n"),
            Ok(Route::RoleAssignment { scope: "/subscriptions/s".into(), name: "n".into() })
        );
        let kv = "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/kv";
        assert_eq!(
            parse(&format!("{kv}/providers/Microsoft.Authorization/roleAssignments")),
            Ok(Route::RoleAssignments { scope: kv.into() })
        );
        assert_eq!(
            parse(&format!("{kv}/accessPolicies/add")),
            Ok(Route::VaultAccessPolicy {
                sub: "s".into(),
                rg: "r".into(),
                name: "kv".into(),
                kind: "add".into()
            })
        );
        assert_eq!(
            parse("/providers/Microsoft.Authorization/roleDefinitions/x"),
            Ok(Route::RoleDefinition { scope: String::new(), id: "x".into() })
        );
        assert_eq!(
            parse("/subscriptions/s/resourceGroups/r"),
            Ok(Route::ResourceGroup { sub: "s".into(), rg: "r".into() })
        );
        assert_eq!(
            parse("/subscriptions/s/resourceGroups/r/providers/Microsoft.Foo/bars/x").map_err(|e| e.code),
            Err("InvalidResourceNamespace".into())
        );
        assert_eq!(parse("/nothing").map_err(|e| e.status), Err(axum::http::StatusCode::NOT_FOUND));
        assert_eq!(parse("/subscriptions/s"), Ok(Route::Subscription { sub: "s".into() }));
        assert_eq!(
            parse("/subscriptions/s/providers/microsoft.storage"),
            Ok(Route::Provider { sub: Some("s".into()), namespace: "microsoft.storage".into() })
        );
        assert_eq!(
            parse("/subscriptions/s/providers/Microsoft.Authorization"),
            Ok(Route::Provider { sub: Some("s".into()), namespace: "Microsoft.Authorization".into() })
        );
        assert_eq!(
            parse("/providers/Microsoft.KeyVault"),
            Ok(Route::Provider { sub: None, namespace: "Microsoft.KeyVault".into() })
        );
        let sa = "/subscriptions/s/resourcegroups/r/providers/Microsoft.Storage/storageaccounts/Acct";
        assert_eq!(
            parse(sa),
            Ok(Route::Resource {
                sub: "s".into(),
                rg: "r".into(),
                rtype: &catalog::STORAGE_ACCOUNTS,
                name: "Acct".into()
            })
        );
        let code = |p: &str| parse(p).map_err(|e| e.code);
        assert_eq!(code(&format!("{sa}/blobServices/default")), Err("NotFound".into()));
        assert_eq!(
            code("/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts"),
            Err("NotFound".into())
        );
        assert_eq!(
            parse(&format!("{sa}/blobservices/DEFAULT/containers/Orders")),
            Ok(Route::BlobContainer {
                sub: "s".into(),
                rg: "r".into(),
                account: "Acct".into(),
                name: "Orders".into()
            })
        );
        assert_eq!(
            code("/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/bogus/x"),
            Err("InvalidResourceType".into())
        );
        assert_eq!(scope_resource_group(kv), Some("r".into()));
        assert_eq!(scope_subscription(kv), Some("s".into()));
    }
}
