//! The operator end to end: the real kube-apiserver (driven with kubectl), the ARM simulator over HTTPS, and
//! idbind's controller in this process. A binding converges to Ready, Azure holds exactly what it asks for,
//! the federation works (a TokenRequest token is exchanged at the simulator's Entra endpoint), steady state
//! makes no Azure writes, role edits change exactly the difference, bad input stalls with a reason and heals
//! when fixed, and deletion leaves nothing behind.
//!
//! Each test has its own namespace, simulator and controller. A test that walks one binding through a story
//! runs each step in [`step`], so a failure names its step.

use std::time::Duration;

use idbind::core::conditions::{
    FEDERATED_CREDENTIAL_READY, IDENTITY_READY, READY, RECONCILING, ROLE_ASSIGNMENTS_READY,
    SECRET_PROVIDER_CLASSES_READY, SERVICE_ACCOUNT_READY, STALLED,
};
use idbind::core::reason::Reason;
use idbind::{
    azure::budget::{Limits, MsiOp, Rate},
    azure::{AzureApi, arm::ArmApi},
    core::resource_id::{ROLE_ASSIGNMENT, ResourceId, USER_ASSIGNED_IDENTITY},
    core::settings::Ceiling,
};
use idbind_sim::{
    FaultAction, FaultRule,
    state::{Fic, Identity, RoleAssignment},
};
use idbind_testkit::{
    azure_rbac,
    e2e::{
        APP_ID, APP_OBJECT_ID, APP_SECRET, Env, KV_RG, READER, RG, SECRETS_USER, SUB, TestError, TestResult,
        eventually, identities, install_class_crd, start, start_with, start_with_budget,
    },
    steps::step,
};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_converges_federates_stays_quiet_follows_edits_and_cleans_up() -> TestResult {
    let env = start("e2e-life").await?;
    let identity = step("converges: Azure holds exactly what the binding asks for", async {
        env.ready_binding("orders", &["Key Vault Secrets User"])?;
        // Azure holds exactly the identity (tagged as ours), the FIC and the role assignment.
        let state = env.sim.state_typed();
        let ids = identities(&state);
        assert_eq!(ids.len(), 1, "{ids:?}");
        let identity = &ids[0];
        assert_eq!(
            (identity.tags.get("idbind.dev.namespace"), identity.tags.get("idbind.dev.binding")),
            (Some(&env.ns), Some(&"orders".to_string()))
        );
        let fics: Vec<_> = identity.federated_identity_credentials.values().collect();
        assert_eq!(fics.len(), 1);
        assert_eq!(
            (fics[0].issuer.as_str(), fics[0].subject.clone(), fics[0].audiences.clone()),
            (
                env.plane.server(),
                format!("system:serviceaccount:{}:orders", env.ns),
                vec!["api://AzureADTokenExchange".to_string()]
            )
        );
        let assignments: Vec<_> =
            state.role_assignments.values().filter(|ra| ra.principal_id == identity.principal_id).collect();
        assert_eq!(assignments.len(), 1);
        assert_eq!(
            (assignments[0].role_definition_guid.as_str(), assignments[0].principal_type.as_str()),
            (SECRETS_USER, "ServicePrincipal")
        );
        assert!(assignments[0].scope.to_ascii_lowercase().ends_with("/vaults/kv-shop"));
        Ok(identity.clone())
    })
    .await?;

    step("converges: the ServiceAccount, describe and the Ready Event", async {
        // The ServiceAccount carries both annotations; describe shows conditions and the Event.
        let annotations = annotations(&env, "orders")?;
        assert!(
            annotations.contains(&identity.client_id) && annotations.contains(&identity.tenant_id),
            "{annotations}"
        );
        let describe = env.kubectl(&["describe", "wib", "orders"])?;
        for needle in [
            IDENTITY_READY,
            FEDERATED_CREDENTIAL_READY,
            ROLE_ASSIGNMENTS_READY,
            SERVICE_ACCOUNT_READY,
            Reason::Reconciled.as_str(),
        ] {
            assert!(describe.contains(needle), "describe lacks {needle}:\n{describe}");
        }
        eventually("the Ready Event", Duration::from_secs(30), || {
            let events = env.kubectl(&[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name=orders,reason={}", Reason::Ready),
                "-o",
                "name",
            ])?;
            Ok((!events.trim().is_empty()).then_some(()))
        })
        .await
    })
    .await?;

    step("federates: a ServiceAccount token buys a token for the identity", async {
        // Federation end to end: a TokenRequest token for the ServiceAccount buys a token for the bound
        // identity at the simulator's Entra endpoint.
        let assertion =
            env.kubectl(&["create", "token", "orders", "--audience", "api://AzureADTokenExchange"])?;
        // As a workload does, it retries while Entra has not seen the new credential yet (AADSTS70021 for the
        // simulator's propagation window); any other answer fails at once.
        let started = std::time::Instant::now();
        loop {
            let refused =
                match idbind_testkit::exchange(&env.sim, &identity.client_id, assertion.trim()).await {
                    Ok(_) => return Ok(()),
                    Err(e) => e.to_string(),
                };
            let propagating = refused.contains("70021") && started.elapsed() < Duration::from_secs(15);
            assert!(propagating, "token exchange failed: {refused}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await?;

    step("stays quiet: steady state writes nothing", async {
        // Steady state: several resyncs (2 s each) write nothing, and read the binding's FICs on every other
        // one; the identity and its role assignments come from the shared lists, not from a GET or a
        // per-principal list of their own.
        let writes = env.writes();
        let before = env.sim.counters();
        let fic_lists = before.total("FederatedIdentityCredentials_List");
        eventually("three more resyncs", Duration::from_secs(30), || {
            Ok((env.sim.counters().total("FederatedIdentityCredentials_List") >= fic_lists + 3).then_some(()))
        })
        .await?;
        let after = env.sim.counters();
        assert_eq!(env.writes(), writes, "steady state must make no Azure writes");
        assert_eq!(
            after.total("UserAssignedIdentities_Get"),
            before.total("UserAssignedIdentities_Get"),
            "no identity GET in steady state"
        );
        let lists = |c: &idbind_sim::CounterSnapshot| {
            c.total("UserAssignedIdentities_ListByResourceGroup") + c.total("RoleAssignments_ListForScope")
        };
        // Two lists (identities of the group, assignments of the subscription) per resync period however many
        // bindings there are; here one binding, and three FIC reads span about six periods (seven at most).
        assert!(
            lists(&after) - lists(&before) <= 2 * 7 + 2,
            "the shared lists are taken once per resync period: {} more",
            lists(&after) - lists(&before)
        );
        Ok(())
    })
    .await?;

    step("follows edits: a role swap changes exactly the difference", async {
        // Editing the roles adds and removes exactly the difference.
        env.binding("orders", "orders", &["Key Vault Reader"])?;
        eventually("the role swap", Duration::from_secs(60), || {
            let state = env.sim.state_typed();
            let guids: Vec<String> = state
                .role_assignments
                .values()
                .filter(|ra| ra.principal_id == identity.principal_id)
                .map(|ra| ra.role_definition_guid.clone())
                .collect();
            Ok((guids == [READER]).then_some(()))
        })
        .await
    })
    .await?;

    step("cleans up: deleting the binding leaves nothing behind", async {
        // Deleting the binding (deletionPolicy Delete) leaves none of our objects.
        env.kubectl(&["delete", "wib", "orders", "--wait=true", "--timeout=60s"])?;
        let state = env.sim.state_typed();
        assert!(identities(&state).is_empty(), "identity left behind");
        assert!(
            !state.role_assignments.values().any(|ra| ra.principal_id == identity.principal_id),
            "role assignment left behind"
        );
        let annotations = annotations(&env, "orders")?;
        assert!(!annotations.contains("azure.workload.identity"), "annotations left behind: {annotations}");
        Ok(())
    })
    .await
}

/// A cluster without the Secrets Store CSI driver: idbind runs as ever (every other test here runs so), a
/// binding naming a SecretProviderClass says why it is not wired and is not Ready, and once the driver's CRD
/// is installed the class is wired without anyone touching the binding (discovery is asked again by the
/// stalled binding and every minute, and the watch of classes starts).
#[tokio::test(flavor = "multi_thread")]
async fn without_the_csi_driver_a_named_class_is_reported_until_the_driver_is_installed() -> TestResult {
    let env = start("e2e-nocsi").await?;
    env.kubectl(&["create", "serviceaccount", "mounts"])?;
    env.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": "mounts"},
                      "spec": {"serviceAccountName": "mounts", "secretProviderClasses": ["mounts-kv"]}}))?;
    let unavailable = Reason::SecretProviderClassesUnavailable;
    env.wait_condition(
        "mounts",
        SECRET_PROVIDER_CLASSES_READY,
        "False",
        unavailable,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(env.condition("mounts", READY)?, ("False".into(), unavailable.into()));
    assert_eq!(env.condition("mounts", STALLED)?, ("True".into(), unavailable.into()));
    assert_eq!(
        env.condition("mounts", SERVICE_ACCOUNT_READY)?.0,
        "True",
        "the ServiceAccount is bound all the same"
    );

    install_class_crd(env.plane)?;
    env.apply(&json!({"apiVersion": "secrets-store.csi.x-k8s.io/v1", "kind": "SecretProviderClass", "metadata": {"name": "mounts-kv"},
                      "spec": {"provider": "azure", "parameters": {"keyvaultName": "kv-shop"}}}))?;
    env.wait_condition("mounts", READY, "True", Reason::Reconciled, Duration::from_secs(120)).await?;
    let client_id = env.kubectl(&[
        "get",
        "secretproviderclass",
        "mounts-kv",
        "-o",
        "jsonpath={.spec.parameters.clientID}",
    ])?;
    let bound = env.kubectl(&["get", "wib", "mounts", "-o", "jsonpath={.status.identity.clientId}"])?;
    assert!(!bound.is_empty() && client_id == bound, "{client_id} vs {bound}");
    Ok(())
}

/// The annotations of ServiceAccount `sa`, as kubectl prints them.
fn annotations(env: &Env, sa: &str) -> Result<String, TestError> {
    env.kubectl(&["get", "serviceaccount", sa, "-o", "jsonpath={.metadata.annotations}"])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_role_stalls_before_any_azure_write_and_the_fix_clears_stalled() -> TestResult {
    let env = start("e2e-refused").await?;
    // Owner is not a Key Vault reader role: the default policy refuses it before any Azure write.
    let writes = env.writes();
    env.binding("escalate", "payments", &["Owner"])?;
    eventually("Stalled=PolicyViolation", Duration::from_secs(60), || {
        Ok((env.condition("escalate", STALLED)? == ("True".into(), Reason::PolicyViolation.into()))
            .then_some(()))
    })
    .await?;
    assert_eq!(env.condition("escalate", READY)?.0, "False");
    assert_eq!(env.writes(), writes, "an invalid binding makes no Azure write");

    // Fixed input, but the ServiceAccount does not exist yet: not Ready, but no longer Stalled either.
    env.binding("escalate", "payments", &["Key Vault Secrets User"])?;
    eventually(Reason::ServiceAccountNotFound.as_str(), Duration::from_secs(60), || {
        Ok((env.condition("escalate", READY)? == ("False".into(), Reason::ServiceAccountNotFound.into()))
            .then_some(()))
    })
    .await?;
    assert_eq!(env.condition("escalate", STALLED)?.0, "", "Stalled is gone once the input is fixed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_of_a_missing_service_account_completes_once_it_is_created() -> TestResult {
    let env = start("e2e-no-sa").await?;
    env.binding("payments", "payments", &["Key Vault Secrets User"])?;
    eventually(Reason::ServiceAccountNotFound.as_str(), Duration::from_secs(60), || {
        Ok((env.condition("payments", READY)? == ("False".into(), Reason::ServiceAccountNotFound.into()))
            .then_some(()))
    })
    .await?;

    // Creating the ServiceAccount completes the binding without any other change.
    env.kubectl(&["create", "serviceaccount", "payments"])?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=60s", "wib/payments"])?;
    env.kubectl(&["delete", "wib", "payments", "--wait=true", "--timeout=60s"])?;
    assert!(identities(&env.sim.state_typed()).is_empty());
    Ok(())
}

/// The binding `reports` of ServiceAccount `reports`, with `identity` and `deletion_policy`.
fn reports(identity: &str, deletion_policy: &str) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": "reports"},
           "spec": {"serviceAccountName": "reports", "identity": {"name": identity}, "deletionPolicy": deletion_policy,
                    "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn renaming_the_identity_replaces_it_and_leaves_nothing_behind() -> TestResult {
    let env = start("e2e-rename").await?;
    env.kubectl(&["create", "serviceaccount", "reports"])?;
    let first = step("reports-one: Ready", async {
        env.apply(&reports("reports-one", "Delete"))?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/reports"])?;
        let first = identities(&env.sim.state_typed());
        assert_eq!(first.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["reports-one"]);
        Ok(first)
    })
    .await?;

    step("renamed to reports-two: the new identity takes over", async {
        // A new name: the new identity takes over, the old one and its role assignment go.
        env.apply(&reports("reports-two", "Delete"))?;
        let second = eventually("only reports-two left", Duration::from_secs(90), || {
            let state = env.sim.state_typed();
            let ids = identities(&state);
            let old_assignments =
                state.role_assignments.values().filter(|ra| ra.principal_id == first[0].principal_id).count();
            Ok((ids.len() == 1 && ids[0].name == "reports-two" && old_assignments == 0)
                .then(|| ids[0].clone()))
        })
        .await?;
        eventually("the ServiceAccount names the new client id", Duration::from_secs(60), || {
            Ok(annotations(&env, "reports")?.contains(&second.client_id).then_some(()))
        })
        .await?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=60s", "wib/reports"])?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_switched_to_retain_keeps_its_identity_and_role_but_not_its_trust_when_deleted()
-> TestResult {
    let env = start("e2e-retain").await?;
    env.kubectl(&["create", "serviceaccount", "reports"])?;
    env.apply(&reports("reports-two", "Delete"))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/reports"])?;
    let second = identities(&env.sim.state_typed()).into_iter().next().ok_or("no identity")?;

    // Retain: deleting the binding keeps the identity and its role assignment (the policy still allows it),
    // never the FIC: the namespace may later be another team's.
    env.apply(&reports("reports-two", "Retain"))?;
    env.kubectl(&["delete", "wib", "reports", "--wait=true", "--timeout=60s"])?;
    let state = env.sim.state_typed();
    let kept = identities(&state);
    assert_eq!(kept.len(), 1, "Retain keeps the identity");
    assert!(kept[0].federated_identity_credentials.is_empty(), "Retain keeps no FIC");
    assert_eq!(
        state.role_assignments.values().filter(|ra| ra.principal_id == second.principal_id).count(),
        1,
        "Retain keeps the role assignment"
    );
    let annotations = annotations(&env, "reports")?;
    assert!(
        !annotations.contains("azure.workload.identity"),
        "the ServiceAccount annotations are withdrawn: {annotations}"
    );
    Ok(())
}

/// The binding `billing` of ServiceAccount `billing`, asking for `identity` and Secrets User on `vault`.
fn billing(identity: &str, vault: &str) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": "billing"},
           "spec": {"serviceAccountName": "billing", "identity": {"name": identity},
                    "keyVaults": [{"name": vault, "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}]}})
}

/// `billing` fixed (its own identity name, a vault that exists): Ready, and Stalled is gone.
fn billing_heals(env: &Env) -> TestResult {
    env.apply(&billing("billing-own", "kv-shop"))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/billing"])?;
    assert_eq!(env.condition("billing", STALLED)?.0, "");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_identity_with_the_asked_name_stalls_untouched_until_the_name_changes() -> TestResult {
    let env = start("e2e-conflict").await?;
    env.kubectl(&["create", "serviceaccount", "billing"])?;
    // Someone else's identity, with the name the binding asks for and no idbind tags.
    let foreign =
        ResourceId::resource_group_scope(SUB, RG).provider_resource(USER_ASSIGNED_IDENTITY, "billing");
    let api = idbind_testkit::arm_api(&env.sim, APP_ID, APP_SECRET)?;
    api.put_identity(&foreign, "westeurope", &[("owner".to_string(), "someone-else".to_string())].into())
        .await?;
    let writes = env.writes();

    env.apply(&billing("billing", "kv-shop"))?;
    eventually("Stalled=IdentityConflict", Duration::from_secs(60), || {
        Ok((env.condition("billing", STALLED)? == ("True".into(), Reason::IdentityConflict.into()))
            .then_some(()))
    })
    .await?;
    assert_eq!(env.condition("billing", IDENTITY_READY)?.0, "False");
    assert_eq!(env.writes(), writes, "idbind never writes to an identity it does not own");
    let untouched = identities(&env.sim.state_typed());
    assert!(
        untouched.iter().all(
            |i| i.federated_identity_credentials.is_empty() && !i.tags.contains_key("idbind.dev.binding")
        ),
        "{untouched:?}"
    );

    // Fixed with a name of its own: Ready, and Stalled is gone.
    billing_heals(&env)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_vault_stalls_before_any_write_until_fixed() -> TestResult {
    let env = start("e2e-no-vault").await?;
    env.kubectl(&["create", "serviceaccount", "billing"])?;
    let writes = env.writes();

    // A vault that does not exist: VaultNotFound, and no Azure write.
    env.apply(&billing("billing-own", "kv-nowhere"))?;
    eventually("Stalled=VaultNotFound", Duration::from_secs(60), || {
        Ok((env.condition("billing", STALLED)? == ("True".into(), Reason::VaultNotFound.into()))
            .then_some(()))
    })
    .await?;
    assert_eq!(env.writes(), writes, "a missing vault is found before any write");

    // Fixed: Ready, and Stalled is gone.
    billing_heals(&env)
}

/// The legacy permission model: a vault without RBAC gets an access policy for the identity with the
/// permissions equivalent to the role, follows role edits, and loses it on delete.
#[tokio::test(flavor = "multi_thread")]
async fn an_access_policy_vault_gets_and_loses_its_policy() -> TestResult {
    // Any role in an open cluster, so that a write role reaches the access-policy check instead of the
    // policy's.
    let policy = Ceiling { allow_any_role: true, ..idbind_testkit::e2e::open() };
    let env = start_with("e2e-legacy", policy, |c| c.seed.add_vault(SUB, KV_RG, "kv-legacy", false)).await?;
    env.kubectl(&["create", "serviceaccount", "legacy"])?;
    let manifest = |roles: &[&str]| {
        json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": "legacy"},
               "spec": {"serviceAccountName": "legacy", "keyVaults": [{"name": "kv-legacy", "resourceGroup": KV_RG, "roles": roles}]}})
    };
    // (secrets, certificates) of the identity's entry on kv-legacy, sorted.
    let entry = |principal: &str| -> Option<(Vec<String>, Vec<String>)> {
        let state = env.sim.state_typed();
        let vault = state
            .subscriptions
            .values()
            .flat_map(|s| s.resource_groups.values())
            .flat_map(|g| g.vaults.values())
            .find(|v| v.name == "kv-legacy")?
            .clone();
        let p = vault
            .access_policies
            .iter()
            .find(|p| p.object_id.eq_ignore_ascii_case(principal))?
            .permissions
            .clone();
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        Some((sorted(p.secrets), sorted(p.certificates)))
    };

    let identity = step("Secrets User: an access policy entry, no role assignment", async {
        env.apply(&manifest(&["Key Vault Secrets User"]))?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/legacy"])?;
        let identity = identities(&env.sim.state_typed()).into_iter().next().ok_or("no identity")?;
        assert_eq!(entry(&identity.principal_id), Some((vec!["get".into(), "list".into()], vec![])));
        assert!(
            !env.sim
                .state_typed()
                .role_assignments
                .values()
                .any(|ra| ra.principal_id == identity.principal_id),
            "no role assignment on an access-policy vault"
        );
        let held =
            env.kubectl(&["get", "wib", "legacy", "-o", "jsonpath={.status.accessPolicies[0].secrets}"])?;
        assert_eq!(held, r#"["get","list"]"#);
        Ok(identity)
    })
    .await?;

    step("edited to Certificate User: the entry follows", async {
        // Secrets User → Certificate User: "list" on secrets goes, certificate reads come.
        env.apply(&manifest(&["Key Vault Certificate User"]))?;
        eventually("the certificate-user policy", Duration::from_secs(60), || {
            Ok((entry(&identity.principal_id)
                == Some((vec!["get".into()], vec!["get".into(), "list".into()])))
            .then_some(()))
        })
        .await
    })
    .await?;

    step("a write role stalls without writing", async {
        // A role with no read-only access-policy equivalent stalls rather than granting writes.
        let writes = env.writes();
        env.apply(&manifest(&["Key Vault Secrets User", "Key Vault Secrets Officer"]))?;
        eventually(Reason::AccessPolicyRoleUnsupported.as_str(), Duration::from_secs(60), || {
            Ok((env.condition("legacy", STALLED)?
                == ("True".into(), Reason::AccessPolicyRoleUnsupported.into()))
                .then_some(()))
        })
        .await?;
        assert_eq!(env.writes(), writes, "nothing is written for an unsupported role");
        Ok(())
    })
    .await?;

    step("deleted: the entry and the identity are gone", async {
        env.kubectl(&["delete", "wib", "legacy", "--wait=true", "--timeout=60s"])?;
        assert_eq!(entry(&identity.principal_id), None, "the access policy entry is gone");
        assert!(identities(&env.sim.state_typed()).is_empty());
        Ok(())
    })
    .await
}

// Every reason a user can act on, reached through the real operator, and cleared by the fix (or by Azure
// healing, for the retryable ones), each announced by an Event: one test per reason.

/// The operator with any role allowed in an open cluster (so that a role reaches Azure instead of being
/// refused by the policy) and the ServiceAccount `sa`.
async fn any_role_allowed(prefix: &str, sa: &str) -> Result<Env, TestError> {
    let policy = Ceiling { allow_any_role: true, ..idbind_testkit::e2e::open() };
    let env = start_with(prefix, policy, |_| {}).await?;
    env.kubectl(&["create", "serviceaccount", sa])?;
    Ok(env)
}

/// Waits for an Event with `reason` in the test's namespace.
async fn wait_event(env: &Env, reason: Reason) -> TestResult {
    eventually(reason.as_str(), Duration::from_secs(30), || {
        let events =
            env.kubectl(&["get", "events", "--field-selector", &format!("reason={reason}"), "-o", "name"])?;
        Ok((!events.trim().is_empty()).then_some(()))
    })
    .await
}

/// Binds ServiceAccount `name` with `roles` (binding `name`), waits for Stalled=True with `reason` and its
/// Event, and checks that no Azure write happened.
async fn stalls_without_writing(env: &Env, name: &str, roles: &[&str], reason: Reason) -> TestResult {
    let writes = env.writes();
    env.binding(name, name, roles)?;
    env.wait_condition(name, STALLED, "True", reason, Duration::from_secs(60)).await?;
    wait_event(env, reason).await?;
    assert_eq!(env.writes(), writes, "{reason} reaches no Azure write");
    Ok(())
}

/// Binds `name` with `roles` that work: Ready, and Stalled clears with the fix.
fn fixed(env: &Env, name: &str, roles: &[&str]) -> TestResult {
    env.binding(name, name, roles)?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", &format!("wib/{name}")])?;
    assert_eq!(env.condition(name, STALLED)?.0, "", "Stalled clears with the fix");
    Ok(())
}

/// A fault on every call of `operation`.
fn always(operation: &str, action: FaultAction) -> FaultRule {
    FaultRule { operation: operation.into(), action, rate: 1.0, times: None }
}

#[tokio::test(flavor = "multi_thread")]
async fn reason_invalid_spec_for_a_role_named_twice_names_the_field_until_fixed() -> TestResult {
    let env = any_role_allowed("e2e-invalid", "dup").await?;
    // InvalidSpec: one role by name and by GUID (the schema cannot see they are the same).
    stalls_without_writing(&env, "dup", &["Key Vault Secrets User", SECRETS_USER], Reason::InvalidSpec)
        .await?;
    let message = env.message("dup", READY)?;
    assert!(message.contains("spec.keyVaults[0].roles[1]"), "the message names the field: {message}");
    fixed(&env, "dup", &["Key Vault Secrets User"])
}

#[tokio::test(flavor = "multi_thread")]
async fn reason_role_not_found_for_a_role_the_subscription_lacks_until_fixed() -> TestResult {
    let env = any_role_allowed("e2e-no-role", "custom").await?;
    // RoleNotFound: a role name the subscription does not define.
    stalls_without_writing(&env, "custom", &["Vault Wizard"], Reason::RoleNotFound).await?;
    fixed(&env, "custom", &["Key Vault Reader"])
}

#[tokio::test(flavor = "multi_thread")]
async fn reason_throttled_while_arm_answers_429_until_it_stops() -> TestResult {
    let env = any_role_allowed("e2e-throttled", "busy").await?;
    // Throttled: ARM answers 429 until it stops; the binding reconciles, then converges.
    env.sim.set_faults(vec![always(
        "UserAssignedIdentities_Get",
        FaultAction::Error { status: 429, retry_after_secs: Some(1) },
    )]);
    env.binding("busy", "busy", &["Key Vault Secrets User"])?;
    env.wait_condition("busy", RECONCILING, "True", Reason::Throttled, Duration::from_secs(60)).await?;
    assert_eq!(env.condition("busy", READY)?, ("False".into(), Reason::Throttled.into()));
    wait_event(&env, Reason::Throttled).await?;
    env.sim.set_faults(vec![]);
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/busy"])?;
    assert_eq!(env.condition("busy", RECONCILING)?.0, "", "Reconciling clears");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reason_principal_not_replicated_until_entra_catches_up() -> TestResult {
    let env = any_role_allowed("e2e-unreplicated", "fresh").await?;
    // PrincipalNotReplicated: Entra has not caught up with the new identity yet.
    env.sim.set_faults(vec![always(
        "RoleAssignments_Create",
        FaultAction::Code { status: 400, code: "PrincipalNotFound".into(), message: None },
    )]);
    env.binding("fresh", "fresh", &["Key Vault Secrets User"])?;
    env.wait_condition(
        "fresh",
        ROLE_ASSIGNMENTS_READY,
        "False",
        Reason::PrincipalNotReplicated,
        Duration::from_secs(60),
    )
    .await?;
    assert_eq!(env.condition("fresh", RECONCILING)?, ("True".into(), Reason::PrincipalNotReplicated.into()));
    wait_event(&env, Reason::PrincipalNotReplicated).await?;
    env.sim.set_faults(vec![]);
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/fresh"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn reason_authorization_failed_until_the_operator_may_assign_roles() -> TestResult {
    let env = any_role_allowed("e2e-denied", "denied").await?;
    // AuthorizationFailed: the administrator has taken back the operator's Role Based Access Control
    // Administrator on the vault's group (README step 3), until it gives it again.
    let group = format!("/subscriptions/{SUB}/resourceGroups/{KV_RG}");
    let restore =
        azure_rbac::revoke(&env, APP_OBJECT_ID, azure_rbac::RBAC_ADMINISTRATOR, Some(&group)).await?;
    env.binding("denied", "denied", &["Key Vault Secrets User"])?;
    env.wait_condition(
        "denied",
        ROLE_ASSIGNMENTS_READY,
        "False",
        Reason::AuthorizationFailed,
        Duration::from_secs(60),
    )
    .await?;
    wait_event(&env, Reason::AuthorizationFailed).await?;
    env.sim.seed(restore).await?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=120s", "wib/denied"])?;
    Ok(())
}

/// Pointing a binding at another ServiceAccount moves the annotations and the FIC's subject.
#[tokio::test(flavor = "multi_thread")]
async fn changing_the_service_account_moves_the_annotations() -> TestResult {
    let env = start("e2e-sa-move").await?;
    env.kubectl(&["create", "serviceaccount", "old-sa"])?;
    env.kubectl(&["create", "serviceaccount", "new-sa"])?;
    let annotated = |sa: &str| -> Result<bool, TestError> {
        Ok(annotations(&env, sa)?.contains("azure.workload.identity/client-id"))
    };
    step("bound to old-sa", async {
        env.binding("mover", "old-sa", &[])?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/mover"])?;
        assert!(annotated("old-sa")?);
        Ok(())
    })
    .await?;

    step("moved to new-sa", async {
        env.binding("mover", "new-sa", &[])?;
        eventually("annotations on new-sa only", Duration::from_secs(60), || {
            Ok((annotated("new-sa")? && !annotated("old-sa")?).then_some(()))
        })
        .await?;
        let identity = identities(&env.sim.state_typed()).into_iter().next().ok_or("no identity")?;
        let subjects: Vec<String> =
            identity.federated_identity_credentials.values().map(|f| f.subject.clone()).collect();
        assert_eq!(subjects, [format!("system:serviceaccount:{}:new-sa", env.ns)]);
        assert_eq!(
            env.kubectl(&["get", "wib", "mover", "-o", "jsonpath={.status.serviceAccount}"])?,
            "new-sa"
        );
        Ok(())
    })
    .await?;

    step("deleted: no annotations left", async {
        env.kubectl(&["delete", "wib", "mover", "--wait=true", "--timeout=60s"])?;
        assert!(!annotated("new-sa")? && !annotated("old-sa")?);
        Ok(())
    })
    .await
}

/// The shared lists may be a resync old; they are only trusted to say that nothing needs doing. An identity
/// someone creates after the list was taken, with the name a new binding asks for, is still found before any
/// write, and never written to.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_list_never_lets_idbind_write_over_a_new_foreign_identity() -> TestResult {
    let env = start("e2e-stale").await?;
    env.kubectl(&["create", "serviceaccount", "first"])?;
    env.kubectl(&["create", "serviceaccount", "second"])?;
    // The first binding makes the operator list the identities' resource group.
    env.binding("first", "first", &[])?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/first"])?;
    // Then someone creates an identity by hand, after that list.
    let api = idbind_testkit::arm_api(&env.sim, APP_ID, APP_SECRET)?;
    let foreign =
        ResourceId::resource_group_scope(SUB, RG).provider_resource(USER_ASSIGNED_IDENTITY, "handmade");
    api.put_identity(&foreign, "westeurope", &[("owner".to_string(), "ops".to_string())].into()).await?;
    let writes = env.writes();
    env.apply(&json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": "second"},
                      "spec": {"serviceAccountName": "second", "identity": {"name": "handmade"}}}))?;
    env.wait_condition("second", STALLED, "True", Reason::IdentityConflict, Duration::from_secs(60)).await?;
    assert_eq!(env.writes(), writes, "nothing was written");
    let handmade = identities(&env.sim.state_typed())
        .into_iter()
        .find(|i| i.name == "handmade")
        .ok_or("handmade identity vanished")?;
    assert_eq!(handmade.tags.get("owner").map(String::as_str), Some("ops"));
    assert!(
        !handmade.tags.contains_key("idbind.dev.binding")
            && handmade.federated_identity_credentials.is_empty()
    );
    Ok(())
}

/// Fairness: a backlog of identities to create, paced by the managed-identity API's limit, does not hold up
/// an edit of another binding. With the subscription's identity creates (and deletes) budgeted at 0.5/s, 16
/// new bindings need about 30 s of turns; reconciles do not wait through them holding a worker but requeue at
/// their turn, saying so in their conditions, so the edit (one role-assignment write, no identity write) is
/// Ready while most of the backlog still waits. Then the same for the backlog deleted at once. (At this size
/// the work queue alone rarely starves the edit; the bench measures that at N = 1,000, bench/REPORT.md.)
///
/// The longest test here (about a minute of turns): its name sorts first, so the test harness (which starts
/// tests in name order) starts it at once and the others run beside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_of_identity_creates_and_deletes_does_not_hold_up_an_edit() -> TestResult {
    let mut limits = Limits::default().scaled(10.0);
    limits.msi_subscription = limits.msi_subscription.map(|(op, rate)| {
        (op, if matches!(op, MsiOp::CreateOrUpdate | MsiOp::Delete) { Rate::new(1.0, 0.5) } else { rate })
    });
    let env = start_with_budget("e2e-fair", Ceiling::default(), limits, |_| {}).await?;
    idbind_testkit::e2e::apply_cluster(env.plane, &idbind_testkit::e2e::team_policy(&env.ns))?;
    env.ready_binding("probe", &["Key Vault Secrets User"])?;

    const BACKLOG: usize = 16;
    step("the create backlog waits for its turns", async {
        let mut items = Vec::new();
        for i in 0..BACKLOG {
            items.push(
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": format!("app-{i}")}}),
            );
            items.push(json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": format!("app-{i}")},
                "spec": {"serviceAccountName": format!("app-{i}"), "keyVaults": [{"name": "kv-shop", "resourceGroup": KV_RG, "roles": ["Key Vault Secrets User"]}]}}));
        }
        env.apply(&json!({"apiVersion": "v1", "kind": "List", "items": items}))?;
        let waiting = |env: &Env| -> Result<usize, TestError> {
            let reasons = env.kubectl(&[
                "get",
                "wib",
                "-o",
                &format!(
                "jsonpath={{range \
                 .items[*]}}{{.status.conditions[?(@.type==\"{RECONCILING}\")].reason}}{{\"\\n\"}}{{end}}"
            ),
            ])?;
            Ok(reasons
                .lines()
                .filter(|r| r.trim() == Reason::AwaitingRequestBudget.as_str())
                .count())
        };
        eventually(
            "the backlog waiting for its turns",
            Duration::from_secs(60),
            || Ok((waiting(&env)? >= BACKLOG / 2).then_some(())),
        )
        .await
    })
    .await?;

    step("an edit is served ahead of the create backlog", async {
        env.binding("probe", "probe", &["Key Vault Secrets User", "Key Vault Reader"])?;
        ready_for_generation(&env, "probe", 2).await?;
        let ready = env.kubectl(&[
            "get",
            "wib",
            "-o",
            &format!(
                "jsonpath={{range \
                 .items[*]}}{{.metadata.name}}={{.status.conditions[?(@.type==\"{READY}\")].status}}{{\"\\n\"}}{{end}}"
            ),
        ])?;
        let backlog_ready = ready.lines().filter(|l| l.starts_with("app-") && l.ends_with("=True")).count();
        assert!(
            backlog_ready <= BACKLOG / 2,
            "the edit was served after most of the backlog: {backlog_ready} of {BACKLOG} were Ready before \
             it"
        );
        let state = env.sim.state_typed();
        let probe = identities(&state)
            .into_iter()
            .find(|i| i.tags.get("idbind.dev.binding").map(String::as_str) == Some("probe"))
            .ok_or("no probe identity")?;
        let roles: Vec<_> = state
            .role_assignments
            .values()
            .filter(|ra| ra.principal_id == probe.principal_id)
            .map(|ra| ra.role_definition_guid.clone())
            .collect();
        assert_eq!(roles.len(), 2, "the edit's role assignment is in place: {roles:?}");
        Ok(())
    })
    .await?;

    step("the create backlog completes, in turn", async {
        for i in 0..BACKLOG {
            env.kubectl(&["wait", "--for=condition=Ready", "--timeout=120s", &format!("wib/app-{i}")])?;
        }
        Ok(())
    })
    .await?;

    step("an edit is served ahead of the delete backlog", async {
        // The same for deletions (identity deletes are budgeted at 0.5/s too): the whole backlog deleted at
        // once does not hold up the next edit.
        let names: Vec<String> = (0..BACKLOG).map(|i| format!("wib/app-{i}")).collect();
        let mut delete = vec!["delete", "--wait=false"];
        delete.extend(names.iter().map(String::as_str));
        env.kubectl(&delete)?;
        env.binding("probe", "probe", &["Key Vault Secrets User"])?;
        ready_for_generation(&env, "probe", 3).await?;
        let left = env.kubectl(&["get", "wib", "-o", "name"])?.lines().filter(|l| l.contains("app-")).count();
        assert!(
            left >= BACKLOG / 2,
            "the edit was served after most of the deletions: {left} of {BACKLOG} bindings left"
        );
        Ok(())
    })
    .await?;

    step("the delete backlog completes", async {
        eventually("the deleted backlog gone from Azure", Duration::from_secs(120), || {
            let state = env.sim.state_typed();
            Ok((identities(&state).len() == 1
                && env.kubectl(&["get", "wib", "-o", "name"])?.lines().count() == 1)
                .then_some(()))
        })
        .await
    })
    .await
}

// Drift made by hand in Azure is repaired by the resync (2 s here; a binding's FICs are read on every other
// resync, identities and role assignments on every one, from shared lists): one test per kind of drift.

/// A Ready binding `orders` (Secrets User on kv-shop), and what a human needs to change its Azure objects.
struct Drift {
    env: Env,
    /// ARM signed in as the operator's app: what a human with its rights could do.
    human: ArmApi,
    /// The FIC's subject: the ServiceAccount `orders`.
    subject: String,
    identity: Identity,
    assignments: Vec<RoleAssignment>,
    identity_id: ResourceId,
    fic: Fic,
}

impl Drift {
    async fn start(prefix: &str) -> Result<Drift, TestError> {
        let env = start(prefix).await?;
        env.ready_binding("orders", &["Key Vault Secrets User"])?;
        let human = idbind_testkit::arm_api(&env.sim, APP_ID, APP_SECRET)?;
        let subject = format!("system:serviceaccount:{}:orders", env.ns);
        let (identity, assignments) = Drift::current(&env)?;
        let identity_id = ResourceId::resource_group_scope(SUB, RG)
            .provider_resource(USER_ASSIGNED_IDENTITY, &identity.name);
        let fic = identity.federated_identity_credentials.values().next().ok_or("no FIC")?.clone();
        Ok(Drift { env, human, subject, identity, assignments, identity_id, fic })
    }

    /// The identity and its role assignments as Azure has them now.
    fn current(env: &Env) -> Result<(Identity, Vec<RoleAssignment>), TestError> {
        let state = env.sim.state_typed();
        let identity = identities(&state).into_iter().next().ok_or("no identity")?;
        let assignments = state
            .role_assignments
            .values()
            .filter(|ra| ra.principal_id == identity.principal_id)
            .cloned()
            .collect();
        Ok((identity, assignments))
    }

    /// Whether Azure holds the binding whole: its one FIC trusting the ServiceAccount, and its role.
    fn whole(&self) -> Result<bool, TestError> {
        let (identity, assignments) = Drift::current(&self.env)?;
        let fic_ok = identity
            .federated_identity_credentials
            .values()
            .any(|f| f.subject == self.subject && f.issuer == self.env.plane.server());
        Ok(fic_ok
            && assignments.iter().any(|ra| ra.role_definition_guid == SECRETS_USER)
            && identity.federated_identity_credentials.len() == 1)
    }

    /// Checks that the drift just made shows, then waits for the repair.
    async fn repaired(&self, what: &str) -> TestResult {
        assert!(!self.whole()?, "the drift shows in Azure before the repair");
        eventually(what, Duration::from_secs(30), || Ok(self.whole()?.then_some(()))).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_a_deleted_role_assignment_is_recreated() -> TestResult {
    let d = Drift::start("e2e-drift-ra").await?;
    d.human
        .delete_role_assignment(
            &ResourceId::parse(&d.assignments[0].scope)?
                .provider_resource(ROLE_ASSIGNMENT, &d.assignments[0].name),
        )
        .await?;
    d.repaired("the deleted role assignment back").await
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_a_federated_credential_pointed_elsewhere_is_restored() -> TestResult {
    let d = Drift::start("e2e-drift-subject").await?;
    let elsewhere = idbind::azure::FederatedCredential {
        name: d.fic.name.clone(),
        issuer: d.fic.issuer.clone(),
        subject: "system:serviceaccount:other:intruder".into(),
        audiences: d.fic.audiences.clone(),
    };
    d.human.put_federated_credential(&d.identity_id, &elsewhere).await?;
    d.repaired("the FIC's subject restored").await
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_a_deleted_federated_credential_is_recreated() -> TestResult {
    let d = Drift::start("e2e-drift-fic").await?;
    d.human.delete_federated_credential(&d.identity_id, &d.fic.name).await?;
    d.repaired("the deleted FIC back").await
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_a_deleted_identity_is_replaced_and_the_service_account_follows() -> TestResult {
    let d = Drift::start("e2e-drift-identity").await?;
    d.human.delete_identity(&d.identity_id).await?;
    eventually("a new identity, federated and assigned", Duration::from_secs(30), || {
        Ok(d.whole().unwrap_or(false).then_some(()))
    })
    .await?;
    let (renewed, _) = Drift::current(&d.env)?;
    assert_ne!(renewed.client_id, d.identity.client_id, "Azure gave the new identity a new client id");
    eventually("the ServiceAccount names the new client id", Duration::from_secs(30), || {
        Ok(annotations(&d.env, "orders")?.contains(&renewed.client_id).then_some(()))
    })
    .await
}

/// Waits until `binding` is Ready for `generation` (an edit served); on timeout the error carries the binding
/// as it stands. Another caller (another cluster's operator, a pipeline) spends the subscription's identity
/// creates, so Azure answers idbind's creates 429 although idbind's budget allowed them (the simulator plays
/// it: its next two creates are refused with a Retry-After of 2 s). The binding then waits for its next turn,
/// which the budget puts after the Retry-After, instead of failing as Throttled with a growing backoff: no
/// `Throttled` Event, and Ready once Azure takes the create.
#[tokio::test(flavor = "multi_thread")]
async fn a_create_refused_for_others_spending_the_limit_waits_its_turn_instead_of_failing() -> TestResult {
    let env = start("e2e-shared").await?;
    env.sim.set_faults(vec![FaultRule {
        operation: "UserAssignedIdentities_CreateOrUpdate".into(),
        action: FaultAction::Error { status: 429, retry_after_secs: Some(2) },
        rate: 1.0,
        times: Some(2),
    }]);
    env.apply(&json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app"}}))?;
    env.binding("app", "app", &["Key Vault Secrets User"])?;
    env.wait_condition("app", READY, "True", Reason::Reconciled, Duration::from_secs(60)).await?;
    assert_eq!(
        env.sim.counters().get("UserAssignedIdentities_CreateOrUpdate", "429"),
        2,
        "both refusals were met"
    );
    let events = env.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=app,involvedObject.kind=WorkloadIdentityBinding",
        "-o",
        "jsonpath={.items[*].reason}",
    ])?;
    assert!(!events.contains(Reason::Throttled.as_str()), "the binding failed as Throttled: {events}");
    Ok(())
}

async fn ready_for_generation(env: &Env, binding: &str, generation: i64) -> TestResult {
    let want = format!("{generation} {generation} True");
    let served =
        eventually(&format!("{binding} Ready for generation {generation}"), Duration::from_secs(60), || {
            let out = env.kubectl(&[
                "get",
                "wib",
                binding,
                "-o",
                &format!(
                    "jsonpath={{.metadata.generation}} {{.status.observedGeneration}} \
                     {{.status.conditions[?(@.type==\"{READY}\")].status}}"
                ),
            ])?;
            Ok((out.trim() == want).then_some(()))
        })
        .await;
    if let Err(e) = served {
        return Err(
            format!("{e}; {binding} now: {}", env.kubectl(&["get", "wib", binding, "-o", "yaml"])?).into()
        );
    }
    Ok(())
}
