//! State on disk: every acknowledged write is durable, a restart with the same file (and state dir) loses
//! nothing — state, token signing key, CA — and the simulator stays usable with 10,000 identities.

mod common;

use common::*;
use idbind_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

fn persistent(dir: &std::path::Path) -> SimConfig {
    let mut cfg = config();
    cfg.state_file = Some(dir.join("state.json"));
    cfg.state_dir = Some(dir.join("run"));
    cfg
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_with_the_same_file_loses_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let h = Simulator::start(persistent(dir.path())).await?;
    let endpoint: Value = serde_json::from_slice(&std::fs::read(dir.path().join("run/endpoint.json"))?)?;
    assert_eq!(endpoint["https"], https(&h));
    assert_eq!(std::fs::read_to_string(dir.path().join("run/endpoint"))?.trim(), https(&h));
    let ca_before = std::fs::read_to_string(dir.path().join("run/ca.pem"))?;
    assert_eq!(Some(ca_before.as_str()), h.ca_pem());

    let arm = Arm::new(&h).await?;
    let created =
        arm.put(&identity_path("kept-one"), json!({"location": "westeurope", "tags": {"a": "b"}})).await?;
    assert_eq!(created.status, 201);
    // Acknowledged means on disk, before any shutdown.
    let on_disk = std::fs::read_to_string(dir.path().join("state.json"))?;
    assert!(on_disk.contains("kept-one"));
    arm.put(&fic_path("kept-one", "fic-1"), fic_body("https://issuer.example", "system:serviceaccount:a:b"))
        .await?;
    let pid = created.body["properties"]["principalId"].clone();
    let ra = arm.put(&ra_path(&vault_scope(KV_RBAC), "7d0c2f4a-1b2c-4d5e-8f90-000000000001"), json!({"properties": {"roleDefinitionId": role_id(SECRETS_USER), "principalId": pid, "principalType": "ServicePrincipal"}})).await?;
    assert_eq!(ra.status, 201);
    let pol = arm.put(&format!("{}/accessPolicies/add?api-version=2023-07-01", vault_scope(KV_POLICIES)), json!({"properties": {"accessPolicies": [{"tenantId": h.tenant_id(), "objectId": pid, "permissions": {"secrets": ["get"]}}]}})).await?;
    assert_eq!(pol.status, 200);
    let state_before = h.state();
    h.shutdown().await?;

    let h2 = Simulator::start(persistent(dir.path())).await?;
    assert_eq!(h2.state(), state_before);
    assert_eq!(std::fs::read_to_string(dir.path().join("run/ca.pem"))?, ca_before, "the CA is reused");
    // The old token and the old CA both still work against the new process.
    let arm2 = Arm { base: https(&h2), client: client(&h2), token: arm.token.clone() };
    let old_ca_client = arm.client.clone();
    let r = old_ca_client
        .get(format!("{}{}", https(&h2), identity_path("kept-one")))
        .bearer_auth(&arm.token)
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    assert_eq!(arm2.get(&fic_path("kept-one", "fic-1")).await?.status, 200);
    assert_eq!(
        arm2.get(&identity_path("kept-one")).await?.body["properties"]["clientId"],
        created.body["properties"]["clientId"]
    );

    // A crash (no graceful shutdown) after an acknowledged write keeps it too.
    assert_eq!(arm2.delete(&fic_path("kept-one", "fic-1")).await?.status, 200);
    drop(h2);
    let h3 = Simulator::start(persistent(dir.path())).await?;
    let arm3 = Arm::new(&h3).await?;
    assert_eq!(arm3.get(&fic_path("kept-one", "fic-1")).await?.status, 404);
    assert_eq!(arm3.get(&identity_path("kept-one")).await?.status, 200);
    h3.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_are_all_durable() -> TestResult {
    let dir = tempfile::tempdir()?;
    let h = Simulator::start(persistent(dir.path())).await?;
    let arm = std::sync::Arc::new(Arm::new(&h).await?);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let arm = arm.clone();
        tasks.push(tokio::spawn(async move {
            arm.put(&identity_path(&format!("burst-{i}")), json!({"location": "westeurope"}))
                .await
                .map(|r| r.status)
                .map_err(|e| e.to_string())
        }));
    }
    for t in tasks {
        assert_eq!(t.await?, Ok(201));
    }
    // Without a shutdown, the file already holds all 64.
    let file: Value = serde_json::from_slice(&std::fs::read(dir.path().join("state.json"))?)?;
    let ids = file["state"]["subscriptions"][SUB]["resourceGroups"][RG]["identities"]
        .as_object()
        .map(serde_json::Map::len);
    assert_eq!(ids, Some(64));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_identities() -> TestResult {
    let mut cfg = config();
    cfg.behaviour.page_size = 1000;
    let h = Simulator::start(cfg).await?;
    let base = h.http_url().unwrap_or_default().to_owned();
    let token = h.issue_token(APP_OID, APP_ID)?;
    let c = reqwest::Client::new();
    let started = std::time::Instant::now();
    let n = 10_000usize;
    let workers = 16;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (c, base, token) = (c.clone(), base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut ok = 0usize;
            for i in (w..n).step_by(workers) {
                let r = c
                    .put(format!("{base}{}", identity_path(&format!("bulk-{i:05}"))))
                    .bearer_auth(&token)
                    .json(&json!({"location": "westeurope"}))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status() == 201) {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut created = 0;
    for t in tasks {
        created += t.await?;
    }
    assert_eq!(created, n);
    let created_in = started.elapsed();
    let t = std::time::Instant::now();
    let mut seen = 0;
    let mut next = Some(format!(
        "{base}/subscriptions/{SUB}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version={MSI_API}"
    ));
    while let Some(url) = next {
        let page: Value = c.get(&url).bearer_auth(&token).send().await?.json().await?;
        seen += page["value"].as_array().map(Vec::len).unwrap_or(0);
        next = page["nextLink"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, n);
    let r = c.get(format!("{base}{}", identity_path("bulk-09999"))).bearer_auth(&token).send().await?;
    assert_eq!(r.status(), 200);
    println!("created {n} identities in {created_in:?}; listed them in {:?}", t.elapsed());
    h.shutdown().await?;
    Ok(())
}
