//! The operator's own workload-identity credential (`idbind::azure::workload_identity`) end to end: real
//! ServiceAccount tokens from the local kube-apiserver (the OIDC issuer), exchanged at the simulator's Entra
//! endpoint, which validates them against a FIC and checks `exp` on its own clock. The test runs past the
//! first token's expiry, as a long-lived operator does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use idbind::azure::arm::{ArmApi, Cloud, client_secret_credential, http_client};
use idbind::azure::workload_identity::FileFederatedCredential;
use idbind::azure::{AzureApi, FederatedCredential};
use idbind::core::reason::Reason;
use idbind::core::resource_id::ResourceId;
use idbind_sim::{Seed, SeedApp, SimConfig, Simulator};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

const SUB: &str = "00000000-0000-0000-0000-0000000000a1";
const RG: &str = "rg-identities";
const APP_ID: &str = "11111111-1111-1111-1111-111111111111";
const APP_SECRET: &str = "operator-secret";

#[tokio::test(flavor = "multi_thread")]
async fn the_credential_keeps_working_past_the_first_tokens_expiry() -> TestResult {
    let plane = idbind_testenv::shared();
    let ns = plane.fresh_namespace("wi")?;
    plane.kubectl_ok(&["create", "serviceaccount", "operator", "-n", &ns])?;
    let token = |duration: &str| {
        plane.kubectl_ok(&[
            "create",
            "token",
            "operator",
            "-n",
            &ns,
            "--audience",
            "api://AzureADTokenExchange",
            "--duration",
            duration,
        ])
    };

    let mut seed = Seed::default();
    seed.add_rg(SUB, RG, Some("westeurope".into()));
    seed.apps.push(SeedApp {
        client_id: APP_ID.into(),
        client_secret: APP_SECRET.into(),
        object_id: None,
        display_name: None,
    });
    // The app is the administrator who sets the operator's identity up: Owner of the subscription.
    seed.assign(&idbind_sim::seed::derived_object_id(APP_ID), "Owner", &format!("/subscriptions/{SUB}"));
    let mut config = SimConfig::for_tests();
    config.seed = seed;
    // Entra fetches the issuer's discovery document and keys from the API server over TLS.
    config.entra.extra_ca_files = vec![plane.ca_file()];
    // Short Entra tokens, so every call after the first minute needs a new exchange.
    config.entra.token_lifetime_secs = 60;
    let h = Simulator::start(config).await?;
    let cloud = Cloud::Custom {
        arm_endpoint: h.https_url().ok_or("no HTTPS")?.to_string(),
        authority_host: h.authority_host().ok_or("no authority host")?,
        audience: "https://management.azure.com".into(),
    };
    let http = http_client(h.ca_pem().map(str::as_bytes))?;

    // The operator's identity, federated with its ServiceAccount, set up with a client secret.
    let setup = ArmApi::new(
        &cloud,
        http.clone(),
        client_secret_credential(&cloud, http.clone(), h.tenant_id(), APP_ID, APP_SECRET)?,
    )?;
    let identity: ResourceId = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/operator"
    )
    .parse()?;
    let ids = setup.put_identity(&identity, "westeurope", &BTreeMap::new()).await?;
    // The issuer exactly as the API server names itself in its tokens.
    let fic = FederatedCredential {
        name: "operator".into(),
        issuer: plane.server().to_string(),
        subject: format!("system:serviceaccount:{ns}:operator"),
        audiences: vec!["api://AzureADTokenExchange".into()],
    };
    setup.put_federated_credential(&identity, &fic).await?;
    // What README step 3 gives the operator's identity on its identities' group (the rest is not used here).
    let mut roles = Seed::default();
    roles.assign(
        &ids.principal_id,
        "Managed Identity Contributor",
        &format!("/subscriptions/{SUB}/resourceGroups/{RG}"),
    );
    h.seed(roles).await?;

    let dir = std::env::temp_dir().join(format!("idbind-wi-e2e-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("token");
    // The shortest token the API server issues.
    std::fs::write(&file, token("10m")?)?;
    let credential =
        FileFederatedCredential::new(&cloud, http.clone(), h.tenant_id(), &ids.client_id, &file)?;
    let api = ArmApi::new(&cloud, http, Arc::new(credential))?;
    assert!(api.get_identity(&identity).await?.is_some());

    // Eleven minutes later on Entra's clock the projected token has expired.
    h.advance_clock(Duration::from_secs(11 * 60));
    let err = api.get_identity(&identity).await.err().ok_or("an expired assertion was accepted")?;
    assert_eq!((err.reason(), err.retryable()), (Reason::AuthenticationFailed, true), "{err}");
    assert!(err.to_string().contains("AADSTS700024"), "not the expired assertion: {err}");

    // The kubelet has rotated the file: the next exchange reads it again and succeeds.
    std::fs::write(&file, token("1h")?)?;
    assert!(api.get_identity(&identity).await?.is_some());
    std::fs::remove_dir_all(&dir)?;
    h.shutdown().await?;
    Ok(())
}
