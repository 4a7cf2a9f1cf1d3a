//! Azure's delays that clients must live with: a role assignment reaches Key Vault's data plane only after
//! `role_propagation_ms` (and a deleted one keeps working as long), and FIC writes on one identity stay in
//! flight for `fic_write_duration_ms`, 300 ms by default, so concurrent ones conflict as in ARM. Windows on
//! the simulator's clock are crossed by advancing it, never by sleeping.

mod common;

use std::time::Duration;

use common::*;
use idbind_sim::{SimConfig, Simulator};
use serde_json::json;

fn secret() -> String {
    format!("/secrets/db-password?api-version={KV_API}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_assignment_reaches_key_vault_only_after_the_window_and_a_deleted_one_lingers_as_long()
-> TestResult {
    let mut cfg = kv_config();
    cfg.behaviour.role_propagation_ms = 30_000;
    let h = Simulator::start(cfg).await?;
    let arm = Arm::new(&h).await?;
    h.set_secret(KV_RBAC, "db-password", "hunter2").await?;
    let kv = workload_vault(&h, KV_RBAC).await?;

    let assignment = assign(&arm, &vault_scope(KV_RBAC), SECRETS_USER, WORKLOAD_OID).await?;
    // ARM knows it at once; Key Vault does not yet, and says so in its own words.
    assert_eq!(arm.get(&assignment).await?.status, 200);
    let early = kv.get(&secret()).await?;
    assert_eq!(
        (early.status, early.body["error"]["innererror"]["code"].as_str()),
        (403, Some("ForbiddenByRbac")),
        "{}",
        early.body
    );
    assert!(
        early.body["error"]["message"].as_str().unwrap_or("").contains("please observe propagation time")
    );
    h.advance_clock(Duration::from_secs(29));
    assert_eq!(kv.get(&secret()).await?.status, 403, "29 s into a 30 s window");
    h.advance_clock(Duration::from_secs(1));
    let granted = kv.get(&secret()).await?;
    assert_eq!((granted.status, granted.body["value"].as_str()), (200, Some("hunter2")), "{}", granted.body);

    // Deleted: gone from ARM at once, still honoured by Key Vault for the window.
    assert_eq!(arm.delete(&assignment).await?.status, 200);
    assert_eq!(arm.get(&assignment).await?.status, 404);
    let listed = arm
        .get(&format!(
            "{}/providers/Microsoft.Authorization/roleAssignments?api-version={AUTHZ_API}&$filter=principalId%20eq%20'{WORKLOAD_OID}'",
            vault_scope(KV_RBAC)
        ))
        .await?;
    assert_eq!(listed.body["value"], json!([]), "{}", listed.body);
    assert_eq!(kv.get(&secret()).await?.status, 200, "a deleted assignment works until the window passed");
    h.advance_clock(Duration::from_secs(29));
    assert_eq!(kv.get(&secret()).await?.status, 200);
    h.advance_clock(Duration::from_secs(1));
    assert_eq!(kv.get(&secret()).await?.status, 403);
    // Re-created under the window: only after it again.
    let again = assign(&arm, &rg_scope(KV_RG), SECRETS_USER, WORKLOAD_OID).await?;
    assert_eq!(kv.get(&secret()).await?.status, 403);
    h.advance_clock(Duration::from_secs(30));
    assert_eq!(kv.get(&secret()).await?.status, 200);

    // Switched off at runtime: writes from then on take effect at once, both ways.
    h.set_role_propagation(Duration::ZERO);
    assert_eq!(arm.delete(&again).await?.status, 200);
    assert_eq!(kv.get(&secret()).await?.status, 403);
    assign(&arm, &vault_scope(KV_RBAC), SECRETS_USER, WORKLOAD_OID).await?;
    assert_eq!(kv.get(&secret()).await?.status, 200);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_role_window_survives_a_restart_with_the_state_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let persistent = || {
        let mut cfg = kv_config();
        cfg.state_file = Some(dir.path().join("state.json"));
        cfg.behaviour.role_propagation_ms = 60_000;
        cfg
    };
    let h = Simulator::start(persistent()).await?;
    let arm = Arm::new(&h).await?;
    h.set_secret(KV_RBAC, "db-password", "hunter2").await?;
    let first = assign(&arm, &vault_scope(KV_RBAC), SECRETS_USER, WORKLOAD_OID).await?;
    h.shutdown().await?;

    let h = Simulator::start(persistent()).await?;
    let kv = workload_vault(&h, KV_RBAC).await?;
    assert_eq!(kv.get(&secret()).await?.status, 403, "still inside its window after the restart");
    h.advance_clock(Duration::from_secs(60));
    assert_eq!(kv.get(&secret()).await?.body["value"], "hunter2", "the secret persisted too");
    let arm = Arm::new(&h).await?;
    arm.delete(&first).await?;
    let offset = h.now_ms();
    h.shutdown().await?;

    let h = Simulator::start(persistent()).await?;
    // The new process starts at wall time: bring its clock to where the last one was.
    h.advance_clock(Duration::from_millis(offset.saturating_sub(h.now_ms())));
    let kv = workload_vault(&h, KV_RBAC).await?;
    assert_eq!(kv.get(&secret()).await?.status, 200, "the deleted assignment's window persisted");
    h.advance_clock(Duration::from_secs(60));
    assert_eq!(kv.get(&secret()).await?.status, 403);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fic_writes_sent_together_on_one_identity_conflict_by_default() -> TestResult {
    assert_eq!(SimConfig::default().behaviour.fic_write_duration_ms, 300);
    assert_eq!(SimConfig::for_tests().behaviour.fic_write_duration_ms, 300);
    // No configuration of the window at all: the default is what every client meets.
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    for id in ["one", "two"] {
        assert_eq!(arm.put(&identity_path(id), json!({"location": "westeurope"})).await?.status, 201);
    }
    // Two connections open first, so the two writes leave together.
    let (one, two) = (identity_path("one"), identity_path("two"));
    let (a, b) = tokio::join!(arm.get(&one), arm.get(&two));
    assert_eq!((a?.status, b?.status), (200, 200));

    let body = |s: &str| fic_body("https://issuer.example", s);
    let (pa, pb) = (fic_path("one", "fic-a"), fic_path("one", "fic-b"));
    let (a, b) = tokio::join!(arm.put(&pa, body("s-a")), arm.put(&pb, body("s-b")));
    let (a, b) = (a?, b?);
    let mut outcomes = [(a.status, a.code().to_owned()), (b.status, b.code().to_owned())];
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            (201, String::new()),
            (409, String::from("ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity"))
        ]
    );
    let conflict = if a.status == 409 { &a } else { &b };
    assert!(
        conflict.body["error"]["message"].as_str().unwrap_or("").contains(&format!(
            "'/subscriptions/{SUB}/resourcegroups/{RG}/providers/microsoft.managedidentity/userassignedidentities/one'"
        )),
        "{}",
        conflict.body
    );
    // On two identities at once: both go through. One after the other on the same identity: both too.
    let (pa, pb) = (fic_path("one", "fic-c"), fic_path("two", "fic-c"));
    let (a, b) = tokio::join!(arm.put(&pa, body("s-c")), arm.put(&pb, body("s-c")));
    assert_eq!((a?.status, b?.status), (201, 201));
    assert_eq!(arm.put(&fic_path("one", "fic-d"), body("s-d")).await?.status, 201);
    assert_eq!(arm.put(&fic_path("one", "fic-e"), body("s-e")).await?.status, 201);
    assert_eq!(h.counters().get("FederatedIdentityCredentials_CreateOrUpdate", "409"), 1);
    h.shutdown().await?;
    Ok(())
}
