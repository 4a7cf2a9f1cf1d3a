//! ARM throttling: per-principal and global token buckets, the managed-identity limits, 429 with Retry-After
//! and the remaining-requests headers. Time is the simulator's clock, advanced by the test instead of
//! sleeping.

mod common;

use std::time::Duration;

use common::*;
use idbind_sim::{BucketSpec, MsiLimits, SeedApp, Simulator, ThrottleConfig};
use serde_json::json;

fn small_buckets() -> ThrottleConfig {
    ThrottleConfig {
        writes: BucketSpec::new(5.0, 1.0),
        global_factor: 15.0,
        msi: MsiLimits { enabled: false, ..MsiLimits::default() },
        ..ThrottleConfig::default()
    }
}

fn rg_path(i: usize) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg-{i}?api-version=2021-04-01")
}

#[tokio::test(flavor = "multi_thread")]
async fn burst_beyond_the_bucket_is_throttled_and_retry_after_works() -> TestResult {
    let mut cfg = config();
    cfg.throttle = small_buckets();
    cfg.seed.apps.push(SeedApp {
        client_id: "app-two".into(),
        client_secret: "two".into(),
        object_id: Some("66666666-6666-6666-6666-666666666666".into()),
        display_name: None,
    });
    cfg.seed.assign("66666666-6666-6666-6666-666666666666", "Owner", &format!("/subscriptions/{SUB}"));
    let h = Simulator::start(cfg).await?;
    let arm = Arm::new(&h).await?;
    for i in 0..5 {
        let r = arm.put(&rg_path(i), json!({"location": "westeurope"})).await?;
        assert_eq!(r.status, 201);
        assert_eq!(r.header("x-ms-ratelimit-remaining-subscription-writes"), Some((4 - i).to_string()));
        assert_eq!(
            r.header("x-ms-ratelimit-remaining-subscription-global-writes"),
            Some((74 - i).to_string())
        );
    }
    let throttled = arm.put(&rg_path(5), json!({"location": "westeurope"})).await?;
    assert_eq!((throttled.status, throttled.code()), (429, "SubscriptionRequestsThrottled"));
    let retry_after: u64 = throttled.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
    assert_eq!(retry_after, 1);
    let msg = throttled.body["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains(&format!("'write' requests for subscription '{SUB}' actor '{APP_OID}'")), "{msg}");
    // Early retries are refused again and take no token.
    assert_eq!(arm.put(&rg_path(5), json!({"location": "westeurope"})).await?.status, 429);
    // Reads have their own bucket; another principal its own.
    let read = arm.get(&rg_path(0)).await?;
    assert_eq!(read.status, 200);
    assert_eq!(read.header("x-ms-ratelimit-remaining-subscription-reads"), Some(String::from("249")));
    let c = client(&h);
    let other =
        Arm { token: secret_token(&h, &c, "app-two", "two").await?, base: arm.base.clone(), client: c };
    assert_eq!(other.put(&rg_path(6), json!({"location": "westeurope"})).await?.status, 201);
    // Honour Retry-After and the request goes through.
    h.advance_clock(Duration::from_secs(retry_after));
    assert_eq!(arm.put(&rg_path(5), json!({"location": "westeurope"})).await?.status, 201);
    assert_eq!(h.counters().get("ResourceGroups_CreateOrUpdate", "429"), 2);
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_global_bucket_is_shared_by_all_principals() -> TestResult {
    let mut cfg = config();
    cfg.throttle = small_buckets();
    cfg.throttle.writes = BucketSpec::new(2.0, 1.0);
    cfg.throttle.global_factor = 2.0; // 4 writes for everyone together
    cfg.seed.apps.push(SeedApp {
        client_id: "app-two".into(),
        client_secret: "two".into(),
        object_id: None,
        display_name: None,
    });
    let two_oid = idbind_sim::seed::derived_object_id("app-two");
    cfg.seed.assign(&two_oid, "Owner", &format!("/subscriptions/{SUB}"));
    let h = Simulator::start(cfg).await?;
    let one = Arm::new(&h).await?;
    let c = client(&h);
    let two = Arm { token: secret_token(&h, &c, "app-two", "two").await?, base: one.base.clone(), client: c };
    for i in 0..2 {
        assert_eq!(one.put(&rg_path(i), json!({"location": "x"})).await?.status, 201);
        assert_eq!(two.put(&rg_path(10 + i), json!({"location": "x"})).await?.status, 201);
    }
    h.advance_clock(Duration::from_secs(1)); // one token back per principal
    let r = one.put(&rg_path(2), json!({"location": "x"})).await?;
    assert_eq!(r.status, 201, "{}", r.body); // global refills 2/s: 2 tokens back
    assert_eq!(two.put(&rg_path(12), json!({"location": "x"})).await?.status, 201);
    let r = two.put(&rg_path(13), json!({"location": "x"})).await?;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ms-ratelimit-remaining-subscription-global-writes"), Some(String::from("0")));
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn managed_identity_limits_per_subscription_and_per_identity() -> TestResult {
    let mut cfg = config();
    cfg.throttle = ThrottleConfig::default(); // ARM's numbers, MSI limits on
    let h = Simulator::start(cfg).await?;
    let arm = Arm::new(&h).await?;
    assert_eq!(arm.put(&identity_path("id-a"), json!({"location": "westeurope"})).await?.status, 201);
    // Per identity: 0.25 create/update per second.
    let again = arm.put(&identity_path("id-a"), json!({"location": "westeurope"})).await?;
    assert_eq!((again.status, again.code()), (429, "TooManyRequests"));
    assert_eq!(again.header("retry-after"), Some(String::from("4")));
    // Per subscription: 2 creates per second.
    assert_eq!(arm.put(&identity_path("id-b"), json!({"location": "westeurope"})).await?.status, 201);
    let third = arm.put(&identity_path("id-c"), json!({"location": "westeurope"})).await?;
    assert_eq!((third.status, third.header("retry-after")), (429, Some(String::from("1"))));
    h.advance_clock(Duration::from_secs(1));
    assert_eq!(arm.put(&identity_path("id-c"), json!({"location": "westeurope"})).await?.status, 201);
    h.advance_clock(Duration::from_secs(4));
    assert_eq!(arm.put(&identity_path("id-a"), json!({"location": "westeurope"})).await?.status, 200);
    // Switched off at runtime: no more 429s.
    h.set_throttle(ThrottleConfig::disabled());
    for _ in 0..20 {
        let r = arm.put(&identity_path("id-a"), json!({"location": "westeurope"})).await?;
        assert_eq!(r.status, 200);
        assert!(r.header("x-ms-ratelimit-remaining-subscription-writes").is_none());
    }
    h.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_sent_before_retry_after_is_not_processed_even_once_the_bucket_refilled() -> TestResult {
    let mut cfg = config();
    // One write, ten back per second: 100 ms after a 429 the bucket holds a token again, but Retry-After says
    // one second, and ARM does not process a request sent before that (docs/azure.md#arm-throttling).
    cfg.throttle = small_buckets();
    cfg.throttle.writes = BucketSpec::new(1.0, 10.0);
    cfg.seed.apps.push(SeedApp {
        client_id: "app-two".into(),
        client_secret: "two".into(),
        object_id: Some("66666666-6666-6666-6666-666666666666".into()),
        display_name: None,
    });
    cfg.seed.assign("66666666-6666-6666-6666-666666666666", "Owner", &format!("/subscriptions/{SUB}"));
    let h = Simulator::start(cfg).await?;
    let arm = Arm::new(&h).await?;
    let body = json!({"location": "westeurope"});
    assert_eq!(arm.put(&rg_path(0), body.clone()).await?.status, 201);
    let throttled = arm.put(&rg_path(1), body.clone()).await?;
    assert_eq!((throttled.status, throttled.header("retry-after")), (429, Some(String::from("1"))));

    h.advance_clock(Duration::from_millis(500));
    let early = arm.put(&rg_path(1), body.clone()).await?;
    assert_eq!((early.status, early.code()), (429, "SubscriptionRequestsThrottled"), "{}", early.body);
    // The new retry value is the time still to wait, rounded up, not a fresh second on top.
    assert_eq!(early.header("retry-after"), Some(String::from("1")));
    let msg = early.body["error"]["message"].as_str().unwrap_or("");
    assert!(msg.contains("try again after '1' seconds"), "{msg}");
    // Not processed: the resource group was not created.
    assert_eq!(arm.get(&rg_path(1)).await?.status, 404);
    // Another principal's bucket was never closed.
    let c = client(&h);
    let other = arm.with_token(secret_token(&h, &c, "app-two", "two").await?);
    assert_eq!(other.put(&rg_path(2), body.clone()).await?.status, 201);

    h.advance_clock(Duration::from_millis(500));
    assert_eq!(arm.put(&rg_path(1), body).await?.status, 201, "processed once Retry-After has passed");
    assert_eq!(arm.get(&rg_path(1)).await?.status, 200);
    assert_eq!(h.counters().get("ResourceGroups_CreateOrUpdate", "429"), 2);
    h.shutdown().await?;
    Ok(())
}
