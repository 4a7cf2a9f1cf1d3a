//! The bad-input catalogue, end to end (real API server, simulator over HTTPS, the operator in this process):
//! mistakes only the cluster or Azure can reveal each give a clear condition and an Event, make no stray
//! Azure write, and clear once the input is fixed. What the API server itself rejects is in
//! tests/api_server.rs; what validation rejects, in the unit and property tests.

use std::time::Duration;

use idbind::core::conditions::{FEDERATED_CREDENTIAL_READY, READY, SERVICE_ACCOUNT_READY, STALLED};
use idbind::core::reason::Reason;
use idbind::{azure::AzureApi, core::settings::Ceiling};
use idbind_testkit::e2e::{
    APP_ID, APP_SECRET, Env, KV_RG, RG, SUB, TestError, TestResult, eventually, identities, start, start_with,
};
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
async fn stalls_without_writing(env: &Env, binding: &str, reason: Reason, writes_before: u64) -> TestResult {
    env.wait_condition(binding, STALLED, "True", reason, Duration::from_secs(60)).await?;
    assert_eq!(env.condition(binding, READY)?, ("False".to_string(), reason.to_string()));
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

/// `first`, bound to ServiceAccount `app` with identity `team-app`, Ready: what the collisions below collide
/// with.
async fn first_binding(prefix: &str) -> Result<Env, TestError> {
    let env = start(prefix).await?;
    env.kubectl(&["create", "serviceaccount", "app"])?;
    env.apply(&manifest("first", "app", json!({"name": "team-app"}), kv_shop()))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/first"])?;
    Ok(env)
}

/// `binding` fixed (`manifest` gives it an identity, ServiceAccount and vault of its own): it converges,
/// Stalled clears, and Azure holds `identities_left` identities, one per binding that converged.
fn fixed(env: &Env, binding: &str, manifest: &Value, identities_left: usize) -> TestResult {
    env.apply(manifest)?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", &format!("wib/{binding}")])?;
    assert_eq!(env.condition(binding, STALLED)?.0, "", "{binding}: Stalled clears");
    assert_eq!(
        identities(&env.sim.state_typed()).len(),
        identities_left,
        "one identity per binding that converged"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_name_another_binding_owns_stalls_without_writing_until_renamed() -> TestResult {
    let env = first_binding("bad-collide-id").await?;
    env.kubectl(&["create", "serviceaccount", "app2"])?;

    // Another binding asks for the same identity name: it belongs to "first" (tags), so the second one is
    // told, and "first" is not touched.
    let writes = env.writes();
    env.apply(&manifest("second", "app2", json!({"name": "team-app"}), kv_shop()))?;
    stalls_without_writing(&env, "second", Reason::IdentityConflict, writes).await?;

    // Fixed: an identity of its own.
    fixed(&env, "second", &manifest("second", "app2", json!({"name": "team-app-2"}), kv_shop()), 2)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_account_another_binding_binds_stalls_and_the_first_keeps_it() -> TestResult {
    let env = first_binding("bad-collide-sa").await?;

    // A binding for the ServiceAccount "first" already binds: one ServiceAccount carries one client id, so
    // the later binding stalls instead of the two overwriting each other.
    let writes = env.writes();
    env.apply(&manifest("third", "app", json!({}), kv_shop()))?;
    stalls_without_writing(&env, "third", Reason::ServiceAccountConflict, writes).await?;
    let annotations = env.kubectl(&[
        "get",
        "serviceaccount",
        "app",
        "-o",
        "jsonpath={.metadata.annotations.azure\\.workload\\.identity/client-id}",
    ])?;
    let first_client = env.kubectl(&["get", "wib", "first", "-o", "jsonpath={.status.identity.clientId}"])?;
    assert_eq!(annotations, first_client, "the first binding keeps its ServiceAccount");

    // Fixed: a ServiceAccount of its own.
    env.kubectl(&["create", "serviceaccount", "app3"])?;
    fixed(&env, "third", &manifest("third", "app3", json!({}), kv_shop()), 2)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vault_in_another_subscription_stalls_without_writing_until_fixed() -> TestResult {
    let env = start("bad-foreign-scope").await?;
    env.kubectl(&["create", "serviceaccount", "app2"])?;

    // A vault in another subscription is refused by the default policy.
    let writes = env.writes();
    let foreign = format!(
        "/subscriptions/00000000-0000-0000-0000-0000000000ff/resourceGroups/{KV_RG}/providers/Microsoft.KeyVault/vaults/kv-other"
    );
    env.apply(&manifest(
        "fourth",
        "app2",
        json!({}),
        json!([{"resourceId": foreign, "roles": ["Key Vault Secrets User"]}]),
    ))?;
    stalls_without_writing(&env, "fourth", Reason::PolicyViolation, writes).await?;

    // Fixed: a vault of this subscription (and a ServiceAccount of its own, as before).
    env.kubectl(&["create", "serviceaccount", "app4"])?;
    fixed(&env, "fourth", &manifest("fourth", "app4", json!({}), kv_shop()), 1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_twenty_first_federated_credential_is_refused_before_writing() -> TestResult {
    let policy = Ceiling { allow_existing_identity: true, ..Ceiling::default() };
    let env = start_with("bad-fic-limit", policy, |_| {}).await?;
    env.kubectl(&["create", "serviceaccount", "worker"])?;
    // A team's shared identity that already federates 20 subjects (Azure's limit), and one with room.
    let api = idbind_testkit::arm_api(&env.sim, APP_ID, APP_SECRET)?;
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
    // Bringing an identity takes a policy that lists it, whatever the ceiling.
    env.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy",
        "metadata": {"name": format!("{}-brings", env.ns)},
        "spec": {"namespaces": [env.ns], "keyVaults": [{"resourceGroup": KV_RG}],
                 "existingIdentities": [id("shared-full"), id("shared-roomy")]}}))?;
    let writes = env.writes();
    env.apply(&manifest("worker", "worker", json!({"resourceId": id("shared-full")}), kv_shop()))?;
    stalls_without_writing(&env, "worker", Reason::FederatedCredentialLimit, writes).await?;
    assert_eq!(env.condition("worker", FEDERATED_CREDENTIAL_READY)?.0, "False");

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
        SERVICE_ACCOUNT_READY,
        "False",
        Reason::ServiceAccountNotFound,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(env.condition("api", READY)?, ("False".into(), Reason::ServiceAccountNotFound.into()));
    assert_eq!(env.condition("api", STALLED)?.0, "", "a missing ServiceAccount is waited for, not a failure");
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
    let left = idbind_testkit::azure_rbac::workload_assignments(&state, idbind_testkit::e2e::APP_OBJECT_ID);
    assert!(left.is_empty(), "role assignment left behind: {left:?}");
    Ok(())
}
