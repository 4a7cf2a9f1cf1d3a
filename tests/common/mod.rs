//! Shared by the integration tests that drive the Azure layer against the simulator.
#![allow(dead_code)] // each test binary uses its own part of these helpers

pub mod azure_rbac;
pub mod chaos;
pub mod e2e;
pub mod process;
pub mod steps;
pub mod tenancy;
pub mod workload;

use idbind::azure::arm::{ArmApi, Cloud, client_secret_credential, http_client};
use idbind_sim::SimHandle;

/// The simulator's write operations: in steady state none of them may move.
pub const WRITE_OPERATIONS: &[&str] = &[
    "UserAssignedIdentities_CreateOrUpdate",
    "UserAssignedIdentities_Update",
    "UserAssignedIdentities_Delete",
    "FederatedIdentityCredentials_CreateOrUpdate",
    "FederatedIdentityCredentials_Delete",
    "RoleAssignments_Create",
    "RoleAssignments_Delete",
    "Vaults_UpdateAccessPolicy",
];

/// The ARM client idbind uses, pointed at the simulator over HTTPS (trusting its CA) and signed in as a
/// seeded app with a client secret.
pub fn arm_api(
    h: &SimHandle,
    app_id: &str,
    secret: &str,
) -> Result<ArmApi, Box<dyn std::error::Error + Send + Sync>> {
    let cloud = Cloud::Custom {
        arm_endpoint: h.https_url().ok_or("simulator has no HTTPS listener")?.to_string(),
        authority_host: h.authority_host().ok_or("simulator has no authority host")?,
        audience: "https://management.azure.com".into(),
    };
    let http = http_client(h.ca_pem().map(str::as_bytes))?;
    let credential = client_secret_credential(&cloud, http.clone(), h.tenant_id(), app_id, secret)?;
    Ok(ArmApi::new(&cloud, http, credential)?)
}
