//! Secure by default, end to end on the real API server and the simulator: with the shipped settings a
//! namespace no `WorkloadIdentityPolicy` selects binds nothing (and is told what to ask for); reader roles
//! that consume or change data need a policy that names them; one policy with `{namespace}` patterns gives
//! each of three namespaces its own vault and none of another's; narrowing a policy takes back exactly what
//! it no longer allows, and `deletionPolicy: Retain` keeps neither a grant no policy allows nor the federated
//! credential.

use std::time::Duration;

use idbind::core::conditions::READY;
use idbind::core::reason::Reason;
use idbind::core::settings::Ceiling;
use idbind_sim::{Seed, state::Identity};
use idbind_testkit::{
    e2e::{Env, KV_RG, SUB, TestResult, also_watch, apply_cluster, eventually, identities, start_with},
    steps::step,
};
use serde_json::{Value, json};

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityPolicy", "metadata": {"name": name},
           "spec": spec})
}

fn binding(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "idbind.dev/v1alpha1", "kind": "WorkloadIdentityBinding", "metadata": {"name": name},
           "spec": spec})
}

fn vault(rg: &str, name: &str, roles: &[&str]) -> Value {
    json!({"name": name, "resourceGroup": rg, "roles": roles})
}

fn vault_id(rg: &str, name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.KeyVault/vaults/{name}")
}

/// The identity idbind made for binding `name` of namespace `ns`, as Azure holds it.
fn identity_of(env: &Env, ns: &str, name: &str) -> Option<Identity> {
    identities(&env.sim.state_typed()).into_iter().find(|i| {
        i.tags.get("idbind.dev.namespace").map(String::as_str) == Some(ns)
            && i.tags.get("idbind.dev.binding").map(String::as_str) == Some(name)
    })
}

/// The scopes (lower case) of the role assignments of `principal`, sorted.
fn assigned_scopes(env: &Env, principal: &str) -> Vec<String> {
    let state = env.sim.state_typed();
    let mut scopes: Vec<String> = state
        .role_assignments
        .values()
        .filter(|ra| ra.principal_id == principal)
        .map(|ra| ra.scope.to_ascii_lowercase())
        .collect();
    scopes.sort();
    scopes
}

/// Reproduction 1: with the shipped settings and no policy, a tenant binding another team's vault got Ready
/// and its token read the secret. Now the binding is refused, says what to ask for, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_no_policy_selects_binds_nothing_and_is_told_what_to_ask_for() -> TestResult {
    let env = start_with("deny-default", Ceiling::default(), |_| {}).await?;
    let writes = env.writes();
    env.kubectl(&["create", "serviceaccount", "thief"])?;
    env.apply(&binding(
        "thief",
        json!({"serviceAccountName": "thief", "keyVaults": [vault(KV_RG, "kv-shop", &["Key Vault Secrets User"])]}),
    ))?;
    env.wait_condition("thief", READY, "False", Reason::PolicyViolation, Duration::from_secs(60)).await?;
    let message = env.message("thief", READY)?;
    for part in [
        "metadata.namespace",
        &format!("no WorkloadIdentityPolicy selects namespace {}", env.ns),
        "ask your cluster administrator",
        "IDBIND_OPEN_NAMESPACES",
        &format!("vault {} with Key Vault Secrets User", vault_id(KV_RG, "kv-shop")),
    ] {
        assert!(message.contains(part), "{part:?} missing from {message}");
    }
    let events = env.kubectl(&["get", "events", "-o", "jsonpath={.items[*].reason}"])?;
    assert!(events.contains(Reason::PolicyViolation.as_str()), "events: {events}");
    assert_eq!(env.writes(), writes, "nothing written to Azure");
    assert!(identities(&env.sim.state_typed()).is_empty(), "no identity made");

    step("a policy selecting the namespace lets the same binding converge, untouched", async {
        apply_cluster(
            env.plane,
            &policy(
                &format!("{}-team", env.ns),
                json!({
            "namespaces": [env.ns], "keyVaults": [{"resourceGroup": KV_RG}]}),
            ),
        )?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/thief"])?;
        Ok(())
    })
    .await
}

/// Reproduction 3: a policy that selects the namespace without naming roles gave it Azure Service Bus Data
/// Receiver (receiving settles messages) and Key Vault Crypto User (Update Key can disable a key). Now
/// neither passes unless the policy names it, and naming it is enough (no --allow-any-role).
#[tokio::test(flavor = "multi_thread")]
async fn roles_that_consume_or_change_data_need_a_policy_that_names_them() -> TestResult {
    let bus = format!(
        "/subscriptions/{SUB}/resourceGroups/rg-orders/providers/Microsoft.ServiceBus/namespaces/orders-bus"
    );
    let env = start_with("deny-readers", Ceiling::default(), |c| {
        c.seed.add_vault(SUB, KV_RG, "kv-keys", true);
        if let Err(e) = c.seed.add_resource_id(&bus) {
            panic!("seeding {bus}: {e}");
        }
    })
    .await?;
    let team = format!("{}-team", env.ns);
    apply_cluster(
        env.plane,
        &policy(
            &team,
            json!({"namespaces": [env.ns],
        "keyVaults": [{"resourceGroup": KV_RG}], "azureScopes": [{"resourceGroup": "rg-orders"}]}),
        ),
    )?;
    for sa in ["receiver", "crypto"] {
        env.kubectl(&["create", "serviceaccount", sa])?;
    }
    let writes = env.writes();
    env.apply(&binding(
        "receiver",
        json!({"serviceAccountName": "receiver",
               "azureRoles": [{"scope": bus, "roles": ["Azure Service Bus Data Receiver"]}]}),
    ))?;
    env.apply(&binding(
        "crypto",
        json!({"serviceAccountName": "crypto", "keyVaults": [vault(KV_RG, "kv-keys", &["Key Vault Crypto User"])]}),
    ))?;
    for (name, field) in
        [("receiver", "spec.azureRoles[0].roles[0]"), ("crypto", "spec.keyVaults[0].roles[0]")]
    {
        env.wait_condition(name, READY, "False", Reason::PolicyViolation, Duration::from_secs(60)).await?;
        let message = env.message(name, READY)?;
        assert!(message.contains(field), "{name}: {message}");
    }
    assert_eq!(env.writes(), writes, "nothing written for either");

    step("a policy naming the roles lets both through, without --allow-any-role", async {
        apply_cluster(
            env.plane,
            &policy(
                &team,
                json!({"namespaces": [env.ns],
            "keyVaults": [{"resourceGroup": KV_RG}], "azureScopes": [{"resourceGroup": "rg-orders"}],
            "roles": ["Azure Service Bus Data Receiver", "Key Vault Crypto User"]}),
            ),
        )?;
        env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/receiver", "wib/crypto"])?;
        Ok(())
    })
    .await
}

/// One cluster-wide policy gives each of three namespaces (two of them prefixes of the third's name) the
/// vault of its own resource group, `rg-<namespace>`, and none of another's.
#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_relative_policy_gives_each_namespace_its_own_vault_and_none_of_anothers() -> TestResult {
    let env = start_with("rel", Ceiling::default(), |_| {}).await?;
    let a = env.ns.clone();
    // Names that start with one another: `a`, `a-b`, and a third.
    let namespaces = [a.clone(), format!("{a}-b"), env.other_namespace("rel-c")?.ns];
    for ns in &namespaces[1..] {
        if ns.starts_with(&a) {
            env.kubectl(&["create", "namespace", ns])?;
        }
        also_watch(&env, ns, Ceiling::default()).await?;
    }
    let mut seed = Seed::default();
    for ns in &namespaces {
        seed.add_vault(SUB, &format!("rg-{ns}"), "kv-own", true);
    }
    env.sim.seed(seed).await?;
    // The administrator gives idbind's identity its README roles on the new groups too.
    let identities = [format!("/subscriptions/{SUB}/resourceGroups/{}", idbind_testkit::e2e::RG)];
    idbind_testkit::azure_rbac::grant_operator_roles_now(
        &env.sim,
        idbind_testkit::e2e::APP_OBJECT_ID,
        &identities,
    )
    .await?;
    apply_cluster(
        env.plane,
        &policy(
            &format!("{a}-self-service"),
            json!({
        "namespaces": namespaces, "keyVaults": [{"resourceGroup": "rg-{namespace}"}]}),
        ),
    )?;
    let in_ns = |ns: &str, args: &[&str]| -> Result<String, idbind_testkit::e2e::TestError> {
        env.kubectl(&[args, &["-n", ns]].concat())
    };

    step("each namespace binds the vault of its own resource group", async {
        for ns in &namespaces {
            in_ns(ns, &["create", "serviceaccount", "app"])?;
            let own = binding(
                "own",
                json!({"serviceAccountName": "app",
                "keyVaults": [vault(&format!("rg-{ns}"), "kv-own", &["Key Vault Secrets User"])]}),
            );
            apply_in(&env, ns, &own)?;
        }
        for ns in &namespaces {
            in_ns(ns, &["wait", "--for=condition=Ready", "--timeout=90s", "wib/own"])?;
            let principal = identity_of(&env, ns, "own").ok_or("no identity")?.principal_id;
            assert_eq!(
                assigned_scopes(&env, &principal),
                [vault_id(&format!("rg-{ns}"), "kv-own").to_ascii_lowercase()]
            );
        }
        Ok(())
    })
    .await?;

    step("no namespace binds another's vault, and nothing is written for trying", async {
        let writes = env.writes();
        for ns in &namespaces {
            for (i, other) in namespaces.iter().filter(|o| *o != ns).enumerate() {
                let name = format!("steal-{i}");
                in_ns(ns, &["create", "serviceaccount", &name])?;
                let theirs = binding(
                    &name,
                    json!({"serviceAccountName": name,
                    "keyVaults": [vault(&format!("rg-{other}"), "kv-own", &["Key Vault Secrets User"])]}),
                );
                apply_in(&env, ns, &theirs)?;
            }
        }
        for ns in &namespaces {
            for name in ["steal-0", "steal-1"] {
                eventually(&format!("{ns}/{name} refused"), Duration::from_secs(60), || {
                    let reason = in_ns(
                        ns,
                        &[
                            "get",
                            "wib",
                            name,
                            "-o",
                            &format!("jsonpath={{.status.conditions[?(@.type==\"{READY}\")].reason}}"),
                        ],
                    )?;
                    Ok((reason == Reason::PolicyViolation.as_str()).then_some(()))
                })
                .await?;
                let field = in_ns(
                    ns,
                    &[
                        "get",
                        "wib",
                        name,
                        "-o",
                        &format!("jsonpath={{.status.conditions[?(@.type==\"{READY}\")].message}}"),
                    ],
                )?;
                assert!(field.contains("spec.keyVaults[0]"), "{ns}/{name}: {field}");
            }
        }
        assert_eq!(env.writes(), writes, "nothing written for a refused binding");
        Ok(())
    })
    .await
}

/// `kubectl apply` of `manifest` in namespace `ns`.
fn apply_in(env: &Env, ns: &str, manifest: &Value) -> TestResult {
    let mut with_ns = manifest.clone();
    with_ns["metadata"]["namespace"] = json!(ns);
    apply_cluster(env.plane, &with_ns)
}

/// Reproduction 4: an administrator narrowed a policy so a binding could no longer hold a vault; the binding
/// went PolicyViolation and kept its assignment, and a tenant who then set `deletionPolicy: Retain` and
/// deleted it kept the identity, its credential and the assignment. Now narrowing takes back exactly the
/// refused grant at once, and Retain keeps neither that nor the credential.
#[tokio::test(flavor = "multi_thread")]
async fn narrowing_a_policy_takes_back_what_it_no_longer_allows_and_retain_keeps_no_trust() -> TestResult {
    let env =
        start_with("narrow", Ceiling::default(), |c| c.seed.add_vault(SUB, "rg-other", "kv-other", true))
            .await?;
    let team = format!("{}-team", env.ns);
    let both = json!({"namespaces": [env.ns], "keyVaults": [{"resourceGroup": KV_RG}, {"resourceGroup": "rg-other"}]});
    apply_cluster(env.plane, &policy(&team, both))?;
    env.kubectl(&["create", "serviceaccount", "app"])?;
    env.apply(&binding(
        "app",
        json!({"serviceAccountName": "app", "keyVaults": [
        vault(KV_RG, "kv-shop", &["Key Vault Secrets User"]),
        vault("rg-other", "kv-other", &["Key Vault Secrets User"])]}),
    ))?;
    env.kubectl(&["wait", "--for=condition=Ready", "--timeout=90s", "wib/app"])?;
    let identity = identity_of(&env, &env.ns, "app").ok_or("no identity")?;
    let (shop, other) = (
        vault_id(KV_RG, "kv-shop").to_ascii_lowercase(),
        vault_id("rg-other", "kv-other").to_ascii_lowercase(),
    );
    assert_eq!(assigned_scopes(&env, &identity.principal_id), [other.clone(), shop.clone()]);

    step("narrowed: the refused vault's assignment goes at once, the rest stays", async {
        let counters = env.sim.counters();
        let (creates, puts) = (
            counters.total("RoleAssignments_Create"),
            counters.total("UserAssignedIdentities_CreateOrUpdate"),
        );
        let only_shop = json!({"namespaces": [env.ns], "keyVaults": [{"resourceGroup": KV_RG}]});
        apply_cluster(env.plane, &policy(&team, only_shop))?;
        env.wait_condition("app", READY, "False", Reason::PolicyViolation, Duration::from_secs(60)).await?;
        eventually("the refused assignment taken back", Duration::from_secs(60), || {
            Ok((assigned_scopes(&env, &identity.principal_id) == [shop.clone()]).then_some(()))
        })
        .await?;
        let now = identity_of(&env, &env.ns, "app").ok_or("the identity went")?;
        assert_eq!(now.federated_identity_credentials.len(), 1, "the credential stays");
        let counters = env.sim.counters();
        assert_eq!(
            counters.total("RoleAssignments_Create"),
            creates,
            "nothing created for a refused binding"
        );
        assert_eq!(counters.total("UserAssignedIdentities_CreateOrUpdate"), puts, "nor the identity written");
        let held =
            env.kubectl(&["get", "wib", "app", "-o", "jsonpath={.status.roleAssignments[*].scope}"])?;
        assert_eq!(held.to_ascii_lowercase(), shop, "the status records what the binding still holds");
        let deleted = env.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("reason={}", Reason::AzureDeleted),
            "-o",
            "jsonpath={.items[*].message}",
        ])?;
        assert!(deleted.contains("no policy allows it any more"), "events: {deleted}");
        Ok(())
    })
    .await?;

    step("Retain keeps the identity and its allowed grant, never the credential", async {
        env.kubectl(&[
            "patch",
            "wib",
            "app",
            "--type=merge",
            "-p",
            r#"{"spec":{"deletionPolicy":"Retain"}}"#,
        ])?;
        env.kubectl(&["delete", "wib", "app", "--wait=true", "--timeout=60s"])?;
        let kept = identities(&env.sim.state_typed())
            .into_iter()
            .find(|i| i.principal_id == identity.principal_id)
            .ok_or("Retain deleted the identity")?;
        assert!(
            kept.federated_identity_credentials.is_empty(),
            "no ServiceAccount is trusted any more: {:?}",
            kept.federated_identity_credentials
        );
        assert_eq!(assigned_scopes(&env, &identity.principal_id), std::slice::from_ref(&shop));
        let annotations =
            env.kubectl(&["get", "serviceaccount", "app", "-o", "jsonpath={.metadata.annotations}"])?;
        assert!(!annotations.contains("azure.workload.identity/client-id"), "{annotations}");
        Ok(())
    })
    .await?;

    step("a secret read with the ServiceAccount's token is refused: nothing trusts it", async {
        let token = env.kubectl(&["create", "token", "app", "--audience", "api://AzureADTokenExchange"])?;
        let exchanged = idbind_testkit::exchange(&env.sim, &identity.client_id, token.trim()).await;
        assert!(exchanged.is_err(), "the token still exchanges for the retained identity");
        Ok(())
    })
    .await?;
    Ok(())
}

/// Deleting the last policy that selected a namespace is an administrator taking back what it gave: the
/// bindings it let through (their status records it) lose every grant and keep their identity; a binding no
/// policy ever let through keeps what it holds (the upgrade from open namespaces, `helm_chart`).
#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_last_policy_of_a_namespace_takes_back_every_grant_it_gave() -> TestResult {
    let env = start_with("unselect", Ceiling::default(), |_| {}).await?;
    let team = format!("{}-team", env.ns);
    apply_cluster(
        env.plane,
        &policy(&team, json!({"namespaces": [env.ns], "keyVaults": [{"resourceGroup": KV_RG}]})),
    )?;
    env.ready_binding("app", &["Key Vault Secrets User"])?;
    let admitted = env.kubectl(&["get", "wib", "app", "-o", "jsonpath={.status.admittedBy}"])?;
    assert!(admitted.contains(&team), "the status records the policy that let it through: {admitted}");
    let identity = identity_of(&env, &env.ns, "app").ok_or("no identity")?;
    assert_eq!(assigned_scopes(&env, &identity.principal_id).len(), 1);
    env.kubectl(&["delete", "wip", &team])?;
    env.wait_condition("app", READY, "False", Reason::PolicyViolation, Duration::from_secs(60)).await?;
    eventually("every grant taken back", Duration::from_secs(60), || {
        Ok(assigned_scopes(&env, &identity.principal_id).is_empty().then_some(()))
    })
    .await?;
    let kept = identity_of(&env, &env.ns, "app").ok_or("the identity went")?;
    assert_eq!(kept.federated_identity_credentials.len(), 1, "the identity and its credential stay");
    Ok(())
}

/// The operator says at start who may bind without a policy, and that the old setting means nothing now.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_says_at_start_when_namespaces_are_open_and_when_an_old_setting_is_ignored() -> TestResult
{
    let env = idbind_testkit::e2e::start_without_operator("deny-log", |_| {}).await?;
    idbind_testkit::e2e::install_operator_rbac(env.plane, &env.ns, &[])?;
    let said = |operator: &idbind_testkit::process::Operator, line: &'static str| {
        let log = operator.log_text();
        Ok::<_, idbind_testkit::e2e::TestError>(log.contains(line).then_some(()))
    };
    let closed =
        idbind_testkit::process::Operator::start(&env, "closed", &[("IDBIND_REQUIRE_POLICY", "false")])?;
    eventually("the closed operator's notice", Duration::from_secs(30), || {
        said(&closed, "namespaces no WorkloadIdentityPolicy selects bind nothing")
    })
    .await?;
    eventually("the old setting's notice", Duration::from_secs(30), || {
        said(&closed, "IDBIND_REQUIRE_POLICY=false no longer opens namespaces")
    })
    .await?;
    closed.kill()?;
    let open = idbind_testkit::process::Operator::start(&env, "open", &[("IDBIND_OPEN_NAMESPACES", "true")])?;
    eventually("the open operator's warning", Duration::from_secs(30), || {
        said(
            &open,
            "IDBIND_OPEN_NAMESPACES is on: namespaces no WorkloadIdentityPolicy selects may bind every vault",
        )
    })
    .await?;
    Ok(())
}
