//! The catalogue of the operations the simulator serves: each by the name its counters, faults, holds and
//! latency use (the specs' operationIds for ARM and Key Vault, the endpoint for Entra), with the HTTP method
//! it is served for and whether serving it changes what the simulator holds. Tests read "Azure writes" from
//! it ([`write_operations`], [`crate::CounterSnapshot::writes`]), so a write the simulator learns to serve is
//! counted without anyone adding it to a list.
//!
//! It is not written by hand: one request per route of each surface (ARM, Entra, a vault's data plane), with
//! each method, goes through the routing the HTTP server uses (`http::classify`), and whatever it serves is an
//! entry. The write flag comes from the same place the server takes it: an ARM operation's kind (the one its
//! throttling and authorization use), `EntraRoute::writes`, `KvRoute::writes`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::Method;

use crate::arm::catalog;
use crate::config::KeyVaultConfig;

/// One operation as the simulator serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Its name in the counters (`GET /_sim/counters`), faults, holds and latency.
    pub name: &'static str,
    pub method: Method,
    /// Serving it may change what the simulator holds.
    pub writes: bool,
}

/// The methods each route is tried with.
const METHODS: [Method; 6] =
    [Method::GET, Method::HEAD, Method::PUT, Method::PATCH, Method::POST, Method::DELETE];

/// Every operation the simulator serves, once per name and method, by name.
pub fn catalogue() -> Vec<Served> {
    let keyvault = KeyVaultConfig::default();
    let vault_host = format!("kv.{}", crate::kv::primary_suffix(&keyvault));
    let requests = arm_paths()
        .into_iter()
        .chain(ENTRA_PATHS.iter().map(|p| (*p).to_owned()))
        .map(|path| ("localhost".to_owned(), path))
        .chain(VAULT_PATHS.iter().map(|p| (vault_host.clone(), (*p).to_owned())));
    let mut served: BTreeMap<(&'static str, String), Served> = BTreeMap::new();
    for (host, path) in requests {
        for method in &METHODS {
            if let Some((name, writes)) = crate::http::classify(&keyvault, method, &host, &path) {
                served.insert((name, method.to_string()), Served { name, method: method.clone(), writes });
            }
        }
    }
    served.into_values().collect()
}

/// The names of the operations that write, sorted: what "no Azure write" counts.
pub fn write_operations() -> &'static [&'static str] {
    static WRITES: OnceLock<Vec<&'static str>> = OnceLock::new();
    WRITES.get_or_init(|| {
        let mut names: Vec<&'static str> =
            catalogue().into_iter().filter(|s| s.writes).map(|s| s.name).collect();
        names.dedup();
        names
    })
}

const RG: &str = "/subscriptions/s/resourceGroups/rg";

/// One path per ARM route (`arm::route::Route`), and one per seedable resource type.
fn arm_paths() -> Vec<String> {
    let uai = format!("{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities");
    let vault = format!("{RG}/providers/Microsoft.KeyVault/vaults/kv");
    let authorization = "/subscriptions/s/providers/Microsoft.Authorization";
    let mut paths = vec![
        "/subscriptions/s".to_owned(),
        "/subscriptions/s/providers/Microsoft.ManagedIdentity".to_owned(),
        "/providers/Microsoft.ManagedIdentity".to_owned(),
        RG.to_owned(),
        "/subscriptions/s/providers/Microsoft.ManagedIdentity/userAssignedIdentities".to_owned(),
        uai.clone(),
        format!("{uai}/id"),
        format!("{uai}/id/federatedIdentityCredentials"),
        format!("{uai}/id/federatedIdentityCredentials/fic"),
        vault.clone(),
        format!("{vault}/accessPolicies/add"),
        format!("{authorization}/roleAssignments"),
        format!("{authorization}/roleAssignments/ra"),
        format!("{authorization}/roleDefinitions"),
        format!("{authorization}/roleDefinitions/rd"),
        format!("{RG}/providers/Microsoft.Storage/storageAccounts/sa/blobServices/default/containers/c"),
    ];
    paths.extend(catalog::SEEDABLE.iter().map(|t| format!("{RG}/providers/{}/{}/r", t.namespace, t.path)));
    paths
}

/// One path per Entra route (`entra::EntraRoute`).
const ENTRA_PATHS: &[&str] = &[
    "/t/oauth2/v2.0/token",
    "/t/v2.0/.well-known/openid-configuration",
    "/t/.well-known/openid-configuration",
    "/common/discovery/instance",
    "/common/discovery/v2.0/keys",
];

/// One path per route of a vault's data plane (`kv::KvRoute`), for each kind of object.
const VAULT_PATHS: &[&str] = &[
    "/secrets",
    "/secrets/n",
    "/secrets/n/versions",
    "/secrets/n/v",
    "/certificates",
    "/certificates/n",
    "/certificates/n/versions",
    "/certificates/n/v",
    "/keys",
    "/keys/n",
    "/keys/n/versions",
    "/keys/n/v",
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::arm::Route;
    use crate::entra::EntraRoute;
    use crate::kv::{Kind, KvRoute};

    /// A method that asks a server to change something.
    fn asks_to_write(method: &Method) -> bool {
        [Method::PUT, Method::PATCH, Method::POST, Method::DELETE].contains(method)
    }

    /// Operations served with such a method that change nothing, each with the reason. Nothing else served
    /// with PUT, PATCH, POST or DELETE may go uncounted as a write.
    const READ_ONLY: &[(&str, &str)] = &[
        // Entra's token endpoint: a POST that exchanges a credential (a client secret, or a federated token
        // checked against the identity's federated credentials) for an access token. Nothing a client can
        // read back changes, and every client signs in again as its tokens expire, in steady state too.
        ("Token", "a token exchange"),
    ];

    #[test]
    fn every_operation_served_with_a_writing_method_is_a_write_or_explicitly_read_only() {
        let catalogue = catalogue();
        let writes = write_operations();
        for op in catalogue.iter().filter(|s| asks_to_write(&s.method)) {
            let exempt = READ_ONLY.iter().any(|(name, _)| *name == op.name);
            assert!(
                writes.contains(&op.name) || exempt,
                "{} {} is served with a method that writes but not counted as a write; if it only reads, say why \
                 in READ_ONLY",
                op.method,
                op.name
            );
            assert!(!(writes.contains(&op.name) && exempt), "{} is listed as read-only but writes", op.name);
        }
        for (name, _) in READ_ONLY {
            assert!(catalogue.iter().any(|s| s.name == *name), "{name} in READ_ONLY is not served");
        }
    }

    #[test]
    fn a_name_is_a_write_or_a_read_never_both() {
        // The counters count by name: a name served both ways could not be told apart.
        let catalogue = catalogue();
        for op in &catalogue {
            let other = catalogue.iter().find(|s| s.name == op.name && s.writes != op.writes);
            assert_eq!(other, None, "{} is counted as a write and as a read", op.name);
        }
    }

    #[test]
    fn the_writes_are_the_ones_the_simulator_serves_today() {
        // What the catalogue finds, so a route that stops being found (a sample path gone wrong) shows here.
        assert_eq!(
            write_operations(),
            [
                "FederatedIdentityCredentials_CreateOrUpdate",
                "FederatedIdentityCredentials_Delete",
                "ResourceGroups_CreateOrUpdate",
                "RoleAssignments_Create",
                "RoleAssignments_Delete",
                "Secrets_Set",
                "UserAssignedIdentities_CreateOrUpdate",
                "UserAssignedIdentities_Delete",
                "UserAssignedIdentities_Update",
                "Vaults_Delete",
                "Vaults_UpdateAccessPolicy",
            ]
        );
    }

    /// Each route variant by name; a new variant fails to compile here until it is named, and the test below
    /// fails until a path in `arm_paths`, `ENTRA_PATHS` or `VAULT_PATHS` reaches it.
    fn arm_route(route: &Route) -> &'static str {
        match route {
            Route::Subscription { .. } => "Subscription",
            Route::Provider { .. } => "Provider",
            Route::Resource { .. } => "Resource",
            Route::BlobContainer { .. } => "BlobContainer",
            Route::ResourceGroup { .. } => "ResourceGroup",
            Route::IdentityList { .. } => "IdentityList",
            Route::Identity { .. } => "Identity",
            Route::FicList { .. } => "FicList",
            Route::Fic { .. } => "Fic",
            Route::Vault { .. } => "Vault",
            Route::VaultAccessPolicy { .. } => "VaultAccessPolicy",
            Route::RoleAssignments { .. } => "RoleAssignments",
            Route::RoleAssignment { .. } => "RoleAssignment",
            Route::RoleDefinitions { .. } => "RoleDefinitions",
            Route::RoleDefinition { .. } => "RoleDefinition",
        }
    }
    const ARM_ROUTES: usize = 15;

    fn entra_route(route: &EntraRoute) -> &'static str {
        match route {
            EntraRoute::Token { .. } => "Token",
            EntraRoute::OpenIdConfiguration { .. } => "OpenIdConfiguration",
            EntraRoute::InstanceDiscovery => "InstanceDiscovery",
            EntraRoute::Keys => "Keys",
        }
    }
    const ENTRA_ROUTES: usize = 4;

    fn vault_route(route: &KvRoute) -> &'static str {
        match route {
            KvRoute::List(_) => "List",
            KvRoute::Versions(..) => "Versions",
            KvRoute::Get(..) => "Get",
            KvRoute::SetSecret(_) => "SetSecret",
        }
    }
    const VAULT_ROUTES: usize = 4;

    #[test]
    fn the_sample_paths_reach_every_route() {
        let arm: BTreeSet<_> = arm_paths()
            .iter()
            .filter_map(|p| crate::arm::route::parse(p).ok())
            .map(|r| arm_route(&r))
            .collect();
        assert_eq!(arm.len(), ARM_ROUTES, "ARM routes reached: {arm:?}");
        let entra: BTreeSet<_> = ENTRA_PATHS
            .iter()
            .flat_map(|p| METHODS.iter().filter_map(|m| crate::entra::parse(m, p)))
            .map(|r| entra_route(&r))
            .collect();
        assert_eq!(entra.len(), ENTRA_ROUTES, "Entra routes reached: {entra:?}");
        let vault: Vec<KvRoute> =
            VAULT_PATHS.iter().flat_map(|p| METHODS.iter().filter_map(|m| crate::kv::parse(m, p))).collect();
        let names: BTreeSet<_> = vault.iter().map(vault_route).collect();
        assert_eq!(names.len(), VAULT_ROUTES, "vault routes reached: {names:?}");
        let kinds: BTreeSet<_> = vault.iter().map(|r| r.kind().plural()).collect();
        assert_eq!(kinds.len(), [Kind::Secret, Kind::Certificate, Kind::Key].len(), "{kinds:?}");
    }
}
