//! Fault injection (errors, latency, dropped connections), holds, counters and the admin API.

mod common;

use std::time::{Duration, Instant};

use common::*;
use idbind_sim::{FaultAction, FaultRule, HoldPhase, HoldSpec, LatencyConfig, Simulator};
use serde_json::{Value, json};

fn rule(op: &str, action: FaultAction, times: Option<u64>) -> FaultRule {
    FaultRule { operation: op.into(), action, rate: 1.0, times }
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_errors_latency_and_drops() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    let get = identity_path("faulty-one");
    for status in [500u16, 503, 429] {
        h.set_faults(vec![rule(
            "UserAssignedIdentities_Get",
            FaultAction::Error { status, retry_after_secs: None },
            Some(2),
        )]);
        for _ in 0..2 {
            let r = arm.get(&get).await?;
            assert_eq!(r.status, status);
            assert!(!r.code().is_empty());
            if status != 500 {
                assert_eq!(r.header("retry-after"), Some(String::from("1")));
            }
        }
        assert_eq!(arm.get(&get).await?.status, 404, "the budget of 2 is spent");
        // Other operations are untouched.
        assert_eq!(arm.get(&format!("{}?api-version=2023-07-01", vault_scope(KV_RBAC))).await?.status, 200);
    }
    let c = h.counters();
    assert_eq!(
        (
            c.get("UserAssignedIdentities_Get", "500"),
            c.get("UserAssignedIdentities_Get", "503"),
            c.get("UserAssignedIdentities_Get", "429")
        ),
        (2, 2, 2)
    );
    assert_eq!(c.get("UserAssignedIdentities_Get", "404"), 3);

    // Latency: injected and configured.
    h.set_faults(vec![rule("UserAssignedIdentities_Get", FaultAction::Latency { ms: 250 }, None)]);
    let t = Instant::now();
    arm.get(&get).await?;
    assert!(t.elapsed() >= Duration::from_millis(250));
    h.set_faults(vec![]);
    h.set_latency(LatencyConfig {
        default_ms: 0,
        per_operation_ms: [("Vaults_Get".to_owned(), 200)].into_iter().collect(),
    });
    let t = Instant::now();
    arm.get(&format!("{}?api-version=2023-07-01", vault_scope(KV_RBAC))).await?;
    assert!(t.elapsed() >= Duration::from_millis(200));
    h.set_latency(LatencyConfig::default());

    // A dropped connection: the client sees a transport error, not a response.
    h.set_faults(vec![rule("UserAssignedIdentities_Get", FaultAction::Drop, Some(1))]);
    let dropped = arm.get(&get).await;
    assert!(dropped.is_err(), "expected a transport error");
    assert_eq!(h.counters().get("UserAssignedIdentities_Get", "dropped"), 1);
    assert_eq!(arm.get(&get).await?.status, 404);
    assert_eq!(h.faults()[0].hits, 1);

    // A write that fails by injection changes nothing.
    h.set_faults(vec![rule(
        "UserAssignedIdentities_CreateOrUpdate",
        FaultAction::Error { status: 500, retry_after_secs: None },
        Some(1),
    )]);
    assert_eq!(arm.put(&identity_path("faulty-one"), json!({"location": "westeurope"})).await?.status, 500);
    assert_eq!(h.state_typed().identity_count(), 0);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_from_config_apply_to_the_token_endpoint_too() -> TestResult {
    let mut cfg = config();
    cfg.faults = vec![rule("Token", FaultAction::Error { status: 503, retry_after_secs: Some(7) }, Some(1))];
    let h = Simulator::start(cfg).await?;
    let c = client(&h);
    let first = app_token(&h, &c).await;
    assert!(first.is_err_and(|e| e.to_string().contains("503")));
    assert!(app_token(&h, &c).await.is_ok());
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_block_the_nth_write_until_released() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    // Hold the second identity write, before it changes anything.
    let rule_id = h.hold(HoldSpec {
        operation: Some("UserAssignedIdentities_CreateOrUpdate".into()),
        nth: Some(2),
        ..Default::default()
    });
    assert_eq!(arm.put(&identity_path("first-one"), json!({"location": "westeurope"})).await?.status, 201);
    let a2 = arm.clone();
    let held = tokio::spawn(async move {
        a2.put(&identity_path("second-one"), json!({"location": "westeurope"}))
            .await
            .map(|r| r.status)
            .map_err(|e| e.to_string())
    });
    assert!(h.wait_for_held(1, Duration::from_secs(10)).await);
    let status = h.holds();
    assert_eq!(status.held.len(), 1);
    assert_eq!(
        (status.held[0].operation.as_str(), status.held[0].rule_id),
        ("UserAssignedIdentities_CreateOrUpdate", rule_id)
    );
    assert!(status.held[0].path.ends_with("/second-one"));
    // Reads go on; the held write has not happened.
    assert_eq!(arm.get(&identity_path("second-one")).await?.status, 404);
    assert!(h.release_hold(status.held[0].id));
    assert_eq!(held.await?, Ok(201));
    assert_eq!(h.held_count(), 0);

    // After-commit hold: the write is done, only the answer waits (a crash here loses the answer, not the
    // write).
    h.hold(HoldSpec {
        operation: None,
        path_contains: Some("third-one".into()),
        nth: None,
        phase: HoldPhase::AfterCommit,
    });
    let a3 = arm.clone();
    let held = tokio::spawn(async move {
        a3.put(&identity_path("third-one"), json!({"location": "westeurope"}))
            .await
            .map(|r| r.status)
            .map_err(|e| e.to_string())
    });
    assert!(h.wait_for_held(1, Duration::from_secs(10)).await);
    assert_eq!(arm.get(&identity_path("third-one")).await?.status, 200);
    // The client gives up (operator killed): the write stays done.
    held.abort();
    assert_eq!(h.release_all_holds(), 1);
    assert_eq!(h.state_typed().identity_count(), 3);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_over_plain_http() -> TestResult {
    let h = start().await?;
    let arm = Arm::new(&h).await?;
    let admin = format!("{}/_sim", h.http_url().unwrap_or_default());
    let c = reqwest::Client::new();
    assert_eq!(c.get(format!("{admin}/healthz")).send().await?.status(), 200);
    let info: Value = c.get(format!("{admin}/info")).send().await?.json().await?;
    assert_eq!(info["urls"]["https"], https(&h));

    assert_eq!(arm.put(&identity_path("admin-one"), json!({"location": "westeurope"})).await?.status, 201);
    let state: Value = c.get(format!("{admin}/state")).send().await?.json().await?;
    assert_eq!(
        state["subscriptions"][SUB]["resourceGroups"][RG]["identities"]["admin-one"]["name"],
        "admin-one"
    );
    assert!(state["roleDefinitions"]["4633458b-17de-408a-b874-0445c86b69e6"].is_object());

    let counters: Value = c.get(format!("{admin}/counters")).send().await?.json().await?;
    assert_eq!(counters["UserAssignedIdentities_CreateOrUpdate"]["201"], 1);
    assert_eq!(counters["Token"]["200"], 1);

    // Faults at runtime.
    let put = c
        .put(format!("{admin}/faults"))
        .json(
            &json!([{"operation": "UserAssignedIdentities_Get", "kind": "error", "status": 503, "times": 1}]),
        )
        .send()
        .await?;
    assert_eq!(put.status(), 200);
    assert_eq!(arm.get(&identity_path("admin-one")).await?.status, 503);
    let faults: Value = c.get(format!("{admin}/faults")).send().await?.json().await?;
    assert_eq!(faults[0]["hits"], 1);
    assert_eq!(c.put(format!("{admin}/faults")).body("[{").send().await?.status(), 400);

    // Holds through the API.
    let created: Value = c
        .post(format!("{admin}/holds"))
        .json(&json!({"operation": "UserAssignedIdentities_Delete"}))
        .send()
        .await?
        .json()
        .await?;
    assert!(created["id"].is_u64());
    let a2 = arm.clone();
    let pending = tokio::spawn(async move {
        a2.delete(&identity_path("admin-one")).await.map(|r| r.status).map_err(|e| e.to_string())
    });
    let waited = c.get(format!("{admin}/holds/wait?count=1&timeoutMs=10000")).send().await?;
    assert_eq!(waited.status(), 200);
    let holds: Value = c.get(format!("{admin}/holds")).send().await?.json().await?;
    let held_id = holds["held"][0]["id"].as_u64().unwrap_or_default();
    assert_eq!(holds["held"][0]["operation"], "UserAssignedIdentities_Delete");
    assert_eq!(c.post(format!("{admin}/holds/{held_id}/release")).send().await?.status(), 200);
    assert_eq!(pending.await?, Ok(200));
    assert_eq!(c.get(format!("{admin}/holds/wait?count=1&timeoutMs=50")).send().await?.status(), 408);

    // Clock, throttle, seed, reset.
    let before: Value = c.get(format!("{admin}/clock")).send().await?.json().await?;
    let after: Value =
        c.post(format!("{admin}/clock/advance")).json(&json!({"seconds": 3600})).send().await?.json().await?;
    assert!(after["nowMs"].as_u64().unwrap_or(0) >= before["nowMs"].as_u64().unwrap_or(0) + 3_600_000);
    let throttle: Value = c.get(format!("{admin}/throttle")).send().await?.json().await?;
    assert_eq!(throttle["enabled"], false);
    let mut on = throttle.clone();
    on["enabled"] = json!(true);
    assert_eq!(c.put(format!("{admin}/throttle")).json(&on).send().await?.status(), 200);
    assert!(h.throttle().enabled);
    let seeded = c.post(format!("{admin}/seed")).json(&json!({"subscriptions": [{"id": "sub-two", "resourceGroups": [{"name": "rg-x", "vaults": [{"name": "kv-x"}]}]}]})).send().await?;
    assert_eq!(seeded.status(), 204);
    assert!(h.state_typed().resource_group("sub-two", "rg-x").is_some_and(|g| g.vaults.contains_key("kv-x")));
    assert_eq!(c.post(format!("{admin}/reset")).send().await?.status(), 204);
    assert!(!h.state_typed().subscriptions.contains_key("sub-two"));
    let counters: Value = c.get(format!("{admin}/counters")).send().await?.json().await?;
    assert_eq!(counters, json!({}));
    h.shutdown().await?;
    Ok(())
}
