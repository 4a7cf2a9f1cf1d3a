//! What idbind's integration tests share, compiled once: the end-to-end harness ([`e2e`]: the control plane,
//! the simulator, idbind's controller in the test's process), Azure RBAC as an administrator sets it up for
//! idbind ([`azure_rbac`]), the operator as a process ([`process`]) and a cluster of tenants around one
//! ([`tenancy`]), a workload pod with Azure's SDKs ([`workload`]), the API server's audit log ([`audit`]),
//! the soak's chaos ([`chaos`]), and a story's steps ([`steps`]). Which Azure operations are writes is the
//! simulator's to say (`idbind_sim::operations`).
//!
//! What no test uses is not here: the items a test uses are `pub`, the rest private, so the compiler reports
//! what nothing uses any more.

pub mod audit;
pub mod azure_rbac;
pub mod chaos;
pub mod e2e;
pub mod process;
pub mod steps;
pub mod tenancy;
pub mod workload;

use idbind::azure::arm::{ArmApi, Cloud, client_secret_credential, http_client};
use idbind_sim::SimHandle;

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

/// One token exchange at the simulator's Entra, as a workload makes it: `assertion` (a ServiceAccount token)
/// for a token of the identity `client_id`. The token response, or Entra's error answer.
pub async fn exchange(
    h: &SimHandle,
    client_id: &str,
    assertion: &str,
) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
    let ca = reqwest::Certificate::from_pem(h.ca_pem().ok_or("no CA")?.as_bytes())?;
    let http = reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).build()?;
    let token_url =
        format!("{}{}/oauth2/v2.0/token", h.authority_host().ok_or("no authority")?, h.tenant_id());
    let response = http
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", "https://management.azure.com/.default"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
        ])
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    if status.is_success() && body["access_token"].is_string() {
        Ok(body)
    } else {
        Err(format!("{status} {body}").into())
    }
}
