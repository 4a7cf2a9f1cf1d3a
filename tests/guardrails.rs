//! Multi-tenant guardrails end to end: a namespace owner tries to grant themselves more than the cluster
//! administrator's `WorkloadIdentityPolicy` allows, and every attempt is refused with a condition naming the
//! field, an Event, and no Azure write (or refused by the API server before idbind sees it). A policy that
//! starts selecting a waiting namespace lets its binding converge without any other change.

use std::time::Duration;

mod common;

use common::e2e::{APP_ID, APP_SECRET, KV_RG, RG, SUB, TestResult, identities, start_with};
use idbind::{azure::AzureApi, core::validate::Policy};
use serde_json::{Value, json};

fn binding(name: &str, sa: &str, identity: Value, vaults: Value) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
           "spec": {"serviceAccountName": sa, "identity": identity, "keyVaults": vaults}})
}

fn vault(rg: &str, name: &str, roles: &[&str]) -> Value {
    json!([{"name": name, "resourceGroup": rg, "roles": roles}])
}

#[tokio::test(flavor = "multi_thread")]
async fn escalation_attempts_are_refused_and_a_policy_admits_a_waiting_namespace() -> TestResult {
    // A shared cluster: policies required, brought identities allowed where a policy lists them.
    let ceiling = Policy { allow_existing_identity: true, require_policy: true, ..Policy::default() };
    let env = start_with("guard", ceiling, |c| {
        c.seed.add_vault(SUB, "rg-team-b", "kv-team-b", true);
    })
    .await?;
    env.kubectl(&["create", "serviceaccount", "app"])?;
    let api = common::arm_api(&env.sim, APP_ID, APP_SECRET)?;
    let identity = |name: &str| {
        format!(
            "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        )
    };
    // Team B's identity, made by idbind for team B's binding, and a plain shared identity.
    let team_b_tags = [
        ("idbind.dev.cluster", "e2e"),
        ("idbind.dev.namespace", "team-b"),
        ("idbind.dev.binding", "payments"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into();
    api.put_identity(&identity("team-b-payments").parse()?, "westeurope", &team_b_tags).await?;
    api.put_identity(&identity("shared-tools").parse()?, "westeurope", &Default::default()).await?;
    let writes = env.writes();

    // No policy selects the namespace yet: nothing may be bound.
    env.apply(&binding("waiting", "app", json!({}), vault(KV_RG, "kv-shop", &["Key Vault Secrets User"])))?;
    env.wait_condition("waiting", "Stalled", "True", "PolicyViolation", Duration::from_secs(60)).await?;
    let message = env.kubectl(&[
        "get",
        "wib",
        "waiting",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Stalled\")].message}",
    ])?;
    assert!(
        message.contains("metadata.namespace") && message.contains("no WorkloadIdentityPolicy"),
        "{message}"
    );

    // The administrator's policy for this namespace: its own vault, reader roles, one brought identity — and,
    // by mistake, team B's identity too (the operator still refuses it).
    let policy_name = format!("{}-policy", env.ns);
    let policy = json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy", "metadata": {"name": policy_name},
        "spec": {"namespaces": [env.ns], "keyVaults": [{"resourceGroup": KV_RG, "name": "kv-shop"}],
                 "existingIdentities": [identity("shared-tools"), identity("team-b-payments")]}});
    env.apply(&policy)?;
    // The waiting binding converges on the policy's arrival alone.
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/waiting"])?;
    let writes_after_admitted = env.writes();
    assert!(writes_after_admitted > writes, "the admitted binding was created in Azure");

    let attempts: Vec<(&str, Value, &str, &str)> = vec![
        ("owner", vault(KV_RG, "kv-shop", &["Owner"]), "spec.keyVaults[0].roles[0]", "PolicyViolation"),
        (
            "uaa",
            vault(KV_RG, "kv-shop", &["User Access Administrator"]),
            "spec.keyVaults[0].roles[0]",
            "PolicyViolation",
        ),
        (
            "officer",
            vault(KV_RG, "kv-shop", &["Key Vault Secrets Officer"]),
            "spec.keyVaults[0].roles[0]",
            "PolicyViolation",
        ),
        (
            "other-team",
            vault("rg-team-b", "kv-team-b", &["Key Vault Secrets User"]),
            "spec.keyVaults[0]",
            "PolicyViolation",
        ),
    ];
    for (name, vaults, field, reason) in &attempts {
        env.apply(&binding(name, "app-x", json!({}), vaults.clone()))?;
        env.wait_condition(name, "Stalled", "True", reason, Duration::from_secs(60)).await?;
        let message = env.kubectl(&[
            "get",
            "wib",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
        ])?;
        assert!(message.contains(field), "{name}: the message names {field}: {message}");
        let events = env.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name},reason={reason}"),
            "-o",
            "name",
        ])?;
        assert!(!events.trim().is_empty(), "{name}: an Event");
    }

    // An identity no policy lists, and team B's identity, which a policy lists by mistake.
    env.apply(&binding("unlisted", "app-y", json!({"resourceId": identity("someone-elses")}), json!([])))?;
    env.wait_condition("unlisted", "Stalled", "True", "PolicyViolation", Duration::from_secs(60)).await?;
    env.apply(&binding("steal", "app-z", json!({"resourceId": identity("team-b-payments")}), json!([])))?;
    env.wait_condition("steal", "Stalled", "True", "IdentityConflict", Duration::from_secs(60)).await?;
    let message = env.kubectl(&[
        "get",
        "wib",
        "steal",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
    ])?;
    assert!(message.contains("team-b/payments"), "{message}");
    assert_eq!(env.writes(), writes_after_admitted, "no attempt wrote to Azure");
    let b = identities(&env.sim.state_typed())
        .into_iter()
        .find(|i| i.name == "team-b-payments")
        .ok_or("team B's identity vanished")?;
    assert!(b.federated_identity_credentials.is_empty(), "team B's identity gained no federation");

    // What the API server refuses outright: a subscription as scope, a ServiceAccount of another namespace.
    let refused = [
        binding(
            "sub-scope",
            "app",
            json!({}),
            json!([{"resourceId": format!("/subscriptions/{SUB}"), "roles": ["Key Vault Reader"]}]),
        ),
        binding(
            "rg-scope",
            "app",
            json!({}),
            json!([{"resourceId": format!("/subscriptions/{SUB}/resourceGroups/{KV_RG}"), "roles": ["Key Vault Reader"]}]),
        ),
        binding("cross-ns", "kube-system:default", json!({}), json!([])),
    ];
    for manifest in &refused {
        assert!(env.apply(manifest).is_err(), "the API server accepted {manifest}");
    }

    // The allowed brought identity works.
    env.kubectl(&["create", "serviceaccount", "tools"])?;
    env.apply(&binding(
        "tools",
        "tools",
        json!({"resourceId": identity("shared-tools")}),
        vault(KV_RG, "kv-shop", &["Key Vault Reader"]),
    ))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/tools"])?;

    // Deleting the policy takes the namespace's permission away: new verdicts refuse, and the bindings say so
    // (Azure keeps what they hold until they are deleted or fixed).
    env.plane.kubectl_ok(&["delete", "workloadidentitypolicy", &policy_name])?;
    env.wait_condition("waiting", "Stalled", "True", "PolicyViolation", Duration::from_secs(60)).await?;
    Ok(())
}
