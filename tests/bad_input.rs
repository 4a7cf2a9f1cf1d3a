//! The bad-input catalogue, end to end (real API server, simulator over HTTPS, the operator in this process):
//! mistakes only the cluster or Azure can reveal each give a clear condition and an Event, make no stray
//! Azure write, and clear once the input is fixed. What the API server itself rejects is in
//! tests/api_server.rs; what validation rejects, in the unit and property tests.

use std::time::Duration;

mod common;

use common::e2e::{
    APP_ID, APP_SECRET, Env, KV_RG, RG, SUB, TestResult, eventually, identities, start, start_with,
};
use idbind::{azure::AzureApi, core::validate::Policy};
use serde_json::{Value, json};

fn manifest(name: &str, sa: &str, identity: Value, vaults: Value) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
           "spec": {"serviceAccountName": sa, "identity": identity, "keyVaults": vaults}})
}

fn kv_shop() -> Value {
    json!([{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}])
}

/// Waits for `binding` to be Stalled for `reason`, checks that the simulator saw no write meanwhile and that
/// an Event with that reason names the binding.
async fn stalls_without_writing(env: &Env, binding: &str, reason: &str, writes_before: u64) -> TestResult {
    env.wait_condition(binding, "Stalled", "True", reason, Duration::from_secs(60)).await?;
    assert_eq!(env.condition(binding, "Ready")?, ("False".to_string(), reason.to_string()));
    assert_eq!(env.writes(), writes_before, "{binding}: {reason} must be found before any Azure write");
    eventually(&format!("a {reason} Event for {binding}"), Duration::from_secs(30), || {
        let events = env.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={binding},reason={reason}"),
            "-o",
            "name",
        ])?;
        Ok((!events.trim().is_empty()).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn colliding_identities_shared_service_accounts_and_foreign_scopes_stall_until_fixed() -> TestResult {
    let env = start("bad-collide").await?;
    for sa in ["app", "app2"] {
        env.kubectl(&["create", "serviceaccount", sa])?;
    }
    env.apply(&manifest("first", "app", json!({"name": "team-app"}), kv_shop()))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/first"])?;

    // Another binding asks for the same identity name: it belongs to "first" (tags), so the second one is
    // told, and "first" is not touched.
    let writes = env.writes();
    env.apply(&manifest("second", "app2", json!({"name": "team-app"}), kv_shop()))?;
    stalls_without_writing(&env, "second", "IdentityConflict", writes).await?;

    // A third binding for the ServiceAccount "first" already binds: one ServiceAccount carries one client id,
    // so the later binding stalls instead of the two overwriting each other.
    env.apply(&manifest("third", "app", json!({}), kv_shop()))?;
    stalls_without_writing(&env, "third", "ServiceAccountConflict", writes).await?;
    let annotations = env.kubectl(&[
        "get",
        "serviceaccount",
        "app",
        "-o",
        "jsonpath={.metadata.annotations.azure\\.workload\\.identity/client-id}",
    ])?;
    let first_client = env.kubectl(&["get", "wib", "first", "-o", "jsonpath={.status.identity.clientId}"])?;
    assert_eq!(annotations, first_client, "the first binding keeps its ServiceAccount");

    // A vault in another subscription is refused by the default policy.
    let foreign = format!(
        "/subscriptions/00000000-0000-0000-0000-0000000000ff/resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/kv-other"
    );
    env.apply(&manifest(
        "fourth",
        "app2",
        json!({}),
        json!([{"resourceId": foreign, "roles": ["Key Vault Secrets User"]}]),
    ))?;
    stalls_without_writing(&env, "fourth", "PolicyViolation", writes).await?;

    // Fixed: each gets its own identity, ServiceAccount and vault, and converges.
    env.kubectl(&["create", "serviceaccount", "app3"])?;
    env.kubectl(&["create", "serviceaccount", "app4"])?;
    env.apply(&manifest("second", "app2", json!({"name": "team-app-2"}), kv_shop()))?;
    env.apply(&manifest("third", "app3", json!({}), kv_shop()))?;
    env.apply(&manifest("fourth", "app4", json!({}), kv_shop()))?;
    env.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=90s",
        "wib/second",
        "wib/third",
        "wib/fourth",
    ])?;
    for b in ["second", "third", "fourth"] {
        assert_eq!(env.condition(b, "Stalled")?.0, "", "{b}: Stalled clears");
    }
    assert_eq!(identities(&env.sim.state_typed()).len(), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_twenty_first_federated_credential_is_refused_before_writing() -> TestResult {
    let policy = Policy { allow_existing_identity: true, ..Policy::default() };
    let env = start_with("bad-fic-limit", policy, |_| {}).await?;
    env.kubectl(&["create", "serviceaccount", "worker"])?;
    // A team's shared identity that already federates 20 subjects (Azure's limit), and one with room.
    let api = common::arm_api(&env.sim, APP_ID, APP_SECRET)?;
    let id = |name: &str| {
        format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        )
    };
    api.put_identity(&id("shared-full").parse()?, "westeurope", &Default::default()).await?;
    api.put_identity(&id("shared-roomy").parse()?, "westeurope", &Default::default()).await?;
    for n in 0..20 {
        let fic = idbind::azure::FederatedCredential {
            name: format!("other-{n}"),
            issuer: "https://elsewhere.example/".into(),
            subject: format!("system:serviceaccount:x:sa{n}"),
            audiences: vec!["api://AzureADTokenExchange".into()],
        };
        api.put_federated_credential(&id("shared-full").parse()?, &fic).await?;
    }
    let writes = env.writes();
    env.apply(&manifest("worker", "worker", json!({"resourceId": id("shared-full")}), kv_shop()))?;
    stalls_without_writing(&env, "worker", "FederatedCredentialLimit", writes).await?;
    assert_eq!(env.condition("worker", "FederatedCredentialReady")?.0, "False");

    env.apply(&manifest("worker", "worker", json!({"resourceId": id("shared-roomy")}), kv_shop()))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/worker"])?;
    let state = env.sim.state_typed();
    let full =
        identities(&state).into_iter().find(|i| i.name == "shared-full").ok_or("shared-full vanished")?;
    assert_eq!(full.federated_identity_credentials.len(), 20, "the full identity was never written to");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_account_deleted_under_a_ready_binding_is_reported_and_rebound() -> TestResult {
    let env = start("bad-sa-gone").await?;
    env.ready_binding("api", &["Key Vault Secrets User"])?;
    let writes = env.writes();

    env.kubectl(&["delete", "serviceaccount", "api"])?;
    env.wait_condition(
        "api",
        "ServiceAccountReady",
        "False",
        "ServiceAccountNotFound",
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(env.condition("api", "Ready")?, ("False".into(), "ServiceAccountNotFound".into()));
    assert_eq!(
        env.condition("api", "Stalled")?.0,
        "",
        "a missing ServiceAccount is waited for, not a failure"
    );
    assert_eq!(env.writes(), writes, "Azure is left as it is");

    env.kubectl(&["create", "serviceaccount", "api"])?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=60s", "wib/api"])?;
    let client = env.kubectl(&["get", "wib", "api", "-o", "jsonpath={.status.identity.clientId}"])?;
    let annotated = env.kubectl(&[
        "get",
        "serviceaccount",
        "api",
        "-o",
        "jsonpath={.metadata.annotations.azure\\.workload\\.identity/client-id}",
    ])?;
    assert_eq!(annotated, client, "the new ServiceAccount is annotated");
    assert_eq!(env.writes(), writes, "rebinding needed no Azure write");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_namespace_still_cleans_azure() -> TestResult {
    let env = start("bad-ns-gone").await?;
    env.ready_binding("job", &["Key Vault Secrets User"])?;
    assert_eq!(identities(&env.sim.state_typed()).len(), 1);

    // The namespace controller deletes the binding (and the ServiceAccount, maybe first); the finalizer must
    // still finish, or the namespace would hang in Terminating.
    env.plane.kubectl_ok(&["delete", "namespace", &env.ns, "--wait=false"])?;
    eventually("the namespace to be gone", Duration::from_secs(120), || {
        let out = env.plane.kubectl(&["get", "namespace", &env.ns, "-o", "name"]).output()?;
        Ok((!out.status.success()).then_some(()))
    })
    .await?;
    let state = env.sim.state_typed();
    assert!(identities(&state).is_empty(), "identity left behind");
    assert!(state.role_assignments.is_empty(), "role assignment left behind");
    Ok(())
}
