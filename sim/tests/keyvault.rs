//! The Key Vault data plane as Azure's SDKs use it: reached as `https://<vault>.vault.azure.net` through the
//! simulator's CONNECT proxy, with the bearer challenge, the token checks, RBAC and access-policy
//! authorization, and the secret, certificate and key shapes clients parse.

mod common;

use common::*;
use idbind_sim::Simulator;

#[tokio::test(flavor = "multi_thread")]
async fn every_api_version_the_current_sdks_send_is_served() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let arm = Arm::new(&h).await?;
    assign(&arm, &vault_scope(KV_RBAC), SECRETS_USER, WORKLOAD_OID).await?;
    h.set_secret(KV_RBAC, "db-password", "hunter2").await?;
    let kv = workload_vault(&h, KV_RBAC).await?;
    // azure-keyvault-secrets 4.12 sends 2026-04-01 by default and still offers 2016-10-01; the Go, .NET and
    // Java SDKs send 7.x or 2025-07-01.
    for v in ["2016-10-01", "7.0", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01"] {
        let r = kv.get(&format!("/secrets/db-password?api-version={v}")).await?;
        assert_eq!(
            (r.status, r.body["value"].as_str()),
            (200, Some("hunter2")),
            "api-version {v}: {}",
            r.body
        );
    }
    for query in ["?api-version=7.9", ""] {
        let r = kv.get(&format!("/secrets/db-password{query}")).await?;
        assert_eq!((r.status, r.code()), (400, "BadParameter"), "{query}: {}", r.body);
    }
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_key_vaults_app_id_is_accepted_like_one_for_its_uri() -> TestResult {
    let h = Simulator::start(kv_config()).await?;
    let arm = Arm::new(&h).await?;
    assign(&arm, &vault_scope(KV_RBAC), SECRETS_USER, WORKLOAD_OID).await?;
    h.set_secret(KV_RBAC, "db-password", "hunter2").await?;
    let kv = workload_vault(&h, KV_RBAC).await?;
    // Key Vault's application id is a resource Entra issues tokens for, as its App ID URI is.
    let by_app_id = token_for(
        &h,
        &kv.client,
        WORKLOAD_ID,
        WORKLOAD_SECRET,
        "cfa8b339-82a2-471a-a3c9-0fc0be7a4093/.default",
    )
    .await?;
    let r = kv.with_token(by_app_id).get(&format!("/secrets/db-password?api-version={KV_API}")).await?;
    assert_eq!((r.status, r.body["value"].as_str()), (200, Some("hunter2")), "{}", r.body);
    h.shutdown().await?;
    Ok(())
}
