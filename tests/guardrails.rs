//! Multi-tenant guardrails end to end: a namespace owner tries to grant themselves more than the cluster
//! administrator's `WorkloadIdentityPolicy` allows, and every attempt is refused with a condition naming the
//! field, an Event, and no Azure write (or refused by the API server before idbind sees it). A policy that
//! starts selecting a waiting namespace lets its binding converge without any other change.
//!
//! Each attempt is a test of its own, with its own namespace, simulator and operator. An attempt whose
//! verdict depends on the policy is made in a namespace the policy has already admitted (its first binding
//! converged on the policy's arrival, so the operator judges by the policy); the others only need the policy
//! applied.

use std::time::Duration;

use idbind::core::conditions::{READY, STALLED};
use idbind::core::reason::Reason;
use idbind::{azure::AzureApi, core::settings::Ceiling};
use idbind_testkit::{
    e2e::{
        APP_ID, APP_SECRET, Env, KV_RG, RG, SUB, TestError, TestResult, eventually, identities, start_with,
        start_without_operator,
    },
    steps::step,
};
use serde_json::{Value, json};

fn binding(name: &str, sa: &str, identity: Value, vaults: Value) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
           "spec": {"serviceAccountName": sa, "identity": identity, "keyVaults": vaults}})
}

fn vault(rg: &str, name: &str, roles: &[&str]) -> Value {
    json!([{"name": name, "resourceGroup": rg, "roles": roles}])
}

fn identity(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

/// The namespace's first binding, which waits for a policy.
fn waiting() -> Value {
    binding("waiting", "app", json!({}), vault(KV_RG, "kv-shop", &["Key Vault Secrets User"]))
}

/// A shared cluster: policies required, brought identities allowed where a policy lists them. Azure holds
/// another team's vault, team B's identity (made by idbind for team B's binding) and a plain shared identity;
/// the namespace has the ServiceAccount `app`.
async fn shared_cluster(prefix: &str) -> Result<Env, TestError> {
    let ceiling = Ceiling { allow_existing_identity: true, ..Ceiling::default() };
    let env = start_with(prefix, ceiling, |c| c.seed.add_vault(SUB, "rg-team-b", "kv-team-b", true)).await?;
    env.kubectl(&["create", "serviceaccount", "app"])?;
    let api = idbind_testkit::arm_api(&env.sim, APP_ID, APP_SECRET)?;
    let team_b_tags = [
        ("idbind.dev.cluster", "e2e"),
        ("idbind.dev.namespace", "team-b"),
        ("idbind.dev.binding", "payments"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    api.put_identity(&identity("team-b-payments").parse()?, "westeurope", &team_b_tags).await?;
    api.put_identity(&identity("shared-tools").parse()?, "westeurope", &Default::default()).await?;
    Ok(env)
}

/// The administrator's policy for the test's namespace: its own vault, reader roles, one brought identity —
/// and, by mistake, team B's identity too (the operator still refuses it). Returns the policy's name.
fn apply_policy(env: &Env) -> Result<String, TestError> {
    let policy_name = format!("{}-policy", env.ns);
    let policy = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy", "metadata": {"name": policy_name},
        "spec": {"namespaces": [env.ns], "keyVaults": [{"resourceGroup": KV_RG, "name": "kv-shop"}],
                 "existingIdentities": [identity("shared-tools"), identity("team-b-payments")]}});
    env.apply(&policy)?;
    Ok(policy_name)
}

/// Applies the policy; the waiting binding converges on its arrival alone. Returns the policy's name.
fn admit(env: &Env) -> Result<String, TestError> {
    let policy_name = apply_policy(env)?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/waiting"])?;
    Ok(policy_name)
}

/// A [`shared_cluster`] with the policy for its namespace, and the Azure writes made so far. (The operator
/// may not have seen the policy yet: fine for attempts whose verdict does not depend on it.)
async fn with_policy(prefix: &str) -> Result<(Env, u64), TestError> {
    let env = shared_cluster(prefix).await?;
    apply_policy(&env)?;
    let writes = env.writes();
    Ok((env, writes))
}

/// A [`shared_cluster`] whose namespace the policy has admitted (the operator judges it by the policy now),
/// and the Azure writes made so far.
async fn admitted(prefix: &str) -> Result<(Env, u64), TestError> {
    let env = shared_cluster(prefix).await?;
    env.apply(&waiting())?;
    admit(&env)?;
    let writes = env.writes();
    Ok((env, writes))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_admits_a_waiting_namespace_and_its_deletion_refuses_it_again() -> TestResult {
    let env = shared_cluster("guard-admit").await?;
    let writes = env.writes();

    step("no policy selects the namespace: nothing may be bound", async {
        env.apply(&waiting())?;
        env.wait_condition("waiting", STALLED, "True", Reason::PolicyViolation, Duration::from_secs(60))
            .await?;
        let message = env.message("waiting", STALLED)?;
        assert!(
            message.contains("metadata.namespace") && message.contains("no WorkloadIdentityPolicy"),
            "{message}"
        );
        Ok(())
    })
    .await?;

    let policy_name = step("a policy admits the namespace: the waiting binding converges", async {
        let policy_name = admit(&env)?;
        let writes_after_admitted = env.writes();
        assert!(writes_after_admitted > writes, "the admitted binding was created in Azure");
        Ok(policy_name)
    })
    .await?;

    step("the policy deleted: the binding is refused again", async {
        // Deleting the policy takes the namespace's permission away: new verdicts refuse, and the bindings
        // say so (Azure keeps what they hold until they are deleted or fixed).
        env.plane.kubectl_ok(&["delete", "workloadidentitypolicy", &policy_name])?;
        env.wait_condition("waiting", STALLED, "True", Reason::PolicyViolation, Duration::from_secs(60)).await
    })
    .await
}

/// Applies binding `name` (of a ServiceAccount `app-x`) asking for `vaults`, and checks that it is refused:
/// Stalled with `reason`, a message naming `field`, an Event, and no Azure write since
/// `writes_after_admitted`.
async fn refused(
    (env, writes_after_admitted): (Env, u64),
    name: &str,
    vaults: Value,
    field: &str,
    reason: Reason,
) -> TestResult {
    env.apply(&binding(name, "app-x", json!({}), vaults))?;
    env.wait_condition(name, STALLED, "True", reason, Duration::from_secs(60)).await?;
    let message = env.message(name, READY)?;
    assert!(message.contains(field), "{name}: the message names {field}: {message}");
    // The Event follows the status write.
    let selector = format!("involvedObject.name={name},reason={reason}");
    eventually(&format!("{name}: an Event"), Duration::from_secs(30), || {
        let events = env.kubectl(&["get", "events", "--field-selector", &selector, "-o", "name"])?;
        Ok((!events.trim().is_empty()).then_some(()))
    })
    .await?;
    assert_eq!(env.writes(), writes_after_admitted, "no attempt wrote to Azure");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_role_is_refused_naming_the_role() -> TestResult {
    // The operator's ceiling refuses the role before any policy is consulted.
    refused(
        with_policy("guard-owner").await?,
        "owner",
        vault(KV_RG, "kv-shop", &["Owner"]),
        "spec.keyVaults[0].roles[0]",
        Reason::PolicyViolation,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn user_access_administrator_is_refused_naming_the_role() -> TestResult {
    // The operator's ceiling refuses the role before any policy is consulted.
    refused(
        with_policy("guard-uaa").await?,
        "uaa",
        vault(KV_RG, "kv-shop", &["User Access Administrator"]),
        "spec.keyVaults[0].roles[0]",
        Reason::PolicyViolation,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secrets_officer_role_is_refused_naming_the_role() -> TestResult {
    // The operator's ceiling refuses the role before any policy is consulted.
    refused(
        with_policy("guard-officer").await?,
        "officer",
        vault(KV_RG, "kv-shop", &["Key Vault Secrets Officer"]),
        "spec.keyVaults[0].roles[0]",
        Reason::PolicyViolation,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn another_team_s_vault_is_refused_naming_the_vault() -> TestResult {
    refused(
        admitted("guard-other-team").await?,
        "other-team",
        vault("rg-team-b", "kv-team-b", &["Key Vault Secrets User"]),
        "spec.keyVaults[0]",
        Reason::PolicyViolation,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_no_policy_lists_is_refused() -> TestResult {
    let (env, writes_after_admitted) = admitted("guard-unlisted").await?;
    env.apply(&binding("unlisted", "app-y", json!({"resourceId": identity("someone-elses")}), json!([])))?;
    env.wait_condition("unlisted", STALLED, "True", Reason::PolicyViolation, Duration::from_secs(60)).await?;
    assert_eq!(env.writes(), writes_after_admitted, "no attempt wrote to Azure");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn another_binding_s_identity_is_refused_though_a_policy_lists_it() -> TestResult {
    // Team B's identity, which the policy lists by mistake: refused whether or not the operator has seen the
    // policy yet (PolicyViolation until it has, then IdentityConflict).
    let (env, writes) = with_policy("guard-steal").await?;
    env.apply(&binding("steal", "app-z", json!({"resourceId": identity("team-b-payments")}), json!([])))?;
    env.wait_condition("steal", STALLED, "True", Reason::IdentityConflict, Duration::from_secs(60)).await?;
    let message = env.message("steal", READY)?;
    assert!(message.contains("team-b/payments"), "{message}");
    assert_eq!(env.writes(), writes, "no attempt wrote to Azure");
    let b = identities(&env.sim.state_typed())
        .into_iter()
        .find(|i| i.name == "team-b-payments")
        .ok_or("team B's identity vanished")?;
    assert!(b.federated_identity_credentials.is_empty(), "team B's identity gained no federation");
    Ok(())
}

/// What the API server refuses outright, before idbind sees it.
async fn refused_by_the_api_server(prefix: &str, manifest: &Value) -> TestResult {
    let env = start_without_operator(prefix, |_| {}).await?;
    assert!(env.apply(manifest).is_err(), "the API server accepted {manifest}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_refuses_a_subscription_as_scope() -> TestResult {
    let manifest = binding(
        "sub-scope",
        "app",
        json!({}),
        json!([{"resourceId": format!("/subscriptions/{SUB}"), "roles": ["Key Vault Reader"]}]),
    );
    refused_by_the_api_server("guard-sub-scope", &manifest).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_refuses_a_resource_group_as_scope() -> TestResult {
    let manifest = binding(
        "rg-scope",
        "app",
        json!({}),
        json!([{"resourceId": format!("/subscriptions/{SUB}/resourceGroups/{KV_RG}"), "roles": ["Key Vault Reader"]}]),
    );
    refused_by_the_api_server("guard-rg-scope", &manifest).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_refuses_a_service_account_of_another_namespace() -> TestResult {
    let manifest = binding("cross-ns", "kube-system:default", json!({}), json!([]));
    refused_by_the_api_server("guard-cross-ns", &manifest).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_brought_identity_the_policy_lists_converges() -> TestResult {
    let (env, _) = with_policy("guard-tools").await?;
    env.kubectl(&["create", "serviceaccount", "tools"])?;
    env.apply(&binding(
        "tools",
        "tools",
        json!({"resourceId": identity("shared-tools")}),
        vault(KV_RG, "kv-shop", &["Key Vault Reader"]),
    ))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/tools"])?;
    Ok(())
}
